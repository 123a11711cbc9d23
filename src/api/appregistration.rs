//! `AppRegistration`: one Entra app registration, its service principal, credentials and consent.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{Duration, Overlap, cel_seconds};
use super::{Conditions, GUID_PATTERN, LocalRef, OBJECT_NAME_PATTERN, Text};

/// The placeholder in identifier URIs that the operator replaces with the app's own appId.
pub const APP_ID_PLACEHOLDER: &str = "{appId}";

/// Entra's upper bound for a client secret's lifetime, as the portal enforces it (2 years).
pub const MAX_SECRET_LIFETIME: &str = "730d";

/// Desired state of one Microsoft Entra app registration and its service principal.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "entra.bookme.io",
    version = "v1alpha1",
    kind = "AppRegistration",
    namespaced,
    status = "AppRegistrationStatus",
    shortname = "appreg",
    category = "entra",
    doc = "An app registration in Microsoft Entra ID with its service principal, credentials and consent, kept in the declared state by entra-operator.",
    printcolumn(
        name = "Display Name",
        type_ = "string",
        json_path = ".spec.displayName"
    ),
    printcolumn(name = "App ID", type_ = "string", json_path = ".status.appId"),
    printcolumn(
        name = "Audience",
        type_ = "string",
        json_path = ".spec.signInAudience",
        priority = "1"
    ),
    printcolumn(
        name = "Consent",
        type_ = "string",
        json_path = ".status.consent.state"
    ),
    // A `date` column prints the time since the value, so a future expiry reads `<invalid>` on a
    // real API server: expiries are shown as the timestamp itself.
    printcolumn(
        name = "Secret Expires",
        type_ = "string",
        json_path = ".status.credentials[0].expiresAt"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.adopt) == has(oldSelf.adopt) && (!has(self.adopt) || self.adopt == oldSelf.adopt)").message("spec.adopt is immutable: it can only be set when the AppRegistration is created; create a new AppRegistration to adopt another application"))]
#[x_kube(validation = Rule::new("!(has(self.api) && has(self.api.requestedAccessTokenVersion) && self.api.requestedAccessTokenVersion == 1) || !self.signInAudience.endsWith('PersonalMicrosoftAccount')").message("apps that allow personal Microsoft accounts need api.requestedAccessTokenVersion: 2"))]
pub struct AppRegistrationSpec {
    /// Name shown in the Entra portal and on consent prompts, e.g. "BookMe Management API".
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,

    /// Free-text description of what the application is for (shown in the Entra portal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Who may sign in: `AzureADMyOrg` (this tenant only), `AzureADMultipleOrgs` (any Entra tenant),
    /// `AzureADandPersonalMicrosoftAccount` or `PersonalMicrosoftAccount`. Default `AzureADMyOrg`.
    #[serde(default)]
    pub sign_in_audience: SignInAudience,

    /// Identifier URIs (audiences) of the API. `{appId}` is replaced by the app's own application ID,
    /// so `api://{appId}` is the usual choice. Other forms: `api://<tenantId>/<name>` or an https URL on a
    /// domain verified in the tenant. Each must be unique in the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 255)))]
    #[x_kube(validation = Rule::new("self.all(u, u.startsWith('api://') || u.startsWith('https://') || u.startsWith('urn:'))").message("identifierUris must start with api://, https:// or urn:, e.g. api://{appId}"))]
    #[x_kube(validation = Rule::new("self.all(u, self.exists_one(v, v == u))").message("identifierUris must not repeat"))]
    pub identifier_uris: Vec<String>,

    /// What the application exposes as an API: delegated scopes, token version and pre-authorized clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSpec>,

