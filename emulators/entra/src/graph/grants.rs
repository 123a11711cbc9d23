//! Delegated permission grants (`oauth2PermissionGrants`).

use super::*;

pub(super) fn list_grants(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    // "This request might have replication delays for delegated permission grants that were
    // recently created" (list-oauth2permissiongrants): a fresh grant is missing from the list
    // for the replication delay, though GET by id and the duplicate check already see it.
    let now = st.now();
    let t = tenant(st, caller);
    let items = t
        .grants
        .iter()
        .filter(|(id, _)| t.grants_listed_at.get(*id).is_none_or(|at| *at <= now))
        .map(|(_, g)| g.clone())
        .map(Value::Object)
        .collect();
    collection(req, base, "oauth2PermissionGrants", items)
}

pub(super) fn create_grant(st: &mut State, caller: &Caller, req: &Req) -> GResult {
    let body = body_object(req)?;
    let get = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let client = get("clientId").ok_or_else(|| bad_request("Property 'clientId' is required."))?;
    let resource =
        get("resourceId").ok_or_else(|| bad_request("Property 'resourceId' is required."))?;
    let consent_type = body
        .get("consentType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'consentType' is required."))?
        .to_string();
    let principal = get("principalId");
    match (consent_type.as_str(), &principal) {
        ("AllPrincipals", None) | ("Principal", Some(_)) => {}
        ("AllPrincipals", Some(_)) => {
            return Err(bad_request(
                "principalId must be null when consentType is AllPrincipals.",
            ));
        }
        ("Principal", None) => {
            return Err(bad_request(
                "principalId is required when consentType is Principal.",
            ));
        }
        _ => return Err(bad_request("Invalid value for property 'consentType'.")),
    }
    let scope = body
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let now = st.now();
    let t = tenant(st, caller);
    for sp in [&client, &resource] {
        if !t.sps.get(sp).is_some_and(|s| s.visible(now)) {
            return Err(not_found(sp));
        }
    }
    if t.grants.values().any(|g| {
        g["clientId"] == client.as_str()
            && g["resourceId"] == resource.as_str()
            && g["consentType"] == consent_type.as_str()
            && g.get("principalId").and_then(Value::as_str) == principal.as_deref()
    }) {
        // terraform-provider-azuread#690: 409 Request_MultipleObjectsWithSameKeyValue.
        return Err(conflict("Permission entry already exists."));
    }
    let id = b64url(&random_bytes(32));
    let grant = json!({
        "id": id,
        "clientId": client,
        "consentType": consent_type,
        "principalId": principal,
        "resourceId": resource,
        "scope": scope,
    });
    let Value::Object(g) = grant.clone() else {
        unreachable!()
    };
    let listed_at = st.visible_at();
    let t = tenant_mut(st, caller);
    t.grants_listed_at.insert(id.clone(), listed_at);
    t.grants.insert(id, g);
    Ok(entity(201, "oauth2PermissionGrants", grant, req))
}

pub(super) fn grant_routes(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let t = tenant_mut(st, caller);
    let Some(grant) = t.grants.get_mut(id) else {
        return Err(not_found(id));
    };
    match req.method.as_str() {
        "GET" => {
            let v = Value::Object(grant.clone());
            Ok(entity(200, "oauth2PermissionGrants", v, req))
        }
        // "Update oAuth2PermissionGrant" (https://learn.microsoft.com/graph/api/oauth2permissiongrant-update):
        // 204; `scope` is what changes (adding or removing delegated permissions); the other
        // properties are the grant's identity and are refused when changed (our choice).
        "PATCH" => {
            let body = body_object(req)?;
            for (k, v) in body {
                if k == "scope" {
                    grant.insert(k, v);
                } else if grant.get(&k) != Some(&v) {
                    return Err(bad_request(format!("Property '{k}' cannot be updated.")));
                }
            }
            Ok(Resp::empty(204))
        }
        // "Delete oAuth2PermissionGrant" (https://learn.microsoft.com/graph/api/oauth2permissiongrant-delete):
        // 204, the grant is gone (an unknown id is 404, above). Writes need
        // DelegatedPermissionGrant.ReadWrite.All (permissions.rs).
        "DELETE" => {
            t.grants.remove(id);
            t.grants_listed_at.remove(id);
            Ok(Resp::empty(204))
        }
        _ => Err(GErr::new(405, "Request_BadRequest", "Method not allowed.")),
    }
}
