//! Microsoft Graph's published v1.0 metadata (`schema/schema-subset.xml`, a CSDL subset) used two
//! ways:
//!
//! - fidelity, always: Graph rejects unknown properties inside complex types that are not open
//!   (`apiApplication`, `appRole`, `webApplication`, …), so the emulator does too;
//! - a contract, with the `schemaContract` switch: every request body and every response body of
//!   Graph calls is checked against the schema (property names, also on open types; primitive
//!   types; enum members; no `null` where the schema says `Nullable="false"`).
//!
//! The file is machine-written with one element per line, so a line reader is enough.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::is_guid;

const SCHEMA_XML: &str = include_str!("../schema/schema-subset.xml");

#[derive(Debug, Clone)]
struct Prop {
    name: String,
    ty: String,
    nullable: bool,
}

#[derive(Debug, Default)]
struct TypeDef {
    base: Option<String>,
    open: bool,
    props: Vec<Prop>,
    navigation: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Schema {
    types: HashMap<String, TypeDef>,
    enums: HashMap<String, (bool, Vec<String>)>,
    /// (action name, bound type) → parameters other than the binding one.
    actions: HashMap<(String, String), Vec<Prop>>,
}

/// One disagreement between a body and the schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    /// JSON path, e.g. `api.oauth2PermissionScopes[0].valu`.
    pub(crate) path: String,
    pub(crate) kind: ViolationKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ViolationKind {
    /// A property the type does not declare; `open` when the type is an open type.
    Unknown { type_name: String, open: bool },
    /// A value of the wrong JSON type (or not a member of the enum).
    Type { expected: String },
    /// `null` where the schema says `Nullable="false"`.
    Null,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ViolationKind::Unknown { type_name, .. } => write!(
                f,
                "{}: property not declared on microsoft.graph.{type_name}",
                self.path
            ),
            ViolationKind::Type { expected } => write!(f, "{}: expected {expected}", self.path),
            ViolationKind::Null => write!(f, "{}: null where the schema forbids it", self.path),
        }
    }
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    Some(&rest[..rest.find('"')?])
}

/// `graph.appRole` / `microsoft.graph.appRole` → `appRole`; Edm types and collections unchanged.
fn short(ty: &str) -> String {
    if let Some(inner) = ty
        .strip_prefix("Collection(")
        .and_then(|t| t.strip_suffix(')'))
    {
        return format!("Collection({})", short(inner));
    }
    ty.trim_start_matches('#')
        .trim_start_matches("microsoft.graph.")
        .trim_start_matches("graph.")
        .to_string()
}

