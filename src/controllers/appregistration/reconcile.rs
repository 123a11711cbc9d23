//! The AppRegistration controller's I/O stages around the pure plan: observe (the CR, referenced
//! AppRegistrations, Graph objects, Secrets), execute (the plan's writes, then the rotation state
//! machine one persisted step at a time), and report (status, events, metrics).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::api::appregistration::{AppRegistrationStatus, ConsentState, PasswordCredentialStatus};
use crate::api::{AppRegistration, ROTATE_ANNOTATION, condition};
use crate::controllers::composed_reconcile::{Error, object_key, publish, record_reconcile};
use crate::controllers::conditions::{DesiredCondition, merge_conditions};
use crate::controllers::context::Context;
use crate::controllers::status::{FIELD_MANAGER, apply_status};
use crate::credentials::{
    AddedPassword, CredentialAction, ObservedPassword, ObservedSecret, RotationInput,
    SecretContext, SecretCredential, new_nonce, plan_password_rotation, render_secret,
    undeclared_managed_credentials,
};
use crate::graph::{self, Application, GraphError, OptionalExt, PasswordCredentialRequest};
use crate::runtime::metrics::CredentialLabels;

use super::observed::{Observed, ObservedServicePrincipal, application_json};
use super::plan::{GraphOperation, Plan, PlanInput, plan_app_registration};
use super::references::{ResolvedReferences, referenced_names, resolve_references};

/// Finalizer that lets the operator delete (or orphan) the application before the CR goes.
pub const FINALIZER: &str = "entra.bookme.io/cleanup";

const KIND: &str = "AppRegistration";

/// How many observe → plan → execute rounds one reconcile runs before handing back to the queue.
const MAX_SYNC_ROUNDS: usize = 4;
/// How many state-machine steps one password may take in one reconcile (a whole rotation with
/// crash recovery needs about six).
const MAX_CREDENTIAL_STEPS: usize = 12;

/// Entry point for the controller runtime.
pub async fn reconcile(obj: Arc<AppRegistration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::Invalid("AppRegistration without namespace".into()))?;
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, &ctx).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, &ctx).await,
        }
    })
    .await
    .map_err(Error::from_finalizer);
    record_reconcile(&ctx, KIND, started, &result);
    result
}

/// Reads the status of referenced AppRegistrations.
async fn observe_references(
    obj: &AppRegistration,
    api: &Api<AppRegistration>,
) -> Result<ResolvedReferences, Error> {
    let mut statuses: BTreeMap<String, AppRegistrationStatus> = BTreeMap::new();
    for name in referenced_names(&obj.spec) {
        if let Some(other) = api.get_opt(&name).await? {
            statuses.insert(name, other.status.unwrap_or_default());
        }
    }
    Ok(resolve_references(&obj.spec, &statuses))
}

/// Everything read from Graph for one AppRegistration, plus the typed application for credentials.
struct GraphView {
    observed: Observed,
    application: Option<Application>,
    /// Federated credential IDs by name, for deletes.
    federated_ids: BTreeMap<String, String>,
}

async fn observe_graph(
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
    if let Some(app) = &application {
        let object_id = app.id.as_deref().unwrap_or_default();
        if let Some(app_id) = app.app_id.as_deref() {
            observed.service_principal = graph
                .get_service_principal_by_app_id(app_id)
                .await
                .optional()?
                .as_ref()
                .map(Into::into);
        }
        if !obj.spec.owners.is_empty() {
            observed.owners = graph
                .list_application_owners(object_id)
                .await?
                .into_iter()
                .map(|o| o.id)
                .collect();
        }
        let fics = graph.list_federated_identity_credentials(object_id).await?;
        for fic in &fics {
            if let Some(id) = &fic.id {
                federated_ids.insert(fic.name.clone(), id.clone());
            }
        }
        observed.federated_credentials = fics.iter().map(Into::into).collect();
    }
    for resource_app_id in resource_app_ids(obj, references) {
        if let Some(sp) = resource_service_principal(ctx, &resource_app_id).await? {
            observed
                .resource_service_principals
                .insert(resource_app_id, sp);
        }
    }
    if let Some(sp_id) = observed.service_principal.as_ref().map(|sp| sp.id.clone())
        && !obj.spec.required_resource_access.is_empty()
    {
        observed.app_role_assignments = graph
            .list_app_role_assignments(&sp_id)
            .await?
            .iter()
            .map(Into::into)
            .collect();
        observed.oauth2_permission_grants = graph
            .list_oauth2_permission_grants(&sp_id)
            .await?
            .iter()
            .map(Into::into)
            .collect();
    }
    Ok(GraphView {
        observed,
        application,
        federated_ids,
    })
}

