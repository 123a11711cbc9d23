//! The TenantMapping controller: verify the customer tenant through Graph, probe consent of each
//! listed app with a client-credentials token request in that tenant (on an interval, or when the
//! recheck annotation changes), rewrite the namespace's tenant-mappings registry, and report.
//! Rooms: `observe` (claims, probes), `plan` (pure: registry, when to check, consent from a
//! probe), `execute` (the registry), `report` (pure: conditions); this file holds the entry point
//! and the wiring.

pub mod execute;
pub mod observe;
pub mod plan;
pub mod report;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{debug, info};

use crate::api::tenantmapping::{TenantConsentState, TenantInfo};
use crate::api::{AppRegistration, RECHECK_ANNOTATION, TenantMapping, condition};
use crate::controllers::children::REGISTRY_FINALIZER;
use crate::controllers::conditions::merge_conditions;
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::events::publish;
use crate::controllers::registry_sink;
use crate::controllers::status_writer::apply_status;
use crate::controllers::wiring::{
    Feed, SharedWatch, api_for, drain, error_policy, object_key, record_reconcile, spec_changes,
};
use crate::graph::GraphError;

use self::execute::rewrite_registry;
use self::observe::{listed_app_ids, probe_app};
use self::plan::{consent_check_due, referenced_apps};

const KIND: &str = "TenantMapping";

/// Entry point for the controller runtime.
pub async fn reconcile(
    obj: Arc<TenantMapping>,
    ctx: Arc<Context>,
    mappings: Store<TenantMapping>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("TenantMapping without namespace".into()))?;
    let api: Api<TenantMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, REGISTRY_FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, &ctx, &mappings).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, &ctx, &mappings).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    record_reconcile(&ctx, KIND, started, &result);
    result
}

/// The reconcile of a live TenantMapping.
async fn apply(
    obj: Arc<TenantMapping>,
    ctx: &Context,
    mappings: &Store<TenantMapping>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let api: Api<TenantMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let tenant = obj.spec.tenant_id.to_ascii_lowercase();
    let now = Timestamp::now();
    let previous = obj.status.clone().unwrap_or_default();
    let recheck = obj.annotations().get(RECHECK_ANNOTATION).cloned();
    let listed: Vec<String> = obj
        .spec
        .consent
        .iter()
        .flat_map(|c| c.apps.iter().map(|a| a.app_ref.name.to_string()))
        .collect();
    let listed_ids = listed_app_ids(&apps, &listed).await?;
    let interval = obj
        .spec
        .consent
        .as_ref()
        .map(|c| c.interval.as_std())
        .unwrap_or(Duration::from_secs(3600));
    let due = previous.tenant.is_none()
        || consent_check_due(
            &previous,
            obj.metadata.generation,
            recheck.as_deref(),
            &listed_ids,
            interval,
            now,
        );

    let registry = rewrite_registry(ctx, mappings, &namespace).await?;
    let published = registry_sink::publish_tenant_mappings(ctx, mappings, &namespace, &name).await;
    let mut status = previous.clone();
    status.observed_generation = obj.metadata.generation;
    status.recheck_token = recheck.clone();
    let mut tenant_missing = false;
    if due {
        match ctx.graph.find_tenant_information(&tenant).await {
            Ok(info) => {
                status.tenant = Some(TenantInfo {
                    display_name: info.display_name,
                    default_domain_name: info.default_domain_name,
                });
            }
            Err(GraphError::NotFound(_)) => {
                tenant_missing = true;
                status.tenant = None;
            }
            Err(e) => return Err(e.into()),
        }
        status.apps = Vec::new();
        if !tenant_missing {
            let probe = obj
                .spec
                .consent
                .as_ref()
                .and_then(|c| c.probe.as_ref())
                .map(|p| p.app_ref.name.as_str());
            for app in &listed {
                status
                    .apps
                    .push(probe_app(ctx, &apps, &secrets, &tenant, app, probe).await?);
            }
        }
        status.last_checked_at = Some(now.to_string());
        debug!(tenantmapping = %key, "checked tenant and consent");
    } else {
        tenant_missing = status.tenant.is_none();
    }
    status.consent_summary = Some(report::consent_summary(&status, listed.len()));

    let (ready, consent) = report::conditions(&obj, &status, tenant_missing, &registry);
    let was = previous.conditions.get(condition::READY).cloned();
    let mut conditions = vec![ready.clone(), consent];
    conditions.extend(published.as_ref().map(|p| p.condition.clone()));
    status.conditions = merge_conditions(
        &previous.conditions,
        &conditions,
        obj.metadata.generation,
        now,
    );
    apply_status(&api, &name, obj.status.as_ref(), &status).await?;
    let changed = was
        .as_ref()
        .map(|c| (c.status == "True", c.reason.as_str()))
        != Some((ready.status, ready.reason.as_str()));
    if changed {
        info!(tenantmapping = %key, reason = %ready.reason, "Ready is now {}", ready.status);
        let type_ = if ready.status {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, obj.as_ref(), type_, &ready.reason, &ready.message).await;
    }
    let consent: Vec<(String, bool)> = status
        .apps
        .iter()
        .map(|a| (a.name.clone(), a.state == TenantConsentState::Consented))
        .collect();
    ctx.metrics
        .set_tenant_consent(&namespace, &name, &obj.spec.tenant_id, &consent);
    if let Some(published) = published {
        registry_sink::report(ctx, obj.as_ref(), &previous.conditions, &published).await;
        if let Some(e) = published.error {
            return Err(e.into());
        }
    }
    ctx.record_success(&key);
    // Come back when the next consent check is due (or on the regular resync, if sooner).
    let wait = if listed.is_empty() {
        ctx.settings.resync
    } else {
        interval.min(ctx.settings.resync)
    };
    Ok(ctx.later.requeue(KIND, obj.as_ref(), wait))
}

