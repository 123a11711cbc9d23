//! Rendering the Graph application JSON that the spec declares.
//!
//! The rendering needs what is already in Graph for three reasons: an existing scope or role keeps
//! its ID (adopted apps have IDs the operator did not derive), a role or scope that leaves the spec is
//! first written back disabled (Graph refuses to delete or change an enabled entitlement), and
//! properties the operator does not own inside a complex property it sends whole
//! (`api.knownClientApplications` when the spec leaves it out) are carried over.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::api::AppRegistrationSpec;
use crate::api::appregistration::{
    APP_ID_PLACEHOLDER, MemberType, RequiredResourceAccess, SignInAudience, WellKnownApi,
    WhoCanConsent,
};

use super::consent::{PermissionKind, RequiredPermission};
use super::ids;
use super::observed::Observed;
use super::operation::PlanError;
use super::references::ResolvedReferences;

/// Top-level application properties the operator manages, in the order they are rendered.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "displayName",
    "description",
    "signInAudience",
    "identifierUris",
    "api",
    "appRoles",
    "web",
    "spa",
    "publicClient",
    "requiredResourceAccess",
];

/// The application as the spec declares it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredApplication {
    /// Managed top-level properties with their desired values.
    pub properties: Map<String, Value>,
    /// Properties that must not be written this time because part of them could not be rendered
    /// (an unresolved reference, an unknown permission): Graph keeps what it has.
    pub held: BTreeSet<&'static str>,
    /// Identifier URIs with `{appId}` left out because the appId is not known yet (first create).
    pub identifier_uris_waiting_for_app_id: bool,
    /// Resolved identifier URIs (only when the appId is known).
    pub identifier_uris: Vec<String>,
    /// ID of each declared scope, by value.
    pub scope_ids: BTreeMap<String, String>,
    /// ID of each declared app role, by value.
    pub role_ids: BTreeMap<String, String>,
    /// Every required permission with its resolved ID, for consent.
    pub required_permissions: Vec<RequiredPermission>,
    /// Why parts could not be rendered.
    pub errors: Vec<PlanError>,
}

/// The name of a well-known API as the spec and `consent.missing` spell it.
pub fn well_known_api_name(api: WellKnownApi) -> &'static str {
    match api {
        WellKnownApi::MicrosoftGraph => "MicrosoftGraph",
    }
}

