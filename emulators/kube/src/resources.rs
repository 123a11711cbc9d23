//! The served resource types: the built-in kinds and those that CRDs define.

use std::sync::Arc;

use serde_json::{Value, json};

/// `group/plural`, e.g. `entra.bookme.io/bankclients` or `/configmaps` for the core group.
pub type ResKey = String;

pub fn res_key(group: &str, plural: &str) -> ResKey {
    format!("{group}/{plural}")
}

#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    pub storage_version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// The CRD document, for custom resources.
    pub crd: Option<Arc<Value>>,
}

impl ResourceType {
    pub fn key(&self) -> String {
        res_key(&self.group, &self.plural)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// Whether `metadata.generation` is maintained (custom resources and CRDs).
    pub fn has_generation(&self) -> bool {
        self.is_custom() || self.plural == "customresourcedefinitions"
    }

    /// The schema of a version (custom resources only).
    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.crd
            .as_deref()
            .and_then(|c| crate::validation::schema_for_version(c, version))
    }

    pub fn crd_version(&self, version: &str) -> Option<&Value> {
        self.crd.as_deref().and_then(|c| {
            c["spec"]["versions"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == version))
        })
    }

    pub fn group_qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// From a CRD document.
    pub fn from_crd(crd: &Value) -> Option<ResourceType> {
        let spec = &crd["spec"];
        let names = &spec["names"];
        let plural = names["plural"].as_str()?.to_string();
        let kind = names["kind"].as_str()?.to_string();
        let versions_doc = spec["versions"].as_array()?;
        let mut versions: Vec<String> = versions_doc
            .iter()
            .filter(|v| v["served"] != false)
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        let storage_version = versions_doc
            .iter()
            .find(|v| v["storage"] == true)
            .or(versions_doc.first())
            .and_then(|v| v["name"].as_str())
            .unwrap_or_default()
            .to_string();
        let status_subresource = versions_doc
            .iter()
            .any(|v| v["subresources"]["status"].is_object());
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(ResourceType {
            group: spec["group"].as_str()?.to_string(),
            versions,
            storage_version,
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            plural,
            kind,
            namespaced: spec["scope"] != "Cluster",
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource,
            crd: Some(Arc::new(crd.clone())),
        })
    }
}

/// Kubernetes version ordering: GA > beta > alpha, then by number.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        versions: vec![version.into()],
        storage_version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: status,
        crd: None,
    }
}

pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "secrets", "Secret", true, &[], false),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        builtin("", "v1", "events", "Event", true, &["ev"], false),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
    ]
}

/// A `Status` error body.
pub fn status_error(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}
