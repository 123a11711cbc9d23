//! The password-credential rotation state machine: given what is declared, what status says and
//! what Graph and the Secret hold, the one next step. Pure: the driver ([`super::driver`]) executes
//! the step, persists the returned status, observes again and asks again, so any crash between two
//! steps leaves a state that this function knows how to finish.
//!
//! Three rules hold for every step it returns:
//! - a credential is removed only if its marker proves it is this resource's (see
//!   [`ManagedMarker`]): never a credential of another resource, never one made by hand;
//! - a credential that the Secret names (its `keyId`) is never removed;
//! - every previous credential keeps its own revoke time: a rotation inside the overlap of an
//!   earlier one adds to the list and never shortens an earlier window. Only a handover
//!   confirmation (its consumers say they use the current credential, see
//!   [`RotationInput::handover_confirmation`]) shortens them, to the confirmation plus a safety
//!   delay, and it never lengthens one.

use jiff::{SignedDuration, Timestamp};

use super::secret::{ObservedSecret, hint_of};
use crate::api::Text;
use crate::api::appregistration::{
    HandoverConfirmation, PasswordCredentialSpec, PasswordCredentialStatus, PendingRotation,
    PreviousCredential,
};
use crate::api::duration::Overlap;
use crate::graph::SecretString;

/// First part of the `displayName` of every credential this operator creates:
/// `entra-operator:<resource UID>:<secretName>:<nonce>`. Anything else is someone else's
/// credential.
pub const MARKER_PREFIX: &str = "entra-operator";

/// How long a credential may be missing from Graph reads right after it was created before the
/// operator believes it is gone: Graph is eventually consistent, and rotating because of a stale
/// read would replace a Secret that works.
pub const REPLICATION_GRACE: SignedDuration = SignedDuration::from_secs(120);

/// How often to look again while waiting for Graph to show a credential.
pub const REPLICATION_POLL: SignedDuration = SignedDuration::from_secs(10);

/// The `displayName` of a credential created for the resource with UID `owner_uid`, for
/// `secret_name`, in the rotation marked `nonce`.
pub fn managed_display_name(owner_uid: &str, secret_name: &str, nonce: &str) -> String {
    format!("{MARKER_PREFIX}:{owner_uid}:{secret_name}:{nonce}")
}

/// The parts of a managed credential's `displayName`.
///
/// Two forms are recognised:
/// - `entra-operator:<uid>:<secretName>:<nonce>`, written by this version: the UID of the
///   AppRegistration (or BankClient child) proves which resource made it;
/// - `entra-operator:<secretName>:<nonce>` (`owner_uid: None`), written before the UID was part
///   of the marker. Such a *legacy* credential is still used, completed and rotated away from like
///   any other of this Secret's, but since its marker cannot tell two resources apart it is removed
///   only when this resource's status names it (as current, previous or pending): a legacy
///   credential that nothing names is left alone. Legacy credentials disappear with the first
///   rotation after the upgrade plus its overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedMarker<'a> {
    pub owner_uid: Option<&'a str>,
    pub secret_name: &'a str,
    pub nonce: &'a str,
}

impl ManagedMarker<'_> {
    /// Whether the marker names the resource with this UID (legacy markers name nobody).
    pub fn is_owned_by(&self, owner_uid: &str) -> bool {
        self.owner_uid == Some(owner_uid)
    }
}

/// Parses a marker (both forms, see [`ManagedMarker`]); `None` for credentials this operator did
/// not create. UIDs, Secret names and nonces cannot contain `:`.
pub fn parse_managed_display_name(display_name: &str) -> Option<ManagedMarker<'_>> {
    let rest = display_name
        .strip_prefix(MARKER_PREFIX)?
        .strip_prefix(':')?;
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts[..] {
        [secret_name, nonce] => Some(ManagedMarker {
            owner_uid: None,
            secret_name,
            nonce,
        }),
        [owner_uid, secret_name, nonce] => Some(ManagedMarker {
            owner_uid: Some(owner_uid),
            secret_name,
            nonce,
        }),
        _ => None,
    }
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
    pub value: SecretString,
}

impl AddedPassword {
    /// As Graph will list it once the write has replicated.
    pub fn observed(&self) -> ObservedPassword {
        ObservedPassword {
            key_id: self.key_id.clone(),
            display_name: Some(self.display_name.clone()),
            hint: self
                .hint
                .clone()
                .or_else(|| Some(hint_of(self.value.expose()))),
            start: self.start,
            end: self.end,
        }
    }
}

/// Everything the state machine looks at for one password.
#[derive(Clone, Copy, Debug)]
pub struct RotationInput<'a> {
    /// The declared password; for a password no longer declared (see [`plan_retired_password`]),
    /// its `secretName` and the overlap its credentials get.
    pub spec: &'a PasswordCredentialSpec,
    /// `metadata.uid` of the resource: written into every new credential's marker, and required
    /// in a marker before a credential is removed.
    pub owner_uid: &'a str,
    /// The status entry with the same `secretName`, as last persisted.
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
    /// The `entra.bookme.io/handover-confirmed` annotation: the key ID of the credential its
    /// consumers confirm they use. When it names the current credential (and the Secret holds
    /// it), every previous credential is revoked no later than `confirm_delay` after the
    /// confirmation was first seen; a value naming anything else is ignored.
    pub handover_confirmation: Option<&'a str>,
    /// The safety delay between a confirmation and the revocation of the previous credentials.
    pub confirm_delay: SignedDuration,
}

/// The one next step for a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialAction {
    /// Nothing to do; call again at `requeue_at` (the earliest of renewal and revocation).
    Idle { requeue_at: Option<Timestamp> },
    /// Persist the plan's status, which records a rotation with this nonce. Must land before the
    /// `addPassword` that follows (write-ahead).
    RecordPending { nonce: String },
    /// `POST /applications/{id}/addPassword` with this `displayName` and `endDateTime`, and no
    /// `startDateTime`: Graph starts the credential on its own clock, so a fast operator clock
    /// cannot make a secret that is not valid yet. Keep the response in memory and pass it as
    /// [`RotationInput::added`] to the next call.
    AddPassword {
        display_name: String,
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
    /// The password is no longer declared and the overlap of the credential its Secret still
    /// names is over: delete the Secret (this resource's own), so that the credential can then be
    /// revoked without revoking what a Secret holds.
    DeleteSecret,
    /// The password is no longer declared and nothing of it is left: persist status without its
    /// entry.
    ForgetEntry,
}

