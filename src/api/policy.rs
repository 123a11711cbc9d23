//! `EntraPolicy`: the cluster administrator's bounds on what a namespace may make the operator do
//! with its Graph identity — which permissions of which APIs may be granted with admin consent, and
//! which namespaces may adopt existing applications.
//!
//! Cluster-scoped on purpose: a namespace's own users must not be able to widen what their namespace
//! may do, and namespace-scoped objects are writable by exactly those users. See `SECURITY.md`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::appregistration::{Guid, WellKnownApi};
use super::{GUID_PATTERN, OBJECT_NAME_PATTERN};

/// Bounds on admin consent and adoption, per namespace. Several policies add up; a `Deny` rule of
/// any policy wins over every `Allow`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "entra.bookme.io",
    version = "v1alpha1",
    kind = "EntraPolicy",
    shortname = "entrapolicy",
    category = "entra",
    doc = "Which permissions entra-operator may grant with admin consent, and which applications it may adopt, for which namespaces. Cluster-scoped: owned by the cluster administrator.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EntraPolicySpec {
    /// Rules for `grantAdminConsent`. Without any rule the built-in defaults apply: roles and scopes
    /// of APIs declared in the same namespace, and Microsoft Graph's sign-in scopes (`User.Read`,
    /// `openid`, `profile`, `email`, `offline_access`), may be granted; nothing else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))").message("consent rule names must be unique"))]
    pub consent: Vec<ConsentRule>,

    /// Rules for `spec.adopt`. Without a rule allowing it, no namespace may adopt an application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))").message("adoption rule names must be unique"))]
    pub adoption: Vec<AdoptionRule>,
}

/// Whether a matching rule allows or refuses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Effect {
    /// The permission may be granted (unless a `Deny` rule matches too).
    #[default]
    Allow,
    /// The permission is never granted, whatever else allows it (the defaults included).
    Deny,
}

/// Which namespaces a rule is for: those named, and those whose labels match the selector. Both
/// empty means every namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMatch {
    /// Namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 63)))]
    pub names: Vec<String>,
    /// A label selector on the Namespace objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The API whose permissions a rule is about: exactly one of the three.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.wellKnownApi) ? 1 : 0) + (has(self.appId) ? 1 : 0) + (has(self.sameNamespace) && self.sameNamespace ? 1 : 0) == 1").message("name the API with exactly one of wellKnownApi, appId or sameNamespace: true"))]
pub struct ApiMatch {
    /// A well-known Microsoft API, e.g. `MicrosoftGraph`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub well_known_api: Option<WellKnownApi>,
    /// The API's application (client) ID: an API outside the cluster, or one another namespace
    /// declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36), regex(pattern = GUID_PATTERN))]
    pub app_id: Option<Guid>,
    /// Every API declared by an AppRegistration in the requesting namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_namespace: Option<bool>,
}

/// One consent rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRule {
    /// Named in the condition of a grant this rule refuses.
    #[schemars(length(min = 1, max = 63), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    /// `Allow` (default) or `Deny`.
    #[serde(default)]
    pub effect: Effect,
    /// The namespaces the rule is for (default: all).
    #[serde(default)]
    pub namespaces: NamespaceMatch,
    /// The API.
    pub api: ApiMatch,
    /// Application permissions (app roles) by value or ID; `*` matches every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 400), inner(length(max = 120)))]
    pub application: Vec<String>,
    /// Delegated permissions (scopes) by value or ID; `*` matches every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 400), inner(length(max = 120)))]
    pub delegated: Vec<String>,
}

/// One adoption rule: the namespaces may adopt the listed applications (or any, when none is
/// listed). An application that carries another resource's identity is never adopted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionRule {
    /// Named in conditions.
    #[schemars(length(min = 1, max = 63), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
    /// The namespaces the rule is for (default: all).
    #[serde(default)]
    pub namespaces: NamespaceMatch,
    /// Application (client) IDs that may be adopted; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 36), regex(pattern = GUID_PATTERN)))]
    pub app_ids: Vec<Guid>,
}
