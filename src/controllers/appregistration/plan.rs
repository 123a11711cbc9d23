//! The plan stage of the AppRegistration controller: a pure function from the spec, the resolved
//! references and what Graph holds to the ordered list of Graph writes and the status to report.
//!
//! Graph's rules live here, not in the executor: upsert by `uniqueName`, only changed properties,
//! two-step removal of roles and scopes, app before service principal before consent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::api::AppRegistrationSpec;
use crate::api::appregistration::ConsentStatus;

use super::consent::{ConsentSettings, plan_consent};
use super::desired::{DesiredApplication, MANAGED_PROPERTIES, render_application};
use super::diff::json_matches;
use super::ids;
use super::observed::{Observed, ObservedServicePrincipal};
use super::references::ResolvedReferences;

/// Tag every integrated app's service principal carries (the portal sets it too).
pub const INTEGRATED_APP_TAG: &str = "WindowsAzureActiveDirectoryIntegratedApp";
/// Service principal tag that hides the app from users on My Apps.
pub const HIDE_APP_TAG: &str = "HideApp";

/// One Graph write, in the order the executor must run them. Bodies are Graph JSON.
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
    /// `DELETE /applications/{application_id}/federatedIdentityCredentials(name='{name}')`.
    DeleteFederatedCredential {
        application_id: String,
        name: String,
    },
    /// `PATCH /applications/{application_id}/federatedIdentityCredentials(name='{name}')` with
    /// `Prefer: create-if-missing`.
    UpsertFederatedCredential {
        application_id: String,
        name: String,
        body: Value,
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
    /// `PATCH /oauth2PermissionGrants/{id}` `{scope}` (the whole new scope string).
    PatchOAuth2PermissionGrant { id: String, scope: String },
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
        }
    }
}

/// Operator-wide settings the plan needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSettings {
    /// Prefix of every `uniqueName` (default [`ids::DEFAULT_UNIQUE_NAME_PREFIX`]).
    pub unique_name_prefix: String,
    /// Authority and tenant, for the admin-consent URL.
    pub consent: ConsentSettings,
}

/// Everything the plan is computed from.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    pub spec: &'a AppRegistrationSpec,
    pub name: &'a str,
    pub namespace: &'a str,
    pub references: &'a ResolvedReferences,
    pub observed: &'a Observed,
    pub settings: &'a PlanSettings,
}

/// The status fields the plan knows (the credentials part belongs to the rotation state machine).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlannedStatus {
    pub app_id: Option<String>,
    pub object_id: Option<String>,
    pub unique_name: Option<String>,
    pub service_principal_id: Option<String>,
    /// With `{appId}` resolved; empty until the appId is known.
    pub identifier_uris: Vec<String>,
    pub scope_ids: BTreeMap<String, String>,
    pub role_ids: BTreeMap<String, String>,
    /// Consent as observed before this plan's grants run.
    pub consent: ConsentStatus,
    pub federated_credentials: Vec<String>,
}

/// The outcome of planning one AppRegistration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Graph writes, in order: application, service principal, owners, federated credentials,
    /// consent. Empty for a resync of an unchanged app.
    pub operations: Vec<GraphOperation>,
    pub status: PlannedStatus,
    /// What could not be planned (the rest is still planned).
    pub errors: Vec<PlanError>,
    /// Observe and plan again right after executing: a create returns IDs the rest of the plan
    /// needs, and grants change the consent state the status reports.
    pub reobserve_after_execute: bool,
}

impl Plan {
    /// Reason and message for the `Synced`/`Ready` conditions when something could not be planned.
    pub fn blocking_reason(&self) -> Option<(&'static str, String)> {
        let first = self.errors.first()?;
        let message = self
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Some((first.reason(), message))
    }
}

