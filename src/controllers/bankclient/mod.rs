//! The BankClient controller: claim the bankId (first claim wins), server-side apply the child
//! AppRegistration, rewrite the namespace's bank-clients registry, and mirror the child's status.
//! Graph is never called here: the child's controller owns the application. Rooms: `observe`
//! (claims), `plan` (pure: the child, the registry), `execute` (the registry), `report` (pure:
//! status and event); this file holds the entry point and the wiring.

pub mod execute;
pub mod handover;
pub mod observe;
pub mod plan;
pub mod report;

use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::api::{AppRegistration, BankClient, HANDOVER_CONFIRMED_ANNOTATION, condition};
use crate::controllers::children::{REGISTRY_FINALIZER, apply_child, delete_child};
use crate::controllers::coalesce::{CoalescedConfigMap, DEFAULT_WINDOW};
use crate::controllers::conditions::merge_conditions;
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::events::publish;
use crate::controllers::registry_sink as registry;
use crate::controllers::status_writer::apply_status;
use crate::controllers::wiring::{
    Feed, SharedWatch, api_for, changes_of, drain, error_policy, object_key, record_reconcile,
    spec_changes,
};
use crate::metrics::HandoverLabels;

use self::execute::registry_writer;
use self::observe::{api_app_id, claims_of_bank_id, owns_child};
use self::plan::{child_name, render_child_app_registration, resolve_bank_registry};
use crate::controllers::store_ready::StoreReady;

const KIND: &str = "BankClient";

/// What the BankClient reconcile reads instead of listing the API server: the stores of the
/// controller's watches, and the coalescing writer of the registry ConfigMaps.
#[derive(Clone)]
pub struct Stores {
    pub bank_clients: Store<BankClient>,
    pub apps: Store<AppRegistration>,
    pub registry: Arc<CoalescedConfigMap>,
    /// The AppRegistration store has listed once (awaited by every reconcile at once).
    pub apps_ready: StoreReady,
}

/// How often a BankClient whose child is being deleted looks whether it is gone, to apply it again.
const CHILD_GONE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Entry point for the controller runtime.
pub async fn reconcile(
    obj: Arc<BankClient>,
    ctx: Arc<Context>,
    stores: Stores,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("BankClient without namespace".into()))?;
    // Triggers come after the BankClient store holds the object; the AppRegistration store is
    // filled by its own watch and may still be listing.
    if !stores.apps_ready.wait().await {
        return Err(Error::Invalid("AppRegistration watch stopped".into()));
    }
    let api: Api<BankClient> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, REGISTRY_FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, &ctx, &stores).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, &ctx, &stores).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    record_reconcile(&ctx, KIND, started, &result);
    result
}

