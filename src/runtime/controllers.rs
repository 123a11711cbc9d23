//! Wiring the controllers to the API server: what each watches, its concurrency, shutdown.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
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
    let controller = Controller::new(apps.clone(), watcher::Config::default());
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