    /// App roles that can be granted to users, groups or applications (application permissions when
    /// `allowedMemberTypes` contains `Application`). Removing a role disables it first, then deletes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // 100, like scopes: the pairwise uniqueness rule's estimated cost grows with the square of the
    // count, and at 200 it is over the API server's per-call runtime limit.
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.value == r.value))").message("appRoles values must be unique: two roles share a value"))]
    pub app_roles: Vec<AppRoleSpec>,

    /// Settings for server-side web apps: redirect URIs (https, or http://localhost), home page, logout URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebSpec>,

    /// Settings for single-page apps: redirect URIs (https, http://localhost, or `brk-multihub://<host>`
    /// for Nested App Authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spa: Option<SpaSpec>,

    /// Settings for public clients (desktop and mobile): redirect URIs with any scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_client: Option<PublicClientSpec>,

    /// API permissions the application needs, by resource and by permission *name* (e.g. `User.Read`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub required_resource_access: Vec<RequiredResourceAccess>,

    /// Grant admin consent for every required permission in this (the operator's) tenant. Needs the
    /// operator to hold AppRoleAssignment.ReadWrite.All and DelegatedPermissionGrant.ReadWrite.All.
    /// When false the operator only reports consent state.
    #[serde(default)]
    pub grant_admin_consent: bool,

    /// Settings of the service principal (the app's instance in this tenant).
    #[serde(default)]
    pub service_principal: ServicePrincipalSpec,

    /// Object IDs of users or service principals to add as owners of the application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 36)))]
    pub owners: Vec<Guid>,

    /// Users to add as owners of the application, by user principal name (e.g.
    /// `alice@contoso.com`). Each is resolved to its object ID with
    /// `GET /users/{userPrincipalName}?$select=id`, which needs the extra Graph application
    /// permission `User.Read.All` (opt-in: only used when this is set). The resolved IDs count as
    /// declared owners exactly like `owners` (added, recorded in `status.managedOwners`, removed
    /// once no longer declared, kept by `ownersManagement: Exact`). A name no user has is reported
    /// (`OwnerNotFound`) and, until it resolves, no owner is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 20),
        inner(length(min = 3, max = 113), regex(pattern = "^[^@\\s]+@[^@\\s]+$"))
    )]
    #[x_kube(validation = Rule::new("self.all(u, self.exists_one(v, v == u))").message("ownerUserPrincipalNames must not repeat"))]
    pub owner_user_principal_names: Vec<String>,

    /// Which owners the operator manages: `Additive` (default) adds `owners` and removes only the
    /// owners it added itself (listed in `status.managedOwners`) once they leave `owners`, so an
    /// owner someone else added stays; `Exact` makes the owners exactly `owners` and removes every
    /// other one. The operator's own identity is never removed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub owners_management: OwnersManagement,

    /// Client secrets (written to Kubernetes Secrets and rotated) and federated identity credentials.
    #[serde(default)]
    pub credentials: CredentialsSpec,

    /// What happens in Entra when this resource is deleted: `Delete` soft-deletes the application
    /// (restorable for 30 days); `Orphan` leaves it untouched. Default `Delete` for applications this
    /// resource created, `Orphan` for adopted ones (an adopted application is deleted only when this
    /// says `Delete` explicitly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Take over an existing application by its application (client) ID instead of creating one.
    /// Once set it cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<AdoptSpec>,
}

impl AppRegistrationSpec {
    /// The deletion policy in force: the declared one, else `Orphan` for an adopted application
    /// and `Delete` for one this resource created.
    pub fn effective_deletion_policy(&self) -> DeletionPolicy {
        match (self.deletion_policy, &self.adopt) {
            (Some(policy), _) => policy,
            (None, Some(_)) => DeletionPolicy::Orphan,
            (None, None) => DeletionPolicy::Delete,
        }
    }
}

/// A GUID such as a tenant, application or object ID.
pub type Guid = String;

/// How far the operator manages an application's owners.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OwnersManagement {
    /// Add the declared owners; remove only owners the operator added.
    #[default]
    Additive,
    /// The declared owners (and the operator's own identity) and nobody else.
    Exact,
}

/// Which accounts may sign in to the application.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SignInAudience {
    /// Accounts in this organizational directory only (single tenant).
    #[default]
    AzureADMyOrg,
    /// Accounts in any organizational directory (multi-tenant).
    AzureADMultipleOrgs,
    /// Any organizational directory and personal Microsoft accounts.
    AzureADandPersonalMicrosoftAccount,
    /// Personal Microsoft accounts only.
    PersonalMicrosoftAccount,
}

impl SignInAudience {
    /// Graph's spelling of the value.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignInAudience::AzureADMyOrg => "AzureADMyOrg",
            SignInAudience::AzureADMultipleOrgs => "AzureADMultipleOrgs",
            SignInAudience::AzureADandPersonalMicrosoftAccount => {
                "AzureADandPersonalMicrosoftAccount"
            }
            SignInAudience::PersonalMicrosoftAccount => "PersonalMicrosoftAccount",
        }
    }
}

