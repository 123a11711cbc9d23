use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-06-01T00:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn ready(status: &str, reason: &str, message: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-05-01T00:00:00Z"})
}

fn app(name: &str, secrets: &[&str], status: Value) -> AppRegistration {
    let passwords: Vec<Value> = secrets.iter().map(|s| json!({"secretName": s})).collect();
    serde_json::from_value(json!({
        "apiVersion": "entra.bookme.io/v1alpha1",
        "kind": "AppRegistration",
        "metadata": {"name": name, "namespace": "bookme"},
        "spec": {"displayName": name, "credentials": {"passwords": passwords}},
        "status": status,
    }))
    .unwrap()
}

fn cred(secret: &str, expires: &str, renew: &str) -> Value {
    json!({"secretName": secret, "keyId": "k-1", "hint": "abc",
           "expiresAt": expires, "renewAt": renew})
}

fn row<'a>(report: &'a Report, secret: &str) -> &'a CredentialRow {
    report
        .credentials
        .iter()
        .find(|r| r.secret.as_deref() == Some(secret))
        .unwrap_or_else(|| panic!("no row for {secret}: {report:#?}"))
}

#[test]
fn states_ok_rotating_overlap_failing_expired_and_pending() {
    let mut rotating = cred("rotating-s", "2026-07-01T00:00:00Z", "2026-05-31T00:00:00Z");
    rotating["pending"] = json!({"nonce": "n", "since": "2026-05-31T23:59:00Z"});
    let mut overlap = cred("overlap-s", "2028-05-01T00:00:00Z", "2028-03-01T00:00:00Z");
    overlap["previous"] = json!({"keyId": "k-0", "revokeAt": "2026-07-15T00:00:00Z"});
    let inv = Inventory {
        app_registrations: vec![
            app(
                "a",
                &["ok-s", "rotating-s", "overlap-s", "expired-s", "new-s"],
                json!({"conditions": [ready("False", "CredentialsPending", "")], "credentials": [
                    cred("ok-s", "2027-06-01T00:00:00Z", "2027-04-01T00:00:00Z"),
                    rotating, overlap,
                    cred("expired-s", "2026-05-30T00:00:00Z", "2026-04-01T00:00:00Z"),
                ]}),
            ),
            app(
                "broken",
                &["broken-s"],
                json!({"conditions": [ready("False", "InsufficientPrivileges", "Graph answered 403")],
                       "credentials": [cred("broken-s", "2027-01-01T00:00:00Z", "2026-11-01T00:00:00Z")]}),
            ),
            app(
                "late",
                &["late-s"],
                json!({"conditions": [ready("True", "Ready", "")],
                       "credentials": [cred("late-s", "2026-08-01T00:00:00Z", "2026-05-01T00:00:00Z")]}),
            ),
        ],
        ..Inventory::default()
    };
    let report = build(&inv, now());
    assert_eq!(row(&report, "ok-s").state, CredentialState::Ok);
    assert_eq!(
        row(&report, "rotating-s").state,
        CredentialState::Rotating {
            since: "2026-05-31T23:59:00Z".into()
        }
    );
    assert_eq!(
        row(&report, "overlap-s").state,
        CredentialState::InOverlap {
            until: "2026-07-15T00:00:00Z".into()
        }
    );
    assert_eq!(row(&report, "expired-s").state, CredentialState::Expired);
    assert_eq!(
        row(&report, "new-s").state,
        CredentialState::Pending {
            reason: "not issued yet".into()
        }
    );
    assert_eq!(
        row(&report, "broken-s").state,
        CredentialState::Failing {
            reason: "InsufficientPrivileges".into(),
            message: "Graph answered 403".into()
        }
    );
    assert!(
        matches!(&row(&report, "late-s").state, CredentialState::Failing { reason, .. } if reason == "RotationOverdue")
    );
    assert_eq!(row(&report, "ok-s").kind, "AppRegistration");
    assert_eq!(row(&report, "ok-s").resource, "a");
}