/// A resource API's service principal (its published roles and scopes). Microsoft's own APIs are
/// read once per [`WELL_KNOWN_SP_TTL`] and shared by all reconciles: Microsoft Graph's service
/// principal is large and the same for every app that asks for a Graph permission. The operator's
/// own APIs change with their AppRegistrations and are always read.
async fn resource_service_principal(
    ctx: &Context,
    app_id: &str,
) -> Result<Option<ObservedServicePrincipal>, Error> {
    let well_known = app_id == crate::graph::MICROSOFT_GRAPH_APP_ID;
    if well_known && let Some(sp) = ctx.cached_resource_sp(app_id, WELL_KNOWN_SP_TTL) {
        return Ok(Some(sp));
    }
    let sp: Option<ObservedServicePrincipal> = ctx
        .graph
        .get_service_principal_by_app_id(app_id)
        .await
        .optional()?
        .as_ref()
        .map(Into::into);
    if well_known && let Some(sp) = &sp {
        ctx.cache_resource_sp(app_id, sp.clone());
    }
    Ok(sp)
}

/// How long Microsoft's own service principals are reused before they are read again.
const WELL_KNOWN_SP_TTL: Duration = Duration::from_secs(600);

/// The appIds of every resource API the spec requires permissions on (resolved references only).
fn resource_app_ids(obj: &AppRegistration, references: &ResolvedReferences) -> Vec<String> {
    let mut ids: Vec<String> = obj
        .spec
        .required_resource_access
        .iter()
        .filter_map(|rra| {
            if let Some(api) = rra.well_known_api {
                Some(api.app_id().to_string())
            } else if let Some(app_id) = &rra.app_id {
                Some(app_id.clone())
            } else {
                rra.app_ref
                    .as_ref()
                    .and_then(|r| references.app(&r.name))
                    .map(|a| a.app_id.clone())
            }
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Runs one Graph write of the plan.
async fn execute_operation(
    op: &GraphOperation,
    view: &GraphView,
    ctx: &Context,
) -> Result<(), Error> {
    let graph = &ctx.graph;
    match op {
        GraphOperation::UpsertApplication { unique_name, body } => {
            graph
                .upsert_application_by_unique_name(unique_name, body)
                .await?;
        }
        GraphOperation::PatchApplication { object_id, body } => {
            graph.update_application(object_id, body).await?;
        }
        GraphOperation::UpsertServicePrincipal { app_id, body } => {
            graph
                .upsert_service_principal_by_app_id(app_id, body)
                .await?;
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
            name,
            body,
        } => {
            let mut credential: graph::FederatedIdentityCredential =
                serde_json::from_value(body.clone())
                    .map_err(|e| Error::Invalid(format!("federated credential {name}: {e}")))?;
            credential.name = name.clone();
            credential.id = None;
            graph
                .upsert_federated_identity_credential(application_id, &credential)
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
            Err(GraphError::Conflict(_)) | Ok(_) => {}
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
    }
    Ok(())
}

fn describe_operation(op: &GraphOperation) -> &'static str {
    match op {
        GraphOperation::UpsertApplication { .. } => "upserted the application",
        GraphOperation::PatchApplication { .. } => "updated the application",
        GraphOperation::UpsertServicePrincipal { .. } => "upserted the service principal",
        GraphOperation::PatchServicePrincipal { .. } => "updated the service principal",
        GraphOperation::AddOwner { .. } => "added an owner",
        GraphOperation::DeleteFederatedCredential { .. } => "removed a federated credential",
        GraphOperation::UpsertFederatedCredential { .. } => "upserted a federated credential",
        GraphOperation::CreateAppRoleAssignment { .. } => "granted an application permission",
        GraphOperation::CreateOAuth2PermissionGrant { .. }
        | GraphOperation::PatchOAuth2PermissionGrant { .. } => "granted delegated permissions",
    }
}

/// Observe, plan and execute until a fresh observation plans nothing (the status then reports what
/// Graph holds), or [`MAX_SYNC_ROUNDS`] rounds ran.
async fn sync_graph(
    obj: &AppRegistration,
    references: &ResolvedReferences,
    ctx: &Context,
) -> Result<(Plan, GraphView, Vec<&'static str>), Error> {
    let name = obj.name_any();
    let namespace = obj.namespace().unwrap_or_default();
    let unique_name =
        super::ids::unique_name(&ctx.settings.plan.unique_name_prefix, &namespace, &name);
    let mut done = Vec::new();
    let mut round = 0;
    loop {
        round += 1;
        let view = observe_graph(obj, &unique_name, references, ctx).await?;
        let plan = plan_app_registration(PlanInput {
            spec: &obj.spec,
            name: &name,
            namespace: &namespace,
            references,
            observed: &view.observed,
            settings: &ctx.settings.plan,
        });
        if plan.operations.is_empty() || round > MAX_SYNC_ROUNDS {
            return Ok((plan, view, done));
        }
        for op in &plan.operations {
            debug!(appregistration = %name, operation = describe_operation(op), "graph write");
            execute_operation(op, &view, ctx).await?;
            done.push(describe_operation(op));
        }
    }
}

/// The application's password credentials as the state machine sees them.
fn observed_passwords(app: &Application) -> Vec<ObservedPassword> {
    app.password_credentials
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(ObservedPassword {
                key_id: p.key_id.clone()?,
                display_name: p.display_name.clone(),
                hint: p.hint.clone(),
                start: p.start_date_time,
                end: p.end_date_time?,
            })
        })
        .collect()
}

/// Writes status (skipping no-op writes) and remembers what was written.
struct StatusWriter<'a> {
    api: &'a Api<AppRegistration>,
    name: String,
    written: Option<AppRegistrationStatus>,
}

