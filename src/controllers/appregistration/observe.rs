//! The AppRegistration controller's observe stage: the referenced AppRegistrations' status and
//! everything Graph holds for the application, converted once into the plan's `Observed` view.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::Api;

use crate::api::AppRegistration;
use crate::api::appregistration::{
    AppRegistrationStatus, FederatedManagement, GrantedPermissionKind, OwnersManagement,
};
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::graph::{Application, OptionalExt};

use super::observed::{Observed, ObservedServicePrincipal, application_json};
use super::references::{ResolvedReferences, referenced_names, resolve_references};

/// Reads the status of referenced AppRegistrations: from the shared AppRegistration store when a
/// controller watches the namespace (a BankClient's child refers to its API on every reconcile,
/// 10,000 GETs of one object for 10,000 BankClients otherwise), else from the API server. The
/// store may lag; a referenced app's status change wakes its referrers (`Referrers`).
pub(super) async fn observe_references(
    obj: &AppRegistration,
    api: &Api<AppRegistration>,
    ctx: &Context,
) -> Result<ResolvedReferences, Error> {
    let names = referenced_names(&obj.spec);
    let mut statuses: BTreeMap<String, AppRegistrationStatus> = BTreeMap::new();
    if names.is_empty() {
        return Ok(resolve_references(&obj.spec, &statuses));
    }
    let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
    let stored = ctx
        .app_registrations_where(namespace, |a| {
            a.metadata.name.as_ref().is_some_and(|n| names.contains(n))
        })
        .await;
    match stored {
        Some(apps) => {
            for other in apps {
                let name = other.metadata.name.clone().unwrap_or_default();
                statuses.insert(name, other.status.clone().unwrap_or_default());
            }
        }
        None => {
            for name in names {
                if let Some(other) = api.get_opt(&name).await? {
                    statuses.insert(name, other.status.unwrap_or_default());
                }
            }
        }
    }
    Ok(resolve_references(&obj.spec, &statuses))
}

/// What the plan needs to apply the cluster administrator's policy to one AppRegistration.
pub(super) struct PolicyFacts {
    pub(super) view: crate::policy::PolicyView,
    /// appIds other AppRegistrations manage (any namespace), with `<namespace>/<name>`.
    pub(super) claimed_elsewhere: BTreeMap<String, String>,
}

/// Reads the EntraPolicies, and what deciding needs: the namespace's labels (only when a rule
/// selects by label), the appIds its AppRegistrations declare (only when a permission names an API
/// by appId and consent is asked for), and the appIds other resources manage (only to adopt).
pub(super) async fn observe_policy(
    obj: &AppRegistration,
    ctx: &Context,
) -> Result<PolicyFacts, Error> {
    use crate::api::EntraPolicy;
    use crate::policy::{NamespaceInfo, Policies, PolicyView};
    use k8s_openapi::api::core::v1::Namespace;
    use kube::ResourceExt;

    let namespace = obj.namespace().unwrap_or_default();
    let policies = match ctx.entra_policies().await {
        Some(stored) => Policies(
            stored
                .iter()
                .map(|p| (p.name_any(), p.spec.clone()))
                .collect(),
        ),
        None => Policies(
            Api::<EntraPolicy>::all(ctx.client.clone())
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .map(|p| (p.name_any(), p.spec))
                .collect(),
        ),
    };
    let mut labels = BTreeMap::new();
    if PolicyView::needs_namespace_labels(&policies) {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        if let Some(ns) = namespaces.get_opt(&namespace).await? {
            labels = ns.labels().clone();
        }
    }
    let mut same_namespace_app_ids = std::collections::BTreeSet::new();
    let by_app_id = obj
        .spec
        .required_resource_access
        .iter()
        .any(|r| r.app_id.is_some());
    if obj.spec.grant_admin_consent && by_app_id {
        let apps: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
        for app in apps.list(&Default::default()).await?.items {
            // An adopted application counts as declared here only once the adoption is allowed
            // (the adopting resource's status carries its appId only then).
            if let Some(app_id) = app.status.and_then(|s| s.app_id) {
                same_namespace_app_ids.insert(app_id.to_lowercase());
            }
        }
    }
    let mut claimed_elsewhere = BTreeMap::new();
    if obj.spec.adopt.is_some() {
        let all: Api<AppRegistration> = Api::all(ctx.client.clone());
        let others = match all.list(&Default::default()).await {
            Ok(list) => list.items,
            // Namespaced mode: the operator sees (and manages) only its namespaces; the ones it
            // cannot list, it does not manage either.
            Err(kube::Error::Api(e)) if e.code == 403 => {
                Api::<AppRegistration>::namespaced(ctx.client.clone(), &namespace)
                    .list(&Default::default())
                    .await?
                    .items
            }
            Err(e) => return Err(e.into()),
        };
        for app in others {
            if app.uid() == obj.uid() {
                continue;
            }
            let owner = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
            if let Some(app_id) = app.status.as_ref().and_then(|s| s.app_id.clone()) {
                claimed_elsewhere.insert(app_id.to_lowercase(), owner.clone());
            }
            // A resource that adopts (or waits to adopt) the same application claims it too: the
            // older claim wins.
            if let Some(adopt) = &app.spec.adopt
                && (app.creation_timestamp(), app.name_any())
                    < (obj.creation_timestamp(), obj.name_any())
            {
                // A resource that manages it (status) is named before one that only asks for it.
                claimed_elsewhere
                    .entry(adopt.app_id.to_lowercase())
                    .or_insert(owner);
            }
        }
    }
    Ok(PolicyFacts {
        view: PolicyView {
            policies,
            namespace: NamespaceInfo {
                name: namespace,
                labels,
            },
            same_namespace_app_ids,
        },
        claimed_elsewhere,
    })
}

