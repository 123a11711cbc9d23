//! The password-credential rotation state machine: given what is declared, what status says and
//! what Graph and the Secret hold, the one next step. Pure: the controller executes the step,
//! persists the returned status, observes again and asks again, so any crash between two steps
//! leaves a state that this function knows how to finish.

use jiff::{SignedDuration, Timestamp};

use super::secret::{ObservedSecret, SecretValue};
use crate::api::appregistration::{
    PasswordCredentialSpec, PasswordCredentialStatus, PendingRotation, PreviousCredential,
};
use crate::api::duration::Overlap;

/// First part of the `displayName` of every credential this operator creates:
/// `entra-operator:<secretName>:<nonce>`. Anything else is someone else's credential.
pub const MARKER_PREFIX: &str = "entra-operator";

/// How long a credential may be missing from Graph reads right after it was created before the
/// operator believes it is gone: Graph is eventually consistent, and rotating because of a stale
/// read would replace a Secret that works.
pub const REPLICATION_GRACE: SignedDuration = SignedDuration::from_secs(120);

/// How often to look again while waiting for Graph to show a credential.
pub const REPLICATION_POLL: SignedDuration = SignedDuration::from_secs(10);

/// The `displayName` of a credential created for `secret_name` in the rotation marked `nonce`.
pub fn managed_display_name(secret_name: &str, nonce: &str) -> String {
    format!("{MARKER_PREFIX}:{secret_name}:{nonce}")
}

/// The parts of a managed credential's `displayName`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedMarker<'a> {
    pub secret_name: &'a str,
    pub nonce: &'a str,
}

/// Parses `entra-operator:<secretName>:<nonce>`; `None` for credentials this operator did not
/// create. Secret names cannot contain `:`, nonces never do.
pub fn parse_managed_display_name(display_name: &str) -> Option<ManagedMarker<'_>> {
    let rest = display_name
        .strip_prefix(MARKER_PREFIX)?
        .strip_prefix(':')?;
    let (secret_name, nonce) = rest.rsplit_once(':')?;
    if secret_name.is_empty() || nonce.is_empty() || secret_name.contains(':') {
        return None;
    }
    Some(ManagedMarker { secret_name, nonce })
}

/// A fresh random nonce for [`RotationInput::fresh_nonce`].
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// One entry of the application's `passwordCredentials` as Graph reports it (the controller maps
/// Graph's model to this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPassword {
    pub key_id: String,
    pub display_name: Option<String>,
    /// First characters of the value (Entra's `hint`).
    pub hint: Option<String>,
    pub start: Option<Timestamp>,
    pub end: Timestamp,
}

impl ObservedPassword {
    /// The marker, if this operator created the credential.
    pub fn marker(&self) -> Option<ManagedMarker<'_>> {
        self.display_name
            .as_deref()
            .and_then(parse_managed_display_name)
    }
}

/// The response of the `addPassword` just executed, held in memory only until the Secret is
/// written. It is the one place the value exists: after a crash it is gone, and the state machine
/// recovers by removing the credential and adding another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedPassword {
    pub key_id: String,
    pub display_name: String,
    pub hint: Option<String>,
    pub start: Option<Timestamp>,
    pub end: Timestamp,
    pub value: SecretValue,
}

impl AddedPassword {
    /// As Graph will list it once the write has replicated.
    pub fn observed(&self) -> ObservedPassword {
        ObservedPassword {
            key_id: self.key_id.clone(),
            display_name: Some(self.display_name.clone()),
            hint: self.hint.clone().or_else(|| Some(self.value.hint())),
            start: self.start,
            end: self.end,
        }
    }
}

/// Everything the state machine looks at for one declared password.
#[derive(Clone, Copy, Debug)]
pub struct RotationInput<'a> {
    pub spec: &'a PasswordCredentialSpec,
    /// The status entry with the same `secretName`, as last persisted by the operator.
    pub status: Option<&'a PasswordCredentialStatus>,
    /// All password credentials of the application (managed, other secrets', unmanaged).
    pub graph: &'a [ObservedPassword],
    /// The Secret named `spec.secretName`, if it exists.
    pub secret: Option<&'a ObservedSecret>,
    /// The `entra.bookme.io/rotate` annotation of the resource.
    pub rotate_annotation: Option<&'a str>,
    /// The response of an `addPassword` executed by this process since it last observed, if any.
    pub added: Option<&'a AddedPassword>,
    /// A nonce to use if this step starts a rotation (see [`new_nonce`]); ignored otherwise.
    pub fresh_nonce: &'a str,
    pub now: Timestamp,
}

