//! The one loop that executes the rotation state machine: observe, plan, execute, persist, until
//! the plan is idle. It talks to the world only through the small ports below, so the controller
//! runs it against Graph and the Kubernetes API, and the crash simulation ([`super::simulation`])
//! runs the very same function against in-memory ports that crash, fail and lag.
//!
//! # Fresh state: conditional status writes
//!
//! Credential decisions are made from the status entry the [`StatusStore`] returns, and that read
//! may lag the operator's own last write (a reflector cache, a replica that just took over). The
//! driver does not trust it; instead every status write is *conditional* on the version the entry
//! was read at (Kubernetes: `metadata.resourceVersion` in the patch, answered 409 Conflict when the
//! object moved on), and before the first write to Graph or the Secret in a pass the driver
//! confirms the entry with such a write even if nothing in it changed. A conflict means the read
//! was stale: the driver reads again and plans again. So:
//! - no credential is added, written or removed on the strength of a stale status, because a stale
//!   status cannot be confirmed;
//! - a stale status can never overwrite a newer one (a deposed leader, a second reconcile).
//!
//! The alternative, a quorum read (GET) of the resource before each credential stage, was not
//! chosen: it costs an API call on every reconcile of every resource, including the many idle
//! ones, where the conditional write costs one only on the rare passes that act; and a read alone
//! does not stop a writer whose read was fresh when it was made but is stale by the time it writes
//! (two replicas around a takeover). Conditional writes cover both.
//!
//! # Fencing
//!
//! Before every write (Graph, Secret, status) the driver asks the [`Fence`] whether this replica
//! can still prove it holds the leader lease; if not, it stops before the write.
//!
//! # Crash safety
//!
//! The `addPassword` response lives only in this function's memory until the Secret is written;
//! every other fact is in status, Graph or the Secret. A crash (or an error) anywhere ends the
//! pass; the next pass resumes from whatever landed (see [`super::rotation`]).

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use super::rotation::{
    AddedPassword, CredentialAction, CredentialError, CredentialReason, ObservedPassword,
    RotationInput, new_nonce, plan_password_rotation, plan_retired_password,
};
use super::secret::ObservedSecret;
use crate::api::appregistration::{PasswordCredentialSpec, PasswordCredentialStatus};
use crate::graph::{Priority, with_priority};

/// How many state-machine steps one pass may take (a whole rotation with crash recovery needs
/// about six).
pub const MAX_STEPS: usize = 12;

/// How many conflicting status writes one pass tolerates before giving up (and being requeued).
pub const MAX_CONFLICTS: u32 = 3;

/// Why a port call failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A conditional status write found the object at another version than the one read.
    #[error("status changed since it was read (resourceVersion conflict)")]
    Conflict,
    /// Anything else: the call may or may not have taken effect.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl PortError {
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        PortError::Failed(Box::new(e))
    }
}

/// This replica can no longer prove it holds the leader lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not writing: {0}")]
pub struct Fenced(pub String);

/// Why a pass stopped before the state machine was idle.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Plan(#[from] CredentialError),
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("{step} for secret {secret_name}: {source}")]
    Port {
        step: &'static str,
        secret_name: String,
        #[source]
        source: PortError,
    },
    #[error(transparent)]
    CertificatePlan(#[from] super::certificate::CertificateStatusError),
    #[error("status of secret {secret_name} kept changing during the pass ({conflicts} conflicts)")]
    Conflicts { secret_name: String, conflicts: u32 },
}

/// The application's password credentials in Graph.
#[async_trait]
pub trait GraphPasswords: Send + Sync {
    /// Every password credential of the application.
    async fn list(&self) -> Result<Vec<ObservedPassword>, PortError>;
    /// `addPassword` with this `displayName` and `endDateTime`, and no `startDateTime`.
    async fn add(&self, display_name: &str, end: Timestamp) -> Result<AddedPassword, PortError>;
    /// `removePassword`; a credential that is already gone counts as removed.
    async fn remove(&self, key_id: &str) -> Result<(), PortError>;
}

/// The Secrets that receive the values.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The Secret as it is now (not from a cache: the state machine checks it before it removes).
    async fn read(&self, name: &str) -> Result<Option<ObservedSecret>, PortError>;
    /// Writes the Secret with this credential (see [`super::render_secret`]).
    async fn write(&self, name: &str, credential: &AddedPassword) -> Result<(), PortError>;
    /// Deletes the Secret; one that is already gone counts as deleted.
    async fn delete(&self, name: &str) -> Result<(), PortError>;
}

