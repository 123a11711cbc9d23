//! `entra-operator report` against both emulators and all four controllers: after the platform
//! example converges (one customer tenant consented, one not), the binary, given the cluster's
//! kubeconfig, lists every declared credential and every tenant's consent per app — with the consent
//! URL where it is missing — and no secret value.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use entra_operator::api::{AppRegistration, BankClient, TenantMapping};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, secret_data};

const NS: &str = "default";
const NORDIC: &str = "5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const FJORD: &str = "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d";
const WAIT: Duration = Duration::from_secs(90);

fn add_customer_tenant(h: &Harness, name: &str, id: &str, display_name: &str) {
    let mut spec = entra_emulator::TenantSpec::new(name);
    spec.id = Some(id.to_string());
    spec.display_name = Some(display_name.to_string());
    h.entra.add_tenant(spec);
}

/// The example's documents, and the Secrets its AppRegistrations and BankClients declare.
fn platform_example() -> (Vec<Value>, BTreeSet<String>) {
    let text =
        std::fs::read_to_string(support::root().join("examples/bookme-platform.yaml")).unwrap();
    let mut docs = Vec::new();
    let mut secrets = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        value["metadata"]["namespace"] = json!(NS);
        match value["kind"].as_str() {
            Some("AppRegistration") => {
                for p in value["spec"]["credentials"]["passwords"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    secrets.insert(p["secretName"].as_str().unwrap().to_string());
                }
            }
            Some("BankClient") => {
                secrets.insert(
                    value["spec"]["secret"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            _ => {}
        }
        docs.push(value);
    }
    (docs, secrets)
}

fn run_report(kubeconfig: &std::path::Path, output: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_entra-operator"))
        .arg("report")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--output", output])
        .output()
        .expect("run entra-operator report");
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_every_credential_and_every_tenants_consent() {
    let mut h = Harness::start().await;
    add_customer_tenant(&h, "nordic", NORDIC, "Nordic Bank Group");
    add_customer_tenant(&h, "fjord", FJORD, "Fjord Savings");
    h.start_all_controllers();
    let (docs, declared_secrets) = platform_example();
    assert_eq!(
        declared_secrets,
        BTreeSet::from([
            "fjordsparebank-system-credentials".to_string(),
            "management-api-credentials".to_string(),
            "nordbank-system-credentials".to_string(),
        ])
    );
    for doc in docs {
        h.apply(doc).await;
    }

    // Nordic's administrator consents to both apps; Fjord's has not yet.
    let mut app_ids = Vec::new();
    for name in ["management-api", "management-ui"] {
        let api = h.api::<AppRegistration>(NS);
        let id = h
            .wait_for(&format!("{name} appId"), WAIT, || async {
                api.get_opt(name).await.ok()??.status?.app_id
            })
            .await;
        app_ids.push(id);
    }
    for app_id in &app_ids {
        h.entra
            .grant_admin_consent(NORDIC, app_id)
            .expect("consent");
    }
    h.api::<TenantMapping>(NS)
        .patch(
            "nordic-bank-group",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/recheck": "1"}}})),
        )
        .await
        .unwrap();

    // Converged: every BankClient and AppRegistration Ready, management-api's secret issued, Nordic 2/2
    // consented and Fjord checked (0/1).
    h.wait_for("the platform to converge", WAIT, || async {
        let banks = h
            .api::<BankClient>(NS)
            .list(&Default::default())
            .await
            .ok()?;
        let banks_ok = banks.items.len() == 2
            && banks.items.iter().all(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| s.secret_expires_at.is_some() && s.conditions.is_true("Ready"))
            });
        // Every AppRegistration Ready (the report calls a credential "ok" only then; management-api
        // waits for management-ui's appId, so its secret can exist before it is Ready), and
        // management-api's secret issued.
        let apps = h
            .api::<AppRegistration>(NS)
            .list(&Default::default())
            .await
            .ok()?;
        let api_ok = apps.items.iter().all(|a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.conditions.is_true("Ready"))
        }) && apps.items.iter().any(|a| {
            a.metadata.name.as_deref() == Some("management-api")
                && a.status
                    .as_ref()
                    .is_some_and(|s| s.credentials.iter().any(|c| c.key_id.is_some()))
        });
        let mappings = h.api::<TenantMapping>(NS);
        let mut nordic = None;
        let mut fjord = None;
        for m in mappings.list(&Default::default()).await.ok()? {
            let summary = m.status.as_ref().and_then(|s| s.consent_summary.clone());
            match m.metadata.name.as_deref() {
                Some("nordic-bank-group") => nordic = summary,
                Some("fjord-savings") => fjord = summary,
                _ => {}
            }
        }
        (banks_ok && api_ok && nordic.as_deref() == Some("2/2") && fjord.as_deref() == Some("0/1"))
            .then_some(())
    })
    .await;

    let dir = std::env::temp_dir().join(format!("entra-operator-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, h.kube.kubeconfig_yaml()).unwrap();

    // The binary runs blocking; the emulators keep serving on this runtime's other worker.
    let kc = kubeconfig.clone();
    let json_text = tokio::task::spawn_blocking(move || run_report(&kc, "json"))
        .await
        .unwrap();
    let kc = kubeconfig.clone();
    let table = tokio::task::spawn_blocking(move || run_report(&kc, "table"))
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&json_text).unwrap();

    // Every declared client secret, each attributed to the resource that declares it, current.
    let credentials = report["credentials"].as_array().unwrap();
    let listed: BTreeSet<String> = credentials
        .iter()
        .filter(|c| c["type"] == "ClientSecret")
        .map(|c| c["secret"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, declared_secrets, "{json_text}");
    for c in credentials {
        assert_eq!(c["namespace"], NS);
        assert_eq!(c["state"], "ok", "{c}");
        assert!(
            c["expiresAt"].is_string() && c["nextRotationAt"].is_string(),
            "{c}"
        );
    }
    let owner = |secret: &str| {
        let c = credentials.iter().find(|c| c["secret"] == secret).unwrap();
        (c["kind"].clone(), c["resource"].clone())
    };
    assert_eq!(
        owner("nordbank-system-credentials"),
        (json!("BankClient"), json!("nordbank"))
    );
    assert_eq!(
        owner("management-api-credentials"),
        (json!("AppRegistration"), json!("management-api"))
    );
    // Soonest expiry first: management-api's secret lives 365d, the banks' 730d.
    assert_eq!(credentials[0]["secret"], "management-api-credentials");

    // Every tenant's consent per app; Fjord's missing consent first, with the URL to send.
    let consent: Vec<(String, String, String)> = report["consent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tenantMapping"].as_str().unwrap().to_string(),
                r["app"].as_str().unwrap().to_string(),
                r["consent"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |m: &str, a: &str, s: &str| (m.to_string(), a.to_string(), s.to_string());
    assert_eq!(
        consent,
        [
            row("fjord-savings", "management-api", "NotConsented"),
            row("nordic-bank-group", "management-api", "Consented"),
            row("nordic-bank-group", "management-ui", "Consented"),
        ]
    );
    let fjord = &report["consent"][0];
    assert_eq!(fjord["tenantId"], FJORD);
    assert_eq!(fjord["tenantName"], "Fjord Savings");
    let url = fjord["adminConsentUrl"].as_str().expect("consent URL");
    assert!(
        url.contains(FJORD) && url.contains(app_ids[0].as_str()),
        "{url}"
    );
    assert!(report["consent"][1].get("adminConsentUrl").is_none());

    // The table says the same to a person.
    for secret in &declared_secrets {
        assert!(table.contains(secret.as_str()), "{table}");
    }
    assert!(table.contains(url), "{table}");
    assert!(table.contains("Nordic Bank Group") && table.contains("NotConsented"));

    // Only status was read: no secret value reaches the report.
    for secret in &declared_secrets {
        let data = secret_data(&h, NS, secret).await.expect("secret");
        let value = &data["AZURE_CLIENT_SECRET"];
        assert!(!json_text.contains(value.as_str()) && !table.contains(value.as_str()));
    }
    h.stop_controllers().await;
    let _ = std::fs::remove_dir_all(&dir);
}
