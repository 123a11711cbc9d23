//! Service principals and app role assignments.
//!
//! Every write to a service principal itself bumps its `changed_seq` (for `servicePrincipals/delta`,
//! `delta.rs`); writes to its app role assignments and grants do not: they are objects of their own.

use super::*;

pub(super) fn find_sp(st: &State, caller: &Caller, key: &Key) -> Result<String, GErr> {
    let now = st.now();
    let t = tenant(st, caller);
    let (found, shown) = match key {
        Key::Id(id) => (t.sps.get(&id.to_ascii_lowercase()), *id),
        Key::AppId(a) => (t.sp_by_app_id(a), *a),
        Key::UniqueName(u) => (None, *u),
    };
    match found {
        Some(sp) if sp.visible(now) => Ok(sp.id.clone()),
        _ => Err(not_found(shown)),
    }
}

pub(super) const SP_READ_ONLY: &[&str] = &[
    "id",
    "appId",
    "appRoles",
    "oauth2PermissionScopes",
    "servicePrincipalNames",
    "appOwnerOrganizationId",
    "createdDateTime",
    "deletedDateTime",
    "appDisplayName",
];

pub(super) fn create_sp(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    app_id: Option<&str>,
) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    let app_id = match app_id {
        Some(a) => a.to_string(),
        None => body
            .get("appId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("Property 'appId' is required."))?
            .to_string(),
    }
    .to_ascii_lowercase();
    let now = st.now();
    let backed = st.app_by_app_id(&app_id).is_some_and(|(home, app)| {
        app.visible(now) && (home.id == caller.tenant_id || app.multi_tenant())
    });
    if !backed {
        return Err(bad_request(format!(
            "The appId '{app_id}' of the service principal does not reference a valid application object."
        ))
        .details(json!([{"code": "NoBackingApplicationObject", "target": "appId"}])));
    }
    if tenant(st, caller).sp_by_app_id(&app_id).is_some() {
        return Err(conflict(
            "Another object with the same value for property servicePrincipalNames already exists.",
        ));
    }
    for p in SP_READ_ONLY {
        body.remove(*p);
    }
    let visible_at = st.visible_at();
    let seq = st.next_seq();
    let mut sp = Sp::new(&app_id, now, visible_at, seq);
    sp.props = body;
    let rendered = st.render_sp(tenant(st, caller), &sp);
    tenant_mut(st, caller).insert_sp(sp);
    Ok(entity(201, "servicePrincipals", rendered, req))
}

pub(super) fn sp_routes(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    key: Key,
    suffix: &str,
    rest: &[String],
) -> GResult {
    let m = req.method.as_str();
    if let (Key::AppId(a), "PATCH", "") = (&key, m, suffix) {
        let now = st.now();
        let exists = tenant(st, caller)
            .sp_by_app_id(a)
            .filter(|s| s.visible(now))
            .map(|s| s.id.clone());
        return match exists {
            Some(id) => patch_sp(st, caller, req, &id),
            None if prefer_create(req) => create_sp(st, caller, req, Some(a)),
            None => Err(not_found(a)),
        };
    }
    let id = find_sp(st, caller, &key)?;
    match (m, suffix) {
        ("GET", "") => {
            let t = tenant(st, caller);
            let v = st.render_sp(t, &t.sps[&id]);
            Ok(entity(200, "servicePrincipals", v, req))
        }
        ("PATCH", "") => patch_sp(st, caller, req, &id),
        ("DELETE", "") => {
            let seq = st.next_seq();
            remove_sp(tenant_mut(st, caller), &id, seq);
            Ok(Resp::empty(204))
        }
        // "List owners" (https://learn.microsoft.com/graph/api/serviceprincipal-list-owners).
        ("GET", "/owners") => {
            let t = tenant(st, caller);
            let items = render_owners(st, t, &t.sps[&id].owners);
            collection(req, "", "directoryObjects", items)
        }
        ("POST", "/owners/$ref") => add_sp_owner(st, caller, req, &id),
        // "Remove owner" (https://learn.microsoft.com/graph/api/serviceprincipal-delete-owners): 204;
        // only the reference goes. Not an owner → 404, as for applications (our choice).
        ("DELETE", "/owners/{id}/$ref") => {
            let owner = rest[0].to_ascii_lowercase();
            let seq = st.next_seq();
            let sp = tenant_mut(st, caller).sps.get_mut(&id).expect("sp");
            remove_owner(&mut sp.owners, &owner)?;
            // As for applications (`app_routes`), an owner change is a change to the object.
            sp.changed_seq = seq;
            Ok(Resp::empty(204))
        }
        ("GET", "/appRoleAssignedTo") | ("GET", "/appRoleAssignments") => {
            let by_resource = suffix == "/appRoleAssignedTo";
            let t = tenant(st, caller);
            let mut list: Vec<&Assignment> = t
                .assignments
                .values()
                .filter(|a| {
                    if by_resource {
                        a.resource_id == id
                    } else {
                        a.principal_id == id
                    }
                })
                .collect();
            list.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
            let items = list
                .into_iter()
                .map(|a| render_assignment(st, t, a))
                .collect();
            collection(
                req,
                "",
                &format!("servicePrincipals('{id}'){suffix}"),
                items,
            )
        }
        ("POST", "/appRoleAssignedTo") | ("POST", "/appRoleAssignments") => {
            create_assignment(st, caller, req, &id, suffix == "/appRoleAssignedTo")
        }
        ("GET", "/appRoleAssignedTo/{id}") | ("GET", "/appRoleAssignments/{id}") => {
            let t = tenant(st, caller);
            let a = t
                .assignments
                .get(&rest[0])
                .filter(|a| a.resource_id == id || a.principal_id == id)
                .ok_or_else(|| not_found(&rest[0]))?;
            let v = render_assignment(st, t, a);
            Ok(entity(200, "appRoleAssignments", v, req))
        }
        // "Delete appRoleAssignedTo" (https://learn.microsoft.com/graph/api/serviceprincipal-delete-approleassignedto)
        // and "Delete appRoleAssignment" (…/serviceprincipal-delete-approleassignments): 204; the
        // assignment must belong to the addressed service principal (as resource or principal),
        // else 404. Needs AppRoleAssignment.ReadWrite.All (permissions.rs).
        ("DELETE", "/appRoleAssignedTo/{id}") | ("DELETE", "/appRoleAssignments/{id}") => {
            let t = tenant_mut(st, caller);
            match t.assignments.get(&rest[0]) {
                Some(a) if a.resource_id == id || a.principal_id == id => {
                    t.assignments.remove(&rest[0]);
                    Ok(Resp::empty(204))
                }
                _ => Err(not_found(&rest[0])),
            }
        }
        ("GET", "/oauth2PermissionGrants") => {
            let items = tenant(st, caller)
                .grants
                .values()
                .filter(|g| g["clientId"] == id.as_str())
                .cloned()
                .map(Value::Object)
                .collect();
            collection(req, "", "oauth2PermissionGrants", items)
        }
        _ => Err(GErr::new(
            405,
            "Request_BadRequest",
            "The specified HTTP method is not allowed for the request target.",
        )),
    }
}