/// Renders the application for `spec`.
///
/// `app_id` is the application's appId when it exists (or is adopted); `observed` supplies the
/// current application (for IDs and two-step removal) and the resource service principals (for
/// permission names).
pub fn render_application(
    spec: &AppRegistrationSpec,
    unique_name: &str,
    app_id: Option<&str>,
    observed: &Observed,
    references: &ResolvedReferences,
) -> DesiredApplication {
    let observed_app = observed.application.as_ref();
    let mut out = DesiredApplication::default();
    let props = &mut out.properties;

    props.insert("displayName".into(), json!(spec.display_name));
    props.insert("description".into(), json!(spec.description));
    props.insert(
        "signInAudience".into(),
        json!(spec.sign_in_audience.as_str()),
    );

    let mut identifier_uris = Vec::new();
    for uri in &spec.identifier_uris {
        match app_id {
            Some(app_id) => identifier_uris.push(uri.replace(APP_ID_PLACEHOLDER, app_id)),
            None if uri.contains(APP_ID_PLACEHOLDER) => {
                out.identifier_uris_waiting_for_app_id = true;
            }
            None => identifier_uris.push(uri.clone()),
        }
    }
    props.insert("identifierUris".into(), json!(identifier_uris));
    if app_id.is_some() {
        out.identifier_uris = identifier_uris;
    }

    // Scopes and roles.
    let observed_scopes = observed_list(observed_app, &["api", "oauth2PermissionScopes"]);
    let scopes: Vec<Value> = spec
        .api
        .iter()
        .flat_map(|api| &api.scopes)
        .map(|scope| {
            let id = existing_id(&observed_scopes, &scope.value)
                .unwrap_or_else(|| ids::scope_id(unique_name, &scope.value));
            out.scope_ids.insert(scope.value.clone(), id.clone());
            let display = scope
                .admin_consent_display_name
                .clone()
                .unwrap_or_else(|| scope.value.clone());
            json!({
                "id": id,
                "value": scope.value,
                "type": match scope.who_can_consent {
                    WhoCanConsent::AdminsOnly => "Admin",
                    WhoCanConsent::AdminsAndUsers => "User",
                },
                "isEnabled": scope.enabled,
                "adminConsentDescription": scope.admin_consent_description.clone().unwrap_or_else(|| display.clone()),
                "adminConsentDisplayName": display,
                "userConsentDisplayName": scope.user_consent_display_name,
                "userConsentDescription": scope.user_consent_description,
            })
        })
        .collect();
    let scopes = with_retired_entitlements(scopes, &observed_scopes);

    let observed_roles = observed_list(observed_app, &["appRoles"]);
    let roles: Vec<Value> = spec
        .app_roles
        .iter()
        .map(|role| {
            let id = existing_id(&observed_roles, &role.value)
                .unwrap_or_else(|| ids::role_id(unique_name, &role.value));
            out.role_ids.insert(role.value.clone(), id.clone());
            let display = role
                .display_name
                .clone()
                .unwrap_or_else(|| role.value.clone());
            let member_types: BTreeSet<&str> = role
                .allowed_member_types
                .iter()
                .map(|m| match m {
                    MemberType::User => "User",
                    MemberType::Application => "Application",
                })
                .collect();
            json!({
                "id": id,
                "value": role.value,
                "displayName": display,
                "description": role.description.clone().unwrap_or(display),
                "isEnabled": role.enabled,
                "allowedMemberTypes": member_types,
            })
        })
        .collect();
    let roles = with_retired_entitlements(roles, &observed_roles);

    // The `api` complex property, sent whole.
    let pre_authorized = render_pre_authorized(spec, &out.scope_ids, observed_app, references);
    out.errors.extend(pre_authorized.errors);
    let known_clients = render_known_clients(spec, observed_app, references);
    props.insert(
        "api".into(),
        json!({
            "requestedAccessTokenVersion": requested_access_token_version(spec),
            "oauth2PermissionScopes": scopes,
            "preAuthorizedApplications": pre_authorized.entries,
            "knownClientApplications": known_clients,
        }),
    );
    props.insert("appRoles".into(), json!(roles));

    let web = spec.web.clone().unwrap_or_default();
    props.insert(
        "web".into(),
        json!({
            "redirectUris": web.redirect_uris.iter().map(|u| &u.0).collect::<Vec<_>>(),
            "homePageUrl": web.home_page_url,
            "logoutUrl": web.logout_url,
            "implicitGrantSettings": {
                "enableAccessTokenIssuance": web.implicit_grant.access_tokens,
                "enableIdTokenIssuance": web.implicit_grant.id_tokens,
            },
        }),
    );
    let spa_uris: Vec<&String> = spec
        .spa
        .iter()
        .flat_map(|s| &s.redirect_uris)
        .map(|u| &u.0)
        .collect();
    props.insert("spa".into(), json!({ "redirectUris": spa_uris }));
    let public_uris: Vec<&String> = spec
        .public_client
        .iter()
        .flat_map(|s| &s.redirect_uris)
        .map(|u| &u.0)
        .collect();
    props.insert(
        "publicClient".into(),
        json!({ "redirectUris": public_uris }),
    );

    let access = render_required_resource_access(spec, observed, references);
    if access.held {
        out.held.insert("requiredResourceAccess");
    } else {
        props.insert("requiredResourceAccess".into(), json!(access.resources));
    }
    out.errors.extend(access.errors);
    out.required_permissions = access.permissions;
    out
}

