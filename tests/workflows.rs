//! BankClient, TenantMapping and NaaIntegration end to end: all four controllers against the kube
//! emulator, Graph and tokens through the Entra emulator, both in-process.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use entra_operator::api::tenantmapping::TenantConsentState;
use entra_operator::api::{AppRegistration, BankClient, NaaIntegration, TenantMapping};
use entra_operator::graph::SecretString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(40);

fn cr(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// The API banks call, as in `examples/bookme-platform.yaml`.
fn system_api() -> Value {
    cr(
        "AppRegistration",
        "api-system-integration",
        json!({
            "displayName": "BookMe API System Integration",
            "signInAudience": "AzureADMyOrg",
            "identifierUris": ["api://{appId}"],
            "api": {"requestedAccessTokenVersion": 2},
            "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}],
            "servicePrincipal": {"appRoleAssignmentRequired": true, "visibleToUsers": false}
        }),
    )
}

fn bank_client(name: &str, bank_id: &str, secret: Value) -> Value {
    cr(
        "BankClient",
        name,
        json!({"bankId": bank_id, "api": {"appRef": {"name": "api-system-integration"}},
               "secret": secret}),
    )
}

/// `(status, reason, message)` of a condition.
fn condition(
    conditions: Option<&entra_operator::api::Conditions>,
    type_: &str,
) -> Option<(String, String, String)> {
    conditions?.get(type_).map(|c| {
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    })
}

fn bank_ready(bc: &BankClient) -> Option<(String, String, String)> {
    condition(bc.status.as_ref().map(|s| &s.conditions), "Ready")
}

async fn wait_bank_client<F>(h: &Harness, name: &str, what: &str, check: F) -> BankClient
where
    F: Fn(&BankClient) -> bool,
{
    let api = h.api::<BankClient>(NS);
    h.wait_for(&format!("BankClient {name} {what}"), WAIT, || async {
        let bc = api.get_opt(name).await.unwrap()?;
        let current =
            bc.status.as_ref().and_then(|s| s.observed_generation) == bc.metadata.generation;
        (current && check(&bc)).then_some(bc)
    })
    .await
}

fn is_ready(c: Option<(String, String, String)>) -> bool {
    c.is_some_and(|(s, _, _)| s == "True")
}

async fn app_registration(h: &Harness, name: &str) -> Option<AppRegistration> {
    h.api::<AppRegistration>(NS).get_opt(name).await.unwrap()
}

async fn config_map(h: &Harness, name: &str) -> BTreeMap<String, String> {
    h.api::<ConfigMap>(NS)
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|c| c.data)
        .unwrap_or_default()
}

async fn api_app_id(h: &Harness) -> String {
    app_registration(h, "api-system-integration")
        .await
        .and_then(|a| a.status?.app_id)
        .expect("API app id")
        .to_string()
}

/// A harness with all controllers, the API and the BankClient `nordbank` (its Secret `secret`)
/// Ready.
async fn ready_nordbank(secret: &str) -> (Harness, BankClient) {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(system_api()).await;
    h.apply(bank_client("nordbank", "nordbank", json!({"name": secret})))
        .await;
    let bc = wait_bank_client(&h, "nordbank", "Ready", |bc| is_ready(bank_ready(bc))).await;
    (h, bc)
}

