//! Authentication (bearer tokens: the admin token, ServiceAccount tokens from TokenRequest) and
//! RBAC authorization (Roles, ClusterRoles and their bindings), as kube-apiserver runs them with
//! `--authorization-mode=RBAC`. Sources are listed in `FIDELITY.md`.

use serde_json::Value;

use crate::resources::status_error;

/// Who makes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The admin of the emulator's kubeconfig (`system:masters`: every request is allowed).
    pub fn admin() -> UserInfo {
        UserInfo {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The user a ServiceAccount token authenticates as.
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// What a resource request asks to do (`authorizer.AttributesRecord`).
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(want)))
}

/// `RuleAllows` of `plugin/pkg/auth/authorizer/rbac/rbac.go` for resource requests.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verb_ok = has(&rule["verbs"], "*") || has(&rule["verbs"], a.verb);
    let group_ok = has(&rule["apiGroups"], "*") || has(&rule["apiGroups"], a.group);
    let combined = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let resource_ok = rule["resources"].as_array().is_some_and(|rs| {
        rs.iter().filter_map(|r| r.as_str()).any(|r| {
            r == "*"
                || r == combined
                || a.subresource
                    .is_some_and(|s| r.strip_prefix("*/") == Some(s))
        })
    });
    let names_ok = match rule["resourceNames"].as_array() {
        None => true,
        Some(n) if n.is_empty() => true,
        Some(n) => a
            .name
            .is_some_and(|name| n.iter().any(|v| v.as_str() == Some(name))),
    };
    verb_ok && group_ok && resource_ok && names_ok
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => user.name == name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// The RBAC objects the authorizer reads.
pub struct Policy<'a> {
    pub cluster_roles: &'a [std::sync::Arc<Value>],
    pub cluster_role_bindings: &'a [std::sync::Arc<Value>],
    pub roles: &'a [std::sync::Arc<Value>],
    pub role_bindings: &'a [std::sync::Arc<Value>],
}

impl Policy<'_> {
    fn role_rules(&self, role_ref: &Value, binding_ns: Option<&str>) -> Vec<Value> {
        let name = role_ref["name"].as_str().unwrap_or_default();
        let found = match role_ref["kind"].as_str() {
            Some("ClusterRole") => self
                .cluster_roles
                .iter()
                .find(|r| r["metadata"]["name"] == name),
            Some("Role") => self.roles.iter().find(|r| {
                r["metadata"]["name"] == name && r["metadata"]["namespace"].as_str() == binding_ns
            }),
            _ => None,
        };
        found
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Whether RBAC allows the request: ClusterRoleBindings everywhere, RoleBindings in their
    /// namespace (`VisitRulesFor`).
    pub fn allows(&self, user: &UserInfo, a: &Attributes) -> bool {
        if user.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        for b in self.cluster_role_bindings {
            if b["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, "")))
                && self
                    .role_rules(&b["roleRef"], None)
                    .iter()
                    .any(|r| rule_allows(r, a))
            {
                return true;
            }
        }
        if let Some(ns) = a.namespace {
            for b in self.role_bindings {
                if b["metadata"]["namespace"].as_str() != Some(ns) {
                    continue;
                }
                if b["subjects"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ns)))
                    && self
                        .role_rules(&b["roleRef"], Some(ns))
                        .iter()
                        .any(|r| rule_allows(r, a))
                {
                    return true;
                }
            }
        }
        false
    }
}

/// The 403 `Status` kube-apiserver writes when authorization denies a resource request
/// (`responsewriters.ForbiddenStatusError` + `forbiddenMessage`).
pub fn forbidden(user: &UserInfo, a: &Attributes) -> (u16, Value) {
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let reason = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    );
    let qualified = if a.group.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let message = match a.name {
        Some(n) if !n.is_empty() => format!("{qualified} \"{n}\" is forbidden: {reason}"),
        _ => format!("{qualified} is forbidden: {reason}"),
    };
    let mut details = serde_json::json!({"group": a.group, "kind": a.resource});
    if let Some(n) = a.name.filter(|n| !n.is_empty()) {
        details["name"] = Value::String(n.to_string());
    }
    (403, status_error(403, "Forbidden", &message, Some(details)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: "entra.bookme.io",
            resource,
            subresource: sub,
            namespace: Some("ns"),
            name,
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let rule = json!({"apiGroups": ["entra.bookme.io"], "resources": ["appregistrations", "bankclients/status"], "verbs": ["get", "patch"]});
        assert!(rule_allows(
            &rule,
            &attrs("get", "appregistrations", None, Some("a"))
        ));
        assert!(!rule_allows(
            &rule,
            &attrs("delete", "appregistrations", None, Some("a"))
        ));
        assert!(
            !rule_allows(
                &rule,
                &attrs("patch", "appregistrations", Some("status"), Some("a"))
            ),
            "a resource does not grant its subresources"
        );
        assert!(rule_allows(
            &rule,
            &attrs("patch", "bankclients", Some("status"), Some("b"))
        ));
        let star = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(
            &star,
            &attrs("update", "tenantmappings", Some("status"), None)
        ));
        assert!(!rule_allows(
            &star,
            &attrs("update", "tenantmappings", None, None)
        ));
        let named = json!({"apiGroups": ["entra.bookme.io"], "resources": ["appregistrations"], "verbs": ["get", "create"], "resourceNames": ["a"]});
        assert!(rule_allows(
            &named,
            &attrs("get", "appregistrations", None, Some("a"))
        ));
        assert!(!rule_allows(
            &named,
            &attrs("get", "appregistrations", None, Some("b"))
        ));
        assert!(
            !rule_allows(&named, &attrs("create", "appregistrations", None, None)),
            "resourceNames cannot restrict create"
        );
    }

    #[test]
    fn the_403_reads_like_the_api_servers() {
        let user = UserInfo::service_account("ops", "entra-operator");
        let (code, body) = forbidden(
            &user,
            &attrs("patch", "appregistrations", Some("status"), Some("a")),
        );
        assert_eq!(code, 403);
        assert_eq!(
            body["message"],
            "appregistrations.entra.bookme.io \"a\" is forbidden: User \"system:serviceaccount:ops:entra-operator\" cannot patch resource \"appregistrations/status\" in API group \"entra.bookme.io\" in the namespace \"ns\""
        );
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(
            body["details"],
            json!({"name": "a", "group": "entra.bookme.io", "kind": "appregistrations"})
        );
    }
}
