//! The AppRegistration controller: one Entra application, its service principal, owners,
//! federated credentials, consent grants and client secrets. The rooms (docs/code-map.md):
//! - `mod.rs`: the entry point (finalizer, apply, cleanup) and the wiring to the API server;
//! - `observe`: referenced AppRegistrations and Graph, converted once (`observed`) into the plan's
//!   view;
//! - `plan`: pure, from the spec, the references and the observation to the Graph writes
//!   (`operation`) and the planned status, with `desired` (the application as the spec renders it),
//!   `consent`, `diff`, `ids` and `references`;
//! - `execute`: the plan's writes (observing and planning again until nothing is left), then the
//!   rotation state machine one persisted step at a time;
//! - `report`: pure, the conditions and status from the plan and the outcome.
//!
//! Decisions the plan makes (see each function for why):
//! - The first create writes only the application (without `{appId}` identifier URIs); the
//!   executor observes and plans again for everything that needs Graph's IDs.
//! - Complex properties (`api`, `web`, `spa`, `publicClient`) and collections are sent whole.
//! - A property that cannot be fully rendered (unresolved reference, unknown permission) is not
//!   written, so Graph keeps its current value instead of losing entries.
//! - Owners, federated credentials and granted permissions the operator made are recorded in the
//!   status, and only those are removed when the spec drops them (unless `Exact` asks for more);
//!   the operator's own identity is never removed as an owner.
//! - The admin-consent URL is the v1 form `{authority}/{tenant}/adminconsent?client_id={appId}`.
//! - The executor treats "already exists" answers to grants and owners as success: Graph is
//!   eventually consistent and the plan may have seen a state from before its own last write.

pub mod consent;
pub mod desired;
pub mod diff;
mod execute;
pub mod ids;
mod observe;
pub mod observed;
pub mod operation;
pub mod plan;
mod quiet;
pub mod references;
pub mod report;

pub use consent::{ConsentSettings, PermissionKind, RequiredPermission};
pub use observed::Observed;
pub use plan::{
    GraphOperation, Plan, PlanError, PlanInput, PlanSettings, PlannedStatus, plan_app_registration,
};
pub use references::{ReferenceLookup, ResolvedReferences, resolve_references};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::appregistration::AppRegistrationStatus;
use crate::api::{AppRegistration, Text, condition};
use crate::controllers::conditions::merge_conditions;
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::events::publish;
use crate::controllers::store_ready::StoreReady;
use crate::controllers::wiring::{
    Feed, api_for, drain, error_policy, object_key, prune_for_store, record_reconcile, spec_changes,
};
use crate::graph::{GraphError, OptionalExt};
use crate::labels::managed_selector;
use crate::metrics::CredentialLabels;

use self::execute::{StatusWriter, sync_credentials, sync_graph};
use self::observe::{observe_policy, observe_references};
use self::references::Referrers;

/// Finalizer that lets the operator delete (or orphan) the application before the CR goes.
pub const FINALIZER: &str = "entra.bookme.io/cleanup";

pub(crate) const KIND: &str = "AppRegistration";

/// Entry point for the controller runtime.
pub async fn reconcile(obj: Arc<AppRegistration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("AppRegistration without namespace".into()))?;
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, &ctx).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, &ctx).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    record_reconcile(&ctx, KIND, started, &result);
    result
}

