//! Wiring the controllers to the API server: what each watches, its concurrency, shutdown.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use crate::api::AppRegistration;
use crate::controllers::appregistration::reconcile::{error_policy, reconcile};
use crate::controllers::appregistration::references::referenced_names;
use crate::controllers::context::Context;
use crate::credentials::{LABEL_MANAGED_BY, MANAGED_BY};

/// Label selector of the objects the operator owns (only these Secrets are cached).
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// Hash of what a reconcile depends on in the object itself (not its status).
fn spec_or_metadata_changed(obj: &AppRegistration) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut hasher);
    obj.annotations().hash(&mut hasher);
    obj.finalizers().hash(&mut hasher);
    obj.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
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
    let (apps, secrets): (Api<AppRegistration>, Api<Secret>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Status writes must not wake the resource up again (a failure message with a fresh trace ID
    // would otherwise turn into a retry loop that ignores backoff): only spec, annotations,
    // finalizers and deletion trigger a reconcile of the resource itself.
    let (reader, writer) = reflector::store();
    let trigger = watcher::watcher(apps.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_metadata_changed, PredicateConfig::default());
    let controller = Controller::for_stream(trigger, reader);
    let store = controller.store();
    controller
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
        .run(reconcile, error_policy, ctx)
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