/// The API the application exposes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Access token version the API accepts: 1 or 2. Entra's default (unset) is 1; NAA and personal
    /// accounts need 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2))]
    pub requested_access_token_version: Option<i32>,

    /// Delegated permissions (scopes) the API exposes, e.g. `Access`. Removing a scope disables it
    /// first, then deletes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.value == r.value))").message("api.scopes values must be unique: two scopes share a value"))]
    pub scopes: Vec<ScopeSpec>,

    /// Client applications trusted to get tokens for these scopes without a consent prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub pre_authorized_applications: Vec<PreAuthorizedApplication>,

    /// Client applications whose consent is bundled with this API's (Graph's
    /// `api.knownClientApplications`): consenting to the client also consents to this API. When set,
    /// the application's list is exactly this one, and an entry removed here is removed in Entra;
    /// when left out, whatever the application already has is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub known_client_applications: Option<Vec<KnownClientApplication>>,
}

/// A client application whose consent is bundled with this API's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.appRef) != has(self.appId)").message("set exactly one of appRef (an AppRegistration in this namespace) or appId"))]
pub struct KnownClientApplication {
    /// The client as an AppRegistration in this namespace; its appId is read from its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<LocalRef>,
    /// The client's application (client) ID, for apps not managed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36), regex(pattern = GUID_PATTERN))]
    pub app_id: Option<Guid>,
}

/// One delegated permission (OAuth2 scope) the API exposes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpec {
    /// The scope's value as it appears in the `scp` claim, e.g. `Access` or `PexipScheduling.Access`.
    /// No spaces; at most 120 characters; must not start with a dot.
    #[schemars(length(min = 1, max = 120), regex(pattern = "^[^\\s.][^\\s]*$"))]
    pub value: String,
    /// Who can consent: `AdminsOnly` (default) or `AdminsAndUsers`.
    #[serde(default)]
    pub who_can_consent: WhoCanConsent,
    /// Title shown to an admin on the consent prompt. Defaults to the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub admin_consent_display_name: Option<String>,
    /// Description shown to an admin on the consent prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub admin_consent_description: Option<String>,
    /// Title shown to a user on the consent prompt (when users may consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub user_consent_display_name: Option<String>,
    /// Description shown to a user on the consent prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub user_consent_description: Option<String>,
    /// Whether the scope can be requested. Set false to retire a scope before removing it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// Who may consent to a delegated permission.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WhoCanConsent {
    /// Only administrators (Graph `type: Admin`).
    #[default]
    AdminsOnly,
    /// Administrators and users (Graph `type: User`).
    AdminsAndUsers,
}

/// A client application pre-authorized for some of this API's scopes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.appRef) != has(self.appId)").message("set exactly one of appRef (an AppRegistration in this namespace) or appId"))]
pub struct PreAuthorizedApplication {
    /// The client as an AppRegistration in this namespace; its appId is read from its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<LocalRef>,
    /// The client's application (client) ID, for apps not managed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36), regex(pattern = GUID_PATTERN))]
    pub app_id: Option<Guid>,
    /// Scope values (from `api.scopes`) the client is pre-authorized for. Empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 120)))]
    pub scopes: Vec<String>,
}

/// One app role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleSpec {
    /// The role's value as it appears in the `roles` claim, e.g. `System` or `Admin`.
    /// No spaces; at most 120 characters; must not start with a dot.
    #[schemars(length(min = 1, max = 120), regex(pattern = "^[^\\s.][^\\s]*$"))]
    pub value: String,
    /// Name shown in the portal and on consent prompts. Defaults to the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// What the role allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Who can be granted the role: `User` (users and groups), `Application` (client apps), or both.
    #[schemars(length(min = 1, max = 2))]
    pub allowed_member_types: Vec<MemberType>,
    /// Whether the role can be assigned. Set false to retire a role before removing it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// Who an app role can be granted to.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum MemberType {
    User,
    Application,
}