/// The members of the JSON array at `path` inside the observed application.
fn observed_list(app: Option<&Value>, path: &[&str]) -> Vec<Value> {
    let mut node = app;
    for key in path {
        node = node.and_then(|n| n.get(*key));
    }
    node.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The ID Graph already uses for the entitlement `value`, so an existing one keeps its ID.
fn existing_id(observed: &[Value], value: &str) -> Option<String> {
    observed
        .iter()
        .find(|e| e.get("value").and_then(Value::as_str) == Some(value))
        .and_then(|e| e.get("id").and_then(Value::as_str))
        .map(str::to_string)
}

fn is_enabled(entitlement: &Value) -> bool {
    entitlement.get("isEnabled").and_then(Value::as_bool) == Some(true)
}

/// The access token version to request: the spec's, else 2 for audiences that allow personal
/// Microsoft accounts (Graph requires 2 there), else Graph's default (null = 1). An explicit 1 with
/// such an audience is refused when the resource is applied (the CRD's validation rule).
fn requested_access_token_version(spec: &AppRegistrationSpec) -> Option<i32> {
    let explicit = spec
        .api
        .as_ref()
        .and_then(|a| a.requested_access_token_version);
    let personal = matches!(
        spec.sign_in_audience,
        SignInAudience::AzureADandPersonalMicrosoftAccount
            | SignInAudience::PersonalMicrosoftAccount
    );
    explicit.or(personal.then_some(2))
}

/// An observed role or scope written back disabled. Read-only properties Graph adds (`origin` on
/// app roles: "must not be included in any POST or PATCH requests") are not echoed.
fn disabled_copy(entitlement: &Value) -> Value {
    let mut copy = entitlement.clone();
    if let Some(map) = copy.as_object_mut() {
        map.insert("isEnabled".into(), Value::Bool(false));
        map.remove("origin");
    }
    copy
}

/// Properties of an enabled role or scope that are changed only after it is disabled: Graph
/// documents disabling before deleting; whether it refuses changing these on an enabled entry is
/// unconfirmed, and disabling first works either way.
const CHANGED_ONLY_WHEN_DISABLED: &[&str] = &[
    "value",
    "allowedMemberTypes",
    "type",
    "adminConsentDisplayName",
    "adminConsentDescription",
    "userConsentDisplayName",
    "userConsentDescription",
];

fn needs_disable_before_change(have: &Value, want: &Value) -> bool {
    is_enabled(have)
        && CHANGED_ONLY_WHEN_DISABLED
            .iter()
            .any(|f| want.get(*f).is_some() && have.get(*f) != want.get(*f))
}

/// Applies Graph's rule that an enabled role or scope can't be removed (nor, to be safe, have its
/// value, member types, type or consent texts changed): such an entitlement is written back
/// disabled (everything else as it is), and removed or changed only by a later plan that observes
/// it disabled.
fn with_retired_entitlements(desired: Vec<Value>, observed: &[Value]) -> Vec<Value> {
    let observed_by_id: BTreeMap<&str, &Value> = observed
        .iter()
        .filter_map(|e| Some((e.get("id")?.as_str()?, e)))
        .collect();
    let desired_ids: BTreeSet<String> = desired
        .iter()
        .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();

    let mut out: Vec<Value> = desired
        .into_iter()
        .map(|want| {
            let id = want.get("id").and_then(Value::as_str).unwrap_or_default();
            match observed_by_id.get(id) {
                Some(have) if needs_disable_before_change(have, &want) => disabled_copy(have),
                _ => want,
            }
        })
        .collect();
    for have in observed {
        let id = have.get("id").and_then(Value::as_str).unwrap_or_default();
        if !desired_ids.contains(id) && is_enabled(have) {
            out.push(disabled_copy(have));
        }
    }
    out
}

/// `api.knownClientApplications`: exactly the spec's list when it declares one (references
/// resolved through their status; while one is unresolved, Graph's entries are kept beside the
/// resolved ones, so nothing is removed before the list is known); Graph's list carried over
/// unchanged when the spec leaves the field out.
fn render_known_clients(
    spec: &AppRegistrationSpec,
    observed_app: Option<&Value>,
    references: &ResolvedReferences,
) -> Value {
    let observed = observed_list(observed_app, &["api", "knownClientApplications"]);
    let Some(declared) = spec
        .api
        .as_ref()
        .and_then(|api| api.known_client_applications.as_ref())
    else {
        return Value::Array(observed);
    };
    let mut app_ids: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        if !app_ids.iter().any(|have| have.eq_ignore_ascii_case(id)) {
            app_ids.push(id.to_ascii_lowercase());
        }
    };
    let mut waiting = false;
    for client in declared {
        match (&client.app_id, &client.app_ref) {
            (Some(app_id), _) => push(app_id),
            (None, Some(r)) => match references.app(&r.name) {
                Some(app) => push(&app.app_id),
                // Reported once by the plan from `references.waiting`.
                None => waiting = true,
            },
            (None, None) => {}
        }
    }
    if waiting {
        for have in observed.iter().filter_map(Value::as_str) {
            push(have);
        }
    }
    json!(app_ids)
}

