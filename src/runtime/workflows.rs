//! Wiring of the composed controllers (BankClient, TenantMapping, NaaIntegration): what each
//! watches, its concurrency, shutdown. Same shape as the AppRegistration controller's wiring.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::api::{AppRegistration, BankClient, NaaIntegration, TenantMapping};
use crate::controllers::composed_reconcile::error_policy;
use crate::controllers::context::Context;
use crate::controllers::{bankclient_reconcile, naaintegration_reconcile, tenantmapping_reconcile};

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

fn api_for<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A controller for `K` triggered by its own spec/metadata changes only.
fn controller_for<K>(api: Api<K>) -> Controller<K>
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

async fn drain<K, S, E>(stream: S)
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

/// Runs the BankClient controller until `shutdown` resolves and in-flight reconciles finish.
pub async fn run_bank_client_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let bank_clients: Api<BankClient> = api_for(&client, &namespace);
    let controller = controller_for(bank_clients.clone());
    let store = controller.store();
    let stream = controller
        // The child's status (appId, secret expiry, Ready) is what the parent mirrors.
        .owns(
            api_for::<AppRegistration>(&client, &namespace),
            watcher::Config::default(),
        )
        // A BankClient that lost a bankId conflict waits for the holder to go: any change of a
        // BankClient wakes the others claiming the same bankId.
        .watches(
            bank_clients,
            watcher::Config::default(),
            move |changed: BankClient| {
                let namespace = changed.namespace();
                let name = changed.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.namespace() == namespace
                            && c.name_any() != name
                            && c.spec.bank_id == changed.spec.bank_id
                    })
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(shutdown)
        .run(bankclient_reconcile::reconcile, error_policy, ctx);
    drain(stream).await;
}

/// Runs the TenantMapping controller until `shutdown` resolves and in-flight reconciles finish.
pub async fn run_tenant_mapping_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let mappings: Api<TenantMapping> = api_for(&client, &namespace);
    let controller = controller_for(mappings.clone());
    let store = controller.store();
    let apps_store = store.clone();
    let stream = controller
        // A listed or probe app that gets its appId or credential makes consent checkable.
        .watches(
            api_for::<AppRegistration>(&client, &namespace),
            watcher::Config::default(),
            move |changed: AppRegistration| {
                let namespace = changed.namespace();
                let name = changed.name_any();
                apps_store
                    .state()
                    .into_iter()
                    .filter(|m| {
                        m.namespace() == namespace
                            && tenantmapping_reconcile::referenced_apps(m).contains(&name)
                    })
                    .map(|m| ObjectRef::from_obj(&*m))
                    .collect::<Vec<_>>()
            },
        )
        // A mapping in conflict waits for the holder of its BankId or tenant to change or go.
        .watches(
            mappings,
            watcher::Config::default(),
            move |changed: TenantMapping| {
                let namespace = changed.namespace();
                let name = changed.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|m| {
                        m.namespace() == namespace
                            && m.name_any() != name
                            && (m
                                .spec
                                .tenant_id
                                .eq_ignore_ascii_case(&changed.spec.tenant_id)
                                || m.spec
                                    .bank_ids
                                    .iter()
                                    .any(|b| changed.spec.bank_ids.contains(b)))
                    })
                    .map(|m| ObjectRef::from_obj(&*m))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(shutdown)
        .run(tenantmapping_reconcile::reconcile, error_policy, ctx);
    drain(stream).await;
}

/// Runs the NaaIntegration controller until `shutdown` resolves and in-flight reconciles finish.
pub async fn run_naa_integration_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let integrations: Api<NaaIntegration> = api_for(&client, &namespace);
    let stream = controller_for(integrations)
        // Both children's status (appIds, Ready) feeds the parent and its ConfigMap.
        .owns(
            api_for::<AppRegistration>(&client, &namespace),
            watcher::Config::default(),
        )
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(shutdown)
        .run(naaintegration_reconcile::reconcile, error_policy, ctx);
    drain(stream).await;
}
