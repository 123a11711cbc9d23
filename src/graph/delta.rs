//! Change tracking with Graph's delta queries: which applications and service principals of the
//! tenant changed, so that a resync of an unchanged AppRegistration need not read them again.
//!
//! One [`ChangeFeed`] per operator follows `GET /applications/delta` and
//! `GET /servicePrincipals/delta` ([application: delta], [servicePrincipal: delta]): it starts from
//! now (`$deltatoken=latest`, no data), then every interval follows each delta link to the next
//! one and remembers, for every object reported, when it was reported (a 64-bit hash of its ID and
//! a time, not the object: the operator only needs to know *that* it changed). A reconcile that
//! reads an application and its service principal takes a [`Mark`] first; a later resync asks
//! [`ChangeFeed::unchanged_since`] whether either may have changed since that read.
//!
//! Why the answer is safe (docs/architecture.md, "Quiet resyncs"):
//! - Entra's replicas and its change tracking may lag. [`LAG`] is how long the feed assumes they
//!   may lag, at most: a change reported less than [`LAG`] before the read may not have been seen
//!   by it, so it counts as a change; a read counts as covered only once a round that *started*
//!   [`LAG`] after it has completed; a mark is refused for [`LAG`] after tracking (re)starts.
//! - Tracking that fails for good (an expired delta token: 400 `syncStateNotFound`, or 410 Gone,
//!   [delta query overview]) starts over with a new generation: every mark taken before is void,
//!   so every resource reads Graph again at its next resync.
//! - Owners, federated credentials, app role assignments and permission grants are not tracked by
//!   either delta function; the caller reads those it manages.
//!
//! Each completed round is also handed to the caller of [`ChangeFeed::run`] as a [`Round`]: a
//! resource whose last read the round before already covered, and whose application or service
//! principal this round reports, changed after that read (drift behind the operator's back) and is
//! reconciled now rather than at its next resync (`controllers::later::Later::wake`).
//!
//! [application: delta]: https://learn.microsoft.com/en-us/graph/api/application-delta
//! [servicePrincipal: delta]: https://learn.microsoft.com/en-us/graph/api/serviceprincipal-delta
//! [delta query overview]: https://learn.microsoft.com/en-us/graph/delta-query-overview

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::client::{Call, GraphClient};
use super::error::GraphError;

/// How long Entra's replicas and its change tracking are assumed to lag behind a write, at most.
pub const LAG: Duration = Duration::from_secs(30);

/// How often the delta links are followed by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The two collections followed, with their delta function.
const COLLECTIONS: [(&str, &str); 2] = [
    ("/applications/delta", "/applications/delta"),
    ("/servicePrincipals/delta", "/servicePrincipals/delta"),
];

/// When a reconcile read an application and its service principal, in the feed's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    generation: u32,
    /// Seconds since the feed was created.
    at: u32,
}

impl Mark {
    /// Whether a round of `generation` that started at `round_start` saw every change made before
    /// this mark's read: same generation, and it started at least `lag` after the read.
    fn covered_by(self, generation: u32, round_start: Option<u32>, lag: u32) -> bool {
        self.generation == generation
            && round_start.is_some_and(|start| start >= self.at.saturating_add(lag))
    }
}

/// What one round of the feed reported, for waking the resources whose application or service
/// principal changed after their last read (instead of at their next resync).
pub struct Round {
    generation: u32,
    /// When the round before this one started: every change made more than the lag before that
    /// was reported by it or earlier, so a report in this round is a later change.
    covered_before: Option<u32>,
    lag: u32,
    /// The objects reported in this round (hashes of their IDs, as [`ChangeFeed::id_key`]).
    keys: HashSet<u64>,
}

impl Round {
    /// Whether any of the objects `ids` (keys from [`ChangeFeed::id_key`]) changed after the read
    /// `mark` was taken for: that read was already covered before this round, and this round
    /// reports one of them. A read not yet covered is left to its resync's own check.
    pub fn changed_after(&self, mark: Mark, ids: &[u64]) -> bool {
        mark.covered_by(self.generation, self.covered_before, self.lag)
            && ids.iter().any(|k| self.keys.contains(k))
    }

