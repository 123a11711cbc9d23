//! What the observe stage read from Graph, as the plan needs it.
//!
//! The application is kept as Graph's JSON: the plan compares desired and observed property by
//! property, so a property Graph adds or returns as `null` never produces a spurious write. The other
//! objects are small typed views that deserialize straight from Graph's JSON (unknown fields ignored)
//! and convert from the Graph client's models (`From<&graph::…>`), so the plan does not depend on
//! which optional fields the client's `$select` filled in.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::graph;

/// Everything observed for one AppRegistration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The application as `GET /applications(uniqueName='…')` (or, when adopting,
    /// `GET /applications(appId='…')`) returned it; `None` when it does not exist.
    pub application: Option<Value>,
    /// The application's service principal in this tenant; `None` when it does not exist.
    pub service_principal: Option<ObservedServicePrincipal>,
    /// The application's owners (`GET /applications/{id}/owners`); listed only when the spec
    /// declares owners, asks for exact management, or the operator recorded owners it added.
    pub owners: Vec<ObservedOwner>,
    /// `spec.ownerUserPrincipalNames` resolved (`GET /users/{userPrincipalName}`): each name to
    /// its user's object ID, or `None` when Graph answered 404 (no such user). A name missing here
    /// counts as unresolved.
    pub owner_principal_names: BTreeMap<String, Option<String>>,
    /// The application's federated identity credentials.
    pub federated_credentials: Vec<ObservedFederatedCredential>,
    /// Service principal of every resource API named in `requiredResourceAccess`, by its appId
    /// (`GET /servicePrincipals(appId='…')` with `appRoles` and `oauth2PermissionScopes`). A resource
    /// missing here has no service principal in this tenant.
    pub resource_service_principals: BTreeMap<String, ObservedServicePrincipal>,
    /// Application permissions granted to our service principal
    /// (`GET /servicePrincipals/{id}/appRoleAssignments`).
    pub app_role_assignments: Vec<ObservedAppRoleAssignment>,
    /// Delegated grants of our service principal
    /// (`GET /oauth2PermissionGrants?$filter=clientId eq '{id}'`).
    pub oauth2_permission_grants: Vec<ObservedPermissionGrant>,
}

/// An owner of the application: a user or a service principal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedOwner {
    /// Its object ID.
    pub id: String,
    /// Its appId when it is a service principal: the operator recognises its own identity by it.
    pub app_id: Option<String>,
}

impl From<&graph::DirectoryObject> for ObservedOwner {
    fn from(o: &graph::DirectoryObject) -> Self {
        ObservedOwner {
            id: o.id.clone(),
            app_id: o.app_id.clone(),
        }
    }
}

/// A service principal: ours, or a resource API's.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservedServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub app_role_assignment_required: Option<bool>,
    pub account_enabled: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// The resource's application permissions.
    #[serde(deserialize_with = "null_default")]
    pub app_roles: Vec<ObservedEntitlement>,
    /// The resource's delegated permissions.
    #[serde(deserialize_with = "null_default")]
    pub oauth2_permission_scopes: Vec<ObservedEntitlement>,
}

/// An app role or delegated scope a resource publishes.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservedEntitlement {
    pub id: String,
    pub value: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub is_enabled: bool,
    #[serde(deserialize_with = "null_default")]
    pub allowed_member_types: Vec<String>,
}

/// An application permission granted to a principal.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservedAppRoleAssignment {
    pub id: String,
    pub principal_id: String,
    /// The resource service principal's object ID.
    pub resource_id: String,
    pub app_role_id: String,
}

/// A delegated permission grant.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservedPermissionGrant {
    pub id: String,
    /// Our service principal's object ID.
    pub client_id: String,
    /// `AllPrincipals` (admin consent) or `Principal`.
    pub consent_type: String,
    /// The resource service principal's object ID.
    pub resource_id: String,
    /// Space-separated scope values.
    pub scope: String,
}

