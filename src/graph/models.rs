//! Typed models of the Graph v1.0 objects the operator reads and writes.
//!
//! Every field is optional or defaulted and unknown fields are ignored, so a new Graph property or
//! a `null` never breaks decoding. Top-level objects skip `None` fields when serialized, so the same
//! type doubles as a partial PATCH body that sends only the fields that are set (Graph keeps omitted
//! properties; collections that are sent replace the stored ones whole).

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use super::secret::SecretString;

/// `null` → `T::default()`, for collections and flags Graph may return as `null`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An app registration (`/applications`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Application {
    /// Object id (the `{id}` in `/applications/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `AzureADMyOrg`, `AzureADMultipleOrgs`, `AzureADandPersonalMicrosoftAccount`, `PersonalMicrosoftAccount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_uris: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiApplication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_roles: Option<Vec<AppRole>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<WebApplication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spa: Option<SpaApplication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_client: Option<PublicClientApplication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_resource_access: Option<Vec<RequiredResourceAccess>>,
    /// Read-only through PATCH; use `addPassword` / `removePassword`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_credentials: Option<Vec<PasswordCredential>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_credentials: Option<Vec<KeyCredential>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<Timestamp>,
}

/// `application.api`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiApplication {
    /// 1, 2, or `None` (= 1). Must be 2 for apps that allow personal accounts.
    pub requested_access_token_version: Option<i32>,
    #[serde(deserialize_with = "null_default")]
    pub oauth2_permission_scopes: Vec<PermissionScope>,
    #[serde(deserialize_with = "null_default")]
    pub pre_authorized_applications: Vec<PreAuthorizedApplication>,
    #[serde(deserialize_with = "null_default")]
    pub known_client_applications: Vec<String>,
}

/// A delegated permission (scope) an API exposes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PermissionScope {
    pub id: String,
    pub value: Option<String>,
    /// `User` or `Admin`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub is_enabled: bool,
    pub admin_consent_display_name: Option<String>,
    pub admin_consent_description: Option<String>,
    pub user_consent_display_name: Option<String>,
    pub user_consent_description: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PreAuthorizedApplication {
    pub app_id: String,
    #[serde(deserialize_with = "null_default")]
    pub delegated_permission_ids: Vec<String>,
}

/// An app role (application permission when `allowedMemberTypes` holds `Application`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppRole {
    pub id: String,
    pub value: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub is_enabled: bool,
    /// `User`, `Application`.
    #[serde(deserialize_with = "null_default")]
    pub allowed_member_types: Vec<String>,
    /// `Application` or `ServicePrincipal`; read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WebApplication {
    #[serde(deserialize_with = "null_default")]
    pub redirect_uris: Vec<String>,
    pub home_page_url: Option<String>,
    pub logout_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implicit_grant_settings: Option<ImplicitGrantSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ImplicitGrantSettings {
    #[serde(deserialize_with = "null_default")]
    pub enable_access_token_issuance: bool,
    #[serde(deserialize_with = "null_default")]
    pub enable_id_token_issuance: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SpaApplication {
    #[serde(deserialize_with = "null_default")]
    pub redirect_uris: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PublicClientApplication {
    #[serde(deserialize_with = "null_default")]
    pub redirect_uris: Vec<String>,
}

/// An API the app requires, and which of its permissions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequiredResourceAccess {
    pub resource_app_id: String,
    #[serde(deserialize_with = "null_default")]
    pub resource_access: Vec<ResourceAccess>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceAccess {
    /// The scope's or app role's id.
    pub id: String,
    /// `Scope` (delegated) or `Role` (application).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A client secret's metadata, as listed on the application. The value is never returned here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PasswordCredential {
    pub key_id: Option<String>,
    pub display_name: Option<String>,
    /// The first three characters of the value.
    pub hint: Option<String>,
    pub start_date_time: Option<Timestamp>,
    pub end_date_time: Option<Timestamp>,
    pub custom_key_identifier: Option<String>,
}

/// The response of `addPassword`: the only time Graph returns the value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewPasswordCredential {
    pub key_id: Option<String>,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub start_date_time: Option<Timestamp>,
    pub end_date_time: Option<Timestamp>,
    pub custom_key_identifier: Option<String>,
    /// The secret value; redacted in `Debug`.
    pub secret_text: SecretString,
}

impl NewPasswordCredential {
    /// The metadata without the value.
    pub fn metadata(&self) -> PasswordCredential {
        PasswordCredential {
            key_id: self.key_id.clone(),
            display_name: self.display_name.clone(),
            hint: self.hint.clone(),
            start_date_time: self.start_date_time,
            end_date_time: self.end_date_time,
            custom_key_identifier: self.custom_key_identifier.clone(),
        }
    }
}

/// What to ask `addPassword` for. All optional: Graph defaults the lifetime to two years.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredentialRequest {
    /// Carries the rotation nonce, so a lost response can be matched on retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<Timestamp>,
}

