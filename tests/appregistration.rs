//! The AppRegistration controller end to end: kube-rs's real Controller against the kube emulator,
//! Graph through the Entra emulator, both in-process.

mod support;

use std::time::Duration;

use entra_operator::api::AppRegistration;
use entra_operator::graph::TokenProbe;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(30);

fn app(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

async fn get(h: &Harness, name: &str) -> AppRegistration {
    h.api::<AppRegistration>(NS).get(name).await.unwrap()
}

fn condition(obj: &AppRegistration, type_: &str) -> Option<(String, String, String)> {
    obj.status
        .as_ref()?
        .conditions
        .get(type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_ready(h: &Harness, name: &str) -> AppRegistration {
    let what = format!("AppRegistration {name} Ready");
    h.wait_for(&what, WAIT, || async {
        let obj = get(h, name).await;
        let ready = condition(&obj, "Ready").is_some_and(|(s, _, _)| s == "True");
        let current =
            obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
        (ready && current).then_some(obj)
    })
    .await
}

/// Graph writes (non-GET requests under /v1.0) the emulator saw.
fn graph_writes(h: &Harness) -> Vec<String> {
    h.entra
        .requests()
        .into_iter()
        .filter(|r| r.template.starts_with("/v1.0") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.template))
        .collect()
}

/// Let the controller reconcile `name` again without a spec change.
async fn poke(h: &Harness, name: &str, value: &str) {
    h.api::<AppRegistration>(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": value}}})),
        )
        .await
        .unwrap();
}

async fn settle(h: &Harness, name: &str) {
    // The reconcile after a poke is done when a status write or nothing happens; give it time.
    let _ = wait_ready(h, name).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn reports_api() -> Value {
    json!({
        "displayName": "Reports API",
        "description": "first",
        "identifierUris": ["api://{appId}"],
        "api": {"requestedAccessTokenVersion": 2, "scopes": [{"value": "Reports.Read"}]},
        "appRoles": [
            {"value": "Reports.Export", "allowedMemberTypes": ["Application"]},
            {"value": "Reports.Admin", "allowedMemberTypes": ["User"]}
        ],
        "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"]}],
        "grantAdminConsent": true,
        "credentials": {"passwords": [{"secretName": "reports-credentials"}]}
    })
}

#[tokio::test]
async fn create_becomes_ready_with_ids_and_a_working_secret_and_resync_writes_nothing() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    let obj = wait_ready(&h, "reports").await;
    let status = obj.status.clone().unwrap();
    let app_id = status.app_id.clone().expect("appId");
    assert!(status.object_id.is_some());
    assert!(status.service_principal_id.is_some());
    assert_eq!(
        status.unique_name.as_deref(),
        Some("entra-operator.default.reports")
    );
    assert_eq!(status.identifier_uris, vec![format!("api://{app_id}")]);
    assert!(status.role_ids.contains_key("Reports.Export"));
    assert!(status.scope_ids.contains_key("Reports.Read"));
    assert_eq!(
        status.consent.as_ref().unwrap().state,
        entra_operator::api::appregistration::ConsentState::Granted
    );
    let cred = &status.credentials[0];
    assert!(cred.key_id.is_some() && cred.expires_at.is_some() && cred.renew_at.is_some());
    assert!(cred.pending.is_none());

    // The Secret works as it is: its values get a token from Entra.
    let data = secret_data(&h, NS, "reports-credentials")
        .await
        .expect("Secret written");
    assert_eq!(data["AZURE_CLIENT_ID"], app_id);
    assert_eq!(data["keyId"], *cred.key_id.as_ref().unwrap());
    let probe = support::probe_with_secret(&h, &data, "https://graph.microsoft.com/.default")
        .await
        .unwrap();
    assert!(matches!(probe, TokenProbe::Issued(_)), "{probe:?}");

    // A resync of the settled resource makes no Graph write at all.
    h.entra.clear_requests();
    poke(&h, "reports", "1").await;
    settle(&h, "reports").await;
    assert_eq!(graph_writes(&h), Vec::<String>::new());
    assert!(
        h.entra.requests().iter().any(|r| r.method == "GET"),
        "the resync did observe Graph"
    );
}

#[tokio::test]
async fn an_edit_sends_only_the_changed_property() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    wait_ready(&h, "reports").await;
    h.entra.clear_requests();
    h.api::<AppRegistration>(NS)
        .patch(
            "reports",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "second"}})),
        )
        .await
        .unwrap();
    let obj = wait_ready(&h, "reports").await;
    settle(&h, "reports").await;
    assert_eq!(
        graph_writes(&h),
        vec!["PATCH /v1.0/applications/{id}".to_string()]
    );
    let app = h
        .ctx
        .graph
        .get_application(obj.status.unwrap().object_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(app.description.as_deref(), Some("second"));
}