/// The reconcile of a live BankClient.
async fn apply(obj: Arc<BankClient>, ctx: &Arc<Context>, stores: &Stores) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let bank_clients: Api<BankClient> = Api::namespaced(ctx.client.clone(), &namespace);

    // Conflicts depend only on who claimed first, so they are known before any child exists: a
    // later claim gets no app at all (a credential the registry would never honour).
    let holder = resolve_bank_registry(&claims_of_bank_id(
        &stores.bank_clients,
        &stores.apps,
        &namespace,
        &obj.spec.bank_id,
    ))
    .conflicts
    .get(&name)
    .cloned();
    let child = match &holder {
        Some(_) => None,
        None => Some(apply_child(&apps, &render_child_app_registration(&obj)).await?),
    };
    // Ready means the registry the API reads holds the client: wait for the (coalesced) write
    // that carries this BankClient's entry, once its child has an appId.
    let entry = child
        .as_ref()
        .and_then(|c| c.status.as_ref()?.app_id.clone());
    stores
        .registry
        .request_and_wait(
            ctx,
            &namespace,
            entry
                .as_deref()
                .map(|client_id| (client_id, obj.spec.bank_id.as_str())),
        )
        .await?;
    let published = registry::publish_bank_clients(
        ctx,
        &stores.bank_clients,
        &stores.apps,
        &namespace,
        &name,
        None,
    )
    .await;
    let api_app_id = match &child {
        Some(_) => api_app_id(&stores.apps, &namespace, &obj.spec.api.app_ref.name),
        None => None,
    };

    let previous = obj.status.clone().unwrap_or_default();
    let (mut status, ready) = report::status(&obj, holder.as_deref(), child.as_ref(), api_app_id);
    let mut conditions = vec![ready.clone()];
    conditions.extend(published.as_ref().map(|p| p.condition.clone()));
    status.conditions = merge_conditions(
        &previous.conditions,
        &conditions,
        obj.metadata.generation,
        Timestamp::now(),
    );
    // The handover: mirrored from the child's credential status, announced once.
    let credential = child
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .and_then(|s| {
            s.credentials
                .iter()
                .find(|c| c.secret_name == obj.spec.secret.name)
        });
    status.handover = credential
        .and_then(|c| handover::handover_status(c, previous.handover.as_deref()))
        .map(Box::new);
    status.ignored_confirmation = handover::ignored_confirmation(
        obj.annotations()
            .get(HANDOVER_CONFIRMED_ANNOTATION)
            .map(String::as_str),
        credential.and_then(|c| c.key_id.as_deref()),
    );
    let notify_retry = notify_handover(ctx, &bank_clients, &obj, &mut status).await;
    apply_status(&bank_clients, &name, obj.status.as_ref(), &status).await?;
    ctx.metrics.set_handover(
        &handover_labels(&obj),
        status.handover.as_ref().map(|h| {
            let revoke_at = h
                .previous_valid_until
                .parse::<Timestamp>()
                .map_or(0.0, |t| t.as_second() as f64);
            (revoke_at, h.confirmed)
        }),
    );
    for (type_, reason, note) in handover::events(&obj, &previous, &status) {
        publish(ctx, obj.as_ref(), type_, reason, &note).await;
    }
    if ready.status && !previous.conditions.is_true(condition::READY) {
        info!(bankclient = %key, client_id = ?status.client_id, "ready");
    }
    if let Some((type_, reason, note)) = report::event(
        &obj,
        &previous.conditions,
        &ready,
        &status,
        holder.is_some(),
    ) {
        publish(ctx, obj.as_ref(), type_, reason, &note).await;
    }
    if let Some(published) = published {
        registry::report(ctx, obj.as_ref(), &previous.conditions, &published).await;
        if let Some(e) = published.error {
            return Err(e.into());
        }
    }
    ctx.record_success(&key);
    // A child on its way out (deleted by hand) is applied again once it is gone. Nothing else
    // wakes the parent then: kube-runtime's shared watches do not hand on deletions.
    let child_going = child
        .as_ref()
        .is_some_and(|c| c.metadata.deletion_timestamp.is_some());
    let wait = if child_going {
        CHILD_GONE_POLL
    } else {
        notify_retry.map_or(ctx.settings.resync, |retry| retry.min(ctx.settings.resync))
    };
    Ok(ctx.later.requeue(KIND, obj.as_ref(), wait))
}

fn handover_labels(obj: &BankClient) -> HandoverLabels {
    HandoverLabels {
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        bank_id: obj.spec.bank_id.clone(),
    }
}

/// Announces a handover that started (not yet confirmed nor announced) to the configured webhook,
/// and records the delivery in `status.handover.notifiedAt`, so it is sent once per handover, also
/// across restarts. A failure is a Warning event and a retry with backoff (returned: when to
/// reconcile again); it never holds up anything else.
async fn notify_handover(
    ctx: &Context,
    api: &Api<BankClient>,
    obj: &BankClient,
    status: &mut crate::api::BankClientStatus,
) -> Option<std::time::Duration> {
    let webhook = ctx.settings.handover.webhook.as_ref()?;
    let handover = status.handover.as_ref()?;
    if handover.notified_at.is_some() {
        return None;
    }
    let key = format!("{}#handover-notification", object_key(obj));
    // The store may lag this operator's own last status write (the one recording a delivery):
    // read the latest status before deciding, as the rotation's fresh-state rule does. One GET,
    // only while a handover is not known to be announced.
    match api.get(&obj.name_any()).await {
        Ok(fresh) => {
            if let Some(at) = fresh
                .status
                .and_then(|s| s.handover)
                .filter(|h| h.new_key_id == handover.new_key_id)
                .and_then(|h| h.notified_at)
            {
                if let Some(h) = status.handover.as_mut() {
                    h.notified_at = Some(at);
                }
                return None;
            }
        }
        Err(e) => {
            warn!(bankclient = %object_key(obj), error = %e, "reading the BankClient before announcing its handover");
            return Some(ctx.record_failure(&key, ctx.settings.handover.notify_retry));
        }
    }
    if handover.confirmed {
        return None;
    }
    // Only the leader announces (a deposed one could announce twice).
    if ctx.fence.check().is_err() {
        return None;
    }
    let body = handover::payload(webhook.format, obj, status, handover);
    match webhook.send(&body).await {
        Ok(()) => {
            ctx.record_success(&key);
            let note = format!(
                "Handover to keyId {} announced to the handover webhook",
                handover.new_key_id
            );
            if let Some(h) = status.handover.as_mut() {
                h.notified_at = Some(Timestamp::now().to_string());
            }
            publish(ctx, obj, EventType::Normal, "HandoverNotified", &note).await;
            None
        }
        Err(e) => {
            let retry = ctx.record_failure(&key, ctx.settings.handover.notify_retry);
            warn!(bankclient = %object_key(obj), error = %e, retry = ?retry, "handover notification failed");
            publish(
                ctx,
                obj,
                EventType::Warning,
                "HandoverNotificationFailed",
                &format!(
                    "Announcing the handover to keyId {} failed ({e}); retrying in {retry:?}",
                    handover.new_key_id,
                ),
            )
            .await;
            Some(retry)
        }
    }
}

