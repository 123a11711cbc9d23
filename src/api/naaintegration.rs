//! `NaaIntegration`: Nested App Authentication for an Outlook add-in — a Web API exposing a scope and
//! an SPA app with `brk-multihub://` redirect URIs, plus a ConfigMap of the add-in's settings.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, GUID_PATTERN, OBJECT_NAME_PATTERN};

/// A host name with an optional port and no scheme or path, e.g. `addin.bookme.io` or `addin.bookme.io:8443`.
pub const HOST_PORT_PATTERN: &str = "^([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?\\.)+[a-zA-Z]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(:[0-9]{1,5})?$";

/// Nested App Authentication for an Outlook add-in.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "entra.bookme.io",
    version = "v1alpha1",
    kind = "NaaIntegration",
    namespaced,
    status = "NaaIntegrationStatus",
    shortname = "naa",
    category = "entra",
    doc = "Nested App Authentication for an Outlook add-in: a multi-tenant Web API exposing a scope, an SPA app with brk-multihub redirect URIs pre-authorized on it, and a ConfigMap with the settings an administrator enters in the add-in.",
    printcolumn(name = "Scope", type_ = "string", json_path = ".spec.scope"),
    printcolumn(name = "App ID", type_ = "string", json_path = ".status.appId"),
    printcolumn(
        name = "Web API App ID",
        type_ = "string",
        json_path = ".status.webApiAppId"
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
pub struct NaaIntegrationSpec {
    /// Base display name; the apps are named `<displayName> Web API` and `<displayName>`.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,

    /// The delegated scope the Web API exposes, e.g. `PexipScheduling.Access`. No spaces.
    #[schemars(length(min = 1, max = 120), regex(pattern = "^[^\\s.][^\\s]*$"))]
    pub scope: String,

    /// Host names (optionally with port) of the add-in servers, without scheme or path, e.g.
    /// `addin.bookme.io`. Each becomes an SPA redirect URI `brk-multihub://<host>`.
    // At most 50: the pairwise uniqueness rule's estimated cost grows with the square of the
    // count, and at 100 it is over the API server's per-call runtime limit.
    #[schemars(length(min = 1, max = 50))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g == f))").message("addinServerFqdns must not repeat"))]
    pub addin_server_fqdns: Vec<AddinServerFqdn>,

    /// Customer tenant IDs whose OIDC metadata URLs go into the ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // At most 200: at 500 the pairwise uniqueness rule's estimated cost (about 4.75M) is far over
    // the API server's per-call runtime limit of 1M; at 200 it is about 0.76M.
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g == f))").message("tenants must not repeat"))]
    pub tenants: Vec<TenantIdEntry>,

    /// Who may sign in: `AzureADMultipleOrgs` (default) or `AzureADMyOrg`.
    #[serde(default)]
    pub sign_in_audience: NaaAudience,

    /// Pre-authorize the SPA app on the Web API's scope, so users see no consent prompt for it. Default true.
    #[serde(default = "default_true")]
    pub pre_authorize: bool,

    /// Name of the ConfigMap (in this namespace) that receives the add-in's settings. Default `<name>-naa`.
    /// Not `bank-clients` or `tenant-mappings` (the registries' names); an existing ConfigMap that is
    /// not this resource's is left untouched (reason `SecretConflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self != 'bank-clients' && self != 'tenant-mappings'").message("configMapName must not be a registry's name (bank-clients, tenant-mappings)"))]
    pub config_map_name: Option<String>,
}

/// An add-in server host name, with optional port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct AddinServerFqdn(
    #[schemars(length(min = 1, max = 253), regex(pattern = HOST_PORT_PATTERN))] pub String,
);

/// A tenant ID.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct TenantIdEntry(#[schemars(length(max = 36), regex(pattern = GUID_PATTERN))] pub String);

/// Sign-in audience of a NAA integration.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NaaAudience {
    /// Any organizational directory.
    #[default]
    AzureADMultipleOrgs,
    /// This directory only.
    AzureADMyOrg,
}

fn default_true() -> bool {
    true
}

/// Observed state of a NaaIntegration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NaaIntegrationStatus {
    /// Ready, aggregated from both child AppRegistrations.
    #[serde(default)]
    pub conditions: Conditions,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The add-in app's (SPA) application (client) ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The Web API's application ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_api_app_id: Option<String>,
    /// The Web API's scope as a full URI, `api://<webApiAppId>/<scope>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_uri: Option<String>,
    /// Authority for any organizational directory, e.g. `https://login.microsoftonline.com/organizations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_url: Option<String>,
    /// OIDC metadata URL for each listed tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<NaaTenantStatus>,
    /// The ConfigMap holding these settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
}

/// Per-tenant settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NaaTenantStatus {
    /// Tenant ID.
    pub tenant_id: String,
    /// `<authority>/<tenant>/v2.0/.well-known/openid-configuration`.
    pub oidc_metadata_url: String,
}
