//! Registry ConfigMaps written once per burst: a reconcile asks for the namespace's registry to be
//! written; the writer waits a short window, computes the registry from the (reflector) store at
//! that moment and writes it if it differs from what it wrote last. A burst of 1,000 BankClients
//! turning Ready costs a handful of ConfigMap writes, not 1,000 of a growing ConfigMap.
//!
//! Writes of one namespace's registry are serialised and each computes its data under that lock
//! from a store that only moves forward, so a write never carries an older view than the write
//! before it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;

use crate::controllers::children::apply_config_map;
use crate::controllers::context::Context;
use crate::controllers::error::Error;

/// How long a request waits for others of the same burst before the write.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(250);

type Compute = dyn Fn(&str) -> BTreeMap<String, String> + Send + Sync;

struct Slot {
    /// A write was asked for since the last one started.
    dirty: bool,
    /// Requests so far; a write that starts after request `n` covers it.
    requested: u64,
    /// The request number the latest finished write covers (unchanged data counts as written).
    covered: tokio::sync::watch::Sender<u64>,
    /// A writer task is waiting or writing.
    running: bool,
    /// What the last successful write put there, and when.
    written: Option<(BTreeMap<String, String>, std::time::Instant)>,
    /// Held while computing and writing.
    write: Arc<tokio::sync::Mutex<()>>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            dirty: false,
            requested: 0,
            covered: tokio::sync::watch::Sender::new(0),
            running: false,
            written: None,
            write: Default::default(),
        }
    }
}

/// How long a reconcile waits for the write that carries its entry before it fails (and retries
/// with backoff).
const WAIT_FOR_WRITE: Duration = Duration::from_secs(30);

/// The coalescing writer of one registry ConfigMap (`name`) in every namespace.
pub struct CoalescedConfigMap {
    name: &'static str,
    window: Duration,
    compute: Arc<Compute>,
    slots: Mutex<HashMap<String, Slot>>,
    writes: std::sync::atomic::AtomicU64,
}

impl CoalescedConfigMap {
    /// `compute`: the registry's data for a namespace, from the stores as they are now.
    pub fn new(
        name: &'static str,
        window: Duration,
        compute: impl Fn(&str) -> BTreeMap<String, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(CoalescedConfigMap {
            name,
            window,
            compute: Arc::new(compute),
            slots: Mutex::new(HashMap::new()),
            writes: Default::default(),
        })
    }

    /// ConfigMap writes sent so far (for tests and the benchmark).
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ask for the namespace's registry to be written soon (returns at once). Nothing is computed
    /// here: the writer computes the registry once per window, however many reconciles asked, and
    /// skips the write when it is what was last written (computing it per request made every
    /// BankClient reconcile cost the whole namespace's registry). Returns the request's number.
    pub fn request(self: &Arc<Self>, ctx: &Arc<Context>, namespace: &str) -> u64 {
        let mut slots = self.slots.lock().expect("coalescer poisoned");
        let slot = slots.entry(namespace.to_string()).or_default();
        slot.dirty = true;
        slot.requested += 1;
        let number = slot.requested;
        if !slot.running {
            slot.running = true;
            let this = self.clone();
            let ctx = ctx.clone();
            let namespace = namespace.to_string();
            tokio::spawn(async move { this.writer(ctx, namespace).await });
        }
        number
    }

    /// As `request`, then wait until what was last written holds `entry` (key, value): a
    /// BankClient is Ready only once the registry the API reads holds it. Many reconciles of a
    /// burst wait for the same write. The entry may come from a fresher answer than the store
    /// the writer computes from; then the next write (once the store has caught up) is awaited.
    pub async fn request_and_wait(
        self: &Arc<Self>,
        ctx: &Arc<Context>,
        namespace: &str,
        entry: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        let Some((key, value)) = entry else {
            self.request(ctx, namespace);
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + WAIT_FOR_WRITE;
        loop {
            let number = self.request(ctx, namespace);
            let (held, mut covered) = {
                let mut slots = self.slots.lock().expect("coalescer poisoned");
                let slot = slots.entry(namespace.to_string()).or_default();
                let held = slot
                    .written
                    .as_ref()
                    .is_some_and(|(w, _)| w.get(key).map(String::as_str) == Some(value));
                (held, slot.covered.subscribe())
            };
            if held {
                return Ok(());
            }
            // Covered but not held: the store had not caught up with the answer that named the
            // entry yet; the next request is computed from a newer store.
            let waited = tokio::time::timeout_at(deadline, covered.wait_for(|c| *c >= number))
                .await
                .is_ok();
            if !waited {
                return Err(Error::Invalid(format!(
                    "the {} ConfigMap of namespace {namespace} did not take {key} within {WAIT_FOR_WRITE:?}",
                    self.name
                )));
            }
        }
    }

    async fn writer(self: Arc<Self>, ctx: Arc<Context>, namespace: String) {
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(self.window).await;
            {
                let mut slots = self.slots.lock().expect("coalescer poisoned");
                let slot = slots.entry(namespace.clone()).or_default();
                if !slot.dirty {
                    slot.running = false;
                    return;
                }
                slot.dirty = false;
            }
            if let Err(e) = self.write_now(&ctx, &namespace).await {
                failures += 1;
                let wait = crate::controllers::context::backoff(Duration::from_secs(1), failures);
                warn!(configmap = self.name, namespace, error = %e, retry_in = ?wait, "registry write failed");
                self.slots
                    .lock()
                    .expect("coalescer poisoned")
                    .entry(namespace.clone())
                    .or_default()
                    .dirty = true;
                tokio::time::sleep(wait).await;
            } else {
                failures = 0;
            }
        }
    }

    /// Compute and write the namespace's registry now (skipped when it is what was last
    /// written); returns once written. For a deletion that must see its row gone first.
    pub async fn write_now(&self, ctx: &Context, namespace: &str) -> Result<(), Error> {
        let lock = self
            .slots
            .lock()
            .expect("coalescer poisoned")
            .entry(namespace.to_string())
            .or_default()
            .write
            .clone();
        let _held = lock.lock().await;
        // Every request made before this point is covered by what is computed now.
        let covers = self
            .slots
            .lock()
            .expect("coalescer poisoned")
            .get(namespace)
            .map(|s| s.requested)
            .unwrap_or(0);
        let data = (self.compute)(namespace);
        let unchanged = self
            .slots
            .lock()
            .expect("coalescer poisoned")
            .get(namespace)
            .and_then(|s| s.written.as_ref())
            // Written again once per resync period even when unchanged, so a hand edit of the
            // ConfigMap is repaired as it was when every reconcile wrote it.
            .is_some_and(|(written, at)| *written == data && at.elapsed() < ctx.settings.resync);
        if unchanged {
            self.mark_covered(namespace, covers);
            return Ok(());
        }
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            configmap = self.name,
            namespace,
            entries = data.len(),
            "writing registry"
        );
        apply_config_map(ctx, namespace, self.name, &data, &BTreeMap::new(), None).await?;
        self.slots
            .lock()
            .expect("coalescer poisoned")
            .entry(namespace.to_string())
            .or_default()
            .written = Some((data, std::time::Instant::now()));
        self.mark_covered(namespace, covers);
        Ok(())
    }

    fn mark_covered(&self, namespace: &str, covers: u64) {
        if let Some(slot) = self
            .slots
            .lock()
            .expect("coalescer poisoned")
            .get(namespace)
        {
            slot.covered.send_if_modified(|c| {
                let advance = covers > *c;
                if advance {
                    *c = covers;
                }
                advance
            });
        }
    }
}
