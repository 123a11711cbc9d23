//! The built-in Microsoft Graph service principal present in every tenant, with a realistic subset
//! of its published delegated scopes and app roles. IDs are the real ones from Microsoft's Graph
//! permissions reference, so `requiredResourceAccess` and `appRoleAssignedTo` written against the
//! emulator carry the same GUIDs as against Entra.

use serde_json::{Value, json};

pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Microsoft's own tenant, which owns first-party apps such as Graph.
pub const MICROSOFT_SERVICES_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// (value, delegated scope id, application role id); `None` where Graph publishes no such permission.
const PERMISSIONS: &[(&str, Option<&str>, Option<&str>)] = &[
    (
        "User.Read",
        Some("e1fe6dd8-ba31-4d61-89e7-88639da4683d"),
        None,
    ),
    (
        "User.Read.All",
        Some("a154be20-db9c-4678-8ab7-66f6cc099a59"),
        Some("df021288-bdef-4463-88db-98f22de89214"),
    ),
    (
        "User.ReadBasic.All",
        Some("b340eb25-3456-403f-be2f-af7a0d370277"),
        Some("97235f07-e226-4f63-ace3-39588e11d3a1"),
    ),
    (
        "User.ReadWrite.All",
        Some("204e0828-b5ca-4ad8-b9f3-f32a958e7cc4"),
        Some("741f803b-c850-494e-b5df-cde7c675a1ca"),
    ),
    (
        "Calendars.Read",
        Some("465a38f9-76ea-45b9-9f34-9e8b0d4b0b42"),
        Some("798ee544-9d2d-430c-a058-570e29e34338"),
    ),
    (
        "Calendars.ReadWrite",
        Some("1ec239c2-d7c9-4623-a91a-a9775856bb36"),
        Some("ef54d2bf-783f-4e0f-bca1-3210c0444d99"),
    ),
    (
        "OnlineMeetings.ReadWrite",
        Some("a65f2972-a4f8-4f5e-afd7-69ccb046d5dc"),
        None,
    ),
    (
        "OnlineMeetings.Read.All",
        None,
        Some("c1684f21-1984-47fa-9d61-2dc8c296bb70"),
    ),
    (
        "OnlineMeetings.ReadWrite.All",
        None,
        Some("b8bb2037-6e08-44ac-a4ea-4674e010e2a4"),
    ),
    (
        "Mail.Read",
        Some("570282fd-fa5c-430d-a7fd-fc8dc98a9dca"),
        Some("810c84a8-4a9e-49e6-bf7d-12d183f40d01"),
    ),
    (
        "Mail.Send",
        Some("e383f46e-2787-4529-855e-0e479a3ffac0"),
        Some("b633e1c5-b582-4048-a93e-9f11b44c7e96"),
    ),
    (
        "Group.Read.All",
        Some("5f8c59db-677d-491f-a6b8-5f174b11ec1d"),
        Some("5b567255-7703-4780-807c-7be8301ae99b"),
    ),
    (
        "Directory.Read.All",
        Some("06da0dbc-49e2-44d2-8312-53f166ab848a"),
        Some("7ab1d382-f21e-4acd-a863-ba3e13f7da61"),
    ),
    (
        "Application.Read.All",
        Some("c79f8feb-a9db-4090-85f9-90d820caa0eb"),
        Some("9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"),
    ),
    (
        "Application.ReadWrite.All",
        Some("bdfbf15f-ee85-4955-8675-146e8e5296b5"),
        Some("1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"),
    ),
    (
        "Application.ReadWrite.OwnedBy",
        None,
        Some("18a4783c-866b-4cc7-a460-3d5e5662c884"),
    ),
    (
        "AppRoleAssignment.ReadWrite.All",
        Some("84bccea3-f856-4a8a-967b-dbe0a3d53a64"),
        Some("06b708a9-e830-4db3-a914-8e69da51d44f"),
    ),
    (
        "DelegatedPermissionGrant.ReadWrite.All",
        Some("41ce6ca6-6826-4807-84f1-1c82854f7ee5"),
        Some("8e8e4742-1d95-4f68-9d56-6ee75648c72a"),
    ),
    (
        "CrossTenantInformation.ReadBasic.All",
        Some("81594d25-e88e-49cf-ac8c-fecbff49f994"),
        Some("cac88765-0581-4025-9725-5ebc13f729ee"),
    ),
    ("openid", Some("37f7f235-527c-4136-accd-4a02d197296e"), None),
    (
        "profile",
        Some("14dad69e-099b-42c9-810b-d002981feec1"),
        None,
    ),
    ("email", Some("64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0"), None),
    (
        "offline_access",
        Some("7427e0e9-2fba-42fe-b0c0-848c9e6a8182"),
        None,
    ),
];

/// Application roles (by value) the operator's own app is granted on Graph at start.
pub const OPERATOR_GRAPH_ROLES: &[&str] = &[
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Application.ReadWrite.OwnedBy",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "CrossTenantInformation.ReadBasic.All",
];

fn describe(value: &str) -> String {
    format!("Allows the app to use {value} in the organization (emulated description).")
}

pub(crate) fn scopes() -> Vec<Value> {
    PERMISSIONS
        .iter()
        .filter_map(|(value, scope, _)| {
            let id = (*scope)?;
            let admin = value.ends_with(".All");
            Some(json!({
                "id": id,
                "value": value,
                "type": if admin { "Admin" } else { "User" },
                "isEnabled": true,
                "adminConsentDisplayName": value,
                "adminConsentDescription": describe(value),
                "userConsentDisplayName": value,
                "userConsentDescription": describe(value),
                "origin": "Application",
            }))
        })
        .collect()
}

pub(crate) fn app_roles() -> Vec<Value> {
    PERMISSIONS
        .iter()
        .filter_map(|(value, _, role)| {
            let id = (*role)?;
            Some(json!({
                "id": id,
                "value": value,
                "displayName": value,
                "description": describe(value),
                "isEnabled": true,
                "allowedMemberTypes": ["Application"],
                "origin": "Application",
            }))
        })
        .collect()
}

/// Role id for a Graph application permission, by value.
pub fn graph_role_id(value: &str) -> Option<&'static str> {
    PERMISSIONS
        .iter()
        .find(|(v, _, _)| *v == value)
        .and_then(|(_, _, r)| *r)
}

/// Scope id for a Graph delegated permission, by value.
pub fn graph_scope_id(value: &str) -> Option<&'static str> {
    PERMISSIONS
        .iter()
        .find(|(v, _, _)| *v == value)
        .and_then(|(_, s, _)| *s)
}

pub(crate) fn service_principal_names() -> Vec<Value> {
    [
        "00000003-0000-0000-c000-000000000000/ags.windows.net",
        GRAPH_APP_ID,
        "https://canary.graph.microsoft.com",
        "https://graph.microsoft.com",
        "https://ags.windows.net",
        "https://graph.microsoft.com/",
    ]
    .iter()
    .map(|s| json!(s))
    .collect()
}
