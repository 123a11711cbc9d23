//! The AppRegistration controller's execute stage: run the plan's Graph writes (observing and
//! planning again until a fresh observation plans nothing), then drive the rotation state machine
//! one persisted step at a time (the write-ahead rule).

use jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use tracing::debug;

use crate::api::appregistration::{
    AppRegistrationStatus, PasswordCredentialSpec, PasswordCredentialStatus,
};
use crate::api::appregistration::{CertificateCredentialSpec, CertificateSource};
use crate::api::{AppRegistration, HANDOVER_CONFIRMED_ANNOTATION, ROTATE_ANNOTATION, Text};
use crate::controllers::context::Context;
use crate::controllers::error::Error;
use crate::controllers::events::publish;
use crate::controllers::status_writer::apply_status;
use crate::credentials::{
    CertificatePorts, CertificateTarget, GraphKeyPort, KubeCertificateSecretPort, RsaGenerator,
    drive_certificate,
};
use crate::credentials::{
    CredentialEvent, CredentialReason, Events, GraphPasswordPort, KubeSecretPort, PasswordTarget,
    Ports, SecretContext, StatusHandle, SystemClock, drive_password, undeclared_secret_names,
};
use crate::graph::{self, Application, GraphError};
use crate::labels::FIELD_MANAGER;
use crate::metrics::CredentialLabels;

use super::KIND;
use super::observe::{GraphView, PolicyFacts, observe_graph};
use super::plan::{GraphOperation, Plan, PlanInput, plan_app_registration};
use super::references::ResolvedReferences;
use super::report::earliest;

/// How many observe → plan → execute rounds one reconcile runs before handing back to the queue.
const MAX_SYNC_ROUNDS: usize = 4;

/// What a write returned that tells the next round what Graph now holds, so it need not read it
/// back: a created object's 201 body (a fresh application has no service principal, owners or
/// federated credentials yet; a fresh service principal no assignments or grants).
enum Returned {
    Application(Box<Application>),
    ServicePrincipal(graph::ServicePrincipal),
    AppRoleAssignment(graph::AppRoleAssignment),
}

/// The view after `returned`, when everything the round wrote came back in the answers.
fn fold(view: &GraphView, returned: Vec<Returned>) -> GraphView {
    let mut next = GraphView {
        observed: view.observed.clone(),
        application: view.application.clone(),
        federated_ids: view.federated_ids.clone(),
    };
    for r in returned {
        match r {
            Returned::Application(app) => {
                next.observed.application = Some(super::observed::application_json(&app));
                next.application = Some(*app);
            }
            Returned::ServicePrincipal(sp) => {
                next.observed.service_principal = Some((&sp).into());
            }
            Returned::AppRoleAssignment(a) => {
                next.observed.app_role_assignments.push((&a).into());
            }
        }
    }
    next
}

