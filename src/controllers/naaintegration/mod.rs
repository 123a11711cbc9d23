//! The NaaIntegration controller: server-side apply the two child AppRegistrations, write the
//! add-in settings ConfigMap once both have appIds, and aggregate the children's Ready. Everything
//! it creates carries its owner reference, so deleting it needs no finalizer: garbage collection
//! removes the children (whose own finalizers remove the Entra apps) and the ConfigMap. Rooms:
//! `observe` (the children as applied), `plan` (pure: the children, URLs, settings), `execute`
//! (children and ConfigMap), `report` (pure: status); this file holds the entry point and the
//! wiring.

pub mod execute;
pub mod observe;
pub mod plan;
pub mod report;

use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::api::{AppRegistration, NaaIntegration, condition};
use crate::controllers::conditions::merge_conditions;
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::events::publish;
use crate::controllers::status_writer::apply_status;
use crate::controllers::wiring::{
    Feed, api_for, controller_for, drain, error_policy, object_key, record_reconcile,
};

use self::execute::{apply_children, write_settings};

const KIND: &str = "NaaIntegration";

/// Entry point for the controller runtime.
pub async fn reconcile(obj: Arc<NaaIntegration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = apply(obj, &ctx).await;
    record_reconcile(&ctx, KIND, started, &result);
    result
}

async fn apply(obj: Arc<NaaIntegration>, ctx: &Context) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        // Garbage collection takes the children and the ConfigMap.
        return Ok(Action::await_change());
    }
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("NaaIntegration without namespace".into()))?;
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let api: Api<NaaIntegration> = Api::namespaced(ctx.client.clone(), &namespace);
    let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);

    let children = apply_children(&apps, &obj).await?;
    let config_map = match children.app_ids() {
        (Some(web_api_app_id), Some(app_id)) => {
            Some(write_settings(ctx, &obj, &namespace, &app_id, &web_api_app_id).await?)
        }
        _ => None,
    };

    let previous = obj.status.clone().unwrap_or_default();
    let (mut status, ready) = report::status(
        &obj,
        &children,
        config_map,
        &ctx.settings.authority_host,
        &ctx.settings.tenant_id,
    );
    let was_ready = previous.conditions.is_true(condition::READY);
    status.conditions = merge_conditions(
        &previous.conditions,
        std::slice::from_ref(&ready),
        obj.metadata.generation,
        Timestamp::now(),
    );
    apply_status(&api, &name, obj.status.as_ref(), &status).await?;
    if ready.status && !was_ready {
        info!(naaintegration = %key, "ready");
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            "Ready",
            &format!(
                "settings written to ConfigMap {}",
                status.config_map_name.as_deref().unwrap_or("?")
            ),
        )
        .await;
    }
    ctx.record_success(&key);
    Ok(ctx.later.requeue(KIND, obj.as_ref(), ctx.settings.resync))
}

/// Runs the NaaIntegration controller until `shutdown` resolves and in-flight reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    apps: Feed<AppRegistration>,
) {
    let client = ctx.client.clone();
    let integrations: Api<NaaIntegration> = api_for(&client, &namespace);
    let controller = controller_for(integrations);
    let store = controller.store();
    let stream = controller
        // Far requeues (resync) come back from the operator's own queue.
        .reconcile_on(ctx.later.clone().due(KIND, store))
        // Both children's status (appIds, Ready) feeds the parent and its ConfigMap (from the
        // AppRegistration watch every controller shares).
        .owns_shared_stream(apps.events)
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    drain(stream).await;
}