#[tokio::test]
async fn bank_client_becomes_ready_and_its_secret_alone_gets_a_system_token() {
    let (h, bc) = ready_nordbank("nordbank-system-credentials").await;
    let status = bc.status.unwrap();
    let client_id = status.client_id.clone().expect("clientId");
    assert_eq!(
        status.app_registration_name.as_deref(),
        Some("bankclient-nordbank")
    );
    assert_eq!(
        status.secret_name.as_deref(),
        Some("nordbank-system-credentials")
    );
    let expires: jiff::Timestamp = status
        .secret_expires_at
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let renew: jiff::Timestamp = status.next_rotation_at.as_deref().unwrap().parse().unwrap();
    // Two years, renewed 60 days before.
    let lifetime_days = (expires - jiff::Timestamp::now()).get_seconds() / 86_400;
    assert!((728..=730).contains(&lifetime_days), "{lifetime_days}");
    assert_eq!((expires - renew).get_seconds(), 60 * 86_400);
    let api_app_id = api_app_id(&h).await;
    let role = status.role_assignment.unwrap();
    assert_eq!(role.role, "System");
    assert_eq!(role.api_app_id.as_deref(), Some(api_app_id.as_str()));
    assert!(role.granted);

    // The registry maps the token's azp to the bank.
    let registry = config_map(&h, "bank-clients").await;
    assert_eq!(
        registry,
        BTreeMap::from([(client_id.to_string(), "nordbank".to_string())])
    );

    // The emulator's app: single-tenant, named for the bank.
    let app = emulator_app(&h, &client_id).expect("app in Entra");
    assert_eq!(app["signInAudience"], "AzureADMyOrg");
    assert_eq!(app["displayName"], "BookMe System Integration (nordbank)");

    let data = secret_data(&h, NS, "nordbank-system-credentials")
        .await
        .expect("Secret");
    let claims =
        support::azure_identity_token_claims(&h, &data, &format!("api://{api_app_id}/.default"))
            .await
            .expect("token");
    assert_eq!(claims.azp.as_deref(), Some(client_id.as_str()));
    assert_eq!(claims.roles, vec!["System".to_string()]);
}

#[tokio::test]
async fn bank_client_rotation_keeps_the_old_secret_until_it_expires() {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(system_api()).await;
    h.apply(bank_client(
        "fjord",
        "fjordsparebank",
        json!({"name": "fjord-credentials", "lifetime": "40s", "renewBefore": "30s"}),
    ))
    .await;
    let bc = wait_bank_client(&h, "fjord", "Ready", |bc| is_ready(bank_ready(bc))).await;
    let first_expiry = bc.status.unwrap().secret_expires_at.unwrap();
    let old = secret_data(&h, NS, "fjord-credentials").await.unwrap();
    let scope = format!("api://{}/.default", api_app_id(&h).await);
    // Due 10s after creation: a new secret lands in the Secret, the parent shows its expiry.
    let bc = wait_bank_client(&h, "fjord", "rotated", |bc| {
        is_ready(bank_ready(bc))
            && bc.status.as_ref().unwrap().secret_expires_at.as_deref()
                != Some(first_expiry.as_str())
    })
    .await;
    let new = secret_data(&h, NS, "fjord-credentials").await.unwrap();
    assert_ne!(new["keyId"], old["keyId"]);
    assert_eq!(new["AZURE_CLIENT_ID"], old["AZURE_CLIENT_ID"]);
    let child = app_registration(&h, "bankclient-fjord").await.unwrap();
    let child_status = child.status.unwrap();
    let [previous] = &child_status.credentials[0].previous[..] else {
        panic!("one previous credential")
    };
    assert_eq!(previous.key_id, old["keyId"]);
    assert_eq!(
        previous.revoke_at.parse::<jiff::Timestamp>().unwrap(),
        first_expiry.parse::<jiff::Timestamp>().unwrap(),
        "the previous secret is kept until its own expiry"
    );
    assert!(
        bc.status.unwrap().secret_expires_at.unwrap() > first_expiry,
        "status follows the new secret"
    );
    for data in [&old, &new] {
        let claims = support::azure_identity_token_claims(&h, data, &scope)
            .await
            .expect("both secrets work during the overlap");
        assert_eq!(claims.roles, vec!["System".to_string()]);
    }
}

#[tokio::test]
async fn deleting_a_bank_client_removes_app_secret_and_registry_entry() {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(system_api()).await;
    h.apply(bank_client(
        "nordbank",
        "nordbank",
        json!({"name": "nordbank-creds"}),
    ))
    .await;
    h.apply(bank_client(
        "fjord",
        "fjordsparebank",
        json!({"name": "fjord-creds"}),
    ))
    .await;
    let nord = wait_bank_client(&h, "nordbank", "Ready", |bc| is_ready(bank_ready(bc))).await;
    wait_bank_client(&h, "fjord", "Ready", |bc| is_ready(bank_ready(bc))).await;
    let nord_client = nord.status.unwrap().client_id.unwrap();
    h.wait_for("two registry entries", WAIT, || async {
        (config_map(&h, "bank-clients").await.len() == 2).then_some(())
    })
    .await;

    h.api::<BankClient>(NS)
        .delete("nordbank", &Default::default())
        .await
        .unwrap();
    h.wait_for("BankClient, child and Secret gone", WAIT, || async {
        let bc = h.api::<BankClient>(NS).get_opt("nordbank").await.unwrap();
        let child = app_registration(&h, "bankclient-nordbank").await;
        let secret = secret_data(&h, NS, "nordbank-creds").await;
        (bc.is_none() && child.is_none() && secret.is_none()).then_some(())
    })
    .await;
    assert!(
        emulator_app(&h, &nord_client).is_none(),
        "app deleted in Entra"
    );
    let registry = config_map(&h, "bank-clients").await;
    assert_eq!(registry.len(), 1);
    assert!(!registry.contains_key(nord_client.as_str()));
    assert_eq!(registry.values().next().unwrap(), "fjordsparebank");
}