/// Runs one Graph write of the plan; `Some` when its answer says all it changed.
async fn execute_operation(
    op: &GraphOperation,
    view: &GraphView,
    ctx: &Context,
) -> Result<Option<Returned>, Error> {
    let graph = &ctx.graph;
    match op {
        GraphOperation::UpsertApplication { unique_name, body } => {
            // Only a create from nothing is folded: the view had no application, so nothing else.
            if let graph::Upserted::Created(app) = graph
                .upsert_application_by_unique_name(unique_name, body)
                .await?
                && view.application.is_none()
            {
                return Ok(Some(Returned::Application(Box::new(app))));
            }
        }
        GraphOperation::PatchApplication { object_id, body } => {
            graph.update_application(object_id, body).await?;
        }
        GraphOperation::UpsertServicePrincipal { app_id, body } => {
            if let graph::Upserted::Created(sp) = graph
                .upsert_service_principal_by_app_id(app_id, body)
                .await?
                && view.observed.service_principal.is_none()
            {
                return Ok(Some(Returned::ServicePrincipal(sp)));
            }
        }
        GraphOperation::PatchServicePrincipal { id, body } => {
            graph.update_service_principal(id, body).await?;
        }
        GraphOperation::AddOwner {
            application_id,
            owner_id,
        } => match graph.add_application_owner(application_id, owner_id).await {
            Err(GraphError::Conflict(_)) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        },
        GraphOperation::RemoveOwner {
            application_id,
            owner_id,
        } => match graph
            .remove_application_owner(application_id, owner_id)
            .await
        {
            // No longer an owner: what the plan wanted.
            Err(GraphError::NotFound(_)) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        },
        GraphOperation::DeleteFederatedCredential {
            application_id,
            name,
        } => {
            let id = view.federated_ids.get(name).unwrap_or(name);
            match graph
                .delete_federated_identity_credential(application_id, id)
                .await
            {
                Err(GraphError::NotFound(_)) | Ok(()) => {}
                Err(e) => return Err(e.into()),
            }
        }
        GraphOperation::UpsertFederatedCredential {
            application_id,
            credential,
        } => {
            graph
                .upsert_federated_identity_credential(application_id, credential)
                .await?;
        }
        GraphOperation::CreateAppRoleAssignment {
            resource_sp_id,
            principal_id,
            app_role_id,
        } => match graph
            .create_app_role_assignment(resource_sp_id, principal_id, app_role_id)
            .await
        {
            Ok(assignment) => return Ok(Some(Returned::AppRoleAssignment(assignment))),
            Err(GraphError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        },
        GraphOperation::CreateOAuth2PermissionGrant {
            client_id,
            resource_id,
            scope,
        } => {
            let scopes: Vec<&str> = scope.split_whitespace().collect();
            graph
                .create_oauth2_permission_grant(client_id, resource_id, &scopes)
                .await?;
        }
        GraphOperation::PatchOAuth2PermissionGrant { id, scope } => {
            let scopes: Vec<&str> = scope.split_whitespace().collect();
            graph.update_oauth2_permission_grant(id, &scopes).await?;
        }
        GraphOperation::DeleteAppRoleAssignment {
            resource_sp_id,
            assignment_id,
        } => match graph
            .delete_app_role_assignment(resource_sp_id, assignment_id)
            .await
        {
            Err(GraphError::NotFound(_)) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        },
        GraphOperation::DeleteOAuth2PermissionGrant { id } => {
            match graph.delete_oauth2_permission_grant(id).await {
                Err(GraphError::NotFound(_)) | Ok(()) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(None)
}

fn describe_operation(op: &GraphOperation) -> &'static str {
    match op {
        GraphOperation::UpsertApplication { .. } => "upserted the application",
        GraphOperation::PatchApplication { .. } => "updated the application",
        GraphOperation::UpsertServicePrincipal { .. } => "upserted the service principal",
        GraphOperation::PatchServicePrincipal { .. } => "updated the service principal",
        GraphOperation::AddOwner { .. } => "added an owner",
        GraphOperation::RemoveOwner { .. } => "removed an owner",
        GraphOperation::DeleteFederatedCredential { .. } => "removed a federated credential",
        GraphOperation::UpsertFederatedCredential { .. } => "upserted a federated credential",
        GraphOperation::CreateAppRoleAssignment { .. } => "granted an application permission",
        GraphOperation::CreateOAuth2PermissionGrant { .. } => "granted delegated permissions",
        GraphOperation::PatchOAuth2PermissionGrant { .. } => "changed delegated permissions",
        GraphOperation::DeleteAppRoleAssignment { .. } => "revoked an application permission",
        GraphOperation::DeleteOAuth2PermissionGrant { .. } => "revoked delegated permissions",
    }
}

/// Observe, plan and execute until a fresh observation plans nothing (the status then reports what
/// Graph holds), or [`MAX_SYNC_ROUNDS`] rounds ran.
///
/// Before a round's writes run, `status` takes the owners and permissions the plan will have
/// added and granted (`managedOwners`, `grantedPermissions`), so a reconcile that fails half way
/// still records what the operator made (the controller writes `status` on failure too), and the
/// next round plans from them.
pub(super) async fn sync_graph(
    obj: &AppRegistration,
    references: &ResolvedReferences,
    policy: &PolicyFacts,
    status: &mut AppRegistrationStatus,
    ctx: &Context,
) -> Result<(Plan, GraphView, Vec<&'static str>), Error> {
    let name = obj.name_any();
    let namespace = obj.namespace().unwrap_or_default();
    let previous = obj.status.as_ref();
    // The uniqueName the application already has (Graph cannot rename it), else the current form.
    let recorded_unique_name = previous
        .and_then(|s| s.unique_name.as_deref())
        .filter(|_| obj.spec.adopt.is_none());
    let unique_name = recorded_unique_name.map(str::to_string).unwrap_or_else(|| {
        super::ids::unique_name(&ctx.settings.plan.unique_name_prefix, &namespace, &name)
    });
    let recorded_federated: &[String] = previous
        .map(|s| s.federated_credentials.as_slice())
        .unwrap_or_default();
    let mut done = Vec::new();
    let mut round = 0;
    // The view the next round plans from when the last round's answers said all it changed.
    let mut folded: Option<GraphView> = None;
    loop {
        round += 1;
        let view = match folded.take() {
            Some(view) => view,
            None => observe_graph(obj, &unique_name, references, ctx).await?,
        };
        let plan = plan_app_registration(PlanInput {
            spec: &obj.spec,
            name: &name,
            namespace: &namespace,
            references,
            observed: &view.observed,
            settings: &ctx.settings.plan,
            policy: &policy.view,
            recorded_unique_name,
            claimed_elsewhere: &policy.claimed_elsewhere,
            recorded_federated,
            recorded_owners: &status.managed_owners,
            recorded_grants: &status.granted_permissions,
        });
        if plan.operations.is_empty() || round > MAX_SYNC_ROUNDS {
            return Ok((plan, view, done));
        }
        status.managed_owners = plan.status.managed_owners.clone();
        status.granted_permissions = plan.status.granted_permissions.clone();
        let mut returned = Vec::new();
        let mut complete = true;
        for op in &plan.operations {
            debug!(appregistration = %name, operation = describe_operation(op), "graph write");
            match execute_operation(op, &view, ctx).await? {
                Some(r) => returned.push(r),
                None => complete = false,
            }
            done.push(describe_operation(op));
        }
        // Plan the next round from the answers instead of reading back what was just written.
        if complete {
            folded = Some(fold(&view, returned));
        }
    }
}

/// Writes status (skipping no-op writes) and remembers what was written.
pub(super) struct StatusWriter<'a> {
    pub(super) api: &'a Api<AppRegistration>,
    pub(super) name: String,
    pub(super) written: Option<AppRegistrationStatus>,
}

impl StatusWriter<'_> {
    pub(super) async fn write(&mut self, status: &AppRegistrationStatus) -> Result<(), Error> {
        if apply_status(self.api, &self.name, self.written.as_ref(), status).await? {
            self.written = Some(status.clone());
        }
        Ok(())
    }
}

/// Outcome of the credentials stage.
pub(super) struct CredentialsOutcome {
    pub(super) requeue_at: Option<Timestamp>,
    /// Whether a password or certificate was added to or removed from the application (the
    /// change feed will report it: no memo for a quiet resync, `quiet.rs`).
    pub(super) wrote: bool,
}

/// Publishes the driver's events and counts rotations.
struct ControllerEvents<'a> {
    ctx: &'a Context,
    obj: &'a AppRegistration,
    namespace: String,
    name: String,
}

