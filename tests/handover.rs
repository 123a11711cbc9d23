//! A BankClient's secret handover end to end: a rotation shows the handover in status, announces
//! it once to a webhook (a local HTTP server here; the first delivery fails and is retried), a
//! stale confirmation is ignored, and a confirmation naming the new secret revokes the previous
//! one after the (1 s) safety delay instead of at its expiry. No secret value reaches the webhook,
//! events, status or metrics.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entra_operator::api::bankclient::HandoverState;
use entra_operator::api::{AppRegistration, BankClient};
use entra_operator::controllers::context::HandoverSettings;
use entra_operator::graph::{SecretString, TokenProbe};
use entra_operator::webhook::{Webhook, WebhookFormat};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(40);
const CONFIRMED: &str = "entra.bookme.io/handover-confirmed";

/// What the webhook received: every request's body, and whether it was answered 2xx.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, bool)>>>);

impl Received {
    fn delivered(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(body, _)| serde_json::from_str(body).expect("JSON body"))
            .collect()
    }
    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }
}

/// A tiny webhook receiver on localhost that answers the first `fail_first` requests with 500.
async fn webhook_server(fail_first: usize) -> (String, Received) {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    let received = Received::default();
    let log = received.clone();
    let app = Router::new().route(
        "/hooks/handover",
        post(move |body: String| {
            let log = log.clone();
            async move {
                let mut requests = log.0.lock().unwrap();
                let ok = requests.len() >= fail_first;
                requests.push((body, ok));
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/hooks/handover"), received)
}

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
            "signInAudience": "AzureADMyOrg",
            "identifierUris": ["api://{appId}"],
            "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}],
            "servicePrincipal": {"appRoleAssignmentRequired": true, "visibleToUsers": false}
        }),
    )
}

async fn wait_bank_client<F>(h: &Harness, what: &str, check: F) -> BankClient
where
    F: Fn(&BankClient) -> bool,
{
    let api = h.api::<BankClient>(NS);
    h.wait_for(&format!("BankClient nordbank {what}"), WAIT, || async {
        let bc = api.get_opt("nordbank").await.unwrap()?;
        check(&bc).then_some(bc)
    })
    .await
}

