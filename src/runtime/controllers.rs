//! Wiring the controllers to the API server: what each watches, its concurrency, shutdown.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::api::AppRegistration;
use crate::controllers::appregistration::reconcile::reconcile;
use crate::controllers::appregistration::references::referenced_names;
use crate::controllers::composed_reconcile::error_policy;
use crate::controllers::context::Context;
use crate::credentials::{LABEL_MANAGED_BY, MANAGED_BY};

/// Label selector of the objects the operator owns (only these Secrets are cached).
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

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

pub(crate) fn api_for<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A controller for `K` triggered by its own spec/metadata changes only.
pub(crate) fn controller_for<K>(api: Api<K>) -> Controller<K>
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
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_metadata_changed::<K>, PredicateConfig::default());
    Controller::for_stream(trigger, reader)
}

pub(crate) async fn drain<K, S, E>(stream: S)
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

/// Runs the AppRegistration controller in one namespace (or all, with `None`) until `shutdown`
/// resolves and in-flight reconciles finish.
pub async fn run_app_registration_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client: Client = ctx.client.clone();
    let apps: Api<AppRegistration> = api_for(&client, &namespace);
    let secrets: Api<Secret> = api_for(&client, &namespace);
    // Status writes must not wake the resource up again (a failure message with a fresh trace ID
    // would otherwise turn into a retry loop that ignores backoff).
    let controller = controller_for(apps.clone());
    let store = controller.store();
    let stream = controller
        .owns(
            secrets,
            watcher::Config::default().labels(&managed_selector()),
        )
        // An AppRegistration whose status changed may be what another one waits for (appRef).
        .watches(
            apps,
            watcher::Config::default(),
            move |changed: AppRegistration| {
                let namespace = changed.namespace();
                let name = changed.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|candidate| {
                        candidate.namespace() == namespace
                            && referenced_names(&candidate.spec).contains(&name)
                    })
                    .map(|candidate| ObjectRef::from_obj(&*candidate))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    drain(stream).await;
}