impl ControllerEvents<'_> {
    fn labels(&self, secret_name: &str) -> CredentialLabels {
        CredentialLabels {
            kind: KIND,
            namespace: Text::label(&self.namespace),
            name: Text::label(&self.name),
            secret: Text::label(secret_name),
            credential: "password",
        }
    }

    fn certificate_labels(&self, secret_name: &str) -> CredentialLabels {
        CredentialLabels {
            credential: "certificate",
            ..self.labels(secret_name)
        }
    }
}

#[async_trait::async_trait]
impl Events for ControllerEvents<'_> {
    async fn emit(&self, event: CredentialEvent) {
        let (reason, message) = match &event {
            CredentialEvent::RotationStarted {
                secret_name,
                reason,
            } => (
                "RotationStarted",
                format!("Rotating the client secret in Secret {secret_name} ({reason})"),
            ),
            CredentialEvent::Rotated { secret_name, .. } => {
                self.ctx
                    .metrics
                    .rotations
                    .get_or_create(&self.labels(secret_name))
                    .inc();
                (
                    "SecretRotated",
                    format!("Wrote a new client secret to Secret {secret_name}"),
                )
            }
            CredentialEvent::Certificate {
                secret_name,
                reason,
                key_id,
            } => {
                use crate::credentials::CertificateReason as R;
                let key = key_id.as_deref().unwrap_or("-");
                match reason {
                    R::RotationComplete | R::Adopted => {
                        self.ctx
                            .metrics
                            .rotations
                            .get_or_create(&self.certificate_labels(secret_name))
                            .inc();
                        (
                            "CertificateRotated",
                            format!(
                                "Secret {secret_name} holds a new certificate (key {key}, {reason})"
                            ),
                        )
                    }
                    R::RevokePrevious | R::RemoveOrphan | R::RecoverLostKey => (
                        "CertificateRevoked",
                        format!("Removed certificate {key} of Secret {secret_name} ({reason})"),
                    ),
                    _ => (
                        "CertificateRotationStarted",
                        format!("Rotating the certificate in Secret {secret_name} ({reason})"),
                    ),
                }
            }
            CredentialEvent::AddFailed { secret_name } => {
                self.ctx
                    .metrics
                    .rotation_failures
                    .get_or_create(&self.labels(secret_name))
                    .inc();
                return;
            }
            CredentialEvent::CertificateAddFailed { secret_name } => {
                self.ctx
                    .metrics
                    .rotation_failures
                    .get_or_create(&self.certificate_labels(secret_name))
                    .inc();
                return;
            }
            CredentialEvent::Removed {
                secret_name,
                key_id,
                reason,
            } => (
                "SecretRevoked",
                format!("Removed client secret {key_id} of Secret {secret_name} ({reason})"),
            ),
            CredentialEvent::SecretDeleted { secret_name } => (
                "SecretDeleted",
                format!(
                    "Deleted Secret {secret_name}: its password is no longer declared and its overlap is over"
                ),
            ),
            CredentialEvent::StatusChanged {
                secret_name,
                reason: CredentialReason::HandoverConfirmed,
            } => (
                "HandoverConfirmed",
                format!(
                    "Client secret of Secret {secret_name}: the handover to the current secret is confirmed ({HANDOVER_CONFIRMED_ANNOTATION}); the previous secrets are revoked after the confirmation delay"
                ),
            ),
            CredentialEvent::StatusChanged {
                secret_name,
                reason,
            } => (
                "CredentialStatus",
                format!("Client secret of Secret {secret_name}: {reason}"),
            ),
        };
        publish(self.ctx, self.obj, EventType::Normal, reason, &message).await;
    }
}