#[test]
fn sorted_by_urgency_failing_and_expired_first_then_soonest_expiry() {
    let inv = Inventory {
        app_registrations: vec![
            app(
                "a",
                &["later", "sooner", "expired", "never"],
                json!({"credentials": [
                    cred("later", "2028-01-01T00:00:00Z", "2027-11-01T00:00:00Z"),
                    cred("sooner", "2026-09-01T00:00:00Z", "2026-07-01T00:00:00Z"),
                    cred("expired", "2026-05-01T00:00:00Z", "2026-03-01T00:00:00Z"),
                ]}),
            ),
            app(
                "b",
                &["failing"],
                json!({"conditions": [ready("False", "GraphUnavailable", "503")],
                       "credentials": [cred("failing", "2029-01-01T00:00:00Z", "2028-11-01T00:00:00Z")]}),
            ),
        ],
        ..Inventory::default()
    };
    let order: Vec<String> = build(&inv, now())
        .credentials
        .iter()
        .map(|r| r.secret.clone().unwrap())
        .collect();
    // "never" has no status entry: pending, no expiry, last.
    assert_eq!(order, ["expired", "failing", "sooner", "later", "never"]);
}

#[test]
fn bank_client_credentials_are_reported_under_the_bank_client_once() {
    let mut child = app(
        "bankclient-nordbank",
        &["nordbank-system-credentials"],
        json!({"credentials": [cred("nordbank-system-credentials", "2028-01-01T00:00:00Z", "2027-11-01T00:00:00Z")]}),
    );
    child.metadata.owner_references = Some(vec![
        serde_json::from_value(
            json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "name": "nordbank", "uid": "u-1", "controller": true}),
        )
        .unwrap(),
    ]);
    let bank = |name: &str, ready_cond: Value| -> BankClient {
        serde_json::from_value(json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
            "metadata": {"name": name, "namespace": "bookme"},
            "spec": {"bankId": name, "api": {"appRef": {"name": "api"}, "role": "System"},
                     "secret": {"name": format!("{name}-system-credentials")}},
            "status": {"conditions": [ready_cond]},
        }))
        .unwrap()
    };
    let inv = Inventory {
        app_registrations: vec![child],
        bank_clients: vec![
            bank("nordbank", ready("True", "Ready", "")),
            bank(
                "fjord",
                ready(
                    "False",
                    "WaitingForReference",
                    "AppRegistration api not found",
                ),
            ),
        ],
        ..Inventory::default()
    };
    let report = build(&inv, now());
    assert_eq!(report.credentials.len(), 2, "{report:#?}");
    let nord = row(&report, "nordbank-system-credentials");
    assert_eq!(
        (nord.kind.as_str(), nord.resource.as_str()),
        ("BankClient", "nordbank")
    );
    assert_eq!(nord.app_registration, "bankclient-nordbank");
    let fjord = row(&report, "fjord-system-credentials");
    assert_eq!(
        fjord.state,
        CredentialState::Failing {
            reason: "WaitingForReference".into(),
            message: "AppRegistration api not found".into()
        }
    );
    // Failing first.
    assert_eq!(report.credentials[0].resource, "fjord");
}

