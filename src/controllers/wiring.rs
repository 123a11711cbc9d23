//! What every controller shares in how it runs: its trigger (the object's own spec and metadata,
//! not its status), the stream drain, the error policy with backoff, and the reconcile metrics.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::store_ready::{MarkReady, StoreReady};
use crate::metrics::{KindLabels, ReconcileLabels};

/// Hash of what a reconcile depends on in the object itself (not its status): status writes must
/// not wake the resource again, or every reconcile would schedule the next one.
fn spec_or_metadata_changed<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut hasher);
    obj.meta().annotations.hash(&mut hasher);
    obj.meta().finalizers.hash(&mut hasher);
    obj.meta().deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

pub fn api_for<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A controller for `K` triggered by its own spec/metadata changes only.
pub fn controller_for<K>(api: Api<K>) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let trigger = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(prune_for_store::<K>)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_metadata_changed::<K>, PredicateConfig::default());
    Controller::for_stream(trigger, reader)
}

pub async fn drain<K, S, E>(stream: S)
where
    K: Resource,
    S: futures::Stream<
            Item = Result<(ObjectRef<K>, controller::Action), controller::Error<E, watcher::Error>>,
        >,
    E: std::error::Error + 'static,
{
    stream
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    debug!(object = %obj, error = %e, "reconcile failed")
                }
                Err(e) => warn!(error = %e, "controller error"),
            }
        })
        .await;
}

/// Drops what no reconcile reads before an object is kept in memory: `managedFields` is often the
/// largest part of an object the operator applies (one entry per field manager, each listing
/// every field it owns), and `kubectl apply` (client-side, also Argo CD's default) keeps a whole
/// copy of the applied object in the `kubectl.kubernetes.io/last-applied-configuration`
/// annotation. Labels go too: no reconcile reads a stored object's labels (the managed-by checks
/// read the object from the API server; policies read the namespace's labels), and a label map
/// costs a whole B-tree node (about 550 bytes) however few labels it holds, 6 MiB for 10,000
/// BankClients' children. A reconcile that needs an object's labels must read them from the API
/// server, not from a store. Stores hold every watched object. kube-rs's own advice for
/// controller memory (https://kube.rs/controllers/optimization/, "Pruning Fields").
pub fn prune_for_store<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `namespace/name`, the key of failure counts and log lines.
pub fn object_key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Requeue with backoff after a failure (the status already says what failed).
pub fn error_policy<K: ResourceExt>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(obj.as_ref());
    if let Error::Graph(crate::graph::GraphError::Replicating(_)) = error {
        // Not a failure: an object this operator just created is not visible yet. Look again in
        // a second (Entra's replication takes seconds) without growing the backoff; the worker
        // is free meanwhile. Bounded: the Graph client calls it replication only for objects it
        // created in the last two minutes.
        debug!(object = %key, error = %error, "waiting for Entra replication");
        return Action::requeue(error.base_retry());
    }
    if error.is_stale_cache() {
        debug!(object = %key, error = %error, "watch cache behind the API server; looking again");
        return Action::requeue(std::time::Duration::from_secs(1));
    }
    let wait = ctx.record_failure(&key, error.base_retry());
    warn!(object = %key, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Count one reconcile and its duration under `kind`.
pub fn record_reconcile<T>(
    ctx: &Context,
    kind: &'static str,
    started: std::time::Instant,
    result: &Result<T, Error>,
) {
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind,
            result: match result {
                Ok(_) => "success",
                Err(e) => e.category(),
            },
        })
        .inc();
}

/// Room for objects a shared store's slowest subscriber has not taken yet (the reflector waits
/// when it is full, so nothing is lost).
pub const SUBSCRIBE_BUFFER: usize = 1024;

