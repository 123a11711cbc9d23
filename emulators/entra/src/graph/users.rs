//! `GET /users/{id | userPrincipalName}`: users exist so that owners can be named by user principal
//! name. Source: "Get user", https://learn.microsoft.com/graph/api/user-get.

use super::*;

/// "Get user": the user addressed by object id or by userPrincipalName (Entra compares UPNs
/// case-insensitively; **our choice** to do the same here, the page does not say). `$select`
/// narrows the answer ("This method supports the `$select` OData query parameter"); without it the
/// default properties come back. "If a user with the ID doesn't exist, this method returns a
/// `404 Not Found` error code": `Request_ResourceNotFound` with the directory's usual message
/// ("Resource '…' does not exist or one of its queried reference-property objects are not
/// present.", as reported in microsoftgraph/microsoft-graph-docs#6059). A user is never replicating:
/// users are created through the control API and visible at once (**our choice**).
pub(super) fn get_user(st: &State, caller: &Caller, req: &Req, key: &str) -> GResult {
    let user = tenant(st, caller).user(key).ok_or_else(|| not_found(key))?;
    Ok(entity(200, "users", user.render(), req))
}
