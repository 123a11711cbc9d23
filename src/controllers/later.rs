//! Far requeues (the hourly resync, a credential renewal days away) kept by the operator in one
//! small entry per object, instead of in kube-runtime's scheduler.
//!
//! kube-runtime's scheduler keeps every requeue as a whole reconcile request twice, in a hash map
//! and in a delay queue: two clones of the object's reference, each with its name, namespace, uid
//! and resourceVersion on the heap, about 700 bytes per object per controller (a heap profile of
//! 3,000 BankClients, BENCHMARKS.md "Scale"). Every settled resource sits there until its next
//! resync, so at 10,000 BankClients (and their 10,000 AppRegistrations) that was 13 MB of the
//! operator's memory. Here a far requeue is a namespace (shared), a name and a deadline, about
//! 100 bytes; near ones (a retry in seconds, a replication wait) stay with kube-runtime, where
//! they come and go.
//!
//! A reconcile asks [`Later::requeue`] for its `Action`: below [`FAR`] it is kube-runtime's
//! requeue (and any far entry of the object is dropped, so the last reconcile decides); at or
//! above it the entry is kept here and the controller is told to wait for a change. The
//! controller's [`Later::due`] stream hands due objects back to kube-runtime (`reconcile_on`),
//! checked once per [`TICK`] and only when something is due. An object its controller's store no
//! longer holds (deleted) is dropped, not handed back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;

use crate::api::Text;

/// From this wait on, a requeue is kept here rather than in kube-runtime's scheduler.
pub const FAR: Duration = Duration::from_secs(60);

/// How often the due entries are looked for (a far requeue runs at most this late).
pub const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    namespace: Text,
    name: Box<str>,
}

/// What the last full reconcile of an object saw, so that its resync can tell whether anything
/// changed without reading Graph again (a quiet resync, `appregistration/quiet.rs`). Kept with
/// the far entry and handed to the reconcile the entry brings back; any other trigger of the
/// object finds none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memo {
    /// When the application and service principal were read, in the change feed's terms.
    pub mark: crate::graph::Mark,
    /// The change feed's keys of the application and the service principal
    /// (`ChangeFeed::id_key`), so a round reporting either wakes the object ([`Later::wake`]).
    pub ids: [u64; 2],
    /// A hash of what the reconcile planned from in Kubernetes (spec, status, references,
    /// policies).
    pub inputs: u64,
    /// A hash of what it read from Graph that delta queries do not track (owners, federated
    /// credentials, assignments, grants).
    pub untracked: u64,
    /// When something time-based is due (a renewal): no quiet resync from then on.
    pub due: Option<i64>,
    /// Quiet resyncs since the last full one.
    pub streak: u8,
}

/// A far entry: its deadline, and the memo of the reconcile that asked for it.
type Entry = (Instant, Option<Box<Memo>>);

#[derive(Default)]
struct Entries {
    at: HashMap<Key, Entry>,
    /// Memos of entries handed back, until their reconcile takes them.
    fired: HashMap<Key, Box<Memo>>,
    /// The earliest deadline of each kind, or later (never after it): nothing of that kind is
    /// due before.
    next: HashMap<&'static str, Instant>,
}

/// Far requeues of every controller, by kind, namespace and name.
pub struct Later {
    far: Duration,
    entries: Mutex<Entries>,
}

impl Default for Later {
    fn default() -> Self {
        Later::new(FAR)
    }
}

