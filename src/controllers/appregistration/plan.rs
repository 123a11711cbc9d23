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
