//! Owners (`owners/$ref`) of applications and of service principals.

use super::*;

/// The object id in an `owners/$ref` body (`{"@odata.id": "…/directoryObjects/{id}"}`), lowercase.
fn owner_reference(req: &Req) -> Result<String, GErr> {
    let body = body_object(req)?;
    let odata_id = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property '@odata.id' is required."))?;
    let oid = odata_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_start_matches("directoryObjects(")
        .trim_matches(|c| c == '\'' || c == ')')
        .to_ascii_lowercase();
    if !is_guid(&oid) {
        return Err(bad_request(format!("Invalid object identifier '{oid}'.")));
    }
    Ok(oid)
}

/// Adds `oid` to `owners`: a duplicate is 400, as Graph answers it.
fn push_owner(owners: &mut Vec<String>, oid: String) -> Result<(), GErr> {
    if owners.contains(&oid) {
        return Err(bad_request(
            "One or more added object references already exist for the following modified properties: 'owners'.",
        ));
    }
    owners.push(oid);
    Ok(())
}

/// Removes `owner` from `owners` (only the reference goes, the directory object stays); one that
/// is not there → 404 Request_ResourceNotFound (our choice: Graph's answer for an absent link is
/// not documented).
pub(super) fn remove_owner(owners: &mut Vec<String>, owner: &str) -> Result<(), GErr> {
    let before = owners.len();
    owners.retain(|o| o != owner);
    if owners.len() == before {
        return Err(not_found(owner));
    }
    Ok(())
}

/// `POST /applications/{id}/owners/$ref`.
pub(super) fn add_owner(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let oid = owner_reference(req)?;
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    // Not a change delta reports: owners are not tracked by `applications/delta`
    // (docs/graph.md, "Reading many objects"; "application: delta").
    push_owner(&mut app.owners, oid)?;
    Ok(Resp::empty(204))
}

/// `POST /servicePrincipals/{id}/owners/$ref` ("Add owner",
/// https://learn.microsoft.com/graph/api/serviceprincipal-post-owners): as for applications, 204,
/// a duplicate → 400, any GUID accepted as the owner's id.
pub(super) fn add_sp_owner(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let oid = owner_reference(req)?;
    let sp = tenant_mut(st, caller).sps.get_mut(id).expect("sp");
    // Owners are not tracked by delta, as for applications (our choice for service principals:
    // their delta page lists no tracked navigation either).
    push_owner(&mut sp.owners, oid)?;
    Ok(Resp::empty(204))
}

/// The owners as `GET …/owners` lists them: service principals and users with their properties,
/// any other id as a bare directory object.
pub(super) fn render_owners(st: &State, t: &Tenant, owners: &[String]) -> Vec<Value> {
    owners
        .iter()
        .map(|o| {
            if let Some(sp) = t.sps.get(o) {
                let mut v = st.render_sp(t, sp);
                v["@odata.type"] = json!("#microsoft.graph.servicePrincipal");
                v
            } else if let Some(user) = t.users.get(o) {
                let mut v = user.render();
                v["@odata.type"] = json!("#microsoft.graph.user");
                v
            } else {
                json!({"@odata.type": "#microsoft.graph.user", "id": o})
            }
        })
        .collect()
}