/// The mapping is going: rewrite the registry without it (which may hand its BankIds to a later
/// mapping that was in conflict).
async fn cleanup(
    obj: Arc<TenantMapping>,
    ctx: &Context,
    mappings: &Store<TenantMapping>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    rewrite_registry(ctx, mappings, &namespace).await?;
    ctx.metrics
        .set_tenant_consent(&namespace, &obj.name_any(), &obj.spec.tenant_id, &[]);
    // Its rows leave the database before the finalizer goes (retried while the database is down).
    if let Some(published) =
        registry_sink::publish_tenant_mappings(ctx, mappings, &namespace, &obj.name_any()).await
        && let Some(e) = published.error
    {
        return Err(e.into());
    }
    info!(tenantmapping = %object_key(obj.as_ref()), "removed from the tenant-mappings registry");
    Ok(Action::await_change())
}

/// Runs the TenantMapping controller until `shutdown` resolves and in-flight reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    apps: Feed<AppRegistration>,
) {
    let client = ctx.client.clone();
    let mappings: Api<TenantMapping> = api_for(&client, &namespace);
    // One watch of TenantMappings: the trigger and the conflict wake-up subscribe to it.
    let mapping_watch = SharedWatch::<TenantMapping>::new();
    let store = mapping_watch.store.clone();
    let apps_store = store.clone();
    let reconcile_store = store.clone();
    let stream = Controller::for_shared_stream(
        spec_changes(mapping_watch.subscribe()),
        mapping_watch.store.clone(),
    )
    // A listed or probe app that gets its appId or credential makes consent checkable.
    // (From the AppRegistration watch every controller shares.)
    .watches_shared_stream(apps.events, move |changed: Arc<AppRegistration>| {
        let namespace = changed.namespace();
        let name = changed.name_any();
        apps_store
            .state()
            .into_iter()
            .filter(|m| m.namespace() == namespace && referenced_apps(m).contains(&name))
            .map(|m| ObjectRef::from_obj(&*m))
            .collect::<Vec<_>>()
    })
    // A mapping in conflict waits for the holder of its BankId or tenant to change or go.
    .watches_shared_stream(
        mapping_watch.subscribe(),
        move |changed: Arc<TenantMapping>| {
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
    // Far requeues (resync, consent checks) come back from the operator's own queue.
    .reconcile_on(ctx.later.clone().due(KIND, reconcile_store.clone()))
    .with_config(controller::Config::default().concurrency(concurrency.max(1)))
    .graceful_shutdown_on(shutdown)
    .run(
        move |obj, ctx| reconcile(obj, ctx, reconcile_store.clone()),
        error_policy,
        ctx,
    );
    let mapping_watch = mapping_watch.run(mappings, watcher::Config::default());
    tokio::select! {
        _ = drain(stream) => {}
        _ = mapping_watch => {}
    }
}
