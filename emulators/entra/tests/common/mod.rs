//! Shared set-up for the emulator's integration tests.
#![allow(dead_code)]

use entra_emulator::{EmulatorClient, EmulatorConfig, EntraEmulator, HttpResponse, TenantSpec};
use serde_json::{Value, json};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

pub struct Env {
    pub emu: EntraEmulator,
    pub client: EmulatorClient,
    pub token: String,
    pub base: String,
    pub customer: String,
}

impl Env {
    pub async fn new() -> Self {
        Self::with_config(EmulatorConfig::default()).await
    }

    pub async fn with_config(mut config: EmulatorConfig) -> Self {
        config.customer_tenants.push(TenantSpec::new("fabrikam"));
        // Every test checks the emulator's answers against Graph's published schema.
        config.switches.schema_contract = true;
        let emu = EntraEmulator::start(config).await.expect("emulator starts");
        let client = emu.client();
        let token = emu.operator_token().await.expect("operator token");
        let base = emu.graph_endpoint();
        let customer = emu
            .tenant_ids()
            .into_iter()
            .find(|t| t != emu.home_tenant_id())
            .unwrap();
        Self {
            emu,
            client,
            token,
            base,
            customer,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        self.call_with(method, path, &[], body).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> HttpResponse {
        let auth = format!("Bearer {}", self.token);
        let mut h = vec![("authorization", auth.as_str())];
        h.extend_from_slice(headers);
        self.client
            .send(method, &format!("{}{path}", self.base), &h, body.as_ref())
            .await
            .expect("request completes")
    }

    /// Creates an application; returns its JSON.
    pub async fn create_app(&self, body: Value) -> Value {
        let r = self.call("POST", "/v1.0/applications", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.json());
        r.json()
    }

    pub async fn create_sp(&self, app_id: &str) -> Value {
        let r = self
            .call(
                "POST",
                "/v1.0/servicePrincipals",
                Some(json!({"appId": app_id})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json());
        r.json()
    }

    pub async fn add_password(&self, object_id: &str, cred: Value) -> HttpResponse {
        self.call(
            "POST",
            &format!("/v1.0/applications/{object_id}/addPassword"),
            Some(json!({ "passwordCredential": cred })),
        )
        .await
    }

    pub async fn token(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> HttpResponse {
        self.client
            .token_with_secret(&self.emu.token_endpoint(tenant), client_id, secret, scope)
            .await
            .expect("token request completes")
    }

    pub fn home(&self) -> String {
        self.emu.home_tenant_id().to_string()
    }
}

/// The claims of a JWT, unverified.
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn error_code(r: &HttpResponse) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

pub fn aadsts(r: &HttpResponse) -> i64 {
    r.json()["error_codes"][0].as_i64().unwrap_or(0)
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let responses: Vec<_> = self
            .emu
            .contract_violations()
            .into_iter()
            .filter(|v| v["direction"] == "response")
            .collect();
        assert!(
            responses.is_empty(),
            "the emulator answered outside Graph's schema: {responses:#?}"
        );
    }
}