/// One watch of `K` feeding a store that several triggers subscribe to: a subscriber sees an
/// object only after the store holds it, so a reconcile it starts reads a store at least as new
/// as what woke it (a separate watch per trigger could wake a reconcile before the store knows).
pub struct SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub store: reflector::Store<K>,
    writer: reflector::store::Writer<K>,
    /// Set by the watch once the store holds its first full list.
    pub ready: StoreReady,
    mark_ready: MarkReady,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store_shared(SUBSCRIBE_BUFFER);
        let (mark_ready, ready) = StoreReady::pair();
        SharedWatch {
            store,
            writer,
            ready,
            mark_ready,
        }
    }

    /// Every object the store takes in (applied or listed again), after it took it in.
    pub fn subscribe(&self) -> reflector::ReflectHandle<K> {
        self.writer
            .subscribe()
            .expect("a shared store can be subscribed to")
    }

    /// The store and a subscription, for a controller that reads the store and is woken by what
    /// it takes in. Taken before the watch runs, so the subscriber sees the first list too.
    pub fn feed(&self) -> Feed<K> {
        Feed {
            store: self.store.clone(),
            events: self.subscribe(),
            ready: self.ready.clone(),
        }
    }

    /// Runs the watch into the store until dropped (the controller's task polls it beside the
    /// controller's stream).
    pub fn run(
        self,
        api: Api<K>,
        config: watcher::Config,
    ) -> impl std::future::Future<Output = ()> {
        let mark_ready = self.mark_ready;
        watcher::watcher(api, config)
            .default_backoff()
            .modify(prune_for_store::<K>)
            .reflect_shared(self.writer)
            .for_each(move |event| {
                match event {
                    // The reflector has applied it: the store holds the whole list.
                    Ok(watcher::Event::InitDone) => mark_ready.mark(),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "watch failed; retrying with backoff"),
                }
                std::future::ready(())
            })
    }
}

/// One subscriber's share of a [`SharedWatch`]: the store, and every object the store takes in.
pub struct Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub store: reflector::Store<K>,
    pub events: reflector::ReflectHandle<K>,
    /// The store holds its first full list (never through `Store::wait_until_ready`, which wakes
    /// only one of several waiters; see [`StoreReady`]).
    pub ready: StoreReady,
}

impl<K> Default for SharedWatch<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

/// The objects of `stream` whose spec or metadata changed since last seen (as `controller_for`'s
/// trigger does for an unshared watch): a status write does not wake the resource again.
pub fn spec_changes<K, S>(stream: S) -> impl futures::Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    S: futures::Stream<Item = Arc<K>> + Send + 'static,
{
    changes_of(
        stream,
        |obj: &K| spec_or_metadata_changed(obj).unwrap_or_default(),
        false,
    )
}

/// The objects of `stream` whose `view` (a hash of what the consumer acts on) changed since last
/// seen; with `going`, also every event of an object being deleted (its view may not change while
/// it goes, and the consumer must see it go). kube-runtime's shared watches never hand on the
/// deletion itself.
///
/// What was last seen of each object is two numbers, a hash of its identity and its view, not its
/// reference: the map holds every watched object (its reference would be four strings each). Two
/// objects whose identities hash alike share an entry, so one may be woken once more than needed;
/// a wake is never lost unless a 64-bit hash of one object's new view equals the other's.
pub fn changes_of<K, S>(
    stream: S,
    view: fn(&K) -> u64,
    going: bool,
) -> impl futures::Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    S: futures::Stream<Item = Arc<K>> + Send + 'static,
{
    let mut seen: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    stream.filter(move |obj| {
        let key = identity_hash(obj.meta());
        let hash = view(obj.as_ref());
        let changed = seen.insert(key, hash) != Some(hash);
        let deleting = obj.meta().deletion_timestamp.is_some();
        if deleting && seen.len() > 1024 {
            // Forget objects on their way out so the map does not grow with churn; a later
            // event of the same object counts as a change, which is harmless.
            seen.remove(&key);
        }
        futures::future::ready(changed || (going && deleting))
    })
}

/// Feeds `Debug` output to a hasher without building the string.
struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        use std::hash::Hasher;
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// A hash of `value`'s `Debug` form (for views of types that do not implement `Hash`).
pub fn debug_hash(value: &dyn std::fmt::Debug) -> u64 {
    use std::fmt::Write as _;
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let _ = write!(HashWriter(&mut hasher), "{value:?}");
    hasher.finish()
}

