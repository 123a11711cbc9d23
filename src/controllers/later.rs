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

#[derive(Default)]
struct Entries {
    at: HashMap<Key, Instant>,
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
        let key = Key {
            kind,
            namespace: Text::label(obj.meta().namespace.as_deref().unwrap_or_default()),
            name: obj.meta().name.as_deref().unwrap_or_default().into(),
        };
        let mut entries = self.lock();
        if wait < self.far {
            entries.at.remove(&key);
            return Action::requeue(wait);
        }
        let at = Instant::now() + wait;
        entries.at.insert(key, at);
        let next = entries.next.entry(kind).or_insert(at);
        *next = (*next).min(at);
        Action::await_change()
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
        let due: Vec<(Text, Box<str>)> = entries
            .at
            .extract_if(|key, at| key.kind == kind && *at <= now)
            .map(|(key, _)| (key.namespace, key.name))
            .collect();
        let next = entries
            .at
            .iter()
            .filter(|(key, _)| key.kind == kind)
            .map(|(_, at)| *at)
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
        futures::stream::unfold(self, move |later| async move {
            tokio::time::sleep(TICK).await;
            let due = later.take_due(kind, Instant::now());
            Some((futures::stream::iter(due), later))
        })
        .flatten()
        .filter_map(move |(namespace, name)| {
            let reference = ObjectRef::<K>::new(&name).within(&namespace);
            let kept = store.get(&reference).is_some();
            std::future::ready(kept.then_some(reference))
        })
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
}