struct PreAuthorized {
    entries: Vec<Value>,
    errors: Vec<PlanError>,
}

fn render_pre_authorized(
    spec: &AppRegistrationSpec,
    scope_ids: &BTreeMap<String, String>,
    observed_app: Option<&Value>,
    references: &ResolvedReferences,
) -> PreAuthorized {
    let mut errors = Vec::new();
    let mut waiting = false;
    let mut by_app_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let enabled_scope_ids: BTreeSet<String> = spec
        .api
        .iter()
        .flat_map(|api| &api.scopes)
        .filter(|s| s.enabled)
        .filter_map(|s| scope_ids.get(&s.value).cloned())
        .collect();
    for entry in spec
        .api
        .iter()
        .flat_map(|api| &api.pre_authorized_applications)
    {
        let app_id = match (&entry.app_id, &entry.app_ref) {
            (Some(app_id), _) => app_id.clone(),
            (None, Some(r)) => match references.app(&r.name) {
                Some(app) => app.app_id.clone(),
                None => {
                    // Reported once by the plan from `references.waiting`.
                    waiting = true;
                    continue;
                }
            },
            (None, None) => continue,
        };
        let ids = by_app_id.entry(app_id).or_default();
        if entry.scopes.is_empty() {
            ids.extend(enabled_scope_ids.iter().cloned());
        }
        for value in &entry.scopes {
            match scope_ids.get(value) {
                Some(id) => {
                    ids.insert(id.clone());
                }
                None => errors.push(PlanError::ScopeNotDeclared {
                    scope: value.clone(),
                }),
            }
        }
    }
    // Graph refuses a write that names a scope id in `preAuthorizedApplications` unless that scope
    // is already stored ("...has a Permission Id that cannot be found in the AppPermissions sets").
    // So a pre-authorization names only scopes Graph showed us; a new scope is written by this
    // plan and pre-authorized by the next one, after the re-observation sees it.
    let stored: BTreeSet<String> = observed_list(observed_app, &["api", "oauth2PermissionScopes"])
        .iter()
        .filter_map(|s| s.get("id").and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect();
    let mut entries: Vec<Value> = by_app_id
        .iter()
        .filter_map(|(app_id, ids)| {
            let ids: Vec<&String> = ids
                .iter()
                .filter(|id| stored.contains(&id.to_ascii_lowercase()))
                .collect();
            (!ids.is_empty()).then(|| json!({"appId": app_id, "delegatedPermissionIds": ids}))
        })
        .collect();
    if waiting {
        // Keep what Graph has for clients not rendered this time, so an unresolved reference
        // never revokes a pre-authorization; it is replaced once the reference resolves.
        for have in observed_list(observed_app, &["api", "preAuthorizedApplications"]) {
            let app_id = have
                .get("appId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !by_app_id.contains_key(app_id) {
                entries.push(have);
            }
        }
    }
    PreAuthorized { entries, errors }
}

struct ResourceAccess {
    resources: Vec<Value>,
    /// Some permission could not be resolved: writing the rest would revoke it.
    held: bool,
    permissions: Vec<RequiredPermission>,
    errors: Vec<PlanError>,
}

/// The published permissions of one resource API: value → ID, for scopes and for app roles.
struct PublishedPermissions {
    scopes: BTreeMap<String, String>,
    roles: BTreeMap<String, String>,
}

fn published_permissions(
    access: &RequiredResourceAccess,
    observed: &Observed,
    references: &ResolvedReferences,
) -> Result<(String, String, PublishedPermissions), Option<PlanError>> {
    let from_service_principal = |api: String, app_id: &str| {
        let sp = observed
            .resource_service_principals
            .get(app_id)
            .ok_or_else(|| Some(PlanError::ResourceNotFound { api: api.clone() }))?;
        let by_value = |list: &[super::observed::ObservedEntitlement]| {
            list.iter()
                .filter_map(|e| Some((e.value.clone()?, e.id.clone())))
                .collect()
        };
        Ok((
            api,
            app_id.to_string(),
            PublishedPermissions {
                scopes: by_value(&sp.oauth2_permission_scopes),
                roles: by_value(&sp.app_roles),
            },
        ))
    };
    if let Some(api) = access.well_known_api {
        return from_service_principal(well_known_api_name(api).to_string(), api.app_id());
    }
    if let Some(app_id) = &access.app_id {
        return from_service_principal(app_id.clone(), app_id);
    }
    if let Some(r) = &access.app_ref {
        // `None`: reported once by the plan from `references.waiting`.
        let app = references.app(&r.name).ok_or(None)?;
        return Ok((
            r.name.to_string(),
            app.app_id.clone(),
            PublishedPermissions {
                scopes: app.scope_ids.clone(),
                roles: app.role_ids.clone(),
            },
        ));
    }
    Err(None)
}

fn render_required_resource_access(
    spec: &AppRegistrationSpec,
    observed: &Observed,
    references: &ResolvedReferences,
) -> ResourceAccess {
    let mut out = ResourceAccess {
        resources: Vec::new(),
        held: false,
        permissions: Vec::new(),
        errors: Vec::new(),
    };
    // resourceAppId → (id, type), merged when the spec names one API twice.
    let mut by_resource: BTreeMap<String, BTreeSet<(String, &'static str)>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut unresolved = false;
    for access in &spec.required_resource_access {
        let (api, app_id, published) = match published_permissions(access, observed, references) {
            Ok(p) => p,
            Err(error) => {
                unresolved = true;
                out.errors.extend(error);
                continue;
            }
        };
        if !by_resource.contains_key(&app_id) {
            order.push(app_id.clone());
        }
        let entries = by_resource.entry(app_id.clone()).or_default();
        let wanted = access
            .delegated
            .iter()
            .map(|v| (v, PermissionKind::Delegated, &published.scopes))
            .chain(
                access
                    .application
                    .iter()
                    .map(|v| (v, PermissionKind::Application, &published.roles)),
            );
        for (value, kind, published) in wanted {
            let Some(id) = published.get(value) else {
                out.errors.push(PlanError::PermissionNotFound {
                    api: api.clone(),
                    permission: value.clone(),
                });
                continue;
            };
            entries.insert((id.clone(), kind.resource_access_type()));
            out.permissions.push(RequiredPermission {
                api: api.clone(),
                resource_app_id: app_id.clone(),
                value: value.clone(),
                id: id.clone(),
                kind,
            });
        }
    }
    out.held = unresolved || !out.errors.is_empty();
    out.resources = order
        .iter()
        .map(|app_id| {
            let access: Vec<Value> = by_resource[app_id]
                .iter()
                .map(|(id, kind)| json!({"id": id, "type": kind}))
                .collect();
            json!({"resourceAppId": app_id, "resourceAccess": access})
        })
        .collect();
    out
}
