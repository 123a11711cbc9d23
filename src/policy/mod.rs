//! The cluster administrator's consent and adoption policy, evaluated (pure).
//!
//! Inputs: every `EntraPolicy` (cluster-scoped), the requesting namespace with its labels, and the
//! appIds the namespace's own AppRegistrations declare. Outputs: for each permission a grant would
//! give, allowed or refused with the rule that decided; for an adoption, the same.
//!
//! Order: a matching `Deny` rule refuses; else a matching `Allow` rule allows; else the built-in
//! defaults decide:
//! - roles and scopes of APIs declared in the same namespace are allowed (`default/same-namespace`);
//! - Microsoft Graph's sign-in scopes ([`GRAPH_SIGN_IN_SCOPES`]) are allowed (`default/graph-sign-in`);
//! - everything else is refused: any other Microsoft Graph permission (application permissions
//!   above all), and any permission of an API another namespace declares or the cluster does not
//!   know.
//!
//! Adoption has no default: only an adoption rule allows it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::policy::{ApiMatch, Effect, EntraPolicySpec, NamespaceMatch};

/// Microsoft Graph's appId.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Delegated Microsoft Graph permissions the defaults allow: signing a user in and reading their
/// own profile. None of them reaches beyond the signed-in user.
pub const GRAPH_SIGN_IN_SCOPES: &[&str] =
    &["User.Read", "openid", "profile", "email", "offline_access"];

/// Rule name of the same-namespace default.
pub const DEFAULT_SAME_NAMESPACE: &str = "default/same-namespace";
/// Rule name of the Microsoft Graph sign-in default.
pub const DEFAULT_GRAPH_SIGN_IN: &str = "default/graph-sign-in";
/// Rule name of the default refusal of Microsoft Graph permissions beyond sign-in.
pub const DEFAULT_NO_GRAPH: &str = "default/no-microsoft-graph";
/// Rule name of the default refusal of other namespaces' and foreign APIs.
pub const DEFAULT_NO_FOREIGN_API: &str = "default/no-foreign-api";
/// Rule name of the default refusal of adoption.
pub const DEFAULT_NO_ADOPTION: &str = "default/no-adoption";

/// The policies as the cluster holds them, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policies(pub Vec<(String, EntraPolicySpec)>);

/// The namespace a resource lives in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Everything the policy is decided from for one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyView {
    pub policies: Policies,
    pub namespace: NamespaceInfo,
    /// appIds declared by AppRegistrations in the namespace (their `status.appId`).
    pub same_namespace_app_ids: BTreeSet<String>,
}

/// Application (an app role) or delegated (a scope).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Application,
    Delegated,
}

/// One permission a grant would give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionRequest<'a> {
    pub resource_app_id: &'a str,
    /// The API was named by `appRef` (always the same namespace).
    pub by_app_ref: bool,
    pub value: &'a str,
    pub id: &'a str,
    pub kind: Kind,
}

/// What the policy decided, and which rule decided it (`<policy>/<rule>` or a `default/…` name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed { rule: String },
    Refused { rule: String },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    pub fn rule(&self) -> &str {
        match self {
            Decision::Allowed { rule } | Decision::Refused { rule } => rule,
        }
    }
}

impl PolicyView {
    /// Whether `request` may be granted with admin consent in this namespace.
    pub fn decide_grant(&self, request: &PermissionRequest<'_>) -> Decision {
        let same_namespace = request.by_app_ref
            || self
                .same_namespace_app_ids
                .contains(&request.resource_app_id.to_lowercase());
        let mut allowed_by = None;
        for (policy, spec) in &self.policies.0 {
            for rule in &spec.consent {
                if !namespace_matches(&rule.namespaces, &self.namespace)
                    || !api_matches(&rule.api, request.resource_app_id, same_namespace)
                {
                    continue;
                }
                let listed = match request.kind {
                    Kind::Application => &rule.application,
                    Kind::Delegated => &rule.delegated,
                };
                if !listed
                    .iter()
                    .any(|p| p == "*" || p == request.value || p.eq_ignore_ascii_case(request.id))
                {
                    continue;
                }
                let name = format!("{policy}/{}", rule.name);
                match rule.effect {
                    Effect::Deny => return Decision::Refused { rule: name },
                    Effect::Allow => {
                        allowed_by.get_or_insert(name);
                    }
                }
            }
        }
        if let Some(rule) = allowed_by {
            return Decision::Allowed { rule };
        }
        if same_namespace {
            Decision::Allowed {
                rule: DEFAULT_SAME_NAMESPACE.into(),
            }
        } else if request.resource_app_id == MICROSOFT_GRAPH_APP_ID {
            if request.kind == Kind::Delegated && GRAPH_SIGN_IN_SCOPES.contains(&request.value) {
                Decision::Allowed {
                    rule: DEFAULT_GRAPH_SIGN_IN.into(),
                }
            } else {
                Decision::Refused {
                    rule: DEFAULT_NO_GRAPH.into(),
                }
            }
        } else {
            Decision::Refused {
                rule: DEFAULT_NO_FOREIGN_API.into(),
            }
        }
    }

