//! Certificate credentials end to end: a generated certificate and a cert-manager-style Secret,
//! each used by real clients from the Secret alone (the operator's own azure-identity
//! configuration and, with the conformance venv, Python's azure-identity and MSAL), rotated with
//! an overlap during which the old certificate still works and after which Entra refuses it.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use entra_operator::api::AppRegistration;
use entra_operator::credentials::certgen;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);
const SCOPE: &str = "https://graph.microsoft.com/.default";

fn app(name: &str, certificate: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"displayName": name, "credentials": {"certificates": [certificate]}}})
}

/// Waits until the resource is Ready with a settled current certificate other than `not`, and
/// returns its thumbprint; on timeout, fails with the last status seen.
async fn settled(h: &Harness, name: &str, not: Option<&str>) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        if let Ok(obj) = h.api::<AppRegistration>(NS).get(name).await
            && let Some(status) = obj.status
        {
            if let Some(cert) = status.certificates.first()
                && let Some(thumbprint) = cert.thumbprint.clone()
                && status.conditions.is_true("Ready")
                && cert.pending.is_none()
                && Some(thumbprint.as_str()) != not
            {
                return thumbprint;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{name}: no settled certificate within {WAIT:?}; last status: {}",
        serde_json::to_string_pretty(&last).unwrap()
    );
}

/// A token for these Secret values as a consumer gets one (see
/// [`support::certificate_token_claims`]), checked to be the Secret's client.
async fn token_with(h: &Harness, data: &BTreeMap<String, String>) -> Result<(), String> {
    support::certificate_token_claims(h, data, SCOPE)
        .await
        .map(|claims| {
            let client = claims.appid.or(claims.azp);
            assert_eq!(client.as_deref(), Some(data["AZURE_CLIENT_ID"].as_str()));
        })
}

/// The conformance venv's Python (`.ci/python-env.sh`), if there is one. CI sets
/// `ENTRA_OPERATOR_REQUIRE_PYTHON=1`, so there a missing venv fails instead of skipping.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("CONFORMANCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::root().join(".venv"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("ENTRA_OPERATOR_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "no conformance venv at {}: run .ci/python-env.sh",
        venv.display()
    );
    eprintln!(
        "skipping the Python clients: no venv at {} (run .ci/python-env.sh)",
        venv.display()
    );
    None
}

