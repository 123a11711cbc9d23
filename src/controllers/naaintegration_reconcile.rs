//! The NaaIntegration controller's I/O: server-side apply the two child AppRegistrations, write the
//! add-in settings ConfigMap once both have appIds, and aggregate the children's Ready. Everything
//! it creates carries its owner reference, so deleting it needs no finalizer: garbage collection
//! removes the children (whose own finalizers remove the Entra apps) and the ConfigMap.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use crate::api::naaintegration::NaaTenantStatus;
use crate::api::{AppRegistration, NaaIntegration, NaaIntegrationStatus, condition};
use crate::controllers::composed_reconcile::{
    Error, apply_child, apply_config_map, children_readiness, object_key, publish, record_reconcile,
};
use crate::controllers::conditions::{DesiredCondition, merge_conditions};
use crate::controllers::context::Context;
use crate::controllers::naaintegration::{
    authority_url, config_map_name, oidc_metadata_url, render_app, render_settings, render_web_api,
};
use crate::controllers::status::apply_status;

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

    let web_api = apply_child(&apps, &render_web_api(&obj)).await?;
    let app = apply_child(&apps, &render_app(&obj)).await?;
    let web_api_app_id = web_api.status.as_ref().and_then(|s| s.app_id.clone());
    let app_id = app.status.as_ref().and_then(|s| s.app_id.clone());
    let host = &ctx.settings.authority_host;

    let previous = obj.status.clone().unwrap_or_default();
    let mut status = NaaIntegrationStatus {
        observed_generation: obj.metadata.generation,
        app_id: app_id.clone(),
        web_api_app_id: web_api_app_id.clone(),
        scope_uri: web_api_app_id
            .as_ref()
            .map(|id| format!("api://{id}/{}", obj.spec.scope)),
        authority_url: Some(authority_url(&obj, host, &ctx.settings.tenant_id)),
        tenants: obj
            .spec
            .tenants
            .iter()
            .map(|t| NaaTenantStatus {
                tenant_id: t.0.clone(),
                oidc_metadata_url: oidc_metadata_url(host, &t.0),
            })
            .collect(),
        ..NaaIntegrationStatus::default()
    };
    let mut ready = children_readiness(&[&web_api, &app]);
    match (&app_id, &web_api_app_id) {
        (Some(app_id), Some(web_api_app_id)) => {
            let data = render_settings(&obj, app_id, web_api_app_id, host, &ctx.settings.tenant_id);
            let mut labels = BTreeMap::new();
            labels.insert("entra.bookme.io/naa-integration".to_string(), name.clone());
            apply_config_map(
                ctx,
                &namespace,
                &config_map_name(&obj),
                &data,
                &labels,
                obj.controller_owner_ref(&()),
            )
            .await?;
            status.config_map_name = Some(config_map_name(&obj));
        }
        _ => {
            if ready.status {
                ready = DesiredCondition::failed(
                    condition::READY,
                    "Reconciling",
                    "waiting for both apps to get an appId",
                );
            }
        }
    }
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
    Ok(Action::requeue(ctx.settings.resync))
}
