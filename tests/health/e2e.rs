//! The statuses behind the health fixtures, produced end to end: all four controllers against both
//! emulators, driven into each situation the README's health table names. With
//! `UPDATE_HEALTH_FIXTURES=1` each observed object is written to `tests/fixtures/health/<name>.yaml`
//! (what `kubectl get -o yaml` shows, without `managedFields`); otherwise the live object must still
//! have the committed fixture's shape — the same conditions with the same status and reason,
//! `observedGeneration` current, deleting or not — so the fixtures the health tests read stay true.

use std::time::Duration;

use entra_operator::api::{AppRegistration, BankClient, NaaIntegration, TenantMapping};
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::fixtures;
use crate::support::Harness;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(40);
const NORDIC: &str = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

fn cr(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn system_api() -> Value {
    cr(
        "AppRegistration",
        "api-system-integration",
        json!({
            "displayName": "BookMe API System Integration",
            "identifierUris": ["api://{appId}"],
            "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}]
        }),
    )
}

fn bank_client(name: &str, bank_id: &str) -> Value {
    cr(
        "BankClient",
        name,
        json!({"bankId": bank_id, "api": {"appRef": {"name": "api-system-integration"}},
               "secret": {"name": format!("{name}-credentials")}}),
    )
}

fn api<K: Resource<DynamicType = ()>>(h: &Harness) -> Api<DynamicObject> {
    Api::namespaced_with(h.client.clone(), NS, &ApiResource::erase::<K>(&()))
}

/// The object as the API server returns it, without `managedFields`.
async fn live<K: Resource<DynamicType = ()>>(h: &Harness, name: &str) -> Option<Value> {
    let obj = api::<K>(h).get_opt(name).await.unwrap()?;
    let mut v = serde_json::to_value(obj).unwrap();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    Some(v)
}

fn ready(obj: &Value) -> Option<(&str, &str)> {
    let c = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    Some((c["status"].as_str()?, c["reason"].as_str()?))
}

fn current(obj: &Value) -> bool {
    obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
}

/// Waits until the object's current generation is observed with `Ready` = `status`/`reason`.
async fn wait_ready<K: Resource<DynamicType = ()>>(
    h: &Harness,
    name: &str,
    status: &str,
    reason: Option<&str>,
) -> Value {
    let what = format!("{} {name} Ready={status} {reason:?}", K::kind(&()));
    h.wait_for(&what, WAIT, || async {
        let obj = live::<K>(h, name).await?;
        let (s, r) = ready(&obj)?;
        (current(&obj) && s == status && reason.is_none_or(|want| want == r)).then_some(obj)
    })
    .await
}

/// What the fixture comparison looks at: kind, deleting or not, generation observed, and each
/// condition's type, status, reason and observedGeneration being current.
fn shape(obj: &Value) -> Value {
    let generation = &obj["metadata"]["generation"];
    let mut conditions: Vec<Value> = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({"type": c["type"], "status": c["status"], "reason": c["reason"],
                   "observedGenerationCurrent": &c["observedGeneration"] == generation})
        })
        .collect();
    conditions.sort_by_key(|c| c["type"].as_str().unwrap_or_default().to_string());
    json!({
        "kind": obj["kind"],
        "deleting": !obj["metadata"]["deletionTimestamp"].is_null(),
        "observedGenerationCurrent": current(obj),
        "conditions": conditions,
    })
}

/// Writes the fixture (`UPDATE_HEALTH_FIXTURES=1`) or checks the live object against it.
fn capture(name: &str, obj: &Value) {
    let path = fixtures::dir().join(format!("{name}.yaml"));
    if std::env::var("UPDATE_HEALTH_FIXTURES").as_deref() == Ok("1") {
        std::fs::create_dir_all(fixtures::dir()).unwrap();
        let text = format!(
            "# Captured from the e2e scenario in tests/health/e2e.rs; regenerate with\n\
             # UPDATE_HEALTH_FIXTURES=1 cargo nextest run --test health\n{}",
            serde_yaml::to_string(obj).unwrap()
        );
        std::fs::write(&path, text).unwrap();
        return;
    }
    let fixture = fixtures::load(name);
    assert_eq!(
        shape(obj),
        shape(&fixture),
        "the live {name} no longer has the shape of {} (regenerate with UPDATE_HEALTH_FIXTURES=1)",
        path.display()
    );
}

