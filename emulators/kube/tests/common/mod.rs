#![allow(dead_code)]

use std::time::Duration;

use kube::{Client, CustomResource, CustomResourceExt};
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A toy CRD: `widgets.test.example.com`, namespaced, with a status subresource, printer columns,
/// defaults, a pattern, an enum and CEL rules (one of them a transition rule).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
pub struct WidgetSpec {
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Value>,
}

/// The toy CRD with schema features added by hand (what kube-derive does not generate).
pub fn widget_crd() -> Value {
    let mut crd = serde_json::to_value(Widget::crd()).unwrap();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec["properties"]["color"] =
        json!({"type": "string", "enum": ["red", "blue"], "default": "red"});
    spec["properties"]["size"]["minimum"] = json!(0);
    spec["properties"]["size"]["maximum"] = json!(100);
    spec["properties"]["note"] = json!({"type": "string", "pattern": "^[a-z ]*$"});
    spec["x-kubernetes-validations"] = json!([
        {"rule": "self.size % 2 == 0 || self.color == 'blue'", "message": "odd sizes must be blue", "fieldPath": ".size"},
        {"rule": "self.size >= oldSelf.size", "message": "size may not shrink"}
    ]);
    let status =
        &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    status["properties"]["conditions"]["x-kubernetes-list-type"] = json!("map");
    status["properties"]["conditions"]["x-kubernetes-list-map-keys"] = json!(["type"]);
    status["properties"]["conditions"]["items"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    crd
}

pub async fn client_for(emu: &KubeEmulator) -> Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn start() -> (KubeEmulator, Client) {
    start_with(KubeEmulatorConfig {
        bookmark_interval: Duration::from_millis(300),
        ..Default::default()
    })
    .await
}

pub async fn start_with(config: KubeEmulatorConfig) -> (KubeEmulator, Client) {
    let emu = KubeEmulator::start(config).await.unwrap();
    emu.create_crd(widget_crd()).unwrap();
    let client = client_for(&emu).await;
    (emu, client)
}

pub fn widget(name: &str, size: i64) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            color: None,
            note: None,
        },
    )
}

/// A raw request through the client; returns status and body.
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    if !bytes.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        b = b.header("content-type", "application/json");
    }
    let resp = client
        .send(b.body(kube::client::Body::from(bytes)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    (status, v)
}

pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
