//! Namespaces are a trust boundary (issue 13): each attack a namespace user could make with the
//! operator's Graph identity, performed end to end across two namespaces (team-a, the victim, and
//! team-b, the attacker), shown refused, and the victim shown untouched.

mod support;

use std::time::Duration;

use entra_operator::api::AppRegistration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const VICTIM: &str = "team-a";
const ATTACKER: &str = "team-b";
const WAIT: Duration = Duration::from_secs(40);

async fn harness() -> Harness {
    let mut h = Harness::start().await;
    for ns in [VICTIM, ATTACKER] {
        namespace(&h, ns).await;
    }
    h.start_all_controllers();
    h
}

async fn namespace(h: &Harness, name: &str) {
    h.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .await;
}

fn app(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "EntraPolicy",
           "metadata": {"name": name}, "spec": spec})
}

async fn get(h: &Harness, ns: &str, name: &str) -> Option<AppRegistration> {
    h.api::<AppRegistration>(ns).get_opt(name).await.unwrap()
}

fn ready(obj: &AppRegistration) -> Option<(String, String, String)> {
    let current = obj.status.as_ref()?.observed_generation == obj.metadata.generation;
    let c = obj.status.as_ref()?.conditions.get("Ready")?;
    current.then(|| {
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    })
}

async fn wait_ready(h: &Harness, ns: &str, name: &str) -> AppRegistration {
    h.wait_for(&format!("{ns}/{name} Ready"), WAIT, || async {
        let obj = get(h, ns, name).await?;
        ready(&obj)
            .is_some_and(|(s, _, _)| s == "True")
            .then_some(obj)
    })
    .await
}

/// Waits for `Ready=False` with `reason`; returns the message.
async fn wait_refused(h: &Harness, ns: &str, name: &str, reason: &str) -> String {
    h.wait_for(&format!("{ns}/{name} {reason}"), WAIT, || async {
        let obj = get(h, ns, name).await?;
        ready(&obj).and_then(|(s, r, m)| (s == "False" && r == reason).then_some(m))
    })
    .await
}