impl StatusWriter<'_> {
    async fn write(&mut self, status: &AppRegistrationStatus) -> Result<(), Error> {
        if apply_status(self.api, &self.name, self.written.as_ref(), status).await? {
            self.written = Some(status.clone());
        }
        Ok(())
    }
}

/// Outcome of the credentials stage.
struct CredentialsOutcome {
    requeue_at: Option<Timestamp>,
}

/// Drives the rotation state machine of every declared password, persisting each step's status
/// before the step that depends on it (the write-ahead rule).
async fn sync_credentials(
    obj: &AppRegistration,
    app: &Application,
    status: &mut AppRegistrationStatus,
    writer: &mut StatusWriter<'_>,
    ctx: &Context,
) -> Result<CredentialsOutcome, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let object_id = app
        .id
        .clone()
        .ok_or_else(|| Error::Invalid("application without id".into()))?;
    let app_id = app
        .app_id
        .clone()
        .ok_or_else(|| Error::Invalid("application without appId".into()))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let rotate_annotation = obj.annotations().get(ROTATE_ANNOTATION).cloned();
    let mut graph_passwords = observed_passwords(app);
    let mut requeue_at: Option<Timestamp> = None;

    // Credentials of ours for Secrets no longer declared: remove them, forget their status.
    let declared: Vec<&str> = obj
        .spec
        .credentials
        .passwords
        .iter()
        .map(|p| p.secret_name.as_str())
        .collect();
    let undeclared: Vec<String> = undeclared_managed_credentials(&declared, &graph_passwords)
        .into_iter()
        .map(str::to_string)
        .collect();
    for key_id in undeclared {
        remove_password(ctx, &object_id, &key_id).await?;
        publish(
            ctx,
            obj,
            EventType::Normal,
            "CredentialRemoved",
            "Removed a client secret that is no longer declared",
        )
        .await;
    }
    let before = status.credentials.len();
    status
        .credentials
        .retain(|c| declared.contains(&c.secret_name.as_str()));
    if status.credentials.len() != before {
        writer.write(status).await?;
    }

    for spec in &obj.spec.credentials.passwords {
        let labels = CredentialLabels {
            kind: KIND.to_string(),
            namespace: namespace.clone(),
            name: name.clone(),
            secret: spec.secret_name.clone(),
        };
        let mut added: Option<AddedPassword> = None;
        let mut steps = 0;
        loop {
            steps += 1;
            if steps > MAX_CREDENTIAL_STEPS {
                // Let the queue come back soon rather than spin here.
                requeue_at = earliest(
                    requeue_at,
                    Some(Timestamp::now() + jiff::SignedDuration::from_secs(2)),
                );
                break;
            }
            let secret = secrets
                .get_opt(&spec.secret_name)
                .await?
                .map(|s| ObservedSecret::from_secret(&s));
            let entry = status
                .credentials
                .iter()
                .find(|c| c.secret_name == spec.secret_name)
                .cloned();
            let nonce = new_nonce();
            let plan = plan_password_rotation(&RotationInput {
                spec,
                status: entry.as_ref(),
                graph: &graph_passwords,
                secret: secret.as_ref(),
                rotate_annotation: rotate_annotation.as_deref(),
                added: added.as_ref(),
                fresh_nonce: &nonce,
                now: Timestamp::now(),
            })?;
            debug!(appregistration = %name, secret = %spec.secret_name, reason = %plan.reason, action = ?action_name(&plan.action), "credential step");
            let new_entry = plan.status.clone();
            match plan.action {
                CredentialAction::Idle { requeue_at: at } => {
                    set_entry(status, new_entry);
                    writer.write(status).await?;
                    requeue_at = earliest(requeue_at, at);
                    break;
                }
                CredentialAction::RecordPending { .. } => {
                    set_entry(status, new_entry);
                    writer.write(status).await?;
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "RotationStarted",
                        &format!(
                            "Rotating the client secret in Secret {} ({})",
                            spec.secret_name, plan.reason
                        ),
                    )
                    .await;
                }
                CredentialAction::AddPassword {
                    display_name,
                    start,
                    end,
                } => {
                    let request = PasswordCredentialRequest {
                        display_name: Some(display_name.clone()),
                        start_date_time: Some(start),
                        end_date_time: Some(end),
                    };
                    let result = ctx.graph.add_password(&object_id, &request).await;
                    let created = match result {
                        Ok(created) => created,
                        Err(e) => {
                            ctx.metrics.rotation_failures.get_or_create(&labels).inc();
                            return Err(e.into());
                        }
                    };
                    let value = created.secret_text.clone();
                    let credential = AddedPassword {
                        key_id: created.key_id.clone().unwrap_or_default(),
                        display_name,
                        hint: created.hint.clone(),
                        start: created.start_date_time.or(Some(start)),
                        end: created.end_date_time.unwrap_or(end),
                        value,
                    };
                    graph_passwords.retain(|p| p.key_id != credential.key_id);
                    graph_passwords.push(credential.observed());
                    added = Some(credential);
                }
                CredentialAction::WriteSecret { credential } => {
                    let context = SecretContext {
                        app_registration: name.clone(),
                        namespace: namespace.clone(),
                        client_id: app_id.clone(),
                        tenant_id: ctx.settings.tenant_id.clone(),
                        authority_host: ctx.settings.authority_host.clone(),
                    };
                    let mut secret = render_secret(
                        &context,
                        &spec.secret_name,
                        &SecretCredential {
                            key_id: &credential.key_id,
                            expires_at: credential.end,
                            value: &credential.value,
                        },
                    );
                    secret.metadata.owner_references =
                        obj.controller_owner_ref(&()).map(|r| vec![r]);
                    secrets
                        .patch(
                            &spec.secret_name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&secret),
                        )
                        .await?;
                    set_entry(status, new_entry);
                }
                CredentialAction::CompleteRotation { .. } => {
                    set_entry(status, new_entry);
                    writer.write(status).await?;
                    added = None;
                    ctx.metrics.rotations.get_or_create(&labels).inc();
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "SecretRotated",
                        &format!("Wrote a new client secret to Secret {}", spec.secret_name),
                    )
                    .await;
                }
                CredentialAction::UpdateStatus => {
                    set_entry(status, new_entry);
                    writer.write(status).await?;
                }
                CredentialAction::RemovePassword { key_id } => {
                    remove_password(ctx, &object_id, &key_id).await?;
                    graph_passwords.retain(|p| p.key_id != key_id);
                    set_entry(status, new_entry);
                    writer.write(status).await?;
                    publish(
                        ctx,
                        obj,
                        EventType::Normal,
                        "SecretRevoked",
                        &format!(
                            "Removed client secret {key_id} of Secret {} ({})",
                            spec.secret_name, plan.reason
                        ),
                    )
                    .await;
                }
            }
        }
        if let Some(entry) = status
            .credentials
            .iter()
            .find(|c| c.secret_name == spec.secret_name)
        {
            record_credential_metrics(ctx, &labels, entry);
        }
    }
    status.unmanaged_credentials =
        Some(crate::credentials::count_unmanaged(&graph_passwords) as i32);
    Ok(CredentialsOutcome { requeue_at })
}

