//! What Graph's refusals look like to an operator on call: a 403 names the missing permission, a 400
//! carries Graph's message, neither turns into a retry storm; 429 and 5xx are retried to success.

mod support;

use std::time::Duration;

use entra_emulator::{FaultKind, FaultRule};
use entra_operator::api::AppRegistration;
use serde_json::{Value, json};
use support::Harness;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(30);

fn app(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

async fn ready_condition(h: &Harness, name: &str) -> Option<(String, String, String)> {
    let obj: AppRegistration = h.api(NS).get(name).await.ok()?;
    obj.status?.conditions.get("Ready").map(|c| {
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    })
}

async fn wait_ready(h: &Harness, name: &str) {
    h.wait_for(&format!("{name} Ready"), WAIT, || async {
        ready_condition(h, name)
            .await
            .filter(|(s, _, _)| s == "True")
            .map(|_| ())
    })
    .await
}

async fn wait_failed(h: &Harness, name: &str, reason: &str) -> String {
    h.wait_for(&format!("{name} Ready=False {reason}"), WAIT, || async {
        ready_condition(h, name)
            .await
            .filter(|(s, r, _)| s == "False" && r == reason)
            .map(|(_, _, m)| m)
    })
    .await
}

fn attempts(h: &Harness, method: &str, template: &str) -> usize {
    h.entra
        .requests()
        .iter()
        .filter(|r| r.method == method && r.template == template)
        .count()
}

#[tokio::test]
async fn forbidden_names_the_missing_permission_and_backs_off() {
    let mut h = Harness::start().await;
    h.entra.deny(Some("POST"), "/v1.0/oauth2PermissionGrants");
    h.start_controllers();
    h.apply(app(
        "ui",
        json!({"displayName": "UI", "grantAdminConsent": true,
               "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"]}]}),
    ))
    .await;
    let message = wait_failed(&h, "ui", "GraphForbidden").await;
    assert!(
        message.contains("DelegatedPermissionGrant.ReadWrite.All"),
        "message names the permission: {message}"
    );
    let first = attempts(&h, "POST", "/v1.0/oauth2PermissionGrants");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = attempts(&h, "POST", "/v1.0/oauth2PermissionGrants");
    assert!(
        later - first <= 1,
        "backs off instead of hammering Graph: {first} then {later}"
    );
    // Once the permission is granted, the next attempt succeeds (forced here by a spec change).
    h.entra.clear_denies();
    let api = h.api::<AppRegistration>(NS);
    api.patch(
        "ui",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"description": "permission granted"}})),
    )
    .await
    .unwrap();
    wait_ready(&h, "ui").await;
}

#[tokio::test]
async fn bad_request_carries_graphs_message_and_is_not_retried_in_a_loop() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app(
        "api",
        json!({"displayName": "API", "identifierUris": ["https://api.unverified-domain.example/reports"]}),
    ))
    .await;
    let message = wait_failed(&h, "api", "GraphBadRequest").await;
    assert!(
        message.contains("verified domain"),
        "Graph's message: {message}"
    );
    let first = attempts(&h, "PATCH", "/v1.0/applications/{id}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = attempts(&h, "PATCH", "/v1.0/applications/{id}");
    assert!(later - first <= 1, "no retry storm: {first} then {later}");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_to_success() {
    let mut h = Harness::start().await;
    h.entra.add_fault(
        FaultRule::new(
            "PATCH",
            "/v1.0/applications(uniqueName='{uniqueName}')",
            FaultKind::Status { status: 429 },
        )
        .times(2),
    );
    h.entra.add_fault(
        FaultRule::new(
            "PATCH",
            "/v1.0/servicePrincipals(appId='{appId}')",
            FaultKind::Status { status: 503 },
        )
        .times(2),
    );
    h.start_controllers();
    h.apply(app("svc", json!({"displayName": "Service"}))).await;
    wait_ready(&h, "svc").await;
    let statuses: Vec<u16> = h.entra.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&429), "throttled first: {statuses:?}");
    assert!(statuses.contains(&503), "server error first: {statuses:?}");
    // Exactly one application exists for the resource despite the retried upserts.
    let dump = h.entra.state_dump();
    let apps = dump["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["applications"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["uniqueName"] == "entra-operator.default.svc")
        .count();
    assert_eq!(apps, 1);
}