async fn delete_and_wait(h: &Harness, ns: &str, name: &str) {
    let api = h.api::<AppRegistration>(ns);
    api.delete(name, &Default::default()).await.unwrap();
    h.wait_for(&format!("{ns}/{name} gone"), WAIT, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

fn home_tenant(h: &Harness) -> Value {
    let dump = h.entra.state_dump();
    let home = dump["homeTenantId"].clone();
    dump["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenantId"] == home)
        .cloned()
        .unwrap()
}

/// App role assignments and permission grants whose client is the service principal `sp_id`.
fn grants_held_by(h: &Harness, sp_id: &str) -> (Vec<Value>, Vec<Value>) {
    let tenant = home_tenant(h);
    let of = |key: &str, field: &str| -> Vec<Value> {
        tenant[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g[field] == sp_id)
            .cloned()
            .collect()
    };
    (
        of("appRoleAssignments", "principalId"),
        of("oauth2PermissionGrants", "clientId"),
    )
}

/// What an attacker would change on the victim's application: passwords, redirect URIs, federated
/// credentials, display name.
fn fingerprint(app: &Value) -> Value {
    let mut keys: Vec<String> = app["passwordCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["keyId"].as_str().unwrap_or_default().to_string())
        .collect();
    keys.sort();
    let mut fics: Vec<String> = app["federatedIdentityCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect();
    fics.sort();
    json!({
        "displayName": app["displayName"],
        "web": app["web"]["redirectUris"],
        "passwords": keys,
        "fics": fics,
    })
}

fn victim_api() -> Value {
    json!({
        "displayName": "Team A System API",
        "identifierUris": ["api://{appId}"],
        "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}],
        "web": {"redirectUris": ["https://team-a.example/signin"]},
        "credentials": {
            "passwords": [{"secretName": "api-credentials"}],
            "federated": [{"name": "aks", "issuer": "https://oidc.example/a",
                           "subject": "system:serviceaccount:team-a:api"}]
        }
    })
}

#[tokio::test]
async fn consent_escalation_is_refused_by_default_nothing_is_granted_and_a_policy_allows_it() {
    let h = harness().await;
    h.apply(app(VICTIM, "system-api", victim_api())).await;
    let victim = wait_ready(&h, VICTIM, "system-api").await;
    let victim_app_id = victim.status.unwrap().app_id.unwrap();

    // 1. A Microsoft Graph application permission that lets its holder grant itself anything,
    // next to a sign-in scope the defaults allow.
    h.apply(app(
        ATTACKER,
        "escalate",
        json!({"displayName": "Escalate", "grantAdminConsent": true,
               "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph",
                   "delegated": ["User.Read"], "application": ["AppRoleAssignment.ReadWrite.All"]}],
               "credentials": {"passwords": [{"secretName": "escalate-credentials"}]}}),
    ))
    .await;
    // 2. Another team's System role, by appId.
    h.apply(app(
        ATTACKER,
        "borrow",
        json!({"displayName": "Borrow", "grantAdminConsent": true,
               "requiredResourceAccess": [{"appId": victim_app_id, "application": ["System"]}]}),
    ))
    .await;

    let message = wait_refused(&h, ATTACKER, "escalate", "ConsentRefused").await;
    assert!(
        message.contains("MicrosoftGraph/AppRoleAssignment.ReadWrite.All")
            && message.contains("default/no-microsoft-graph"),
        "names the permission and the rule: {message}"
    );
    assert!(
        !message.contains("User.Read "),
        "User.Read is allowed: {message}"
    );
    let message = wait_refused(&h, ATTACKER, "borrow", "ConsentRefused").await;
    assert!(
        message.contains("System") && message.contains("default/no-foreign-api"),
        "{message}"
    );
    // Let a few reconciles pass: still nothing granted, not even the allowed User.Read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in ["escalate", "borrow"] {
        let status = get(&h, ATTACKER, name).await.unwrap().status.unwrap();
        let sp = status.service_principal_id.expect("service principal");
        let (assignments, grants) = grants_held_by(&h, &sp);
        assert!(assignments.is_empty(), "{name}: {assignments:?}");
        assert!(grants.is_empty(), "{name}: {grants:?}");
    }

    // The cluster administrator allows team-b the System role of team-a's API: granted.
    h.apply(policy(
        "team-b-uses-team-a",
        json!({"consent": [{"name": "system-role", "namespaces": {"names": [ATTACKER]},
                            "api": {"appId": victim_app_id}, "application": ["System"]}]}),
    ))
    .await;
    // No nudge: the policy change alone makes the operator decide again, at once (a refusal is
    // otherwise retried only after a 30 s backoff).
    let borrow = h
        .wait_for(
            "borrow Ready soon after the policy change",
            Duration::from_secs(10),
            || async {
                let obj = get(&h, ATTACKER, "borrow").await?;
                ready(&obj)
                    .is_some_and(|(s, _, _)| s == "True")
                    .then_some(obj)
            },
        )
        .await;
    let sp = borrow.status.unwrap().service_principal_id.unwrap();
    assert_eq!(grants_held_by(&h, &sp).0.len(), 1);
    // The Graph permission stays refused.
    let message = wait_refused(&h, ATTACKER, "escalate", "ConsentRefused").await;
    assert!(
        message.contains("AppRoleAssignment.ReadWrite.All"),
        "{message}"
    );
}