/// Drives the rotation state machine of every password (declared ones, and ones no longer
/// declared until their overlap ends) with the one driver ([`drive_password`]), on conditional
/// status writes, fenced by the lease.
pub(super) async fn sync_credentials(
    obj: &AppRegistration,
    app: &Application,
    status: &mut AppRegistrationStatus,
    writer: &mut StatusWriter<'_>,
    ctx: &Context,
) -> Result<CredentialsOutcome, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let owner_uid = obj
        .uid()
        .ok_or_else(|| Error::Invalid("AppRegistration without uid".into()))?;
    let object_id = app
        .id
        .clone()
        .ok_or_else(|| Error::Invalid("application without id".into()))?;
    let app_id = app
        .app_id
        .clone()
        .ok_or_else(|| Error::Invalid("application without appId".into()))?;
    let rotate_annotation = obj.annotations().get(ROTATE_ANNOTATION).cloned();
    let handover_confirmation = obj
        .annotations()
        .get(HANDOVER_CONFIRMED_ANNOTATION)
        .cloned();
    let confirm_delay = jiff::SignedDuration::try_from(ctx.settings.handover.confirm_delay)
        .unwrap_or(jiff::SignedDuration::from_mins(5));
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let claimed_elsewhere = secret_claims(obj, &api, ctx).await?;
    // The status as written so far in this reconcile; the driver's writes are conditional on its
    // resourceVersion (a stale copy costs a conflict and a GET, never a lost update).
    let mut current = obj.clone();
    current.status = Some(status.clone());
    if let Some(written) = writer.written.as_ref() {
        current.status = Some(written.clone());
    }
    let handle = StatusHandle::new(api, &current);
    let secrets = KubeSecretPort {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        context: SecretContext {
            app_registration: name.clone(),
            namespace: namespace.clone(),
            client_id: app_id,
            tenant_id: ctx.settings.tenant_id.clone(),
            authority_host: ctx.settings.authority_host.clone(),
        },
        owner: obj.controller_owner_ref(&()),
        field_manager: FIELD_MANAGER.to_string(),
        claimed_elsewhere,
    };
    let events = ControllerEvents {
        ctx,
        obj,
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let read_passwords = crate::credentials::observed_passwords(app);
    let mut graph_passwords = read_passwords.clone();
    let mut requeue_at: Option<Timestamp> = None;

    let declared: Vec<&str> = obj
        .spec
        .credentials
        .passwords
        .iter()
        .map(|p| p.secret_name.as_str())
        .collect();
    // Passwords no longer declared: those with a status entry, and those whose credentials carry
    // this resource's marker.
    let mut undeclared: Vec<String> = status
        .credentials
        .iter()
        .map(|c| c.secret_name.to_string())
        .filter(|n| !declared.contains(&n.as_str()))
        .collect();
    for n in undeclared_secret_names(&owner_uid, &declared, &graph_passwords) {
        if !undeclared.iter().any(|u| u == n) {
            undeclared.push(n.to_string());
        }
    }
    let retired_specs: Vec<PasswordCredentialSpec> = undeclared
        .iter()
        .map(|secret_name| {
            // The declared defaults (overlap 7 days) for a password the spec no longer has.
            serde_json::from_value(serde_json::json!({ "secretName": secret_name }))
                .map_err(|e| format!("secret name {secret_name:?}: {e}"))
        })
        .collect::<Result<_, _>>()
        .map_err(Error::Invalid)?;
    let targets = obj
        .spec
        .credentials
        .passwords
        .iter()
        .map(|spec| (spec, true))
        .chain(retired_specs.iter().map(|spec| (spec, false)));
    for (spec, is_declared) in targets {
        let graph_port = GraphPasswordPort {
            graph: &ctx.graph,
            object_id: &object_id,
            observed: graph_passwords.clone(),
        };
        let outcome = drive_password(
            PasswordTarget {
                spec,
                declared: is_declared,
                owner_uid: &owner_uid,
                rotate_annotation: rotate_annotation.as_deref(),
                handover_confirmation: handover_confirmation.as_deref(),
                confirm_delay,
            },
            Ports {
                graph: &graph_port,
                secrets: &secrets,
                status: &handle,
                events: &events,
                clock: &SystemClock,
                fence: &ctx.fence,
            },
        )
        .await;
        // Whatever landed is in the handle, also after an error.
        status.credentials = handle.status().credentials;
        let outcome = outcome?;
        graph_passwords = outcome.graph;
        requeue_at = earliest(requeue_at, outcome.requeue_at);
        if let Some(entry) = &outcome.status
            && is_declared
        {
            record_credential_metrics(ctx, &events.labels(&spec.secret_name), entry);
        }
    }
    status.credentials = handle.status().credentials;

    // Certificates: the same discipline, their own state machine; ones no longer declared wind
    // down over the default overlap, like passwords.
    let read_keys = crate::credentials::observed_keys(app);
    let mut graph_keys = read_keys.clone();
    let declared_certificates: Vec<&str> = obj
        .spec
        .credentials
        .certificates
        .iter()
        .map(|c| c.secret_name.as_str())
        .collect();
    let mut retired_certificates: Vec<String> = status
        .certificates
        .iter()
        .map(|c| c.secret_name.to_string())
        .filter(|n| !declared_certificates.contains(&n.as_str()))
        .collect();
    for n in crate::credentials::undeclared_certificate_names(
        &owner_uid,
        &declared_certificates,
        &graph_keys,
    ) {
        if !retired_certificates.iter().any(|r| r == n) {
            retired_certificates.push(n.to_string());
        }
    }
    let retired_certificate_specs: Vec<CertificateCredentialSpec> = retired_certificates
        .iter()
        .map(|secret_name| {
            serde_json::from_value(serde_json::json!({ "secretName": secret_name }))
                .map_err(|e| format!("secret name {secret_name:?}: {e}"))
        })
        .collect::<Result<_, _>>()
        .map_err(Error::Invalid)?;
    let still_written = written_secret_names(obj);
    let certificate_targets = obj
        .spec
        .credentials
        .certificates
        .iter()
        .map(|spec| (spec, true))
        .chain(retired_certificate_specs.iter().map(|spec| (spec, false)));
    for (spec, is_declared) in certificate_targets {
        // A retired certificate's Secret is only read (it may be an issuer's), and deleted at the
        // end only if it is this resource's and nothing declared writes it any more.
        let read_only = spec.source == CertificateSource::Secret || !is_declared;
        let port = GraphKeyPort {
            graph: &ctx.graph,
            object_id: &object_id,
            observed: graph_keys.clone(),
        };
        let outcome = drive_certificate(
            CertificateTarget {
                spec,
                declared: is_declared,
                owner_uid: &owner_uid,
                rotate_annotation: rotate_annotation.as_deref(),
            },
            CertificatePorts {
                graph: &port,
                secrets: &KubeCertificateSecretPort {
                    secrets: &secrets,
                    read_only,
                    may_delete: !is_declared && !still_written.contains(&spec.secret_name.as_str()),
                },
                status: &handle,
                generator: &RsaGenerator,
                events: &events,
                clock: &SystemClock,
                fence: &ctx.fence,
            },
        )
        .await;
        status.certificates = handle.status().certificates;
        let outcome = outcome?;
        graph_keys = outcome.graph;
        requeue_at = earliest(requeue_at, outcome.requeue_at);
        if let Some(entry) = &outcome.status
            && is_declared
        {
            record_expiry_metrics(
                ctx,
                &events.certificate_labels(&spec.secret_name),
                entry.expires_at.as_deref(),
                entry.renew_at.as_deref(),
            );
        }
        if outcome.reason == crate::credentials::CertificateReason::WaitingForSecret {
            return Err(Error::Invalid(format!(
                "certificate Secret {} has no tls.crt with its matching tls.key yet",
                spec.secret_name
            )));
        }
    }
    status.certificates = handle.status().certificates;
    // A credential whose entry is gone (retired, overlap over) leaves no metric series behind.
    for gone in &undeclared {
        if !status.credentials.iter().any(|c| &c.secret_name == gone) {
            ctx.metrics.forget_credential(&events.labels(gone));
        }
    }
    for gone in &retired_certificates {
        ctx.metrics
            .forget_credential(&events.certificate_labels(gone));
    }
    // The controller's own status writes compare against this: the driver already wrote these.
    if let Some(written) = writer.written.as_mut() {
        written.credentials = status.credentials.clone();
        written.certificates = status.certificates.clone();
    }
    status.unmanaged_credentials =
        Some(crate::credentials::count_unmanaged(&graph_passwords, &owner_uid) as i32);
    Ok(CredentialsOutcome {
        requeue_at,
        wrote: graph_passwords != read_passwords || graph_keys != read_keys,
    })
}

