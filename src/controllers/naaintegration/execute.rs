//! The NaaIntegration controller's execute stage: server-side apply the two child
//! AppRegistrations, and the add-in settings ConfigMap once both have appIds. Both carry the
//! NaaIntegration's owner reference, so garbage collection removes them with it.

use std::collections::BTreeMap;

use kube::{Api, Resource, ResourceExt};

use crate::api::{AppRegistration, NaaIntegration};
use crate::controllers::children::{apply_child, apply_config_map};
use crate::controllers::context::Context;
use crate::controllers::error::Error;

use super::observe::Children;
use super::plan::{config_map_name, render_app, render_settings, render_web_api};

/// Applies both children and returns them as the API server holds them.
pub async fn apply_children(
    apps: &Api<AppRegistration>,
    obj: &NaaIntegration,
) -> Result<Children, Error> {
    Ok(Children {
        web_api: apply_child(apps, &render_web_api(obj)).await?,
        app: apply_child(apps, &render_app(obj)).await?,
    })
}

/// Writes the add-in settings ConfigMap and returns its name.
pub async fn write_settings(
    ctx: &Context,
    obj: &NaaIntegration,
    namespace: &str,
    app_id: &str,
    web_api_app_id: &str,
) -> Result<String, Error> {
    let host = &ctx.settings.authority_host;
    let data = render_settings(obj, app_id, web_api_app_id, host, &ctx.settings.tenant_id);
    let mut labels = BTreeMap::new();
    labels.insert(
        "entra.bookme.io/naa-integration".to_string(),
        obj.name_any(),
    );
    apply_config_map(
        ctx,
        namespace,
        &config_map_name(obj),
        &data,
        &labels,
        obj.controller_owner_ref(&()),
    )
    .await?;
    Ok(config_map_name(obj))
}
