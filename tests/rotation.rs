//! Client-secret rotation end to end: what triggers exactly one rotation, the overlap during which
//! both secrets work, and recovery from every crash point without a lost or orphaned credential.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use entra_emulator::{FaultKind, FaultRule};
use entra_operator::api::AppRegistration;
use entra_operator::graph::TokenProbe;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(40);
const ADD_PASSWORD: &str = "/v1.0/applications/{id}/addPassword";
const REMOVE_PASSWORD: &str = "/v1.0/applications/{id}/removePassword";

fn app(name: &str, password: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"displayName": name, "credentials": {"passwords": [password]}}})
}

async fn get(h: &Harness, name: &str) -> AppRegistration {
    h.api::<AppRegistration>(NS).get(name).await.unwrap()
}

/// Waits until the resource is Ready with a settled current credential, and returns its key ID.
async fn settled_key(h: &Harness, name: &str) -> String {
    h.wait_for(&format!("{name} settled"), WAIT, || async {
        let obj = get(h, name).await;
        let status = obj.status?;
        let ready = status.conditions.is_true("Ready");
        let cred = status.credentials.first()?;
        (ready && cred.pending.is_none())
            .then(|| cred.key_id.clone())
            .flatten()
    })
    .await
}

/// Waits until the resource settles on a credential other than `old`, and returns its key ID.
async fn rotated_key(h: &Harness, name: &str, old: &str) -> String {
    h.wait_for(&format!("{name} rotated"), WAIT, || async {
        let k = settled_key(h, name).await;
        (k != old).then_some(k)
    })
    .await
}

/// Whether Entra issues a token for these Secret values.
async fn works(h: &Harness, data: &BTreeMap<String, String>) -> Result<(), String> {
    let probe = support::probe_with_secret(h, data, "https://graph.microsoft.com/.default")
        .await
        .map_err(|e| e.to_string())?;
    match probe {
        TokenProbe::Issued(_) => Ok(()),
        TokenProbe::Rejected(e) => Err(format!("{e:?}")),
    }
}

fn count(h: &Harness, method: &str, template: &str) -> u64 {
    h.entra.request_count(method, template)
}