/// The secretNames this resource declares that an older AppRegistration of the namespace declares
/// too (oldest `creationTimestamp`, then name, wins), with that resource's name: two resources
/// writing one Secret would rotate against each other forever. The namespace's AppRegistrations
/// come from the controller's store (a LIST per reconcile is O(N²) API-server work for N
/// resources); only without a running controller for the namespace are they listed. A store that
/// lags by a watch delay can miss a claim made in that instant; the Secret's owner check
/// ([`crate::credentials::KubeSecretPort`]) still refuses a Secret another resource already owns.
async fn secret_claims(
    obj: &AppRegistration,
    api: &Api<AppRegistration>,
    ctx: &Context,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let mut claims = std::collections::BTreeMap::new();
    let ours_written = written_secret_names(obj);
    if ours_written.is_empty() {
        return Ok(claims);
    }
    let ours = (
        obj.meta().creation_timestamp.as_ref(),
        obj.meta().name.as_deref(),
    );
    // Older than this resource (by creation time, then name) and writing one of its Secrets.
    let claims_first = |other: &AppRegistration| {
        let theirs = (
            other.meta().creation_timestamp.as_ref(),
            other.meta().name.as_deref(),
        );
        theirs < ours
            && other.uid() != obj.uid()
            && written_secret_names(other)
                .iter()
                .any(|name| ours_written.contains(name))
    };
    let namespace = obj.namespace().unwrap_or_default();
    let others: Vec<std::sync::Arc<AppRegistration>> =
        match ctx.app_registrations_where(&namespace, claims_first).await {
            Some(others) => others,
            None => api
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter(|other| claims_first(other))
                .map(std::sync::Arc::new)
                .collect(),
        };
    for other in others {
        for name in written_secret_names(&other) {
            if ours_written.contains(&name) {
                claims
                    .entry(name.to_string())
                    .or_insert_with(|| format!("AppRegistration {}", other.name_any()));
            }
        }
    }
    Ok(claims)
}