/// Each real Python client's answer for these Secret values: "ok" or its error. Runs off the
/// test's runtime thread, which also serves the emulators the clients call.
async fn python_clients(
    h: &Harness,
    data: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let python = python()?;
    let request = json!({"data": data, "ca": h.entra.ca_pem_path(), "scope": SCOPE});
    let mut child = tokio::process::Command::new(python)
        .arg(support::root().join("conformance/clients/certificate_token.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(request.to_string().as_bytes())
            .await
            .unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the Python clients answer within 2 minutes")
        .unwrap();
    assert!(
        out.status.success(),
        "python clients: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Key credentials of the app in Entra: (keyId, displayName).
fn entra_keys(h: &Harness, app_id: &str) -> Vec<(String, String)> {
    emulator_app(h, app_id)
        .map(|a| {
            a["keyCredentials"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|k| {
                    (
                        k["keyId"].as_str().unwrap_or_default().to_string(),
                        k["displayName"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_generated_certificate_works_from_the_secret_alone_and_rotates_with_overlap() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app(
        "cert-app",
        json!({"secretName": "cert-app-tls", "overlap": "15s"}),
    ))
    .await;
    let first = settled(&h, "cert-app", None).await;

    let secret: Secret = h.api(NS).get("cert-app-tls").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret_data(&h, NS, "cert-app-tls").await.unwrap();
    for key in [
        "tls.crt",
        "tls.key",
        "client.pem",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_AUTHORITY_HOST",
        "thumbprint",
        "expiresAt",
    ] {
        assert!(data.contains_key(key), "Secret lacks {key}");
    }
    assert!(
        !data.contains_key("tls-next.key"),
        "no staged key after the rotation"
    );
    assert_eq!(data["thumbprint"], first);
    assert!(data["client.pem"].contains("BEGIN CERTIFICATE"));
    assert!(data["client.pem"].contains("PRIVATE KEY"));

    // Nothing but the Secret holds the private key.
    let obj: AppRegistration = h.api(NS).get("cert-app").await.unwrap();
    let status = serde_json::to_string(&obj.status).unwrap();
    assert!(!status.contains("PRIVATE KEY"));
    let app_id = obj.status.as_ref().unwrap().app_id.clone().unwrap();
    let keys = entra_keys(&h, &app_id);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].1.starts_with("entra-operator:"), "{keys:?}");

    token_with(&h, &data)
        .await
        .expect("the generated certificate works");
    if let Some(clients) = python_clients(&h, &data).await {
        for (client, result) in &clients {
            assert_eq!(result, "ok", "{client} with the Secret's certificate");
        }
        assert_eq!(clients.len(), 3, "{clients:?}");
    }

    // Rotate on request: the new certificate goes up with a proof signed by the current one.
    let add_key_before = h
        .entra
        .request_count("POST", "/v1.0/applications/{id}/addKey");
    h.api::<AppRegistration>(NS)
        .patch(
            "cert-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/rotate": "1"}}})),
        )
        .await
        .unwrap();
    let second = settled(&h, "cert-app", Some(&first)).await;
    assert_eq!(
        h.entra
            .request_count("POST", "/v1.0/applications/{id}/addKey"),
        add_key_before + 1,
        "a later certificate is added with addKey and a proof"
    );
    let new_data = secret_data(&h, NS, "cert-app-tls").await.unwrap();
    assert_eq!(new_data["thumbprint"], second);
    token_with(&h, &new_data)
        .await
        .expect("the new certificate works");
    token_with(&h, &data)
        .await
        .expect("the old certificate works during the overlap");

    // After the overlap the old one is removed and refused.
    h.wait_for("previous certificate revoked", WAIT, || async {
        let obj: AppRegistration = h.api(NS).get("cert-app").await.ok()?;
        obj.status?
            .certificates
            .first()
            .is_some_and(|c| c.previous.is_empty())
            .then_some(())
    })
    .await;
    let err = token_with(&h, &data)
        .await
        .expect_err("the old certificate is refused after the overlap");
    assert!(err.contains("AADSTS"), "{err}");
    token_with(&h, &new_data)
        .await
        .expect("the new one still works");
    assert_eq!(entra_keys(&h, &app_id).len(), 1);

    // Removed from the spec: not revoked at once, but wound down over the default overlap.
    h.api::<AppRegistration>(NS)
        .patch(
            "cert-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"certificates": []}}})),
        )
        .await
        .unwrap();
    let retired = h
        .wait_for("the certificate is retired", WAIT, || async {
            let obj: AppRegistration = h.api(NS).get("cert-app").await.ok()?;
            let cert = obj.status?.certificates.first()?.clone();
            (cert.thumbprint.is_none() && cert.previous.len() == 1).then_some(cert)
        })
        .await;
    let revoke_at: jiff::Timestamp = retired.previous[0].revoke_at.parse().unwrap();
    assert!(
        revoke_at > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 6),
        "revoked after the default 7-day overlap, not at once: {revoke_at}"
    );
    assert_eq!(entra_keys(&h, &app_id).len(), 1, "still in Entra");
    token_with(&h, &new_data)
        .await
        .expect("the retired certificate works during its overlap");
    assert!(
        h.api::<Secret>(NS)
            .get_opt("cert-app-tls")
            .await
            .unwrap()
            .is_some(),
        "the Secret stays while the certificate works"
    );
}

#[tokio::test]
async fn a_certificate_from_a_cert_manager_style_secret_is_followed_through_renewal() {
    let mut h = Harness::start().await;
    h.start_controllers();
    let now = jiff::Timestamp::now();
    let lifetime = jiff::SignedDuration::from_hours(24 * 90);
    let issue = |n: &str| certgen::generate(n, lifetime, now).unwrap();
    let first = issue("issued-1");
    let write = |cert: &certgen::GeneratedCertificate| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "issued-tls", "namespace": NS},
               "stringData": {"tls.crt": cert.cert_pem, "tls.key": cert.key_pem.expose()}})
    };
    h.apply(write(&first)).await;
    h.apply(app(
        "issued-app",
        json!({"secretName": "issued-tls", "source": "Secret", "overlap": "15s"}),
    ))
    .await;
    let t1 = settled(&h, "issued-app", None).await;
    assert_eq!(t1, first.info.thumbprint);
    let obj: AppRegistration = h.api(NS).get("issued-app").await.unwrap();
    let app_id = obj.status.unwrap().app_id.unwrap();

    // The Secret is the issuer's: the operator never writes it.
    let secret: Secret = h.api(NS).get("issued-tls").await.unwrap();
    assert!(
        secret
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .all(|f| f.manager.as_deref() != Some("entra-operator")),
        "the operator wrote the issuer's Secret"
    );

    let consumer = |cert: &certgen::GeneratedCertificate| {
        BTreeMap::from([
            ("AZURE_CLIENT_ID".to_string(), app_id.to_string()),
            (
                "AZURE_TENANT_ID".to_string(),
                h.ctx.settings.tenant_id.clone(),
            ),
            (
                "AZURE_AUTHORITY_HOST".to_string(),
                h.ctx.settings.authority_host.clone(),
            ),
            (
                "client.pem".to_string(),
                certgen::client_pem(&cert.cert_pem, cert.key_pem.expose())
                    .expose()
                    .to_string(),
            ),
        ])
    };
    token_with(&h, &consumer(&first))
        .await
        .expect("the issued certificate works");

    // Renewed in place, as cert-manager does.
    let second = issue("issued-2");
    h.api::<Secret>(NS)
        .patch(
            "issued-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {
                "tls.crt": second.cert_pem, "tls.key": second.key_pem.expose()}})),
        )
        .await
        .unwrap();
    let t2 = settled(&h, "issued-app", Some(&t1)).await;
    assert_eq!(t2, second.info.thumbprint);
    token_with(&h, &consumer(&second))
        .await
        .expect("the renewed certificate works");
    token_with(&h, &consumer(&first))
        .await
        .expect("the old one works during the overlap");
    h.wait_for("previous certificate revoked", WAIT, || async {
        let obj: AppRegistration = h.api(NS).get("issued-app").await.ok()?;
        obj.status?
            .certificates
            .first()
            .is_some_and(|c| c.previous.is_empty())
            .then_some(())
    })
    .await;
    token_with(&h, &consumer(&first))
        .await
        .expect_err("the old certificate is refused after the overlap");
    assert_eq!(entra_keys(&h, &app_id).len(), 1);
}