/// The BankClient is going: its child (and through it the app and the Secret) goes, and the
/// registry is rewritten without it (which may hand its bankId to a waiting later claim).
async fn cleanup(
    obj: Arc<BankClient>,
    ctx: &Arc<Context>,
    stores: &Stores,
) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = obj.name_any();
    if owns_child(&apps, &obj).await? {
        delete_child(&apps, &child_name(&obj)).await?;
    }
    // Written now, not coalesced: its entry leaves the ConfigMap before the finalizer goes.
    stores.registry.write_now(ctx, &namespace).await?;
    // Its row leaves the database before the finalizer goes (retried while the database is down).
    if let Some(published) = registry::publish_bank_clients(
        ctx,
        &stores.bank_clients,
        &stores.apps,
        &namespace,
        &name,
        Some(&name),
    )
    .await
        && let Some(e) = published.error
    {
        return Err(e.into());
    }
    ctx.metrics.set_handover(&handover_labels(&obj), None);
    info!(bankclient = %object_key(obj.as_ref()), "removed from the bank-clients registry");
    Ok(Action::await_change())
}

/// Runs the BankClient controller until `shutdown` resolves and in-flight reconciles finish.
/// `apps` is a subscription to the AppRegistration watch every controller shares.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    apps: Feed<AppRegistration>,
) {
    let client = ctx.client.clone();
    let bank_clients: Api<BankClient> = api_for(&client, &namespace);
    // One watch of BankClients, feeding the store the reconcile reads and the triggers.
    let bank_client_watch = SharedWatch::<BankClient>::new();
    let stores = Stores {
        bank_clients: bank_client_watch.store.clone(),
        apps: apps.store.clone(),
        registry: registry_writer(
            bank_client_watch.store.clone(),
            apps.store.clone(),
            DEFAULT_WINDOW,
        ),
        apps_ready: apps.ready.clone(),
    };
    let store = stores.bank_clients.clone();
    let later_store = stores.bank_clients.clone();
    let stream = Controller::for_shared_stream(
        spec_changes(bank_client_watch.subscribe()),
        stores.bank_clients.clone(),
    )
    // The child's status (appId, secret expiry, Ready) is what the parent mirrors: only a change
    // of that wakes it.
    .owns_shared_stream(changes_of(apps.events, report::mirrored_view, true))
    // A BankClient that lost a bankId conflict waits for the holder to go: any change of a
    // BankClient wakes the others claiming the same bankId.
    .watches_shared_stream(
        bank_client_watch.subscribe(),
        move |changed: Arc<BankClient>| {
            // Filtered under the store's lock: only the few claimants are copied out.
            store
                .state_filter(|c| {
                    c.spec.bank_id == changed.spec.bank_id
                        && c.metadata.namespace == changed.metadata.namespace
                        && c.metadata.name != changed.metadata.name
                })
                .into_iter()
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        },
    )
    // Far requeues (resync) come back from the operator's own queue.
    .reconcile_on(ctx.later.clone().due(KIND, later_store))
    .with_config(controller::Config::default().concurrency(concurrency.max(1)))
    .graceful_shutdown_on(shutdown)
    .run(
        move |obj, ctx| reconcile(obj, ctx, stores.clone()),
        error_policy,
        ctx,
    );
    let bank_client_watch = bank_client_watch.run(bank_clients, watcher::Config::default());
    tokio::select! {
        _ = drain(stream) => {}
        _ = bank_client_watch => {}
    }
}