#[tokio::test]
async fn a_second_claim_of_a_bank_id_is_a_conflict_until_the_first_goes() {
    let (h, first) = ready_nordbank("nordbank-creds").await;
    let first_client = first.status.unwrap().client_id.unwrap();
    // Creation times have second precision: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.apply(bank_client(
        "nordbank-2",
        "nordbank",
        json!({"name": "nordbank-2-creds"}),
    ))
    .await;
    let second = wait_bank_client(&h, "nordbank-2", "Conflict", |bc| {
        bank_ready(bc).is_some_and(|(s, r, m)| {
            s == "False" && r == "Conflict" && m.contains("BankClient nordbank;")
        })
    })
    .await;
    assert!(second.status.unwrap().client_id.is_none());
    assert!(
        app_registration(&h, "bankclient-nordbank-2")
            .await
            .is_none()
    );
    assert_eq!(
        config_map(&h, "bank-clients").await,
        BTreeMap::from([(first_client.to_string(), "nordbank".to_string())]),
        "the registry keeps the first"
    );

    // When the holder goes, the waiting claim takes over.
    h.api::<BankClient>(NS)
        .delete("nordbank", &Default::default())
        .await
        .unwrap();
    let second = wait_bank_client(&h, "nordbank-2", "Ready", |bc| is_ready(bank_ready(bc))).await;
    let second_client = second.status.unwrap().client_id.unwrap();
    h.wait_for("registry handed over", WAIT, || async {
        (config_map(&h, "bank-clients").await
            == BTreeMap::from([(second_client.to_string(), "nordbank".to_string())]))
        .then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// TenantMapping

const NORDIC: &str = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const FJORD: &str = "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d";

fn add_customer_tenant(h: &Harness, name: &str, id: &str, display_name: &str) {
    let mut spec = entra_emulator::TenantSpec::new(name);
    spec.id = Some(id.to_string());
    spec.display_name = Some(display_name.to_string());
    h.entra.add_tenant(spec);
}

/// A multi-tenant API with its own client secret, as the platform's Management API.
fn management_api() -> Value {
    cr(
        "AppRegistration",
        "management-api",
        json!({
            "displayName": "BookMe Management API",
            "signInAudience": "AzureADMultipleOrgs",
            "identifierUris": ["api://{appId}"],
            "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"]}],
            "grantAdminConsent": true,
            "credentials": {"passwords": [{"secretName": "management-api-credentials"}]}
        }),
    )
}

fn tenant_mapping(name: &str, tenant: &str, banks: &[&str], extra: Value) -> Value {
    let mut spec = json!({"tenantId": tenant, "bankIds": banks});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    cr("TenantMapping", name, spec)
}

fn mapping_ready(m: &TenantMapping) -> Option<(String, String, String)> {
    condition(m.status.as_ref().map(|s| &s.conditions), "Ready")
}

async fn wait_mapping<F>(h: &Harness, name: &str, what: &str, check: F) -> TenantMapping
where
    F: Fn(&TenantMapping) -> bool,
{
    let api = h.api::<TenantMapping>(NS);
    h.wait_for(&format!("TenantMapping {name} {what}"), WAIT, || async {
        let m = api.get_opt(name).await.unwrap()?;
        let current =
            m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation;
        (current && check(&m)).then_some(m)
    })
    .await
}

