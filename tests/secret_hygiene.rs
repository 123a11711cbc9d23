//! Secret values never reach logs, events, status or metrics: a full create and rotation with
//! trace-level logging captured, then every client secret value searched for in all of them.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entra_operator::api::AppRegistration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::Harness;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_value_in_logs_events_status_or_metrics() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
        "metadata": {"name": "hygiene", "namespace": "default"},
        "spec": {"displayName": "Hygiene", "credentials": {"passwords": [{"secretName": "hygiene-creds", "overlap": "1h"}]}}}))
    .await;
    let api = h.api::<AppRegistration>("default");
    let mut values = Vec::new();
    let wait_key = |previous: Option<String>| {
        let api = api.clone();
        async move {
            let obj = api.get("hygiene").await.ok()?;
            let status = obj.status?;
            let cred = status.credentials.first()?;
            let key = cred.key_id.clone()?;
            (status.conditions.is_true("Ready")
                && cred.pending.is_none()
                && Some(&key) != previous.as_ref())
            .then_some(key)
        }
    };
    let first = h
        .wait_for("first secret", Duration::from_secs(30), || wait_key(None))
        .await;
    let secrets = h.api::<Secret>("default");
    let read_value = || async {
        let s = secrets.get("hygiene-creds").await.unwrap();
        String::from_utf8(s.data.unwrap()["AZURE_CLIENT_SECRET"].0.clone()).unwrap()
    };
    values.push(read_value().await);
    api.patch(
        "hygiene",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/rotate": "1"}}})),
    )
    .await
    .unwrap();
    h.wait_for("rotated secret", Duration::from_secs(30), || {
        wait_key(Some(first.clone()))
    })
    .await;
    values.push(read_value().await);
    h.stop_controllers().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("graph request"), "trace logging was captured");
    let status = serde_json::to_string(&api.get("hygiene").await.unwrap().status).unwrap();
    let events: Vec<String> =
        kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(h.client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
    assert!(!events.is_empty(), "events were published");
    let metrics = h.metrics.render();
    assert!(metrics.contains("credential_expiry_timestamp_seconds"));
    for value in &values {
        assert!(value.len() >= 16, "a real secret value");
        assert!(
            !logs.contains(value.as_str()),
            "a secret value is in the logs"
        );
        assert!(
            !status.contains(value.as_str()),
            "a secret value is in status"
        );
        assert!(
            !metrics.contains(value.as_str()),
            "a secret value is in metrics"
        );
        for e in &events {
            assert!(!e.contains(value.as_str()), "a secret value is in an event");
        }
    }
}
