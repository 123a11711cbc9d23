//! What a plan is made of: the Graph writes it orders and the reasons part of a spec could not be
//! planned. Below the planning modules (desired, consent, plan), which all produce them.

use serde_json::Value;

/// One Graph write, in the order the executor must run them. Whole objects travel typed; the
/// application and service principal PATCH bodies stay Graph JSON because they are deltas (only the
/// changed properties, `null` where one is cleared), which a typed struct cannot tell from absent.
#[derive(Clone, Debug, PartialEq)]
pub enum GraphOperation {
    /// `PATCH /applications(uniqueName='{unique_name}')` with `Prefer: create-if-missing`.
    UpsertApplication { unique_name: String, body: Value },
    /// `PATCH /applications/{object_id}` with only the changed properties.
    PatchApplication { object_id: String, body: Value },
    /// `PATCH /servicePrincipals(appId='{app_id}')` with `Prefer: create-if-missing`.
    UpsertServicePrincipal { app_id: String, body: Value },
    /// `PATCH /servicePrincipals/{id}` with only the changed properties.
    PatchServicePrincipal { id: String, body: Value },
    /// `POST /applications/{application_id}/owners/$ref` with
    /// `{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/{owner_id}"}`.
    AddOwner {
        application_id: String,
        owner_id: String,
    },
    /// `DELETE /applications/{application_id}/owners/{owner_id}/$ref`: an owner the operator
    /// added (or, with `ownersManagement: Exact`, any owner but the operator itself) that the spec
    /// no longer declares.
    RemoveOwner {
        application_id: String,
        owner_id: String,
    },
    /// `DELETE /applications/{application_id}/federatedIdentityCredentials(name='{name}')`.
    DeleteFederatedCredential {
        application_id: String,
        name: String,
    },
    /// `PATCH /applications/{application_id}/federatedIdentityCredentials(name='{credential.name}')`
    /// with `Prefer: create-if-missing`: the whole credential, typed (every property is sent, so a
    /// cleared description is cleared).
    UpsertFederatedCredential {
        application_id: String,
        credential: crate::graph::FederatedIdentityCredential,
    },
    /// `POST /servicePrincipals/{resource_sp_id}/appRoleAssignedTo`
    /// `{principalId, resourceId: resource_sp_id, appRoleId}`.
    CreateAppRoleAssignment {
        resource_sp_id: String,
        principal_id: String,
        app_role_id: String,
    },
    /// `POST /oauth2PermissionGrants` `{clientId, consentType: "AllPrincipals", resourceId, scope}`.
    CreateOAuth2PermissionGrant {
        client_id: String,
        resource_id: String,
        scope: String,
    },
    /// `PATCH /oauth2PermissionGrants/{id}` `{scope}` (the whole new scope string): scopes added,
    /// or scopes the operator granted and the spec no longer declares trimmed.
    PatchOAuth2PermissionGrant { id: String, scope: String },
    /// `DELETE /servicePrincipals/{resource_sp_id}/appRoleAssignedTo/{assignment_id}`: revokes an
    /// application permission the operator granted and the spec no longer declares.
    DeleteAppRoleAssignment {
        resource_sp_id: String,
        assignment_id: String,
    },
    /// `DELETE /oauth2PermissionGrants/{id}`: a delegated grant left with no scope once the ones
    /// the operator granted and the spec no longer declares are trimmed.
    DeleteOAuth2PermissionGrant { id: String },
}

/// Why part of the spec could not be planned. Each is reported in a condition; none is retried
/// faster than a resync, because each needs a change elsewhere first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("AppRegistration {name} does not exist or has no appId yet")]
    WaitingForReference { name: String },
    #[error("PermissionNotFound: {api}/{permission}")]
    PermissionNotFound { api: String, permission: String },
    #[error(
        "resource API {api} has no service principal in this tenant, so its permissions cannot be looked up"
    )]
    ResourceNotFound { api: String },
    #[error("pre-authorized scope {scope} is not declared in api.scopes")]
    ScopeNotDeclared { scope: String },
    #[error("no application with appId {app_id} to adopt in this tenant")]
    AdoptedApplicationNotFound { app_id: String },
    /// The consent policy refuses a permission `grantAdminConsent` would grant; nothing is granted.
    #[error(
        "ConsentRefused: {permission} ({kind}) may not be granted in this namespace: refused by rule {rule}"
    )]
    ConsentRefused {
        permission: String,
        kind: &'static str,
        rule: String,
    },
    /// Adoption is not allowed, or the application belongs to another resource.
    #[error("AdoptionRefused: application {app_id} is not adopted: {why}")]
    AdoptionRefused { app_id: String, why: String },
    /// An owner named in `ownerUserPrincipalNames` is no user in this tenant; until every name
    /// resolves no owner is removed (the missing one may be an owner under a new name).
    #[error(
        "OwnerNotFound: no user with userPrincipalName {user_principal_name} in this tenant; no owner is removed until every declared owner is found"
    )]
    OwnerNotFound { user_principal_name: String },
}

impl PlanError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PlanError::WaitingForReference { .. } => "WaitingForReference",
            PlanError::PermissionNotFound { .. } => "PermissionNotFound",
            PlanError::ResourceNotFound { .. } => "ResourceNotFound",
            PlanError::ScopeNotDeclared { .. } => "ScopeNotDeclared",
            PlanError::AdoptedApplicationNotFound { .. } => "AdoptedApplicationNotFound",
            PlanError::ConsentRefused { .. } => "ConsentRefused",
            PlanError::AdoptionRefused { .. } => "AdoptionRefused",
            PlanError::OwnerNotFound { .. } => "OwnerNotFound",
        }
    }
}
