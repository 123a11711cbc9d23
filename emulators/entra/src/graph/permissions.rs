//! The caller's Graph application permissions (the `roles` of its token), enforced per call.
//!
//! Each rule cites the permission reference (https://learn.microsoft.com/graph/permissions-reference)
//! and the API page's "Permissions" table; FIDELITY.md lists them. A denied call answers 403
//! `Authorization_RequestDenied` "Insufficient privileges to complete the operation.".

use super::*;

const READ_WRITE_ALL: &str = "Application.ReadWrite.All";
const OWNED_BY: &str = "Application.ReadWrite.OwnedBy";
const READ_ALL: &str = "Application.Read.All";
const DIRECTORY_READ_ALL: &str = "Directory.Read.All";
const DIRECTORY_READ_WRITE_ALL: &str = "Directory.ReadWrite.All";
const ROLE_ASSIGNMENT: &str = "AppRoleAssignment.ReadWrite.All";
const GRANTS: &str = "DelegatedPermissionGrant.ReadWrite.All";
const TENANT_INFO: &str = "CrossTenantInformation.ReadBasic.All";
const USER_READ_ALL: &str = "User.Read.All";
const USER_READ_WRITE_ALL: &str = "User.ReadWrite.All";

fn denied() -> GErr {
    GErr::new(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

/// Whether the caller's service principal owns the application with object id `id`.
fn owns_app(st: &State, caller: &Caller, id: &str) -> bool {
    tenant(st, caller)
        .apps
        .get(&id.to_ascii_lowercase())
        .is_some_and(|a| {
            a.owners
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&caller.sp_id))
        })
}

/// The application a request addresses, if it exists and is visible.
fn addressed_app(st: &State, caller: &Caller, t: &str, p: &[String]) -> Option<String> {
    split(t, p, "applications").and_then(|(key, _, _)| find_app(st, caller, &key).ok())
}

pub(super) fn authorize(
    st: &State,
    caller: &Caller,
    req: &Req,
    t: &str,
    p: &[String],
) -> Result<(), GErr> {
    let has = |r: &str| caller.roles.iter().any(|x| x == r);
    let read = req.method == "GET";
    let ok = if t.starts_with("/v1.0/users") {
        // "Get user" (https://learn.microsoft.com/graph/api/user-get), application permissions:
        // User.Read.All (least privileged), User.ReadWrite.All, Directory.Read.All,
        // Directory.ReadWrite.All (the same row as "List users",
        // https://learn.microsoft.com/graph/api/user-list; "on Microsoft Graph, reading users in
        // app-only scenarios requires only the User.Read.All permission",
        // https://learn.microsoft.com/graph/migrate-azure-ad-graph-permissions-differences).
        // Application.* permissions do not read users.
        has(USER_READ_ALL)
            || has(USER_READ_WRITE_ALL)
            || has(DIRECTORY_READ_ALL)
            || has(DIRECTORY_READ_WRITE_ALL)
    } else if t.starts_with("/v1.0/tenantRelationships/") {
        // findTenantInformationByTenantId: CrossTenantInformation.ReadBasic.All.
        has(TENANT_INFO)
    } else if t.starts_with("/v1.0/oauth2PermissionGrants") {
        // Writes: DelegatedPermissionGrant.ReadWrite.All; reads also with Directory.Read.All.
        has(GRANTS) || (read && has(DIRECTORY_READ_ALL))
    } else if (t.contains("/appRoleAssignedTo") || t.contains("/appRoleAssignments")) && !read {
        // Granting or revoking an app role, from the resource's side or the principal's:
        // AppRoleAssignment.ReadWrite.All ("Delete appRoleAssignedTo",
        // https://learn.microsoft.com/graph/api/serviceprincipal-delete-approleassignedto;
        // "Delete appRoleAssignment",
        // https://learn.microsoft.com/graph/api/serviceprincipal-delete-approleassignments; "Grant an
        // appRoleAssignment", …-post-approleassignments). Owning the service principal's application
        // is not enough.
        has(ROLE_ASSIGNMENT)
    } else if req.method == "POST"
        && t.starts_with("/v1.0/applications")
        && t.ends_with("/owners/$ref")
    {
        // Adding an owner: "Application.ReadWrite.OwnedBy will not be sufficient to add another
        // owner. Consent also to Application.ReadWrite.All", with Directory.Read.All
        // (https://learn.microsoft.com/graph/api/application-post-owners, Permissions).
        (has(READ_WRITE_ALL) && has(DIRECTORY_READ_ALL)) || has(DIRECTORY_READ_WRITE_ALL)
    } else if req.method == "POST"
        && t.starts_with("/v1.0/servicePrincipals")
        && t.ends_with("/owners/$ref")
    {
        // Adding an owner to a service principal: least privileged "Application.ReadWrite.OwnedBy
        // and Directory.Read.All"; higher "Directory.Read.All and Application.ReadWrite.All",
        // "Directory.ReadWrite.All" (https://learn.microsoft.com/graph/api/serviceprincipal-post-owners,
        // Permissions; unlike application-post-owners, no note that OwnedBy is insufficient). Our
        // choice: with OwnedBy, the caller must own the service principal or its application (so an
        // OwnedBy caller can make itself owner of the service principal it created).
        (has(READ_WRITE_ALL) && has(DIRECTORY_READ_ALL))
            || has(DIRECTORY_READ_WRITE_ALL)
            || (has(OWNED_BY)
                && has(DIRECTORY_READ_ALL)
                && (owns_sp(st, caller, t, p) || sp_of_owned_app(st, caller, req, t, p)))
    } else if t.starts_with("/v1.0/applications") || t.starts_with("/v1.0/directory/deletedItems") {
        let creating = (req.method == "POST" && t == "/v1.0/applications")
            || (req.method == "PATCH"
                && t == "/v1.0/applications(uniqueName='{uniqueName}')"
                && addressed_app(st, caller, t, p).is_none());
        let whole_collection =
            read && matches!(t, "/v1.0/applications" | "/v1.0/applications/delta");
        if has(READ_WRITE_ALL) {
            true
        } else if creating {
            // OwnedBy: "create other applications"; the creator becomes an owner.
            has(OWNED_BY)
        } else if whole_collection {
            // Our choice: OwnedBy lists everything (Graph's filtering is undocumented).
            has(READ_ALL) || has(DIRECTORY_READ_ALL) || has(OWNED_BY)
        } else if read && (has(READ_ALL) || has(DIRECTORY_READ_ALL)) {
            true
        } else {
            // Everything else on one application: only an owner with OwnedBy.
            has(OWNED_BY)
                && addressed_app(st, caller, t, p).is_some_and(|id| owns_app(st, caller, &id))
        }
    } else if t.starts_with("/v1.0/servicePrincipals") {
        if read && t == "/v1.0/servicePrincipals/delta" {
            // "servicePrincipal: delta" (https://learn.microsoft.com/graph/api/serviceprincipal-delta,
            // Permissions, application): least privileged Application.ReadWrite.OwnedBy; higher
            // Application.Read.All, Application.ReadWrite.All, Directory.Read.All,
            // Directory.ReadWrite.All. As for applications/delta, an OwnedBy caller gets every
            // service principal (our choice: whether Graph narrows it is undocumented).
            has(OWNED_BY)
                || has(READ_ALL)
                || has(READ_WRITE_ALL)
                || has(DIRECTORY_READ_ALL)
                || has(DIRECTORY_READ_WRITE_ALL)
        } else if read {
            has(READ_ALL) || has(DIRECTORY_READ_ALL) || has(READ_WRITE_ALL) || has(OWNED_BY)
        } else if has(READ_WRITE_ALL) {
            true
        } else if creating_sp(st, caller, req, t, p) {
            // "Create servicePrincipal" lists OwnedBy as least privileged
            // (https://learn.microsoft.com/graph/api/serviceprincipal-post-serviceprincipals); our
            // choice: for an application the caller owns. The new service principal has no owners
            // (that the creator becomes one is undocumented: the stricter reading).
            has(OWNED_BY) && sp_of_owned_app(st, caller, req, t, p)
        } else {
            // Every other write (PATCH, the upsert hitting an existing one, DELETE, owners): only
            // an owner of the service principal itself ([ownedby]: "cannot update any apps that it
            // is not an owner of"); owning its application is not enough.
            has(OWNED_BY) && owns_sp(st, caller, t, p)
        }
    } else {
        true
    };
    if ok { Ok(()) } else { Err(denied()) }
}