/// Runs the AppRegistration controller in one namespace (or all, with `None`) until `shutdown`
/// resolves and in-flight reconciles finish. `trigger` and `changes` are two subscriptions to the
/// one AppRegistration watch every controller shares (`runtime::run`): the first wakes an
/// AppRegistration whose spec or metadata changed, the second wakes the ones that reference a
/// changed one.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    trigger: Feed<AppRegistration>,
    changes: Feed<AppRegistration>,
) {
    let client: Client = ctx.client.clone();
    let secrets: Api<PartialObjectMeta<Secret>> = api_for(&client, &namespace);
    let referrers = std::sync::Mutex::new(Referrers::default());
    let consenting = trigger.store.clone();
    let later_store = trigger.store.clone();
    let memos = ctx.later.clone();
    let (policy_store, policy_writer) = reflector::store();
    let (mark_policies_ready, policies_ready) = StoreReady::pair();
    ctx.register_policy_store(policy_store, policies_ready);
    let policies = watcher(
        Api::<crate::api::EntraPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(prune_for_store)
    .reflect(policy_writer)
    .inspect(move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            mark_policies_ready.mark();
        }
    })
    .touched_objects();
    ctx.register_app_store(
        namespace.clone(),
        trigger.store.clone(),
        trigger.ready.clone(),
    );
    // Status writes must not wake the resource up again (a failure message with a fresh trace ID
    // would otherwise turn into a retry loop that ignores backoff).
    let stream = Controller::for_shared_stream(spec_changes(trigger.events), trigger.store)
        // The operator's Secrets wake their AppRegistration; only their metadata is watched (the
        // owner reference is all the trigger reads), so no Secret value is held in memory.
        .owns_stream(
            watcher(
                secrets,
                watcher::Config::default().labels(&managed_selector()),
            )
            .default_backoff()
            .modify(prune_for_store)
            .touched_objects()
            // A Secret of an AppRegistration changed (or went): its next resync is a full one.
            .inspect(move |secret| {
                if let Ok(secret) = secret {
                    let namespace = secret.namespace().unwrap_or_default();
                    for owner in secret.owner_references() {
                        if owner.kind == KIND {
                            memos.forget_memo(KIND, &namespace, &owner.name);
                        }
                    }
                }
            }),
        )
        // An AppRegistration whose status changed may be what another one waits for (appRef).
        .watches_shared_stream(changes.events, move |changed: Arc<AppRegistration>| {
            let namespace = changed.namespace().unwrap_or_default();
            let name = changed.name_any();
            referrers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(
                    &namespace,
                    &name,
                    &changed.spec,
                    changed.metadata.deletion_timestamp.is_some(),
                )
                .into_iter()
                .map(|referrer| ObjectRef::new(&referrer).within(&namespace))
                .collect::<Vec<_>>()
        })
        // The cluster administrator changed an EntraPolicy: what it decides (consent, adoption) is
        // decided again now, not at the next resync. The reconciles read the policies from this
        // watch's store.
        .watches_stream(policies, move |_: crate::api::EntraPolicy| {
            consenting
                .state()
                .into_iter()
                .filter(|app| app.spec.grant_admin_consent || app.spec.adopt.is_some())
                .map(|app| ObjectRef::from_obj(&*app))
                .collect::<Vec<_>>()
        })
        // Far requeues (resync, renewals) come back from the operator's own queue.
        .reconcile_on(ctx.later.clone().due(KIND, later_store))
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    drain(stream).await;
}

/// The reconcile of a live AppRegistration.
async fn apply(obj: Arc<AppRegistration>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let mut writer = StatusWriter {
        api: &api,
        name: name.clone(),
        written: obj.status.clone(),
    };
    let generation = obj.metadata.generation;

    // What the quiet check already read from the stores, for the full reconcile that follows it.
    let mut inputs = None;
    if let Some(memo) = ctx.later.take_memo(KIND, obj.as_ref()) {
        // Any failure of the quiet check is left to the full reconcile, which reports it.
        match quiet_resync(&obj, memo, ctx).await {
            Ok(Resync::Quiet(action)) => return Ok(action),
            Ok(Resync::Full(references, policy)) => inputs = Some((references, policy)),
            Err(_) => {}
        }
    }
    let outcome = apply_stages(&obj, ctx, inputs, &mut status, &mut writer).await;
    let now = Timestamp::now();
    match outcome {
        Ok(stages) => {
            let blocking = stages.plan.blocking_reason();
            let desired = report::conditions(&obj.spec, &status, &stages.plan, &stages.writes);
            status.conditions = merge_conditions(&previous.conditions, &desired, generation, now);
            status.observed_generation = generation;
            writer.write(&status).await?;
            ctx.record_success(&key);
            let ready = status.conditions.is_true(condition::READY);
            ctx.metrics
                .resource_ready
                .get_or_create(&CredentialLabels {
                    kind: KIND,
                    namespace: Text::label(&namespace),
                    name: Text::label(&name),
                    secret: Text::label(""),
                    credential: "",
                })
                .set(i64::from(ready));
            if !stages.writes.is_empty() {
                publish(
                    ctx,
                    obj.as_ref(),
                    EventType::Normal,
                    "Synced",
                    &format!("Applied to Entra: {}", report::dedup_join(&stages.writes)),
                )
                .await;
            }
            if blocking.is_some() {
                // Waiting on something else (a reference, a permission name): the watch on other
                // AppRegistrations brings us back; a slow poll covers the rest.
                return Ok(ctx
                    .later
                    .requeue(KIND, obj.as_ref(), Duration::from_secs(30)));
            }
            let wait = resync_wait(ctx, stages.requeue_at);
            let inputs =
                quiet::inputs_hash(&obj, Some(&status), &stages.references, &stages.policy);
            let memo = quiet::memo_after_full(
                &ctx.changes,
                stages.mark,
                stages.wrote,
                inputs,
                &status,
                &stages.observed,
                stages.requeue_at,
            );
            info!(appregistration = %key, ready, requeue_in = ?wait, "reconciled");
            Ok(ctx.later.requeue_with(KIND, obj.as_ref(), wait, memo))
        }
        Err(error) => {
            if !matches!(error, Error::Graph(GraphError::Replicating(_))) {
                ctx.forget_own_resource_sps();
            }
            let desired = report::failure_conditions(error.reason(), &error.to_string());
            status.conditions = merge_conditions(&previous.conditions, &desired, generation, now);
            status.observed_generation = generation;
            if let Err(e) = writer.write(&status).await {
                warn!(appregistration = %key, error = %e, "could not write failure status");
            }
            if matches!(error, Error::Graph(GraphError::Replicating(_))) {
                // Not a failure: a new object is replicating; the requeue comes back in a second.
                return Err(error);
            }
            publish(
                ctx,
                obj.as_ref(),
                EventType::Warning,
                error.reason(),
                &error.to_string(),
            )
            .await;
            Err(error)
        }
    }
}

