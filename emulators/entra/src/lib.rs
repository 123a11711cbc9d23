//! Entra ID + Microsoft Graph emulator (issue 3): the tenant every test runs against.
//!
//! One HTTPS listener on loopback serves the identity platform (`/{tenant}/oauth2/v2.0/token`,
//! discovery, JWKS, admin consent), Graph (`/v1.0/…`) and a control API (`/_emulator/…`). Start it
//! in-process with [`EntraEmulator::start`], or run the `entra-emulator` binary. Behaviour follows
//! `docs/graph.md`; choices where Entra is unconfirmed are listed in the crate's README.

mod client;
mod config;
mod control;
mod crypto;
mod graph;
mod http;
mod identity;
mod log;
mod model;
pub mod msgraph;
mod route;
mod schema;
mod server;
mod shared;
mod throttle;
mod tls;
mod util;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use client::{EmulatorClient, HttpResponse};
pub use config::{
    AppPolicy, DenyRule, EmulatorConfig, FaultKind, FaultRule, OperatorSpec, Switches,
    SwitchesPatch, TenantSpec, ThrottleMode, UserSpec,
};
pub use crypto::{pem_decode, sign_rs256_with_pkcs8};
pub use log::RequestRecord;

use crate::model::{App, KeyCred, Password, Sp, State};
use crate::shared::Shared;
use crate::util::{b64url, new_secret_text, sha1, sha256};

/// The operator identity's certificate (RSA) and key, also registered on its app.
pub const OPERATOR_CERT_PEM: &str = include_str!("fixtures/operator-cert.pem");
pub const OPERATOR_KEY_PEM: &str = include_str!("fixtures/operator-key.pem");
/// A second RSA certificate and key that no app has at start (for addKey and rotation tests).
pub const SPARE_CERT_PEM: &str = include_str!("fixtures/spare-cert.pem");
pub const SPARE_KEY_PEM: &str = include_str!("fixtures/spare-key.pem");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a client needs to act as the operator against this emulator.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub app_object_id: String,
    pub service_principal_id: String,
    pub authority_host: String,
    pub graph_endpoint: String,
    pub token_endpoint: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// A running emulator. Stops on drop or [`EntraEmulator::shutdown`].