/// `deletionPolicy: Orphan` hands a generated certificate over: its Secret outlives the resource
/// (no owner reference left for the garbage collector) and keeps working, and the previous
/// certificate in its overlap, which nobody would remove any more, is removed at once.
#[tokio::test]
async fn orphan_keeps_the_certificate_secret_working_and_removes_the_previous_certificate() {
    let mut h = Harness::start().await;
    h.start_controllers();
    let mut doc = app(
        "cert-handover",
        json!({"secretName": "cert-handover-tls", "overlap": "7d"}),
    );
    doc["spec"]["deletionPolicy"] = json!("Orphan");
    h.apply(doc).await;
    let first = settled(&h, "cert-handover", None).await;
    h.api::<AppRegistration>(NS)
        .patch(
            "cert-handover",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/rotate": "1"}}})),
        )
        .await
        .unwrap();
    let current = settled(&h, "cert-handover", Some(&first)).await;
    let obj: AppRegistration = h.api(NS).get("cert-handover").await.unwrap();
    let status = obj.status.unwrap();
    let app_id = status.app_id.clone().unwrap();
    let current_key = status.certificates[0].key_id.clone().unwrap();
    assert_eq!(entra_keys(&h, &app_id).len(), 2, "current and previous");

    h.api::<AppRegistration>(NS)
        .delete("cert-handover", &Default::default())
        .await
        .unwrap();
    h.wait_for("cert-handover deleted", WAIT, || async {
        h.api::<AppRegistration>(NS)
            .get_opt("cert-handover")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Give the garbage collector its chance to take the Secret.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let secret = h
        .api::<Secret>(NS)
        .get_opt("cert-handover-tls")
        .await
        .unwrap()
        .expect("the Secret outlives an orphaned resource");
    assert!(
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "no owner reference left for the garbage collector"
    );
    let data = secret_data(&h, NS, "cert-handover-tls").await.unwrap();
    assert_eq!(data["thumbprint"], current);
    token_with(&h, &data)
        .await
        .expect("the kept certificate still works");
    let left: Vec<String> = entra_keys(&h, &app_id)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        left,
        vec![current_key],
        "only the Secret's certificate is left"
    );
}