struct StagesOutcome {
    plan: Plan,
    writes: Vec<&'static str>,
    /// Whether anything was written to the application or service principal (the plan's writes,
    /// or a credential added or removed).
    wrote: bool,
    requeue_at: Option<Timestamp>,
    /// What a quiet resync compares against (`quiet.rs`).
    mark: Option<crate::graph::Mark>,
    references: references::ResolvedReferences,
    policy: observe::PolicyFacts,
    observed: Observed,
}

/// How long a settled resource waits: the resync, or less when a renewal is due sooner.
fn resync_wait(ctx: &Context, requeue_at: Option<Timestamp>) -> Duration {
    let mut wait = ctx.settings.resync;
    if let Some(at) = requeue_at {
        let until = at.duration_since(Timestamp::now());
        let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
        wait = wait.min(until.max(Duration::from_millis(200)));
    }
    wait
}

/// What a resync with a memo comes to.
enum Resync {
    /// Nothing changed: the action that brings the resource back.
    Quiet(Action),
    /// A full reconcile must run; it plans from the references and policies already read.
    Full(references::ResolvedReferences, observe::PolicyFacts),
}

/// A resync that finds nothing changed without reading the application or its service principal
/// (`quiet.rs`).
async fn quiet_resync(
    obj: &Arc<AppRegistration>,
    memo: crate::controllers::later::Memo,
    ctx: &Context,
) -> Result<Resync, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let references = observe_references(obj, &api, ctx).await?;
    let policy = observe_policy(obj, ctx).await?;
    let Some(next) = quiet::check(obj, memo, &references, &policy, ctx).await? else {
        return Ok(Resync::Full(references, policy));
    };
    let key = object_key(obj.as_ref());
    ctx.record_success(&key);
    ctx.metrics
        .quiet_resyncs
        .get_or_create(&crate::metrics::KindLabels { kind: KIND })
        .inc();
    let due = next.due.and_then(|s| Timestamp::from_second(s).ok());
    let wait = resync_wait(ctx, due);
    info!(appregistration = %key, requeue_in = ?wait, streak = next.streak, "resynced quietly: nothing changed");
    Ok(Resync::Quiet(ctx.later.requeue_with(
        KIND,
        obj.as_ref(),
        wait,
        Some(next),
    )))
}

