//! Graph's rules for an application's properties, checked before any write.

use super::*;

pub(super) fn str_array(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Graph's rules for an application's properties, checked before any write.
pub(super) fn validate_app(
    st: &State,
    tid: &str,
    app_id: &str,
    object_id: &str,
    old: Option<&Map<String, Value>>,
    props: &Map<String, Value>,
) -> Result<(), GErr> {
    let audience = props
        .get("signInAudience")
        .and_then(Value::as_str)
        .unwrap_or("AzureADMyOrg");
    if !AUDIENCES.contains(&audience) {
        return Err(bad_request(format!(
            "Invalid value specified for property 'signInAudience' of resource 'Application': '{audience}'."
        )));
    }
    let personal = audience.contains("Personal");
    let api = props.get("api").cloned().unwrap_or(json!({}));
    let version = api
        .get("requestedAccessTokenVersion")
        .and_then(Value::as_i64);
    if let Some(v) = version
        && v != 1
        && v != 2
    {
        return Err(bad_request(
            "Property api.requestedAccessTokenVersion is invalid.",
        ));
    }
    if personal && version != Some(2) {
        return Err(bad_request(
            "Property api.requestedAccessTokenVersion is invalid. It must be 2 for applications that allow personal Microsoft accounts.",
        ));
    }

    // App roles and scopes.
    let roles = props
        .get("appRoles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    validate_entitlements(&roles, "appRoles", true)?;
    let scopes = api
        .get("oauth2PermissionScopes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    validate_entitlements(&scopes, "api.oauth2PermissionScopes", false)?;
    if let Some(old) = old {
        let old_roles = old
            .get("appRoles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        check_enabled_before_remove(&old_roles, &roles, &["value", "allowedMemberTypes"])?;
        let old_scopes = old
            .get("api")
            .and_then(|a| a.get("oauth2PermissionScopes"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        check_enabled_before_remove(&old_scopes, &scopes, &["value", "type"])?;
    }
    for pre in api
        .get("preAuthorizedApplications")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ok_app = pre
            .get("appId")
            .and_then(Value::as_str)
            .is_some_and(is_guid);
        let ids = str_array(pre.get("delegatedPermissionIds"));
        if !ok_app {
            return Err(bad_request(
                "Property preAuthorizedApplications.appId is invalid.",
            ));
        }
        // The scope must already be stored, written by an earlier request: one body that adds a
        // scope and pre-authorizes it is refused (FIDELITY.md, "scopes before pre-authorizations").
        let stored = old
            .and_then(|o| o.get("api"))
            .and_then(|a| a.get("oauth2PermissionScopes"))
            .and_then(Value::as_array);
        let known = |pid: &str| {
            let has = |list: &[Value]| {
                list.iter().any(|s| {
                    s.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.eq_ignore_ascii_case(pid))
                })
            };
            has(&scopes) && stored.is_some_and(|s| has(s))
        };
        if ids.iter().any(|pid| !known(pid)) {
            return Err(GErr::new(
                400,
                "InvalidValue",
                "Property api.preAuthorizedApplications.delegatedPermissionIds has a Permission Id that cannot be found in the AppPermissions sets.",
            )
            .details(json!([{"target": "api.preAuthorizedApplications.delegatedPermissionIds", "code": "InvalidValue"}])));
        }
    }

    // Redirect URIs.
    let mut uris = Vec::new();
    for (path, spa) in [("web", false), ("spa", true), ("publicClient", false)] {
        for u in str_array(props.get(path).and_then(|p| p.get("redirectUris"))) {
            if u.len() > 256 {
                return Err(bad_request(format!(
                    "Property {path}.redirectUris has a value longer than 256 characters."
                )));
            }
            if spa
                && let Some(rest) = u.strip_prefix("brk-multihub://")
                && (rest.is_empty() || rest.contains(['/', '?', '#']))
            {
                return Err(bad_request(format!(
                    "Invalid brokered redirect URI '{u}': it must be an origin (brk-multihub://host[:port]) without a path."
                )));
            }
            uris.push(u);
        }
    }
    let max_uris = if personal { 100 } else { 256 };
    if uris.len() > max_uris {
        return Err(bad_request(format!(
            "The number of redirect URIs ({}) exceeds the limit of {max_uris}.",
            uris.len()
        )));
    }

    // Required resource access.
    let rra = props
        .get("requiredResourceAccess")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if rra.len() > 50 {
        return Err(bad_request(
            "The number of resources in requiredResourceAccess exceeds the limit of 50.",
        ));
    }
    let total: usize = rra
        .iter()
        .map(|r| {
            r.get("resourceAccess")
                .and_then(Value::as_array)
                .map_or(0, |a| a.len())
        })
        .sum();
    if total > 400 {
        return Err(bad_request(
            "The number of permissions in requiredResourceAccess exceeds the limit of 400.",
        ));
    }
    for r in &rra {
        if !r
            .get("resourceAppId")
            .and_then(Value::as_str)
            .is_some_and(is_guid)
        {
            return Err(bad_request(
                "Property requiredResourceAccess.resourceAppId is invalid.",
            ));
        }
        for a in r
            .get("resourceAccess")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ty = a.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(ty, "Scope" | "Role")
                || !a.get("id").and_then(Value::as_str).is_some_and(is_guid)
            {
                return Err(bad_request(
                    "Property requiredResourceAccess.resourceAccess is invalid.",
                ));
            }
        }
    }

    // Identifier URIs: format, then global uniqueness (soft-deleted apps keep theirs).
    let t = &st.tenants[tid];
    let ids = str_array(props.get("identifierUris"));
    for uri in &ids {
        validate_identifier_uri(uri, app_id, tid, &t.domains)?;
    }
    // Unique in the tenant for single-tenant apps, globally for multi-tenant and personal-account
    // apps (a clash across tenants counts when either app is not single-tenant).
    let multi = |aud: &str| aud != "AzureADMyOrg";
    if !ids.is_empty() {
        for tenant in st.tenants.values() {
            for other in tenant.apps.values() {
                if other.id == object_id {
                    continue;
                }
                let other_multi = other
                    .props
                    .get("signInAudience")
                    .and_then(Value::as_str)
                    .is_some_and(multi);
                if tenant.id != tid && !multi(audience) && !other_multi {
                    continue;
                }
                let theirs = str_array(other.props.get("identifierUris"));
                if ids
                    .iter()
                    .any(|u| theirs.iter().any(|x| x.eq_ignore_ascii_case(u)))
                {
                    return Err(bad_request(
                        "Another object with the same value for property identifierUris already exists.",
                    ));
                }
            }
        }
    }
    if str_array(props.get("tags")).iter().any(|t| t.len() > 256) {
        return Err(bad_request("A tag is longer than 256 characters."));
    }
    Ok(())
}

pub(super) fn validate_entitlements(items: &[Value], prop: &str, roles: bool) -> Result<(), GErr> {
    let mut ids = Vec::new();
    let mut values = Vec::new();
    for item in items {
        let id = item.get("id").and_then(Value::as_str).unwrap_or("");
        if !is_guid(id) {
            return Err(bad_request(format!("Property {prop}.id is invalid.")));
        }
        if ids.contains(&id.to_ascii_lowercase()) {
            return Err(bad_request(format!(
                "Property {prop} has duplicate id '{id}'."
            )));
        }
        ids.push(id.to_ascii_lowercase());
        if let Some(value) = item.get("value").and_then(Value::as_str) {
            if value.len() > 120 || value.contains(' ') || value.is_empty() {
                return Err(bad_request(format!(
                    "Property {prop}.value is invalid: '{value}' (at most 120 characters, no spaces)."
                )));
            }
            if values.contains(&value.to_ascii_lowercase()) {
                return Err(bad_request(format!(
                    "Property {prop} has duplicate value '{value}'."
                )));
            }
            values.push(value.to_ascii_lowercase());
        }
        if roles {
            let types = str_array(item.get("allowedMemberTypes"));
            if types.is_empty() || types.iter().any(|t| t != "User" && t != "Application") {
                return Err(bad_request(format!(
                    "Property {prop}.allowedMemberTypes is invalid."
                )));
            }
        } else if let Some(ty) = item.get("type").and_then(Value::as_str)
            && ty != "User"
            && ty != "Admin"
        {
            return Err(bad_request(format!("Property {prop}.type is invalid.")));
        }
    }
    Ok(())
}

/// An enabled role or scope can't be removed or changed: it must be disabled in an earlier write.
pub(super) fn check_enabled_before_remove(
    old: &[Value],
    new: &[Value],
    fields: &[&str],
) -> Result<(), GErr> {
    for o in old {
        if o.get("isEnabled").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let id = o.get("id").and_then(Value::as_str).unwrap_or("");
        let n = new.iter().find(|n| {
            n.get("id")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(id))
        });
        let changed = match n {
            None => true,
            Some(n) => fields.iter().any(|f| o.get(*f) != n.get(*f)),
        };
        if changed {
            return Err(GErr::new(
                400,
                "CannotDeleteOrUpdateEnabledEntitlement",
                "Permission (scope or role) cannot be deleted or updated unless disabled first.",
            ));
        }
    }
    Ok(())
}

pub(super) fn validate_identifier_uri(
    uri: &str,
    app_id: &str,
    tenant_id: &str,
    domains: &[String],
) -> Result<(), GErr> {
    let invalid = || {
        GErr::new(
            400,
            "HostNameNotOnVerifiedDomain",
            format!(
                "Values of identifierUris property must use a verified domain of the organization or its subdomain, or follow the api:// formats: '{uri}'"
            ),
        )
    };
    let on_verified_domain = |host: &str| {
        let host = host.to_ascii_lowercase();
        domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            host == d || host.ends_with(&format!(".{d}"))
        })
    };
    if let Some(rest) = uri.strip_prefix("api://") {
        let rest = rest.trim_end_matches('/');
        let parts: Vec<&str> = rest.split('/').collect();
        let is_app = |s: &str| s.eq_ignore_ascii_case(app_id);
        let is_tenant = |s: &str| s.eq_ignore_ascii_case(tenant_id);
        let ok = match parts.as_slice() {
            [one] => is_app(one),
            [first, second] if !second.is_empty() => {
                // api://<tenantId>/<appId>, api://<tenantId>/<string>, api://<string>/<appId>,
                // api://<string>.<verified domain>/<string>
                if is_tenant(first) {
                    !is_guid(second) || is_app(second)
                } else if is_app(second) {
                    !is_guid(first)
                } else {
                    on_verified_domain(first) && !is_guid(second)
                }
            }
            [first, more @ ..] if more.len() > 1 => {
                on_verified_domain(first) && more.iter().all(|p| !p.is_empty())
            }
            _ => false,
        };
        return if ok { Ok(()) } else { Err(invalid()) };
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
        let ok = domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            host == d || host.ends_with(&format!(".{d}"))
        });
        return if ok { Ok(()) } else { Err(invalid()) };
    }
    Err(invalid())
}
