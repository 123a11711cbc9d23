//! The plan stage of the AppRegistration controller: a pure function from the spec, the resolved
//! references and what Graph holds to the ordered list of Graph writes and the status to report.
//!
//! Graph's rules live here, not in the executor: upsert by `uniqueName`, only changed properties,
//! two-step removal of roles and scopes, app before service principal before consent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::api::AppRegistrationSpec;
use crate::api::appregistration::ConsentStatus;

pub use super::operation::{GraphOperation, PlanError};

use super::consent::{ConsentSettings, Recorded, plan_consent};
use super::desired::{DesiredApplication, MANAGED_PROPERTIES, render_application};
use super::diff::json_matches;
use super::ids;
use super::observed::{Observed, ObservedOwner, ObservedServicePrincipal};
use super::references::ResolvedReferences;
use crate::api::appregistration::{FederatedManagement, GrantedPermission, OwnersManagement};
use crate::policy::{Decision, Kind, PermissionRequest, PolicyView};

/// Tag every integrated app's service principal carries (the portal sets it too).
pub const INTEGRATED_APP_TAG: &str = "WindowsAzureActiveDirectoryIntegratedApp";
/// Service principal tag that hides the app from users on My Apps.
pub const HIDE_APP_TAG: &str = "HideApp";

/// Operator-wide settings the plan needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSettings {
    /// Prefix of every `uniqueName` (default [`ids::DEFAULT_UNIQUE_NAME_PREFIX`]).
    pub unique_name_prefix: String,
    /// Authority and tenant, for the admin-consent URL.
    pub consent: ConsentSettings,
    /// The operator's own client (application) ID: an owner with this appId (the operator's
    /// service principal) is never removed.
    pub operator_client_id: Option<String>,
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
    /// The cluster administrator's consent and adoption policy for this namespace.
    pub policy: &'a PolicyView,
    /// The `uniqueName` this resource's application already has (from its status): kept, because
    /// Graph cannot change it and older versions built it another way.
    pub recorded_unique_name: Option<&'a str>,
    /// appIds that other AppRegistrations (any namespace) already manage, with who: never adopted.
    pub claimed_elsewhere: &'a BTreeMap<String, String>,
    /// Federated credentials the operator put on the application (`status.federatedCredentials`).
    pub recorded_federated: &'a [String],
    /// Owners the operator added (`status.managedOwners`).
    pub recorded_owners: &'a [String],
    /// Permissions the operator granted (`status.grantedPermissions`).
    pub recorded_grants: &'a [GrantedPermission],
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
    /// Owners the operator added, once this plan's writes ran (the recorded ones until the plan
    /// gets that far).
    pub managed_owners: Vec<String>,
    /// Permissions the operator granted, once this plan's writes ran (likewise).
    pub granted_permissions: Vec<GrantedPermission>,
}

/// The outcome of planning one AppRegistration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Graph writes, in order: application, service principal, owners (added, then removed),
    /// federated credentials (deleted, then upserted), consent (granted, then revoked). Empty for a
    /// resync of an unchanged app.
    pub operations: Vec<GraphOperation>,
    pub status: PlannedStatus,
    /// What could not be planned (the rest is still planned).
    pub errors: Vec<PlanError>,
}

impl Plan {
    /// Whether the plan refused to adopt the application (then nothing of it is written).
    pub fn adoption_refused(&self) -> bool {
        self.errors
            .iter()
            .any(|e| matches!(e, PlanError::AdoptionRefused { .. }))
    }

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
        policy,
        recorded_unique_name,
        claimed_elsewhere,
        recorded_federated,
        recorded_owners,
        recorded_grants,
    } = input;
    let mut plan = Plan::default();
    // Until the plan gets to them, the records stay as they are.
    plan.status.managed_owners = recorded_owners.to_vec();
    plan.status.granted_permissions = recorded_grants.to_vec();
    plan.errors.extend(
        references
            .waiting
            .iter()
            .map(|name| PlanError::WaitingForReference { name: name.clone() }),
    );

    let own_unique_name = recorded_unique_name
        .filter(|_| spec.adopt.is_none())
        .map(str::to_string)
        .unwrap_or_else(|| ids::unique_name(&settings.unique_name_prefix, namespace, name));
    let observed_app = observed.application.as_ref();
    if let Some(adopt) = &spec.adopt
        && let Some(refusal) = adoption_refusal(
            &adopt.app_id,
            observed_app,
            policy,
            claimed_elsewhere,
            &settings.unique_name_prefix,
        )
    {
        plan.errors.push(refusal);
        return plan;
    }
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
        managed_owners: recorded_owners.to_vec(),
        granted_permissions: recorded_grants.to_vec(),
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
            Recorded::default(),
            &settings.consent,
        )
        .status;
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

    let (owner_operations, managed_owners, owner_errors) = plan_owners(
        spec,
        &object_id,
        observed,
        recorded_owners,
        settings.operator_client_id.as_deref(),
    );
    plan.operations.extend(owner_operations);
    plan.status.managed_owners = managed_owners;
    plan.errors.extend(owner_errors);
    plan.operations.extend(plan_federated_credentials(
        spec,
        &object_id,
        observed,
        recorded_federated,
    ));
    plan.status.federated_credentials = spec
        .credentials
        .federated
        .iter()
        .map(|f| f.name.clone())
        .collect();

    let our_sp_id = observed.service_principal.as_ref().map(|sp| sp.id.as_str());
    // Nothing is granted while the policy refuses any part: a partial grant would leave the app
    // holding a set of permissions nobody declared.
    let refusals = consent_refusals(spec, &desired.required_permissions, references, policy);
    let grant = spec.grant_admin_consent && refusals.is_empty();
    plan.errors.extend(refusals);
    let consent = plan_consent(
        &desired.required_permissions,
        our_sp_id,
        Some(&app_id),
        observed,
        grant,
        Recorded {
            granted: recorded_grants,
            // Only against the whole declared set: while part of requiredResourceAccess is
            // unresolved, a permission missing from it may still be declared.
            revoke: !desired.held.contains("requiredResourceAccess"),
        },
        &settings.consent,
    );
    plan.operations.extend(consent.operations);
    plan.status.consent = consent.status;
    plan.status.granted_permissions = consent.granted;
    plan
}

/// Why this resource may not adopt `app_id`: the policy does not allow it in this namespace, the
/// application carries the operator's uniqueName marker (another resource created it), or another
/// AppRegistration already manages it.
fn adoption_refusal(
    app_id: &str,
    observed_app: Option<&Value>,
    policy: &PolicyView,
    claimed_elsewhere: &BTreeMap<String, String>,
    prefix: &str,
) -> Option<PlanError> {
    let refuse = |why: String| {
        Some(PlanError::AdoptionRefused {
            app_id: app_id.to_string(),
            why,
        })
    };
    if let Decision::Refused { rule } = policy.decide_adoption(app_id) {
        return refuse(format!("refused by rule {rule}"));
    }
    if let Some(owner) = claimed_elsewhere
        .iter()
        .find(|(claimed, _)| claimed.eq_ignore_ascii_case(app_id))
        .map(|(_, owner)| owner)
    {
        return refuse(format!("it is managed by AppRegistration {owner}"));
    }
    let unique_name = observed_app
        .and_then(|a| a.get("uniqueName"))
        .and_then(Value::as_str);
    if let Some(unique_name) = unique_name
        && ids::is_operator_unique_name(prefix, unique_name)
    {
        return refuse(format!(
            "it carries uniqueName {unique_name}: another resource of this operator created it"
        ));
    }
    None
}