/// The one next step for a declared password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialAction {
    /// Nothing to do; call again at `requeue_at` (the earliest of renewal and revocation).
    Idle { requeue_at: Option<Timestamp> },
    /// Persist the plan's status, which records a rotation with this nonce. Must land before the
    /// `addPassword` that follows (write-ahead).
    RecordPending { nonce: String },
    /// `POST /applications/{id}/addPassword` with these values; keep the response in memory and
    /// pass it as [`RotationInput::added`] to the next call.
    AddPassword {
        display_name: String,
        start: Timestamp,
        end: Timestamp,
    },
    /// Write the Secret with this credential (see [`super::render_secret`]).
    WriteSecret { credential: AddedPassword },
    /// Persist the plan's status: the Secret holds the new credential, which becomes current.
    CompleteRotation { key_id: String },
    /// Persist the plan's status; nothing else changes (adoption, a vanished previous credential,
    /// renewal time after a spec change).
    UpdateStatus,
    /// `POST /applications/{id}/removePassword` with this key ID (a 404 counts as done), then
    /// persist the plan's status.
    RemovePassword { key_id: String },
}

/// Why a step is taken; the `as_str` form is the event and condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialReason {
    /// No credential yet.
    Initial,
    /// `expiresAt - renewBefore` has passed.
    RotationDue,
    /// The rotate annotation has a value not yet honoured.
    RotateAnnotation,
    /// The Secret does not exist.
    SecretDeleted,
    /// The Secret no longer holds the current credential (other keyId, or value not matching the hint).
    SecretEdited,
    /// The current credential is no longer in Entra (deleted in the portal?).
    CredentialMissing,
    /// A started rotation continues (addPassword, write the Secret).
    RotationInProgress,
    /// The new credential's value was lost before it reached the Secret: remove it and add another.
    RecoverLostValue,
    /// The Secret holds the new credential; it becomes current.
    RotationComplete,
    /// The previous credential's revoke time has passed.
    RevokePrevious,
    /// A credential carrying this operator's marker for this Secret that nothing refers to (left by
    /// a crash or an interrupted rotation).
    RemoveOrphan,
    /// The previous credential is no longer in Entra; forget it.
    PreviousGone,
    /// Status had no current credential but the Secret holds one of ours: take it as current.
    Adopted,
    /// Expiry, hint or renewal time in status differ from Entra and the spec.
    StatusRefreshed,
    /// Graph does not show a credential yet that was created moments ago.
    WaitingForReplication,
    /// Everything is in place.
    UpToDate,
}

impl CredentialReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialReason::Initial => "Initial",
            CredentialReason::RotationDue => "RotationDue",
            CredentialReason::RotateAnnotation => "RotateAnnotation",
            CredentialReason::SecretDeleted => "SecretDeleted",
            CredentialReason::SecretEdited => "SecretEdited",
            CredentialReason::CredentialMissing => "CredentialMissing",
            CredentialReason::RotationInProgress => "RotationInProgress",
            CredentialReason::RecoverLostValue => "RecoverLostValue",
            CredentialReason::RotationComplete => "RotationComplete",
            CredentialReason::RevokePrevious => "RevokePrevious",
            CredentialReason::RemoveOrphan => "RemoveOrphan",
            CredentialReason::PreviousGone => "PreviousGone",
            CredentialReason::Adopted => "Adopted",
            CredentialReason::StatusRefreshed => "StatusRefreshed",
            CredentialReason::WaitingForReplication => "WaitingForReplication",
            CredentialReason::UpToDate => "UpToDate",
        }
    }

    /// Whether this reason starts a rotation (worth an event of its own).
    pub fn starts_rotation(self) -> bool {
        matches!(
            self,
            CredentialReason::Initial
                | CredentialReason::RotationDue
                | CredentialReason::RotateAnnotation
                | CredentialReason::SecretDeleted
                | CredentialReason::SecretEdited
                | CredentialReason::CredentialMissing
        )
    }
}