fn action_name(action: &CredentialAction) -> &'static str {
    match action {
        CredentialAction::Idle { .. } => "idle",
        CredentialAction::RecordPending { .. } => "record_pending",
        CredentialAction::AddPassword { .. } => "add_password",
        CredentialAction::WriteSecret { .. } => "write_secret",
        CredentialAction::CompleteRotation { .. } => "complete_rotation",
        CredentialAction::UpdateStatus => "update_status",
        CredentialAction::RemovePassword { .. } => "remove_password",
    }
}

async fn remove_password(ctx: &Context, object_id: &str, key_id: &str) -> Result<(), Error> {
    match ctx.graph.remove_password(object_id, key_id).await {
        Ok(()) | Err(GraphError::NotFound(_)) => Ok(()),
        // Graph answers 400 for a key that is already gone.
        Err(GraphError::BadRequest(detail))
            if detail.to_string().contains("No password credential") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn record_credential_metrics(
    ctx: &Context,
    labels: &CredentialLabels,
    entry: &PasswordCredentialStatus,
) {
    let seconds = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_second() as f64)
    };
    if let Some(expiry) = seconds(&entry.expires_at) {
        ctx.metrics
            .credential_expiry
            .get_or_create(labels)
            .set(expiry);
    }
    if let Some(renew) = seconds(&entry.renew_at) {
        ctx.metrics
            .credential_next_rotation
            .get_or_create(labels)
            .set(renew);
    }
}