/// Password credentials of the app in Entra: (keyId, displayName).
fn entra_passwords(h: &Harness, app_id: &str) -> Vec<(String, String)> {
    emulator_app(h, app_id)
        .map(|a| {
            a["passwordCredentials"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    (
                        p["keyId"].as_str().unwrap_or_default().to_string(),
                        p["displayName"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn app_id(h: &Harness, name: &str) -> String {
    get(h, name)
        .await
        .status
        .unwrap()
        .app_id
        .unwrap()
        .to_string()
}

async fn annotate(h: &Harness, name: &str, value: &str) {
    h.api::<AppRegistration>(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/rotate": value}}})),
        )
        .await
        .unwrap();
}

/// Invariants after any sequence of events: the Secret holds the current credential and it works;
/// every credential in Entra is current or previous (no orphan).
async fn assert_consistent(h: &Harness, name: &str, secret: &str) {
    let obj = get(h, name).await;
    let status = obj.status.unwrap();
    let cred = &status.credentials[0];
    let data = secret_data(h, NS, secret).await.expect("Secret exists");
    assert_eq!(
        Some(&data["keyId"]),
        cred.key_id.as_ref(),
        "Secret holds the current credential"
    );
    works(h, &data).await.expect("current secret works");
    let in_entra: Vec<String> = entra_passwords(h, status.app_id.as_deref().unwrap())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for key in &in_entra {
        let known =
            Some(key) == cred.key_id.as_ref() || cred.previous.iter().any(|p| &p.key_id == key);
        assert!(
            known,
            "orphaned credential {key} in Entra; status: {cred:?}"
        );
    }
}

#[tokio::test]
async fn due_rotation_keeps_the_old_secret_during_the_overlap_then_revokes_it() {
    let mut h = Harness::start().await;
    h.start_controllers();
    // Renew 10 s after creation; keep the old one 6 s more.
    h.apply(app("short", json!({"secretName": "short-creds", "lifetime": "40s", "renewBefore": "30s", "overlap": "6s"})))
        .await;
    let first_key = settled_key(&h, "short").await;
    let first = secret_data(&h, NS, "short-creds").await.unwrap();
    works(&h, &first).await.unwrap();
    // The rotation happens on its own when due.
    let second_key = h
        .wait_for("automatic rotation", WAIT, || async {
            let obj = get(&h, "short").await;
            let cred = obj.status?.credentials.first()?.clone();
            let key = cred.key_id?;
            (key != first_key && cred.pending.is_none()).then_some(key)
        })
        .await;
    let second = secret_data(&h, NS, "short-creds").await.unwrap();
    assert_eq!(second["keyId"], second_key);
    works(&h, &second).await.expect("new secret works");
    works(&h, &first)
        .await
        .expect("old secret still works during the overlap");
    let previous = get(&h, "short").await.status.unwrap().credentials[0]
        .previous
        .clone();
    assert_eq!(
        previous.into_iter().map(|p| p.key_id).collect::<Vec<_>>(),
        vec![first_key.clone()]
    );
    // After the overlap the old one is removed and rejected by Entra.
    h.wait_for("previous revoked", WAIT, || async {
        let obj = get(&h, "short").await;
        obj.status?
            .credentials
            .first()?
            .previous
            .is_empty()
            .then_some(())
    })
    .await;
    let err = works(&h, &first)
        .await
        .expect_err("old secret rejected after the overlap");
    assert!(err.contains("7000215"), "wrong secret: {err}");
    assert_eq!(count(&h, "POST", ADD_PASSWORD), 2);
    assert_eq!(count(&h, "POST", REMOVE_PASSWORD), 1);
    assert_consistent(&h, "short", "short-creds").await;
}

#[tokio::test]
async fn annotation_deleted_secret_and_edited_secret_each_cause_exactly_one_rotation() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app(
        "svc",
        json!({"secretName": "svc-creds", "overlap": "1h"}),
    ))
    .await;
    let mut key = settled_key(&h, "svc").await;
    assert_eq!(count(&h, "POST", ADD_PASSWORD), 1);

    // 1. The rotate annotation.
    annotate(&h, "svc", "2026-11-22").await;
    key = rotated_key(&h, "svc", &key).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&h, "POST", ADD_PASSWORD),
        2,
        "one rotation for one annotation value"
    );

    // 2. A deleted Secret.
    h.api::<Secret>(NS)
        .delete("svc-creds", &Default::default())
        .await
        .unwrap();
    key = rotated_key(&h, "svc", &key).await;
    let recreated = secret_data(&h, NS, "svc-creds")
        .await
        .expect("Secret written again");
    assert_eq!(recreated["keyId"], key);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&h, "POST", ADD_PASSWORD), 3);

    // 3. An edited Secret (someone pasted another value).
    h.api::<Secret>(NS)
        .patch(
            "svc-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AZURE_CLIENT_SECRET": "not-the-real-value"}})),
        )
        .await
        .unwrap();
    rotated_key(&h, "svc", &key).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&h, "POST", ADD_PASSWORD), 4);
    // The annotation value did not change, so nothing more happened.
    assert_consistent(&h, "svc", "svc-creds").await;
}

#[tokio::test]
async fn add_password_committed_but_answered_with_an_error_leaves_no_orphan() {
    let mut h = Harness::start().await;
    // Graph creates the credential but the operator never sees the value.
    h.entra.add_fault(
        FaultRule::new(
            "POST",
            ADD_PASSWORD,
            FaultKind::CommitThenStatus { status: 500 },
        )
        .times(1),
    );
    h.start_controllers();
    h.apply(app("crash1", json!({"secretName": "crash1-creds"})))
        .await;
    settled_key(&h, "crash1").await;
    let id = app_id(&h, "crash1").await;
    assert_eq!(
        count(&h, "POST", ADD_PASSWORD),
        2,
        "the lost credential was replaced once"
    );
    assert!(
        count(&h, "POST", REMOVE_PASSWORD) >= 1,
        "the lost credential was removed"
    );
    assert_eq!(entra_passwords(&h, &id).len(), 1);
    assert_consistent(&h, "crash1", "crash1-creds").await;
}

#[tokio::test]
async fn add_password_committed_then_connection_dropped_leaves_no_orphan() {
    let mut h = Harness::start().await;
    h.entra
        .add_fault(FaultRule::new("POST", ADD_PASSWORD, FaultKind::CommitThenReset).times(1));
    h.start_controllers();
    h.apply(app("crash2", json!({"secretName": "crash2-creds"})))
        .await;
    settled_key(&h, "crash2").await;
    let id = app_id(&h, "crash2").await;
    assert_eq!(entra_passwords(&h, &id).len(), 1);
    assert_consistent(&h, "crash2", "crash2-creds").await;
}

#[tokio::test]
async fn secret_write_failure_after_add_password_recovers_without_orphan() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app(
        "crash3",
        json!({"secretName": "crash3-creds", "overlap": "1h"}),
    ))
    .await;
    let key = settled_key(&h, "crash3").await;
    // The next Secret write fails: the new value existed only in memory and is lost.
    h.kube.fail_next_writes("secrets", 1, 500);
    annotate(&h, "crash3", "now").await;
    rotated_key(&h, "crash3", &key).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = app_id(&h, "crash3").await;
    // Current + previous; the lost one was removed.
    assert_eq!(entra_passwords(&h, &id).len(), 2);
    assert_consistent(&h, "crash3", "crash3-creds").await;
}