/// Web platform settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSpec {
    /// Where Entra may send authorization codes: `https://…`, or `http://localhost[:port][/path]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub redirect_uris: Vec<WebRedirectUri>,
    /// The application's home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = "^https?://\\S+$"))]
    pub home_page_url: Option<String>,
    /// Where Entra sends the user after sign-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = "^https?://\\S+$"))]
    pub logout_url: Option<String>,
    /// Implicit grant: issue tokens from the authorize endpoint. Off unless needed by a legacy client.
    #[serde(default)]
    pub implicit_grant: ImplicitGrantSpec,
}

/// A web redirect URI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct WebRedirectUri(
    #[schemars(
        length(min = 1, max = 256),
        regex(
            pattern = "^(https://[^\\s*]+|http://(localhost|127\\.0\\.0\\.1)(:[0-9]{1,5})?(/[^\\s*]*)?)$"
        )
    )]
    pub String,
);

/// Implicit grant settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImplicitGrantSpec {
    /// Issue access tokens from the authorize endpoint.
    #[serde(default)]
    pub access_tokens: bool,
    /// Issue ID tokens from the authorize endpoint.
    #[serde(default)]
    pub id_tokens: bool,
}

/// Single-page application settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpaSpec {
    /// Redirect URIs: `https://…`, `http://localhost[:port][/path]`, or `brk-multihub://<host[:port]>`
    /// (origin only) for Nested App Authentication in Outlook add-ins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub redirect_uris: Vec<SpaRedirectUri>,
}

/// A single-page app redirect URI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct SpaRedirectUri(
    #[schemars(
        length(min = 1, max = 256),
        regex(
            pattern = "^(https://[^\\s*]+|http://(localhost|127\\.0\\.0\\.1)(:[0-9]{1,5})?(/[^\\s*]*)?|brk-multihub://[a-zA-Z0-9.-]+(:[0-9]{1,5})?)$"
        )
    )]
    pub String,
);

/// Public client (desktop and mobile) settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicClientSpec {
    /// Redirect URIs with any scheme, e.g. `msal<appId>://auth` or `http://localhost`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub redirect_uris: Vec<PublicClientRedirectUri>,
}

/// A public client redirect URI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct PublicClientRedirectUri(
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = "^[a-zA-Z][a-zA-Z0-9+.-]*://[^\\s]+$")
    )]
    pub String,
);

/// API permissions needed on one resource (API).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.wellKnownApi) ? 1 : 0) + (has(self.appId) ? 1 : 0) + (has(self.appRef) ? 1 : 0) == 1").message("name the resource API with exactly one of wellKnownApi, appId or appRef"))]
#[x_kube(validation = Rule::new("size(self.delegated) + size(self.application) > 0").message("list at least one permission under delegated or application"))]
pub struct RequiredResourceAccess {
    /// A well-known Microsoft API by name, e.g. `MicrosoftGraph`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub well_known_api: Option<WellKnownApi>,
    /// The resource API's application ID, for APIs not managed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36), regex(pattern = GUID_PATTERN))]
    pub app_id: Option<Guid>,
    /// The resource API as an AppRegistration in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<LocalRef>,
    /// Delegated permissions (scope values) by name, e.g. `User.Read`.
    #[serde(default)]
    #[schemars(length(max = 400), inner(length(max = 120)))]
    pub delegated: Vec<String>,
    /// Application permissions (app role values) by name, e.g. `System` or `User.Read.All`.
    #[serde(default)]
    #[schemars(length(max = 400), inner(length(max = 120)))]
    pub application: Vec<String>,
}

/// Microsoft APIs known by name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WellKnownApi {
    /// Microsoft Graph (appId 00000003-0000-0000-c000-000000000000).
    MicrosoftGraph,
}

impl WellKnownApi {
    /// The API's application ID, the same in every tenant.
    pub fn app_id(&self) -> &'static str {
        match self {
            WellKnownApi::MicrosoftGraph => "00000003-0000-0000-c000-000000000000",
        }
    }
}

/// Service principal settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalSpec {
    /// Require users and apps to be assigned an app role before they get a token. Default false.
    #[serde(default)]
    pub app_role_assignment_required: bool,
    /// Show the app to users on My Apps. Default true (false adds the `HideApp` tag).
    #[serde(default = "default_true")]
    pub visible_to_users: bool,
    /// Allow sign-in and token issuance for the app (the service principal's `accountEnabled`). Default true.
    #[serde(default = "default_true")]
    pub enabled_for_sign_in: bool,
    /// Extra tags on the service principal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 256)))]
    pub tags: Vec<String>,
}