impl Later {
    /// Requeues of `far` or longer are kept here (tests shorten it to exercise the path).
    pub fn new(far: Duration) -> Self {
        Later {
            far,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Action` that brings `obj` (of `kind`) back after `wait`: kube-runtime's requeue when
    /// `wait` is near, an entry here (and no requeue in kube-runtime) when it is far. Replaces
    /// what an earlier reconcile of `obj` asked for.
    pub fn requeue<K: Resource>(&self, kind: &'static str, obj: &K, wait: Duration) -> Action {
        self.requeue_with(kind, obj, wait, None)
    }

    /// As [`Later::requeue`], keeping `memo` with a far entry for the reconcile it brings back.
    pub fn requeue_with<K: Resource>(
        &self,
        kind: &'static str,
        obj: &K,
        wait: Duration,
        memo: Option<Memo>,
    ) -> Action {
        let key = key_of(kind, obj);
        let mut entries = self.lock();
        entries.fired.remove(&key);
        if wait < self.far {
            entries.at.remove(&key);
            return Action::requeue(wait);
        }
        let at = Instant::now() + wait;
        entries.at.insert(key, (at, memo.map(Box::new)));
        let next = entries.next.entry(kind).or_insert(at);
        *next = (*next).min(at);
        Action::await_change()
    }

    /// The memo of `obj`'s far entry if that entry brought this reconcile back (taken: asked
    /// twice, the second answer is `None`).
    pub fn take_memo<K: Resource>(&self, kind: &'static str, obj: &K) -> Option<Memo> {
        self.lock().fired.remove(&key_of(kind, obj)).map(|m| *m)
    }

    /// Drops the memo of an object something else changed (one of its Secrets): its next resync
    /// is a full one.
    pub fn forget_memo(&self, kind: &'static str, namespace: &str, name: &str) {
        let key = Key {
            kind,
            namespace: Text::label(namespace),
            name: name.into(),
        };
        let mut entries = self.lock();
        entries.fired.remove(&key);
        if let Some((_, memo)) = entries.at.get_mut(&key) {
            *memo = None;
        }
    }

    /// Drops every memo of `kind` (a cluster-wide input changed).
    pub fn forget_memos(&self, kind: &'static str) {
        let mut entries = self.lock();
        entries.fired.retain(|key, _| key.kind != kind);
        for (key, (_, memo)) in entries.at.iter_mut() {
            if key.kind == kind {
                *memo = None;
            }
        }
    }

    /// Brings back now every object whose memo `changed` says is out of date (the change feed
    /// reported its application or service principal after it was read), dropping the memo: its
    /// reconcile is a full one. Returns them, as `kind namespace/name`.
    pub fn wake(&self, changed: impl Fn(&Memo) -> bool) -> Vec<String> {
        let now = Instant::now();
        let mut entries = self.lock();
        let Entries { at, next, .. } = &mut *entries;
        let mut woken = Vec::new();
        for (key, (due, memo)) in at.iter_mut() {
            if memo.as_deref().is_some_and(&changed) {
                *memo = None;
                *due = now;
                next.insert(key.kind, now);
                woken.push(format!("{} {}/{}", key.kind, key.namespace, key.name));
            }
        }
        woken
    }

    /// Far requeues that hold a memo (their resync may be quiet, and a change feed round may wake
    /// them).
    pub fn memos(&self) -> usize {
        self.lock().at.values().filter(|(_, m)| m.is_some()).count()
    }

    /// Far requeues kept (all kinds).
    pub fn len(&self) -> usize {
        self.lock().at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the entries of `kind` due at `now`: (namespace, name).
    fn take_due(&self, kind: &'static str, now: Instant) -> Vec<(Text, Box<str>)> {
        let mut entries = self.lock();
        if entries.next.get(kind).is_none_or(|next| *next > now) {
            return Vec::new();
        }
        let taken: Vec<(Key, Entry)> = entries
            .at
            .extract_if(|key, (at, _)| key.kind == kind && *at <= now)
            .collect();
        let mut due = Vec::with_capacity(taken.len());
        for (key, (_, memo)) in taken {
            if let Some(memo) = memo {
                entries.fired.insert(key.clone(), memo);
            }
            due.push((key.namespace, key.name));
        }
        let next = entries
            .at
            .iter()
            .filter(|(key, _)| key.kind == kind)
            .map(|(_, (at, _))| *at)
            .min();
        match next {
            Some(next) => entries.next.insert(kind, next),
            None => entries.next.remove(kind),
        };
        if entries.at.capacity() > 2 * entries.at.len().max(64) {
            // Many gone at once (a namespace deleted): give the room back.
            entries.at.shrink_to_fit();
        }
        due
    }

    /// The objects of `kind` whose far requeue is due, for the controller's `reconcile_on`;
    /// one its `store` no longer holds is dropped. Never ends.
    pub fn due<K>(
        self: Arc<Self>,
        kind: &'static str,
        store: Store<K>,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        futures::stream::unfold((self, store), move |(later, store)| async move {
            tokio::time::sleep(TICK).await;
            let mut due = Vec::new();
            for (namespace, name) in later.take_due(kind, Instant::now()) {
                let reference = ObjectRef::<K>::new(&name).within(&namespace);
                if store.get(&reference).is_some() {
                    due.push(reference);
                } else {
                    later.forget_memo(kind, &namespace, &name);
                }
            }
            Some((futures::stream::iter(due), (later, store)))
        })
        .flatten()
    }
}

fn key_of<K: Resource>(kind: &'static str, obj: &K) -> Key {
    Key {
        kind,
        namespace: Text::label(obj.meta().namespace.as_deref().unwrap_or_default()),
        name: obj.meta().name.as_deref().unwrap_or_default().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppRegistration;
    use kube::runtime::reflector;
    use kube::runtime::watcher;

    fn app(namespace: &str, name: &str) -> AppRegistration {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"displayName": name}
        }))
        .expect("an AppRegistration")
    }

    #[tokio::test(start_paused = true)]
    async fn far_waits_are_kept_here_and_near_ones_go_to_kube_runtime_replacing_the_far_one() {
        let later = Later::new(Duration::from_secs(60));
        let a = app("team-a", "orders");
        assert_eq!(
            later.requeue("AppRegistration", &a, Duration::from_secs(3600)),
            Action::await_change()
        );
        assert_eq!(later.len(), 1);
        // The same object again: one entry, the last reconcile's deadline.
        later.requeue("AppRegistration", &a, Duration::from_secs(120));
        assert_eq!(later.len(), 1);
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(later.take_due("AppRegistration", Instant::now()).is_empty());
        // A near requeue is kube-runtime's, and the far one is gone.
        assert_eq!(
            later.requeue("AppRegistration", &a, Duration::from_secs(5)),
            Action::requeue(Duration::from_secs(5))
        );
        assert!(later.is_empty());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(later.take_due("AppRegistration", Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn only_due_entries_of_the_asked_kind_are_taken_once() {
        let later = Later::new(Duration::from_secs(60));
        // The kind is the key's: the same object under another kind is another entry.
        let bank = app("team-a", "orders");
        later.requeue(
            "AppRegistration",
            &app("team-a", "orders"),
            Duration::from_secs(60),
        );
        later.requeue(
            "AppRegistration",
            &app("team-b", "orders"),
            Duration::from_secs(600),
        );
        later.requeue("BankClient", &bank, Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(61)).await;
        let due = later.take_due("AppRegistration", Instant::now());
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0.as_str(), &*due[0].1), ("team-a", "orders"));
        assert!(later.take_due("AppRegistration", Instant::now()).is_empty());
        assert_eq!(later.len(), 2, "team-b's and the BankClient's are kept");
        assert_eq!(later.take_due("BankClient", Instant::now()).len(), 1);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(later.take_due("AppRegistration", Instant::now()).len(), 1);
        assert!(later.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_due_stream_hands_back_stored_objects_and_drops_deleted_ones() {
        let later = Arc::new(Later::new(Duration::from_secs(60)));
        let (store, mut writer) = reflector::store::<AppRegistration>();
        let kept = app("team-a", "kept");
        writer.apply_watcher_event(&watcher::Event::Apply(kept.clone()));
        later.requeue("AppRegistration", &kept, Duration::from_secs(60));
        later.requeue(
            "AppRegistration",
            &app("team-a", "deleted"),
            Duration::from_secs(60),
        );
        let mut due = Box::pin(later.clone().due("AppRegistration", store));
        let next = tokio::time::timeout(Duration::from_secs(120), due.next())
            .await
            .expect("the kept object comes back after its wait");
        assert_eq!(next, Some(ObjectRef::new("kept").within("team-a")));
        assert!(
            tokio::time::timeout(Duration::from_secs(600), due.next())
                .await
                .is_err(),
            "the deleted object is not handed back"
        );
        assert!(later.is_empty());
    }

    fn memo(streak: u8) -> Memo {
        let feed = crate::graph::ChangeFeed::new(Duration::from_secs(30));
        Memo {
            mark: feed.test_mark(),
            ids: [u64::from(streak), 100],
            inputs: 1,
            untracked: 2,
            due: None,
            streak,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_memo_reaches_only_the_reconcile_its_entry_brings_back_and_a_forget_drops_it() {
        let later = Later::new(Duration::from_secs(60));
        let a = app("team-a", "orders");
        let b = app("team-a", "billing");
        later.requeue_with(
            "AppRegistration",
            &a,
            Duration::from_secs(60),
            Some(memo(1)),
        );
        later.requeue_with(
            "AppRegistration",
            &b,
            Duration::from_secs(60),
            Some(memo(2)),
        );
        // Not due yet: a reconcile (of another trigger) finds no memo.
        assert_eq!(later.take_memo("AppRegistration", &a), None);
        later.forget_memo("AppRegistration", "team-a", "billing");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(later.take_due("AppRegistration", Instant::now()).len(), 2);
        assert_eq!(later.take_memo("AppRegistration", &a), Some(memo(1)));
        assert_eq!(later.take_memo("AppRegistration", &a), None, "taken once");
        assert_eq!(later.take_memo("AppRegistration", &b), None, "forgotten");
        // A near requeue drops what was handed back and not taken.
        later.requeue_with(
            "AppRegistration",
            &a,
            Duration::from_secs(60),
            Some(memo(3)),
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        later.take_due("AppRegistration", Instant::now());
        later.requeue("AppRegistration", &a, Duration::from_secs(1));
        assert_eq!(later.take_memo("AppRegistration", &a), None);
        // A cluster-wide change drops every memo of the kind.
        later.requeue_with(
            "AppRegistration",
            &a,
            Duration::from_secs(60),
            Some(memo(4)),
        );
        later.forget_memos("AppRegistration");
        tokio::time::advance(Duration::from_secs(61)).await;
        later.take_due("AppRegistration", Instant::now());
        assert_eq!(later.take_memo("AppRegistration", &a), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_brings_back_now_only_the_objects_whose_memo_is_out_of_date() {
        let later = Later::new(Duration::from_secs(60));
        let a = app("team-a", "orders");
        let b = app("team-a", "billing");
        let c = app("team-a", "no-memo");
        for (obj, memo) in [(&a, Some(memo(1))), (&b, Some(memo(2))), (&c, None)] {
            later.requeue_with("AppRegistration", obj, Duration::from_secs(3600), memo);
        }
        assert!(
            later.wake(|m| m.ids[0] == 7).is_empty(),
            "nothing out of date"
        );
        assert!(later.take_due("AppRegistration", Instant::now()).is_empty());
        assert_eq!(
            later.wake(|m| m.ids[0] == 2),
            ["AppRegistration team-a/billing"]
        );
        let due = later.take_due("AppRegistration", Instant::now());
        assert_eq!(due.len(), 1, "only billing is due now");
        assert_eq!(&*due[0].1, "billing");
        assert_eq!(
            later.take_memo("AppRegistration", &b),
            None,
            "its reconcile is a full one"
        );
        // The others keep their deadline and their memo.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(later.take_due("AppRegistration", Instant::now()).len(), 2);
        assert_eq!(later.take_memo("AppRegistration", &a), Some(memo(1)));
    }
}