/// The Secrets a resource writes: its passwords' and its generated certificates'.
fn written_secret_names(obj: &AppRegistration) -> Vec<&str> {
    let credentials = &obj.spec.credentials;
    credentials
        .passwords
        .iter()
        .map(|p| p.secret_name.as_str())
        .chain(
            credentials
                .certificates
                .iter()
                .filter(|c| c.source == CertificateSource::Generated)
                .map(|c| c.secret_name.as_str()),
        )
        .collect()
}

fn record_credential_metrics(
    ctx: &Context,
    labels: &CredentialLabels,
    entry: &PasswordCredentialStatus,
) {
    record_expiry_metrics(
        ctx,
        labels,
        entry.expires_at.as_deref(),
        entry.renew_at.as_deref(),
    );
}

fn record_expiry_metrics(
    ctx: &Context,
    labels: &CredentialLabels,
    expires_at: Option<&str>,
    renew_at: Option<&str>,
) {
    let seconds = |s: Option<&str>| {
        s.and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_second() as f64)
    };
    if let Some(expiry) = seconds(expires_at) {
        ctx.metrics
            .credential_expiry
            .get_or_create(labels)
            .set(expiry);
    }
    if let Some(renew) = seconds(renew_at) {
        ctx.metrics
            .credential_next_rotation
            .get_or_create(labels)
            .set(renew);
    }
}