impl CredentialAction {
    /// Whether the step writes to Graph or the Secret (as opposed to status only, or nothing).
    pub fn writes_outside_status(&self) -> bool {
        matches!(
            self,
            CredentialAction::AddPassword { .. }
                | CredentialAction::WriteSecret { .. }
                | CredentialAction::RemovePassword { .. }
                | CredentialAction::DeleteSecret
        )
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialAction::Idle { .. } => "idle",
            CredentialAction::RecordPending { .. } => "record_pending",
            CredentialAction::AddPassword { .. } => "add_password",
            CredentialAction::WriteSecret { .. } => "write_secret",
            CredentialAction::CompleteRotation { .. } => "complete_rotation",
            CredentialAction::UpdateStatus => "update_status",
            CredentialAction::RemovePassword { .. } => "remove_password",
            CredentialAction::DeleteSecret => "delete_secret",
            CredentialAction::ForgetEntry => "forget_entry",
        }
    }
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
    /// Consumers confirmed the current credential: the previous ones are revoked after the
    /// confirmation delay instead of at the end of their overlap.
    HandoverConfirmed,
    /// A credential carrying this resource's marker for this Secret that nothing refers to (left by
    /// a crash or an interrupted rotation).
    RemoveOrphan,
    /// The previous credential is no longer in Entra; forget it.
    PreviousGone,
    /// A previous credential reached its revoke time but its marker does not prove it is this
    /// resource's (another resource's UID): it is forgotten and left in Entra.
    NotOurs,
    /// The Secret holds a credential of ours that status does not know (status was lost, restored
    /// or read before the operator's own last write): take it as current.
    Adopted,
    /// The password is no longer declared: its credentials get their overlap, then go.
    Undeclared,
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
            CredentialReason::HandoverConfirmed => "HandoverConfirmed",
            CredentialReason::RemoveOrphan => "RemoveOrphan",
            CredentialReason::PreviousGone => "PreviousGone",
            CredentialReason::NotOurs => "NotOurs",
            CredentialReason::Adopted => "Adopted",
            CredentialReason::Undeclared => "Undeclared",
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
/// rules, and [`super`] for the order of concerns.
pub fn plan_password_rotation(
    input: &RotationInput<'_>,
) -> Result<CredentialPlan, CredentialError> {
    Planner::new(input)?.plan()
}

/// Decides the one next step for a password that is no longer declared (its `secretName` was
/// removed from the spec, or its status entry outlived it): no rotation starts; the current
/// credential (or the one the Secret holds) becomes previous with `spec.overlap`, an unfinished
/// rotation's credential is removed (or kept with overlap if the Secret already holds it), every
/// previous credential is revoked at its own time, and once nothing is left the entry is
/// forgotten ([`CredentialAction::ForgetEntry`]). The Secret stays for the overlap; when it ends,
/// the Secret is deleted ([`CredentialAction::DeleteSecret`]) if it is still this resource's
/// (managed-by label and owner reference), then the credential it named is revoked. A Secret that
/// someone took over keeps its credential until that expires.
pub fn plan_retired_password(input: &RotationInput<'_>) -> Result<CredentialPlan, CredentialError> {
    Planner::new(input)?.plan_retired()
}

/// Whether a credential was made for this resource: its marker carries this UID. Only these are
/// counted as the resource's own; legacy markers (no UID) are counted as its own too (see
/// [`ManagedMarker`]).
fn counts_as_own(c: &ObservedPassword, owner_uid: &str) -> bool {
    c.marker()
        .is_some_and(|m| m.owner_uid.is_none() || m.is_owned_by(owner_uid))
}

/// Credentials on the application that this resource did not create: made by hand, by another
/// tool, or by another resource (another UID in the marker). Reported, never touched.
pub fn count_unmanaged(graph: &[ObservedPassword], owner_uid: &str) -> usize {
    graph
        .iter()
        .filter(|c| !counts_as_own(c, owner_uid))
        .count()
}

/// Secret names that this resource's credentials (UID in the marker) are made for but that are
/// not declared: each gets a status entry planned by [`plan_retired_password`].
pub fn undeclared_secret_names<'a>(
    owner_uid: &str,
    declared_secret_names: &[&str],
    graph: &'a [ObservedPassword],
) -> Vec<&'a str> {
    let mut names: Vec<&str> = graph
        .iter()
        .filter_map(|c| c.marker())
        .filter(|m| m.is_owned_by(owner_uid) && !declared_secret_names.contains(&m.secret_name))
        .map(|m| m.secret_name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
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
    /// Credentials carrying a marker for this Secret that is this resource's or legacy.
    mine: Vec<&'a ObservedPassword>,
}

