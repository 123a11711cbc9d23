//! `TenantMapping`: a customer's Entra tenant, the BankIds it may act for, and its consent state.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bankclient::BANK_ID_PATTERN;
use super::duration::Duration;
use super::{Conditions, GUID_PATTERN, LocalRef};

/// A customer tenant mapped to the BankIds it may act for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "entra.bookme.io",
    version = "v1alpha1",
    kind = "TenantMapping",
    namespaced,
    status = "TenantMappingStatus",
    shortname = "tm",
    category = "entra",
    doc = "A customer Entra tenant, the BankIds it may act for, and whether its administrator has consented to the platform's multi-tenant apps.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantId"),
    printcolumn(
        name = "Tenant Name",
        type_ = "string",
        json_path = ".status.tenant.displayName"
    ),
    printcolumn(name = "Banks", type_ = "string", json_path = ".spec.bankIds"),
    printcolumn(
        name = "Consent",
        type_ = "string",
        json_path = ".status.consentSummary"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.defaultBankId) || self.bankIds.exists(b, b == self.defaultBankId)").message("defaultBankId must be one of bankIds"))]
pub struct TenantMappingSpec {
    /// The customer's Entra tenant ID (a GUID; the `tid` claim of its tokens). Immutable.
    #[schemars(length(max = 36), regex(pattern = GUID_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenantId is immutable; create a new TenantMapping for another tenant"))]
    pub tenant_id: String,

    /// The BankIds users of this tenant may act for (at least one).
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self.all(b, self.exists_one(c, c == b))").message("bankIds must not repeat"))]
    pub bank_ids: Vec<BankId>,

    /// The BankId used when a request does not name one. Must be one of bankIds; default the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = BANK_ID_PATTERN))]
    pub default_bank_id: Option<String>,

    /// Which multi-tenant apps must be consented in this tenant, and how to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<TenantConsentSpec>,
}

/// A BankId.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(transparent)]
pub struct BankId(
    #[schemars(length(min = 1, max = 63), regex(pattern = BANK_ID_PATTERN))] pub String,
);

/// Consent checks for a customer tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantConsentSpec {
    /// Multi-tenant apps (AppRegistrations in this namespace) whose consent is checked in the tenant.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub apps: Vec<ConsentApp>,
    /// The app whose own credential is used for the probe token request. Default: each listed app
    /// probes with its own first client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ConsentProbe>,
    /// How often consent is rechecked, e.g. `1h` (default). The `entra.bookme.io/recheck`
    /// annotation forces a recheck at once.
    #[serde(default = "default_interval")]
    pub interval: Duration,
}

/// An app whose consent is checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentApp {
    /// The multi-tenant AppRegistration in this namespace.
    pub app_ref: LocalRef,
}

/// The credential used to probe consent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentProbe {
    /// An AppRegistration in this namespace with a client secret.
    pub app_ref: LocalRef,
}

fn default_interval() -> Duration {
    Duration::from_secs(3600)
}

/// Observed state of a TenantMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantMappingStatus {
    /// Ready (reasons: TenantNotFound, NotConsented, Conflict, ...) and ConsentGranted.
    #[serde(default)]
    pub conditions: Conditions,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The tenant as Entra describes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantInfo>,
    /// Per-app consent, one entry per app in spec.consent.apps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppConsentStatus>,
    /// `<consented>/<apps>` consented, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_summary: Option<String>,
    /// When consent was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
    /// The `entra.bookme.io/recheck` annotation value last honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck_token: Option<String>,
}

/// A tenant's public information.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantInfo {
    /// The organization's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The tenant's default domain, e.g. `contoso.onmicrosoft.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_domain_name: Option<String>,
}

/// Consent of one app in the customer tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppConsentStatus {
    /// The AppRegistration's name.
    pub name: String,
    /// Its application ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// `Consented`, `NotConsented` or `Unknown`.
    pub state: TenantConsentState,
    /// Where the tenant's administrator consents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_consent_url: Option<String>,
    /// Application permissions granted in the tenant (the `roles` of a probe token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Why the state is what it is, e.g. the AADSTS error of the probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Consent of an app in a customer tenant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TenantConsentState {
    /// A token was issued in the tenant: its admin consented.
    Consented,
    /// Entra answered AADSTS700016: the app has no service principal there.
    NotConsented,
    /// Not checked yet, or no credential to probe with.
    #[default]
    Unknown,
}