/// A certificate credential's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyCredential {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `AsymmetricX509Cert`.
    #[serde(rename = "type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `Verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_key_identifier: Option<String>,
    /// Base64 DER of the certificate; sent on writes, `null` on reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A federated identity credential (workload identity trust).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FederatedIdentityCredential {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// ≤120 chars, URL-safe, immutable; the upsert key.
    pub name: String,
    pub issuer: String,
    pub subject: String,
    #[serde(deserialize_with = "null_default")]
    pub audiences: Vec<String>,
    /// Always sent, `null` when absent: an upsert that omitted it would keep an old description,
    /// so one could never be cleared.
    pub description: Option<String>,
}

/// A service principal (enterprise application).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServicePrincipal {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_owner_organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_principal_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role_assignment_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Read-only copy of the application's roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_roles: Option<Vec<AppRole>>,
    /// Read-only copy of the application's scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2_permission_scopes: Option<Vec<PermissionScope>>,
}

/// An app role granted to a principal on a resource service principal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppRoleAssignment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub app_role_id: String,
    pub principal_id: String,
    /// The resource service principal's object id.
    pub resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<Timestamp>,
}

/// A delegated permission grant (admin consent when `consentType` is `AllPrincipals`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OAuth2PermissionGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The client service principal's object id.
    pub client_id: String,
    /// `AllPrincipals` or `Principal`.
    pub consent_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The resource service principal's object id.
    pub resource_id: String,
    /// Space-separated scope values.
    pub scope: String,
}

impl OAuth2PermissionGrant {
    /// The granted scope values.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_whitespace()
    }
}

/// The result of `findTenantInformationByTenantId`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TenantInformation {
    pub tenant_id: String,
    pub display_name: Option<String>,
    pub default_domain_name: Option<String>,
    pub federation_brand_name: Option<String>,
}

/// A member of a directory collection (owners), whatever its type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DirectoryObject {
    pub id: String,
    /// `#microsoft.graph.user`, `#microsoft.graph.servicePrincipal`, …
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    pub display_name: Option<String>,
    pub user_principal_name: Option<String>,
    pub app_id: Option<String>,
}

/// One page of a collection.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct Page<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_default")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// The outcome of an upsert (`PATCH … Prefer: create-if-missing`): 201 with the object, or 204.
#[derive(Clone, Debug, PartialEq)]
pub enum Upserted<T> {
    Created(T),
    Updated,
}

impl<T> Upserted<T> {
    pub fn created(&self) -> Option<&T> {
        match self {
            Upserted::Created(t) => Some(t),
            Upserted::Updated => None,
        }
    }

