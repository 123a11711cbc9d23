//! Wiring of the composed controllers (BankClient, TenantMapping, NaaIntegration): what each
//! watches, its concurrency, shutdown. Same shape as the AppRegistration controller's wiring.

use std::future::Future;
use std::sync::Arc;

use kube::runtime::controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::api::{AppRegistration, BankClient, NaaIntegration, TenantMapping};
use crate::controllers::composed_reconcile::error_policy;
use crate::controllers::context::Context;
use crate::controllers::{bankclient_reconcile, naaintegration_reconcile, tenantmapping_reconcile};

use super::controllers::{api_for, controller_for, drain};

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
