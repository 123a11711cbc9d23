//! Admin consent in the operator's own tenant: which required permissions are granted, the grants
//! to create when `grantAdminConsent` is set, and the admin-consent URL otherwise.
//!
//! Application permissions are granted by an app role assignment of our service principal on the
//! resource's; delegated ones by an `AllPrincipals` oauth2PermissionGrant of our service principal on
//! the resource's whose `scope` string holds the value.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::appregistration::{
    ConsentState, ConsentStatus, GrantedPermission, GrantedPermissionKind,
};

use super::observed::Observed;
use super::operation::GraphOperation;

/// Delegated (a scope, `Scope` in `requiredResourceAccess`) or application (an app role, `Role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermissionKind {
    Delegated,
    Application,
}

impl PermissionKind {
    /// The `type` of a `resourceAccess` entry.
    pub fn resource_access_type(&self) -> &'static str {
        match self {
            PermissionKind::Delegated => "Scope",
            PermissionKind::Application => "Role",
        }
    }
}

impl From<PermissionKind> for GrantedPermissionKind {
    fn from(kind: PermissionKind) -> Self {
        match kind {
            PermissionKind::Delegated => GrantedPermissionKind::Delegated,
            PermissionKind::Application => GrantedPermissionKind::Application,
        }
    }
}

/// One required permission with its ID resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequiredPermission {
    /// How `consent.missing` names the API: the well-known name, the appRef name, or the appId.
    pub api: String,
    pub resource_app_id: String,
    /// The permission's value, e.g. `User.Read`.
    pub value: String,
    /// The scope's or app role's ID.
    pub id: String,
    pub kind: PermissionKind,
}

impl RequiredPermission {
    /// `<api>/<permission>`, as status lists missing permissions.
    pub fn display(&self) -> String {
        format!("{}/{}", self.api, self.value)
    }
}

/// Where and how to build the admin-consent URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentSettings {
    /// e.g. `https://login.microsoftonline.com` (no trailing slash needed).
    pub authority_host: String,
    /// The operator's tenant ID.
    pub tenant_id: String,
}

/// The consent part of a plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsentPlan {
    pub status: ConsentStatus,
    /// Grants to create or extend (only with `grantAdminConsent`), then the revocations of
    /// permissions the operator granted and the spec no longer declares.
    pub operations: Vec<GraphOperation>,
    /// What the operator granted once these operations ran (the next `status.grantedPermissions`):
    /// the recorded grants still in place, and the ones this plan makes. A grant being revoked
    /// stays recorded until an observation shows it gone, so a failed revocation is retried.
    pub granted: Vec<GrantedPermission>,
}

/// What the operator granted before, and whether what the spec no longer declares may be revoked
/// (not while part of `requiredResourceAccess` could not be resolved: the declared set is not
/// known then).
#[derive(Clone, Copy, Debug, Default)]
pub struct Recorded<'a> {
    pub granted: &'a [GrantedPermission],
    pub revoke: bool,
}

/// The v1 admin-consent URL: `{authority}/{tenant}/adminconsent?client_id={appId}`.
///
/// The v1 form consents to everything the app declares in `requiredResourceAccess` across all
/// resources, which is exactly what the spec asks for; the v2 form needs one `scope=…/.default`
/// per resource and a resource identifier URI the operator does not always know.
pub fn admin_consent_url(settings: &ConsentSettings, app_id: &str) -> String {
    format!(
        "{}/{}/adminconsent?client_id={}",
        settings.authority_host.trim_end_matches('/'),
        settings.tenant_id,
        app_id
    )
}