impl Default for ServicePrincipalSpec {
    fn default() -> Self {
        ServicePrincipalSpec {
            app_role_assignment_required: false,
            visible_to_users: true,
            enabled_for_sign_in: true,
            tags: Vec::new(),
        }
    }
}

/// Credentials the operator manages.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.passwords) || !has(self.certificates) || self.passwords.all(p, self.certificates.all(c, c.secretName != p.secretName))").message("a password and a certificate cannot share a secretName"))]
pub struct CredentialsSpec {
    /// Client secrets, each written to its own Kubernetes Secret and rotated before it expires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.secretName == p.secretName))").message("each password must use its own secretName"))]
    pub passwords: Vec<PasswordCredentialSpec>,
    /// Certificates (recommended for production): each generated in the cluster (RSA key pair and
    /// self-signed certificate; the private key never leaves the Secret) or taken from an existing
    /// Secret such as one cert-manager issues, uploaded to the application and rotated with
    /// overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.secretName == p.secretName))").message("each certificate must use its own secretName"))]
    pub certificates: Vec<CertificateCredentialSpec>,
    /// Federated identity credentials (workload identity): tokens from a trusted issuer are accepted
    /// in place of a secret. At most 20 per application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("federated credential names must be unique"))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.issuer == p.issuer && q.subject == p.subject))").message("two federated credentials have the same issuer and subject"))]
    pub federated: Vec<FederatedCredentialSpec>,
    /// Which federated credentials on the application the operator manages: `Additive` (default)
    /// touches only the ones it put there (listed in `status.federatedCredentials`), so a trust
    /// someone else added stays; `Exact` makes the application's federated credentials exactly
    /// `federated` and deletes every other one.
    #[serde(default, skip_serializing_if = "is_default")]
    pub federated_management: FederatedManagement,
}

/// How far the operator manages an application's federated credentials.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FederatedManagement {
    /// Create and update the declared ones; delete only those the operator created.
    #[default]
    Additive,
    /// The declared ones and nothing else.
    Exact,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn lifetime_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} <= {}",
        cel_seconds("self.lifetime"),
        super::duration::MAX_SECRET_LIFETIME_SECS
    ))
    .message("lifetime must be at most 730d (2 years, Entra's limit for a client secret)")
}

/// Shortest client-secret lifetime: shorter ones would rotate on nearly every reconcile and burn the
/// tenant's shared Graph write budget. Real lifetimes are days; the floor stops the degenerate ones
/// and still lets tests watch a rotation happen.
pub const MIN_SECRET_LIFETIME_SECS: u64 = 30;
/// Shortest time a secret is used before its rotation is due (`lifetime - renewBefore`): at most
/// one rotation per secret every 10 seconds, whatever the reconcile rate.
pub const MIN_SECRET_USE_SECS: u64 = 10;

pub(crate) fn lifetime_floor_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} >= {MIN_SECRET_LIFETIME_SECS}",
        cel_seconds("self.lifetime")
    ))
    .message("lifetime must be at least 30s: a shorter secret would be rotated on nearly every reconcile")
}

pub(crate) fn use_floor_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} - {} >= {MIN_SECRET_USE_SECS}",
        cel_seconds("self.lifetime"),
        cel_seconds("self.renewBefore")
    ))
    .message("lifetime - renewBefore must be at least 10s: each secret must be in use for a while before its rotation is due")
}

fn renew_before_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} < {}",
        cel_seconds("self.renewBefore"),
        cel_seconds("self.lifetime")
    ))
    .message("renewBefore must be shorter than lifetime, or the secret would be rotated as soon as it is created")
}