    pub fn was_created(&self) -> bool {
        matches!(self, Upserted::Created(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes follow the v1.0 response examples of learn.microsoft.com/graph/api/application-get,
    // serviceprincipal-get, application-addpassword and friends.
    const APPLICATION: &str = r#"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
      "id": "03ef14b0-ca33-4840-8f4f-d6e91916010e",
      "deletedDateTime": null,
      "isFallbackPublicClient": null,
      "appId": "631a96bc-a705-4eda-9f99-fdaf9f54f6a2",
      "applicationTemplateId": null,
      "identifierUris": ["api://631a96bc-a705-4eda-9f99-fdaf9f54f6a2"],
      "createdDateTime": "2019-09-17T19:10:35.2742618Z",
      "description": null,
      "displayName": "contoso-api",
      "isDeviceOnlyAuthSupported": null,
      "groupMembershipClaims": null,
      "optionalClaims": null,
      "signInAudience": "AzureADMultipleOrgs",
      "tags": ["HideApp"],
      "tokenEncryptionKeyId": null,
      "uniqueName": "bookme-default-contoso",
      "api": {
        "requestedAccessTokenVersion": 2,
        "acceptMappedClaims": null,
        "knownClientApplications": [],
        "oauth2PermissionScopes": [{
          "adminConsentDescription": "Allow the app to access the API as the user.",
          "adminConsentDisplayName": "Access the API",
          "id": "a6b6e1e4-6b8e-4c2b-9c67-4a3d5e3f0c11",
          "isEnabled": true,
          "type": "User",
          "userConsentDescription": null,
          "userConsentDisplayName": null,
          "value": "access_as_user"
        }],
        "preAuthorizedApplications": [{
          "appId": "5b6e0a5c-8f8f-4d7e-a1a1-2c3b4d5e6f70",
          "delegatedPermissionIds": ["a6b6e1e4-6b8e-4c2b-9c67-4a3d5e3f0c11"]
        }]
      },
      "appRoles": [{
        "allowedMemberTypes": ["Application"],
        "description": "Systems calling the API",
        "displayName": "System",
        "id": "1b4f816e-5eaf-48b9-8613-7923830595ad",
        "isEnabled": true,
        "origin": "Application",
        "value": "System"
      }],
      "info": {"logoUrl": null, "marketingUrl": null},
      "keyCredentials": [],
      "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
      "passwordCredentials": [{
        "customKeyIdentifier": null,
        "displayName": "rotation-7f3a",
        "endDateTime": "2026-09-17T19:10:35.2742618Z",
        "hint": "Qzx",
        "keyId": "2cbd1df6-9d34-4a3f-88c8-6b0ca8c5e1b0",
        "secretText": null,
        "startDateTime": "2024-09-17T19:10:35.2742618Z"
      }],
      "publicClient": {"redirectUris": []},
      "requiredResourceAccess": [{
        "resourceAppId": "00000003-0000-0000-c000-000000000000",
        "resourceAccess": [{"id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "type": "Scope"}]
      }],
      "web": {
        "homePageUrl": null,
        "logoutUrl": null,
        "redirectUris": ["https://app.contoso.com/signin-oidc"],
        "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": true},
        "redirectUriSettings": []
      },
      "spa": {"redirectUris": ["brk-multihub://addin.contoso.com"]}
    }"#;

    #[test]
    fn decodes_a_graph_application() {
        let app: Application = serde_json::from_str(APPLICATION).unwrap();
        assert_eq!(
            app.app_id.as_deref(),
            Some("631a96bc-a705-4eda-9f99-fdaf9f54f6a2")
        );
        assert_eq!(app.unique_name.as_deref(), Some("bookme-default-contoso"));
        let api = app.api.as_ref().unwrap();
        assert_eq!(api.requested_access_token_version, Some(2));
        assert_eq!(
            api.oauth2_permission_scopes[0].value.as_deref(),
            Some("access_as_user")
        );
        assert_eq!(
            api.oauth2_permission_scopes[0].kind.as_deref(),
            Some("User")
        );
        assert_eq!(
            api.pre_authorized_applications[0]
                .delegated_permission_ids
                .len(),
            1
        );
        let roles = app.app_roles.as_ref().unwrap();
        assert_eq!(roles[0].allowed_member_types, vec!["Application"]);
        let pw = &app.password_credentials.as_ref().unwrap()[0];
        assert_eq!(pw.hint.as_deref(), Some("Qzx"));
        assert!(pw.end_date_time.unwrap() > pw.start_date_time.unwrap());
        let web = app.web.as_ref().unwrap();
        assert!(
            web.implicit_grant_settings
                .as_ref()
                .unwrap()
                .enable_id_token_issuance
        );
        assert_eq!(
            app.spa.unwrap().redirect_uris,
            vec!["brk-multihub://addin.contoso.com"]
        );
        assert_eq!(
            app.required_resource_access.unwrap()[0].resource_access[0].kind,
            "Scope"
        );
        assert_eq!(app.tags.unwrap(), vec!["HideApp"]);
    }

    #[test]
    fn tolerates_nulls_and_missing_fields() {
        let app: Application = serde_json::from_str(
            r#"{"id":"x","api":{"oauth2PermissionScopes":null,"knownClientApplications":null},
               "web":{"redirectUris":null,"implicitGrantSettings":null},"appRoles":null,"tags":null}"#,
        )
        .unwrap();
        assert!(app.api.unwrap().oauth2_permission_scopes.is_empty());
        assert!(app.web.unwrap().redirect_uris.is_empty());
        assert_eq!(app.app_roles, None);
        let sp: ServicePrincipal = serde_json::from_str("{}").unwrap();
        assert_eq!(sp, ServicePrincipal::default());
    }

    #[test]
    fn a_partial_application_serializes_only_set_fields() {
        let patch = Application {
            display_name: Some("x".into()),
            tags: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!({"displayName": "x", "tags": []})
        );
    }

    #[test]
    fn add_password_response_redacts_the_value() {
        let json = r#"{
          "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential",
          "customKeyIdentifier": null,
          "displayName": "rotation-7f3a",
          "endDateTime": "2026-01-10T18:03:35.4318735Z",
          "hint": "Y6e",
          "keyId": "f3fd3bcd-a4a0-4bd4-a1ae-cf1c7e1e4c8b",
          "secretText": "Y6e8Q~s1Zz2fH1ap7xZfeKhwXy4hMQtWzx2l7a_R",
          "startDateTime": "2024-01-10T18:03:35.4318735Z"
        }"#;
        let cred: NewPasswordCredential = serde_json::from_str(json).unwrap();
        assert_eq!(
            cred.secret_text.expose(),
            "Y6e8Q~s1Zz2fH1ap7xZfeKhwXy4hMQtWzx2l7a_R"
        );
        let debug = format!("{cred:?}");
        assert!(!debug.contains("Y6e8Q"), "{debug}");
        assert_eq!(cred.metadata().hint.as_deref(), Some("Y6e"));
    }

    #[test]
    fn decodes_service_principal_and_grants() {
        let sp: ServicePrincipal = serde_json::from_str(
            r#"{"id":"59e617e5-e447-4adc-8b88-00af644d7c92","appId":"631a96bc-a705-4eda-9f99-fdaf9f54f6a2",
                "displayName":"contoso-api","accountEnabled":true,"appRoleAssignmentRequired":false,
                "servicePrincipalType":"Application","tags":["WindowsAzureActiveDirectoryIntegratedApp"],
                "appRoles":[{"allowedMemberTypes":["Application"],"id":"1b4f816e-5eaf-48b9-8613-7923830595ad","isEnabled":true,"value":"System","displayName":"System","description":"d","origin":"Application"}],
                "oauth2PermissionScopes":[],"passwordCredentials":[],"alternativeNames":[]}"#,
        )
        .unwrap();
        assert_eq!(sp.account_enabled, Some(true));
        assert_eq!(sp.app_roles.unwrap()[0].value.as_deref(), Some("System"));

        let page: Page<OAuth2PermissionGrant> = serde_json::from_str(
            r#"{"@odata.context":"x","value":[{"clientId":"c","consentType":"AllPrincipals","id":"g1","principalId":null,"resourceId":"r","scope":" User.Read  openid "}],
                "@odata.nextLink":"https://graph.microsoft.com/v1.0/oauth2PermissionGrants?$skiptoken=abc"}"#,
        )
        .unwrap();
        assert_eq!(
            page.value[0].scopes().collect::<Vec<_>>(),
            vec!["User.Read", "openid"]
        );
        assert!(page.next_link.is_some());