#[tokio::test]
async fn operator_restart_in_the_middle_of_a_rotation_recovers() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app(
        "restart",
        json!({"secretName": "restart-creds", "overlap": "1h"}),
    ))
    .await;
    let key = settled_key(&h, "restart").await;
    // Make addPassword slow, ask for a rotation, and stop the operator while the call is in flight:
    // status holds the pending nonce, Graph gets the credential, the Secret never does.
    h.entra
        .add_fault(FaultRule::new("POST", ADD_PASSWORD, FaultKind::Delay { ms: 1500 }).times(1));
    annotate(&h, "restart", "restart-1").await;
    h.wait_for("pending rotation recorded", WAIT, || async {
        let obj = get(&h, "restart").await;
        obj.status?
            .credentials
            .first()?
            .pending
            .as_ref()
            .map(|_| ())
    })
    .await;
    h.kill_controllers().await;
    // A new process.
    h.start_controllers();
    rotated_key(&h, "restart", &key).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = app_id(&h, "restart").await;
    assert_eq!(
        entra_passwords(&h, &id).len(),
        2,
        "current and previous only"
    );
    assert_consistent(&h, "restart", "restart-creds").await;
}

/// `deletionPolicy: Orphan` hands the credentials over: the Secret outlives the resource and keeps
/// working (no longer rotated), and the previous credential in its overlap, which no Secret holds
/// and nobody would revoke any more, is revoked at once. `Delete` still takes the Secret with it.
#[tokio::test]
async fn orphan_keeps_the_secret_working_and_revokes_the_previous_credential() {
    let mut h = Harness::start().await;
    h.start_controllers();
    let mut doc = app(
        "handover",
        json!({"secretName": "handover-creds", "overlap": "7d"}),
    );
    doc["spec"]["deletionPolicy"] = json!("Orphan");
    h.apply(doc).await;
    let first = settled_key(&h, "handover").await;
    annotate(&h, "handover", "before-handover").await;
    let current = rotated_key(&h, "handover", &first).await;
    let id = app_id(&h, "handover").await;
    assert_eq!(entra_passwords(&h, &id).len(), 2, "current and previous");

    h.api::<AppRegistration>(NS)
        .delete("handover", &Default::default())
        .await
        .unwrap();
    h.wait_for("handover deleted", WAIT, || async {
        h.api::<AppRegistration>(NS)
            .get_opt("handover")
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
        .get_opt("handover-creds")
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
    assert_eq!(
        secret.metadata.annotations.unwrap_or_default()["entra.bookme.io/orphaned-from"],
        "AppRegistration/handover"
    );
    let data = secret_data(&h, NS, "handover-creds").await.unwrap();
    works(&h, &data).await.expect("the kept Secret still works");
    let left: Vec<String> = entra_passwords(&h, &id)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![current], "only the Secret's credential is left");
}

/// A password removed from the spec is not revoked at once: its Secret keeps working through an
/// overlap (the default 7 days: the removed declaration's own overlap went with it), recorded in
/// status; the end of that overlap is `an_undeclared_password_gets_its_overlap_then_goes` in the
/// crash simulation.
#[tokio::test]
async fn a_removed_password_keeps_working_through_an_overlap() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app(
        "retiring",
        json!({"secretName": "retiring-creds", "overlap": "1h"}),
    ))
    .await;
    let key = settled_key(&h, "retiring").await;
    let id = app_id(&h, "retiring").await;
    h.api::<AppRegistration>(NS)
        .patch(
            "retiring",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"passwords": []}}})),
        )
        .await
        .unwrap();
    let revoke_at = h
        .wait_for("the retired credential in overlap", WAIT, || async {
            let status = get(&h, "retiring").await.status?;
            let entry = status.credentials.first()?;
            let previous = entry.previous.first()?;
            (entry.key_id.is_none() && previous.key_id == key).then(|| previous.revoke_at.clone())
        })
        .await;
    let revoke_at: jiff::Timestamp = revoke_at.parse().unwrap();
    let left = revoke_at.duration_since(jiff::Timestamp::now());
    assert!(
        left > jiff::SignedDuration::from_hours(24 * 7 - 1)
            && left <= jiff::SignedDuration::from_hours(24 * 7),
        "revoked in 7 days, not now: {revoke_at}"
    );
    let data = secret_data(&h, NS, "retiring-creds")
        .await
        .expect("the Secret stays during the overlap");
    works(&h, &data).await.expect("and keeps working");
    assert_eq!(entra_passwords(&h, &id).len(), 1);
}