/// The resource's status entries of one credential kind, by Secret name (`status.credentials` for
/// passwords, `status.certificates` for certificates).
#[async_trait]
pub trait StatusStore<E = PasswordCredentialStatus>: Send + Sync {
    /// The entry for this Secret, and (remembered by the store) the version it was read at. May
    /// lag the last write.
    async fn read(&self, secret_name: &str) -> Result<Option<E>, PortError>;
    /// Replaces the entry (`None` removes it) if the resource is still at the version of this
    /// store's last read or write, and remembers the new version; [`PortError::Conflict`]
    /// otherwise. Must reach the server even when nothing changes: it is also how the driver
    /// confirms that a read was not stale.
    async fn write(&self, secret_name: &str, entry: Option<&E>) -> Result<(), PortError>;
}

/// What happened, for events and metrics (never a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialEvent {
    /// A rotation was recorded (the reason says why).
    RotationStarted {
        secret_name: String,
        reason: CredentialReason,
    },
    /// The Secret holds a new credential, now current.
    Rotated { secret_name: String, key_id: String },
    /// `addPassword` failed.
    AddFailed { secret_name: String },
    /// Uploading a certificate (`addKey` or the `keyCredentials` PATCH) failed.
    CertificateAddFailed { secret_name: String },
    /// A credential was removed from the application (revoked, orphaned, value lost).
    Removed {
        secret_name: String,
        key_id: String,
        reason: CredentialReason,
    },
    /// The Secret of a password no longer declared was deleted at the end of its overlap.
    SecretDeleted { secret_name: String },
    /// A certificate step worth an event: a rotation recorded, completed, a key removed, a status
    /// change (the reason says which).
    Certificate {
        secret_name: String,
        reason: super::certificate::CertificateReason,
        key_id: Option<String>,
    },
    /// Status changed without a Graph write worth its own event: adoption, a previous credential
    /// left in place because it is not ours, an undeclared password winding down, a handover
    /// confirmation that moved the previous credentials' revoke time forward.
    StatusChanged {
        secret_name: String,
        reason: CredentialReason,
    },
}

#[async_trait]
pub trait Events: Send + Sync {
    async fn emit(&self, event: CredentialEvent);
}

/// The time decisions are made at.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Whether this replica may still write (see `crate::fence::Fence`).
pub trait Fence: Send + Sync {
    fn check(&self) -> Result<(), Fenced>;
}

/// The ports of one pass.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub graph: &'a dyn GraphPasswords,
    pub secrets: &'a dyn SecretStore,
    pub status: &'a dyn StatusStore,
    pub events: &'a dyn Events,
    pub clock: &'a dyn Clock,
    pub fence: &'a dyn Fence,
}

/// One password to drive.
#[derive(Clone, Copy, Debug)]
pub struct PasswordTarget<'a> {
    /// The declared password, or for one no longer declared its `secretName` and the overlap its
    /// credentials get.
    pub spec: &'a PasswordCredentialSpec,
    /// Whether the spec still declares it ([`plan_retired_password`] otherwise).
    pub declared: bool,
    /// `metadata.uid` of the resource.
    pub owner_uid: &'a str,
    /// The `entra.bookme.io/rotate` annotation.
    pub rotate_annotation: Option<&'a str>,
    /// The `entra.bookme.io/handover-confirmed` annotation (see
    /// [`RotationInput::handover_confirmation`]).
    pub handover_confirmation: Option<&'a str>,
    /// The safety delay between a handover confirmation and the revocation of the previous
    /// credentials.
    pub confirm_delay: SignedDuration,
}

/// Where a pass ended.
#[derive(Clone, Debug, PartialEq)]
pub struct PassOutcome {
    /// When to run again (renewal, revocation, replication poll, or soon if the pass ran out of
    /// steps).
    pub requeue_at: Option<Timestamp>,
    /// The entry as persisted (`None` if there is none, e.g. forgotten).
    pub status: Option<PasswordCredentialStatus>,
    /// The application's credentials including this pass's own writes.
    pub graph: Vec<ObservedPassword>,
    /// The last plan's reason.
    pub reason: CredentialReason,
}

/// Runs the state machine for one password until it is idle, persisting each step's status before
/// the step that depends on it (the write-ahead rule), on conditional writes (see the module
/// documentation). Call it again at `requeue_at`, or after an error (with backoff): it resumes
/// from whatever landed.
pub async fn drive_password(
    target: PasswordTarget<'_>,
    ports: Ports<'_>,
) -> Result<PassOutcome, DriverError> {
    Pass {
        target,
        ports,
        graph: Vec::new(),
    }
    .run()
    .await
}