impl Schema {
    pub(crate) fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema::parse(SCHEMA_XML))
    }

    fn parse(xml: &str) -> Schema {
        enum Open {
            Type(String),
            Enum(String),
            Action(String, Option<String>, Vec<Prop>),
            None,
        }
        let mut schema = Schema::default();
        let mut open = Open::None;
        for line in xml.lines().map(str::trim) {
            let self_closing = line.ends_with("/>");
            if line.starts_with("<EntityType ") || line.starts_with("<ComplexType ") {
                let name = attr(line, "Name").unwrap_or_default().to_string();
                schema.types.insert(
                    name.clone(),
                    TypeDef {
                        base: attr(line, "BaseType").map(short),
                        open: attr(line, "OpenType") == Some("true"),
                        ..TypeDef::default()
                    },
                );
                open = if self_closing {
                    Open::None
                } else {
                    Open::Type(name)
                };
            } else if line.starts_with("<EnumType ") {
                let name = attr(line, "Name").unwrap_or_default().to_string();
                let flags = attr(line, "IsFlags") == Some("true");
                schema.enums.insert(name.clone(), (flags, Vec::new()));
                open = Open::Enum(name);
            } else if line.starts_with("<Action ") {
                open = Open::Action(
                    attr(line, "Name").unwrap_or_default().to_string(),
                    None,
                    Vec::new(),
                );
            } else if line.starts_with("</EntityType")
                || line.starts_with("</ComplexType")
                || line.starts_with("</EnumType")
                || line.starts_with("<Function ")
            {
                open = Open::None;
            } else if line.starts_with("</Action") {
                if let Open::Action(name, Some(bound), params) =
                    std::mem::replace(&mut open, Open::None)
                {
                    schema.actions.insert((name, bound), params);
                }
            } else if let Some(name) = attr(line, "Name") {
                let prop = || Prop {
                    name: name.to_string(),
                    ty: short(attr(line, "Type").unwrap_or("Edm.String")),
                    nullable: attr(line, "Nullable") != Some("false"),
                };
                match &mut open {
                    Open::Type(t) if line.starts_with("<Property ") => {
                        schema.types.get_mut(t.as_str()).unwrap().props.push(prop());
                    }
                    Open::Type(t) if line.starts_with("<NavigationProperty ") => {
                        schema
                            .types
                            .get_mut(t.as_str())
                            .unwrap()
                            .navigation
                            .push(name.to_string());
                    }
                    Open::Enum(e) if line.starts_with("<Member ") => {
                        schema
                            .enums
                            .get_mut(e.as_str())
                            .unwrap()
                            .1
                            .push(name.to_string());
                    }
                    Open::Action(_, bound, params) if line.starts_with("<Parameter ") => {
                        if name == "bindingParameter" {
                            *bound = Some(prop().ty);
                        } else {
                            params.push(prop());
                        }
                    }
                    _ => {}
                }
            }
        }
        schema
    }

    fn find_prop(&self, type_name: &str, prop: &str) -> Option<Result<&Prop, ()>> {
        let mut cur = Some(type_name);
        while let Some(t) = cur {
            let def = self.types.get(t)?;
            if let Some(p) = def.props.iter().find(|p| p.name == prop) {
                return Some(Ok(p));
            }
            if def.navigation.iter().any(|n| n == prop) {
                return Some(Err(()));
            }
            cur = def.base.as_deref();
        }
        None
    }

    fn is_open(&self, type_name: &str) -> bool {
        let mut cur = Some(type_name);
        while let Some(t) = cur {
            match self.types.get(t) {
                Some(def) if def.open => return true,
                Some(def) => cur = def.base.as_deref(),
                None => return false,
            }
        }
        false
    }

    /// Whether `type_name` is declared (an entity or complex type).
    #[cfg(test)]
    pub(crate) fn has_type(&self, type_name: &str) -> bool {
        self.types.contains_key(type_name)
    }

    /// Checks `value` against `ty` (`appRole`, `Collection(graph.appRole)`, `Edm.Guid`, …).
    pub(crate) fn check(&self, value: &Value, ty: &str, path: &str, out: &mut Vec<Violation>) {
        let mismatch = |out: &mut Vec<Violation>, expected: &str| {
            out.push(Violation {
                path: path.to_string(),
                kind: ViolationKind::Type {
                    expected: expected.to_string(),
                },
            })
        };
        if let Some(inner) = ty
            .strip_prefix("Collection(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let Some(items) = value.as_array() else {
                return mismatch(out, ty);
            };
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if item.is_null() {
                    out.push(Violation {
                        path: p,
                        kind: ViolationKind::Null,
                    });
                } else {
                    self.check(item, inner, &p, out);
                }
            }
            return;
        }
        let ok = match ty {
            "Edm.String" | "Edm.DateTimeOffset" | "Edm.Date" | "Edm.TimeOfDay" | "Edm.Duration"
            | "Edm.Binary" | "Edm.Stream" => value.is_string(),
            "Edm.Guid" => value.as_str().is_some_and(is_guid),
            "Edm.Boolean" => value.is_boolean(),
            "Edm.Int16" | "Edm.Int32" | "Edm.Int64" | "Edm.Byte" | "Edm.SByte" => {
                value.is_i64() || value.is_u64()
            }
            "Edm.Double" | "Edm.Single" | "Edm.Decimal" => value.is_number(),
            t if t.starts_with("Edm.") => true,
            t => {
                if let Some((flags, members)) = self.enums.get(t) {
                    let member = |s: &str| members.iter().any(|m| m == s.trim());
                    value.as_str().is_some_and(|s| {
                        if *flags {
                            s.split(',').all(member)
                        } else {
                            member(s)
                        }
                    })
                } else if self.types.contains_key(t) {
                    return self.check_object(value, t, path, out);
                } else {
                    true
                }
            }
        };
        if !ok {
            mismatch(out, ty);
        }
    }

    fn check_object(&self, value: &Value, type_name: &str, path: &str, out: &mut Vec<Violation>) {
        let Some(map) = value.as_object() else {
            out.push(Violation {
                path: path.to_string(),
                kind: ViolationKind::Type {
                    expected: type_name.to_string(),
                },
            });
            return;
        };
        // A derived type named by `@odata.type` replaces the declared one.
        let actual = map
            .get("@odata.type")
            .and_then(Value::as_str)
            .map(short)
            .filter(|t| self.types.contains_key(t))
            .unwrap_or_else(|| type_name.to_string());
        for (key, v) in map {
            if key.starts_with('@') || key.contains("@odata.") {
                continue;
            }
            let p = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match self.find_prop(&actual, key) {
                Some(Ok(prop)) => {
                    if v.is_null() {
                        if !prop.nullable {
                            out.push(Violation {
                                path: p,
                                kind: ViolationKind::Null,
                            });
                        }
                    } else {
                        self.check(v, &prop.ty, &p, out);
                    }
                }
                // Navigation properties (`owners`, …) are not checked here.
                Some(Err(())) => {}
                None => out.push(Violation {
                    path: p,
                    kind: ViolationKind::Unknown {
                        type_name: actual.clone(),
                        open: self.is_open(&actual),
                    },
                }),
            }
        }
    }

    /// Checks the body of a bound action (`addPassword`, …) against its parameters.
    pub(crate) fn check_action(
        &self,
        body: &Value,
        action: &str,
        bound: &str,
        out: &mut Vec<Violation>,
    ) {
        let Some(params) = self.actions.get(&(action.to_string(), bound.to_string())) else {
            return;
        };
        let Some(map) = body.as_object() else {
            return;
        };
        for (key, v) in map {
            if key.starts_with('@') {
                continue;
            }
            match params.iter().find(|p| &p.name == key) {
                Some(p) if v.is_null() => {
                    if !p.nullable {
                        out.push(Violation {
                            path: key.clone(),
                            kind: ViolationKind::Null,
                        });
                    }
                }
                Some(p) => self.check(v, &p.ty, key, out),
                None => out.push(Violation {
                    path: key.clone(),
                    kind: ViolationKind::Unknown {
                        type_name: format!("{action} (parameters)"),
                        open: false,
                    },
                }),
            }
        }
    }
}