impl<'a> Planner<'a> {
    fn new(input: &'a RotationInput<'a>) -> Result<Self, CredentialError> {
        let secret_name = &input.spec.secret_name;
        let status = match input.status {
            Some(status) if &status.secret_name != secret_name => {
                return Err(CredentialError::SecretNameMismatch {
                    spec: secret_name.to_string(),
                    status: status.secret_name.to_string(),
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
            .filter(|c| {
                c.marker().is_some_and(|m| {
                    m.secret_name == *secret_name
                        && (m.owner_uid.is_none() || m.is_owned_by(input.owner_uid))
                })
            })
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

    fn is_previous(&self, key_id: &str) -> bool {
        self.status.previous.iter().any(|p| p.key_id == key_id)
    }

    /// Whether the Secret names this credential (its `keyId` key), whatever its value.
    fn secret_names(&self, key_id: &str) -> bool {
        self.input
            .secret
            .is_some_and(|s| s.key_id.as_deref() == Some(key_id))
    }

    /// Whether this step may remove the credential: never one the Secret names; one whose marker
    /// carries this resource's UID; a legacy one only if status names it.
    fn removable(&self, c: &ObservedPassword) -> bool {
        if self.secret_names(&c.key_id) {
            return false;
        }
        let Some(marker) = c.marker() else {
            return false;
        };
        if marker.secret_name != self.secret_name() {
            return false;
        }
        match marker.owner_uid {
            Some(uid) => uid == self.input.owner_uid,
            None => {
                self.status.key_id.as_deref() == Some(c.key_id.as_str())
                    || self.is_previous(&c.key_id)
                    || self
                        .status
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.nonce == marker.nonce)
            }
        }
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
        if let Some(plan) = self.confirm_handover()? {
            return Ok(plan);
        }
        if let Some(pending) = &self.status.pending {
            // Nothing carries the nonce (never added, add failed, or removed after the value was
            // lost): add it now. Reusing the nonce keeps the write-ahead record valid.
            let end = self.add(self.input.now, self.input.spec.lifetime.as_signed())?;
            return self.step(
                CredentialAction::AddPassword {
                    display_name: managed_display_name(
                        self.input.owner_uid,
                        self.secret_name(),
                        &pending.nonce,
                    ),
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

    fn plan_retired(&self) -> Result<CredentialPlan, CredentialError> {
        let now = self.input.now;
        if let Some(pending) = &self.status.pending {
            let carrying: Vec<&ObservedPassword> = self
                .mine
                .iter()
                .copied()
                .filter(|c| c.marker().is_some_and(|m| m.nonce == pending.nonce))
                .collect();
            if let Some(lost) = carrying
                .iter()
                .find(|c| !self.secret_names(&c.key_id) && self.removable(c))
            {
                return self.step(
                    CredentialAction::RemovePassword {
                        key_id: lost.key_id.clone(),
                    },
                    self.status.clone(),
                    CredentialReason::RecoverLostValue,
                );
            }
            // What is left of the rotation is held by the Secret (kept below, with overlap) or
            // not ours to remove.
            let mut status = self.status.clone();
            status.pending = None;
            return self.step(
                CredentialAction::UpdateStatus,
                status,
                CredentialReason::Undeclared,
            );
        }
        // The current credential, and whatever of ours the Secret holds, get their overlap.
        let mut to_keep: Vec<&ObservedPassword> = Vec::new();
        if let Some(current) = self.status.key_id.as_deref().and_then(|k| self.in_graph(k)) {
            to_keep.push(current);
        }
        if let Some(secret) = self.input.secret
            && let Some(held) = self
                .mine
                .iter()
                .find(|c| secret.holds(&c.key_id, c.hint.as_deref()))
            && !to_keep.iter().any(|c| c.key_id == held.key_id)
        {
            to_keep.push(held);
        }
        to_keep.retain(|c| !self.is_previous(&c.key_id));
        if !to_keep.is_empty() || self.status.key_id.is_some() {
            let mut status = self.status.clone();
            for c in to_keep {
                status.previous.push(PreviousCredential {
                    key_id: c.key_id.clone(),
                    revoke_at: format_timestamp(previous_revoke_at(
                        &self.input.spec.overlap,
                        c.end,
                        now,
                    )),
                });
            }
            status.key_id = None;
            status.hint = None;
            status.expires_at = None;
            status.renew_at = None;
            status.created_at = None;
            status.handover_confirmed = None;
            return self.step(
                CredentialAction::UpdateStatus,
                status,
                CredentialReason::Undeclared,
            );
        }
        if let Some(plan) = self.remove_orphan()? {
            return Ok(plan);
        }
        if let Some(plan) = self.retire_previous()? {
            return Ok(plan);
        }
        if let Some(secret) = self.input.secret
            && secret.is_operators_for(self.input.owner_uid)
            && self.status.previous.iter().any(|p| {
                self.secret_names(&p.key_id)
                    && self
                        .parse("previous.revokeAt", &p.revoke_at)
                        .is_ok_and(|at| at <= now)
            })
        {
            return self.step(
                CredentialAction::DeleteSecret,
                self.status.clone(),
                CredentialReason::Undeclared,
            );
        }
        if self.status.previous.is_empty() {
            if self.input.status.is_none() {
                return self.step(
                    CredentialAction::Idle { requeue_at: None },
                    self.status.clone(),
                    CredentialReason::Undeclared,
                );
            }
            return self.step(
                CredentialAction::ForgetEntry,
                self.status.clone(),
                CredentialReason::Undeclared,
            );
        }
        let requeue_at = self.next_revocation()?;
        self.step(
            CredentialAction::Idle { requeue_at },
            self.status.clone(),
            CredentialReason::Undeclared,
        )
    }

    /// Steps that need the pending rotation's nonce credential: complete, write the Secret, or
    /// remove a credential whose value is lost. `None` when the rotation must (re)add.
    fn finish_pending(
        &self,
        pending: &PendingRotation,
    ) -> Result<Option<CredentialPlan>, CredentialError> {
        let carries_nonce = |display_name: &str| {
            parse_managed_display_name(display_name).is_some_and(|m| {
                m.secret_name == self.secret_name()
                    && m.nonce == pending.nonce
                    && (m.owner_uid.is_none() || m.is_owned_by(self.input.owner_uid))
            })
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
                || self.is_previous(secret_key);
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
        if let Some(lost) = carrying.iter().find(|c| self.removable(c)) {
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

    /// Status once `new` is current: the old current joins the previous credentials with its own
    /// revoke time; previous credentials still in Graph keep theirs.
    fn completed_status(
        &self,
        new: &ObservedPassword,
    ) -> Result<PasswordCredentialStatus, CredentialError> {
        let now = self.input.now;
        let spec = self.input.spec;
        let mut previous: Vec<PreviousCredential> = self
            .status
            .previous
            .iter()
            .filter(|p| p.key_id != new.key_id && self.in_graph(&p.key_id).is_some())
            .cloned()
            .collect();
        let old_current = self
            .status
            .key_id
            .as_deref()
            .filter(|key_id| *key_id != new.key_id)
            .and_then(|key_id| self.in_graph(key_id));
        if let Some(old) = old_current
            && !previous.iter().any(|p| p.key_id == old.key_id)
        {
            previous.push(PreviousCredential {
                key_id: old.key_id.clone(),
                revoke_at: format_timestamp(previous_revoke_at(&spec.overlap, old.end, now)),
            });
        }
        let renew_at = self.add(new.end, -spec.renew_before.as_signed())?;
        Ok(PasswordCredentialStatus {
            secret_name: spec.secret_name.clone(),
            key_id: Some(new.key_id.clone()),
            hint: new.hint.clone(),
            expires_at: Some(format_timestamp(new.end).into()),
            renew_at: Some(format_timestamp(renew_at).into()),
            previous,
            pending: None,
            rotate_token: self.status.rotate_token.clone(),
            created_at: Some(format_timestamp(new.start.unwrap_or(now))),
            // A confirmation names one credential; a new current one needs its own.
            handover_confirmed: None,
        })
    }

    /// The Secret holds a credential of ours that status does not know as current or previous
    /// (status lost, restored from a backup, or read before the operator's own last write): keep
    /// using it, the old current getting its overlap, rather than rotating or removing it.
    fn adopt(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        if self.status.pending.is_some() {
            return Ok(None);
        }
        let Some(secret) = self.input.secret else {
            return Ok(None);
        };
        let Some(held) = self.mine.iter().find(|c| {
            secret.holds(&c.key_id, c.hint.as_deref())
                && self.status.key_id.as_deref() != Some(c.key_id.as_str())
                && !self.is_previous(&c.key_id)
        }) else {
            return Ok(None);
        };
        let mut status = self.completed_status(held)?;
        if self.status.key_id.is_none() {
            status.rotate_token = self
                .status
                .rotate_token
                .clone()
                .or_else(|| self.input.rotate_annotation.map(str::to_string));
        }
        self.step(
            CredentialAction::UpdateStatus,
            status,
            CredentialReason::Adopted,
        )
        .map(Some)
    }

    fn remove_orphan(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        let pending_nonce = self.status.pending.as_ref().map(|p| p.nonce.as_str());
        let orphan = self.mine.iter().find(|c| {
            let owned = c
                .marker()
                .is_some_and(|m| m.is_owned_by(self.input.owner_uid));
            owned
                && Some(c.key_id.as_str()) != self.status.key_id.as_deref()
                && !self.is_previous(&c.key_id)
                && c.marker().map(|m| m.nonce) != pending_nonce
                && self.removable(c)
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

    /// Forgets previous credentials gone from Graph; revokes the first one whose time has come
    /// (forgets it without removing it if its marker is not this resource's).
    fn retire_previous(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        if self.status.previous.is_empty() {
            return Ok(None);
        }
        if self
            .status
            .previous
            .iter()
            .any(|p| self.in_graph(&p.key_id).is_none())
        {
            let mut status = self.status.clone();
            status
                .previous
                .retain(|p| self.in_graph(&p.key_id).is_some());
            return self
                .step(
                    CredentialAction::UpdateStatus,
                    status,
                    CredentialReason::PreviousGone,
                )
                .map(Some);
        }
        for previous in &self.status.previous {
            if self.parse("previous.revokeAt", &previous.revoke_at)? > self.input.now
                || self.secret_names(&previous.key_id)
            {
                continue;
            }
            let mut status = self.status.clone();
            status.previous.retain(|p| p.key_id != previous.key_id);
            let credential = self.in_graph(&previous.key_id).expect("checked above");
            let (action, reason) = if self.removable(credential) {
                (
                    CredentialAction::RemovePassword {
                        key_id: previous.key_id.clone(),
                    },
                    CredentialReason::RevokePrevious,
                )
            } else {
                (CredentialAction::UpdateStatus, CredentialReason::NotOurs)
            };
            return self.step(action, status, reason).map(Some);
        }
        Ok(None)
    }

    /// A handover confirmation naming the current credential (which the Secret holds) moves every
    /// previous credential's revoke time to the confirmation plus the delay, if that is earlier;
    /// a later one is never moved. The first sighting is recorded, so the delay runs from then and
    /// a later pass does not push it forward. A confirmation naming anything else (a previous
    /// credential, an unknown key ID) is ignored: it is stale.
    fn confirm_handover(&self) -> Result<Option<CredentialPlan>, CredentialError> {
        let Some(confirmed) = self.input.handover_confirmation else {
            return Ok(None);
        };
        if self.status.pending.is_some() || self.status.previous.is_empty() {
            return Ok(None);
        }
        let Some(current) = self
            .status
            .key_id
            .as_deref()
            .filter(|k| k.eq_ignore_ascii_case(confirmed.trim()))
            .and_then(|k| self.in_graph(k))
        else {
            return Ok(None);
        };
        // Consumers confirm what they read from the Secret: it must hold the current credential.
        if !self
            .input
            .secret
            .is_some_and(|s| s.holds(&current.key_id, current.hint.as_deref()))
        {
            return Ok(None);
        }
        let mut status = self.status.clone();
        let record = match &self.status.handover_confirmed {
            Some(c) if c.key_id == current.key_id => c.clone(),
            _ => HandoverConfirmation {
                key_id: current.key_id.clone(),
                confirmed_at: format_timestamp(self.input.now),
            },
        };
        let deadline = self.add(
            self.parse("handoverConfirmed.confirmedAt", &record.confirmed_at)?,
            self.input.confirm_delay,
        )?;
        for previous in &mut status.previous {
            if deadline < self.parse("previous.revokeAt", &previous.revoke_at)? {
                previous.revoke_at = format_timestamp(deadline);
            }
        }
        status.handover_confirmed = Some(record);
        if status == self.status {
            return Ok(None);
        }
        self.step(
            CredentialAction::UpdateStatus,
            status,
            CredentialReason::HandoverConfirmed,
        )
        .map(Some)
    }

    /// The earliest revoke time still ahead (one the Secret blocks is not waited for: the
    /// rotation that follows an edited Secret unblocks it).
    fn next_revocation(&self) -> Result<Option<Timestamp>, CredentialError> {
        let mut earliest: Option<Timestamp> = None;
        for previous in &self.status.previous {
            let at = self.parse("previous.revokeAt", &previous.revoke_at)?;
            if at <= self.input.now && self.secret_names(&previous.key_id) {
                continue;
            }
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        Ok(earliest)
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
        let same_time = |field: &Option<Text>, t: Timestamp| {
            field
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .is_some_and(|parsed| parsed == t)
        };
        if !same_time(&status.expires_at, current.end) {
            status.expires_at = Some(format_timestamp(current.end).into());
        }
        if !same_time(&status.renew_at, renew_at) {
            status.renew_at = Some(format_timestamp(renew_at).into());
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
        let requeue_at = match self.next_revocation()? {
            Some(revoke_at) => revoke_at.min(wait_until),
            None => wait_until,
        };
        self.step(
            CredentialAction::Idle {
                requeue_at: Some(requeue_at),
            },
            status,
            CredentialReason::UpToDate,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::duration::Duration;

    const SECRET: &str = "app-secret";
    const UID: &str = "0b7c6a52-0000-4000-8000-000000000001";

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(overlap: Overlap) -> PasswordCredentialSpec {
        PasswordCredentialSpec {
            secret_name: SECRET.into(),
            lifetime: Duration::from_secs(90 * 86_400),
            renew_before: Duration::from_secs(30 * 86_400),
            overlap,
        }
    }

    fn seven_days() -> Overlap {
        Overlap::For(Duration::from_secs(7 * 86_400))
    }

    fn credential(key_id: &str, display_name: &str, end: &str) -> ObservedPassword {
        ObservedPassword {
            key_id: key_id.into(),
            display_name: Some(display_name.into()),
            hint: Some(format!("{}~", &key_id[..2])),
            start: Some(t("2030-01-01T00:00:00Z")),
            end: t(end),
        }
    }

    fn managed(key_id: &str, nonce: &str, end: &str) -> ObservedPassword {
        credential(key_id, &managed_display_name(UID, SECRET, nonce), end)
    }

    fn secret_holding(c: &ObservedPassword) -> ObservedSecret {
        ObservedSecret {
            key_id: Some(c.key_id.clone()),
            value_prefix: c.hint.clone(),
            expires_at: None,
            managed_by_operator: true,
            owner_uids: vec![UID.into()],
        }
    }

    fn status_for(c: &ObservedPassword, renew_at: &str) -> PasswordCredentialStatus {
        PasswordCredentialStatus {
            secret_name: SECRET.into(),
            key_id: Some(c.key_id.clone()),
            hint: c.hint.clone(),
            expires_at: Some(c.end.to_string().into()),
            renew_at: Some(renew_at.into()),
            created_at: Some("2030-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    struct Case<'a> {
        spec: PasswordCredentialSpec,
        status: Option<PasswordCredentialStatus>,
        graph: Vec<ObservedPassword>,
        secret: Option<ObservedSecret>,
        annotation: Option<&'a str>,
        now: &'a str,
        confirmation: Option<&'a str>,
    }

    impl Case<'_> {
        fn plan(&self) -> Result<CredentialPlan, CredentialError> {
            plan_password_rotation(&RotationInput {
                spec: &self.spec,
                owner_uid: UID,
                status: self.status.as_ref(),
                graph: &self.graph,
                secret: self.secret.as_ref(),
                rotate_annotation: self.annotation,
                added: None,
                fresh_nonce: "fresh",
                now: t(self.now),
                handover_confirmation: self.confirmation,
                confirm_delay: SignedDuration::from_mins(5),
            })
        }
    }

    /// A current credential expiring 2030-04-01 (renewal 2030-03-02), held by the Secret.
    fn steady<'a>() -> Case<'a> {
        let current = managed("aa-current", "n1", "2030-04-01T00:00:00Z");
        Case {
            spec: spec(seven_days()),
            status: Some(status_for(&current, "2030-03-02T00:00:00Z")),
            secret: Some(secret_holding(&current)),
            graph: vec![
                current,
                credential("zz-portal", "made by hand", "2031-01-01T00:00:00Z"),
            ],
            annotation: None,
            now: "2030-02-01T00:00:00Z",
            confirmation: None,
        }
    }

    #[test]
    fn display_name_marks_only_our_credentials() {
        let name = managed_display_name(UID, "my-secret.v1", "abc123");
        assert_eq!(name, format!("entra-operator:{UID}:my-secret.v1:abc123"));
        let marker = parse_managed_display_name(&name).unwrap();
        assert_eq!(
            marker,
            ManagedMarker {
                owner_uid: Some(UID),
                secret_name: "my-secret.v1",
                nonce: "abc123"
            }
        );
        assert!(marker.is_owned_by(UID));
        assert!(!marker.is_owned_by("another-uid"));
        // The form written before the UID was part of the marker is still recognised.
        let legacy = parse_managed_display_name("entra-operator:my-secret.v1:abc123").unwrap();
        assert_eq!(
            legacy,
            ManagedMarker {
                owner_uid: None,
                secret_name: "my-secret.v1",
                nonce: "abc123"
            }
        );
        assert!(!legacy.is_owned_by(UID), "a legacy marker proves nothing");
        for other in [
            "entra-operator",
            "entra-operator:",
            "entra-operator:x",
            "entra-operator:x:",
            "entra-operator::n",
            "entra-operator:u::n",
            "entra-operator:u:s:n:extra",
            "entra-operatorx:s:n",
            "Password uploaded on Tue",
            "",
        ] {
            assert_eq!(parse_managed_display_name(other), None, "{other:?}");
        }
        assert_eq!(new_nonce().len(), 32);
        assert_ne!(new_nonce(), new_nonce());
    }

    #[test]
    fn steady_state_waits_until_renewal() {
        let plan = steady().plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::UpToDate);
        assert_eq!(
            plan.action,
            CredentialAction::Idle {
                requeue_at: Some(t("2030-03-02T00:00:00Z"))
            }
        );
        assert_eq!(Some(plan.status), steady().status);
    }

    #[test]
    fn requeue_is_the_earlier_of_renewal_and_revocation() {
        for (revoke_at, expected) in [
            ("2030-02-05T00:00:00Z", "2030-02-05T00:00:00Z"),
            ("2030-03-10T00:00:00Z", "2030-03-02T00:00:00Z"),
        ] {
            let mut case = steady();
            case.graph
                .push(managed("bb-previous", "n0", "2030-03-20T00:00:00Z"));
            case.status.as_mut().unwrap().previous = vec![PreviousCredential {
                key_id: "bb-previous".into(),
                revoke_at: revoke_at.into(),
            }];
            let plan = case.plan().unwrap();
            assert_eq!(
                plan.action,
                CredentialAction::Idle {
                    requeue_at: Some(t(expected))
                },
                "revoke at {revoke_at}"
            );
        }
    }

    /// An edit to a steady case.
    type Change = dyn Fn(&mut Case);

    #[test]
    fn each_trigger_starts_a_rotation_with_its_reason() {
        let cases: Vec<(&str, Box<Change>, CredentialReason)> = vec![
            (
                "no status",
                Box::new(|c: &mut Case| {
                    c.status = None;
                    c.secret = None;
                    c.graph.retain(|g| g.marker().is_none());
                }),
                CredentialReason::Initial,
            ),
            (
                "renewal time reached",
                Box::new(|c: &mut Case| c.now = "2030-03-02T00:00:00Z"),
                CredentialReason::RotationDue,
            ),
            (
                "secret deleted",
                Box::new(|c: &mut Case| c.secret = None),
                CredentialReason::SecretDeleted,
            ),
            (
                "value edited",
                Box::new(|c: &mut Case| {
                    c.secret.as_mut().unwrap().value_prefix = Some("xyz".into())
                }),
                CredentialReason::SecretEdited,
            ),
            (
                "value emptied",
                Box::new(|c: &mut Case| c.secret.as_mut().unwrap().value_prefix = None),
                CredentialReason::SecretEdited,
            ),
            (
                "keyId edited",
                Box::new(|c: &mut Case| c.secret.as_mut().unwrap().key_id = Some("other".into())),
                CredentialReason::SecretEdited,
            ),
            (
                "new annotation value",
                Box::new(|c: &mut Case| c.annotation = Some("please")),
                CredentialReason::RotateAnnotation,
            ),
            (
                "current deleted in the portal",
                Box::new(|c: &mut Case| c.graph.retain(|g| g.key_id != "aa-current")),
                CredentialReason::CredentialMissing,
            ),
        ];
        for (name, change, reason) in cases {
            let mut case = steady();
            change(&mut case);
            let plan = case.plan().unwrap();
            assert_eq!(plan.reason, reason, "{name}");
            assert_eq!(
                plan.action,
                CredentialAction::RecordPending {
                    nonce: "fresh".into()
                },
                "{name}"
            );
            let pending = plan.status.pending.expect("pending recorded");
            assert_eq!(pending.nonce, "fresh");
            assert_eq!(t(&pending.since), t(case.now));
            assert!(reason.starts_rotation());
        }
    }

    #[test]
    fn honoured_annotation_value_does_not_rotate() {
        let mut case = steady();
        case.annotation = Some("please");
        case.status.as_mut().unwrap().rotate_token = Some("please".into());
        assert_eq!(case.plan().unwrap().reason, CredentialReason::UpToDate);
        let mut started = steady();
        started.annotation = Some("please");
        let plan = started.plan().unwrap();
        assert_eq!(plan.status.rotate_token.as_deref(), Some("please"));
    }

    #[test]
    fn pending_rotation_adds_with_the_nonce_then_completes_once_the_secret_holds_it() {
        let mut case = steady();
        case.now = "2030-03-03T00:00:00Z";
        case.status.as_mut().unwrap().pending = Some(PendingRotation {
            nonce: "n2".into(),
            since: "2030-03-03T00:00:00Z".into(),
        });
        let plan = case.plan().unwrap();
        assert_eq!(
            plan.action,
            CredentialAction::AddPassword {
                display_name: format!("entra-operator:{UID}:app-secret:n2"),
                end: t("2030-06-01T00:00:00Z"),
            }
        );

        let new = managed("cc-new", "n2", "2030-06-01T00:00:00Z");
        case.graph.push(new.clone());
        case.secret = Some(secret_holding(&new));
        let plan = case.plan().unwrap();
        assert_eq!(
            plan.action,
            CredentialAction::CompleteRotation {
                key_id: "cc-new".into()
            }
        );
        let status = plan.status;
        assert_eq!(status.pending, None);
        assert_eq!(status.key_id.as_deref(), Some("cc-new"));
        assert_eq!(status.hint.as_deref(), Some("cc~"));
        assert_eq!(
            t(status.expires_at.as_deref().unwrap()),
            t("2030-06-01T00:00:00Z")
        );
        assert_eq!(
            t(status.renew_at.as_deref().unwrap()),
            t("2030-05-02T00:00:00Z")
        );
        let [previous] = &status.previous[..] else {
            panic!("one previous: {:?}", status.previous)
        };
        assert_eq!(previous.key_id, "aa-current");
        assert_eq!(t(&previous.revoke_at), t("2030-03-10T00:00:00Z"));
    }

    #[test]
    fn pending_value_lost_removes_the_credential_carrying_the_nonce() {
        let mut case = steady();
        case.status.as_mut().unwrap().pending = Some(PendingRotation {
            nonce: "n2".into(),
            since: "2030-02-01T00:00:00Z".into(),
        });
        case.graph
            .push(managed("cc-new", "n2", "2030-05-01T00:00:00Z"));
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::RecoverLostValue);
        assert_eq!(
            plan.action,
            CredentialAction::RemovePassword {
                key_id: "cc-new".into()
            }
        );
        assert_eq!(plan.status, case.status.unwrap(), "still pending");
    }

    #[test]
    fn added_value_in_memory_is_written_to_the_secret_without_leaking() {
        let mut case = steady();
        case.status.as_mut().unwrap().pending = Some(PendingRotation {
            nonce: "n2".into(),
            since: "2030-02-01T00:00:00Z".into(),
        });
        let added = AddedPassword {
            key_id: "cc-new".into(),
            display_name: managed_display_name(UID, SECRET, "n2"),
            hint: Some("cc~".into()),
            start: Some(t("2030-02-01T00:00:00Z")),
            end: t("2030-05-01T00:00:00Z"),
            value: SecretString::new("cc~the-value-itself"),
        };
        let plan = plan_password_rotation(&RotationInput {
            spec: &case.spec,
            owner_uid: UID,
            status: case.status.as_ref(),
            graph: &case.graph,
            secret: case.secret.as_ref(),
            rotate_annotation: None,
            added: Some(&added),
            fresh_nonce: "fresh",
            now: t(case.now),
            handover_confirmation: None,
            confirm_delay: SignedDuration::from_mins(5),
        })
        .unwrap();
        assert_eq!(
            plan.action,
            CredentialAction::WriteSecret {
                credential: added.clone()
            }
        );
        assert!(!format!("{plan:?}").contains("the-value-itself"));

        // An addPassword response for another rotation (another nonce) is not written.
        let stale = AddedPassword {
            display_name: managed_display_name(UID, SECRET, "n1"),
            ..added
        };
        let plan = plan_password_rotation(&RotationInput {
            spec: &case.spec,
            owner_uid: UID,
            status: case.status.as_ref(),
            graph: &case.graph,
            secret: case.secret.as_ref(),
            rotate_annotation: None,
            added: Some(&stale),
            fresh_nonce: "fresh",
            now: t(case.now),
            handover_confirmation: None,
            confirm_delay: SignedDuration::from_mins(5),
        })
        .unwrap();
        assert!(matches!(plan.action, CredentialAction::AddPassword { .. }));
    }

    #[test]
    fn unmanaged_and_other_secrets_credentials_are_left_alone_and_counted() {
        let mut case = steady();
        case.graph.push(credential(
            "yy-other",
            &managed_display_name(UID, "another-secret", "n9"),
            "2030-05-01T00:00:00Z",
        ));
        case.graph.push(ObservedPassword {
            display_name: None,
            ..credential("xx-nameless", "", "2030-05-01T00:00:00Z")
        });
        assert_eq!(case.plan().unwrap().reason, CredentialReason::UpToDate);
        assert_eq!(count_unmanaged(&case.graph, UID), 2);
        assert_eq!(
            undeclared_secret_names(UID, &[SECRET], &case.graph),
            vec!["another-secret"]
        );
        assert!(undeclared_secret_names(UID, &[SECRET, "another-secret"], &case.graph).is_empty());
        // Another resource's credentials are not ours: counted as unmanaged, never undeclared.
        assert_eq!(count_unmanaged(&case.graph, "another-uid"), 4);
        assert!(undeclared_secret_names("another-uid", &[], &case.graph).is_empty());
    }

    #[test]
    fn orphan_of_this_secret_is_removed() {
        let mut case = steady();
        case.graph
            .push(managed("dd-orphan", "crashed", "2030-05-01T00:00:00Z"));
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::RemoveOrphan);
        assert_eq!(
            plan.action,
            CredentialAction::RemovePassword {
                key_id: "dd-orphan".into()
            }
        );
    }

    #[test]
    fn previous_is_revoked_at_its_time_and_forgotten_when_gone() {
        let mut case = steady();
        case.graph
            .push(managed("bb-previous", "n0", "2030-03-20T00:00:00Z"));
        case.status.as_mut().unwrap().previous = vec![PreviousCredential {
            key_id: "bb-previous".into(),
            revoke_at: "2030-02-01T00:00:00Z".into(),
        }];
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::RevokePrevious);
        assert_eq!(
            plan.action,
            CredentialAction::RemovePassword {
                key_id: "bb-previous".into()
            }
        );
        assert!(plan.status.previous.is_empty());

        case.graph.retain(|c| c.key_id != "bb-previous");
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::PreviousGone);
        assert_eq!(plan.action, CredentialAction::UpdateStatus);
        assert!(plan.status.previous.is_empty());
    }

    #[test]
    fn revoke_time_follows_overlap_and_never_passes_the_old_expiry() {
        let rotated = t("2030-03-02T00:00:00Z");
        let expiry = t("2030-04-01T00:00:00Z");
        let cases = [
            (seven_days(), "2030-03-09T00:00:00Z"),
            (
                Overlap::For(Duration::from_secs(60 * 86_400)),
                "2030-04-01T00:00:00Z",
            ),
            (Overlap::UntilExpiry, "2030-04-01T00:00:00Z"),
            (
                Overlap::For(Duration::from_secs(30)),
                "2030-03-02T00:00:30Z",
            ),
        ];
        for (overlap, expected) in cases {
            assert_eq!(
                previous_revoke_at(&overlap, expiry, rotated),
                t(expected),
                "{overlap}"
            );
        }
        // Rotated after the old credential already expired (operator was down): revoke at once.
        assert_eq!(
            previous_revoke_at(&seven_days(), expiry, t("2030-05-01T00:00:00Z")),
            expiry
        );
    }

    #[test]
    fn until_expiry_keeps_the_previous_until_it_expires() {
        let mut case = steady();
        case.spec = spec(Overlap::UntilExpiry);
        case.now = "2030-03-03T00:00:00Z";
        case.status.as_mut().unwrap().pending = Some(PendingRotation {
            nonce: "n2".into(),
            since: "2030-03-03T00:00:00Z".into(),
        });
        let new = managed("cc-new", "n2", "2030-06-01T00:00:00Z");
        case.graph.push(new.clone());
        case.secret = Some(secret_holding(&new));
        let previous = case.plan().unwrap().status.previous[0].clone();
        assert_eq!(t(&previous.revoke_at), t("2030-04-01T00:00:00Z"));
    }

    /// `steady()` after a rotation: "bb-previous" (expiring 2030-03-20) is in overlap until
    /// `revoke_at`; "aa-current" is current and in the Secret; now is 2030-02-01.
    fn in_handover<'a>(revoke_at: &str) -> Case<'a> {
        let mut case = steady();
        case.spec = spec(Overlap::UntilExpiry);
        case.graph
            .push(managed("bb-previous", "n0", "2030-03-20T00:00:00Z"));
        case.status.as_mut().unwrap().previous = vec![PreviousCredential {
            key_id: "bb-previous".into(),
            revoke_at: revoke_at.into(),
        }];
        case
    }

    #[test]
    fn a_confirmation_of_the_current_credential_shortens_the_revoke_time_and_never_lengthens_it() {
        // (case, confirmation, revokeAt before, already recorded confirmation, now)
        //   -> (reason, revokeAt after)
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<(&'a str, &'a str)>,
            &'a str,
            (CredentialReason, &'a str),
        );
        let cases: [Row; 9] = [
            (
                "confirmed: revoked 5 minutes after the confirmation",
                Some("aa-current"),
                "2030-03-20T00:00:00Z",
                None,
                "2030-02-01T00:00:00Z",
                (CredentialReason::HandoverConfirmed, "2030-02-01T00:05:00Z"),
            ),
            (
                "key ID compared without case and surrounding blanks",
                Some(" AA-CURRENT "),
                "2030-03-20T00:00:00Z",
                None,
                "2030-02-01T00:00:00Z",
                (CredentialReason::HandoverConfirmed, "2030-02-01T00:05:00Z"),
            ),
            (
                "a revoke time already earlier is kept (never lengthened)",
                Some("aa-current"),
                "2030-02-01T00:02:00Z",
                None,
                "2030-02-01T00:00:00Z",
                (CredentialReason::HandoverConfirmed, "2030-02-01T00:02:00Z"),
            ),
            (
                "the recorded confirmation keeps its time: a later pass does not push it",
                Some("aa-current"),
                "2030-02-01T00:05:00Z",
                Some(("aa-current", "2030-02-01T00:00:00Z")),
                "2030-02-01T00:03:00Z",
                (CredentialReason::UpToDate, "2030-02-01T00:05:00Z"),
            ),
            (
                "stale: names the previous credential",
                Some("bb-previous"),
                "2030-03-20T00:00:00Z",
                None,
                "2030-02-01T00:00:00Z",
                (CredentialReason::UpToDate, "2030-03-20T00:00:00Z"),
            ),
            (
                "stale: names an unknown key",
                Some("zz-portal"),
                "2030-03-20T00:00:00Z",
                None,
                "2030-02-01T00:00:00Z",
                (CredentialReason::UpToDate, "2030-03-20T00:00:00Z"),
            ),
            (
                "a confirmation recorded for another key does not count for this one",
                Some("bb-previous"),
                "2030-03-20T00:00:00Z",
                Some(("bb-previous", "2030-01-01T00:00:00Z")),
                "2030-02-01T00:00:00Z",
                (CredentialReason::UpToDate, "2030-03-20T00:00:00Z"),
            ),
            (
                "no confirmation",
                None,
                "2030-03-20T00:00:00Z",
                None,
                "2030-02-01T00:00:00Z",
                (CredentialReason::UpToDate, "2030-03-20T00:00:00Z"),
            ),
            (
                "the shortened time has come: the previous credential is revoked",
                Some("aa-current"),
                "2030-02-01T00:05:00Z",
                Some(("aa-current", "2030-02-01T00:00:00Z")),
                "2030-02-01T00:05:00Z",
                (CredentialReason::RevokePrevious, "-"),
            ),
        ];
        for (name, confirmation, revoke_at, recorded, now, (reason, after)) in cases {
            let mut case = in_handover(revoke_at);
            case.confirmation = confirmation;
            case.now = now;
            case.status.as_mut().unwrap().handover_confirmed =
                recorded.map(|(key_id, at)| HandoverConfirmation {
                    key_id: key_id.into(),
                    confirmed_at: at.into(),
                });
            let plan = case.plan().unwrap();
            assert_eq!(plan.reason, reason, "{name}");
            match reason {
                CredentialReason::RevokePrevious => {
                    assert_eq!(
                        plan.action,
                        CredentialAction::RemovePassword {
                            key_id: "bb-previous".into()
                        },
                        "{name}"
                    );
                    continue;
                }
                CredentialReason::HandoverConfirmed => {
                    assert_eq!(plan.action, CredentialAction::UpdateStatus, "{name}");
                    assert_eq!(
                        plan.status.handover_confirmed,
                        Some(HandoverConfirmation {
                            key_id: "aa-current".into(),
                            confirmed_at: t(now).to_string(),
                        }),
                        "{name}"
                    );
                }
                _ => {
                    assert!(
                        matches!(plan.action, CredentialAction::Idle { .. }),
                        "{name}"
                    );
                    assert_eq!(
                        plan.status.handover_confirmed,
                        case.status.as_ref().unwrap().handover_confirmed,
                        "{name}: nothing recorded"
                    );
                }
            }
            assert_eq!(
                t(&plan.status.previous[0].revoke_at),
                t(after),
                "{name}: revokeAt"
            );
            assert!(
                t(&plan.status.previous[0].revoke_at) <= t(revoke_at),
                "{name}: never lengthened"
            );
        }
    }

    #[test]
    fn a_confirmation_waits_for_the_revoke_time_then_never_revokes_what_the_secret_holds() {
        // Confirmed at 00:00: idle until 00:05, the shortened revoke time.
        let mut case = in_handover("2030-03-20T00:00:00Z");
        case.confirmation = Some("aa-current");
        let plan = case.plan().unwrap();
        case.status = Some(plan.status);
        assert_eq!(
            case.plan().unwrap().action,
            CredentialAction::Idle {
                requeue_at: Some(t("2030-02-01T00:05:00Z"))
            }
        );
        // The Secret was put back to the previous credential by hand: the confirmation no longer
        // holds (the Secret does not hold the confirmed credential) and the previous one, which
        // the Secret names, is not revoked.
        let mut case = in_handover("2030-03-20T00:00:00Z");
        case.confirmation = Some("aa-current");
        let previous = case.graph.last().unwrap().clone();
        case.secret = Some(secret_holding(&previous));
        let plan = case.plan().unwrap();
        assert_ne!(plan.reason, CredentialReason::HandoverConfirmed);
        assert!(!matches!(
            plan.action,
            CredentialAction::RemovePassword { ref key_id } if key_id == "bb-previous"
        ));
        // A pending rotation: the confirmation waits for it (and will then be stale).
        let mut case = in_handover("2030-03-20T00:00:00Z");
        case.confirmation = Some("aa-current");
        case.status.as_mut().unwrap().pending = Some(PendingRotation {
            nonce: "n9".into(),
            since: "2030-02-01T00:00:00Z".into(),
        });
        assert_ne!(
            case.plan().unwrap().reason,
            CredentialReason::HandoverConfirmed
        );
    }

    #[test]
    fn a_rotation_clears_the_confirmation_of_the_old_credential() {
        let mut case = in_handover("2030-03-20T00:00:00Z");
        case.status.as_mut().unwrap().handover_confirmed = Some(HandoverConfirmation {
            key_id: "aa-current".into(),
            confirmed_at: "2030-02-01T00:00:00Z".into(),
        });
        case.status.as_mut().unwrap().pending = Some(PendingRotation {
            nonce: "n2".into(),
            since: "2030-02-01T00:00:00Z".into(),
        });
        let new = managed("cc-new", "n2", "2030-06-01T00:00:00Z");
        case.graph.push(new.clone());
        case.secret = Some(secret_holding(&new));
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::RotationComplete);
        assert_eq!(plan.status.handover_confirmed, None);
        // The old current joins the previous ones with its full overlap.
        assert_eq!(plan.status.previous.len(), 2);
    }

    #[test]
    fn changed_renew_before_refreshes_status_without_rotating() {
        let mut case = steady();
        case.spec.renew_before = Duration::from_secs(10 * 86_400);
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::StatusRefreshed);
        assert_eq!(plan.action, CredentialAction::UpdateStatus);
        assert_eq!(
            t(plan.status.renew_at.as_deref().unwrap()),
            t("2030-03-22T00:00:00Z")
        );
        // Equal instants written differently are not a change.
        let mut case = steady();
        case.status.as_mut().unwrap().renew_at = Some("2030-03-02T01:00:00+01:00".into());
        assert_eq!(case.plan().unwrap().reason, CredentialReason::UpToDate);
    }

    #[test]
    fn current_missing_right_after_creation_waits_for_replication() {
        let mut case = steady();
        case.graph.retain(|g| g.key_id != "aa-current");
        case.status.as_mut().unwrap().created_at = Some("2030-02-01T00:00:00Z".into());
        case.now = "2030-02-01T00:00:30Z";
        let plan = case.plan().unwrap();
        assert_eq!(plan.reason, CredentialReason::WaitingForReplication);
        assert_eq!(
            plan.action,
            CredentialAction::Idle {
                requeue_at: Some(t("2030-02-01T00:00:40Z"))
            }
        );
    }

    #[test]
    fn unreadable_status_is_an_error_naming_the_field() {
        let mut case = steady();
        case.graph
            .push(managed("bb-previous", "n0", "2030-03-20T00:00:00Z"));
        case.status.as_mut().unwrap().previous = vec![PreviousCredential {
            key_id: "bb-previous".into(),
            revoke_at: "next tuesday".into(),
        }];
        let err = case.plan().unwrap_err();
        assert!(err.to_string().contains("previous.revokeAt"), "{err}");

        let mut case = steady();
        case.status.as_mut().unwrap().secret_name = "other".into();
        assert!(matches!(
            case.plan(),
            Err(CredentialError::SecretNameMismatch { .. })
        ));
    }

    #[test]
    fn reasons_have_stable_names() {
        assert_eq!(
            CredentialReason::RecoverLostValue.as_str(),
            "RecoverLostValue"
        );
        assert_eq!(CredentialReason::SecretEdited.to_string(), "SecretEdited");
        assert!(!CredentialReason::RevokePrevious.starts_rotation());
    }
}