/// Computes consent state for `required` and, when `grant` is set, the grants that are missing.
///
/// `our_sp_id` is `None` when our service principal does not exist yet: then nothing is granted
/// and nothing can be granted until it exists.
pub fn plan_consent(
    required: &[RequiredPermission],
    our_sp_id: Option<&str>,
    app_id: Option<&str>,
    observed: &Observed,
    grant: bool,
    recorded: Recorded<'_>,
    settings: &ConsentSettings,
) -> ConsentPlan {
    let revocations = match our_sp_id {
        Some(ours) if recorded.revoke => {
            plan_revocations(required, recorded.granted, ours, observed)
        }
        _ => Revocations {
            trimmed: observed.clone(),
            ..Revocations::default()
        },
    };
    let mut granted: Vec<GrantedPermission> = our_sp_id
        .map(|ours| {
            recorded
                .granted
                .iter()
                .filter(|g| still_granted(g, ours, observed))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if required.is_empty() {
        let mut operations = revocations.operations;
        operations.extend(revocations.grant_writes);
        return ConsentPlan {
            status: ConsentStatus {
                state: ConsentState::NotRequired,
                missing: Vec::new(),
                admin_consent_url: None,
            },
            operations,
            granted: sorted(granted),
        };
    }

    let mut missing: Vec<&RequiredPermission> = Vec::new();
    for permission in required {
        let resource_sp = observed
            .resource_service_principals
            .get(&permission.resource_app_id)
            .map(|sp| sp.id.as_str());
        let granted = match (our_sp_id, resource_sp) {
            (Some(ours), Some(resource)) => is_granted(permission, ours, resource, observed),
            _ => false,
        };
        if !granted {
            missing.push(permission);
        }
    }

    let state = if missing.is_empty() {
        ConsentState::Granted
    } else if missing.len() == required.len() {
        ConsentState::NotGranted
    } else {
        ConsentState::Partial
    };

    let mut operations = Vec::new();
    if grant && let Some(ours) = our_sp_id {
        // Granted on top of the trimmed grants, so one PATCH both trims and extends a grant.
        operations = grants_for(&missing, ours, &revocations.trimmed);
        granted.extend(missing.iter().filter_map(|p| {
            let resource = observed
                .resource_service_principals
                .get(&p.resource_app_id)?;
            Some(GrantedPermission {
                resource_app_id: p.resource_app_id.as_str().into(),
                resource_service_principal_id: resource.id.as_str().into(),
                kind: p.kind.into(),
                id: p.id.as_str().into(),
                value: p.value.as_str().into(),
            })
        }));
    }
    // A trimmed grant that the grants above already PATCH is written once, by that PATCH.
    let patched: BTreeSet<String> = operations
        .iter()
        .filter_map(|op| match op {
            GraphOperation::PatchOAuth2PermissionGrant { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    operations.extend(revocations.operations);
    operations.extend(revocations.grant_writes.into_iter().filter(|w| match w {
        GraphOperation::PatchOAuth2PermissionGrant { id, .. }
        | GraphOperation::DeleteOAuth2PermissionGrant { id } => !patched.contains(id),
        _ => true,
    }));

    ConsentPlan {
        status: ConsentStatus {
            state,
            missing: missing.iter().map(|p| p.display()).collect(),
            admin_consent_url: match state {
                ConsentState::Granted | ConsentState::NotRequired => None,
                _ => app_id.map(|id| admin_consent_url(settings, id)),
            },
        },
        operations,
        granted: sorted(granted),
    }
}

fn sorted(mut granted: Vec<GrantedPermission>) -> Vec<GrantedPermission> {
    granted.sort();
    granted.dedup();
    granted
}

/// Whether a permission the operator recorded as granted is still granted to our service
/// principal (someone may have revoked it, or the service principal was replaced).
fn still_granted(g: &GrantedPermission, our_sp_id: &str, observed: &Observed) -> bool {
    match g.kind {
        GrantedPermissionKind::Application => observed.app_role_assignments.iter().any(|a| {
            a.principal_id.eq_ignore_ascii_case(our_sp_id)
                && a.resource_id
                    .eq_ignore_ascii_case(&g.resource_service_principal_id)
                && a.app_role_id.eq_ignore_ascii_case(&g.id)
        }),
        GrantedPermissionKind::Delegated => {
            admin_grant(observed, our_sp_id, &g.resource_service_principal_id)
                .is_some_and(|grant| grant.scopes().any(|s| s == g.value))
        }
    }
}

/// The revocations of permissions the operator granted that the spec no longer requires.
#[derive(Default)]
struct Revocations {
    /// App role assignments to delete.
    operations: Vec<GraphOperation>,
    /// Trimmed delegated grants: a PATCH with the remaining scopes, or a DELETE when none remain.
    grant_writes: Vec<GraphOperation>,
    /// The observation with the trimmed grants' scopes as they will be.
    trimmed: Observed,
}

fn plan_revocations(
    required: &[RequiredPermission],
    recorded: &[GrantedPermission],
    our_sp_id: &str,
    observed: &Observed,
) -> Revocations {
    let declared: BTreeSet<(String, GrantedPermissionKind, String)> = required
        .iter()
        .map(|p| {
            (
                p.resource_app_id.to_ascii_lowercase(),
                p.kind.into(),
                p.id.to_ascii_lowercase(),
            )
        })
        .collect();
    let mut out = Revocations {
        trimmed: observed.clone(),
        ..Revocations::default()
    };
    // Delegated values to take out of each resource's grant.
    let mut trims: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for g in recorded {
        let key = (
            g.resource_app_id.to_ascii_lowercase(),
            g.kind,
            g.id.to_ascii_lowercase(),
        );
        if declared.contains(&key) {
            continue;
        }
        match g.kind {
            GrantedPermissionKind::Application => {
                let assignments = observed.app_role_assignments.iter().filter(|a| {
                    a.principal_id.eq_ignore_ascii_case(our_sp_id)
                        && a.resource_id
                            .eq_ignore_ascii_case(&g.resource_service_principal_id)
                        && a.app_role_id.eq_ignore_ascii_case(&g.id)
                });
                for a in assignments {
                    out.operations
                        .push(GraphOperation::DeleteAppRoleAssignment {
                            resource_sp_id: a.resource_id.clone(),
                            assignment_id: a.id.clone(),
                        });
                }
            }
            GrantedPermissionKind::Delegated => {
                // A value still declared for the same resource (under another ID) stays.
                let still_declared = required.iter().any(|p| {
                    p.kind == PermissionKind::Delegated
                        && p.resource_app_id.eq_ignore_ascii_case(&g.resource_app_id)
                        && p.value == g.value
                });
                if !still_declared {
                    trims
                        .entry(g.resource_service_principal_id.to_ascii_lowercase())
                        .or_default()
                        .insert(g.value.as_str());
                }
            }
        }
    }
    for grant in out.trimmed.oauth2_permission_grants.iter_mut().filter(|g| {
        g.client_id.eq_ignore_ascii_case(our_sp_id) && g.consent_type == "AllPrincipals"
    }) {
        let Some(values) = trims.get(&grant.resource_id.to_ascii_lowercase()) else {
            continue;
        };
        let kept: Vec<&str> = grant.scopes().filter(|s| !values.contains(s)).collect();
        if kept.len() == grant.scopes().count() {
            continue;
        }
        let scope = kept.join(" ");
        out.grant_writes.push(if kept.is_empty() {
            GraphOperation::DeleteOAuth2PermissionGrant {
                id: grant.id.clone(),
            }
        } else {
            GraphOperation::PatchOAuth2PermissionGrant {
                id: grant.id.clone(),
                scope: scope.clone(),
            }
        });
        grant.scope = scope;
    }
    out
}

fn admin_grant<'a>(
    observed: &'a Observed,
    our_sp_id: &str,
    resource_sp_id: &str,
) -> Option<&'a super::observed::ObservedPermissionGrant> {
    observed.oauth2_permission_grants.iter().find(|g| {
        g.client_id == our_sp_id
            && g.resource_id == resource_sp_id
            && g.consent_type == "AllPrincipals"
    })
}

fn is_granted(
    permission: &RequiredPermission,
    our_sp_id: &str,
    resource_sp_id: &str,
    observed: &Observed,
) -> bool {
    match permission.kind {
        PermissionKind::Application => observed.app_role_assignments.iter().any(|a| {
            a.principal_id == our_sp_id
                && a.resource_id == resource_sp_id
                && a.app_role_id.eq_ignore_ascii_case(&permission.id)
        }),
        PermissionKind::Delegated => observed
            .oauth2_permission_grants
            .iter()
            .filter(|g| {
                g.client_id == our_sp_id
                    && g.resource_id == resource_sp_id
                    && g.consent_type == "AllPrincipals"
            })
            .any(|g| g.scopes().any(|s| s == permission.value)),
    }
}

/// The writes that grant `missing`: one app role assignment per application permission, and per
/// resource one new grant or one extension of the existing grant's scope string.
fn grants_for(
    missing: &[&RequiredPermission],
    our_sp_id: &str,
    observed: &Observed,
) -> Vec<GraphOperation> {
    let mut operations = Vec::new();
    let mut delegated: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for permission in missing {
        // A resource without a service principal cannot be granted; it stays missing.
        let Some(resource) = observed
            .resource_service_principals
            .get(&permission.resource_app_id)
        else {
            continue;
        };
        match permission.kind {
            PermissionKind::Application => {
                operations.push(GraphOperation::CreateAppRoleAssignment {
                    resource_sp_id: resource.id.clone(),
                    principal_id: our_sp_id.to_string(),
                    app_role_id: permission.id.clone(),
                })
            }
            PermissionKind::Delegated => {
                let values = delegated.entry(resource.id.as_str()).or_default();
                if !values.contains(&permission.value.as_str()) {
                    values.push(&permission.value);
                }
            }
        }
    }
    for (resource_sp_id, values) in delegated {
        match admin_grant(observed, our_sp_id, resource_sp_id) {
            Some(existing) => {
                let mut scopes: Vec<&str> = existing.scopes().collect();
                scopes.extend(values);
                operations.push(GraphOperation::PatchOAuth2PermissionGrant {
                    id: existing.id.clone(),
                    scope: scopes.join(" "),
                });
            }
            None => operations.push(GraphOperation::CreateOAuth2PermissionGrant {
                client_id: our_sp_id.to_string(),
                resource_id: resource_sp_id.to_string(),
                scope: values.join(" "),
            }),
        }
    }
    operations
}