impl std::fmt::Display for CredentialReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The next step, the status entry to persist once it succeeded, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialPlan {
    pub action: CredentialAction,
    /// The status entry after the action. Equal to the input status for steps that change only
    /// Graph or the Secret.
    pub status: PasswordCredentialStatus,
    pub reason: CredentialReason,
}

/// Status that this module cannot read. Status is written by the operator only, so these mean a
/// hand-edited status or a bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("status.credentials[{secret_name}].{field} is not an RFC 3339 timestamp: {value:?}")]
    InvalidTimestamp {
        secret_name: String,
        field: &'static str,
        value: String,
    },
    #[error(
        "status entry for secret {status:?} was passed for the password writing secret {spec:?}"
    )]
    SecretNameMismatch { spec: String, status: String },
    #[error("timestamp arithmetic overflowed for secret {secret_name:?}")]
    Overflow { secret_name: String },
}

/// Decides the one next step for a declared password. See the module documentation for the
/// order of concerns.
pub fn plan_password_rotation(
    input: &RotationInput<'_>,
) -> Result<CredentialPlan, CredentialError> {
    Planner::new(input)?.plan()
}

/// Credentials on the application that this operator did not create (reported, never touched).
pub fn count_unmanaged(graph: &[ObservedPassword]) -> usize {
    graph.iter().filter(|c| c.marker().is_none()).count()
}

/// Key IDs of credentials this operator created for Secrets that are no longer declared (a
/// password removed from the spec). Removing them is the controller's call.
pub fn undeclared_managed_credentials<'a>(
    declared_secret_names: &[&str],
    graph: &'a [ObservedPassword],
) -> Vec<&'a str> {
    graph
        .iter()
        .filter(|c| {
            c.marker()
                .is_some_and(|m| !declared_secret_names.contains(&m.secret_name))
        })
        .map(|c| c.key_id.as_str())
        .collect()
}

/// When the previous credential is removed: `overlap` after the rotation, or its own expiry for
/// `UntilExpiry`, and never after its own expiry (Entra would have disabled it anyway).
pub fn previous_revoke_at(
    overlap: &Overlap,
    previous_expires_at: Timestamp,
    rotated_at: Timestamp,
) -> Timestamp {
    match overlap {
        Overlap::UntilExpiry => previous_expires_at,
        Overlap::For(duration) => rotated_at
            .checked_add(duration.as_signed())
            .map_or(previous_expires_at, |t| t.min(previous_expires_at)),
    }
}

/// Renders a timestamp as status keeps it.
fn format_timestamp(t: Timestamp) -> String {
    t.to_string()
}

struct Planner<'a> {
    input: &'a RotationInput<'a>,
    status: PasswordCredentialStatus,
    /// Credentials carrying our marker for this Secret.
    mine: Vec<&'a ObservedPassword>,
}

impl<'a> Planner<'a> {
    fn new(input: &'a RotationInput<'a>) -> Result<Self, CredentialError> {
        let secret_name = &input.spec.secret_name;
        let status = match input.status {
            Some(status) if &status.secret_name != secret_name => {
                return Err(CredentialError::SecretNameMismatch {
                    spec: secret_name.clone(),
                    status: status.secret_name.clone(),
                });
            }
            Some(status) => status.clone(),
            None => PasswordCredentialStatus {
                secret_name: secret_name.clone(),
                ..PasswordCredentialStatus::default()
            },
        };
        let mine = input
            .graph
            .iter()
            .filter(|c| c.marker().is_some_and(|m| m.secret_name == *secret_name))
            .collect();
        Ok(Planner {
            input,
            status,
            mine,
        })
    }

    fn secret_name(&self) -> &str {
        &self.input.spec.secret_name
    }

