//! `BankClient`: one bank's system integration — a single-tenant app with a rotating client secret
//! and the `System` role on the platform's API, published in the bank-clients registry.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{Duration, Overlap, cel_seconds};
use super::{Conditions, LocalRef, OBJECT_NAME_PATTERN, Text};

/// The shape of a BankId: lowercase letters, digits and '-', as used in resource names and registries.
pub const BANK_ID_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// A bank's system integration with the platform's API.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "entra.bookme.io",
    version = "v1alpha1",
    kind = "BankClient",
    namespaced,
    status = "BankClientStatus",
    shortname = "bc",
    category = "entra",
    doc = "A bank's system integration: a single-tenant app registration holding the API's System role, with a client secret in a Secret that is rotated well before it expires.",
    printcolumn(name = "Bank", type_ = "string", json_path = ".spec.bankId"),
    printcolumn(name = "Client ID", type_ = "string", json_path = ".status.clientId"),
    // A `date` column prints the time since the value, so a future expiry reads `<invalid>` on a
    // real API server: expiries are shown as the timestamp itself.
    printcolumn(
        name = "Secret Expires",
        type_ = "string",
        json_path = ".status.secretExpiresAt"
    ),
    printcolumn(
        name = "Next Rotation",
        type_ = "string",
        json_path = ".status.nextRotationAt",
        priority = "1"
    ),
    printcolumn(
        name = "Handover",
        type_ = "string",
        json_path = ".status.handover.state"
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
pub struct BankClientSpec {
    /// The bank's BankId, as the API's BankClients table knows it: lowercase letters, digits and '-'
    /// (e.g. `dnb` or `sparebank1-sr`). Immutable: a different bank is a different BankClient.
    #[schemars(length(min = 1, max = 63), regex(pattern = BANK_ID_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("bankId is immutable; create a new BankClient for another bank"))]
    pub bank_id: String,

    /// Name of the app registration in Entra. Default: `BookMe System Integration (<bankId>)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub display_name: Option<String>,

    /// The platform API the bank calls and the app role it is granted there.
    pub api: BankApiSpec,

    /// Where the client secret goes and how it is rotated.
    pub secret: BankSecretSpec,
}

/// The API a bank calls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BankApiSpec {
    /// The API's AppRegistration in this namespace (e.g. the API System Integration app).
    pub app_ref: LocalRef,
    /// The application permission (app role value) the bank gets. Default `System`.
    #[serde(default = "default_role")]
    #[schemars(length(min = 1, max = 120), regex(pattern = "^[^\\s.][^\\s]*$"))]
    pub role: Text,
}

fn default_role() -> Text {
    Text::interned("System")
}

fn bank_lifetime_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} <= {}",
        cel_seconds("self.lifetime"),
        super::duration::MAX_SECRET_LIFETIME_SECS
    ))
    .message("lifetime must be at most 730d (2 years, Entra's limit for a client secret)")
}

fn bank_renew_before_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} < {}",
        cel_seconds("self.renewBefore"),
        cel_seconds("self.lifetime")
    ))
    .message("renewBefore must be shorter than lifetime, or the secret would be rotated as soon as it is created")
}

/// The bank's client secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = bank_lifetime_rule())]
#[x_kube(validation = bank_renew_before_rule())]
#[x_kube(validation = super::appregistration::lifetime_floor_rule())]
#[x_kube(validation = super::appregistration::use_floor_rule())]
pub struct BankSecretSpec {
    /// Name of the Kubernetes Secret (in this namespace) that receives the credential, in the keys
    /// the Azure SDKs read (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, ...).
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: Text,
    /// How long each secret is valid. Default `730d` (2 years, Entra's maximum).
    #[serde(default = "default_lifetime")]
    pub lifetime: Duration,
    /// How long before expiry a new secret is issued. Default `60d`.
    #[serde(default = "default_renew_before")]
    pub renew_before: Duration,
    /// How long the previous secret stays valid after a rotation. Default `UntilExpiry`: the bank
    /// switches on its own schedule.
    #[serde(default = "default_overlap")]
    pub overlap: Overlap,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(730 * 86_400)
}

fn default_renew_before() -> Duration {
    Duration::from_secs(60 * 86_400)
}

fn default_overlap() -> Overlap {
    Overlap::UntilExpiry
}

/// Observed state of a BankClient.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BankClientStatus {
    /// Ready, with reasons such as WaitingForReference, Conflict or the child's reason.
    #[serde(default)]
    pub conditions: Conditions,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The bank's application (client) ID — the `azp` claim of its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Text>,
    /// The child AppRegistration that holds the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_registration_name: Option<String>,
    /// The Secret holding the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<Text>,
    /// When the current secret expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_expires_at: Option<Text>,
    /// When the next rotation is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<Text>,
    /// The app role granted on the API, and whether the assignment exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_assignment: Option<RoleAssignmentStatus>,
    /// A secret handover in progress: after a rotation the previous secret stays valid for a
    /// while, and the bank switches to the new one. Absent when no previous secret is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Box<HandoverStatus>>,
    /// The value of the `entra.bookme.io/handover-confirmed` annotation when it names another
    /// key ID than the current secret's (a stale confirmation, ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_confirmation: Option<String>,
}

/// Where a handover stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HandoverState {
    /// The bank has not confirmed that it uses the new secret; the previous one is revoked at
    /// `previousValidUntil`.
    #[default]
    AwaitingConfirmation,
    /// The bank confirmed; the previous secret is revoked after the confirmation delay.
    Confirmed,
}

/// A secret handover: a new secret is in the Secret, the previous one still works until
/// `previousValidUntil`. Never holds a secret value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandoverStatus {
    /// `AwaitingConfirmation` or `Confirmed`.
    pub state: HandoverState,
    /// Key ID of the new secret (the Secret's `keyId`). The bank confirms with
    /// `kubectl annotate bankclient <name> entra.bookme.io/handover-confirmed=<newKeyId>`.
    pub new_key_id: String,
    /// Key IDs of the previous secrets still valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_key_ids: Vec<String>,
    /// When the new secret was issued (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// When the (first) previous secret is revoked (RFC 3339).
    pub previous_valid_until: String,
    /// Whether the bank confirmed the switch to the new secret.
    pub confirmed: bool,
    /// When the operator saw the confirmation (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    /// When the handover notification (`--handover-webhook-url`) was delivered (RFC 3339); it is
    /// sent once per handover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<String>,
}

/// A granted application permission.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentStatus {
    /// The role value, e.g. `System`.
    pub role: Text,
    /// The API's application ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_app_id: Option<Text>,
    /// Whether the assignment exists in Entra (admin consent granted).
    pub granted: bool,
}