/// Plans everything the AppRegistration needs in Graph.
pub fn plan_app_registration(input: PlanInput<'_>) -> Plan {
    let PlanInput {
        spec,
        name,
        namespace,
        references,
        observed,
        settings,
    } = input;
    let mut plan = Plan::default();
    plan.errors.extend(
        references
            .waiting
            .iter()
            .map(|name| PlanError::WaitingForReference { name: name.clone() }),
    );

    let own_unique_name = ids::unique_name(&settings.unique_name_prefix, namespace, name);
    let observed_app = observed.application.as_ref();
    if let (Some(adopt), None) = (&spec.adopt, observed_app) {
        plan.errors.push(PlanError::AdoptedApplicationNotFound {
            app_id: adopt.app_id.clone(),
        });
        return plan;
    }
    // An adopted app keeps its uniqueName (possibly none); its entitlement IDs derive from ours.
    let unique_name = match &spec.adopt {
        Some(_) => observed_app
            .and_then(|a| a.get("uniqueName"))
            .and_then(Value::as_str)
            .map(str::to_string),
        None => Some(own_unique_name.clone()),
    };
    let app_id = observed_app
        .and_then(|a| a.get("appId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let object_id = observed_app
        .and_then(|a| a.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);

    let desired = render_application(
        spec,
        &own_unique_name,
        app_id.as_deref(),
        observed,
        references,
    );
    plan.errors.extend(desired.errors.iter().cloned());
    plan.status = PlannedStatus {
        app_id: app_id.clone(),
        object_id: object_id.clone(),
        unique_name,
        identifier_uris: desired.identifier_uris.clone(),
        scope_ids: enabled_only(&desired.scope_ids, spec, true),
        role_ids: enabled_only(&desired.role_ids, spec, false),
        ..PlannedStatus::default()
    };

    let (Some(app_id), Some(object_id)) = (app_id, object_id) else {
        // First create: the rest (identifier URIs with the appId, service principal, owners,
        // credentials, consent) needs the IDs Graph assigns, so it waits for the next plan.
        plan.operations.push(GraphOperation::UpsertApplication {
            unique_name: own_unique_name,
            body: Value::Object(writable_properties(&desired)),
        });
        plan.status.consent = plan_consent(
            &desired.required_permissions,
            None,
            None,
            observed,
            false,
            &settings.consent,
        )
        .status;
        plan.reobserve_after_execute = true;
        return plan;
    };

    if let Some(body) = application_patch(&desired, observed_app) {
        plan.operations.push(GraphOperation::PatchApplication {
            object_id: object_id.clone(),
            body,
        });
    }

    plan.operations
        .extend(plan_service_principal(spec, &app_id, observed));
    plan.status.service_principal_id = observed.service_principal.as_ref().map(|sp| sp.id.clone());

    plan.operations
        .extend(plan_owners(spec, &object_id, observed));
    plan.operations
        .extend(plan_federated_credentials(spec, &object_id, observed));
    plan.status.federated_credentials = spec
        .credentials
        .federated
        .iter()
        .map(|f| f.name.clone())
        .collect();

    let our_sp_id = observed.service_principal.as_ref().map(|sp| sp.id.as_str());
    let consent = plan_consent(
        &desired.required_permissions,
        our_sp_id,
        Some(&app_id),
        observed,
        spec.grant_admin_consent,
        &settings.consent,
    );
    plan.operations.extend(consent.operations);
    plan.status.consent = consent.status;

    plan.reobserve_after_execute = !plan.operations.is_empty();
    plan
}

/// Scope or role IDs of the entitlements the spec declares enabled (what clients may request).
fn enabled_only(
    ids: &BTreeMap<String, String>,
    spec: &AppRegistrationSpec,
    scopes: bool,
) -> BTreeMap<String, String> {
    let enabled: BTreeSet<&str> = if scopes {
        spec.api
            .iter()
            .flat_map(|a| &a.scopes)
            .filter(|s| s.enabled)
            .map(|s| s.value.as_str())
            .collect()
    } else {
        spec.app_roles
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.value.as_str())
            .collect()
    };
    ids.iter()
        .filter(|(value, _)| enabled.contains(value.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The desired properties that may be written now (not held back).
fn writable_properties(desired: &DesiredApplication) -> Map<String, Value> {
    desired
        .properties
        .iter()
        .filter(|(key, _)| !desired.held.contains(key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The PATCH body with only the top-level properties that differ from Graph, each sent whole
/// (complex properties like `web` and `api` included: Graph's handling of a partial nested object
/// is not documented, and sending all of it is correct either way). `None` when nothing differs.
pub fn application_patch(desired: &DesiredApplication, observed: Option<&Value>) -> Option<Value> {
    let mut body = Map::new();
    for (key, want) in writable_properties(desired) {
        debug_assert!(MANAGED_PROPERTIES.contains(&key.as_str()));
        if !json_matches(&want, observed.and_then(|o| o.get(&key))) {
            body.insert(key, want);
        }
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

/// Tags the service principal must carry: the integrated-app tag, `HideApp` when hidden, the spec's
/// tags, and the application's own tags (Graph shows the union on the service principal).
fn desired_service_principal_tags(
    spec: &AppRegistrationSpec,
    observed: &Observed,
) -> BTreeSet<String> {
    let mut tags: BTreeSet<String> = spec.service_principal.tags.iter().cloned().collect();
    tags.insert(INTEGRATED_APP_TAG.to_string());
    if !spec.service_principal.visible_to_users {
        tags.insert(HIDE_APP_TAG.to_string());
    }
    if let Some(app_tags) = observed
        .application
        .as_ref()
        .and_then(|a| a.get("tags"))
        .and_then(Value::as_array)
    {
        tags.extend(
            app_tags
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
    }
    tags
}

fn plan_service_principal(
    spec: &AppRegistrationSpec,
    app_id: &str,
    observed: &Observed,
) -> Option<GraphOperation> {
    let sp_spec = &spec.service_principal;
    let tags = desired_service_principal_tags(spec, observed);
    let Some(sp) = &observed.service_principal else {
        return Some(GraphOperation::UpsertServicePrincipal {
            app_id: app_id.to_string(),
            body: json!({
                "appRoleAssignmentRequired": sp_spec.app_role_assignment_required,
                "accountEnabled": sp_spec.enabled_for_sign_in,
                "tags": tags,
            }),
        });
    };
    let mut body = Map::new();
    let ObservedServicePrincipal {
        app_role_assignment_required,
        account_enabled,
        tags: observed_tags,
        ..
    } = sp;
    // Graph's defaults when unset: assignment not required, account enabled.
    if app_role_assignment_required.unwrap_or(false) != sp_spec.app_role_assignment_required {
        body.insert(
            "appRoleAssignmentRequired".into(),
            json!(sp_spec.app_role_assignment_required),
        );
    }
    if account_enabled.unwrap_or(true) != sp_spec.enabled_for_sign_in {
        body.insert("accountEnabled".into(), json!(sp_spec.enabled_for_sign_in));
    }
    if observed_tags.iter().cloned().collect::<BTreeSet<_>>() != tags {
        body.insert("tags".into(), json!(tags));
    }
    (!body.is_empty()).then(|| GraphOperation::PatchServicePrincipal {
        id: sp.id.clone(),
        body: Value::Object(body),
    })
}

/// Adds the owners the spec lists and the application lacks.
///
/// Owners are only ever added: Graph does not record who added an owner, and the status has no
/// record of the ones the operator added, so removing an unlisted owner could remove one a person
/// added on purpose (or the last owner). Removing an owner from the spec leaves it in Entra.
fn plan_owners(
    spec: &AppRegistrationSpec,
    application_id: &str,
    observed: &Observed,
) -> Vec<GraphOperation> {
    let present: BTreeSet<String> = observed.owners.iter().map(|o| o.to_lowercase()).collect();
    let mut added = BTreeSet::new();
    spec.owners
        .iter()
        .filter(|o| !present.contains(&o.to_lowercase()) && added.insert(o.to_lowercase()))
        .map(|owner| GraphOperation::AddOwner {
            application_id: application_id.to_string(),
            owner_id: owner.clone(),
        })
        .collect()
}

/// Makes the application's federated credentials exactly the spec's.
///
/// Every federated credential on the application is treated as managed: one the spec does not list
/// is deleted (a trust nobody declared is a risk). Deletes go first, because issuer + subject must be
/// unique per app and a renamed credential would otherwise collide with its old self.
fn plan_federated_credentials(
    spec: &AppRegistrationSpec,
    application_id: &str,
    observed: &Observed,
) -> Vec<GraphOperation> {
    let desired = &spec.credentials.federated;
    let wanted: BTreeSet<&str> = desired.iter().map(|f| f.name.as_str()).collect();
    let mut operations: Vec<GraphOperation> = observed
        .federated_credentials
        .iter()
        .filter(|f| !wanted.contains(f.name.as_str()))
        .map(|f| GraphOperation::DeleteFederatedCredential {
            application_id: application_id.to_string(),
            name: f.name.clone(),
        })
        .collect();
    for want in desired {
        let current = observed
            .federated_credentials
            .iter()
            .find(|f| f.name == want.name);
        let same = current.is_some_and(|have| {
            have.issuer == want.issuer
                && have.subject == want.subject
                && have.audiences.iter().collect::<BTreeSet<_>>()
                    == want.audiences.iter().collect::<BTreeSet<_>>()
                && have.description.as_deref().unwrap_or("")
                    == want.description.as_deref().unwrap_or("")
        });
        if !same {
            operations.push(GraphOperation::UpsertFederatedCredential {
                application_id: application_id.to_string(),
                name: want.name.clone(),
                body: json!({
                    "name": want.name,
                    "issuer": want.issuer,
                    "subject": want.subject,
                    "audiences": want.audiences,
                    "description": want.description,
                }),
            });
        }
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::appregistration::ConsentState;
    use crate::controllers::appregistration::observed::{
        ObservedAppRoleAssignment, ObservedEntitlement, ObservedFederatedCredential,
        ObservedPermissionGrant,
    };
    use crate::controllers::appregistration::references::ResolvedApp;

    const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
    const USER_READ: &str = "e1fe6dd8-ba31-4d61-89e7-88639da4683d";
    const USER_READ_ALL: &str = "df021288-bdef-4463-88db-98f22de89214";
    const APP_ID: &str = "6e5c1a8e-0000-4000-8000-00000000a001";
    const OBJECT_ID: &str = "0b1ec7e1-0000-4000-8000-00000000a002";
    const OUR_SP: &str = "5e1f0000-0000-4000-8000-00000000a003";
    const GRAPH_SP: &str = "9aa90000-0000-4000-8000-0000000000g1";
    const OWNER: &str = "0a0e0000-0000-4000-8000-000000000001";

    fn settings() -> PlanSettings {
        PlanSettings {
            unique_name_prefix: ids::DEFAULT_UNIQUE_NAME_PREFIX.to_string(),
            consent: ConsentSettings {
                authority_host: "https://login.microsoftonline.com".into(),
                tenant_id: "72f988bf-0000-4000-8000-000000000000".into(),
            },
        }
    }

    /// A spec using most of what an AppRegistration can declare.
    fn full_spec() -> AppRegistrationSpec {
        serde_json::from_value(json!({
            "displayName": "BookMe Management API",
            "description": "Management API",
            "signInAudience": "AzureADMyOrg",
            "identifierUris": ["api://{appId}"],
            "api": {
                "requestedAccessTokenVersion": 2,
                "scopes": [
                    {"value": "Access", "whoCanConsent": "AdminsAndUsers"},
                    {"value": "Admin.Manage"}
                ],
                "preAuthorizedApplications": [
                    {"appId": "c11e0000-0000-4000-8000-000000000001"}
                ]
            },
            "appRoles": [
                {"value": "System", "allowedMemberTypes": ["Application"]},
                {"value": "Reader", "description": "Reads", "allowedMemberTypes": ["User", "Application"]}
            ],
            "web": {"redirectUris": ["https://bookme.example/signin-oidc"], "homePageUrl": "https://bookme.example"},
            "spa": {"redirectUris": ["https://bookme.example/spa"]},
            "requiredResourceAccess": [
                {"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"], "application": ["User.Read.All"]}
            ],
            "owners": [OWNER],
            "credentials": {"federated": [
                {"name": "aks", "issuer": "https://oidc.aks.example/x", "subject": "system:serviceaccount:bookme:api"}
            ]}
        }))
        .unwrap()
    }

    fn graph_sp() -> ObservedServicePrincipal {
        ObservedServicePrincipal {
            id: GRAPH_SP.into(),
            app_id: GRAPH_APP_ID.into(),
            oauth2_permission_scopes: vec![ObservedEntitlement {
                id: USER_READ.into(),
                value: Some("User.Read".into()),
                is_enabled: true,
                ..Default::default()
            }],
            app_roles: vec![ObservedEntitlement {
                id: USER_READ_ALL.into(),
                value: Some("User.Read.All".into()),
                is_enabled: true,
                allowed_member_types: vec!["Application".into()],
            }],
            ..Default::default()
        }
    }

    fn nothing_yet() -> Observed {
        Observed {
            resource_service_principals: [(GRAPH_APP_ID.to_string(), graph_sp())].into(),
            ..Observed::default()
        }
    }

    fn plan_for(
        spec: &AppRegistrationSpec,
        observed: &Observed,
        references: &ResolvedReferences,
    ) -> Plan {
        plan_app_registration(PlanInput {
            spec,
            name: "mgmt-api",
            namespace: "bookme",
            references,
            observed,
            settings: &settings(),
        })
    }

    fn plan(spec: &AppRegistrationSpec, observed: &Observed) -> Plan {
        plan_for(spec, observed, &ResolvedReferences::default())
    }

    /// An application as Graph returns it right after a create: every property present, unset
    /// ones as `null` or `[]`, read-only extras, and collections in an order of Graph's choosing.
    fn graph_default_application(unique_name: &str) -> Value {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
            "id": OBJECT_ID,
            "appId": APP_ID,
            "uniqueName": unique_name,
            "deletedDateTime": null,
            "displayName": null,
            "description": null,
            "signInAudience": "AzureADMyOrg",
            "identifierUris": [],
            "tags": [],
            "groupMembershipClaims": null,
            "api": {
                "requestedAccessTokenVersion": null,
                "acceptMappedClaims": null,
                "knownClientApplications": [],
                "oauth2PermissionScopes": [],
                "preAuthorizedApplications": []
            },
            "appRoles": [],
            "info": {"logoUrl": null},
            "keyCredentials": [],
            "passwordCredentials": [],
            "publicClient": {"redirectUris": []},
            "requiredResourceAccess": [],
            "web": {
                "homePageUrl": null,
                "logoutUrl": null,
                "redirectUris": [],
                "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": false},
                "redirectUriSettings": []
            },
            "spa": {"redirectUris": []}
        })
    }

    /// What Graph stores for a written property: `origin` added to roles, collections reversed.
    fn as_graph_stores(key: &str, value: &Value) -> Value {
        let mut value = value.clone();
        if key == "appRoles"
            && let Some(roles) = value.as_array_mut()
        {
            for role in roles.iter_mut() {
                role["origin"] = json!("Application");
            }
            roles.reverse();
        }
        if key == "api"
            && let Some(scopes) = value["oauth2PermissionScopes"].as_array_mut()
        {
            scopes.reverse();
        }
        if key == "web" {
            value["redirectUriSettings"] = json!([]);
        }
        value
    }

    /// A fake executor: applies the plan's writes the way Graph would.
    fn execute(plan: &Plan, observed: &mut Observed) {
        for op in &plan.operations {
            match op {
                GraphOperation::UpsertApplication { unique_name, body } => {
                    let mut app = graph_default_application(unique_name);
                    for (k, v) in body.as_object().unwrap() {
                        app[k] = as_graph_stores(k, v);
                    }
                    observed.application = Some(app);
                }
                GraphOperation::PatchApplication { object_id, body } => {
                    let app = observed.application.as_mut().unwrap();
                    assert_eq!(app["id"], json!(object_id));
                    for (k, v) in body.as_object().unwrap() {
                        app[k] = as_graph_stores(k, v);
                    }
                }
                GraphOperation::UpsertServicePrincipal { app_id, body } => {
                    observed.service_principal = Some(ObservedServicePrincipal {
                        id: OUR_SP.into(),
                        app_id: app_id.clone(),
                        ..serde_json::from_value(body.clone()).unwrap()
                    });
                }
                GraphOperation::PatchServicePrincipal { id, body } => {
                    let sp = observed.service_principal.as_mut().unwrap();
                    assert_eq!(&sp.id, id);
                    let mut current = json!({
                        "id": sp.id, "appId": sp.app_id, "tags": sp.tags,
                        "accountEnabled": sp.account_enabled,
                        "appRoleAssignmentRequired": sp.app_role_assignment_required,
                    });
                    for (k, v) in body.as_object().unwrap() {
                        current[k] = v.clone();
                    }
                    *sp = serde_json::from_value(current).unwrap();
                }
                GraphOperation::AddOwner { owner_id, .. } => observed.owners.push(owner_id.clone()),
                GraphOperation::DeleteFederatedCredential { name, .. } => {
                    observed.federated_credentials.retain(|f| &f.name != name)
                }
                GraphOperation::UpsertFederatedCredential { name, body, .. } => {
                    observed.federated_credentials.retain(|f| &f.name != name);
                    observed
                        .federated_credentials
                        .push(serde_json::from_value(body.clone()).unwrap());
                }
                GraphOperation::CreateAppRoleAssignment {
                    resource_sp_id,
                    principal_id,
                    app_role_id,
                } => observed
                    .app_role_assignments
                    .push(ObservedAppRoleAssignment {
                        id: format!("a-{app_role_id}"),
                        principal_id: principal_id.clone(),
                        resource_id: resource_sp_id.clone(),
                        app_role_id: app_role_id.clone(),
                    }),
                GraphOperation::CreateOAuth2PermissionGrant {
                    client_id,
                    resource_id,
                    scope,
                } => observed
                    .oauth2_permission_grants
                    .push(ObservedPermissionGrant {
                        id: format!("g-{resource_id}"),
                        client_id: client_id.clone(),
                        consent_type: "AllPrincipals".into(),
                        resource_id: resource_id.clone(),
                        scope: scope.clone(),
                    }),
                GraphOperation::PatchOAuth2PermissionGrant { id, scope } => {
                    let grant = observed
                        .oauth2_permission_grants
                        .iter_mut()
                        .find(|g| &g.id == id)
                        .unwrap();
                    grant.scope = scope.clone();
                }
            }
        }
    }

    /// Plans and executes until a plan writes nothing; returns the settled state.
    fn converge(spec: &AppRegistrationSpec, mut observed: Observed) -> Observed {
        for _ in 0..5 {
            let p = plan(spec, &observed);
            if p.operations.is_empty() {
                return observed;
            }
            execute(&p, &mut observed);
        }
        panic!("no convergence after 5 plans: {:#?}", plan(spec, &observed));
    }

    fn patch_body(p: &Plan) -> &Map<String, Value> {
        match p.operations.as_slice() {
            [GraphOperation::PatchApplication { body, .. }] => body.as_object().unwrap(),
            other => panic!("expected one application patch, got {other:#?}"),
        }
    }

    fn roles_by_value(body: &Map<String, Value>) -> BTreeMap<String, bool> {
        body["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["value"].as_str().unwrap().to_string(),
                    r["isEnabled"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn create_from_nothing_upserts_the_application_by_unique_name_only() {
        let p = plan(&full_spec(), &nothing_yet());
        let [GraphOperation::UpsertApplication { unique_name, body }] = p.operations.as_slice()
        else {
            panic!("expected one upsert: {:#?}", p.operations);
        };
        assert_eq!(unique_name, "entra-operator-bookme-mgmt-api");
        assert_eq!(body["displayName"], json!("BookMe Management API"));
        // `api://{appId}` needs the appId Graph assigns: left out now, patched by the next plan.
        assert_eq!(body["identifierUris"], json!([]));
        assert_eq!(
            body["api"]["oauth2PermissionScopes"][0]["id"],
            json!("89da3642-7503-5e14-b26b-6496a1544b0c")
        );
        assert_eq!(
            body["api"]["oauth2PermissionScopes"][0]["type"],
            json!("User")
        );
        assert_eq!(
            body["api"]["oauth2PermissionScopes"][1]["type"],
            json!("Admin")
        );
        assert_eq!(
            body["appRoles"][0]["id"],
            json!("51a940b5-b246-56fd-be63-511a59121ff3")
        );
        assert_eq!(
            body["requiredResourceAccess"],
            json!([{"resourceAppId": GRAPH_APP_ID, "resourceAccess": [
                // Sorted by ID, so the rendering is deterministic.
                {"id": USER_READ_ALL, "type": "Role"}, {"id": USER_READ, "type": "Scope"}
            ]}])
        );
        assert!(p.reobserve_after_execute);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.status.unique_name.as_deref(),
            Some("entra-operator-bookme-mgmt-api")
        );
        assert_eq!(
            p.status.scope_ids["Access"],
            "89da3642-7503-5e14-b26b-6496a1544b0c"
        );
    }

    #[test]
    fn identifier_uris_without_the_placeholder_are_written_on_create() {
        let mut spec = full_spec();
        spec.identifier_uris = vec!["api://{appId}".into(), "https://api.bookme.example".into()];
        let p = plan(&spec, &nothing_yet());
        let [GraphOperation::UpsertApplication { body, .. }] = p.operations.as_slice() else {
            panic!("{p:#?}")
        };
        assert_eq!(
            body["identifierUris"],
            json!(["https://api.bookme.example"])
        );
        assert!(p.status.identifier_uris.is_empty());

        let mut observed = nothing_yet();
        execute(&p, &mut observed);
        let p = plan(&spec, &observed);
        assert_eq!(
            p.status.identifier_uris,
            [
                format!("api://{APP_ID}"),
                "https://api.bookme.example".to_string()
            ]
        );
    }

    #[test]
    fn second_plan_patches_identifier_uris_and_creates_sp_owner_and_credentials_in_order() {
        let spec = full_spec();
        let mut observed = nothing_yet();
        execute(&plan(&spec, &observed), &mut observed);
        let p = plan(&spec, &observed);
        let kinds: Vec<&str> = p
            .operations
            .iter()
            .map(|op| match op {
                GraphOperation::PatchApplication { body, .. } => {
                    assert_eq!(
                        body,
                        &json!({"identifierUris": [format!("api://{APP_ID}")]})
                    );
                    "app"
                }
                GraphOperation::UpsertServicePrincipal { app_id, body } => {
                    assert_eq!(app_id, APP_ID);
                    assert_eq!(body["tags"], json!([INTEGRATED_APP_TAG]));
                    "sp"
                }
                GraphOperation::AddOwner { owner_id, .. } => {
                    assert_eq!(owner_id, OWNER);
                    "owner"
                }
                GraphOperation::UpsertFederatedCredential { name, .. } => {
                    assert_eq!(name, "aks");
                    "fic"
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["app", "sp", "owner", "fic"]);
        assert_eq!(p.status.identifier_uris, [format!("api://{APP_ID}")]);
        // No service principal yet: nothing is consented.
        assert_eq!(p.status.consent.state, ConsentState::NotGranted);
    }

    #[test]
    fn resync_of_an_unchanged_app_writes_nothing() {
        let spec = full_spec();
        let settled = converge(&spec, nothing_yet());
        let p = plan(&spec, &settled);
        assert_eq!(p.operations, vec![]);
        assert!(!p.reobserve_after_execute);
        assert_eq!(p.status.app_id.as_deref(), Some(APP_ID));
        assert_eq!(p.status.object_id.as_deref(), Some(OBJECT_ID));
        assert_eq!(p.status.service_principal_id.as_deref(), Some(OUR_SP));
        assert_eq!(p.status.federated_credentials, ["aks"]);
        // A minimal spec settles too (all of Graph's defaults count as "not set").
        let minimal: AppRegistrationSpec =
            serde_json::from_value(json!({"displayName": "x"})).unwrap();
        let settled = converge(&minimal, Observed::default());
        assert_eq!(plan(&minimal, &settled).operations, vec![]);
    }

    #[test]
    fn one_edit_patches_exactly_that_property() {
        let spec = full_spec();
        let settled = converge(&spec, nothing_yet());
        type Edit = fn(&mut AppRegistrationSpec);
        let cases: [(&str, Edit, Value); 4] = [
            (
                "displayName",
                |s| s.display_name = "Renamed".into(),
                json!("Renamed"),
            ),
            (
                "signInAudience",
                |s| {
                    s.sign_in_audience =
                        crate::api::appregistration::SignInAudience::AzureADMultipleOrgs
                },
                json!("AzureADMultipleOrgs"),
            ),
            (
                "web",
                |s| s.web.as_mut().unwrap().home_page_url = Some("https://new.example".into()),
                json!({
                    "redirectUris": ["https://bookme.example/signin-oidc"],
                    "homePageUrl": "https://new.example",
                    "logoutUrl": null,
                    "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": false}
                }),
            ),
            ("spa", |s| s.spa = None, json!({"redirectUris": []})),
        ];
        for (property, edit, want) in cases {
            let mut edited = spec.clone();
            edit(&mut edited);
            let p = plan(&edited, &settled);
            let body = patch_body(&p);
            assert_eq!(
                body.keys().collect::<Vec<_>>(),
                [property],
                "editing {property}"
            );
            assert_eq!(body[property], want, "editing {property}");
        }
    }

    #[test]
    fn a_removed_role_is_disabled_first_and_removed_by_the_next_plan() {
        let spec = full_spec();
        let mut observed = converge(&spec, nothing_yet());
        let mut edited = spec.clone();
        edited.app_roles.retain(|r| r.value != "Reader");

        let first = plan(&edited, &observed);
        let body = patch_body(&first);
        assert_eq!(body.keys().collect::<Vec<_>>(), ["appRoles"]);
        assert_eq!(
            roles_by_value(body),
            [("Reader".to_string(), false), ("System".to_string(), true)].into()
        );
        // Everything else about the retired role stays as it was.
        let reader = body["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["value"] == "Reader")
            .unwrap();
        assert_eq!(reader["description"], json!("Reads"));
        assert!(!first.status.role_ids.contains_key("Reader"));
        execute(&first, &mut observed);

        let second = plan(&edited, &observed);
        let body = patch_body(&second);
        assert_eq!(roles_by_value(body), [("System".to_string(), true)].into());
        execute(&second, &mut observed);
        assert_eq!(plan(&edited, &observed).operations, vec![]);
    }

    #[test]
    fn a_removed_scope_is_disabled_first_and_removed_by_the_next_plan() {
        let spec = full_spec();
        let mut observed = converge(&spec, nothing_yet());
        let mut edited = spec.clone();
        edited
            .api
            .as_mut()
            .unwrap()
            .scopes
            .retain(|s| s.value != "Admin.Manage");
        let scopes = |p: &Plan| -> BTreeMap<String, bool> {
            patch_body(p)["api"]["oauth2PermissionScopes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["value"].as_str().unwrap().to_string(),
                        s["isEnabled"] == true,
                    )
                })
                .collect()
        };

        let first = plan(&edited, &observed);
        assert_eq!(
            scopes(&first),
            [
                ("Access".to_string(), true),
                ("Admin.Manage".to_string(), false)
            ]
            .into()
        );
        // Pre-authorized for "all scopes" now means only the enabled ones.
        assert_eq!(
            patch_body(&first)["api"]["preAuthorizedApplications"][0]["delegatedPermissionIds"],
            json!([ids::scope_id("entra-operator-bookme-mgmt-api", "Access")])
        );
        execute(&first, &mut observed);
        let second = plan(&edited, &observed);
        assert_eq!(scopes(&second), [("Access".to_string(), true)].into());
        execute(&second, &mut observed);
        assert_eq!(plan(&edited, &observed).operations, vec![]);
    }

    #[test]
    fn an_enabled_entitlement_whose_value_changes_is_disabled_first() {
        let spec = full_spec();
        let mut observed = converge(&spec, nothing_yet());
        // Someone renamed the System role's value in the portal, keeping it enabled.
        let app = observed.application.as_mut().unwrap();
        for role in app["appRoles"].as_array_mut().unwrap() {
            if role["value"] == "System" {
                role["value"] = json!("Sys");
            }
        }
        let system_id = ids::role_id("entra-operator-bookme-mgmt-api", "System");
        let p = plan(&spec, &observed);
        let role = patch_body(&p)["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(system_id))
            .unwrap()
            .clone();
        assert_eq!(role["value"], json!("Sys"));
        assert_eq!(role["isEnabled"], json!(false));
        execute(&p, &mut observed);
        let p = plan(&spec, &observed);
        assert!(roles_by_value(patch_body(&p))["System"]);
    }

    #[test]
    fn unknown_permission_names_are_errors_and_hold_required_resource_access() {
        let mut spec = full_spec();
        spec.required_resource_access[0]
            .delegated
            .push("Mail.Nonsense".into());
        let observed = converge(&full_spec(), nothing_yet());
        let p = plan(&spec, &observed);
        assert_eq!(
            p.errors,
            [PlanError::PermissionNotFound {
                api: "MicrosoftGraph".into(),
                permission: "Mail.Nonsense".into()
            }]
        );
        assert_eq!(
            p.blocking_reason().unwrap(),
            (
                "PermissionNotFound",
                "PermissionNotFound: MicrosoftGraph/Mail.Nonsense".to_string()
            )
        );
        // Nothing else changed, and what Graph holds is not overwritten with a partial list.
        assert_eq!(p.operations, vec![]);

        // On create the property is left out rather than written partially.
        let p = plan(&spec, &nothing_yet());
        let [GraphOperation::UpsertApplication { body, .. }] = p.operations.as_slice() else {
            panic!()
        };
        assert!(body.get("requiredResourceAccess").is_none());

        // A resource API without a service principal cannot be resolved by name.
        let p = plan(&full_spec(), &Observed::default());
        assert_eq!(
            p.errors,
            [PlanError::ResourceNotFound {
                api: "MicrosoftGraph".into()
            }]
        );
    }

    #[test]
    fn app_refs_resolve_through_the_referenced_status() {
        let spa_app_id = "5ba00000-0000-4000-8000-000000000001";
        let spec: AppRegistrationSpec = serde_json::from_value(json!({
            "displayName": "Web API",
            "api": {
                "scopes": [{"value": "Access"}, {"value": "Other"}],
                "preAuthorizedApplications": [{"appRef": {"name": "spa"}, "scopes": ["Access"]}]
            },
            "requiredResourceAccess": [{"appRef": {"name": "backend"}, "application": ["System"]}]
        }))
        .unwrap();
        let resolved = ResolvedReferences {
            apps: [
                (
                    "spa".to_string(),
                    ResolvedApp {
                        app_id: spa_app_id.into(),
                        ..Default::default()
                    },
                ),
                (
                    "backend".to_string(),
                    ResolvedApp {
                        app_id: "bac00000-0000-4000-8000-000000000001".into(),
                        role_ids: [("System".to_string(), "r-system".to_string())].into(),
                        ..Default::default()
                    },
                ),
            ]
            .into(),
            waiting: Default::default(),
        };
        let p = plan_for(&spec, &Observed::default(), &resolved);
        let [GraphOperation::UpsertApplication { body, .. }] = p.operations.as_slice() else {
            panic!("{p:#?}")
        };
        let access_id = ids::scope_id("entra-operator-bookme-mgmt-api", "Access");
        assert_eq!(
            body["api"]["preAuthorizedApplications"],
            json!([{"appId": spa_app_id, "delegatedPermissionIds": [access_id]}])
        );
        assert_eq!(
            body["requiredResourceAccess"],
            json!([{"resourceAppId": "bac00000-0000-4000-8000-000000000001",
                    "resourceAccess": [{"id": "r-system", "type": "Role"}]}])
        );
        assert_eq!(p.status.consent.missing, ["backend/System"]);

        // Unresolved: reported, and existing pre-authorizations are kept, not revoked.
        let waiting = ResolvedReferences {
            apps: Default::default(),
            waiting: ["backend".to_string(), "spa".to_string()].into(),
        };
        let mut observed = Observed::default();
        let mut app = graph_default_application("entra-operator-bookme-mgmt-api");
        app["displayName"] = json!("Web API");
        app["api"]["preAuthorizedApplications"] =
            json!([{"appId": spa_app_id, "delegatedPermissionIds": [access_id]}]);
        observed.application = Some(app);
        let p = plan_for(&spec, &observed, &waiting);
        assert_eq!(
            p.errors,
            [
                PlanError::WaitingForReference {
                    name: "backend".into()
                },
                PlanError::WaitingForReference { name: "spa".into() }
            ]
        );
        assert_eq!(p.blocking_reason().unwrap().0, "WaitingForReference");
        let GraphOperation::PatchApplication { body, .. } = &p.operations[0] else {
            panic!("{p:#?}")
        };
        assert_eq!(
            body["api"]["preAuthorizedApplications"],
            json!([{"appId": spa_app_id, "delegatedPermissionIds": [access_id]}])
        );
        assert!(body.get("requiredResourceAccess").is_none());
    }

    #[test]
    fn service_principal_settings_and_hide_app_tag() {
        let mut spec = full_spec();
        spec.service_principal.visible_to_users = false;
        spec.service_principal.tags = vec!["team-bookme".into()];
        let mut observed = nothing_yet();
        execute(&plan(&spec, &observed), &mut observed);
        let p = plan(&spec, &observed);
        let body = p
            .operations
            .iter()
            .find_map(|op| match op {
                GraphOperation::UpsertServicePrincipal { body, .. } => Some(body),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            body,
            &json!({
                "appRoleAssignmentRequired": false,
                "accountEnabled": true,
                "tags": [HIDE_APP_TAG, INTEGRATED_APP_TAG, "team-bookme"]
            })
        );

        // Visible again and sign-in disabled: one patch with just those two properties.
        let settled = converge(&spec, observed);
        let mut edited = spec.clone();
        edited.service_principal.visible_to_users = true;
        edited.service_principal.enabled_for_sign_in = false;
        let p = plan(&edited, &settled);
        assert_eq!(
            p.operations,
            [GraphOperation::PatchServicePrincipal {
                id: OUR_SP.into(),
                body: json!({"accountEnabled": false, "tags": [INTEGRATED_APP_TAG, "team-bookme"]})
            }]
        );
    }

    #[test]
    fn consent_states_and_admin_consent_grants_only_what_is_missing() {
        let spec = full_spec();
        let settled = converge(&spec, nothing_yet());
        let url = format!(
            "https://login.microsoftonline.com/72f988bf-0000-4000-8000-000000000000/adminconsent?client_id={APP_ID}"
        );
        let role_assignment = ObservedAppRoleAssignment {
            id: "a1".into(),
            principal_id: OUR_SP.into(),
            resource_id: GRAPH_SP.into(),
            app_role_id: USER_READ_ALL.into(),
        };
        let grant = |scope: &str| ObservedPermissionGrant {
            id: "g1".into(),
            client_id: OUR_SP.into(),
            consent_type: "AllPrincipals".into(),
            resource_id: GRAPH_SP.into(),
            scope: scope.into(),
        };
        struct Case {
            name: &'static str,
            assignments: Vec<ObservedAppRoleAssignment>,
            grants: Vec<ObservedPermissionGrant>,
            state: ConsentState,
            missing: Vec<&'static str>,
            grant_ops: Vec<GraphOperation>,
        }
        let cases = [
            Case {
                name: "nothing granted",
                assignments: vec![],
                grants: vec![],
                state: ConsentState::NotGranted,
                missing: vec!["MicrosoftGraph/User.Read", "MicrosoftGraph/User.Read.All"],
                grant_ops: vec![
                    GraphOperation::CreateAppRoleAssignment {
                        resource_sp_id: GRAPH_SP.into(),
                        principal_id: OUR_SP.into(),
                        app_role_id: USER_READ_ALL.into(),
                    },
                    GraphOperation::CreateOAuth2PermissionGrant {
                        client_id: OUR_SP.into(),
                        resource_id: GRAPH_SP.into(),
                        scope: "User.Read".into(),
                    },
                ],
            },
            Case {
                name: "role granted, grant lacks the scope",
                assignments: vec![role_assignment.clone()],
                grants: vec![grant("openid profile")],
                state: ConsentState::Partial,
                missing: vec!["MicrosoftGraph/User.Read"],
                grant_ops: vec![GraphOperation::PatchOAuth2PermissionGrant {
                    id: "g1".into(),
                    scope: "openid profile User.Read".into(),
                }],
            },
            Case {
                name: "a user's own grant is not admin consent",
                assignments: vec![role_assignment.clone()],
                grants: vec![ObservedPermissionGrant {
                    consent_type: "Principal".into(),
                    ..grant("User.Read")
                }],
                state: ConsentState::Partial,
                missing: vec!["MicrosoftGraph/User.Read"],
                grant_ops: vec![GraphOperation::CreateOAuth2PermissionGrant {
                    client_id: OUR_SP.into(),
                    resource_id: GRAPH_SP.into(),
                    scope: "User.Read".into(),
                }],
            },
            Case {
                name: "everything granted",
                assignments: vec![role_assignment.clone()],
                grants: vec![grant("User.Read openid")],
                state: ConsentState::Granted,
                missing: vec![],
                grant_ops: vec![],
            },
        ];
        for case in cases {
            let mut observed = settled.clone();
            observed.app_role_assignments = case.assignments;
            observed.oauth2_permission_grants = case.grants;

            let p = plan(&spec, &observed);
            assert_eq!(
                p.operations,
                vec![],
                "{}: no grants without grantAdminConsent",
                case.name
            );
            assert_eq!(p.status.consent.state, case.state, "{}", case.name);
            assert_eq!(p.status.consent.missing, case.missing, "{}", case.name);
            let want_url = (case.state != ConsentState::Granted).then(|| url.clone());
            assert_eq!(
                p.status.consent.admin_consent_url, want_url,
                "{}",
                case.name
            );

            let mut granting = spec.clone();
            granting.grant_admin_consent = true;
            let p = plan(&granting, &observed);
            assert_eq!(p.operations, case.grant_ops, "{}", case.name);
            // Once executed, everything is granted and the next plan writes nothing.
            execute(&p, &mut observed);
            let after = plan(&granting, &observed);
            assert_eq!(after.operations, vec![], "{}", case.name);
            assert_eq!(
                after.status.consent.state,
                ConsentState::Granted,
                "{}",
                case.name
            );
        }

        let none: AppRegistrationSpec =
            serde_json::from_value(json!({"displayName": "x"})).unwrap();
        let p = plan(&none, &converge(&none, Observed::default()));
        assert_eq!(p.status.consent.state, ConsentState::NotRequired);
        assert_eq!(p.status.consent.admin_consent_url, None);
    }

    #[test]
    fn federated_credentials_not_in_the_spec_are_deleted_before_upserts() {
        let mut spec = full_spec();
        let mut observed = converge(&spec, nothing_yet());
        observed
            .federated_credentials
            .push(ObservedFederatedCredential {
                name: "old".into(),
                issuer: "https://oidc.aks.example/x".into(),
                subject: "system:serviceaccount:bookme:old".into(),
                audiences: vec!["api://AzureADTokenExchange".into()],
                description: None,
            });
        spec.credentials.federated[0].subject = "system:serviceaccount:bookme:api2".into();
        let p = plan(&spec, &observed);
        assert_eq!(
            p.operations,
            [
                GraphOperation::DeleteFederatedCredential {
                    application_id: OBJECT_ID.into(),
                    name: "old".into()
                },
                GraphOperation::UpsertFederatedCredential {
                    application_id: OBJECT_ID.into(),
                    name: "aks".into(),
                    body: json!({
                        "name": "aks",
                        "issuer": "https://oidc.aks.example/x",
                        "subject": "system:serviceaccount:bookme:api2",
                        "audiences": ["api://AzureADTokenExchange"],
                        "description": null
                    })
                }
            ]
        );
    }

    #[test]
    fn adoption_keeps_the_unique_name_and_existing_ids() {
        let mut spec = full_spec();
        spec.adopt = Some(crate::api::appregistration::AdoptSpec {
            app_id: APP_ID.into(),
        });
        let p = plan(&spec, &nothing_yet());
        assert_eq!(
            p.errors,
            [PlanError::AdoptedApplicationNotFound {
                app_id: APP_ID.into()
            }]
        );
        assert_eq!(p.operations, vec![]);

        let mut observed = nothing_yet();
        let mut app = graph_default_application("legacy-name");
        app["api"]["oauth2PermissionScopes"] = json!([{
            "id": "a6b6e1e4-6b8e-4c2b-9c67-4a3d5e3f0c11", "value": "Access", "type": "User",
            "isEnabled": true, "adminConsentDisplayName": "Access", "adminConsentDescription": "Access"
        }]);
        observed.application = Some(app);
        let p = plan(&spec, &observed);
        assert_eq!(p.status.unique_name.as_deref(), Some("legacy-name"));
        assert_eq!(
            p.status.scope_ids["Access"],
            "a6b6e1e4-6b8e-4c2b-9c67-4a3d5e3f0c11"
        );
        assert!(matches!(
            &p.operations[0],
            GraphOperation::PatchApplication { object_id, .. } if object_id == OBJECT_ID
        ));
        assert!(
            !p.operations
                .iter()
                .any(|op| matches!(op, GraphOperation::UpsertApplication { .. }))
        );
    }
}
