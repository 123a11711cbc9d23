//! The custom resources of `entra.bookme.io/v1alpha1`, one module per kind, and the types they share.
//!
//! Doc comments on fields are what `kubectl explain` prints: they are written for an operator on call.
//! Validation that can happen at `kubectl apply` lives here, as schema constraints and CEL rules.

// kube's CustomResource derive repeats the spec's serde attributes on the generated root type,
// which clippy reports as duplicated attributes in our source lines.
#[allow(clippy::duplicated_attributes)]
pub mod appregistration;
#[allow(clippy::duplicated_attributes)]
pub mod bankclient;
pub mod duration;
#[allow(clippy::duplicated_attributes)]
pub mod naaintegration;
#[allow(clippy::duplicated_attributes)]
pub mod policy;
#[allow(clippy::duplicated_attributes)]
pub mod tenantmapping;
pub mod text;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use appregistration::{AppRegistration, AppRegistrationSpec, AppRegistrationStatus};
pub use bankclient::{BankClient, BankClientSpec, BankClientStatus};
pub use duration::{Duration, DurationError, Overlap};
pub use naaintegration::{NaaIntegration, NaaIntegrationSpec, NaaIntegrationStatus};
pub use policy::{EntraPolicy, EntraPolicySpec};
pub use tenantmapping::{TenantMapping, TenantMappingSpec, TenantMappingStatus};
pub use text::Text;

/// The API group of the five kinds.
pub const GROUP: &str = "entra.bookme.io";

/// A GUID as Entra writes them (tenant IDs, application/client IDs, object IDs).
pub const GUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A Kubernetes object name (DNS-1123 subdomain), for Secrets, ConfigMaps and references.
pub const OBJECT_NAME_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Annotation whose new value forces a credential rotation.
pub const ROTATE_ANNOTATION: &str = "entra.bookme.io/rotate";
/// Annotation naming the key ID of the current client secret once its consumers use it: the
/// previous secrets (in overlap after a rotation) are then revoked after a short safety delay
/// instead of at the end of their overlap. On a BankClient it is copied to its child
/// AppRegistration, whose credential state machine acts on it.
pub const HANDOVER_CONFIRMED_ANNOTATION: &str = "entra.bookme.io/handover-confirmed";
/// Annotation whose new value forces a consent recheck of a TenantMapping.
pub const RECHECK_ANNOTATION: &str = "entra.bookme.io/recheck";

/// Condition types used across kinds.
pub mod condition {
    /// Everything declared is in place in Entra and in the cluster.
    pub const READY: &str = "Ready";
    /// The Entra objects match the spec (last write succeeded).
    pub const SYNCED: &str = "Synced";
    /// Every declared credential exists, is written to its Secret, and is not due.
    pub const CREDENTIALS_READY: &str = "CredentialsReady";
    /// Every required permission is consented.
    pub const CONSENT_GRANTED: &str = "ConsentGranted";
    /// kstatus: work is in flight (True) — derived from `Ready`, see `controllers::kstatus`.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: nothing changes until a human acts (True) — derived from `Ready`.
    pub const STALLED: &str = "Stalled";
    /// The registry database holds the resource's rows (only with `--registry-database-url`).
    pub const REGISTRY_SYNCED: &str = "RegistrySynced";
}

/// A reference to another resource of this API in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// Name of the referenced resource, in the same namespace as this one.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: Text,
}

/// One condition of a resource: Kubernetes' `metav1.Condition` (the same fields, JSON and
/// schema), with its texts kept once for all stored objects that repeat them ([`Text`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: Text,
    /// `True`, `False` or `Unknown`.
    pub status: Text,
    /// CamelCase reason for the last transition.
    pub reason: Text,
    /// Human-readable detail of the last transition.
    pub message: Text,
    /// The `.metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed.
    pub last_transition_time: Time,
}

impl JsonSchema for Condition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition::json_schema(generator)
    }
}

/// The conditions of a resource, kept as a list keyed by `type` so server-side apply merges them.
/// Equal when they hold the same conditions in any order: the list is a map (the API server keeps
/// the order of the first apply, the operator computes them in its own).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[serde(transparent)]
pub struct Conditions(
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub Vec<Condition>,
);

impl PartialEq for Conditions {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|c| other.get(&c.type_).is_some_and(|o| o == c))
    }
}

impl Conditions {
    /// The conditions sorted by type (a canonical form of the map, for hashing).
    pub fn sorted(&self) -> Conditions {
        let mut list = self.0.clone();
        list.sort_by(|a, b| a.type_.cmp(&b.type_));
        Conditions(list)
    }

    /// The condition of the given type, if present.
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.get(type_).is_some_and(|c| c.status == "True")
    }
}

/// Every CRD this operator serves, in a stable order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        AppRegistration::crd(),
        BankClient::crd(),
        TenantMapping::crd(),
        NaaIntegration::crd(),
        EntraPolicy::crd(),
    ]
}

/// The file name under `crds/` of each CRD, matching [`crds`].
pub fn crd_file_name(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD rendered as the YAML document checked in under `crds/`.
pub fn crd_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// All CRDs as one multi-document YAML stream (what `entra-operator crd` prints).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}