/// The permissions `grantAdminConsent` would grant that the policy refuses (empty when consent is
/// not asked for).
fn consent_refusals(
    spec: &AppRegistrationSpec,
    required: &[super::consent::RequiredPermission],
    references: &ResolvedReferences,
    policy: &PolicyView,
) -> Vec<PlanError> {
    if !spec.grant_admin_consent {
        return Vec::new();
    }
    let by_app_ref: BTreeSet<&str> = spec
        .required_resource_access
        .iter()
        .filter_map(|r| r.app_ref.as_ref())
        .filter_map(|r| references.app(&r.name))
        .map(|a| a.app_id.as_str())
        .collect();
    required
        .iter()
        .filter_map(|p| {
            let kind = match p.kind {
                super::consent::PermissionKind::Application => Kind::Application,
                super::consent::PermissionKind::Delegated => Kind::Delegated,
            };
            let decision = policy.decide_grant(&PermissionRequest {
                resource_app_id: &p.resource_app_id,
                by_app_ref: by_app_ref.contains(p.resource_app_id.as_str()),
                value: &p.value,
                id: &p.id,
                kind,
            });
            match decision {
                Decision::Allowed { .. } => None,
                Decision::Refused { rule } => Some(PlanError::ConsentRefused {
                    permission: p.display(),
                    kind: match kind {
                        Kind::Application => "application permission",
                        Kind::Delegated => "delegated permission",
                    },
                    rule,
                }),
            }
        })
        .collect()
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

/// Makes the application's owners the spec's, and returns the owners the operator added
/// afterwards (the next `status.managedOwners`).
///
/// Graph does not record who added an owner, so the operator records the ones it adds (`recorded`,
/// from the status). `Additive` (default): an owner leaves only if it is recorded and no longer
/// declared; one a person added stays. `Exact`: every owner not declared leaves. Never removed:
/// the operator's own identity (an owner whose appId is `operator_client_id`: without it an
/// operator holding only `Application.ReadWrite.OwnedBy` loses the application), and the last
/// owner (an application should keep one; Graph recommends two). Additions go first, so the
/// application is never without an owner in between. A recorded owner stays recorded until an
/// observation shows it gone, so a failed removal is retried.
///
/// Owners named by user principal name are declared by the object IDs the observation resolved
/// them to. A name that did not resolve (no such user) is an error, and while one is unresolved no
/// owner is removed: the undeclared owner may be that very user (renamed, or a typo fixed later).
fn plan_owners(
    spec: &AppRegistrationSpec,
    application_id: &str,
    observed: &Observed,
    recorded: &[String],
    operator_client_id: Option<&str>,
) -> (Vec<GraphOperation>, Vec<String>, Vec<PlanError>) {
    let present: BTreeSet<String> = observed
        .owners
        .iter()
        .map(|o| o.id.to_ascii_lowercase())
        .collect();
    let mut errors = Vec::new();
    let mut by_name = Vec::new();
    for upn in &spec.owner_user_principal_names {
        match observed.owner_principal_names.get(upn).cloned().flatten() {
            Some(id) => by_name.push(id),
            None => errors.push(PlanError::OwnerNotFound {
                user_principal_name: upn.clone(),
            }),
        }
    }
    let declared_ids: Vec<&String> = spec.owners.iter().chain(&by_name).collect();
    let declared: BTreeSet<String> = declared_ids
        .iter()
        .map(|o| o.to_ascii_lowercase())
        .collect();
    let recorded: BTreeSet<String> = recorded.iter().map(|o| o.to_ascii_lowercase()).collect();
    let exact = spec.owners_management == OwnersManagement::Exact;
    let is_operator = |o: &ObservedOwner| {
        operator_client_id
            .zip(o.app_id.as_deref())
            .is_some_and(|(ours, theirs)| ours.eq_ignore_ascii_case(theirs))
    };
    let mut operations = Vec::new();
    let mut added = BTreeSet::new();
    for owner in declared_ids {
        let id = owner.to_ascii_lowercase();
        if !present.contains(&id) && added.insert(id) {
            operations.push(GraphOperation::AddOwner {
                application_id: application_id.to_string(),
                owner_id: owner.clone(),
            });
        }
    }
    let all_resolved = errors.is_empty();
    let mut removed: Vec<&ObservedOwner> = observed
        .owners
        .iter()
        .filter(|_| all_resolved)
        .filter(|o| !declared.contains(&o.id.to_ascii_lowercase()))
        .filter(|o| !is_operator(o))
        .filter(|o| exact || recorded.contains(&o.id.to_ascii_lowercase()))
        .collect();
    removed.sort_by_key(|o| o.id.to_ascii_lowercase());
    removed.dedup_by_key(|o| o.id.to_ascii_lowercase());
    if added.is_empty() && removed.len() >= present.len() {
        // The last owner stays.
        removed.pop();
    }
    operations.extend(removed.iter().map(|o| GraphOperation::RemoveOwner {
        application_id: application_id.to_string(),
        owner_id: o.id.clone(),
    }));
    let managed = recorded
        .into_iter()
        .filter(|id| present.contains(id))
        .chain(added)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (operations, managed, errors)
}

/// Makes the application's federated credentials the spec's.
///
/// `Additive` (default): only credentials the operator put there (`recorded`, from the status) and
/// no longer declared are deleted; one someone else added stays. `Exact`: every credential the spec
/// does not list is deleted. Deletes go first, because issuer + subject must be unique per app and a
/// renamed credential would otherwise collide with its old self.
fn plan_federated_credentials(
    spec: &AppRegistrationSpec,
    application_id: &str,
    observed: &Observed,
    recorded: &[String],
) -> Vec<GraphOperation> {
    let desired = &spec.credentials.federated;
    let wanted: BTreeSet<&str> = desired.iter().map(|f| f.name.as_str()).collect();
    let exact = spec.credentials.federated_management == FederatedManagement::Exact;
    let mut operations: Vec<GraphOperation> = observed
        .federated_credentials
        .iter()
        .filter(|f| !wanted.contains(f.name.as_str()))
        .filter(|f| exact || recorded.iter().any(|r| r == &f.name))
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
                credential: crate::graph::FederatedIdentityCredential {
                    id: None,
                    name: want.name.clone(),
                    issuer: want.issuer.clone(),
                    subject: want.subject.clone(),
                    audiences: want.audiences.clone(),
                    description: want.description.clone(),
                },
            });
        }
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::appregistration::{
        ConsentState, GrantedPermissionKind, MemberType, SignInAudience,
    };
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
    const PROFILE: &str = "14dad69e-099b-42c9-810b-d002981feec1";
    const EMAIL: &str = "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0";
    const GROUP_READ_ALL: &str = "5b567255-7703-4780-807c-7be8301ae99b";
    const OPERATOR_APP_ID: &str = "0be1a700-0000-4000-8000-0000000000ff";

    fn settings() -> PlanSettings {
        PlanSettings {
            unique_name_prefix: ids::DEFAULT_UNIQUE_NAME_PREFIX.to_string(),
            consent: ConsentSettings {
                authority_host: "https://login.microsoftonline.com".into(),
                tenant_id: "72f988bf-0000-4000-8000-000000000000".into(),
            },
            operator_client_id: Some(OPERATOR_APP_ID.into()),
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
            oauth2_permission_scopes: vec![
                ObservedEntitlement {
                    id: USER_READ.into(),
                    value: Some("User.Read".into()),
                    is_enabled: true,
                    ..Default::default()
                },
                ObservedEntitlement {
                    id: PROFILE.into(),
                    value: Some("profile".into()),
                    is_enabled: true,
                    ..Default::default()
                },
                ObservedEntitlement {
                    id: EMAIL.into(),
                    value: Some("email".into()),
                    is_enabled: true,
                    ..Default::default()
                },
            ],
            app_roles: vec![
                ObservedEntitlement {
                    id: USER_READ_ALL.into(),
                    value: Some("User.Read.All".into()),
                    is_enabled: true,
                    allowed_member_types: vec!["Application".into()],
                },
                ObservedEntitlement {
                    id: GROUP_READ_ALL.into(),
                    value: Some("Group.Read.All".into()),
                    is_enabled: true,
                    allowed_member_types: vec!["Application".into()],
                },
            ],
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
        plan_with(spec, observed, references, &permissive_policy(), &[])
    }

    /// A policy that allows every Microsoft Graph permission and any adoption in any namespace.
    fn permissive_policy() -> PolicyView {
        serde_json::from_value::<crate::api::policy::EntraPolicySpec>(json!({
            "consent": [{"name": "graph", "api": {"wellKnownApi": "MicrosoftGraph"},
                         "application": ["*"], "delegated": ["*"]}],
            "adoption": [{"name": "any"}]
        }))
        .map(|spec| PolicyView {
            policies: crate::policy::Policies(vec![("test".into(), spec)]),
            namespace: crate::policy::NamespaceInfo {
                name: "bookme".into(),
                ..Default::default()
            },
            ..PolicyView::default()
        })
        .unwrap()
    }

    fn plan_with(
        spec: &AppRegistrationSpec,
        observed: &Observed,
        references: &ResolvedReferences,
        policy: &PolicyView,
        recorded_federated: &[String],
    ) -> Plan {
        plan_app_registration(PlanInput {
            spec,
            name: "mgmt-api",
            namespace: "bookme",
            references,
            observed,
            settings: &settings(),
            policy,
            recorded_unique_name: None,
            claimed_elsewhere: &BTreeMap::new(),
            recorded_federated,
            recorded_owners: &[],
            recorded_grants: &[],
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

    /// Graph's refusals for an application write, against what is stored (`None` on create):
    /// a pre-authorization may name only scopes stored by an earlier write; `origin` is read-only;
    /// an enabled role or scope is neither removed nor has its value, member types or type changed.
    fn assert_graph_accepts(stored: Option<&Value>, body: &Value) {
        let ids = |v: Option<&Value>, ptr: &str| -> Vec<Value> {
            v.and_then(|v| v.pointer(ptr))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let stored_scopes = ids(stored, "/api/oauth2PermissionScopes");
        for pre in ids(Some(body), "/api/preAuthorizedApplications") {
            for id in pre["delegatedPermissionIds"].as_array().unwrap() {
                assert!(
                    stored_scopes.iter().any(|s| &s["id"] == id),
                    "Graph refuses: pre-authorized scope {id} is not stored yet"
                );
            }
        }
        for role in ids(Some(body), "/appRoles") {
            assert!(
                role.get("origin").is_none(),
                "Graph refuses: origin is read-only"
            );
        }
        for (ptr, fields) in [
            ("/appRoles", &["value", "allowedMemberTypes"][..]),
            ("/api/oauth2PermissionScopes", &["value", "type"][..]),
        ] {
            if body.pointer(ptr).is_none() {
                continue;
            }
            let new = ids(Some(body), ptr);
            for old in ids(stored, ptr)
                .iter()
                .filter(|o| o["isEnabled"] == json!(true))
            {
                let same = new.iter().find(|n| n["id"] == old["id"]);
                assert!(
                    same.is_some_and(|n| fields.iter().all(|f| n.get(*f) == old.get(*f))),
                    "Graph refuses: enabled {} changed or removed",
                    old["value"]
                );
            }
        }
    }

    /// A fake executor: applies the plan's writes the way Graph would.
    fn execute(plan: &Plan, observed: &mut Observed) {
        for op in &plan.operations {
            match op {
                GraphOperation::UpsertApplication { unique_name, body } => {
                    assert_graph_accepts(observed.application.as_ref(), body);
                    let mut app = graph_default_application(unique_name);
                    for (k, v) in body.as_object().unwrap() {
                        app[k] = as_graph_stores(k, v);
                    }
                    observed.application = Some(app);
                }
                GraphOperation::PatchApplication { object_id, body } => {
                    assert_graph_accepts(observed.application.as_ref(), body);
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
                GraphOperation::AddOwner { owner_id, .. } => observed.owners.push(ObservedOwner {
                    id: owner_id.clone(),
                    app_id: None,
                }),
                GraphOperation::RemoveOwner { owner_id, .. } => {
                    let before = observed.owners.len();
                    observed.owners.retain(|o| &o.id != owner_id);
                    assert_eq!(
                        observed.owners.len() + 1,
                        before,
                        "not an owner: {owner_id}"
                    );
                }
                GraphOperation::DeleteAppRoleAssignment {
                    resource_sp_id,
                    assignment_id,
                } => {
                    let before = observed.app_role_assignments.len();
                    observed
                        .app_role_assignments
                        .retain(|a| !(&a.id == assignment_id && &a.resource_id == resource_sp_id));
                    assert_eq!(observed.app_role_assignments.len() + 1, before);
                }
                GraphOperation::DeleteOAuth2PermissionGrant { id } => {
                    let before = observed.oauth2_permission_grants.len();
                    observed.oauth2_permission_grants.retain(|g| &g.id != id);
                    assert_eq!(observed.oauth2_permission_grants.len() + 1, before);
                }
                GraphOperation::DeleteFederatedCredential { name, .. } => {
                    observed.federated_credentials.retain(|f| &f.name != name)
                }
                GraphOperation::UpsertFederatedCredential { credential, .. } => {
                    observed
                        .federated_credentials
                        .retain(|f| f.name != credential.name);
                    observed.federated_credentials.push(credential.into());
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
        assert_eq!(unique_name, "entra-operator.bookme.mgmt-api");
        assert_eq!(body["displayName"], json!("BookMe Management API"));
        // UUIDv5 of "entra-operator.bookme.mgmt-api/scope/Access" and ".../role/System", computed
        // independently (Python's uuid.uuid5 with ids::ENTITLEMENT_ID_NAMESPACE).
        // `api://{appId}` needs the appId Graph assigns: left out now, patched by the next plan.
        assert_eq!(body["identifierUris"], json!([]));
        assert_eq!(
            body["api"]["oauth2PermissionScopes"][0]["id"],
            json!("ce018342-9fff-5ac1-a819-3da18ed125e2")
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
            json!("67fd28fd-5f00-5144-9aa9-e76ce6f64242")
        );
        assert_eq!(
            body["requiredResourceAccess"],
            json!([{"resourceAppId": GRAPH_APP_ID, "resourceAccess": [
                // Sorted by ID, so the rendering is deterministic.
                {"id": USER_READ_ALL, "type": "Role"}, {"id": USER_READ, "type": "Scope"}
            ]}])
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.status.unique_name.as_deref(),
            Some("entra-operator.bookme.mgmt-api")
        );
        assert_eq!(
            p.status.scope_ids["Access"],
            "ce018342-9fff-5ac1-a819-3da18ed125e2"
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
                    // The identifier URI with the appId, and the pre-authorization of the scopes
                    // the first write stored (never in the write that created them).
                    assert_eq!(body["identifierUris"], json!([format!("api://{APP_ID}")]));
                    let pre = &body["api"]["preAuthorizedApplications"][0];
                    assert_eq!(pre["delegatedPermissionIds"].as_array().unwrap().len(), 2);
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
                GraphOperation::UpsertFederatedCredential { credential, .. } => {
                    assert_eq!(credential.name, "aks");
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
            json!([ids::scope_id("entra-operator.bookme.mgmt-api", "Access")])
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
        let system_id = ids::role_id("entra-operator.bookme.mgmt-api", "System");
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
        let access_id = ids::scope_id("entra-operator.bookme.mgmt-api", "Access");
        // The create stores the scopes; the pre-authorization follows once Graph shows them.
        assert_eq!(body["api"]["preAuthorizedApplications"], json!([]));
        let mut created = Observed::default();
        execute(&p, &mut created);
        let p2 = plan_for(&spec, &created, &resolved);
        let patch = p2
            .operations
            .iter()
            .find_map(|op| match op {
                GraphOperation::PatchApplication { body, .. } => Some(body),
                _ => None,
            })
            .expect("an application patch");
        assert_eq!(
            patch["api"]["preAuthorizedApplications"],
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
        let mut app = graph_default_application("entra-operator.bookme.mgmt-api");
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
        // Additive (default): "old" is not the operator's, so it stays.
        let p = plan(&spec, &observed);
        assert!(
            !p.operations
                .iter()
                .any(|op| matches!(op, GraphOperation::DeleteFederatedCredential { .. })),
            "{:?}",
            p.operations
        );
        // Additive, and the operator put "old" there: it goes.
        let recorded = ["old".to_string()];
        let by_operator = plan_with(
            &spec,
            &observed,
            &ResolvedReferences::default(),
            &permissive_policy(),
            &recorded,
        );
        // Exact: every credential not listed goes.
        let mut exact = spec.clone();
        exact.credentials.federated_management = FederatedManagement::Exact;
        let p = plan(&exact, &observed);
        assert_eq!(by_operator.operations, p.operations);
        assert_eq!(
            p.operations,
            [
                GraphOperation::DeleteFederatedCredential {
                    application_id: OBJECT_ID.into(),
                    name: "old".into()
                },
                GraphOperation::UpsertFederatedCredential {
                    application_id: OBJECT_ID.into(),
                    credential: crate::graph::FederatedIdentityCredential {
                        id: None,
                        name: "aks".into(),
                        issuer: "https://oidc.aks.example/x".into(),
                        subject: "system:serviceaccount:bookme:api2".into(),
                        audiences: vec!["api://AzureADTokenExchange".into()],
                        description: None,
                    }
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

    #[test]
    fn a_new_scope_is_written_before_the_write_that_pre_authorizes_it() {
        // Create: the upsert carries the scopes, no pre-authorization naming them.
        let spec = full_spec();
        let p = plan(&spec, &nothing_yet());
        let GraphOperation::UpsertApplication { body, .. } = &p.operations[0] else {
            panic!("{p:#?}")
        };
        assert_eq!(
            body["api"]["oauth2PermissionScopes"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(body["api"]["preAuthorizedApplications"], json!([]));
        // Converging (the fake Graph refuses a pre-authorization of an unstored scope) ends with
        // both scopes pre-authorized.
        let observed = converge(&spec, nothing_yet());
        let app = observed.application.as_ref().unwrap();
        let pre = &app["api"]["preAuthorizedApplications"][0]["delegatedPermissionIds"];
        assert_eq!(pre.as_array().unwrap().len(), 2);

        // A scope added while pre-authorizations exist: first written alone, then pre-authorized.
        let mut spec2 = spec.clone();
        spec2
            .api
            .as_mut()
            .unwrap()
            .scopes
            .push(serde_json::from_value(json!({"value": "Reports.Read"})).unwrap());
        let mut observed2 = observed.clone();
        let p = plan(&spec2, &observed2);
        let body = patch_body(&p);
        assert_eq!(
            body["api"]["oauth2PermissionScopes"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            body["api"]["preAuthorizedApplications"][0]["delegatedPermissionIds"]
                .as_array()
                .unwrap()
                .len(),
            2,
            "the new scope is not pre-authorized in the write that creates it"
        );
        execute(&p, &mut observed2);
        let p = plan(&spec2, &observed2);
        assert_eq!(
            patch_body(&p)["api"]["preAuthorizedApplications"][0]["delegatedPermissionIds"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn personal_account_audiences_request_token_version_2_by_default() {
        let mut spec = full_spec();
        spec.sign_in_audience = SignInAudience::AzureADandPersonalMicrosoftAccount;
        spec.api.as_mut().unwrap().requested_access_token_version = None;
        let p = plan(&spec, &nothing_yet());
        let GraphOperation::UpsertApplication { body, .. } = &p.operations[0] else {
            panic!("{p:#?}")
        };
        assert_eq!(body["api"]["requestedAccessTokenVersion"], json!(2));
        spec.sign_in_audience = SignInAudience::AzureADMyOrg;
        let p = plan(&spec, &nothing_yet());
        let GraphOperation::UpsertApplication { body, .. } = &p.operations[0] else {
            panic!("{p:#?}")
        };
        assert_eq!(body["api"]["requestedAccessTokenVersion"], Value::Null);
    }

    #[test]
    fn a_role_written_back_disabled_does_not_echo_its_read_only_origin() {
        let spec = full_spec();
        let mut observed = converge(&spec, nothing_yet());
        let mut fewer = spec.clone();
        fewer.app_roles.retain(|r| r.value != "Reader");
        let p = plan(&fewer, &observed);
        for role in patch_body(&p)["appRoles"].as_array().unwrap() {
            assert!(role.get("origin").is_none(), "{role}");
        }
        execute(&p, &mut observed);
    }

    #[test]
    fn changing_member_types_type_or_consent_texts_of_an_enabled_entry_disables_it_first() {
        let spec = full_spec();
        let observed = converge(&spec, nothing_yet());
        let mut changed = spec.clone();
        for role in changed.app_roles.iter_mut().filter(|r| r.value == "System") {
            role.allowed_member_types = vec![MemberType::User, MemberType::Application];
        }
        let reader_id = ids::role_id("entra-operator.bookme.mgmt-api", "System");
        let p = plan(&changed, &observed);
        let role = patch_body(&p)["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(reader_id))
            .unwrap()
            .clone();
        assert_eq!(role["isEnabled"], json!(false));
        assert_eq!(role["allowedMemberTypes"], json!(["Application"]));
        let settled = converge(&changed, observed.clone());
        let role = settled.application.as_ref().unwrap()["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(reader_id))
            .unwrap()
            .clone();
        assert_eq!(role["isEnabled"], json!(true));
        let mut types: Vec<&str> = role["allowedMemberTypes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(types, ["Application", "User"]);

        // A scope's consent text: disabled first too.
        let mut texts = spec.clone();
        texts.api.as_mut().unwrap().scopes[0].admin_consent_display_name =
            Some("Access the management API".into());
        let p = plan(&texts, &observed);
        let scope = patch_body(&p)["api"]["oauth2PermissionScopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["value"] == "Access")
            .unwrap()
            .clone();
        assert_eq!(scope["isEnabled"], json!(false));
        converge(&texts, observed);
    }

    #[test]
    fn a_refused_permission_blocks_every_grant_and_names_the_rule() {
        let mut spec = full_spec();
        spec.grant_admin_consent = true;
        let observed = converge(&spec, nothing_yet());
        // Undo the grants converge made, to see what the plan would grant.
        let mut bare = observed.clone();
        bare.app_role_assignments.clear();
        bare.oauth2_permission_grants.clear();
        let p = plan_with(
            &spec,
            &bare,
            &ResolvedReferences::default(),
            &PolicyView::default(),
            &[],
        );
        assert_eq!(
            p.errors,
            [PlanError::ConsentRefused {
                permission: "MicrosoftGraph/User.Read.All".into(),
                kind: "application permission",
                rule: crate::policy::DEFAULT_NO_GRAPH.into(),
            }]
        );
        // User.Read alone would be allowed by default, but nothing is granted while any part is refused.
        assert!(
            !p.operations.iter().any(|op| matches!(
                op,
                GraphOperation::CreateAppRoleAssignment { .. }
                    | GraphOperation::CreateOAuth2PermissionGrant { .. }
                    | GraphOperation::PatchOAuth2PermissionGrant { .. }
            )),
            "{:?}",
            p.operations
        );
        assert_eq!(p.blocking_reason().unwrap().0, "ConsentRefused");
    }

    #[test]
    fn adoption_is_refused_without_a_rule_and_of_another_resource_s_app() {
        let mut spec = full_spec();
        spec.adopt = Some(crate::api::appregistration::AdoptSpec {
            app_id: APP_ID.into(),
        });
        let mut observed = nothing_yet();
        observed.application = Some(graph_default_application("legacy-name"));
        let refused = |p: &Plan| {
            assert!(p.operations.is_empty(), "{:?}", p.operations);
            match p.errors.as_slice() {
                [PlanError::AdoptionRefused { why, .. }] => why.clone(),
                other => panic!("{other:?}"),
            }
        };
        let no_rule = plan_with(
            &spec,
            &observed,
            &ResolvedReferences::default(),
            &PolicyView::default(),
            &[],
        );
        assert!(refused(&no_rule).contains(crate::policy::DEFAULT_NO_ADOPTION));

        for marked in ["entra-operator.team-a.api", "entra-operator-team-a-api"] {
            observed.application = Some(graph_default_application(marked));
            let p = plan(&spec, &observed);
            assert!(refused(&p).contains(marked));
        }

        observed.application = Some(graph_default_application("legacy-name"));
        let claims = BTreeMap::from([(APP_ID.to_string(), "team-a/api".to_string())]);
        let p = plan_app_registration(PlanInput {
            spec: &spec,
            name: "mgmt-api",
            namespace: "bookme",
            references: &ResolvedReferences::default(),
            observed: &observed,
            settings: &settings(),
            policy: &permissive_policy(),
            recorded_unique_name: None,
            claimed_elsewhere: &claims,
            recorded_federated: &[],
            recorded_owners: &[],
            recorded_grants: &[],
        });
        assert!(refused(&p).contains("team-a/api"));
    }

    #[test]
    fn a_recorded_unique_name_is_kept() {
        let spec = full_spec();
        let p = plan_app_registration(PlanInput {
            spec: &spec,
            name: "mgmt-api",
            namespace: "bookme",
            references: &ResolvedReferences::default(),
            observed: &nothing_yet(),
            settings: &settings(),
            policy: &permissive_policy(),
            recorded_unique_name: Some("entra-operator-bookme-mgmt-api"),
            claimed_elsewhere: &BTreeMap::new(),
            recorded_federated: &[],
            recorded_owners: &[],
            recorded_grants: &[],
        });
        assert!(matches!(
            &p.operations[0],
            GraphOperation::UpsertApplication { unique_name, .. } if unique_name == "entra-operator-bookme-mgmt-api"
        ));
        let fresh = plan(&spec, &nothing_yet());
        assert!(matches!(
            &fresh.operations[0],
            GraphOperation::UpsertApplication { unique_name, .. } if unique_name == "entra-operator.bookme.mgmt-api"
        ));
    }

    /// Plans with the owners and grants the operator recorded.
    fn plan_recorded(
        spec: &AppRegistrationSpec,
        observed: &Observed,
        owners: &[String],
        grants: &[GrantedPermission],
    ) -> Plan {
        plan_app_registration(PlanInput {
            spec,
            name: "mgmt-api",
            namespace: "bookme",
            references: &ResolvedReferences::default(),
            observed,
            settings: &settings(),
            policy: &permissive_policy(),
            recorded_unique_name: None,
            claimed_elsewhere: &BTreeMap::new(),
            recorded_federated: &[],
            recorded_owners: owners,
            recorded_grants: grants,
        })
    }

    /// Plans and executes until a plan writes nothing, carrying the records from plan to plan as
    /// the executor does; returns the settled state and the records.
    fn converge_recorded(
        spec: &AppRegistrationSpec,
        mut observed: Observed,
        mut owners: Vec<String>,
        mut grants: Vec<GrantedPermission>,
    ) -> (Observed, Vec<String>, Vec<GrantedPermission>) {
        for _ in 0..5 {
            let p = plan_recorded(spec, &observed, &owners, &grants);
            owners = p.status.managed_owners.clone();
            grants = p.status.granted_permissions.clone();
            if p.operations.is_empty() {
                return (observed, owners, grants);
            }
            execute(&p, &mut observed);
        }
        panic!("no convergence after 5 plans");
    }

    fn owner(id: &str) -> ObservedOwner {
        ObservedOwner {
            id: id.into(),
            app_id: None,
        }
    }

    #[test]
    fn owners_the_operator_added_are_removed_others_only_when_exact() {
        const A: &str = "0a0e0000-0000-4000-8000-00000000000a";
        const B: &str = "0a0e0000-0000-4000-8000-00000000000b";
        const PERSON: &str = "0a0e0000-0000-4000-8000-0000000000aa";
        const OPERATOR_SP: &str = "0a0e0000-0000-4000-8000-0000000000ff";
        let operator = ObservedOwner {
            id: OPERATOR_SP.into(),
            app_id: Some(OPERATOR_APP_ID.to_uppercase()),
        };
        let add = |id: &str| GraphOperation::AddOwner {
            application_id: OBJECT_ID.into(),
            owner_id: id.into(),
        };
        let remove = |id: &str| GraphOperation::RemoveOwner {
            application_id: OBJECT_ID.into(),
            owner_id: id.into(),
        };
        struct Case {
            name: &'static str,
            exact: bool,
            declared: Vec<&'static str>,
            present: Vec<ObservedOwner>,
            recorded: Vec<&'static str>,
            operations: Vec<GraphOperation>,
            managed: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "a declared owner is added and recorded",
                exact: false,
                declared: vec![A],
                present: vec![operator.clone()],
                recorded: vec![],
                operations: vec![add(A)],
                managed: vec![A],
            },
            Case {
                name: "an owner the operator added leaves with the spec (recorded until gone)",
                exact: false,
                declared: vec![],
                present: vec![operator.clone(), owner(A)],
                recorded: vec![A],
                operations: vec![remove(A)],
                managed: vec![A],
            },
            Case {
                name: "not ours, left alone",
                exact: false,
                declared: vec![],
                present: vec![operator.clone(), owner(PERSON)],
                recorded: vec![],
                operations: vec![],
                managed: vec![],
            },
            Case {
                name: "declared but already an owner: not recorded, so not ours later",
                exact: false,
                declared: vec![PERSON],
                present: vec![operator.clone(), owner(PERSON)],
                recorded: vec![],
                operations: vec![],
                managed: vec![],
            },
            Case {
                name: "added before removed",
                exact: false,
                declared: vec![B],
                present: vec![operator.clone(), owner(A)],
                recorded: vec![A],
                operations: vec![add(B), remove(A)],
                managed: vec![A, B],
            },
            Case {
                name: "a recorded owner someone removed is forgotten",
                exact: false,
                declared: vec![],
                present: vec![operator.clone()],
                recorded: vec![A],
                operations: vec![],
                managed: vec![],
            },
            Case {
                name: "a recorded owner someone removed but still declared is added again",
                exact: false,
                declared: vec![A],
                present: vec![operator.clone()],
                recorded: vec![A],
                operations: vec![add(A)],
                managed: vec![A],
            },
            Case {
                name: "Exact removes every undeclared owner but the operator",
                exact: true,
                declared: vec![A],
                present: vec![operator.clone(), owner(A), owner(PERSON)],
                recorded: vec![],
                operations: vec![remove(PERSON)],
                managed: vec![],
            },
            Case {
                name: "the operator's own identity is never removed, even when recorded",
                exact: true,
                declared: vec![],
                present: vec![operator.clone()],
                recorded: vec![OPERATOR_SP],
                operations: vec![],
                managed: vec![OPERATOR_SP],
            },
            Case {
                name: "the last owner stays",
                exact: true,
                declared: vec![],
                present: vec![owner(PERSON)],
                recorded: vec![],
                operations: vec![],
                managed: vec![],
            },
        ];
        for case in cases {
            let mut spec = full_spec();
            spec.owners = case.declared.iter().map(|s| s.to_string()).collect();
            if case.exact {
                spec.owners_management = OwnersManagement::Exact;
            }
            let observed = Observed {
                owners: case.present.clone(),
                ..Observed::default()
            };
            let recorded: Vec<String> = case.recorded.iter().map(|s| s.to_string()).collect();
            let (operations, managed, errors) = plan_owners(
                &spec,
                OBJECT_ID,
                &observed,
                &recorded,
                Some(OPERATOR_APP_ID),
            );
            assert_eq!(operations, case.operations, "{}", case.name);
            assert_eq!(managed, case.managed, "{}", case.name);
            assert!(errors.is_empty(), "{}", case.name);
        }
    }

    #[test]
    fn owners_named_by_principal_name_count_as_declared_and_an_unknown_name_removes_nothing() {
        const ALICE: &str = "0a0e0000-0000-4000-8000-0000000000a1";
        const BOB: &str = "0a0e0000-0000-4000-8000-0000000000b0";
        const PERSON: &str = "0a0e0000-0000-4000-8000-0000000000aa";
        let add = |id: &str| GraphOperation::AddOwner {
            application_id: OBJECT_ID.into(),
            owner_id: id.into(),
        };
        let remove = |id: &str| GraphOperation::RemoveOwner {
            application_id: OBJECT_ID.into(),
            owner_id: id.into(),
        };
        let resolved = |names: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
            names
                .iter()
                .map(|(n, id)| (n.to_string(), id.map(str::to_string)))
                .collect()
        };
        let run = |names: &[&str],
                   exact: bool,
                   resolution: &[(&str, Option<&str>)],
                   present: &[&str],
                   recorded: &[&str]| {
            let mut spec = full_spec();
            spec.owners.clear();
            spec.owner_user_principal_names = names.iter().map(|s| s.to_string()).collect();
            if exact {
                spec.owners_management = OwnersManagement::Exact;
            }
            let observed = Observed {
                owners: present.iter().map(|id| owner(id)).collect(),
                owner_principal_names: resolved(resolution),
                ..Observed::default()
            };
            let recorded: Vec<String> = recorded.iter().map(|s| s.to_string()).collect();
            plan_owners(
                &spec,
                OBJECT_ID,
                &observed,
                &recorded,
                Some(OPERATOR_APP_ID),
            )
        };

        // A resolved name is added and recorded like an object ID.
        let (ops, managed, errors) = run(
            &["alice@contoso.com"],
            false,
            &[("alice@contoso.com", Some(ALICE))],
            &[PERSON],
            &[],
        );
        assert_eq!(ops, [add(ALICE)]);
        assert_eq!(managed, [ALICE]);
        assert!(errors.is_empty());

        // Already an owner: kept, and removed once the name leaves the spec.
        let (ops, _, _) = run(
            &["alice@contoso.com"],
            false,
            &[("alice@contoso.com", Some(ALICE))],
            &[PERSON, ALICE],
            &[ALICE],
        );
        assert!(ops.is_empty());
        let (ops, managed, _) = run(&[], false, &[], &[PERSON, ALICE], &[ALICE]);
        assert_eq!(ops, [remove(ALICE)]);
        assert_eq!(managed, [ALICE], "recorded until the removal is observed");

        // An unknown name: reported; the known one is still added; nothing is removed, neither
        // an owner the operator recorded nor (Exact) anyone else.
        for exact in [false, true] {
            let (ops, managed, errors) = run(
                &["alice@contoso.com", "nobody@contoso.com"],
                exact,
                &[
                    ("alice@contoso.com", Some(ALICE)),
                    ("nobody@contoso.com", None),
                ],
                &[PERSON, BOB],
                &[BOB],
            );
            assert_eq!(ops, [add(ALICE)], "exact: {exact}");
            assert_eq!(managed, [ALICE, BOB], "exact: {exact}");
            assert_eq!(
                errors,
                [PlanError::OwnerNotFound {
                    user_principal_name: "nobody@contoso.com".into()
                }]
            );
        }
        // A name the observation did not resolve at all counts as unknown.
        let (ops, _, errors) = run(&["alice@contoso.com"], true, &[], &[PERSON], &[]);
        assert!(ops.is_empty());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn an_unknown_owner_name_blocks_synced_with_owner_not_found_naming_it() {
        let mut spec = full_spec();
        spec.owner_user_principal_names = vec!["nobody@contoso.com".into()];
        let (mut observed, owners, grants) =
            converge_recorded(&full_spec(), nothing_yet(), vec![], vec![]);
        observed
            .owner_principal_names
            .insert("nobody@contoso.com".into(), None);
        let p = plan_recorded(&spec, &observed, &owners, &grants);
        let (reason, message) = p.blocking_reason().expect("blocked");
        assert_eq!(reason, "OwnerNotFound");
        assert!(message.contains("nobody@contoso.com"), "{message}");
        assert!(
            !p.operations
                .iter()
                .any(|o| matches!(o, GraphOperation::RemoveOwner { .. })),
            "{:?}",
            p.operations
        );
    }

    #[test]
    fn removing_an_owner_from_the_spec_removes_only_the_one_the_operator_added() {
        const PERSON: &str = "0a0e0000-0000-4000-8000-0000000000aa";
        let spec = full_spec();
        let (mut observed, owners, grants) =
            converge_recorded(&spec, nothing_yet(), vec![], vec![]);
        assert_eq!(owners, [OWNER]);
        observed.owners.push(owner(PERSON));
        let mut edited = spec.clone();
        edited.owners.clear();
        let p = plan_recorded(&edited, &observed, &owners, &grants);
        // Owners come after the application and service principal, before credentials and
        // consent; with nothing else changed, the removal is the only write.
        assert_eq!(
            p.operations,
            [GraphOperation::RemoveOwner {
                application_id: OBJECT_ID.into(),
                owner_id: OWNER.into()
            }]
        );
        let (settled, owners, _) = converge_recorded(&edited, observed, owners, grants);
        assert_eq!(settled.owners, [owner(PERSON)], "not ours, left alone");
        assert!(owners.is_empty());
        // Without a record (an older operator added it), nothing is removed.
        let (observed, _, grants) = converge_recorded(&spec, nothing_yet(), vec![], vec![]);
        assert_eq!(
            plan_recorded(&edited, &observed, &[], &grants).operations,
            []
        );
    }

    #[test]
    fn grants_the_operator_made_are_revoked_when_the_spec_drops_them_and_only_those() {
        type Edit = fn(&mut AppRegistrationSpec);
        type Foreign = fn(&mut Observed);
        struct Case {
            name: &'static str,
            foreign: Foreign,
            edit: Edit,
            operations: Vec<GraphOperation>,
            /// (kind, value) still recorded once settled.
            granted: Vec<(GrantedPermissionKind, &'static str)>,
        }
        use GrantedPermissionKind::{Application as App, Delegated as Del};
        let none: Foreign = |_| {};
        let grant_id = format!("g-{GRAPH_SP}");
        let delete_user_read_all = GraphOperation::DeleteAppRoleAssignment {
            resource_sp_id: GRAPH_SP.into(),
            assignment_id: format!("a-{USER_READ_ALL}"),
        };
        let patch = |scope: &str| GraphOperation::PatchOAuth2PermissionGrant {
            id: grant_id.clone(),
            scope: scope.into(),
        };
        let rra = |s: &mut AppRegistrationSpec, delegated: &[&str], application: &[&str]| {
            s.required_resource_access[0].delegated =
                delegated.iter().map(|v| v.to_string()).collect();
            s.required_resource_access[0].application =
                application.iter().map(|v| v.to_string()).collect();
        };
        let cases = vec![
            Case {
                name: "an application permission removed: its assignment is deleted",
                foreign: none,
                edit: |s| s.required_resource_access[0].application.clear(),
                operations: vec![delete_user_read_all.clone()],
                granted: vec![(Del, "User.Read"), (Del, "profile")],
            },
            Case {
                name: "a delegated permission removed: the grant's scope is trimmed",
                foreign: none,
                edit: |s| s.required_resource_access[0].delegated = vec!["User.Read".into()],
                operations: vec![patch("User.Read")],
                granted: vec![(App, "User.Read.All"), (Del, "User.Read")],
            },
            Case {
                name: "every delegated permission removed: the grant is deleted",
                foreign: none,
                edit: |s| s.required_resource_access[0].delegated.clear(),
                operations: vec![GraphOperation::DeleteOAuth2PermissionGrant {
                    id: grant_id.clone(),
                }],
                granted: vec![(App, "User.Read.All")],
            },
            Case {
                name: "a scope someone else granted keeps the grant alive",
                foreign: |o| o.oauth2_permission_grants[0].scope.push_str(" email"),
                edit: |s| s.required_resource_access[0].delegated.clear(),
                operations: vec![patch("email")],
                granted: vec![(App, "User.Read.All")],
            },
            Case {
                name: "an assignment someone else made is left alone",
                foreign: |o| {
                    o.app_role_assignments.push(ObservedAppRoleAssignment {
                        id: "foreign".into(),
                        principal_id: OUR_SP.into(),
                        resource_id: GRAPH_SP.into(),
                        app_role_id: GROUP_READ_ALL.into(),
                    })
                },
                edit: |s| s.required_resource_access[0].application.clear(),
                operations: vec![delete_user_read_all.clone()],
                granted: vec![(Del, "User.Read"), (Del, "profile")],
            },
            Case {
                name: "one scope swapped for another: one PATCH trims and extends",
                foreign: none,
                edit: |s| {
                    s.required_resource_access[0].delegated =
                        vec!["User.Read".into(), "email".into()]
                },
                operations: vec![patch("User.Read email")],
                granted: vec![(App, "User.Read.All"), (Del, "User.Read"), (Del, "email")],
            },
            Case {
                name: "the whole resource removed: everything the operator granted goes",
                foreign: none,
                edit: |s| s.required_resource_access.clear(),
                operations: vec![
                    delete_user_read_all.clone(),
                    GraphOperation::DeleteOAuth2PermissionGrant {
                        id: grant_id.clone(),
                    },
                ],
                granted: vec![],
            },
            Case {
                name: "grantAdminConsent turned off: what is still declared stays granted",
                foreign: none,
                edit: |s| {
                    s.grant_admin_consent = false;
                    s.required_resource_access[0].delegated = vec!["User.Read".into()];
                },
                operations: vec![patch("User.Read")],
                granted: vec![(App, "User.Read.All"), (Del, "User.Read")],
            },
            Case {
                name: "an unresolvable permission: nothing is revoked while the set is unknown",
                foreign: none,
                edit: |s| {
                    s.required_resource_access[0].delegated =
                        vec!["User.Read".into(), "No.Such.Scope".into()]
                },
                operations: vec![],
                granted: vec![(App, "User.Read.All"), (Del, "User.Read"), (Del, "profile")],
            },
        ];
        let mut spec = full_spec();
        spec.grant_admin_consent = true;
        rra(&mut spec, &["User.Read", "profile"], &["User.Read.All"]);
        let (settled, owners, grants) = converge_recorded(&spec, nothing_yet(), vec![], vec![]);
        assert_eq!(grants.len(), 3, "{grants:?}");
        assert_eq!(
            settled.oauth2_permission_grants[0].scope,
            "User.Read profile"
        );
        for case in cases {
            let mut observed = settled.clone();
            (case.foreign)(&mut observed);
            let mut edited = spec.clone();
            (case.edit)(&mut edited);
            let p = plan_recorded(&edited, &observed, &owners, &grants);
            // After the application's requiredResourceAccess PATCH (not compared here).
            let consent: Vec<GraphOperation> = p
                .operations
                .iter()
                .skip_while(|op| matches!(op, GraphOperation::PatchApplication { .. }))
                .cloned()
                .collect();
            assert_eq!(consent, case.operations, "{}", case.name);
            let (after, _, recorded) =
                converge_recorded(&edited, observed.clone(), owners.clone(), grants.clone());
            let got: BTreeSet<(GrantedPermissionKind, &str)> = recorded
                .iter()
                .map(|g| (g.kind, g.value.as_str()))
                .collect();
            let want: BTreeSet<(GrantedPermissionKind, &str)> =
                case.granted.iter().copied().collect();
            assert_eq!(got, want, "{}", case.name);
            // What someone else granted is still there.
            for foreign in &observed.app_role_assignments {
                if foreign.id == "foreign" {
                    assert!(
                        after.app_role_assignments.contains(foreign),
                        "{}",
                        case.name
                    );
                }
            }
            // Not recorded, nothing is revoked.
            let unrecorded = plan_recorded(&edited, &observed, &owners, &[]);
            assert!(
                !unrecorded.operations.iter().any(|op| matches!(
                    op,
                    GraphOperation::DeleteAppRoleAssignment { .. }
                        | GraphOperation::DeleteOAuth2PermissionGrant { .. }
                ) || matches!(op, GraphOperation::PatchOAuth2PermissionGrant { scope, .. }
                    if !scope.contains("profile") && scope.contains("User.Read"))),
                "{}: {:?}",
                case.name,
                unrecorded.operations
            );
        }
    }

    #[test]
    fn known_client_applications_are_managed_when_declared_and_carried_over_otherwise() {
        const DECLARED: &str = "c11e0000-0000-4000-8000-0000000000c1";
        const DESKTOP: &str = "c11e0000-0000-4000-8000-0000000000d1";
        const FOREIGN: &str = "c11e0000-0000-4000-8000-0000000000f1";
        let resolved = ResolvedReferences {
            apps: [(
                "desktop".to_string(),
                ResolvedApp {
                    app_id: DESKTOP.into(),
                    ..Default::default()
                },
            )]
            .into(),
            waiting: Default::default(),
        };
        let waiting = ResolvedReferences {
            waiting: ["desktop".to_string()].into(),
            ..Default::default()
        };
        struct Case {
            name: &'static str,
            declared: Option<Value>,
            in_entra: Vec<&'static str>,
            references: ResolvedReferences,
            /// The list written, or None for no write.
            written: Option<Vec<&'static str>>,
        }
        let cases = [
            Case {
                name: "left out of the spec: what Entra has is kept",
                declared: None,
                in_entra: vec![FOREIGN],
                references: ResolvedReferences::default(),
                written: None,
            },
            Case {
                name: "declared by appId and appRef: written",
                declared: Some(json!([{"appId": DECLARED}, {"appRef": {"name": "desktop"}}])),
                in_entra: vec![],
                references: resolved.clone(),
                written: Some(vec![DECLARED, DESKTOP]),
            },
            Case {
                name: "an entry removed from the spec is removed in Entra",
                declared: Some(json!([{"appId": DECLARED}])),
                in_entra: vec![DECLARED, FOREIGN],
                references: ResolvedReferences::default(),
                written: Some(vec![DECLARED]),
            },
            Case {
                name: "declared empty: every entry goes",
                declared: Some(json!([])),
                in_entra: vec![FOREIGN],
                references: ResolvedReferences::default(),
                written: Some(vec![]),
            },
            Case {
                name: "an unresolved appRef removes nothing yet",
                declared: Some(json!([{"appId": DECLARED}, {"appRef": {"name": "desktop"}}])),
                in_entra: vec![FOREIGN],
                references: waiting.clone(),
                written: Some(vec![DECLARED, FOREIGN]),
            },
            Case {
                name: "already as declared: no write",
                declared: Some(json!([{"appRef": {"name": "desktop"}}])),
                in_entra: vec![DESKTOP],
                references: resolved.clone(),
                written: None,
            },
        ];
        for case in cases {
            let mut spec = full_spec();
            if let Some(declared) = &case.declared {
                spec.api.as_mut().unwrap().known_client_applications =
                    Some(serde_json::from_value(declared.clone()).unwrap());
            }
            let base = full_spec();
            let mut observed = converge(&base, nothing_yet());
            observed.application.as_mut().unwrap()["api"]["knownClientApplications"] =
                json!(case.in_entra);
            let p = plan_for(&spec, &observed, &case.references);
            let written = p.operations.iter().find_map(|op| match op {
                GraphOperation::PatchApplication { body, .. } => {
                    body.pointer("/api/knownClientApplications").cloned()
                }
                _ => None,
            });
            assert_eq!(
                written,
                case.written.as_ref().map(|w| json!(w)),
                "{}",
                case.name
            );
        }
    }
}