fn mapping(name: &str, apps: &[&str], status: Value) -> TenantMapping {
    let apps: Vec<Value> = apps
        .iter()
        .map(|a| json!({"appRef": {"name": a}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "entra.bookme.io/v1alpha1", "kind": "TenantMapping",
        "metadata": {"name": name, "namespace": "bookme"},
        "spec": {"tenantId": "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b", "bankIds": ["nordbank"],
                 "consent": {"apps": apps}},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn consent_per_app_with_the_url_only_where_missing_not_consented_first() {
    let url = "https://login.microsoftonline.com/5f1a/adminconsent?client_id=c-2";
    let inv = Inventory {
        tenant_mappings: vec![
            mapping(
                "nordic",
                &["management-api", "management-ui", "unchecked"],
                json!({"tenant": {"displayName": "Nordic Bank Group"}, "apps": [
                    {"name": "management-api", "appId": "c-1", "state": "Consented",
                     "adminConsentUrl": "https://login.microsoftonline.com/x/adminconsent?client_id=c-1"},
                    {"name": "management-ui", "appId": "c-2", "state": "NotConsented",
                     "adminConsentUrl": url, "message": "AADSTS700016"},
                ]}),
            ),
            mapping(
                "ghost",
                &["management-api"],
                json!({"conditions": [ready("False", "TenantNotFound", "no such tenant")]}),
            ),
        ],
        ..Inventory::default()
    };
    let report = build(&inv, now());
    let apps: Vec<(&str, &str, TenantConsentState)> = report
        .consent
        .iter()
        .map(|r| (r.tenant_mapping.as_str(), r.app.as_str(), r.consent))
        .collect();
    assert_eq!(
        apps,
        [
            ("nordic", "management-ui", TenantConsentState::NotConsented),
            ("ghost", "management-api", TenantConsentState::Unknown),
            ("nordic", "unchecked", TenantConsentState::Unknown),
            ("nordic", "management-api", TenantConsentState::Consented),
        ]
    );
    assert_eq!(report.consent[0].admin_consent_url.as_deref(), Some(url));
    assert_eq!(
        report.consent[3].admin_consent_url, None,
        "no URL once consented"
    );
    assert_eq!(
        report.consent[1].message.as_deref(),
        Some("TenantNotFound: no such tenant")
    );
    assert_eq!(
        report.consent[2].message.as_deref(),
        Some("not checked yet")
    );
}

#[test]
fn table_and_json_render_every_row() {
    let mut overlap = cred("overlap-s", "2028-05-01T00:00:00Z", "2028-03-01T00:00:00Z");
    overlap["previous"] = json!({"keyId": "k-0", "revokeAt": "2026-07-15T00:00:00Z"});
    let inv = Inventory {
        app_registrations: vec![app("a", &["overlap-s"], json!({"credentials": [overlap]}))],
        tenant_mappings: vec![mapping(
            "nordic",
            &["management-ui"],
            json!({"apps": [{"name": "management-ui", "state": "NotConsented",
                              "adminConsentUrl": "https://login.example/adminconsent"}]}),
        )],
        ..Inventory::default()
    };
    let report = build(&inv, now());
    let text = render_table(&report);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "CREDENTIALS");
    assert!(lines[1].starts_with("KIND ") && lines[1].contains("NEXT ROTATION"));
    assert!(
        lines[2].contains("2028-05-01T00:00Z (in 700d)")
            && lines[2].ends_with("in overlap until 2026-07-15T00:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains("nordic") && text.contains("https://login.example/adminconsent"),
        "{text}"
    );
    assert!(!text.contains('\x1b'));

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["generatedAt"], NOW);
    assert_eq!(
        json["credentials"][0],
        json!({"kind": "AppRegistration", "namespace": "bookme", "resource": "a",
               "appRegistration": "a", "secret": "overlap-s", "type": "ClientSecret",
               "expiresAt": "2028-05-01T00:00:00Z", "nextRotationAt": "2028-03-01T00:00:00Z",
               "state": "inOverlap", "until": "2026-07-15T00:00:00Z"})
    );
    assert_eq!(json["consent"][0]["consent"], "NotConsented");
    assert_eq!(
        json["consent"][0]["adminConsentUrl"],
        "https://login.example/adminconsent"
    );
}

#[test]
fn an_empty_cluster_says_so() {
    let text = render_table(&build(&Inventory::default(), now()));
    assert!(text.contains("(no managed credentials)"), "{text}");
    assert!(
        text.contains("(no TenantMappings with consent checks)"),
        "{text}"
    );
}