#[tokio::test]
async fn tenant_mapping_shows_not_consented_with_the_url_then_consented_after_a_recheck() {
    let mut h = Harness::start().await;
    add_customer_tenant(&h, "nordic", NORDIC, "Nordic Bank Group");
    h.start_all_controllers();
    h.apply(management_api()).await;
    h.apply(tenant_mapping(
        "nordic",
        NORDIC,
        &["nordbank"],
        json!({"consent": {"apps": [{"appRef": {"name": "management-api"}}],
                           "probe": {"appRef": {"name": "management-api"}}}}),
    ))
    .await;
    let m = wait_mapping(&h, "nordic", "NotConsented", |m| {
        mapping_ready(m).is_some_and(|(s, r, _)| s == "False" && r == "NotConsented")
    })
    .await;
    let status = m.status.unwrap();
    let tenant = status.tenant.unwrap();
    assert_eq!(tenant.display_name.as_deref(), Some("Nordic Bank Group"));
    assert_eq!(
        tenant.default_domain_name.as_deref(),
        Some("nordic.onmicrosoft.com")
    );
    let app = &status.apps[0];
    let app_id = app.app_id.clone().unwrap();
    assert_eq!(app.state, TenantConsentState::NotConsented);
    let url = app.admin_consent_url.as_deref().unwrap();
    assert!(
        url.contains(&format!("/{NORDIC}/adminconsent?client_id={app_id}")),
        "{url}"
    );
    assert!(app.message.as_deref().unwrap().contains("AADSTS700016"));
    assert_eq!(status.consent_summary.as_deref(), Some("0/1"));

    // The customer's administrator opens the URL and approves (the v2 form without a registered
    // redirect URI would be refused here); the recheck annotation makes it visible at once.
    h.entra.set_consent_approve(true);
    let opened = h
        .entra
        .client()
        .send("GET", url, &[], None)
        .await
        .expect("consent URL answers");
    assert!(
        opened.status < 400,
        "the consent URL works: {} {}",
        opened.status,
        String::from_utf8_lossy(&opened.body)
    );
    h.api::<TenantMapping>(NS)
        .patch(
            "nordic",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/recheck": "1"}}})),
        )
        .await
        .unwrap();
    let m = wait_mapping(&h, "nordic", "Ready", |m| is_ready(mapping_ready(m))).await;
    let status = m.status.unwrap();
    assert_eq!(status.apps[0].state, TenantConsentState::Consented);
    assert_eq!(status.apps[0].admin_consent_url, None);
    assert_eq!(status.consent_summary.as_deref(), Some("1/1"));
    assert_eq!(status.recheck_token.as_deref(), Some("1"));
}

#[tokio::test]
async fn an_unknown_tenant_is_not_found_and_an_app_without_credential_is_unknown() {
    let mut h = Harness::start().await;
    add_customer_tenant(&h, "fjord", FJORD, "Fjord Savings");
    h.start_all_controllers();
    h.apply(cr(
        "AppRegistration",
        "management-ui",
        json!({"displayName": "BookMe Management UI", "signInAudience": "AzureADMultipleOrgs"}),
    ))
    .await;
    h.apply(tenant_mapping(
        "nowhere",
        "00000000-1111-4222-8333-444444444444",
        &["nobank"],
        json!({}),
    ))
    .await;
    h.apply(tenant_mapping(
        "fjord",
        FJORD,
        &["fjordsparebank"],
        json!({"consent": {"apps": [{"appRef": {"name": "management-ui"}}]}}),
    ))
    .await;
    let m = wait_mapping(&h, "nowhere", "TenantNotFound", |m| {
        mapping_ready(m).is_some_and(|(s, r, _)| s == "False" && r == "TenantNotFound")
    })
    .await;
    assert!(m.status.unwrap().tenant.is_none());
    let m = wait_mapping(&h, "fjord", "ConsentUnknown", |m| {
        m.status
            .as_ref()
            .and_then(|s| s.apps.first())
            .is_some_and(|a| a.app_id.is_some())
            && mapping_ready(m).is_some_and(|(s, r, _)| s == "False" && r == "ConsentUnknown")
    })
    .await;
    let app = &m.status.unwrap().apps[0];
    assert_eq!(app.state, TenantConsentState::Unknown);
    assert!(
        app.message.as_deref().unwrap().contains("no client secret"),
        "{:?}",
        app.message
    );
}