/// Where a credential's `addPassword`/`addKey` queues when Graph's write budget is spent: replacing
/// a credential that expires goes first, soonest expiry first (a first credential, with nothing to
/// replace, queues with everything else).
pub(crate) fn rotation_priority(current_expires_at: Option<&str>) -> Priority {
    current_expires_at
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map_or(Priority::Normal, |t| Priority::DueRotation {
            expires_at: t.as_second(),
        })
}

/// Whether persisting `new` changes anything (a missing entry equals an empty one).
fn changed(entry: Option<&PasswordCredentialStatus>, new: &PasswordCredentialStatus) -> bool {
    match entry {
        Some(entry) => entry != new,
        None => {
            *new != PasswordCredentialStatus {
                secret_name: new.secret_name.clone(),
                ..PasswordCredentialStatus::default()
            }
        }
    }
}

struct Pass<'a> {
    target: PasswordTarget<'a>,
    ports: Ports<'a>,
    graph: Vec<ObservedPassword>,
}

/// A step ended on a conflicting status write: read again.
struct Conflicted;

impl Pass<'_> {
    fn secret_name(&self) -> &str {
        &self.target.spec.secret_name
    }

    fn port_error(&self, step: &'static str, source: PortError) -> DriverError {
        DriverError::Port {
            step,
            secret_name: self.secret_name().to_string(),
            source,
        }
    }

    /// A conditional status write, fenced. `Ok(Err(Conflicted))` when the status had moved on.
    async fn persist(
        &self,
        entry: Option<&PasswordCredentialStatus>,
    ) -> Result<Result<(), Conflicted>, DriverError> {
        self.ports.fence.check()?;
        match self.ports.status.write(self.secret_name(), entry).await {
            Ok(()) => Ok(Ok(())),
            Err(PortError::Conflict) => Ok(Err(Conflicted)),
            Err(e) => Err(self.port_error("write status", e)),
        }
    }

    async fn emit(&self, event: CredentialEvent) {
        self.ports.events.emit(event).await;
    }

    async fn run(mut self) -> Result<PassOutcome, DriverError> {
        self.graph = self
            .ports
            .graph
            .list()
            .await
            .map_err(|e| self.port_error("list password credentials", e))?;
        // The addPassword response: the value's only copy until the Secret holds it.
        let mut added: Option<AddedPassword> = None;
        let mut conflicts = 0;
        loop {
            match self.steps(&mut added).await? {
                Ok(outcome) => return Ok(outcome),
                Err(Conflicted) => {
                    conflicts += 1;
                    if conflicts > MAX_CONFLICTS {
                        return Err(DriverError::Conflicts {
                            secret_name: self.secret_name().to_string(),
                            conflicts,
                        });
                    }
                }
            }
        }
    }

    /// Reads status, then plans and executes until idle, out of steps, or a conflict.
    async fn steps(
        &mut self,
        added: &mut Option<AddedPassword>,
    ) -> Result<Result<PassOutcome, Conflicted>, DriverError> {
        let secret_name = self.secret_name().to_string();
        let mut entry = self
            .ports
            .status
            .read(&secret_name)
            .await
            .map_err(|e| self.port_error("read status", e))?;
        // Whether `entry` is known to be the latest (a conditional write of it succeeded).
        let mut confirmed = false;
        let mut reason = CredentialReason::UpToDate;
        for _ in 0..MAX_STEPS {
            let secret = self
                .ports
                .secrets
                .read(&secret_name)
                .await
                .map_err(|e| self.port_error("read secret", e))?;
            let now = self.ports.clock.now();
            let nonce = new_nonce();
            let input = RotationInput {
                spec: self.target.spec,
                owner_uid: self.target.owner_uid,
                status: entry.as_ref(),
                graph: &self.graph,
                secret: secret.as_ref(),
                rotate_annotation: self.target.rotate_annotation,
                added: added.as_ref(),
                fresh_nonce: &nonce,
                now,
                handover_confirmation: self.target.handover_confirmation,
                confirm_delay: self.target.confirm_delay,
            };
            let plan = if self.target.declared {
                plan_password_rotation(&input)?
            } else {
                plan_retired_password(&input)?
            };
            reason = plan.reason;
            tracing::debug!(secret = %secret_name, reason = %plan.reason, action = plan.action.name(), "credential step");
            if plan.action.writes_outside_status() && !confirmed {
                // The entry may lag the operator's own last write: confirm it before acting on it.
                if let Err(c) = self.persist(entry.as_ref()).await? {
                    return Ok(Err(c));
                }
                confirmed = true;
            }
            match plan.action {
                CredentialAction::Idle { requeue_at } => {
                    return Ok(Ok(PassOutcome {
                        requeue_at,
                        status: entry,
                        graph: std::mem::take(&mut self.graph),
                        reason,
                    }));
                }
                CredentialAction::ForgetEntry => {
                    if let Err(c) = self.persist(None).await? {
                        return Ok(Err(c));
                    }
                    self.emit(CredentialEvent::StatusChanged {
                        secret_name: secret_name.clone(),
                        reason,
                    })
                    .await;
                    return Ok(Ok(PassOutcome {
                        requeue_at: None,
                        status: None,
                        graph: std::mem::take(&mut self.graph),
                        reason,
                    }));
                }
                CredentialAction::RecordPending { .. } => {
                    if let Err(c) = self.persist(Some(&plan.status)).await? {
                        return Ok(Err(c));
                    }
                    confirmed = true;
                    entry = Some(plan.status);
                    self.emit(CredentialEvent::RotationStarted {
                        secret_name: secret_name.clone(),
                        reason,
                    })
                    .await;
                }
                CredentialAction::AddPassword { display_name, end } => {
                    self.ports.fence.check()?;
                    let priority =
                        rotation_priority(entry.as_ref().and_then(|e| e.expires_at.as_deref()));
                    let credential =
                        match with_priority(priority, self.ports.graph.add(&display_name, end))
                            .await
                        {
                            Ok(credential) => credential,
                            Err(e) => {
                                self.emit(CredentialEvent::AddFailed {
                                    secret_name: secret_name.clone(),
                                })
                                .await;
                                return Err(self.port_error("addPassword", e));
                            }
                        };
                    self.graph.retain(|c| c.key_id != credential.key_id);
                    self.graph.push(credential.observed());
                    *added = Some(credential);
                }
                CredentialAction::WriteSecret { credential } => {
                    self.ports.fence.check()?;
                    self.ports
                        .secrets
                        .write(&secret_name, &credential)
                        .await
                        .map_err(|e| self.port_error("write secret", e))?;
                }
                CredentialAction::DeleteSecret => {
                    self.ports.fence.check()?;
                    self.ports
                        .secrets
                        .delete(&secret_name)
                        .await
                        .map_err(|e| self.port_error("delete secret", e))?;
                    self.emit(CredentialEvent::SecretDeleted {
                        secret_name: secret_name.clone(),
                    })
                    .await;
                }
                CredentialAction::CompleteRotation { key_id } => {
                    if let Err(c) = self.persist(Some(&plan.status)).await? {
                        return Ok(Err(c));
                    }
                    confirmed = true;
                    entry = Some(plan.status);
                    *added = None;
                    self.emit(CredentialEvent::Rotated {
                        secret_name: secret_name.clone(),
                        key_id,
                    })
                    .await;
                }
                CredentialAction::UpdateStatus => {
                    if let Err(c) = self.persist(Some(&plan.status)).await? {
                        return Ok(Err(c));
                    }
                    confirmed = true;
                    entry = Some(plan.status);
                    if matches!(
                        reason,
                        CredentialReason::Adopted
                            | CredentialReason::NotOurs
                            | CredentialReason::Undeclared
                            | CredentialReason::HandoverConfirmed
                    ) {
                        self.emit(CredentialEvent::StatusChanged {
                            secret_name: secret_name.clone(),
                            reason,
                        })
                        .await;
                    }
                }
                CredentialAction::RemovePassword { key_id } => {
                    self.ports.fence.check()?;
                    self.ports
                        .graph
                        .remove(&key_id)
                        .await
                        .map_err(|e| self.port_error("removePassword", e))?;
                    self.graph.retain(|c| c.key_id != key_id);
                    if changed(entry.as_ref(), &plan.status) {
                        if let Err(c) = self.persist(Some(&plan.status)).await? {
                            return Ok(Err(c));
                        }
                        entry = Some(plan.status);
                    }
                    self.emit(CredentialEvent::Removed {
                        secret_name: secret_name.clone(),
                        key_id,
                        reason,
                    })
                    .await;
                }
            }
        }
        // Out of steps: let the queue come back soon rather than spin here.
        Ok(Ok(PassOutcome {
            requeue_at: Some(self.ports.clock.now() + SignedDuration::from_secs(2)),
            status: entry,
            graph: std::mem::take(&mut self.graph),
            reason,
        }))
    }
}