    /// Whether this namespace may adopt the application `app_id`.
    pub fn decide_adoption(&self, app_id: &str) -> Decision {
        for (policy, spec) in &self.policies.0 {
            for rule in &spec.adoption {
                if namespace_matches(&rule.namespaces, &self.namespace)
                    && (rule.app_ids.is_empty()
                        || rule.app_ids.iter().any(|a| a.eq_ignore_ascii_case(app_id)))
                {
                    return Decision::Allowed {
                        rule: format!("{policy}/{}", rule.name),
                    };
                }
            }
        }
        Decision::Refused {
            rule: DEFAULT_NO_ADOPTION.into(),
        }
    }

    /// Whether any rule selects namespaces by label (then the Namespace object must be read).
    pub fn needs_namespace_labels(policies: &Policies) -> bool {
        policies.0.iter().any(|(_, spec)| {
            spec.consent
                .iter()
                .map(|r| &r.namespaces)
                .chain(spec.adoption.iter().map(|r| &r.namespaces))
                .any(|n| n.selector.is_some())
        })
    }
}

fn api_matches(api: &ApiMatch, resource_app_id: &str, same_namespace: bool) -> bool {
    if let Some(well_known) = api.well_known_api {
        return well_known.app_id().eq_ignore_ascii_case(resource_app_id);
    }
    if let Some(app_id) = &api.app_id {
        return app_id.eq_ignore_ascii_case(resource_app_id);
    }
    api.same_namespace == Some(true) && same_namespace
}

/// Whether the rule's namespaces include `namespace` (both lists empty: every namespace).
pub fn namespace_matches(rule: &NamespaceMatch, namespace: &NamespaceInfo) -> bool {
    if rule.names.is_empty() && rule.selector.is_none() {
        return true;
    }
    rule.names.iter().any(|n| n == &namespace.name)
        || rule
            .selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &namespace.labels))
}