/// Everything read from Graph for one AppRegistration, plus the typed application for credentials.
pub(super) struct GraphView {
    pub(super) observed: Observed,
    pub(super) application: Option<Application>,
    /// Federated credential IDs by name, for deletes.
    pub(super) federated_ids: BTreeMap<String, String>,
}

pub(super) async fn observe_graph(
    obj: &AppRegistration,
    unique_name: &str,
    references: &ResolvedReferences,
    ctx: &Context,
) -> Result<GraphView, Error> {
    let graph = &ctx.graph;
    let application = match &obj.spec.adopt {
        Some(adopt) => graph
            .get_application_by_app_id(&adopt.app_id)
            .await
            .optional()?,
        None => graph
            .get_application_by_unique_name(unique_name)
            .await
            .optional()?,
    };
    let mut observed = Observed {
        application: application.as_ref().map(application_json),
        ..Observed::default()
    };
    let mut federated_ids = BTreeMap::new();
    // Owners named by user principal name: resolved even before the application exists, so that
    // the rounds planned from a create's answer (which do not observe again) have them too.
    observe_principal_names(obj, ctx, &mut observed).await?;
    if let Some(app_id) = application.as_ref().and_then(|a| a.app_id.as_deref()) {
        observed.service_principal = graph
            .get_service_principal_by_app_id(app_id)
            .await
            .optional()?
            .as_ref()
            .map(Into::into);
    }
    for (resource_app_id, needs) in resource_needs(obj, references) {
        if let Some(sp) = resource_service_principal(ctx, &resource_app_id, &needs).await? {
            observed
                .resource_service_principals
                .insert(resource_app_id, sp);
        }
    }
    if let Some(app) = &application {
        let object_id = app.id.clone().unwrap_or_default();
        let sp_id = observed.service_principal.as_ref().map(|sp| sp.id.clone());
        observe_untracked(
            obj,
            ctx,
            &object_id,
            sp_id.as_deref(),
            &mut observed,
            &mut federated_ids,
        )
        .await?;
    }
    Ok(GraphView {
        observed,
        application,
        federated_ids,
    })
}

