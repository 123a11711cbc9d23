//! Start-up configuration and the run-time switches (throttling, replication delay, faults, consent,
//! denied calls, app management policy). Switches are serde types so that the control API and the
//! in-process API share one shape.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the emulator starts. `Default` gives a home tenant with the operator's app, loopback, a random
/// port and no realism switches on.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where to write the CA certificate (PEM). Default: a file in the system temp directory.
    pub ca_out: Option<PathBuf>,
    /// The home tenant (where the operator's app lives).
    pub home_tenant: TenantSpec,
    /// Customer tenants created at start.
    pub customer_tenants: Vec<TenantSpec>,
    /// The operator's own identity, pre-created in the home tenant.
    pub operator: OperatorSpec,
    /// Extra DNS names or IPs for the server certificate (besides localhost, 127.0.0.1, ::1).
    pub extra_server_names: Vec<String>,
    /// Initial switches.
    pub switches: Switches,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            ca_out: None,
            home_tenant: TenantSpec::new("contoso"),
            customer_tenants: Vec::new(),
            operator: OperatorSpec::default(),
            extra_server_names: Vec::new(),
            switches: Switches::default(),
        }
    }
}

/// A user to create (control API `POST /_emulator/users`, or `EntraEmulator::add_user`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// e.g. `alice@contoso.onmicrosoft.com`; must contain `@`, unique in the tenant.
    pub user_principal_name: String,
    /// Defaults to the part of the UPN before `@`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Object id; a new GUID when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The tenant; the home tenant when absent.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

impl UserSpec {
    pub fn new(user_principal_name: &str) -> Self {
        Self {
            user_principal_name: user_principal_name.to_string(),
            ..Self::default()
        }
    }
}

/// A tenant to create. `id` defaults to a fixed UUIDv5 of the name, so that restarts of the
/// standalone binary keep tenant ids stable.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Short name: the tenant's initial domain is `<name>.onmicrosoft.com`.
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Number of users; picks the read budget of the throttling limits (<50, 50–500, >500).
    #[serde(default)]
    pub user_count: u32,
    /// Additional verified domains (for `https://` identifier URIs).
    #[serde(default)]
    pub verified_domains: Vec<String>,
}

impl TenantSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            id: None,
            display_name: None,
            user_count: 10,
            verified_domains: Vec::new(),
        }
    }

    pub(crate) fn tenant_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, self.name.as_bytes()).to_string()
        })
    }
}

/// The operator's identity in the home tenant: an app with a known client id and secret, a
/// certificate credential, a service principal, and Graph app roles granted.
#[derive(Clone, Debug)]
pub struct OperatorSpec {
    pub display_name: String,
    /// Fixed client id (default: a UUIDv5 so restarts keep it).
    pub client_id: Option<String>,
    /// Fixed client secret (default: generated at start).
    pub client_secret: Option<String>,
}

impl Default for OperatorSpec {
    fn default() -> Self {
        Self {
            display_name: "entra-operator".into(),
            client_id: None,
            client_secret: None,
        }
    }
}

/// Run-time switches; every field can be changed while the emulator runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Switches {
    pub throttling: ThrottleMode,
    /// A newly created (or restored) object stays invisible to reads for this long.
    pub replication_delay_ms: u64,
    /// A newly added password or key is rejected by the token endpoint for this long (Entra: 4–18 s).
    pub credential_delay_ms: u64,
    pub faults: Vec<FaultRule>,
    /// When true, the admin-consent endpoint approves (the customer's admin clicks Accept).
    pub consent_approve: bool,
    /// Calls answered with 403 Authorization_RequestDenied.
    pub deny: Vec<DenyRule>,
    pub app_policy: AppPolicy,
    /// Apps (by appId) that use the Live SDK: only they are capped at two passwords
    /// (`TooManyAppPasswords`). Graph has no property for it, so a test sets it here.
    pub live_sdk_app_ids: Vec<String>,
    /// Check every Graph request body and response body against Microsoft's published v1.0
    /// schema (`schema/schema-subset.xml`): unknown properties (also on open types), wrong types,
    /// null in non-nullable properties. A request violation is answered 400
    /// `SchemaContractViolation`; every violation is recorded (`/_emulator/contract`).
    pub schema_contract: bool,
}

/// Identity throttling: off, Entra's numbers, or Entra's numbers scaled.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum ThrottleMode {
    #[default]
    Off,
    Real,
    /// Budgets multiplied by `limit_factor` (at least 1), windows by `window_factor`.
    #[serde(rename_all = "camelCase")]
    Scaled {
        limit_factor: f64,
        #[serde(default = "one")]
        window_factor: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// One fault-injection rule. Matches requests by method (optional) and path template (optional,
/// exact, e.g. `/v1.0/applications/{id}/addPassword`); fires with probability `rate`, at most `times`
/// times if given.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_template: Option<String>,
    #[serde(default = "one")]
    pub rate: f64,
    #[serde(default)]
    pub times: Option<u32>,
    pub kind: FaultKind,
}

impl FaultRule {
    /// A rule that always fires on `method` + `template`.
    pub fn new(method: &str, template: &str, kind: FaultKind) -> Self {
        Self {
            method: Some(method.to_string()),
            path_template: Some(template.to_string()),
            rate: 1.0,
            times: None,
            kind,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FaultKind {
    /// Answer with this status (and Graph's error body) without doing anything.
    Status { status: u16 },
    /// Close the connection without answering, without doing anything.
    Reset,
    /// Do the write, then answer with this status: the caller can't know it happened.
    CommitThenStatus { status: u16 },
    /// Do the write, then close the connection without answering.
    CommitThenReset,
    /// Answer normally after a delay.
    Delay { ms: u64 },
}

/// Calls to refuse with 403, by method (optional) and path template.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DenyRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path_template: String,
}

/// Tenant-wide app management policy (applies to every tenant of the emulator).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AppPolicy {
    /// Maximum password lifetime in seconds; longer requests fail with
    /// `CredentialInvalidLifetimeAsPerAppPolicy`.
    pub max_password_lifetime_secs: Option<u64>,
    /// Forbid password credentials (`CredentialTypeNotAllowedAsPerAppPolicy`).
    pub passwords_forbidden: bool,
}

/// Partial update of the switches, as the control API's PATCH takes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SwitchesPatch {
    pub throttling: Option<ThrottleMode>,
    pub replication_delay_ms: Option<u64>,
    pub credential_delay_ms: Option<u64>,
    pub faults: Option<Vec<FaultRule>>,
    pub consent_approve: Option<bool>,
    pub deny: Option<Vec<DenyRule>>,
    pub app_policy: Option<AppPolicy>,
    pub live_sdk_app_ids: Option<Vec<String>>,
    pub schema_contract: Option<bool>,
}

impl Switches {
    pub(crate) fn apply(&mut self, patch: SwitchesPatch) {
        if let Some(v) = patch.throttling {
            self.throttling = v;
        }
        if let Some(v) = patch.replication_delay_ms {
            self.replication_delay_ms = v;
        }
        if let Some(v) = patch.credential_delay_ms {
            self.credential_delay_ms = v;
        }
        if let Some(v) = patch.faults {
            self.faults = v;
        }
        if let Some(v) = patch.consent_approve {
            self.consent_approve = v;
        }
        if let Some(v) = patch.deny {
            self.deny = v;
        }
        if let Some(v) = patch.app_policy {
            self.app_policy = v;
        }
        if let Some(v) = patch.live_sdk_app_ids {
            self.live_sdk_app_ids = v;
        }
        if let Some(v) = patch.schema_contract {
            self.schema_contract = v;
        }
    }
}