/// Kubernetes label selector semantics: every `matchLabels` entry and every expression must hold.
/// An empty selector matches everything.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An unknown operator selects nothing (the API server rejects it anyway).
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::appregistration::WellKnownApi;
    use crate::api::policy::{AdoptionRule, ConsentRule};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    const OTHER_API: &str = "11111111-2222-3333-4444-555555555555";
    const OWN_API: &str = "aaaaaaaa-2222-3333-4444-555555555555";

    fn view(policies: Vec<(&str, EntraPolicySpec)>) -> PolicyView {
        PolicyView {
            policies: Policies(
                policies
                    .into_iter()
                    .map(|(n, s)| (n.to_string(), s))
                    .collect(),
            ),
            namespace: NamespaceInfo {
                name: "team-a".into(),
                labels: BTreeMap::from([("tier".to_string(), "platform".to_string())]),
            },
            same_namespace_app_ids: BTreeSet::from([OWN_API.to_string()]),
        }
    }

    fn request<'a>(app_id: &'a str, value: &'a str, kind: Kind) -> PermissionRequest<'a> {
        PermissionRequest {
            resource_app_id: app_id,
            by_app_ref: false,
            value,
            id: "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8",
            kind,
        }
    }

    fn graph_rule(name: &str, effect: Effect, application: &[&str]) -> ConsentRule {
        ConsentRule {
            name: name.into(),
            effect,
            api: ApiMatch {
                well_known_api: Some(WellKnownApi::MicrosoftGraph),
                ..ApiMatch::default()
            },
            application: application.iter().map(|s| s.to_string()).collect(),
            ..ConsentRule::default()
        }
    }

    #[test]
    fn defaults_allow_the_same_namespace_and_graph_sign_in_only() {
        let v = view(vec![]);
        let cases = [
            (
                request(OWN_API, "System", Kind::Application),
                Some(DEFAULT_SAME_NAMESPACE),
            ),
            (
                request(MICROSOFT_GRAPH_APP_ID, "User.Read", Kind::Delegated),
                Some(DEFAULT_GRAPH_SIGN_IN),
            ),
            (
                request(
                    MICROSOFT_GRAPH_APP_ID,
                    "RoleManagement.ReadWrite.Directory",
                    Kind::Application,
                ),
                None,
            ),
            (
                request(MICROSOFT_GRAPH_APP_ID, "User.Read.All", Kind::Delegated),
                None,
            ),
            (request(OTHER_API, "System", Kind::Application), None),
        ];
        for (req, allowed) in cases {
            let d = v.decide_grant(&req);
            match allowed {
                Some(rule) => assert_eq!(d, Decision::Allowed { rule: rule.into() }, "{req:?}"),
                None => assert!(!d.is_allowed(), "{req:?}"),
            }
        }
        assert_eq!(
            v.decide_grant(&request(
                MICROSOFT_GRAPH_APP_ID,
                "Mail.Send",
                Kind::Application
            ))
            .rule(),
            DEFAULT_NO_GRAPH
        );
        assert_eq!(
            v.decide_grant(&request(OTHER_API, "System", Kind::Application))
                .rule(),
            DEFAULT_NO_FOREIGN_API
        );
        let by_ref = PermissionRequest {
            by_app_ref: true,
            ..request(OTHER_API, "System", Kind::Application)
        };
        assert!(v.decide_grant(&by_ref).is_allowed());
    }

    #[test]
    fn an_allow_rule_widens_and_a_deny_rule_wins() {
        let allow = EntraPolicySpec {
            consent: vec![graph_rule("reporting", Effect::Allow, &["User.Read.All"])],
            ..Default::default()
        };
        let v = view(vec![("graph", allow.clone())]);
        assert_eq!(
            v.decide_grant(&request(
                MICROSOFT_GRAPH_APP_ID,
                "User.Read.All",
                Kind::Application
            )),
            Decision::Allowed {
                rule: "graph/reporting".into()
            }
        );
        // By ID too.
        let by_id = PermissionRequest {
            value: "other",
            id: "User.Read.All",
            ..request(MICROSOFT_GRAPH_APP_ID, "x", Kind::Application)
        };
        assert!(v.decide_grant(&by_id).is_allowed());
        let deny = EntraPolicySpec {
            consent: vec![ConsentRule {
                name: "no-own".into(),
                effect: Effect::Deny,
                api: ApiMatch {
                    same_namespace: Some(true),
                    ..ApiMatch::default()
                },
                application: vec!["*".into()],
                ..ConsentRule::default()
            }],
            ..Default::default()
        };
        let v = view(vec![("graph", allow), ("lockdown", deny)]);
        assert_eq!(
            v.decide_grant(&request(OWN_API, "System", Kind::Application)),
            Decision::Refused {
                rule: "lockdown/no-own".into()
            }
        );
    }

    #[test]
    fn rules_apply_only_to_their_namespaces() {
        let mut rule = graph_rule("b-only", Effect::Allow, &["*"]);
        rule.namespaces.names = vec!["team-b".into()];
        let v = view(vec![(
            "p",
            EntraPolicySpec {
                consent: vec![rule.clone()],
                ..Default::default()
            },
        )]);
        assert!(
            !v.decide_grant(&request(
                MICROSOFT_GRAPH_APP_ID,
                "Mail.Send",
                Kind::Application
            ))
            .is_allowed()
        );
        rule.namespaces.selector = Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["platform".into()]),
            }]),
            ..LabelSelector::default()
        });
        let v = view(vec![(
            "p",
            EntraPolicySpec {
                consent: vec![rule],
                ..Default::default()
            },
        )]);
        assert!(
            v.decide_grant(&request(
                MICROSOFT_GRAPH_APP_ID,
                "Mail.Send",
                Kind::Application
            ))
            .is_allowed()
        );
    }

    #[test]
    fn adoption_needs_a_rule_for_the_namespace_and_app() {
        let v = view(vec![]);
        assert_eq!(v.decide_adoption(OTHER_API).rule(), DEFAULT_NO_ADOPTION);
        let spec = EntraPolicySpec {
            adoption: vec![AdoptionRule {
                name: "legacy".into(),
                namespaces: NamespaceMatch {
                    names: vec!["team-a".into()],
                    selector: None,
                },
                app_ids: vec![OTHER_API.into()],
            }],
            ..Default::default()
        };
        let v = view(vec![("p", spec)]);
        assert_eq!(
            v.decide_adoption(OTHER_API),
            Decision::Allowed {
                rule: "p/legacy".into()
            }
        );
        assert!(!v.decide_adoption(OWN_API).is_allowed());
    }
}