pub struct EntraEmulator {
    shared: Arc<Shared>,
    port: u16,
    ca_pem: String,
    ca_path: PathBuf,
    home_tenant_id: String,
    operator: OperatorCredentials,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EntraEmulator {
    /// Generates the CA and server certificate, creates the tenants and the operator's identity,
    /// and starts listening on 127.0.0.1.
    pub async fn start(config: EmulatorConfig) -> Result<Self> {
        let tls = tls::generate(&config.extra_server_names)?;
        let ca_path = match &config.ca_out {
            Some(p) => p.clone(),
            None => std::env::temp_dir().join(format!(
                "entra-emulator-ca-{}-{}.pem",
                std::process::id(),
                b64url(&util::random_bytes(6))
            )),
        };
        std::fs::write(&ca_path, &tls.ca_pem)?;
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let port = listener.local_addr()?.port();
        let base = format!("https://127.0.0.1:{port}");

        let mut state = State {
            tenants: Default::default(),
            switches: config.switches.clone(),
            clock_offset_ms: 0,
            seq: 0,
            log: Default::default(),
            throttle: Default::default(),
            app_home: Default::default(),
            home_tenant_id: String::new(),
            contract_violations: Vec::new(),
        };
        let home = state.add_tenant(&config.home_tenant);
        state.home_tenant_id = home.clone();
        for t in &config.customer_tenants {
            state.add_tenant(t);
        }
        let operator = create_operator(&mut state, &home, &config.operator, &base);

        let info = json!({
            "authorityHost": base,
            "graphEndpoint": base,
            "homeTenantId": home,
            "caPemPath": ca_path,
            "operator": operator,
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            key: crypto::SigningKey::load(),
            base,
            info,
        });
        let (tx, rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let task = tokio::spawn(server::serve(shared.clone(), listener, acceptor, rx));
        Ok(Self {
            shared,
            port,
            ca_pem: tls.ca_pem,
            ca_path,
            home_tenant_id: home,
            operator,
            shutdown: tx,
            task: Some(task),
        })
    }

    /// `https://127.0.0.1:PORT`; the token endpoint is `{authority_host}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_host(&self) -> String {
        self.shared.base.clone()
    }

    /// `https://127.0.0.1:PORT`; Graph URLs are `{graph_endpoint}/v1.0/…`.
    pub fn graph_endpoint(&self) -> String {
        self.shared.base.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.base)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn home_tenant_id(&self) -> &str {
        &self.home_tenant_id
    }

    /// Adds a (customer) tenant; returns its id. Idempotent for the same id.
    pub fn add_tenant(&self, spec: TenantSpec) -> String {
        self.shared.state.lock().add_tenant(&spec)
    }

    /// Creates a user (home tenant unless `spec.tenant_id`); returns its object id. Users exist
    /// so that owners can be named by user principal name (`GET /users/{id | userPrincipalName}`).
    pub fn add_user(&self, spec: UserSpec) -> Result<String> {
        self.shared
            .state
            .lock()
            .add_user(&spec)
            .map(|u| u.id)
            .map_err(Error::Other)
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        self.shared.state.lock().tenants.keys().cloned().collect()
    }

    pub fn operator_credentials(&self) -> OperatorCredentials {
        self.operator.clone()
    }

    /// A client that trusts this emulator's CA.
    pub fn client(&self) -> EmulatorClient {
        EmulatorClient::new(&self.ca_pem).expect("emulator CA is valid")
    }

    /// A Graph access token for the operator's identity (client secret).
    pub async fn operator_token(&self) -> Result<String> {
        let resp = self
            .client()
            .token_with_secret(
                &self.operator.token_endpoint,
                &self.operator.client_id,
                &self.operator.client_secret,
                "https://graph.microsoft.com/.default",
            )
            .await?;
        resp.json()["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Other(format!("token request failed: {}", resp.json())))
    }

    // -- request log -----------------------------------------------------------------------

    /// How many requests with this method and path template were answered (including errors and
    /// injected faults), e.g. `request_count("POST", "/v1.0/applications/{id}/addPassword")`.
    pub fn request_count(&self, method: &str, template: &str) -> u64 {
        self.shared.state.lock().log.count(method, template)
    }

    /// Counts per `"METHOD template"`.
    pub fn request_counts(&self) -> Value {
        self.shared.state.lock().log.counts_json()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .state
            .lock()
            .log
            .entries
            .iter()
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.state.lock().log.clear();
    }

    /// Replaces the Graph application permissions granted to the operator's identity (its app
    /// role assignments on Microsoft Graph's service principal in the home tenant). Tokens issued
    /// afterwards carry exactly these `roles`; the Graph API enforces them.
    pub fn set_operator_graph_roles(&self, roles: &[&str]) {
        let mut st = self.shared.state.lock();
        let now = st.now();
        let home = st.home_tenant_id.clone();
        let client_id = self.operator.client_id.clone();
        let tenant = st.tenants.get_mut(&home).expect("home tenant");
        let Some(sp_id) = tenant.sp_by_app_id(&client_id).map(|s| s.id.clone()) else {
            return;
        };
        let graph_sp = tenant
            .sp_by_app_id(msgraph::GRAPH_APP_ID)
            .expect("graph sp")
            .id
            .clone();
        tenant
            .assignments
            .retain(|_, a| !(a.principal_id == sp_id && a.resource_id == graph_sp));
        for role in roles {
            let Some(role_id) = msgraph::graph_role_id(role) else {
                continue;
            };
            let a = model::Assignment {
                id: b64url(&util::random_bytes(32)),
                app_role_id: role_id.into(),
                principal_id: sp_id.clone(),
                resource_id: graph_sp.clone(),
                created: now,
            };
            tenant.assignments.insert(a.id.clone(), a);
        }
    }

    /// Schema contract violations recorded while `schemaContract` was on (requests and
    /// responses), each `{method, path, direction, violation}`.
    pub fn contract_violations(&self) -> Vec<Value> {
        self.shared.state.lock().contract_violations.clone()
    }

    /// The whole directory as JSON (no secret values: the emulator keeps only their hashes).
    pub fn state_dump(&self) -> Value {
        control::dump(&self.shared.state.lock())
    }

    // -- switches --------------------------------------------------------------------------

    pub fn switches(&self) -> Switches {
        self.shared.state.lock().switches.clone()
    }

    pub fn set_switches(&self, switches: Switches) {
        self.shared.state.lock().switches = switches;
    }

    pub fn update_switches(&self, patch: SwitchesPatch) {
        self.shared.state.lock().switches.apply(patch);
    }

    pub fn set_throttling(&self, mode: ThrottleMode) {
        let mut st = self.shared.state.lock();
        st.switches.throttling = mode;
        st.throttle.reset();
    }

    /// Forgets all throttling usage so far.
    pub fn reset_throttling(&self) {
        self.shared.state.lock().throttle.reset();
    }

    pub fn set_replication_delay(&self, delay: Duration) {
        self.shared.state.lock().switches.replication_delay_ms = delay.as_millis() as u64;
    }

    pub fn set_credential_delay(&self, delay: Duration) {
        self.shared.state.lock().switches.credential_delay_ms = delay.as_millis() as u64;
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.state.lock().switches.faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.state.lock().switches.faults.clear();
    }

    pub fn set_consent_approve(&self, approve: bool) {
        self.shared.state.lock().switches.consent_approve = approve;
    }

    /// Answer matching calls with 403 Authorization_RequestDenied.
    pub fn deny(&self, method: Option<&str>, path_template: &str) {
        self.shared.state.lock().switches.deny.push(DenyRule {
            method: method.map(str::to_string),
            path_template: path_template.to_string(),
        });
    }

    pub fn clear_denies(&self) {
        self.shared.state.lock().switches.deny.clear();
    }

    pub fn set_app_policy(&self, policy: AppPolicy) {
        self.shared.state.lock().switches.app_policy = policy;
    }

    /// Moves the emulator's clock forward (secret expiry, token lifetime, delta token age).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.state.lock().clock_offset_ms += by.as_millis() as i64;
    }

    /// What the customer's admin approving consent does, without going through the URL.
    pub fn grant_admin_consent(&self, tenant_id: &str, client_app_id: &str) -> Option<String> {
        let mut st = self.shared.state.lock();
        if !st.tenants.contains_key(tenant_id) || st.app_by_app_id(client_app_id).is_none() {
            return None;
        }
        Some(identity::grant_consent(
            &mut st,
            tenant_id,
            &client_app_id.to_ascii_lowercase(),
        ))
    }

    /// Stops listening and closes open connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EntraEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Creates the operator's app (secret + certificate), its SP, and Graph app roles for it.
fn create_operator(
    st: &mut State,
    home: &str,
    spec: &OperatorSpec,
    base: &str,
) -> OperatorCredentials {
    let now = st.now();
    let app_id = spec.client_id.clone().unwrap_or_else(|| {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("entra-emulator/operator/{home}").as_bytes(),
        )
        .to_string()
    });
    let secret = spec.client_secret.clone().unwrap_or_else(new_secret_text);
    let domain = st.tenants[home].default_domain.clone();
    let mut props = App::default_props(&domain);
    props.insert("displayName".into(), json!(spec.display_name));
    let cert_der = pem_decode(OPERATOR_CERT_PEM, "CERTIFICATE").expect("fixture cert");
    let cert = crypto::CertInfo::parse(&cert_der).expect("fixture cert parses");
    let far = now + jiff::SignedDuration::from_hours(24 * 365 * 2);
    let app = App {
        id: util::new_guid(),
        app_id: app_id.clone(),
        props,
        created: now,
        visible_at: now,
        deleted_at: None,
        passwords: vec![Password {
            key_id: util::new_guid(),
            display_name: Some("emulator bootstrap".into()),
            hint: secret.chars().take(3).collect(),
            hash: sha256(secret.as_bytes()),
            start: now,
            end: far,
            usable_at: now,
        }],
        keys: vec![KeyCred {
            key_id: util::new_guid(),
            display_name: Some("CN=entra-emulator operator".into()),
            key_type: "AsymmetricX509Cert".into(),
            usage: "Verify".into(),
            der: cert_der.clone(),
            start: cert.not_before,
            end: cert.not_after,
            cert,
            usable_at: now,
        }],
        fics: Vec::new(),
        owners: Vec::new(),
        // A real sequence number, so the operator's app is in an initial delta round.
        changed_seq: st.next_seq(),
    };
    let object_id = app.id.clone();
    st.app_home
        .insert(app_id.clone(), (home.to_string(), object_id.clone()));
    let sp = Sp::new(&app_id, now, now, st.next_seq());
    let sp_id = sp.id.clone();
    let tenant = st.tenants.get_mut(home).expect("home tenant");
    tenant.insert_app(app);
    tenant.insert_sp(sp);
    let graph_sp = tenant
        .sp_by_app_id(msgraph::GRAPH_APP_ID)
        .expect("graph sp")
        .id
        .clone();
    for role in msgraph::OPERATOR_GRAPH_ROLES {
        let a = model::Assignment {
            id: b64url(&util::random_bytes(32)),
            app_role_id: msgraph::graph_role_id(role).expect("known role").into(),
            principal_id: sp_id.clone(),
            resource_id: graph_sp.clone(),
            created: now,
        };
        tenant.assignments.insert(a.id.clone(), a);
    }
    let _ = sha1; // thumbprints are computed inside CertInfo
    OperatorCredentials {
        tenant_id: home.to_string(),
        client_id: app_id,
        client_secret: secret,
        app_object_id: object_id,
        service_principal_id: sp_id,
        authority_host: base.to_string(),
        graph_endpoint: base.to_string(),
        token_endpoint: format!("{base}/{home}/oauth2/v2.0/token"),
        certificate_pem: OPERATOR_CERT_PEM.to_string(),
        private_key_pem: OPERATOR_KEY_PEM.to_string(),
    }
}

/// Builds a certificate client assertion (RS256, `x5t` and `x5t#S256` headers) for the token
/// endpoint, as MSAL and azure-identity do.
pub fn certificate_assertion(
    private_key_pem: &str,
    certificate_pem: &str,
    client_id: &str,
    token_endpoint: &str,
    now_unix: i64,
) -> Option<String> {
    let key = pem_decode(private_key_pem, "PRIVATE KEY")?;
    let cert = pem_decode(certificate_pem, "CERTIFICATE")?;
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": b64url(&sha1(&cert)), "x5t#S256": b64url(&sha256(&cert))});
    let claims = json!({
        "aud": token_endpoint, "iss": client_id, "sub": client_id,
        "jti": util::new_guid(), "nbf": now_unix, "iat": now_unix, "exp": now_unix + 600,
    });
    sign_rs256_with_pkcs8(&key, &header, &claims)
}

/// Builds the proof-of-possession JWT that `addKey`/`removeKey` require, signed with one of the
/// application's current certificates.
pub fn key_proof(
    private_key_pem: &str,
    certificate_pem: &str,
    app_object_id: &str,
    now_unix: i64,
) -> Option<String> {
    let key = pem_decode(private_key_pem, "PRIVATE KEY")?;
    let cert = pem_decode(certificate_pem, "CERTIFICATE")?;
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": b64url(&sha1(&cert))});
    let claims = json!({
        "aud": "00000002-0000-0000-c000-000000000000", "iss": app_object_id,
        "nbf": now_unix, "exp": now_unix + 600, "jti": util::new_guid(),
    });
    sign_rs256_with_pkcs8(&key, &header, &claims)
}

/// Base64 (standard) DER of a PEM certificate, as Graph's `keyCredentials[].key` takes it.
pub fn certificate_key_value(certificate_pem: &str) -> Option<String> {
    pem_decode(certificate_pem, "CERTIFICATE").map(|d| util::b64(&d))
}

/// An unsigned-looking federated assertion (signature is not checked by the emulator; see README).
pub fn federated_assertion(issuer: &str, subject: &str, audience: &str, now_unix: i64) -> String {
    let header = b64url(br#"{"alg":"RS256","typ":"JWT","kid":"federated"}"#);
    let claims = b64url(
        json!({"iss": issuer, "sub": subject, "aud": audience, "iat": now_unix, "nbf": now_unix, "exp": now_unix + 3600})
            .to_string()
            .as_bytes(),
    );
    format!("{header}.{claims}.{}", b64url(b"not-verified"))
}