/// A client secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = lifetime_rule())]
#[x_kube(validation = renew_before_rule())]
#[x_kube(validation = lifetime_floor_rule())]
#[x_kube(validation = use_floor_rule())]
pub struct PasswordCredentialSpec {
    /// Name of the Kubernetes Secret (in this namespace) that receives the value, with keys
    /// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST, tokenEndpoint,
    /// keyId and expiresAt. The operator owns this Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub secret_name: Text,
    /// How long each secret is valid, e.g. `730d` (default, Entra's 2-year maximum) or `90d`.
    #[serde(default = "default_lifetime")]
    pub lifetime: Duration,
    /// How long before expiry the operator rotates, e.g. `60d` (default). Must be shorter than lifetime.
    #[serde(default = "default_renew_before")]
    pub renew_before: Duration,
    /// How long the previous secret stays valid after a rotation, so consumers can pick up the new one:
    /// a duration (default `7d`) or `UntilExpiry`.
    #[serde(default = "default_overlap")]
    pub overlap: Overlap,
}

/// Where a certificate comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CertificateSource {
    /// The operator generates an RSA key pair and a self-signed certificate, writes both to
    /// `secretName` (type `kubernetes.io/tls`) before the certificate is uploaded, and rotates it
    /// `renewBefore` its expiry.
    #[default]
    Generated,
    /// `secretName` already exists and is someone else's (for example cert-manager's): the
    /// operator reads `tls.crt`, uploads the certificate, and follows renewals (a new certificate
    /// is added, the old one removed after `overlap`). It never writes that Secret; `lifetime`
    /// and `renewBefore` do not apply.
    Secret,
}

fn certificate_lifetime_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "{} <= {}",
        cel_seconds("self.lifetime"),
        MAX_CERTIFICATE_LIFETIME_SECS
    ))
    .message("lifetime must be at most 1095d (3 years)")
}

/// Longest certificate lifetime the operator generates: our choice (Entra publishes no cap for
/// certificate credentials; the platform guide asks for yearly rotation, the default).
pub const MAX_CERTIFICATE_LIFETIME_SECS: u64 = 1095 * 86_400;

/// A certificate credential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = certificate_lifetime_rule())]
#[x_kube(validation = renew_before_rule())]
#[x_kube(validation = lifetime_floor_rule())]
#[x_kube(validation = use_floor_rule())]
pub struct CertificateCredentialSpec {
    /// Name of the Kubernetes Secret (in this namespace). Generated: the operator owns it and
    /// writes `tls.crt`, `tls.key`, `client.pem` (certificate and key in one file, for
    /// AZURE_CLIENT_CERTIFICATE_PATH), AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST,
    /// thumbprint and expiresAt. Secret: the existing Secret to read.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub secret_name: Text,
    /// `Generated` (default) or `Secret`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: CertificateSource,
    /// How long each generated certificate is valid, e.g. `365d` (default).
    #[serde(default = "default_certificate_lifetime")]
    pub lifetime: Duration,
    /// How long before expiry the operator generates the next one, e.g. `30d` (default).
    #[serde(default = "default_certificate_renew_before")]
    pub renew_before: Duration,
    /// How long the previous certificate stays valid in Entra after a rotation: a duration
    /// (default `7d`) or `UntilExpiry`.
    #[serde(default = "default_overlap")]
    pub overlap: Overlap,
}

fn default_certificate_lifetime() -> Duration {
    Duration::from_secs(365 * 86_400)
}

fn default_certificate_renew_before() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// A federated identity credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredentialSpec {
    /// Unique, URL-safe name within the application (immutable in Entra; renaming replaces it).
    #[schemars(
        length(min = 1, max = 120),
        regex(pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    )]
    pub name: String,
    /// Token issuer URL, e.g. the AKS cluster's OIDC issuer.
    #[schemars(length(min = 1, max = 600), regex(pattern = "^https://\\S+$"))]
    pub issuer: String,
    /// Subject of the external token, e.g. `system:serviceaccount:<namespace>:<name>`.
    #[schemars(length(min = 1, max = 600))]
    pub subject: String,
    /// Accepted audiences. Default `api://AzureADTokenExchange`.
    #[serde(default = "default_audiences")]
    #[schemars(length(min = 1, max = 1), inner(length(min = 1, max = 600)))]
    pub audiences: Vec<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 600))]
    pub description: Option<String>,
}

/// What to do in Entra when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Soft-delete the application (restorable for 30 days).
    #[default]
    Delete,
    /// Leave the application in Entra.
    Orphan,
}

/// Adoption of an existing application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptSpec {
    /// Application (client) ID of the existing app registration to manage.
    #[schemars(length(max = 36), regex(pattern = GUID_PATTERN))]
    pub app_id: Guid,
}