        let a: AppRoleAssignment = serde_json::from_str(
            r#"{"id":"41W1zT6z1U-kJxf62svfp1HFE8pMZhxDun-ThPczmJE","deletedDateTime":null,"appRoleId":"ef7437e6-4f94-4a0a-a110-a439eb2aa8f7",
                "createdDateTime":"2021-02-02T04:22:45.9480566Z","principalDisplayName":"x","principalId":"p","principalType":"ServicePrincipal",
                "resourceDisplayName":"Microsoft Graph","resourceId":"r"}"#,
        )
        .unwrap();
        assert_eq!(a.principal_type.as_deref(), Some("ServicePrincipal"));

        let t: TenantInformation = serde_json::from_str(
            r#"{"@odata.context":"x","tenantId":"6babcaad-604b-40ac-a9d7-9fd97c0b779f","federationBrandName":null,"displayName":"Contoso","defaultDomainName":"contoso.onmicrosoft.com"}"#,
        )
        .unwrap();
        assert_eq!(t.display_name.as_deref(), Some("Contoso"));

        let f: FederatedIdentityCredential = serde_json::from_str(
            r#"{"id":"bdad0963-4a7a-43ae-b569-e67e54719ebd","name":"testing","issuer":"https://login.microsoftonline.com/3d1e2be9-a10a-4a0c-8380-7ce190f98ed9/v2.0","subject":"a7d388c3-5e3f-4959-ac7d-786b3383006a","description":null,"audiences":["api://AzureADTokenExchange"]}"#,
        )
        .unwrap();
        assert_eq!(f.audiences, vec!["api://AzureADTokenExchange"]);
    }
}