/// The entity type a Graph path template reads or writes, and the bound action if it is one.
pub(crate) fn resource_of(template: &str) -> Option<(&'static str, Option<&'static str>)> {
    let t = template;
    let action = |name: &'static str| t.ends_with(&format!("/{name}"));
    for (name, bound) in [
        ("addPassword", "application"),
        ("removePassword", "application"),
        ("addKey", "application"),
        ("removeKey", "application"),
    ] {
        if action(name) {
            let bound = if t.starts_with("/v1.0/servicePrincipals") {
                "servicePrincipal"
            } else {
                bound
            };
            return Some((bound, Some(name)));
        }
    }
    if t.contains("/owners") || t.ends_with("/restore") || t.contains("$batch") {
        return None;
    }
    let ty = if t.contains("federatedIdentityCredentials") {
        "federatedIdentityCredential"
    } else if t.contains("appRoleAssignedTo") || t.contains("appRoleAssignments") {
        "appRoleAssignment"
    } else if t.contains("oauth2PermissionGrants") {
        "oAuth2PermissionGrant"
    } else if t.contains("findTenantInformation") {
        "tenantInformation"
    } else if t.contains("deletedItems") || t.starts_with("/v1.0/applications") {
        "application"
    } else if t.starts_with("/v1.0/servicePrincipals") {
        "servicePrincipal"
    } else {
        return None;
    };
    Some((ty, None))
}

/// The type of what a successful action answers.
fn action_result(action: &str) -> Option<&'static str> {
    match action {
        "addPassword" => Some("passwordCredential"),
        "addKey" => Some("keyCredential"),
        _ => None,
    }
}

/// Checks a Graph request body for `template`.
pub(crate) fn check_request(template: &str, body: &Value) -> Vec<Violation> {
    let schema = Schema::get();
    let mut out = Vec::new();
    match resource_of(template) {
        Some((bound, Some(action))) => schema.check_action(body, action, bound, &mut out),
        Some((ty, None)) => schema.check_object(body, ty, "", &mut out),
        None => {}
    }
    out
}

