//! NaaIntegration: renders the two child AppRegistrations of Nested App Authentication (a Web API
//! exposing the scope with v2 tokens, and the SPA app with `brk-multihub://` redirect URIs and a
//! delegated permission on that scope) and the ConfigMap of settings an administrator enters in the
//! add-in. Pure rendering here; wiring in the runtime.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::appregistration::{
    ApiSpec, AppRegistrationSpec, PreAuthorizedApplication, RequiredResourceAccess, ScopeSpec,
    SignInAudience, SpaRedirectUri, SpaSpec, WhoCanConsent,
};
use crate::api::naaintegration::NaaAudience;
use crate::api::{AppRegistration, LocalRef, NaaIntegration};
use crate::labels::{LABEL_MANAGED_BY, MANAGED_BY};

/// Name of the child Web API AppRegistration.
pub fn web_api_name(naa: &NaaIntegration) -> String {
    format!("{}-webapi", naa.name_any())
}

/// Name of the child SPA AppRegistration.
pub fn app_name(naa: &NaaIntegration) -> String {
    format!("{}-app", naa.name_any())
}

/// Name of the settings ConfigMap.
pub fn config_map_name(naa: &NaaIntegration) -> String {
    naa.spec
        .config_map_name
        .clone()
        .unwrap_or_else(|| format!("{}-naa", naa.name_any()))
}

fn audience(naa: &NaaIntegration) -> SignInAudience {
    match naa.spec.sign_in_audience {
        NaaAudience::AzureADMultipleOrgs => SignInAudience::AzureADMultipleOrgs,
        NaaAudience::AzureADMyOrg => SignInAudience::AzureADMyOrg,
    }
}