/// A hash of which object this is: namespace, name and UID.
fn identity_hash(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.namespace.hash(&mut hasher);
    meta.name.hash(&mut hasher);
    meta.uid.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BankClient;

    fn child(app_id: Option<&str>, object_id: Option<&str>) -> crate::api::AppRegistration {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": "bankclient-nordbank", "namespace": "banks", "uid": "u1",
                         "generation": 1},
            "spec": {"displayName": "x"},
            "status": {"appId": app_id, "objectId": object_id}
        }))
        .expect("an AppRegistration")
    }

    #[tokio::test]
    async fn only_changed_views_pass_and_an_object_being_deleted_always_does() {
        use crate::controllers::bankclient::report::mirrored_view;
        let recorded = child(None, Some("object-1"));
        let with_app_id = child(Some("app-1"), Some("object-1"));
        let mut going = with_app_id.clone();
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let events = [
            child(None, None),
            recorded, // the IDs only: not what the parent mirrors
            with_app_id.clone(),
            with_app_id, // seen
            going.clone(),
            going, // its finalizer removed: the same view, and it passes
        ];
        let passed: Vec<_> = changes_of(
            futures::stream::iter(events.into_iter().map(Arc::new)),
            mirrored_view,
            true,
        )
        .collect()
        .await;
        let app_ids: Vec<_> = passed
            .iter()
            .map(|c| {
                (
                    c.status.as_ref().and_then(|s| s.app_id.as_deref()),
                    c.metadata.deletion_timestamp.is_some(),
                )
            })
            .collect();
        assert_eq!(
            app_ids,
            [
                (None, false),
                (Some("app-1"), false),
                (Some("app-1"), true),
                (Some("app-1"), true)
            ]
        );
    }

    #[test]
    fn stored_objects_lose_managed_fields_labels_and_the_last_applied_copy_only() {
        let mut bc: BankClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "metadata": {
                "name": "nordbank", "namespace": "banks",
                "labels": {"app.kubernetes.io/instance": "banks"},
                "annotations": {
                    LAST_APPLIED: "{\"spec\":{\"bankId\":\"nordbank\"}}",
                    "entra.bookme.io/handover-confirmed": "k-new",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"bankId": "nordbank", "api": {"appRef": {"name": "api"}, "role": "System"},
                     "secret": {"name": "nordbank-credentials"}},
        }))
        .unwrap();
        prune_for_store(&mut bc);
        assert!(bc.metadata.managed_fields.is_none());
        assert!(bc.metadata.labels.is_none());
        assert_eq!(
            bc.metadata.annotations,
            Some(std::collections::BTreeMap::from([(
                "entra.bookme.io/handover-confirmed".to_string(),
                "k-new".to_string()
            )]))
        );
        let mut only_last_applied: BankClient = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b", "annotations": {LAST_APPLIED: "{}"}},
            "spec": {"bankId": "b", "api": {"appRef": {"name": "api"}, "role": "System"},
                     "secret": {"name": "b"}},
        }))
        .unwrap();
        prune_for_store(&mut only_last_applied);
        assert_eq!(only_last_applied.metadata.annotations, None);
    }

    #[tokio::test]
    async fn spec_changes_passes_spec_and_metadata_changes_only_and_tracks_each_object() {
        let bank_client = |name: &str, generation: i64, reason: &str| -> Arc<BankClient> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "banks", "uid": format!("uid-{name}"),
                                 "generation": generation},
                    "spec": {"bankId": name, "api": {"appRef": {"name": "api"}, "role": "System"},
                             "secret": {"name": name}},
                    "status": {"conditions": [{"type": "Ready", "status": "False", "reason": reason,
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
                }))
                .unwrap(),
            )
        };
        let events = vec![
            bank_client("a", 1, "Creating"),
            bank_client("b", 1, "Creating"),
            // Status writes only: not passed.
            bank_client("a", 1, "Ready"),
            bank_client("b", 1, "Ready"),
            // A new generation of one: passed, the other still seen as it was.
            bank_client("b", 2, "Ready"),
            bank_client("a", 1, "Ready"),
        ];
        let passed: Vec<(String, Option<i64>)> = spec_changes(futures::stream::iter(events))
            .map(|bc| (bc.name_any(), bc.metadata.generation))
            .collect()
            .await;
        assert_eq!(
            passed,
            vec![
                ("a".to_string(), Some(1)),
                ("b".to_string(), Some(1)),
                ("b".to_string(), Some(2)),
            ]
        );
    }
}