pub(super) fn patch_sp(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    let app_id = tenant(st, caller).sps[id].app_id.clone();
    for p in SP_READ_ONLY {
        if let Some(v) = body.remove(*p) {
            if *p == "appId" && v.as_str().is_some_and(|x| x.eq_ignore_ascii_case(&app_id)) {
                continue;
            }
            return Err(bad_request(format!(
                "Property '{p}' is read-only and cannot be set."
            )));
        }
    }
    if let Some(v) = body.get("accountEnabled")
        && !v.is_boolean()
    {
        return Err(bad_request("Property 'accountEnabled' must be a boolean."));
    }
    if let Some(v) = body.get("appRoleAssignmentRequired")
        && !v.is_boolean()
    {
        return Err(bad_request(
            "Property 'appRoleAssignmentRequired' must be a boolean.",
        ));
    }
    let seq = st.next_seq();
    let sp = tenant_mut(st, caller).sps.get_mut(id).expect("sp");
    deep_merge(&mut sp.props, body);
    sp.changed_seq = seq;
    Ok(Resp::empty(204))
}

pub(super) fn render_assignment(st: &State, t: &Tenant, a: &Assignment) -> Value {
    let name = |id: &str| {
        t.sps
            .get(id)
            .map(|sp| st.render_sp(t, sp)["displayName"].clone())
            .unwrap_or(Value::Null)
    };
    a.render(&name(&a.principal_id), &name(&a.resource_id))
}

pub(super) fn create_assignment(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    path_sp: &str,
    path_is_resource: bool,
) -> GResult {
    let body = body_object(req)?;
    let get = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| bad_request(format!("Property '{k}' is required.")))
    };
    let principal = get("principalId")?;
    let resource = get("resourceId")?;
    let role = get("appRoleId")?;
    let expected = if path_is_resource {
        &resource
    } else {
        &principal
    };
    if expected != path_sp {
        return Err(bad_request(format!(
            "Property '{}' must be the service principal in the request URL.",
            if path_is_resource {
                "resourceId"
            } else {
                "principalId"
            }
        )));
    }
    let now = st.now();
    let t = tenant(st, caller);
    if !t.sps.get(&principal).is_some_and(|s| s.visible(now)) {
        return Err(not_found(&principal));
    }
    let Some(resource_sp) = t.sps.get(&resource).filter(|s| s.visible(now)) else {
        return Err(not_found(&resource));
    };
    let default_access = role == "00000000-0000-0000-0000-000000000000";
    let roles = st.sp_app_roles(resource_sp);
    let found = roles.iter().any(|r| {
        r["id"]
            .as_str()
            .is_some_and(|i| i.eq_ignore_ascii_case(&role))
            && r["isEnabled"] != false
            && str_array(r.get("allowedMemberTypes"))
                .iter()
                .any(|m| m == "Application")
    });
    if !default_access && !found {
        return Err(bad_request(format!(
            "Permission being assigned was not found on application '{}'.",
            resource_sp.app_id
        )));
    }
    if t.assignments
        .values()
        .any(|a| a.principal_id == principal && a.resource_id == resource && a.app_role_id == role)
    {
        return Err(bad_request(
            "Permission being assigned already exists on the object",
        ));
    }
    let a = Assignment {
        id: b64url(&random_bytes(32)),
        app_role_id: role,
        principal_id: principal,
        resource_id: resource,
        created: now,
    };
    let v = render_assignment(st, t, &a);
    tenant_mut(st, caller).assignments.insert(a.id.clone(), a);
    Ok(entity(201, "appRoleAssignments", v, req))
}

pub(super) fn list_sps(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    let mut sps: Vec<&Sp> = t.sps.values().filter(|s| s.visible(now)).collect();
    sps.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    let view = |sp: &&Sp, keys: &[String]| {
        if keys.iter().all(|k| k == "appId" || k == "id") {
            json!({"id": sp.id, "appId": sp.app_id})
        } else {
            st.render_sp(t, sp)
        }
    };
    collection_of(req, base, "servicePrincipals", sps, view, |sp| {
        st.render_sp(t, sp)
    })
}