#[tokio::test]
async fn tenant_registry_maps_two_bank_ids_and_a_contested_bank_id_is_a_conflict() {
    let mut h = Harness::start().await;
    add_customer_tenant(&h, "nordic", NORDIC, "Nordic Bank Group");
    add_customer_tenant(&h, "fjord", FJORD, "Fjord Savings");
    h.start_all_controllers();
    h.apply(tenant_mapping(
        "nordic",
        NORDIC,
        &["nordbank", "nordbank-markets"],
        json!({"defaultBankId": "nordbank-markets"}),
    ))
    .await;
    wait_mapping(&h, "nordic", "Ready", |m| is_ready(mapping_ready(m))).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.apply(tenant_mapping(
        "fjord",
        FJORD,
        &["fjordsparebank", "nordbank"],
        json!({}),
    ))
    .await;
    let m = wait_mapping(&h, "fjord", "Conflict", |m| {
        mapping_ready(m).is_some_and(|(s, r, _)| s == "False" && r == "Conflict")
    })
    .await;
    let (_, _, message) = mapping_ready(&m).unwrap();
    assert!(
        message.contains("BankId nordbank is already mapped by TenantMapping nordic"),
        "{message}"
    );
    let registry = config_map(&h, "tenant-mappings").await;
    assert_eq!(registry.len(), 1, "{registry:?}");
    let entry: Value = serde_json::from_str(&registry[NORDIC]).unwrap();
    assert_eq!(
        entry,
        json!({"bankIds": ["nordbank", "nordbank-markets"], "defaultBankId": "nordbank-markets"})
    );

    // Fix the conflict: the mapping is published.
    h.api::<TenantMapping>(NS)
        .patch(
            "fjord",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bankIds": ["fjordsparebank"]}})),
        )
        .await
        .unwrap();
    wait_mapping(&h, "fjord", "Ready", |m| is_ready(mapping_ready(m))).await;
    let registry = config_map(&h, "tenant-mappings").await;
    let entry: Value = serde_json::from_str(&registry[FJORD]).unwrap();
    assert_eq!(
        entry,
        json!({"bankIds": ["fjordsparebank"], "defaultBankId": "fjordsparebank"})
    );
    // Deleting a mapping removes its entry.
    h.api::<TenantMapping>(NS)
        .delete("nordic", &Default::default())
        .await
        .unwrap();
    h.wait_for("nordic entry removed", WAIT, || async {
        let registry = config_map(&h, "tenant-mappings").await;
        (!registry.contains_key(NORDIC) && registry.contains_key(FJORD)).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// NaaIntegration

fn pexip(fqdns: &[&str]) -> Value {
    cr(
        "NaaIntegration",
        "pexip-scheduling",
        json!({
            "displayName": "BookMe Pexip Scheduling",
            "scope": "PexipScheduling.Access",
            "addinServerFqdns": fqdns,
            "tenants": [NORDIC, FJORD],
            "configMapName": "pexip-scheduling-naa"
        }),
    )
}

fn naa_ready(n: &NaaIntegration) -> Option<(String, String, String)> {
    condition(n.status.as_ref().map(|s| &s.conditions), "Ready")
}

async fn wait_naa(
    h: &Harness,
    what: &str,
    check: impl Fn(&NaaIntegration) -> bool,
) -> NaaIntegration {
    let api = h.api::<NaaIntegration>(NS);
    h.wait_for(&format!("NaaIntegration {what}"), WAIT, || async {
        let n = api.get_opt("pexip-scheduling").await.unwrap()?;
        let current =
            n.status.as_ref().and_then(|s| s.observed_generation) == n.metadata.generation;
        (current && check(&n)).then_some(n)
    })
    .await
}

fn without(mut v: Value, key: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(key);
    }
    v
}

#[tokio::test]
async fn naa_integration_renders_both_apps_the_settings_and_v2_tokens() {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(pexip(&["addin.bookme.io", "addin-staging.bookme.io"]))
        .await;
    let n = wait_naa(&h, "Ready", |n| is_ready(naa_ready(n))).await;
    let status = n.status.unwrap();
    let app_id = status.app_id.clone().unwrap();
    let api_id = status.web_api_app_id.clone().unwrap();
    assert_eq!(
        status.scope_uri.as_deref(),
        Some(format!("api://{api_id}/PexipScheduling.Access").as_str())
    );

    // The Web API as Entra holds it.
    let api = emulator_app(&h, &api_id).expect("Web API in Entra");
    assert_eq!(api["signInAudience"], "AzureADMultipleOrgs");
    assert_eq!(api["identifierUris"], json!([format!("api://{api_id}")]));
    assert_eq!(api["api"]["requestedAccessTokenVersion"], 2);
    let scopes = api["api"]["oauth2PermissionScopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0]["value"], "PexipScheduling.Access");
    assert_eq!(scopes[0]["type"], "User", "admins and users may consent");
    assert_eq!(scopes[0]["isEnabled"], true);
    let scope_id = scopes[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        api["api"]["preAuthorizedApplications"],
        json!([{"appId": app_id, "delegatedPermissionIds": [scope_id]}])
    );

    // The add-in app.
    let app = emulator_app(&h, &app_id).expect("app in Entra");
    assert_eq!(app["signInAudience"], "AzureADMultipleOrgs");
    assert_eq!(
        app["spa"]["redirectUris"],
        json!([
            "brk-multihub://addin.bookme.io",
            "brk-multihub://addin-staging.bookme.io"
        ])
    );
    assert_eq!(
        app["requiredResourceAccess"],
        json!([{"resourceAppId": api_id, "resourceAccess": [{"id": scope_id, "type": "Scope"}]}])
    );

    // Tokens for the Web API are v2 (azp, v2 issuer).
    let creds = h.entra.operator_credentials();
    let probe = h
        .ctx
        .graph
        .probe_client_credentials(
            &creds.tenant_id,
            &creds.client_id,
            &SecretString::new(creds.client_secret.clone()),
            &format!("api://{api_id}/.default"),
        )
        .await
        .unwrap();
    match probe {
        entra_operator::graph::TokenProbe::Issued(claims) => {
            assert!(
                claims.iss.as_deref().unwrap().ends_with("/v2.0"),
                "{claims:?}"
            );
            assert_eq!(claims.azp.as_deref(), Some(creds.client_id.as_str()));
            assert_eq!(claims.appid, None);
        }
        other => panic!("no token: {other:?}"),
    }

    // The settings an administrator enters in the add-in.
    let host = creds.authority_host.trim_end_matches('/').to_string();
    let data = config_map(&h, "pexip-scheduling-naa").await;
    assert_eq!(data["appId"], app_id);
    assert_eq!(data["webApiAppId"], api_id);
    assert_eq!(data["authorityUrl"], format!("{host}/organizations"));
    for tenant in [NORDIC, FJORD] {
        assert_eq!(
            data[&format!("oidcMetadataUrl.{tenant}")],
            format!("{host}/{tenant}/v2.0/.well-known/openid-configuration")
        );
    }
    assert_eq!(data.len(), 6, "{data:?}");

    // Changing the FQDN list changes only the SPA redirect URIs.
    h.entra.clear_requests();
    h.api::<NaaIntegration>(NS)
        .patch(
            "pexip-scheduling",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"addinServerFqdns": ["addin.bookme.io", "addin.bookme.no:8443"]}}),
            ),
        )
        .await
        .unwrap();
    let app_after = h
        .wait_for("redirect URIs updated", WAIT, || async {
            emulator_app(&h, &app_id).filter(|a| {
                a["spa"]["redirectUris"]
                    == json!([
                        "brk-multihub://addin.bookme.io",
                        "brk-multihub://addin.bookme.no:8443"
                    ])
            })
        })
        .await;
    wait_naa(&h, "Ready again", |n| is_ready(naa_ready(n))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(emulator_app(&h, &api_id).unwrap(), api, "Web API untouched");
    assert_eq!(without(app_after, "spa"), without(app, "spa"));
    let writes: Vec<String> = h
        .entra
        .requests()
        .into_iter()
        .filter(|r| r.template.starts_with("/v1.0") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    assert_eq!(writes, vec!["PATCH /v1.0/applications/{id}".to_string()]);
    assert_eq!(config_map(&h, "pexip-scheduling-naa").await, data);
}

// ---------------------------------------------------------------------------------------------
// The whole platform

/// `Kind/name` of every resource of the four kinds that is not Ready for its current generation.
async fn not_ready(h: &Harness) -> Vec<String> {
    use kube::api::{ApiResource, DynamicObject};
    let kinds = [
        ApiResource::erase::<AppRegistration>(&()),
        ApiResource::erase::<BankClient>(&()),
        ApiResource::erase::<TenantMapping>(&()),
        ApiResource::erase::<NaaIntegration>(&()),
    ];
    let mut out = Vec::new();
    for resource in &kinds {
        let api: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(h.client.clone(), NS, resource);
        for obj in api.list(&Default::default()).await.unwrap() {
            let status = &obj.data["status"];
            let current = status["observedGeneration"].as_i64() == obj.metadata.generation;
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if !(current && ready) {
                out.push(format!(
                    "{}/{}",
                    resource.kind,
                    obj.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_platform_example_converges_to_all_ready() {
    let mut h = Harness::start().await;
    add_customer_tenant(&h, "nordic", NORDIC, "Nordic Bank Group");
    add_customer_tenant(&h, "fjord", FJORD, "Fjord Savings");
    h.start_all_controllers();
    let text =
        std::fs::read_to_string(support::root().join("examples/bookme-platform.yaml")).unwrap();
    let mut applied = 0;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        value["metadata"]["namespace"] = json!(NS);
        h.apply(value).await;
        applied += 1;
    }
    assert_eq!(applied, 8);

    // Until the customers' administrators consent, the mappings say so.
    wait_mapping(&h, "fjord-savings", "NotConsented", |m| {
        mapping_ready(m).is_some_and(|(_, r, _)| r == "NotConsented")
    })
    .await;
    let app_ids: Vec<String> = {
        let mut ids = Vec::new();
        for name in ["management-api", "management-ui"] {
            let id = h
                .wait_for(&format!("{name} appId"), WAIT, || async {
                    app_registration(&h, name)
                        .await
                        .and_then(|a| a.status?.app_id)
                })
                .await;
            ids.push(id.to_string());
        }
        ids
    };
    for tenant in [NORDIC, FJORD] {
        for app_id in &app_ids {
            h.entra
                .grant_admin_consent(tenant, app_id)
                .expect("consent");
        }
    }
    for name in ["nordic-bank-group", "fjord-savings"] {
        h.api::<TenantMapping>(NS)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"entra.bookme.io/recheck": "consented"}}}),
                ),
            )
            .await
            .unwrap();
    }
    h.wait_for("every resource Ready", Duration::from_secs(90), || async {
        let pending = not_ready(&h).await;
        if !pending.is_empty() {
            eprintln!("not ready yet: {pending:?}");
        }
        pending.is_empty().then_some(())
    })
    .await;

    // The registries the API reads.
    let banks = config_map(&h, "bank-clients").await;
    let mut bank_ids: Vec<&String> = banks.values().collect();
    bank_ids.sort();
    assert_eq!(bank_ids, ["fjordsparebank", "nordbank"]);
    let tenants = config_map(&h, "tenant-mappings").await;
    let nordic: Value = serde_json::from_str(&tenants[NORDIC]).unwrap();
    assert_eq!(
        nordic,
        json!({"bankIds": ["nordbank", "nordbank-markets"], "defaultBankId": "nordbank"})
    );
    assert!(tenants.contains_key(FJORD));
    assert_eq!(
        config_map(&h, "pexip-scheduling-naa").await.len(),
        6,
        "NAA settings"
    );
}

/// A BankClient's child AppRegistration deleted by hand (with the default `deletionPolicy: Delete`
/// its application goes too) comes back at once, not at the next resync: the parent's trigger
/// passes every event of a child that goes, though what it mirrors did not change.
#[tokio::test]
async fn a_child_deleted_by_hand_is_recreated_at_once() {
    let (h, _) = ready_nordbank("nordbank-creds").await;
    let first = app_registration(&h, "bankclient-nordbank")
        .await
        .expect("the child")
        .metadata
        .uid;
    h.api::<AppRegistration>(NS)
        .delete("bankclient-nordbank", &Default::default())
        .await
        .unwrap();
    // The harness resyncs every 5 minutes: only the child's deletion can bring it back sooner.
    h.wait_for("a new child", WAIT, || async {
        let child = app_registration(&h, "bankclient-nordbank").await?;
        (child.metadata.uid != first && child.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    wait_bank_client(&h, "nordbank", "Ready again", |bc| {
        is_ready(bank_ready(bc))
            && bc
                .status
                .as_ref()
                .and_then(|s| s.client_id.as_ref())
                .is_some()
    })
    .await;
}