/// Checks a successful Graph response body for `template` (an entity or a `value` collection).
pub(crate) fn check_response(template: &str, body: &Value) -> Vec<Violation> {
    let schema = Schema::get();
    let mut out = Vec::new();
    let ty = match resource_of(template) {
        Some((_, Some(action))) => match action_result(action) {
            Some(t) => t,
            None => return out,
        },
        Some((ty, None)) => ty,
        None => return out,
    };
    match body.get("value").and_then(Value::as_array) {
        Some(items) if body.get("@odata.context").is_some() => {
            for (i, item) in items.iter().enumerate() {
                schema.check_object(item, ty, &format!("value[{i}]"), &mut out);
            }
        }
        _ => schema.check_object(body, ty, "", &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_knows_the_types_the_operator_writes() {
        let s = Schema::get();
        for t in [
            "application",
            "servicePrincipal",
            "apiApplication",
            "appRole",
            "permissionScope",
            "preAuthorizedApplication",
            "federatedIdentityCredential",
            "oAuth2PermissionGrant",
            "passwordCredential",
        ] {
            assert!(s.has_type(t), "{t}");
        }
        assert!(s.is_open("application"));
        assert!(!s.is_open("apiApplication"));
    }

    #[test]
    fn misspelled_nested_property_wrong_type_and_null_are_violations() {
        let body = json!({
            "displayName": "x",
            "api": {"oauth2PermissionScope": [], "requestedAccessTokenVersion": "2"},
            "appRoles": [{"id": "not-a-guid", "isEnabled": null, "allowedMemberTypes": ["User"]}],
            "tags": null,
        });
        let v = check_request("/v1.0/applications", &body);
        let paths: Vec<String> = v.iter().map(|v| v.path.clone()).collect();
        assert!(
            paths.contains(&"api.oauth2PermissionScope".to_string()),
            "{v:?}"
        );
        assert!(paths.contains(&"api.requestedAccessTokenVersion".to_string()));
        assert!(paths.contains(&"appRoles[0].id".to_string()));
        assert!(paths.contains(&"appRoles[0].isEnabled".to_string()));
        assert!(paths.contains(&"tags".to_string()));
        let ok = json!({"displayName": "x", "api": {"requestedAccessTokenVersion": 2,
            "oauth2PermissionScopes": [], "preAuthorizedApplications": []}});
        assert!(check_request("/v1.0/applications", &ok).is_empty());
    }

    #[test]
    fn owner_references_are_not_entities() {
        // `owners/$ref` bodies are `@odata.id` references, and `GET …/owners` lists directory
        // objects of several types: neither is checked as the addressed entity.
        let reference = json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/0a0e0000-0000-4000-8000-0000000000aa"});
        for t in [
            "/v1.0/applications/{id}/owners/$ref",
            "/v1.0/servicePrincipals/{id}/owners/$ref",
            "/v1.0/servicePrincipals(appId='{appId}')/owners/$ref",
        ] {
            assert!(check_request(t, &reference).is_empty(), "{t}");
        }
        let listed = json!({"@odata.context": "x", "value": [
            {"@odata.type": "#microsoft.graph.user", "id": "a", "userPrincipalName": "a@b"}]});
        assert!(check_response("/v1.0/servicePrincipals/{id}/owners", &listed).is_empty());
        // The entity itself is still checked.
        assert!(
            !check_request(
                "/v1.0/servicePrincipals/{id}",
                &json!({"owners@x": 1, "nope": 1})
            )
            .is_empty()
        );
    }

    #[test]
    fn action_bodies_are_checked_against_parameters() {
        let v = check_request(
            "/v1.0/applications/{id}/addPassword",
            &json!({"passwordCredential": {"displayName": "a", "endDateTime": "2030-01-01T00:00:00Z"}}),
        );
        assert!(v.is_empty(), "{v:?}");
        let v = check_request(
            "/v1.0/applications/{id}/removePassword",
            &json!({"keyid": "x"}),
        );
        assert_eq!(v.len(), 1);
    }
}
