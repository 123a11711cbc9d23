//! The NaaIntegration controller's report stage, pure: the status (IDs, URLs, tenants) and Ready
//! from the children and whether the settings ConfigMap was written.

use crate::api::naaintegration::NaaTenantStatus;
use crate::api::{NaaIntegration, NaaIntegrationStatus, condition};
use crate::controllers::children::children_readiness;
use crate::controllers::conditions::DesiredCondition;

use super::observe::Children;
use super::plan::{authority_url, oidc_metadata_url};

/// The status (without conditions) and Ready: the children's Ready, and not before both have an
/// appId and the settings are in `config_map` (its name, once written).
pub fn status(
    obj: &NaaIntegration,
    children: &Children,
    config_map: Option<String>,
    authority_host: &str,
    home_tenant: &str,
) -> (NaaIntegrationStatus, DesiredCondition) {
    let (web_api_app_id, app_id) = children.app_ids();
    let status = NaaIntegrationStatus {
        observed_generation: obj.metadata.generation,
        app_id,
        scope_uri: web_api_app_id
            .as_ref()
            .map(|id| format!("api://{id}/{}", obj.spec.scope)),
        web_api_app_id,
        authority_url: Some(authority_url(obj, authority_host, home_tenant)),
        tenants: obj
            .spec
            .tenants
            .iter()
            .map(|t| NaaTenantStatus {
                tenant_id: t.0.clone(),
                oidc_metadata_url: oidc_metadata_url(authority_host, &t.0),
            })
            .collect(),
        config_map_name: config_map.clone(),
        ..NaaIntegrationStatus::default()
    };
    let mut ready = children_readiness(&[&children.web_api, &children.app]);
    if ready.status && config_map.is_none() {
        ready = DesiredCondition::failed(
            condition::READY,
            "Reconciling",
            "waiting for both apps to get an appId",
        );
    }
    (status, ready)
}