    /// Whether the round reported nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Default)]
struct FeedState {
    /// Bumped when tracking starts over: marks of an older generation are void.
    generation: u32,
    /// Delta links of the two collections, once the first round (from `latest`) completed.
    links: Option<[String; 2]>,
    /// When this generation's tracking started (seconds since the feed was created).
    tracking_since: u32,
    /// When the last completed round started.
    covered_until: Option<u32>,
    /// Objects reported in this generation (hash of the ID) and when they were last reported.
    changed: HashMap<u64, u32>,
}

/// The tenant's application and service principal changes, as far as a quiet resync needs them.
pub struct ChangeFeed {
    epoch: Instant,
    interval: Duration,
    /// [`LAG`], or less in tests.
    lag: u32,
    hasher: std::hash::RandomState,
    state: Mutex<FeedState>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed::new(DEFAULT_INTERVAL)
    }
}

#[derive(Deserialize)]
struct DeltaItem {
    id: String,
}

#[derive(Deserialize)]
struct DeltaPage {
    #[serde(default)]
    value: Vec<DeltaItem>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// The most pages one round follows (a round after a burst of 10,000 creates is about 100 pages
/// per collection).
const MAX_PAGES: usize = 2_000;

impl ChangeFeed {
    /// A feed that follows the delta links every `interval` once [`ChangeFeed::run`] runs. Until
    /// then (and when the operator's identity may not read them) it offers no mark, and every
    /// resync reads Graph as before.
    pub fn new(interval: Duration) -> Self {
        ChangeFeed::with_lag(interval, LAG)
    }