/// Resolves `spec.ownerUserPrincipalNames` to object IDs (needs User.Read.All; a 403 fails the
/// reconcile as GraphForbidden naming it). A 404 is no such user: the plan reports it and removes
/// no owner.
pub(super) async fn observe_principal_names(
    obj: &AppRegistration,
    ctx: &Context,
    observed: &mut Observed,
) -> Result<(), Error> {
    for upn in &obj.spec.owner_user_principal_names {
        let id = ctx
            .graph
            .get_user_by_principal_name(upn)
            .await
            .optional()?
            .map(|user| user.id);
        observed.owner_principal_names.insert(upn.clone(), id);
    }
    Ok(())
}

/// Reads what hangs off the application and its service principal and is not tracked by delta
/// queries, each only when the plan can act on it: owners, federated credentials, app role
/// assignments, delegated permission grants.
pub(super) async fn observe_untracked(
    obj: &AppRegistration,
    ctx: &Context,
    object_id: &str,
    sp_id: Option<&str>,
    observed: &mut Observed,
    federated_ids: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let graph = &ctx.graph;
    let recorded = obj.status.as_ref();
    let owners_managed = !obj.spec.owners.is_empty()
        || !obj.spec.owner_user_principal_names.is_empty()
        || obj.spec.owners_management == OwnersManagement::Exact
        || recorded.is_some_and(|s| !s.managed_owners.is_empty());
    if owners_managed {
        observed.owners = graph
            .list_application_owners(object_id)
            .await?
            .iter()
            .map(Into::into)
            .collect();
    }
    if federated_managed(obj) {
        let fics = graph.list_federated_identity_credentials(object_id).await?;
        for fic in &fics {
            if let Some(id) = &fic.id {
                federated_ids.insert(fic.name.clone(), id.clone());
            }
        }
        observed.federated_credentials = fics.iter().map(Into::into).collect();
    }
    if let Some(sp_id) = sp_id {
        if permissions_of_kind(obj, GrantedPermissionKind::Application) {
            observed.app_role_assignments = graph
                .list_app_role_assignments(sp_id)
                .await?
                .iter()
                .map(Into::into)
                .collect();
        }
        if permissions_of_kind(obj, GrantedPermissionKind::Delegated) {
            observed.oauth2_permission_grants = graph
                .list_oauth2_permission_grants(sp_id)
                .await?
                .iter()
                .map(Into::into)
                .collect();
        }
    }
    Ok(())
}

/// Whether the plan can act on the application's federated credentials: some are declared,
/// `Exact` deletes every other one, or the status records ones the operator put there (`Additive`
/// deletes only those). Otherwise nothing is read: a resync of an app without federated
/// credentials costs no read for them.
fn federated_managed(obj: &AppRegistration) -> bool {
    let credentials = &obj.spec.credentials;
    !credentials.federated.is_empty()
        || credentials.federated_management == FederatedManagement::Exact
        || obj
            .status
            .as_ref()
            .is_some_and(|s| !s.federated_credentials.is_empty())
}

/// Whether permissions of `kind` are declared or were granted by the operator (recorded in the
/// status, so one removed from the spec is revoked): only then are the service principal's app
/// role assignments (application) or permission grants (delegated) read. Consent is decided, and
/// revoked, only for those.
fn permissions_of_kind(obj: &AppRegistration, kind: GrantedPermissionKind) -> bool {
    let declared = obj
        .spec
        .required_resource_access
        .iter()
        .any(|r| match kind {
            GrantedPermissionKind::Application => !r.application.is_empty(),
            GrantedPermissionKind::Delegated => !r.delegated.is_empty(),
        });
    declared
        || obj
            .status
            .as_ref()
            .is_some_and(|s| s.granted_permissions.iter().any(|g| g.kind == kind))
}