fn set_entry(status: &mut AppRegistrationStatus, entry: PasswordCredentialStatus) {
    match status
        .credentials
        .iter_mut()
        .find(|c| c.secret_name == entry.secret_name)
    {
        Some(existing) => *existing = entry,
        None => status.credentials.push(entry),
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The reconcile of a live AppRegistration.
async fn apply(obj: Arc<AppRegistration>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = object_key(obj.as_ref());
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let mut writer = StatusWriter {
        api: &api,
        name: name.clone(),
        written: obj.status.clone(),
    };
    let generation = obj.metadata.generation;

    let outcome = apply_stages(&obj, ctx, &mut status, &mut writer).await;
    let now = Timestamp::now();
    match outcome {
        Ok(stages) => {
            let mut desired = Vec::new();
            let blocking = stages.plan.blocking_reason();
            let synced = match &blocking {
                Some((reason, message)) => {
                    DesiredCondition::failed(condition::SYNCED, *reason, message.clone())
                }
                None => DesiredCondition::ok(
                    condition::SYNCED,
                    "Synced",
                    if stages.writes.is_empty() {
                        "The application in Entra matches the spec".to_string()
                    } else {
                        format!("Applied: {}", dedup_join(&stages.writes))
                    },
                ),
            };
            desired.push(synced.clone());
            let credentials_ok = obj.spec.credentials.passwords.iter().all(|p| {
                status.credentials.iter().any(|c| {
                    c.secret_name == p.secret_name && c.key_id.is_some() && c.pending.is_none()
                })
            });
            desired.push(if obj.spec.credentials.passwords.is_empty() {
                DesiredCondition::ok(
                    condition::CREDENTIALS_READY,
                    "NoCredentials",
                    "No client secrets are declared",
                )
            } else if credentials_ok {
                DesiredCondition::ok(
                    condition::CREDENTIALS_READY,
                    "CredentialsCurrent",
                    "Every declared client secret is in its Secret and not due for rotation",
                )
            } else {
                DesiredCondition::failed(
                    condition::CREDENTIALS_READY,
                    "RotationInProgress",
                    "A client secret is being created or rotated",
                )
            });
            let consent = status.consent.clone().unwrap_or_default();
            let consent_ok = matches!(
                consent.state,
                ConsentState::Granted | ConsentState::NotRequired
            );
            desired.push(if consent_ok {
                DesiredCondition::ok(
                    condition::CONSENT_GRANTED,
                    format!("{:?}", consent.state),
                    "Every required permission is consented",
                )
            } else {
                DesiredCondition::failed(
                    condition::CONSENT_GRANTED,
                    format!("{:?}", consent.state),
                    format!(
                        "Missing consent for {}{}",
                        consent.missing.join(", "),
                        consent
                            .admin_consent_url
                            .as_deref()
                            .map(|u| format!("; an administrator can grant it at {u}"))
                            .unwrap_or_default()
                    ),
                )
            });
            // Ready needs Entra in sync and credentials in place; missing consent is reported in
            // its own condition (granting it may be someone else's job) and does not block Ready.
            desired.push(if !synced.status {
                DesiredCondition::failed(
                    condition::READY,
                    synced.reason.clone(),
                    synced.message.clone(),
                )
            } else if !credentials_ok && !obj.spec.credentials.passwords.is_empty() {
                DesiredCondition::failed(
                    condition::READY,
                    "CredentialsPending",
                    "Waiting for client secrets to be written",
                )
            } else {
                DesiredCondition::ok(
                    condition::READY,
                    "Ready",
                    "The app registration matches the spec",
                )
            });
            status.conditions = merge_conditions(&previous.conditions, &desired, generation, now);
            status.observed_generation = generation;
            writer.write(&status).await?;
            ctx.record_success(&key);
            let ready = status.conditions.is_true(condition::READY);
            ctx.metrics
                .resource_ready
                .get_or_create(&CredentialLabels {
                    kind: KIND.to_string(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    secret: String::new(),
                })
                .set(i64::from(ready));
            if !stages.writes.is_empty() {
                publish(
                    ctx,
                    obj.as_ref(),
                    EventType::Normal,
                    "Synced",
                    &format!("Applied to Entra: {}", dedup_join(&stages.writes)),
                )
                .await;
            }
            if blocking.is_some() {
                // Waiting on something else (a reference, a permission name): the watch on other
                // AppRegistrations brings us back; a slow poll covers the rest.
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
            let mut wait = ctx.settings.resync;
            if let Some(at) = stages.requeue_at {
                let until = at.duration_since(Timestamp::now());
                let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
                wait = wait.min(until.max(Duration::from_millis(200)));
            }
            info!(appregistration = %key, ready, requeue_in = ?wait, "reconciled");
            Ok(Action::requeue(wait))
        }
        Err(error) => {
            let desired = vec![
                DesiredCondition::failed(condition::SYNCED, error.reason(), error.to_string()),
                DesiredCondition::failed(condition::READY, error.reason(), error.to_string()),
            ];
            status.conditions = merge_conditions(&previous.conditions, &desired, generation, now);
            status.observed_generation = generation;
            if let Err(e) = writer.write(&status).await {
                warn!(appregistration = %key, error = %e, "could not write failure status");
            }
            publish(
                ctx,
                obj.as_ref(),
                EventType::Warning,
                error.reason(),
                &error.to_string(),
            )
            .await;
            Err(error)
        }
    }
}

struct StagesOutcome {
    plan: Plan,
    writes: Vec<&'static str>,
    requeue_at: Option<Timestamp>,
}

async fn apply_stages(
    obj: &AppRegistration,
    ctx: &Context,
    status: &mut AppRegistrationStatus,
    writer: &mut StatusWriter<'_>,
) -> Result<StagesOutcome, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<AppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let references = observe_references(obj, &api).await?;
    let (plan, view, writes) = sync_graph(obj, &references, ctx).await?;

    let planned = &plan.status;
    status.app_id = planned.app_id.clone();
    status.object_id = planned.object_id.clone();
    status.unique_name = planned.unique_name.clone();
    status.service_principal_id = planned.service_principal_id.clone();
    status.tenant_id = Some(ctx.settings.tenant_id.clone());
    status.identifier_uris = planned.identifier_uris.clone();
    status.scope_ids = planned.scope_ids.clone();
    status.role_ids = planned.role_ids.clone();
    status.consent = Some(planned.consent.clone());
    status.federated_credentials = planned.federated_credentials.clone();
    // IDs first: other AppRegistrations wait for them, and credentials need the app.
    writer.write(status).await?;

    let mut requeue_at = None;
    if let Some(app) = &view.application {
        let outcome = sync_credentials(obj, app, status, writer, ctx).await?;
        requeue_at = outcome.requeue_at;
    }
    Ok(StagesOutcome {
        plan,
        writes,
        requeue_at,
    })
}

fn dedup_join(items: &[&'static str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for i in items {
        if !seen.contains(i) {
            seen.push(i);
        }
    }
    seen.join(", ")
}

/// The reconcile of a deleted AppRegistration: delete (soft) or orphan the application.
async fn cleanup(obj: Arc<AppRegistration>, ctx: &Context) -> Result<Action, Error> {
    use crate::api::appregistration::DeletionPolicy;
    let key = object_key(obj.as_ref());
    let object_id = match &obj.status.as_ref().and_then(|s| s.object_id.clone()) {
        Some(id) => Some(id.clone()),
        None => {
            let unique_name = super::ids::unique_name(
                &ctx.settings.plan.unique_name_prefix,
                &obj.namespace().unwrap_or_default(),
                &obj.name_any(),
            );
            ctx.graph
                .get_application_by_unique_name(&unique_name)
                .await
                .optional()?
                .and_then(|a| a.id)
        }
    };
    for p in &obj.spec.credentials.passwords {
        ctx.metrics.forget_credential(&CredentialLabels {
            kind: KIND.to_string(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            secret: p.secret_name.clone(),
        });
    }
    match (obj.spec.deletion_policy, object_id) {
        (DeletionPolicy::Delete, Some(id)) => {
            match ctx.graph.delete_application(&id).await {
                Ok(()) | Err(GraphError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            info!(appregistration = %key, "deleted the application (restorable for 30 days)");
            publish(
                ctx,
                obj.as_ref(),
                EventType::Normal,
                "Deleted",
                "Deleted the application in Entra (restorable for 30 days)",
            )
            .await;
        }
        (DeletionPolicy::Orphan, Some(_)) => {
            info!(appregistration = %key, "left the application in Entra (deletionPolicy: Orphan)");
        }
        (_, None) => {}
    }
    ctx.record_success(&key);
    Ok(Action::await_change())
}