#[tokio::test]
async fn cross_namespace_adoption_is_refused_and_the_victim_keeps_everything() {
    let h = harness().await;
    h.apply(app(VICTIM, "system-api", victim_api())).await;
    let victim = wait_ready(&h, VICTIM, "system-api").await;
    let victim_app_id = victim.status.unwrap().app_id.unwrap();
    let before = fingerprint(&emulator_app(&h, &victim_app_id).unwrap());

    let thief = json!({
        "displayName": "Stolen", "adopt": {"appId": victim_app_id}, "deletionPolicy": "Delete",
        "web": {"redirectUris": ["https://evil.example/callback"]},
        "credentials": {"passwords": [{"secretName": "stolen-credentials"}]}
    });
    h.apply(app(ATTACKER, "thief", thief.clone())).await;
    let message = wait_refused(&h, ATTACKER, "thief", "AdoptionRefused").await;
    assert!(message.contains("default/no-adoption"), "{message}");

    // Even where the administrator allows adoption, an application another resource manages
    // (it carries the operator's uniqueName) is never adopted.
    h.apply(policy(
        "team-b-adopts",
        json!({"adoption": [{"name": "legacy", "namespaces": {"names": [ATTACKER]}}]}),
    ))
    .await;
    h.apply(app(ATTACKER, "thief-2", thief)).await;
    let message = wait_refused(&h, ATTACKER, "thief-2", "AdoptionRefused").await;
    assert!(
        message.contains("managed by AppRegistration team-a/system-api")
            || message.contains("uniqueName"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        secret_data(&h, ATTACKER, "stolen-credentials")
            .await
            .is_none()
    );

    // Deleting the attackers (deletionPolicy: Delete) deletes nothing of the victim's.
    delete_and_wait(&h, ATTACKER, "thief").await;
    delete_and_wait(&h, ATTACKER, "thief-2").await;
    let after = emulator_app(&h, &victim_app_id).expect("victim's application still exists");
    assert_eq!(fingerprint(&after), before);
    assert!(secret_data(&h, VICTIM, "api-credentials").await.is_some());
}

#[tokio::test]
async fn an_allowed_adoption_keeps_foreign_federated_credentials_and_orphans_by_default() {
    let h = harness().await;
    // An application made outside the operator, with a federated credential of its own.
    let legacy = h
        .ctx
        .graph
        .upsert_application_by_unique_name("legacy-portal", &json!({"displayName": "Legacy"}))
        .await
        .unwrap();
    let legacy_app_id = match legacy.created() {
        Some(app) => app.app_id.clone().unwrap(),
        None => h
            .ctx
            .graph
            .get_application_by_unique_name("legacy-portal")
            .await
            .unwrap()
            .app_id
            .unwrap(),
    };
    let object_id = h
        .ctx
        .graph
        .get_application_by_app_id(&legacy_app_id)
        .await
        .unwrap()
        .id
        .unwrap();
    let manual: entra_operator::graph::FederatedIdentityCredential = serde_json::from_value(
        json!({"name": "github", "issuer": "https://token.actions.githubusercontent.com",
                                      "subject": "repo:team-a/portal:ref:refs/heads/main",
                                      "audiences": ["api://AzureADTokenExchange"]}),
    )
    .unwrap();
    h.ctx
        .graph
        .upsert_federated_identity_credential(&object_id, &manual)
        .await
        .unwrap();
    h.apply(policy(
        "team-a-adopts-legacy",
        json!({"adoption": [{"name": "portal", "namespaces": {"names": [VICTIM]},
                             "appIds": [legacy_app_id]}]}),
    ))
    .await;
    h.apply(app(
        VICTIM,
        "portal",
        json!({"displayName": "Legacy", "adopt": {"appId": legacy_app_id},
               "credentials": {"federated": [{"name": "aks", "issuer": "https://oidc.example/a",
                                              "subject": "system:serviceaccount:team-a:portal"}]}}),
    ))
    .await;
    wait_ready(&h, VICTIM, "portal").await;
    let fics = fingerprint(&emulator_app(&h, &legacy_app_id).unwrap())["fics"].clone();
    assert_eq!(fics, json!(["aks", "github"]), "the foreign one stays");

    // Adopted and no deletionPolicy: deleting the resource leaves the application.
    delete_and_wait(&h, VICTIM, "portal").await;
    assert!(
        emulator_app(&h, &legacy_app_id).is_some(),
        "orphaned, not deleted"
    );
}

#[tokio::test]
async fn unique_names_of_look_alike_namespace_name_pairs_do_not_collide() {
    let h = harness().await;
    namespace(&h, "c").await;
    namespace(&h, "c-a").await;
    h.apply(app("c", "a-b", json!({"displayName": "c / a-b"})))
        .await;
    h.apply(app("c-a", "b", json!({"displayName": "c-a / b"})))
        .await;
    let first = wait_ready(&h, "c", "a-b").await.status.unwrap();
    let second = wait_ready(&h, "c-a", "b").await.status.unwrap();
    assert_eq!(first.unique_name.as_deref(), Some("entra-operator.c.a-b"));
    assert_eq!(second.unique_name.as_deref(), Some("entra-operator.c-a.b"));
    assert_ne!(first.app_id, second.app_id);
    delete_and_wait(&h, "c", "a-b").await;
    let survivor = emulator_app(&h, second.app_id.as_deref().unwrap()).expect("still there");
    assert_eq!(survivor["displayName"], "c-a / b");
}

#[tokio::test]
async fn a_secret_or_config_map_that_is_not_ours_is_never_written() {
    let h = harness().await;
    // A team's own Secret, and an AppRegistration (in the other namespace's hands or not) naming it.
    let secrets = h.api::<Secret>(VICTIM);
    h.apply(json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "database", "namespace": VICTIM},
                   "stringData": {"password": "hunter2"}}))
        .await;
    h.apply(app(
        VICTIM,
        "grabber",
        json!({"displayName": "Grabber", "credentials": {"passwords": [{"secretName": "database"}]}}),
    ))
    .await;
    let message = wait_refused(&h, VICTIM, "grabber", "SecretConflict").await;
    assert!(message.contains("database"), "{message}");
    let untouched = secrets.get("database").await.unwrap();
    assert_eq!(
        secret_data(&h, VICTIM, "database").await.unwrap(),
        [("password".to_string(), "hunter2".to_string())].into()
    );
    assert!(untouched.metadata.owner_references.is_none());

    // Two resources with one secretName: the first keeps it, the second gets the conflict, and
    // no rotation war follows.
    h.apply(app(VICTIM, "system-api", victim_api())).await;
    let first = wait_ready(&h, VICTIM, "system-api").await;
    let key = secret_data(&h, VICTIM, "api-credentials").await.unwrap()["keyId"].clone();
    h.apply(app(
        VICTIM,
        "twin",
        json!({"displayName": "Twin", "credentials": {"passwords": [{"secretName": "api-credentials"}]}}),
    ))
    .await;
    wait_refused(&h, VICTIM, "twin", "SecretConflict").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = secrets.get("api-credentials").await.unwrap();
    assert_eq!(
        secret_data(&h, VICTIM, "api-credentials").await.unwrap()["keyId"],
        key
    );
    let owners: Vec<String> = secret
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.uid)
        .collect();
    assert_eq!(owners, vec![first.metadata.uid.unwrap()]);

    // NaaIntegration cannot name a registry, and does not write over someone's ConfigMap.
    let naa = |name: &str, config_map: &str| {
        json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "NaaIntegration",
               "metadata": {"name": name, "namespace": ATTACKER},
               "spec": {"displayName": "Add-in", "addinServerFqdns": ["addin.example"],
                        "scope": "access_as_user", "configMapName": config_map}})
    };
    let err = h.kube.create(naa("registry", "bank-clients")).unwrap_err();
    assert!(format!("{err}").contains("registry"), "{err}");
    h.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "team-settings", "namespace": ATTACKER},
                   "data": {"theme": "dark"}}))
        .await;
    h.apply(naa("settings", "team-settings")).await;
    // The settings are written once both child applications have appIds: wait for that, then a
    // few more reconciles.
    let children = h.api::<AppRegistration>(ATTACKER);
    h.wait_for("both NAA children have appIds", WAIT, || async {
        let with_ids = children
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|a| a.status.as_ref().and_then(|s| s.app_id.as_ref()).is_some())
            .count();
        (with_ids >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cm = h
        .api::<ConfigMap>(ATTACKER)
        .get("team-settings")
        .await
        .unwrap();
    assert_eq!(
        cm.data.unwrap(),
        [("theme".to_string(), "dark".to_string())].into()
    );
    assert!(cm.metadata.owner_references.is_none());
}

#[tokio::test]
async fn a_degenerate_lifetime_is_rejected_and_a_tenant_policy_refusal_has_its_own_reason() {
    let h = harness().await;
    let err = h
        .kube
        .create(app(
            ATTACKER,
            "burner",
            json!({"displayName": "Burner",
                   "credentials": {"passwords": [{"secretName": "s", "lifetime": "2s", "renewBefore": "1s"}]}}),
        ))
        .unwrap_err();
    assert!(format!("{err}").contains("at least 30s"), "{err}");
    let err = h
        .kube
        .create(app(
            ATTACKER,
            "burner",
            json!({"displayName": "Burner",
                   "credentials": {"passwords": [{"secretName": "s", "lifetime": "40s", "renewBefore": "35s"}]}}),
        ))
        .unwrap_err();
    assert!(format!("{err}").contains("at least 10s"), "{err}");

    h.entra.set_app_policy(entra_emulator::AppPolicy {
        max_password_lifetime_secs: Some(90 * 86_400),
        ..Default::default()
    });
    h.apply(app(
        VICTIM,
        "long-lived",
        json!({"displayName": "Long", "credentials": {"passwords": [{"secretName": "long", "lifetime": "365d"}]}}),
    ))
    .await;
    let message = wait_refused(&h, VICTIM, "long-lived", "CredentialRefusedByTenantPolicy").await;
    assert!(
        message.contains("as per assigned policy"),
        "Graph's message: {message}"
    );
    let first = h
        .entra
        .request_count("POST", "/v1.0/applications/{id}/addPassword");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = h
        .entra
        .request_count("POST", "/v1.0/applications/{id}/addPassword");
    assert!(later - first <= 1, "backs off: {first} then {later}");
}

#[tokio::test]
async fn metric_series_go_with_their_resource() {
    let h = harness().await;
    h.apply(app(VICTIM, "system-api", victim_api())).await;
    wait_ready(&h, VICTIM, "system-api").await;
    let text = h.metrics.render();
    assert!(
        text.contains("entra_operator_credential_expiry_timestamp_seconds{kind=\"AppRegistration\",namespace=\"team-a\""),
        "{text}"
    );
    delete_and_wait(&h, VICTIM, "system-api").await;
    let text = h.metrics.render();
    assert!(
        !text.lines().any(|l| !l.starts_with('#')
            && l.contains("namespace=\"team-a\"")
            && l.contains("name=\"system-api\"")),
        "{text}"
    );
}