/// `deletionPolicy: Orphan`: the application stays in Entra, so its current client secrets and
/// certificates stay valid; they must stay held by someone. Each Secret of this resource (declared
/// or retired, passwords' and generated certificates', as status names them) loses its owner
/// reference to the resource, so garbage collection keeps it and it keeps working, and is
/// annotated with where it came from. Previous credentials still in their overlap are revoked now:
/// after the resource is gone nothing would ever revoke them, and no Secret holds them. Only
/// credentials whose marker carries this resource's UID are removed (previous certificates by a
/// PATCH of `keyCredentials` that keeps every other key: the proof `removeKey` needs would have
/// to be signed with a key read from a Secret, which the finalizer does not do).
/// Returns the names of the Secrets kept and the number of credentials revoked.
pub(super) async fn hand_over_credentials(
    obj: &AppRegistration,
    ctx: &Context,
    object_id: &str,
) -> Result<(Vec<String>, usize), Error> {
    use crate::credentials::parse_managed_display_name;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};

    let Some(status) = obj.status.as_ref() else {
        return Ok((Vec::new(), 0));
    };
    let uid = obj.uid().unwrap_or_default();
    let namespace = obj.namespace().unwrap_or_default();
    let fenced = |e: crate::credentials::Fenced| Error::CredentialStep(e.to_string());

    // Revoke previous credentials that are provably ours.
    let previous: Vec<&str> = status
        .credentials
        .iter()
        .flat_map(|c| c.previous.iter().map(|p| p.key_id.as_str()))
        .collect();
    let previous_keys: Vec<&str> = status
        .certificates
        .iter()
        .flat_map(|c| c.previous.iter().filter_map(|p| p.key_id.as_deref()))
        .collect();
    let mut revoked = 0;
    if !previous.is_empty() || !previous_keys.is_empty() {
        let app = match ctx.graph.get_application(object_id).await {
            Ok(app) => Some(app),
            Err(GraphError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let keys: Vec<String> = app
            .as_ref()
            .map(crate::credentials::observed_keys)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| {
                previous_keys.contains(&k.key_id.as_str())
                    && k.display_name
                        .as_deref()
                        .and_then(parse_managed_display_name)
                        .is_some_and(|m| m.is_owned_by(&uid))
            })
            .map(|k| k.key_id)
            .collect();
        if let Some(app) = &app {
            let port = GraphKeyPort {
                graph: &ctx.graph,
                object_id,
                observed: crate::credentials::observed_keys(app),
            };
            for key_id in keys {
                ctx.fence.check().map_err(fenced)?;
                crate::credentials::GraphKeys::remove(&port, &key_id, None)
                    .await
                    .map_err(|e| {
                        Error::CredentialStep(format!("remove certificate {key_id}: {e}"))
                    })?;
                revoked += 1;
            }
        }
        let ours: Vec<String> = app
            .and_then(|a| a.password_credentials)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                c.key_id.as_deref().is_some_and(|k| previous.contains(&k))
                    && c.display_name
                        .as_deref()
                        .and_then(parse_managed_display_name)
                        .is_some_and(|m| m.is_owned_by(&uid))
            })
            .filter_map(|c| c.key_id)
            .collect();
        for key_id in ours {
            ctx.fence.check().map_err(fenced)?;
            match ctx.graph.remove_password(object_id, &key_id).await {
                Ok(()) | Err(GraphError::NotFound(_)) => revoked += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Keep the Secrets that hold current credentials: drop only our owner reference.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut kept = Vec::new();
    let names = status
        .credentials
        .iter()
        .map(|c| &c.secret_name)
        .chain(status.certificates.iter().map(|c| &c.secret_name));
    for secret_name in names {
        let Some(secret) = secrets.get_opt(secret_name).await? else {
            continue;
        };
        let refs = secret.metadata.owner_references.clone().unwrap_or_default();
        if !refs.iter().any(|r| r.uid == uid) {
            continue; // not this resource's Secret
        }
        let remaining: Vec<_> = refs.into_iter().filter(|r| r.uid != uid).collect();
        let annotations = std::collections::BTreeMap::from([(
            crate::labels::ORPHANED_FROM_ANNOTATION,
            format!("AppRegistration/{}", obj.name_any()),
        )]);
        ctx.fence.check().map_err(fenced)?;
        secrets
            .patch(
                secret_name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "metadata": {"ownerReferences": remaining, "annotations": annotations}
                })),
            )
            .await?;
        kept.push(secret_name.to_string());
    }
    Ok((kept, revoked))
}