    fn in_graph(&self, key_id: &str) -> Option<&'a ObservedPassword> {
        self.input.graph.iter().find(|c| c.key_id == key_id)
    }

    fn parse(&self, field: &'static str, value: &str) -> Result<Timestamp, CredentialError> {
        value
            .parse()
            .map_err(|_| CredentialError::InvalidTimestamp {
                secret_name: self.secret_name().to_string(),
                field,
                value: value.to_string(),
            })
    }

    fn add(&self, t: Timestamp, d: SignedDuration) -> Result<Timestamp, CredentialError> {
        t.checked_add(d).map_err(|_| CredentialError::Overflow {
            secret_name: self.secret_name().to_string(),
        })
    }

    fn step(
        &self,
        action: CredentialAction,
        status: PasswordCredentialStatus,
        reason: CredentialReason,
    ) -> Result<CredentialPlan, CredentialError> {
        Ok(CredentialPlan {
            action,
            status,
            reason,
        })
    }

    fn plan(&self) -> Result<CredentialPlan, CredentialError> {
        if let Some(pending) = &self.status.pending
            && let Some(plan) = self.finish_pending(pending)?
        {
            return Ok(plan);
        }
        if let Some(plan) = self.adopt()? {
            return Ok(plan);
        }
        if let Some(plan) = self.remove_orphan()? {
            return Ok(plan);
        }
        if let Some(plan) = self.retire_previous()? {
            return Ok(plan);
        }
        if let Some(pending) = &self.status.pending {
            // Nothing carries the nonce (never added, add failed, or removed after the value was
            // lost): add it now. Reusing the nonce keeps the write-ahead record valid.
            let now = self.input.now;
            let end = self.add(now, self.input.spec.lifetime.as_signed())?;
            return self.step(
                CredentialAction::AddPassword {
                    display_name: managed_display_name(self.secret_name(), &pending.nonce),
                    start: now,
                    end,
                },
                self.status.clone(),
                CredentialReason::RotationInProgress,
            );
        }
        if let Some(plan) = self.start_rotation_if_due()? {
            return Ok(plan);
        }
        self.refresh_or_idle()
    }

    /// Steps that need the pending rotation's nonce credential: complete, write the Secret, or
    /// remove a credential whose value is lost. `None` when the rotation must (re)add.
    fn finish_pending(
        &self,
        pending: &PendingRotation,
    ) -> Result<Option<CredentialPlan>, CredentialError> {
        let carries_nonce = |display_name: &str| {
            parse_managed_display_name(display_name)
                .is_some_and(|m| m.secret_name == self.secret_name() && m.nonce == pending.nonce)
        };
        let added = self
            .input
            .added
            .filter(|added| carries_nonce(&added.display_name));
        let mut carrying: Vec<ObservedPassword> = self
            .mine
            .iter()
            .filter(|c| c.display_name.as_deref().is_some_and(carries_nonce))
            .map(|c| (*c).clone())
            .collect();
        if let Some(added) = added
            && !carrying.iter().any(|c| c.key_id == added.key_id)
        {
            // Just added: Graph may not list it yet.
            carrying.push(added.observed());
        }

        if let Some(secret) = self.input.secret
            && let Some(new) = carrying
                .iter()
                .find(|c| secret.holds(&c.key_id, c.hint.as_deref()))
        {
            let status = self.completed_status(new)?;
            return self
                .step(
                    CredentialAction::CompleteRotation {
                        key_id: new.key_id.clone(),
                    },
                    status,
                    CredentialReason::RotationComplete,
                )
                .map(Some);
        }
        if let Some(added) = added {
            return self
                .step(
                    CredentialAction::WriteSecret {
                        credential: added.clone(),
                    },
                    self.status.clone(),
                    CredentialReason::RotationInProgress,
                )
                .map(Some);
        }
        if let Some(secret_key) = self.input.secret.and_then(|s| s.key_id.as_deref()) {
            // The Secret names a credential Graph does not list and status does not know: most
            // likely ours, written just before a crash and not replicated to this read yet.
            let known = self.in_graph(secret_key).is_some()
                || self.status.key_id.as_deref() == Some(secret_key)
                || self
                    .status
                    .previous
                    .as_ref()
                    .is_some_and(|p| p.key_id == secret_key);
            let deadline = self.add(
                self.parse("pending.since", &pending.since)?,
                REPLICATION_GRACE,
            )?;
            if !known && self.input.now < deadline {
                return self
                    .step(
                        CredentialAction::Idle {
                            requeue_at: Some(
                                deadline.min(self.add(self.input.now, REPLICATION_POLL)?),
                            ),
                        },
                        self.status.clone(),
                        CredentialReason::WaitingForReplication,
                    )
                    .map(Some);
            }
        }
        if let Some(lost) = carrying.first() {
            return self
                .step(
                    CredentialAction::RemovePassword {
                        key_id: lost.key_id.clone(),
                    },
                    self.status.clone(),
                    CredentialReason::RecoverLostValue,
                )
                .map(Some);
        }
        Ok(None)
    }

    /// Status once `new` is current: the old current becomes previous (with its revoke time), or,
    /// if it is gone from Graph, the existing previous stays while Graph still has it.
    fn completed_status(
        &self,
        new: &ObservedPassword,
    ) -> Result<PasswordCredentialStatus, CredentialError> {
        let now = self.input.now;
        let spec = self.input.spec;
        let old_current = self
            .status
            .key_id
            .as_deref()
            .filter(|key_id| *key_id != new.key_id)
            .and_then(|key_id| self.in_graph(key_id));
        let previous = match old_current {
            Some(old) => Some(PreviousCredential {
                key_id: old.key_id.clone(),
                revoke_at: format_timestamp(previous_revoke_at(&spec.overlap, old.end, now)),
            }),
            None => self
                .status
                .previous
                .clone()
                .filter(|p| p.key_id != new.key_id && self.in_graph(&p.key_id).is_some()),
        };
        let renew_at = self.add(new.end, -spec.renew_before.as_signed())?;
        Ok(PasswordCredentialStatus {
            secret_name: spec.secret_name.clone(),
            key_id: Some(new.key_id.clone()),
            hint: new.hint.clone(),
            expires_at: Some(format_timestamp(new.end)),
            renew_at: Some(format_timestamp(renew_at)),
            previous,
            pending: None,
            rotate_token: self.status.rotate_token.clone(),
            created_at: Some(format_timestamp(new.start.unwrap_or(now))),
        })
    }

    /// Status lost its current credential (restored from a backup, recreated) while the Secret
    /// still holds one of ours: keep using it rather than rotating and orphaning it.
    fn adopt(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        if self.status.key_id.is_some() || self.status.pending.is_some() {
            return Ok(None);
        }
        let Some(secret) = self.input.secret else {
            return Ok(None);
        };
        let Some(held) = self
            .mine
            .iter()
            .find(|c| secret.holds(&c.key_id, c.hint.as_deref()))
        else {
            return Ok(None);
        };
        let mut status = self.completed_status(held)?;
        status.rotate_token = self
            .status
            .rotate_token
            .clone()
            .or_else(|| self.input.rotate_annotation.map(str::to_string));
        self.step(
            CredentialAction::UpdateStatus,
            status,
            CredentialReason::Adopted,
        )
        .map(Some)
    }

    fn remove_orphan(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        let pending_nonce = self.status.pending.as_ref().map(|p| p.nonce.as_str());
        let previous_key = self.status.previous.as_ref().map(|p| p.key_id.as_str());
        let orphan = self.mine.iter().find(|c| {
            let key = Some(c.key_id.as_str());
            key != self.status.key_id.as_deref()
                && key != previous_key
                && c.marker().map(|m| m.nonce) != pending_nonce
        });
        match orphan {
            Some(orphan) => self
                .step(
                    CredentialAction::RemovePassword {
                        key_id: orphan.key_id.clone(),
                    },
                    self.status.clone(),
                    CredentialReason::RemoveOrphan,
                )
                .map(Some),
            None => Ok(None),
        }
    }

    fn retire_previous(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        let Some(previous) = &self.status.previous else {
            return Ok(None);
        };
        let mut status = self.status.clone();
        status.previous = None;
        if self.in_graph(&previous.key_id).is_none() {
            return self
                .step(
                    CredentialAction::UpdateStatus,
                    status,
                    CredentialReason::PreviousGone,
                )
                .map(Some);
        }
        if self.parse("previous.revokeAt", &previous.revoke_at)? <= self.input.now {
            return self
                .step(
                    CredentialAction::RemovePassword {
                        key_id: previous.key_id.clone(),
                    },
                    status,
                    CredentialReason::RevokePrevious,
                )
                .map(Some);
        }
        Ok(None)
    }

    /// Why the current credential must be replaced now, if it must; or a wait while Graph may
    /// still be catching up with a credential created moments ago.
    fn rotation_trigger(&self) -> Result<Result<CredentialReason, Timestamp>, CredentialError> {
        let Some(key_id) = self.status.key_id.as_deref() else {
            return Ok(Ok(CredentialReason::Initial));
        };
        let Some(current) = self.in_graph(key_id) else {
            if let Some(created_at) = &self.status.created_at {
                let deadline = self.add(self.parse("createdAt", created_at)?, REPLICATION_GRACE)?;
                if self.input.now < deadline {
                    return Ok(Err(
                        deadline.min(self.add(self.input.now, REPLICATION_POLL)?)
                    ));
                }
            }
            return Ok(Ok(CredentialReason::CredentialMissing));
        };
        let Some(secret) = self.input.secret else {
            return Ok(Ok(CredentialReason::SecretDeleted));
        };
        if !secret.holds(&current.key_id, current.hint.as_deref()) {
            return Ok(Ok(CredentialReason::SecretEdited));
        }
        if let Some(token) = self.input.rotate_annotation
            && self.status.rotate_token.as_deref() != Some(token)
        {
            return Ok(Ok(CredentialReason::RotateAnnotation));
        }
        let renew_at = self.add(current.end, -self.input.spec.renew_before.as_signed())?;
        if self.input.now >= renew_at {
            return Ok(Ok(CredentialReason::RotationDue));
        }
        Ok(Err(renew_at))
    }

    fn start_rotation_if_due(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        match self.rotation_trigger()? {
            Ok(reason) => {
                let nonce = self.input.fresh_nonce.to_string();
                let mut status = self.status.clone();
                status.pending = Some(PendingRotation {
                    nonce: nonce.clone(),
                    since: format_timestamp(self.input.now),
                });
                if let Some(token) = self.input.rotate_annotation {
                    // Honoured by this rotation, whatever triggered it: one rotation per value.
                    status.rotate_token = Some(token.to_string());
                }
                self.step(CredentialAction::RecordPending { nonce }, status, reason)
                    .map(Some)
            }
            Err(_) => Ok(None),
        }
    }

    /// Brings expiry, hint and renewal time in line with Graph and the spec, or waits.
    fn refresh_or_idle(&self) -> Result<CredentialPlan, CredentialError> {
        let wait_until = match self.rotation_trigger()? {
            Err(t) => t,
            // start_rotation_if_due ran first; a trigger here would be a logic error, so rotate.
            Ok(_) => self.input.now,
        };
        let current = self.status.key_id.as_deref().and_then(|k| self.in_graph(k));
        let Some(current) = current else {
            // Waiting for replication of the current credential.
            return self.step(
                CredentialAction::Idle {
                    requeue_at: Some(wait_until),
                },
                self.status.clone(),
                CredentialReason::WaitingForReplication,
            );
        };
        let mut status = self.status.clone();
        let renew_at = self.add(current.end, -self.input.spec.renew_before.as_signed())?;
        let same_time = |field: &Option<String>, t: Timestamp| {
            field
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .is_some_and(|parsed| parsed == t)
        };
        if !same_time(&status.expires_at, current.end) {
            status.expires_at = Some(format_timestamp(current.end));
        }
        if !same_time(&status.renew_at, renew_at) {
            status.renew_at = Some(format_timestamp(renew_at));
        }
        if current.hint.is_some() && status.hint != current.hint {
            status.hint = current.hint.clone();
        }
        if status != self.status {
            return self.step(
                CredentialAction::UpdateStatus,
                status,
                CredentialReason::StatusRefreshed,
            );
        }
        let revoke_at = match &self.status.previous {
            Some(previous) => Some(self.parse("previous.revokeAt", &previous.revoke_at)?),
            None => None,
        };
        let requeue_at = revoke_at.map_or(wait_until, |revoke_at| revoke_at.min(wait_until));
        self.step(
            CredentialAction::Idle {
                requeue_at: Some(requeue_at),
            },
            status,
            CredentialReason::UpToDate,
        )
    }
}