/// A resource API's service principal (its published roles and scopes), shared by all reconciles
/// for a while: Microsoft's own APIs for [`WELL_KNOWN_SP_TTL`] (Microsoft Graph's service
/// principal is large and the same for every app that asks for a Graph permission), the
/// operator's own APIs for [`OWN_API_SP_TTL`] (10,000 BankClients ask for the same API's role, and
/// each of their reconciles read its service principal: 7.6 reads per BankClient before). A copy
/// that does not publish every value `needs` asks for is read again at once, so a role just added
/// to an API is seen without waiting; a role just removed is assigned from the copy until it
/// expires, which Graph refuses and the reconcile retries.
async fn resource_service_principal(
    ctx: &Context,
    app_id: &str,
    needs: &Needs,
) -> Result<Option<ObservedServicePrincipal>, Error> {
    let ttl = if app_id == crate::graph::MICROSOFT_GRAPH_APP_ID {
        WELL_KNOWN_SP_TTL
    } else {
        OWN_API_SP_TTL
    };
    if let Some(sp) = ctx.cached_resource_sp(app_id, ttl)
        && needs.published_by(&sp)
    {
        return Ok(Some(sp));
    }
    let sp: Option<ObservedServicePrincipal> = ctx
        .graph
        .get_service_principal_by_app_id(app_id)
        .await
        .optional()?
        .as_ref()
        .map(Into::into);
    if let Some(sp) = &sp {
        ctx.cache_resource_sp(app_id, sp.clone());
    }
    Ok(sp)
}

/// How long Microsoft's own service principals are reused before they are read again.
const WELL_KNOWN_SP_TTL: Duration = Duration::from_secs(600);

/// How long the service principal of an API this cluster manages is reused.
const OWN_API_SP_TTL: Duration = Duration::from_secs(60);

/// The permission values a spec asks of one resource API.
#[derive(Debug, Default, PartialEq)]
struct Needs {
    application: BTreeSet<String>,
    delegated: BTreeSet<String>,
}

impl Needs {
    /// Whether `sp` publishes (enabled) every app role and scope asked for.
    fn published_by(&self, sp: &ObservedServicePrincipal) -> bool {
        let has = |list: &[super::observed::ObservedEntitlement], value: &String| {
            list.iter()
                .any(|e| e.is_enabled && e.value.as_deref() == Some(value.as_str()))
        };
        self.application.iter().all(|v| has(&sp.app_roles, v))
            && self
                .delegated
                .iter()
                .all(|v| has(&sp.oauth2_permission_scopes, v))
    }
}

/// Every resource API the spec requires permissions on (resolved references only), by appId, with
/// the values it asks of each.
fn resource_needs(
    obj: &AppRegistration,
    references: &ResolvedReferences,
) -> BTreeMap<String, Needs> {
    let mut out: BTreeMap<String, Needs> = BTreeMap::new();
    for rra in &obj.spec.required_resource_access {
        let app_id = if let Some(api) = rra.well_known_api {
            Some(api.app_id().to_string())
        } else if let Some(app_id) = &rra.app_id {
            Some(app_id.clone())
        } else {
            rra.app_ref
                .as_ref()
                .and_then(|r| references.app(&r.name))
                .map(|a| a.app_id.clone())
        };
        if let Some(app_id) = app_id {
            let needs = out.entry(app_id).or_default();
            needs.application.extend(rra.application.iter().cloned());
            needs.delegated.extend(rra.delegated.iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::observed::ObservedEntitlement;
    use super::*;

    fn entitlement(value: &str, is_enabled: bool) -> ObservedEntitlement {
        ObservedEntitlement {
            id: format!("id-{value}"),
            value: Some(value.into()),
            is_enabled,
            ..Default::default()
        }
    }

    #[test]
    fn a_shared_service_principal_serves_only_when_it_publishes_every_value_asked_for() {
        let sp = ObservedServicePrincipal {
            app_roles: vec![entitlement("System", true), entitlement("Old", false)],
            oauth2_permission_scopes: vec![entitlement("Reports.Read", true)],
            ..Default::default()
        };
        let needs = |application: &[&str], delegated: &[&str]| Needs {
            application: application.iter().map(|v| v.to_string()).collect(),
            delegated: delegated.iter().map(|v| v.to_string()).collect(),
        };
        assert!(needs(&[], &[]).published_by(&sp));
        assert!(needs(&["System"], &["Reports.Read"]).published_by(&sp));
        // A role added since the copy was read, or one now disabled: read it again.
        assert!(!needs(&["System", "Audit"], &[]).published_by(&sp));
        assert!(!needs(&["Old"], &[]).published_by(&sp));
        // A scope is not a role.
        assert!(!needs(&["Reports.Read"], &[]).published_by(&sp));
    }
}