fn child_meta(naa: &NaaIntegration, name: String) -> ObjectMeta {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
    labels.insert(
        "entra.bookme.io/naa-integration".to_string(),
        naa.name_any(),
    );
    ObjectMeta {
        name: Some(name),
        namespace: naa.namespace(),
        labels: Some(labels),
        owner_references: naa.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

fn empty_spec(display_name: String, audience: SignInAudience) -> AppRegistrationSpec {
    AppRegistrationSpec {
        display_name,
        description: None,
        sign_in_audience: audience,
        identifier_uris: Vec::new(),
        api: None,
        app_roles: Vec::new(),
        web: None,
        spa: None,
        public_client: None,
        required_resource_access: Vec::new(),
        grant_admin_consent: false,
        service_principal: Default::default(),
        owners: Vec::new(),
        owner_user_principal_names: Vec::new(),
        owners_management: Default::default(),
        credentials: Default::default(),
        deletion_policy: Default::default(),
        adopt: None,
    }
}

/// The Web API: multi-tenant, `api://{appId}`, the scope with admins-and-users consent, v2 tokens,
/// and (when `preAuthorize`) the SPA app pre-authorized for the scope.
pub fn render_web_api(naa: &NaaIntegration) -> AppRegistration {
    let scope = &naa.spec.scope;
    let mut spec = empty_spec(format!("{} Web API", naa.spec.display_name), audience(naa));
    spec.description = Some(format!(
        "Web API of the {} Outlook add-in (Nested App Authentication), managed by entra-operator.",
        naa.spec.display_name
    ));
    spec.identifier_uris = vec!["api://{appId}".to_string()];
    spec.api = Some(ApiSpec {
        requested_access_token_version: Some(2),
        scopes: vec![ScopeSpec {
            value: scope.clone(),
            who_can_consent: WhoCanConsent::AdminsAndUsers,
            admin_consent_display_name: Some(format!("Access {}", naa.spec.display_name)),
            admin_consent_description: Some(format!(
                "Lets the {} add-in call its Web API as the signed-in user.",
                naa.spec.display_name
            )),
            user_consent_display_name: Some(format!("Access {}", naa.spec.display_name)),
            user_consent_description: Some(format!(
                "Lets the {} add-in act for you.",
                naa.spec.display_name
            )),
            enabled: true,
        }],
        pre_authorized_applications: if naa.spec.pre_authorize {
            vec![PreAuthorizedApplication {
                app_ref: Some(LocalRef {
                    name: app_name(naa).into(),
                }),
                app_id: None,
                scopes: vec![scope.clone()],
            }]
        } else {
            Vec::new()
        },
        known_client_applications: None,
    });
    let mut child = AppRegistration::new(&web_api_name(naa), spec);
    child.metadata = child_meta(naa, web_api_name(naa));
    child
}

/// The add-in app: multi-tenant SPA with `brk-multihub://<fqdn>` for each add-in server, and the
/// delegated permission on the Web API's scope.
pub fn render_app(naa: &NaaIntegration) -> AppRegistration {
    let mut spec = empty_spec(naa.spec.display_name.clone(), audience(naa));
    spec.description = Some(format!(
        "The {} Outlook add-in (Nested App Authentication), managed by entra-operator.",
        naa.spec.display_name
    ));
    spec.spa = Some(SpaSpec {
        redirect_uris: naa
            .spec
            .addin_server_fqdns
            .iter()
            .map(|f| SpaRedirectUri(format!("brk-multihub://{}", f.0)))
            .collect(),
    });
    spec.required_resource_access = vec![RequiredResourceAccess {
        well_known_api: None,
        app_id: None,
        app_ref: Some(LocalRef {
            name: web_api_name(naa).into(),
        }),
        delegated: vec![naa.spec.scope.clone()],
        application: Vec::new(),
    }];
    let mut child = AppRegistration::new(&app_name(naa), spec);
    child.metadata = child_meta(naa, app_name(naa));
    child
}

/// The authority URL an add-in uses: any organizational directory for multi-tenant integrations,
/// the home tenant for single-tenant ones.
pub fn authority_url(naa: &NaaIntegration, authority_host: &str, home_tenant: &str) -> String {
    let host = authority_host.trim_end_matches('/');
    match naa.spec.sign_in_audience {
        NaaAudience::AzureADMultipleOrgs => format!("{host}/organizations"),
        NaaAudience::AzureADMyOrg => format!("{host}/{home_tenant}"),
    }
}

/// The OIDC metadata URL of one tenant.
pub fn oidc_metadata_url(authority_host: &str, tenant: &str) -> String {
    format!(
        "{}/{tenant}/v2.0/.well-known/openid-configuration",
        authority_host.trim_end_matches('/')
    )
}

/// The ConfigMap data: what an administrator enters in the add-in's configuration.
pub fn render_settings(
    naa: &NaaIntegration,
    app_id: &str,
    web_api_app_id: &str,
    authority_host: &str,
    home_tenant: &str,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    data.insert("appId".to_string(), app_id.to_string());
    data.insert("webApiAppId".to_string(), web_api_app_id.to_string());
    data.insert(
        "scope".to_string(),
        format!("api://{web_api_app_id}/{}", naa.spec.scope),
    );
    data.insert(
        "authorityUrl".to_string(),
        authority_url(naa, authority_host, home_tenant),
    );
    for tenant in &naa.spec.tenants {
        data.insert(
            format!("oidcMetadataUrl.{}", tenant.0),
            oidc_metadata_url(authority_host, &tenant.0),
        );
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naa() -> NaaIntegration {
        let mut n: NaaIntegration = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "NaaIntegration",
            "metadata": {"name": "pexip", "namespace": "addins"},
            "spec": {"displayName": "Pexip Scheduling", "scope": "PexipScheduling.Access",
                     "addinServerFqdns": ["addin.bookme.io", "addin.bookme.io:8443"],
                     "tenants": ["5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"]}
        }))
        .unwrap();
        n.metadata.uid = Some("u-2".into());
        n
    }

    #[test]
    fn web_api_exposes_the_scope_with_v2_tokens_and_preauthorizes_the_app() {
        let n = naa();
        let api = render_web_api(&n);
        assert_eq!(api.metadata.name.as_deref(), Some("pexip-webapi"));
        assert_eq!(
            api.spec.sign_in_audience,
            SignInAudience::AzureADMultipleOrgs
        );
        assert_eq!(api.spec.identifier_uris, vec!["api://{appId}"]);
        let a = api.spec.api.as_ref().unwrap();
        assert_eq!(a.requested_access_token_version, Some(2));
        assert_eq!(a.scopes[0].value, "PexipScheduling.Access");
        assert_eq!(a.scopes[0].who_can_consent, WhoCanConsent::AdminsAndUsers);
        let pre = &a.pre_authorized_applications[0];
        assert_eq!(pre.app_ref.as_ref().unwrap().name, "pexip-app");
        assert_eq!(pre.scopes, vec!["PexipScheduling.Access"]);
    }

    #[test]
    fn app_has_brk_multihub_redirects_and_the_delegated_permission() {
        let n = naa();
        let app = render_app(&n);
        let uris: Vec<&str> = app
            .spec
            .spa
            .as_ref()
            .unwrap()
            .redirect_uris
            .iter()
            .map(|u| u.0.as_str())
            .collect();
        assert_eq!(
            uris,
            [
                "brk-multihub://addin.bookme.io",
                "brk-multihub://addin.bookme.io:8443"
            ]
        );
        let rra = &app.spec.required_resource_access[0];
        assert_eq!(rra.app_ref.as_ref().unwrap().name, "pexip-webapi");
        assert_eq!(rra.delegated, vec!["PexipScheduling.Access"]);
        assert_eq!(
            app.metadata.owner_references.as_ref().unwrap()[0].kind,
            "NaaIntegration"
        );
    }

    #[test]
    fn without_preauthorization_the_web_api_lists_no_clients() {
        let mut n = naa();
        n.spec.pre_authorize = false;
        assert!(
            render_web_api(&n)
                .spec
                .api
                .unwrap()
                .pre_authorized_applications
                .is_empty()
        );
    }

    #[test]
    fn settings_carry_ids_authority_and_per_tenant_metadata() {
        let n = naa();
        let data = render_settings(
            &n,
            "app-id",
            "api-id",
            "https://login.microsoftonline.com/",
            "home",
        );
        assert_eq!(data["appId"], "app-id");
        assert_eq!(data["webApiAppId"], "api-id");
        assert_eq!(data["scope"], "api://api-id/PexipScheduling.Access");
        assert_eq!(
            data["authorityUrl"],
            "https://login.microsoftonline.com/organizations"
        );
        assert_eq!(
            data["oidcMetadataUrl.5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"],
            "https://login.microsoftonline.com/5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(config_map_name(&n), "pexip-naa");
    }
}