fn default_true() -> bool {
    true
}

fn default_lifetime() -> Duration {
    MAX_SECRET_LIFETIME.parse().expect("valid constant")
}

fn default_renew_before() -> Duration {
    Duration::from_secs(60 * 86_400)
}

fn default_overlap() -> Overlap {
    Overlap::For(Duration::from_secs(7 * 86_400))
}

fn default_audiences() -> Vec<String> {
    vec!["api://AzureADTokenExchange".to_string()]
}

/// Observed state of an AppRegistration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppRegistrationStatus {
    /// Ready, Synced, CredentialsReady and ConsentGranted, each with a reason and message.
    #[serde(default)]
    pub conditions: Conditions,
    /// The `metadata.generation` that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Application (client) ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Text>,
    /// Object ID of the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The application's `uniqueName` in Entra, its stable key: `<prefix>.<namespace>.<name>` for
    /// applications created since 0.2, `<prefix>-<namespace>-<name>` for older ones (a uniqueName
    /// cannot change in Graph, so the one recorded here is kept). Unset for adopted applications
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    /// Object ID of the service principal in this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_id: Option<String>,
    /// Tenant the application lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Text>,
    /// Identifier URIs with `{appId}` resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier_uris: Vec<String>,
    /// ID of each exposed scope, by value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scope_ids: BTreeMap<String, String>,
    /// ID of each app role, by value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_ids: BTreeMap<String, String>,
    /// Consent state of the required permissions in this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentStatus>,
    /// State of each managed client secret (never the value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<PasswordCredentialStatus>,
    /// State of each managed certificate (never the private key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateCredentialStatus>,
    /// Names of the federated identity credentials in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_credentials: Vec<String>,
    /// Client secrets on the application that this operator did not create (left alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_credentials: Option<i32>,
    /// Owners (object IDs) the operator added to the application. With `ownersManagement:
    /// Additive` only these are removed when they leave `spec.owners`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_owners: Vec<String>,
    /// Permissions the operator granted in this tenant (`grantAdminConsent`). Only these are
    /// revoked when `spec.requiredResourceAccess` no longer declares them; a grant someone else
    /// made is left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_permissions: Vec<GrantedPermission>,
}

/// One permission the operator granted: an app role assignment (`Application`) or a scope value in
/// a delegated grant (`Delegated`).
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct GrantedPermission {
    /// The resource API's application (client) ID.
    pub resource_app_id: Text,
    /// The object ID of the resource API's service principal in this tenant.
    pub resource_service_principal_id: Text,
    /// `Application` (an app role) or `Delegated` (a scope).
    pub kind: GrantedPermissionKind,
    /// The app role's or scope's ID.
    pub id: Text,
    /// The app role's or scope's value, e.g. `User.Read`.
    pub value: Text,
}

/// Whether a granted permission is an app role or a delegated scope.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum GrantedPermissionKind {
    /// An application permission (app role assignment).
    #[default]
    Application,
    /// A delegated permission (a value in an `AllPrincipals` oauth2PermissionGrant).
    Delegated,
}

/// Consent state of an application's required permissions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentStatus {
    /// `Granted`, `Partial`, `NotGranted` or `NotRequired`.
    pub state: ConsentState,
    /// Permissions not yet consented, as `<api>/<permission>` (e.g. `MicrosoftGraph/User.Read`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Where a tenant administrator grants consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_consent_url: Option<String>,
}

/// Whether required permissions are consented.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConsentState {
    /// Every required permission is consented.
    Granted,
    /// Some required permissions are consented.
    Partial,
    /// None of the required permissions is consented.
    NotGranted,
    /// The application requires no permissions.
    #[default]
    NotRequired,
}

/// State of one managed client secret. Its value is only ever in the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredentialStatus {
    /// The Secret holding the current value.
    pub secret_name: Text,
    /// Key ID of the current credential in Entra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// First characters of the current value (Entra's `hint`), to recognise an edited Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// When the current credential expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Text>,
    /// When the operator will rotate it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<Text>,
    /// Credentials replaced by rotations, each still valid until its own `revokeAt`. Several can be
    /// in overlap at once (a second rotation inside the overlap keeps the first one's window).
    /// Statuses written before this was a list hold a single object here; it is read as a list of
    /// one and written back as a list.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub previous: Vec<PreviousCredential>,
    /// A rotation in progress (write-ahead record; survives crashes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingRotation>,
    /// The value of the `entra.bookme.io/rotate` annotation that the last rotation honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_token: Option<String>,
    /// When the current credential was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// A handover confirmation (the `entra.bookme.io/handover-confirmed` annotation naming the
    /// current credential) that shortened the previous credentials' revoke times. Cleared by the
    /// next rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_confirmed: Option<HandoverConfirmation>,
}