    /// As [`ChangeFeed::new`], assuming replicas lag by `lag` at most (tests shorten it).
    pub fn with_lag(interval: Duration, lag: Duration) -> Self {
        ChangeFeed {
            epoch: Instant::now(),
            interval,
            lag: u32::try_from(lag.as_secs()).unwrap_or(u32::MAX),
            hasher: std::hash::RandomState::new(),
            state: Mutex::new(FeedState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// The feed's key for an object ID (a hash, case-insensitive as Graph's IDs are).
    pub fn id_key(&self, id: &str) -> u64 {
        self.hasher.hash_one(id.to_ascii_lowercase())
    }

    /// A mark for a read about to start, or `None` when the feed is not tracking (not started,
    /// starting over, or started less than [`LAG`] ago).
    pub fn mark(&self) -> Option<Mark> {
        let now = self.now();
        let st = self.lock();
        let lag = self.lag;
        (st.links.is_some() && now >= st.tracking_since.saturating_add(lag)).then_some(Mark {
            generation: st.generation,
            at: now,
        })
    }

    /// Whether none of the objects `ids` can have changed since the read `mark` was taken for:
    /// tracking has not started over, a round that started [`LAG`] after the read has completed,
    /// and none of them was reported later than [`LAG`] before the read.
    pub fn unchanged_since(&self, mark: Mark, ids: &[&str]) -> bool {
        let keys: Vec<u64> = ids.iter().map(|id| self.id_key(id)).collect();
        let st = self.lock();
        let lag = self.lag;
        mark.covered_by(st.generation, st.covered_until, lag)
            && keys.iter().all(|k| {
                st.changed
                    .get(k)
                    .is_none_or(|reported| reported.saturating_add(lag) <= mark.at)
            })
    }

    /// A mark of the current generation at the current time, whatever the feed's state (unit
    /// tests elsewhere need one).
    #[cfg(test)]
    pub(crate) fn test_mark(&self) -> Mark {
        Mark {
            generation: self.lock().generation,
            at: self.now(),
        }
    }

    fn report(&self, items: &[DeltaItem], round: &mut HashSet<u64>) {
        let now = self.now();
        let keys: Vec<u64> = items.iter().map(|i| self.id_key(&i.id)).collect();
        let mut st = self.lock();
        for k in keys {
            st.changed.insert(k, now);
            round.insert(k);
        }
    }

    /// Tracking starts over: every mark so far is void.
    fn restart(&self) {
        let mut st = self.lock();
        st.generation = st.generation.wrapping_add(1);
        st.links = None;
        st.covered_until = None;
        st.changed = HashMap::new();
    }

    /// Follows the delta links every interval until `shutdown` resolves, handing every completed
    /// round of tracking to `on_round`.
    pub async fn run(
        self: std::sync::Arc<Self>,
        graph: GraphClient,
        shutdown: impl std::future::Future<Output = ()>,
        on_round: impl Fn(&Round),
    ) {
        tokio::pin!(shutdown);
        // Warned once per streak of failures, not every interval.
        let mut failing = false;
        loop {
            match self.round(&graph).await {
                Ok(round) => {
                    if let Some(round) = round.filter(|r| !r.is_empty()) {
                        on_round(&round);
                    }
                    if std::mem::take(&mut failing) {
                        tracing::info!("following the delta links again");
                    }
                }
                Err(error) if starts_over(&error) => {
                    tracing::info!(error = %error, "delta tracking starts over; the next resync of every resource reads Graph");
                    self.restart();
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(error = %error, "could not follow the delta links; resyncs read Graph in full until they can");
                }
                Err(error) => {
                    tracing::debug!(error = %error, "could not follow the delta links");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// One round: both collections from their delta link (or from `latest`) to the next one.
    /// What it reported, unless it was the first of its generation (from `latest`, which reports
    /// nothing) or tracking started over meanwhile.
    async fn round(&self, graph: &GraphClient) -> Result<Option<Round>, GraphError> {
        let started = self.now();
        let (links, generation) = {
            let st = self.lock();
            (st.links.clone(), st.generation)
        };
        let mut next: [String; 2] = Default::default();
        let mut keys = HashSet::new();
        for (i, (path, template)) in COLLECTIONS.iter().enumerate() {
            let first = match &links {
                Some(links) => links[i].clone(),
                None => format!("{path}?$deltatoken=latest"),
            };
            next[i] = self.follow(graph, first, template, &mut keys).await?;
        }
        let mut st = self.lock();
        if st.generation != generation {
            return Ok(None);
        }
        let round = if st.links.is_none() {
            st.tracking_since = started;
            None
        } else {
            let covered_before = st.covered_until.replace(started);
            Some(Round {
                generation,
                covered_before,
                lag: self.lag,
                keys,
            })
        };
        st.links = Some(next);
        Ok(round)
    }

    /// Pages from `link` to the delta link, reporting every object on the way.
    async fn follow(
        &self,
        graph: &GraphClient,
        link: String,
        template: &'static str,
        round: &mut HashSet<u64>,
    ) -> Result<String, GraphError> {
        let mut call = Call::get(
            link,
            template,
            super::error::Permission::ApplicationReadAll,
            1,
        );
        for _ in 0..MAX_PAGES {
            let page: DeltaPage = graph.fetch(&call).await?;
            self.report(&page.value, round);
            match (page.next_link, page.delta_link) {
                (Some(next), _) => call.path = next,
                (None, Some(delta)) => return Ok(delta),
                (None, None) => {
                    return Err(GraphError::Decode {
                        operation: call.operation(),
                        message: "a delta page without a next or delta link".into(),
                    });
                }
            }
        }
        Err(GraphError::Decode {
            operation: call.operation(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}

/// Whether an error of a delta round means the tracking state is gone: an expired or unknown
/// token (400, e.g. `syncStateNotFound`), 410 Gone, or a 404 on the link.
fn starts_over(error: &GraphError) -> bool {
    match error {
        GraphError::BadRequest(_) | GraphError::NotFound(_) => true,
        GraphError::Unexpected(detail) => detail.status == 410,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> DeltaItem {
        DeltaItem { id: id.into() }
    }

    /// A feed that tracks since `since` seconds, with its last round started at `covered`.
    fn tracking(feed: &ChangeFeed, since: u32, covered: Option<u32>) {
        let mut st = feed.lock();
        st.links = Some(Default::default());
        st.tracking_since = since;
        st.covered_until = covered;
    }

    #[tokio::test(start_paused = true)]
    async fn no_mark_before_tracking_has_run_for_the_lag() {
        let feed = ChangeFeed::new(Duration::from_secs(30));
        assert_eq!(feed.mark(), None, "not tracking");
        tracking(&feed, 0, None);
        assert_eq!(feed.mark(), None, "tracking for less than the lag");
        tokio::time::advance(LAG).await;
        assert!(feed.mark().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_only_once_a_later_round_completed_and_nothing_was_reported_after_the_read() {
        let feed = ChangeFeed::new(Duration::from_secs(30));
        tracking(&feed, 0, Some(0));
        feed.report(&[item("APP-1")], &mut HashSet::new()); // reported at 0
        tokio::time::advance(Duration::from_secs(40)).await;
        let mark = feed.mark().expect("tracking");
        // The read at 40 saw APP-1's change, reported 40 s before it.
        assert!(!feed.unchanged_since(mark, &["app-1"]), "no round since");
        tracking(&feed, 0, Some(60));
        assert!(
            !feed.unchanged_since(mark, &["app-1"]),
            "round began too soon"
        );
        tracking(&feed, 0, Some(70));
        assert!(feed.unchanged_since(mark, &["app-1", "sp-1"]));
        // A change reported after the read, or within the lag before it, is a change.
        tokio::time::advance(Duration::from_secs(1)).await;
        feed.report(&[item("sp-1")], &mut HashSet::new());
        assert!(!feed.unchanged_since(mark, &["app-1", "sp-1"]));
        assert!(feed.unchanged_since(mark, &["app-1"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_reported_just_before_the_read_counts_as_unseen() {
        let feed = ChangeFeed::new(Duration::from_secs(30));
        tracking(&feed, 0, None);
        tokio::time::advance(Duration::from_secs(100)).await;
        feed.report(&[item("app-1")], &mut HashSet::new()); // at 100
        tokio::time::advance(Duration::from_secs(29)).await;
        let mark = feed.mark().unwrap(); // at 129
        tracking(&feed, 0, Some(200));
        assert!(!feed.unchanged_since(mark, &["app-1"]));
        tokio::time::advance(Duration::from_secs(1)).await;
        let later = feed.mark().unwrap(); // at 130: the report is LAG old
        assert!(feed.unchanged_since(later, &["app-1"]));
    }

    #[tokio::test(start_paused = true)]
    async fn starting_over_voids_every_mark() {
        let feed = ChangeFeed::new(Duration::from_secs(30));
        tracking(&feed, 0, None);
        tokio::time::advance(Duration::from_secs(60)).await;
        let mark = feed.mark().unwrap();
        feed.restart();
        tracking(&feed, 0, Some(1_000));
        assert!(!feed.unchanged_since(mark, &["app-1"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_wakes_only_reads_it_reports_a_later_change_for() {
        let feed = ChangeFeed::new(Duration::from_secs(30));
        tracking(&feed, 0, Some(0));
        tokio::time::advance(Duration::from_secs(40)).await;
        let mark = feed.mark().expect("tracking"); // a read at 40
        let round = |covered_before: Option<u32>, ids: &[&str]| Round {
            generation: 0,
            covered_before,
            lag: LAG.as_secs() as u32,
            keys: ids.iter().map(|id| feed.id_key(id)).collect(),
        };
        let ids = [feed.id_key("app-1"), feed.id_key("sp-1")];
        // The round before this one began 30 s after the read: it reported everything up to the
        // read, so this round's report of the service principal is a later change.
        assert!(round(Some(70), &["SP-1"]).changed_after(mark, &ids));
        assert!(!round(Some(70), &["other"]).changed_after(mark, &ids));
        // The previous round began too soon after the read: this report may be of a change the
        // read saw (the operator's own last write), so it wakes nothing.
        assert!(!round(Some(69), &["app-1"]).changed_after(mark, &ids));
        assert!(!round(None, &["app-1"]).changed_after(mark, &ids));
        // A mark of an older generation is not this round's to judge.
        feed.restart();
        let newer = Round {
            generation: 1,
            ..round(Some(1_000), &["app-1"])
        };
        assert!(!newer.changed_after(mark, &ids));
    }

    #[test]
    fn expired_or_gone_tokens_start_over_and_throttling_does_not() {
        let detail = |status: u16, code: &str| super::super::error::ErrorDetail {
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
            operation: String::new(),
        };
        assert!(starts_over(&GraphError::BadRequest(detail(
            400,
            "syncStateNotFound"
        ))));
        assert!(starts_over(&GraphError::Unexpected(detail(410, "Gone"))));
        assert!(!starts_over(&GraphError::Server(detail(503, "x"))));
        assert!(!starts_over(&GraphError::Throttled {
            retry_after: None,
            detail: detail(429, "x"),
        }));
    }
}