/// Whether the request creates a service principal: `POST /servicePrincipals`, or the upsert by
/// appId when no visible service principal has that appId.
fn creating_sp(st: &State, caller: &Caller, req: &Req, t: &str, p: &[String]) -> bool {
    match (req.method.as_str(), t) {
        ("POST", "/v1.0/servicePrincipals") => true,
        ("PATCH", "/v1.0/servicePrincipals(appId='{appId}')") => {
            find_sp(st, caller, &Key::AppId(&p[0])).is_err()
        }
        _ => false,
    }
}

/// Whether the caller is among the owners of the service principal the request addresses.
fn owns_sp(st: &State, caller: &Caller, t: &str, p: &[String]) -> bool {
    split(t, p, "servicePrincipals")
        .and_then(|(key, _, _)| find_sp(st, caller, &key).ok())
        .and_then(|id| tenant(st, caller).sps.get(&id))
        .is_some_and(|sp| {
            sp.owners
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&caller.sp_id))
        })
}

/// Whether the caller owns the application of the service principal the request addresses (or,
/// for `POST /servicePrincipals`, names in its body).
fn sp_of_owned_app(st: &State, caller: &Caller, req: &Req, t: &str, p: &[String]) -> bool {
    let app_id = if t == "/v1.0/servicePrincipals" {
        req.json()
            .and_then(|b| b.get("appId").and_then(Value::as_str).map(str::to_string))
    } else {
        match split(t, p, "servicePrincipals") {
            Some((Key::AppId(a), _, _)) => Some(a.to_string()),
            Some((key, _, _)) => find_sp(st, caller, &key)
                .ok()
                .and_then(|id| tenant(st, caller).sps.get(&id).map(|s| s.app_id.clone())),
            None => None,
        }
    };
    let Some(app_id) = app_id else { return false };
    tenant(st, caller).app_by_app_id(&app_id).is_some_and(|a| {
        a.owners
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&caller.sp_id))
    })
}