#[tokio::test]
async fn removing_a_role_disables_it_then_deletes_it() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    let obj = wait_ready(&h, "reports").await;
    let object_id = obj.status.unwrap().object_id.unwrap();
    h.entra.clear_requests();
    let mut spec = reports_api();
    spec["appRoles"] = json!([{"value": "Reports.Export", "allowedMemberTypes": ["Application"]}]);
    h.api::<AppRegistration>(NS)
        .patch(
            "reports",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .unwrap();
    let obj = wait_ready(&h, "reports").await;
    settle(&h, "reports").await;
    let writes = graph_writes(&h);
    assert_eq!(
        writes,
        vec![
            "PATCH /v1.0/applications/{id}".to_string(),
            "PATCH /v1.0/applications/{id}".to_string()
        ],
        "disable, then remove"
    );
    let app = h.ctx.graph.get_application(&object_id).await.unwrap();
    let values: Vec<String> = app
        .app_roles
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(values, vec!["Reports.Export".to_string()]);
    assert!(!obj.status.unwrap().role_ids.contains_key("Reports.Admin"));
}

fn system_api() -> Value {
    json!({
        "displayName": "System API",
        "identifierUris": ["api://{appId}"],
        "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}]
    })
}

fn bank_app() -> Value {
    json!({
        "displayName": "Bank client",
        "requiredResourceAccess": [{"appRef": {"name": "system-api"}, "application": ["System"]}],
        "grantAdminConsent": true,
        "credentials": {"passwords": [{"secretName": "bank-credentials"}]}
    })
}

#[tokio::test]
async fn references_converge_in_either_order_and_tokens_carry_the_granted_role() {
    let mut h = Harness::start().await;
    h.start_controllers();
    // The client first: it waits for the API, visibly.
    h.apply(app("bank", bank_app())).await;
    h.wait_for("WaitingForReference", WAIT, || async {
        let obj = get(&h, "bank").await;
        condition(&obj, "Ready").filter(|(s, r, m)| {
            s == "False" && r == "WaitingForReference" && m.contains("system-api")
        })
    })
    .await;
    h.apply(app("system-api", system_api())).await;
    let api = wait_ready(&h, "system-api").await;
    let bank = wait_ready(&h, "bank").await;
    let status = bank.status.unwrap();
    assert_eq!(
        status.consent.as_ref().unwrap().state,
        entra_operator::api::appregistration::ConsentState::Granted
    );
    let data = secret_data(&h, NS, "bank-credentials").await.unwrap();
    let api_app_id = api.status.unwrap().app_id.unwrap();
    let probe = support::probe_with_secret(&h, &data, &format!("api://{api_app_id}/.default"))
        .await
        .unwrap();
    // The Azure SDK, given only the Secret's keys, gets a token carrying the granted role.
    let claims =
        support::azure_identity_token_claims(&h, &data, &format!("api://{api_app_id}/.default"))
            .await
            .expect("azure_identity token from the Secret");
    assert_eq!(claims.roles, vec!["System".to_string()]);
    assert_eq!(
        claims.tid.as_deref(),
        Some(data["AZURE_TENANT_ID"].as_str())
    );
    match probe {
        TokenProbe::Issued(claims) => {
            assert_eq!(claims.roles, vec!["System".to_string()]);
            // v1 tokens (the API did not ask for v2) name the client in `appid`, v2 in `azp`.
            let client = claims.azp.as_deref().or(claims.appid.as_deref());
            assert_eq!(client, Some(data["AZURE_CLIENT_ID"].as_str()));
        }
        other => panic!("no token: {other:?}"),
    }
}

#[tokio::test]
async fn deleting_removes_the_application_and_orphan_keeps_it() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("gone", json!({"displayName": "Gone"}))).await;
    h.apply(app(
        "kept",
        json!({"displayName": "Kept", "deletionPolicy": "Orphan"}),
    ))
    .await;
    let gone = wait_ready(&h, "gone").await.status.unwrap().app_id.unwrap();
    let kept = wait_ready(&h, "kept").await.status.unwrap().app_id.unwrap();
    let api = h.api::<AppRegistration>(NS);
    api.delete("gone", &Default::default()).await.unwrap();
    api.delete("kept", &Default::default()).await.unwrap();
    h.wait_for("both deleted", WAIT, || async {
        let a = api.get_opt("gone").await.unwrap();
        let b = api.get_opt("kept").await.unwrap();
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    assert!(emulator_app(&h, &gone).is_none(), "deleted");
    assert!(emulator_app(&h, &kept).is_some(), "orphaned");
}