async fn annotate<K>(h: &Harness, name: &str, key: &str, value: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    h.api::<K>(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

/// `(type, reason, note)` of the events about the BankClient.
async fn bank_client_events(h: &Harness) -> Vec<(String, String, String)> {
    kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(h.client.clone(), NS)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("BankClient"))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

async fn has_event(h: &Harness, type_: &str, reason: &str) -> bool {
    bank_client_events(h)
        .await
        .iter()
        .any(|(t, r, _)| t == type_ && r == reason)
}

/// Whether Entra issues a token for these Secret values.
async fn works(h: &Harness, data: &BTreeMap<String, String>) -> bool {
    matches!(
        support::probe_with_secret(h, data, "https://graph.microsoft.com/.default").await,
        Ok(TokenProbe::Issued(_))
    )
}

fn entra_key_ids(h: &Harness, app_id: &str) -> Vec<String> {
    emulator_app(h, app_id).expect("app")["passwordCredentials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| p["keyId"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_rotation_is_handed_over_announced_once_and_a_confirmation_revokes_the_previous_secret() {
    let (url, received) = webhook_server(1).await;
    let mut h = Harness::start_with_handover(HandoverSettings {
        confirm_delay: Duration::from_secs(1),
        webhook: Some(
            Webhook::new(SecretString::new(url.clone()), WebhookFormat::Json, None).unwrap(),
        ),
        notify_retry: Duration::from_millis(500),
    })
    .await;
    h.start_all_controllers();
    h.apply(system_api()).await;
    // A secret valid for a day, renewed an hour before: no rotation but the one asked for below.
    h.apply(cr(
        "BankClient",
        "nordbank",
        json!({"bankId": "nordbank", "api": {"appRef": {"name": "api-system-integration"}},
               "secret": {"name": "nordbank-credentials", "lifetime": "1d", "renewBefore": "1h"}}),
    ))
    .await;
    let bc = wait_bank_client(&h, "Ready", |bc| {
        bc.status
            .as_ref()
            .is_some_and(|s| s.conditions.is_true("Ready"))
    })
    .await;
    let status = bc.status.unwrap();
    assert_eq!(status.handover, None, "no handover before a rotation");
    let client_id = status.client_id.unwrap();
    let old = secret_data(&h, NS, "nordbank-credentials").await.unwrap();
    assert!(received.all().is_empty(), "nothing announced yet");

    // Rotate the child's secret (the rotate annotation on the AppRegistration).
    annotate::<AppRegistration>(&h, "bankclient-nordbank", "entra.bookme.io/rotate", "1").await;
    let new = h
        .wait_for("the Secret holds a new secret", WAIT, || async {
            let data = secret_data(&h, NS, "nordbank-credentials").await?;
            (data["keyId"] != old["keyId"]).then_some(data)
        })
        .await;
    let bc = wait_bank_client(&h, "shows the announced handover", |bc| {
        bc.status
            .as_ref()
            .and_then(|s| s.handover.as_ref())
            .is_some_and(|h| h.new_key_id == new["keyId"] && h.notified_at.is_some())
    })
    .await;
    let handover = bc.status.as_ref().unwrap().handover.clone().unwrap();
    assert_eq!(handover.state, HandoverState::AwaitingConfirmation);
    assert!(!handover.confirmed);
    assert_eq!(handover.previous_key_ids, vec![old["keyId"].clone()]);
    // UntilExpiry: the previous secret would stay until its own expiry, a day from now.
    let valid_until: jiff::Timestamp = handover.previous_valid_until.parse().unwrap();
    assert!(valid_until > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(23));
    assert!(works(&h, &old).await && works(&h, &new).await);

    // The webhook: the first delivery failed (a warning, retried), the second was accepted.
    let delivered = received.delivered();
    assert_eq!(delivered.len(), 1, "{:?}", received.all());
    assert_eq!(received.all().len(), 2, "one failure, one retry");
    assert!(has_event(&h, "Warning", "HandoverNotificationFailed").await);
    assert!(has_event(&h, "Normal", "HandoverStarted").await);
    let body = &delivered[0];
    assert_eq!(body["event"], "handover.started");
    assert_eq!(
        body["bankClient"],
        json!({"namespace": NS, "name": "nordbank"})
    );
    assert_eq!(body["bankId"], "nordbank");
    assert_eq!(body["clientId"], client_id.as_str());
    assert_eq!(body["newKeyId"], new["keyId"].as_str());
    assert_eq!(
        body["previousValidUntil"],
        handover.previous_valid_until.as_str()
    );
    assert_eq!(body["confirm"]["annotation"], CONFIRMED);
    assert_eq!(body["confirm"]["value"], new["keyId"].as_str());

    let labels = format!("{{namespace=\"{NS}\",name=\"nordbank\",bank_id=\"nordbank\"}}");
    let metrics = h.metrics.render();
    assert!(
        metrics.contains(&format!("entra_operator_handover_confirmed{labels} 0")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "entra_operator_handover_previous_revoke_timestamp_seconds{labels} {}",
        valid_until.as_second()
    )));

    // A stale confirmation (the previous secret's key ID) is ignored with a warning.
    annotate::<BankClient>(&h, "nordbank", CONFIRMED, &old["keyId"]).await;
    wait_bank_client(&h, "flags the stale confirmation", |bc| {
        bc.status.as_ref().unwrap().ignored_confirmation.as_deref() == Some(old["keyId"].as_str())
    })
    .await;
    h.wait_for("the stale-confirmation warning", WAIT, || async {
        has_event(&h, "Warning", "StaleHandoverConfirmation")
            .await
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        entra_key_ids(&h, &client_id).contains(&old["keyId"]),
        "a stale confirmation revokes nothing"
    );
    assert!(works(&h, &old).await);
    let child = h
        .api::<AppRegistration>(NS)
        .get("bankclient-nordbank")
        .await
        .unwrap();
    assert_eq!(child.status.unwrap().credentials[0].previous.len(), 1);

    // The bank confirms the new secret: the previous one is revoked after the 1 s delay.
    let confirmed_at = tokio::time::Instant::now();
    annotate::<BankClient>(&h, "nordbank", CONFIRMED, &new["keyId"]).await;
    h.wait_for("the previous secret revoked in Entra", WAIT, || async {
        (!entra_key_ids(&h, &client_id).contains(&old["keyId"])).then_some(())
    })
    .await;
    assert!(
        confirmed_at.elapsed() >= Duration::from_secs(1),
        "after the delay"
    );
    let child = h
        .api::<AppRegistration>(NS)
        .get("bankclient-nordbank")
        .await
        .unwrap();
    assert_eq!(
        child.metadata.annotations.unwrap().get(CONFIRMED),
        Some(&new["keyId"]),
        "the confirmation reached the child"
    );
    assert!(entra_key_ids(&h, &client_id).contains(&new["keyId"]));
    assert!(
        !works(&h, &old).await,
        "the old secret no longer gets a token"
    );
    assert!(works(&h, &new).await, "the new secret works");
    let bc = wait_bank_client(&h, "handover cleared", |bc| {
        let s = bc.status.as_ref().unwrap();
        s.handover.is_none() && s.ignored_confirmation.is_none()
    })
    .await;
    h.wait_for("the handover events", WAIT, || async {
        (has_event(&h, "Normal", "HandoverConfirmed").await
            && has_event(&h, "Normal", "HandoverCompleted").await)
            .then_some(())
    })
    .await;
    assert!(!h.metrics.render().contains("handover_"), "series removed");
    assert_eq!(received.delivered().len(), 1, "announced once");

    // No secret value in the webhook's bodies, events, status or metrics.
    let events = serde_json::to_string(&bank_client_events(&h).await).unwrap();
    let status = serde_json::to_string(&bc.status).unwrap();
    let metrics = h.metrics.render();
    for value in [&old["AZURE_CLIENT_SECRET"], &new["AZURE_CLIENT_SECRET"]] {
        assert!(value.len() >= 16, "a real secret value");
        for body in received.all() {
            assert!(
                !body.contains(value.as_str()),
                "a secret value in the webhook"
            );
        }
        assert!(
            !events.contains(value.as_str()),
            "a secret value in an event"
        );
        assert!(!status.contains(value.as_str()), "a secret value in status");
        assert!(
            !metrics.contains(value.as_str()),
            "a secret value in metrics"
        );
    }
}