/// State of one managed certificate. Its private key is only ever in the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateCredentialStatus {
    /// The Secret holding the current certificate and key.
    pub secret_name: Text,
    /// SHA-1 thumbprint (hex) of the current certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Key ID of the current certificate in Entra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When the current certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the operator will generate the next one (RFC 3339; generated certificates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
    /// Certificates replaced by rotations, each removed from Entra at its own `revokeAt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<PreviousCertificate>,
    /// A rotation in progress: the thumbprint of the certificate being put in place (write-ahead
    /// record, written before the certificate is uploaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingCertificate>,
    /// The value of the `entra.bookme.io/rotate` annotation that the last rotation honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_token: Option<String>,
    /// When the current certificate became current (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// A certificate kept after rotation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousCertificate {
    /// SHA-1 thumbprint (hex).
    pub thumbprint: String,
    /// Key ID in Entra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When the operator removes it (RFC 3339).
    pub revoke_at: String,
}

/// A certificate rotation that has started but not finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCertificate {
    /// SHA-1 thumbprint (hex) of the new certificate.
    pub thumbprint: String,
    /// When the rotation started (RFC 3339).
    pub since: String,
}

/// Consumers confirmed that they use the current credential: the previous ones may go early.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandoverConfirmation {
    /// Key ID of the credential the confirmation names (the current one).
    pub key_id: String,
    /// When the operator first saw the confirmation (RFC 3339); previous credentials are revoked
    /// no later than this plus the confirmation delay.
    pub confirmed_at: String,
}

/// A credential kept after rotation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousCredential {
    /// Key ID in Entra.
    pub key_id: String,
    /// When the operator removes it (RFC 3339).
    pub revoke_at: String,
}

/// Reads `previous` as a list, an object (the shape before it became a list) or null.
fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<PreviousCredential>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<PreviousCredential>),
        One(PreviousCredential),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::Many(list)) => list,
        Some(OneOrMany::One(one)) => vec![one],
    })
}

/// A rotation that has started but not finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRotation {
    /// Random marker put in the new credential's displayName, to find it after a crash.
    pub nonce: String,
    /// When the rotation started (RFC 3339).
    pub since: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_reads_the_old_single_object_shape_and_writes_a_list() {
        let old: PasswordCredentialStatus = serde_json::from_value(serde_json::json!({
            "secretName": "s",
            "previous": {"keyId": "k0", "revokeAt": "2030-01-01T00:00:00Z"}
        }))
        .unwrap();
        assert_eq!(
            old.previous,
            vec![PreviousCredential {
                key_id: "k0".into(),
                revoke_at: "2030-01-01T00:00:00Z".into()
            }]
        );
        let written = serde_json::to_value(&old).unwrap();
        assert_eq!(
            written["previous"],
            serde_json::json!([{"keyId": "k0", "revokeAt": "2030-01-01T00:00:00Z"}])
        );
        for absent in [
            serde_json::json!({"secretName": "s"}),
            serde_json::json!({"secretName": "s", "previous": null}),
            serde_json::json!({"secretName": "s", "previous": []}),
        ] {
            let status: PasswordCredentialStatus = serde_json::from_value(absent).unwrap();
            assert!(status.previous.is_empty());
            assert!(
                serde_json::to_value(&status)
                    .unwrap()
                    .get("previous")
                    .is_none()
            );
        }
        let many: PasswordCredentialStatus = serde_json::from_value(serde_json::json!({
            "secretName": "s",
            "previous": [
                {"keyId": "k0", "revokeAt": "2030-01-01T00:00:00Z"},
                {"keyId": "k1", "revokeAt": "2030-02-01T00:00:00Z"}
            ]
        }))
        .unwrap();
        assert_eq!(many.previous.len(), 2);
    }
}