/// The full reconcile's stages; `inputs` are the references and policies when this reconcile
/// already read them (a quiet check that failed), otherwise they are read here.
async fn apply_stages(
    obj: &AppRegistration,
    ctx: &Context,
    inputs: Option<(references::ResolvedReferences, observe::PolicyFacts)>,
    status: &mut AppRegistrationStatus,
    writer: &mut StatusWriter<'_>,
) -> Result<StagesOutcome, Error> {
    let (references, policy) = match inputs {
        Some(inputs) => inputs,
        None => {
            let namespace = obj.namespace().unwrap_or_default();
            let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
            (
                observe_references(obj, &api, ctx).await?,
                observe_policy(obj, ctx).await?,
            )
        }
    };
    // Taken before Graph is read: a change reported after it makes the next resync a full one.
    let mark = ctx.changes.mark();
    let (plan, view, writes) = sync_graph(obj, &references, &policy, status, ctx).await?;

    report::record_planned(status, &plan.status, &ctx.settings.tenant_id);
    // IDs first: other AppRegistrations wait for them, and credentials need the app.
    writer.write(status).await?;

    let mut requeue_at = None;
    let mut wrote = !writes.is_empty();
    // An application this resource may not adopt is read, never written: no credential either.
    if let Some(app) = view
        .application
        .as_ref()
        .filter(|_| !plan.adoption_refused())
    {
        let outcome = sync_credentials(obj, app, status, writer, ctx).await?;
        requeue_at = outcome.requeue_at;
        wrote |= outcome.wrote;
    }
    Ok(StagesOutcome {
        plan,
        writes,
        wrote,
        requeue_at,
        mark,
        references,
        policy,
        observed: view.observed,
    })
}

/// The reconcile of a deleted AppRegistration: delete (soft) or orphan the application.
async fn cleanup(obj: Arc<AppRegistration>, ctx: &Context) -> Result<Action, Error> {
    use crate::api::appregistration::DeletionPolicy;
    let key = object_key(obj.as_ref());
    let object_id = match &obj.status.as_ref().and_then(|s| s.object_id.clone()) {
        Some(id) => Some(id.clone()),
        // An adopted application is known by its objectId only (recorded once adoption was
        // allowed); without it there is nothing of ours to delete.
        None if obj.spec.adopt.is_some() => None,
        None => {
            let unique_name = obj
                .status
                .as_ref()
                .and_then(|s| s.unique_name.clone())
                .unwrap_or_else(|| {
                    ids::unique_name(
                        &ctx.settings.plan.unique_name_prefix,
                        &obj.namespace().unwrap_or_default(),
                        &obj.name_any(),
                    )
                });
            ctx.graph
                .get_application_by_unique_name(&unique_name)
                .await
                .optional()?
                .and_then(|a| a.id)
        }
    };
    // Every series of this resource goes with it (declared passwords and retired ones in status).
    let secrets: Vec<&str> = obj
        .spec
        .credentials
        .passwords
        .iter()
        .map(|p| p.secret_name.as_str())
        .chain(
            obj.status
                .iter()
                .flat_map(|s| &s.credentials)
                .map(|c| c.secret_name.as_str()),
        )
        .collect();
    ctx.metrics.forget_resource(
        KIND,
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
        secrets,
    );
    match (obj.spec.effective_deletion_policy(), object_id) {
        (DeletionPolicy::Delete, Some(id)) => {
            match ctx.graph.delete_application(&id).await {
                Ok(()) | Err(GraphError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            info!(appregistration = %key, "deleted the application (restorable for 30 days)");
            publish(
                ctx,
                obj.as_ref(),
                EventType::Normal,
                "Deleted",
                "Deleted the application in Entra (restorable for 30 days)",
            )
            .await;
        }
        (DeletionPolicy::Orphan, Some(id)) => {
            let (kept, revoked) = execute::hand_over_credentials(obj.as_ref(), ctx, &id).await?;
            info!(appregistration = %key, secrets_kept = kept.len(), previous_revoked = revoked, "left the application in Entra (deletionPolicy: Orphan, the default for an adopted application)");
            publish(
                ctx,
                obj.as_ref(),
                EventType::Normal,
                "Orphaned",
                &format!(
                    "Left the application in Entra; kept Secrets [{}] with their current client secrets and certificates (no longer rotated, they expire on their own); revoked {revoked} previous credentials",
                    kept.join(", ")
                ),
            )
            .await;
        }
        (_, None) => {}
    }
    ctx.record_success(&key);
    Ok(Action::await_change())
}
