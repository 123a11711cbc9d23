//! The BankClient controller's I/O: claim the bankId (first claim wins), server-side apply the child
//! AppRegistration, rewrite the namespace's bank-clients registry, and mirror the child's status.
//! Graph is never called here: the child's controller owns the application.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use tracing::info;

use crate::api::appregistration::ConsentState;
use crate::api::bankclient::RoleAssignmentStatus;
use crate::api::{AppRegistration, BankClient, BankClientStatus, condition};
use crate::controllers::bankclient::{
    BANK_CLIENTS_REGISTRY, BankClaim, BankRegistry, child_name, render_child_app_registration,
    resolve_bank_registry,
};
use crate::controllers::composed_reconcile::{
    Error, REGISTRY_FINALIZER, apply_child, apply_config_map, children_readiness, delete_child,
    object_key, publish, record_reconcile,
};
use crate::controllers::conditions::{DesiredCondition, merge_conditions};
use crate::controllers::context::Context;
use crate::controllers::status::apply_status;

const KIND: &str = "BankClient";

/// Entry point for the controller runtime.
pub async fn reconcile(obj: Arc<BankClient>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("BankClient without namespace".into()))?;
    let api: Api<BankClient> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, REGISTRY_FINALIZER, obj, |event| async {
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

/// Every live BankClient's claim in the namespace (those being deleted and `exclude` left out),
/// with the clientId its child AppRegistration reports.
async fn claims(
    ctx: &Context,
    namespace: &str,
    exclude: Option<&str>,
) -> Result<Vec<BankClaim>, Error> {
    let bank_clients: Api<BankClient> = Api::namespaced(ctx.client.clone(), namespace);
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), namespace);
    let app_ids: BTreeMap<String, String> = apps
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|a| {
            let app_id = a.status.as_ref()?.app_id.clone()?;
            Some((a.name_any(), app_id))
        })
        .collect();
    Ok(bank_clients
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|bc| bc.metadata.deletion_timestamp.is_none())
        .filter(|bc| Some(bc.name_any().as_str()) != exclude)
        .map(|bc| BankClaim {
            name: bc.name_any(),
            bank_id: bc.spec.bank_id.clone(),
            created: bc
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            client_id: app_ids.get(&child_name(&bc)).cloned(),
        })
        .collect())
}

/// Recompute the registry from every claim in the namespace and write it. Deterministic, so
/// concurrent reconciles of different BankClients converge on the same ConfigMap.
async fn rewrite_registry(
    ctx: &Context,
    namespace: &str,
    exclude: Option<&str>,
) -> Result<BankRegistry, Error> {
    let registry = resolve_bank_registry(&claims(ctx, namespace, exclude).await?);
    apply_config_map(
        ctx,
        namespace,
        BANK_CLIENTS_REGISTRY,
        &registry.entries,
        &BTreeMap::new(),
        None,
    )
    .await?;
    Ok(registry)
}

/// The reconcile of a live BankClient.
async fn apply(obj: Arc<BankClient>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let bank_clients: Api<BankClient> = Api::namespaced(ctx.client.clone(), &namespace);

    // Conflicts depend only on who claimed first, so they are known before any child exists: a
    // later claim gets no app at all (a credential the registry would never honour).
    let holder = resolve_bank_registry(&claims(ctx, &namespace, None).await?)
        .conflicts
        .get(&name)
        .cloned();
    let child = match &holder {
        Some(_) => None,
        None => Some(apply_child(&apps, &render_child_app_registration(&obj)).await?),
    };
    rewrite_registry(ctx, &namespace, None).await?;

    let previous = obj.status.clone().unwrap_or_default();
    let mut status = BankClientStatus {
        observed_generation: obj.metadata.generation,
        secret_name: Some(obj.spec.secret.name.clone()),
        ..BankClientStatus::default()
    };
    let ready = match (&holder, &child) {
        (Some(holder), _) => DesiredCondition::failed(
            condition::READY,
            "Conflict",
            format!(
                "bankId {} is already claimed by BankClient {holder}; this one is not in the bank-clients registry",
                obj.spec.bank_id
            ),
        ),
        (None, Some(child)) => {
            let child_status = child.status.clone().unwrap_or_default();
            status.app_registration_name = Some(child.name_any());
            status.client_id = child_status.app_id.clone();
            if let Some(cred) = child_status.credentials.first() {
                status.secret_expires_at = cred.expires_at.clone();
                status.next_rotation_at = cred.renew_at.clone();
            }
            let api_app_id = apps
                .get_opt(&obj.spec.api.app_ref.name)
                .await?
                .and_then(|a| a.status.and_then(|s| s.app_id));
            status.role_assignment = Some(RoleAssignmentStatus {
                role: obj.spec.api.role.clone(),
                api_app_id,
                granted: child_status
                    .consent
                    .as_ref()
                    .is_some_and(|c| c.state == ConsentState::Granted),
            });
            children_readiness(&[child])
        }
        (None, None) => unreachable!("a BankClient without conflict always has a child"),
    };
    let was_ready = previous.conditions.is_true(condition::READY);
    status.conditions = merge_conditions(
        &previous.conditions,
        std::slice::from_ref(&ready),
        obj.metadata.generation,
        Timestamp::now(),
    );
    apply_status(&bank_clients, &name, obj.status.as_ref(), &status).await?;
    if ready.status && !was_ready {
        info!(bankclient = %key, client_id = ?status.client_id, "ready");
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            "Ready",
            &format!(
                "bank {} has clientId {} in the bank-clients registry",
                obj.spec.bank_id,
                status.client_id.as_deref().unwrap_or("?")
            ),
        )
        .await;
    } else if holder.is_some()
        && previous.conditions.get(condition::READY).map(|c| &c.reason)
            != Some(&"Conflict".to_string())
    {
        publish(
            ctx,
            obj.as_ref(),
            EventType::Warning,
            "Conflict",
            &ready.message,
        )
        .await;
    }
    ctx.record_success(&key);
    Ok(Action::requeue(ctx.settings.resync))
}

/// The BankClient is going: its child (and through it the app and the Secret) goes, and the
/// registry is rewritten without it (which may hand its bankId to a waiting later claim).
async fn cleanup(obj: Arc<BankClient>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = obj.name_any();
    let owns_child = apps.get_opt(&child_name(&obj)).await?.is_some_and(|child| {
        child
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == obj.metadata.uid.as_ref())
    });
    if owns_child {
        delete_child(&apps, &child_name(&obj)).await?;
    }
    rewrite_registry(ctx, &namespace, Some(&name)).await?;
    info!(bankclient = %object_key(obj.as_ref()), "removed from the bank-clients registry");
    Ok(Action::await_change())
}