impl ObservedPermissionGrant {
    /// The granted scope values.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_whitespace()
    }
}

/// A federated identity credential on the application.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservedFederatedCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    #[serde(deserialize_with = "null_default")]
    pub audiences: Vec<String>,
    pub description: Option<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The observed application as the plan compares it, from the Graph client's model.
pub fn application_json(app: &graph::Application) -> Value {
    serde_json::to_value(app).unwrap_or(Value::Null)
}

impl From<&graph::ServicePrincipal> for ObservedServicePrincipal {
    fn from(sp: &graph::ServicePrincipal) -> Self {
        ObservedServicePrincipal {
            id: sp.id.clone().unwrap_or_default(),
            app_id: sp.app_id.clone().unwrap_or_default(),
            app_role_assignment_required: sp.app_role_assignment_required,
            account_enabled: sp.account_enabled,
            tags: sp.tags.clone().unwrap_or_default(),
            app_roles: sp
                .app_roles
                .iter()
                .flatten()
                .map(|r| ObservedEntitlement {
                    id: r.id.clone(),
                    value: r.value.clone(),
                    is_enabled: r.is_enabled,
                    allowed_member_types: r.allowed_member_types.clone(),
                })
                .collect(),
            oauth2_permission_scopes: sp
                .oauth2_permission_scopes
                .iter()
                .flatten()
                .map(|s| ObservedEntitlement {
                    id: s.id.clone(),
                    value: s.value.clone(),
                    is_enabled: s.is_enabled,
                    allowed_member_types: Vec::new(),
                })
                .collect(),
        }
    }
}

impl From<&graph::AppRoleAssignment> for ObservedAppRoleAssignment {
    fn from(a: &graph::AppRoleAssignment) -> Self {
        ObservedAppRoleAssignment {
            id: a.id.clone().unwrap_or_default(),
            principal_id: a.principal_id.clone(),
            resource_id: a.resource_id.clone(),
            app_role_id: a.app_role_id.clone(),
        }
    }
}

impl From<&graph::OAuth2PermissionGrant> for ObservedPermissionGrant {
    fn from(g: &graph::OAuth2PermissionGrant) -> Self {
        ObservedPermissionGrant {
            id: g.id.clone().unwrap_or_default(),
            client_id: g.client_id.clone(),
            consent_type: g.consent_type.clone(),
            resource_id: g.resource_id.clone(),
            scope: g.scope.clone(),
        }
    }
}

impl From<&graph::FederatedIdentityCredential> for ObservedFederatedCredential {
    fn from(f: &graph::FederatedIdentityCredential) -> Self {
        ObservedFederatedCredential {
            name: f.name.clone(),
            issuer: f.issuer.clone(),
            subject: f.subject.clone(),
            audiences: f.audiences.clone(),
            description: f.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_graph_models() {
        let sp: graph::ServicePrincipal = serde_json::from_value(serde_json::json!({
            "id": "sp", "appId": "app", "tags": null, "accountEnabled": true,
            "appRoles": [{"id": "r", "value": "User.Read.All", "isEnabled": true, "allowedMemberTypes": ["Application"]}],
            "oauth2PermissionScopes": [{"id": "s", "value": "User.Read", "isEnabled": true, "type": "User"}]
        }))
        .unwrap();
        let view = ObservedServicePrincipal::from(&sp);
        assert_eq!(view.id, "sp");
        assert!(view.tags.is_empty());
        assert_eq!(view.app_roles[0].value.as_deref(), Some("User.Read.All"));
        assert_eq!(view.oauth2_permission_scopes[0].id, "s");

        let app: graph::Application = serde_json::from_value(serde_json::json!({
            "id": "o", "appId": "a", "web": {"redirectUris": ["https://x"], "implicitGrantSettings": null}
        }))
        .unwrap();
        let json = application_json(&app);
        assert_eq!(json["appId"], "a");
        assert_eq!(json["web"]["redirectUris"][0], "https://x");
    }
}