#[tokio::test]
async fn a_bank_client_waits_for_its_api_then_is_ready_and_an_app_is_deleted() {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    // The BankClient first: its API app does not exist yet.
    h.apply(bank_client("nordbank", "nordbank")).await;
    let obj = wait_ready::<BankClient>(&h, "nordbank", "False", Some("WaitingForReference")).await;
    capture("converging-bankclient", &obj);

    h.apply(system_api()).await;
    let obj = wait_ready::<BankClient>(&h, "nordbank", "True", None).await;
    capture("ready-bankclient", &obj);
    let obj = wait_ready::<AppRegistration>(&h, "api-system-integration", "True", None).await;
    capture("ready-appregistration", &obj);

    // Deleting while Graph refuses the delete: the finalizer holds the object, deletionTimestamp set.
    h.entra.deny(Some("DELETE"), "/v1.0/applications/{id}");
    api::<AppRegistration>(&h)
        .delete("api-system-integration", &Default::default())
        .await
        .unwrap();
    let obj = h
        .wait_for("api-system-integration being deleted", WAIT, || async {
            live::<AppRegistration>(&h, "api-system-integration")
                .await
                .filter(|o| !o["metadata"]["deletionTimestamp"].is_null())
        })
        .await;
    capture("deleting-appregistration", &obj);
}

#[tokio::test]
async fn a_graph_403_stalls_an_app_registration() {
    let mut h = Harness::start().await;
    h.entra.deny(Some("POST"), "/v1.0/oauth2PermissionGrants");
    h.start_all_controllers();
    h.apply(cr(
        "AppRegistration",
        "management-ui",
        json!({"displayName": "BookMe Management UI", "grantAdminConsent": true,
               "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"]}]}),
    ))
    .await;
    let obj =
        wait_ready::<AppRegistration>(&h, "management-ui", "False", Some("GraphForbidden")).await;
    capture("forbidden-appregistration", &obj);
}

#[tokio::test]
async fn a_contested_bank_id_stalls_the_second_bank_client() {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(system_api()).await;
    h.apply(bank_client("nordbank", "nordbank")).await;
    wait_ready::<BankClient>(&h, "nordbank", "True", None).await;
    // Creation times have second precision: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.apply(bank_client("nordbank-2", "nordbank")).await;
    let obj = wait_ready::<BankClient>(&h, "nordbank-2", "False", Some("Conflict")).await;
    capture("conflict-bankclient", &obj);
}

#[tokio::test]
async fn a_tenant_mapping_waits_for_consent_then_is_ready() {
    let mut h = Harness::start().await;
    let mut tenant = entra_emulator::TenantSpec::new("nordic");
    tenant.id = Some(NORDIC.to_string());
    tenant.display_name = Some("Nordic Bank Group".to_string());
    h.entra.add_tenant(tenant);
    h.start_all_controllers();
    h.apply(cr(
        "AppRegistration",
        "management-api",
        json!({
            "displayName": "BookMe Management API",
            "signInAudience": "AzureADMultipleOrgs",
            "identifierUris": ["api://{appId}"],
            "credentials": {"passwords": [{"secretName": "management-api-credentials"}]}
        }),
    ))
    .await;
    h.apply(cr(
        "TenantMapping",
        "nordic-bank-group",
        json!({"tenantId": NORDIC, "bankIds": ["nordbank"],
               "consent": {"apps": [{"appRef": {"name": "management-api"}}]}}),
    ))
    .await;
    let obj =
        wait_ready::<TenantMapping>(&h, "nordic-bank-group", "False", Some("NotConsented")).await;
    capture("awaiting-consent-tenantmapping", &obj);

    // The customer's administrator consents; the recheck annotation makes it visible at once.
    let app_id = obj["status"]["apps"][0]["appId"]
        .as_str()
        .unwrap()
        .to_string();
    h.entra
        .grant_admin_consent(NORDIC, &app_id)
        .expect("consent");
    h.api::<TenantMapping>(NS)
        .patch(
            "nordic-bank-group",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/recheck": "1"}}})),
        )
        .await
        .unwrap();
    let obj = wait_ready::<TenantMapping>(&h, "nordic-bank-group", "True", None).await;
    capture("ready-tenantmapping", &obj);
}

#[tokio::test]
async fn a_naa_integration_is_ready() {
    let mut h = Harness::start().await;
    h.start_all_controllers();
    h.apply(cr(
        "NaaIntegration",
        "pexip-scheduling",
        json!({"displayName": "BookMe Pexip Scheduling", "scope": "PexipScheduling.Access",
               "addinServerFqdns": ["addin.bookme.io"], "tenants": [NORDIC]}),
    ))
    .await;
    let obj = wait_ready::<NaaIntegration>(&h, "pexip-scheduling", "True", None).await;
    capture("ready-naaintegration", &obj);
}
