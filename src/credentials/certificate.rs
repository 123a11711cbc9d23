//! The certificate-credential state machine: given what is declared, what status says and what
//! Graph and the Secret hold, the one next step. Pure, like the password machine
//! ([`super::rotation`]); [`super::drive_certificate`] executes each step, persists the returned
//! status and asks again.
//!
//! A certificate differs from a client secret in one way that makes it simpler: the operator makes
//! the key itself, so nothing is ever known only to Graph. The write-ahead order of a rotation of a
//! generated certificate is:
//! 1. generate the key pair and certificate in memory;
//! 2. record the new thumbprint as `pending` in status ([`CertificateAction::RecordPending`]);
//! 3. write key and certificate to the Secret's staging keys ([`CertificateAction::StageSecret`]),
//!    the current `tls.crt`/`tls.key` untouched;
//! 4. upload the certificate ([`CertificateAction::Upload`]: `addKey` with a proof signed by the
//!    current key, or a PATCH of `keyCredentials` when no valid key of ours is left);
//! 5. move the staged pair to `tls.crt`/`tls.key`/`client.pem` ([`CertificateAction::Promote`]);
//! 6. record it as current, the old one as previous with its revoke time
//!    ([`CertificateAction::CompleteRotation`]).
//!
//! A crash after 2 loses the in-memory key: nothing holds it and Graph never saw it, so the pending
//! record is dropped and a new rotation starts. After 3 the Secret holds the key, so the rotation
//! continues. Hence the two invariants the crash cases check: Graph never holds a certificate of
//! ours whose key is in no Secret for longer than one step (a pending key that vanished from the
//! Secret is removed), and the Secret's `tls.crt` is always a certificate Graph holds (promotion
//! comes after the upload).
//!
//! A certificate from an existing Secret (`source: Secret`, e.g. cert-manager's) skips 1, 3 and 5:
//! when `tls.crt` holds a certificate that status does not name, its thumbprint is recorded as
//! pending, it is uploaded, and then it becomes current.
//!
//! As with passwords, a key is removed only if its marker (`displayName`) names this resource and
//! this Secret, and never while a Secret holds it as current.
//!
//! A certificate the spec no longer declares ([`plan_retired_certificate`]) is not revoked at once:
//! each of its keys gets the overlap from the moment it was retired, is removed at that time, and
//! then the operator's own Secret is deleted and the status entry forgotten. An issuer's Secret
//! (`source: Secret`) is never deleted.

use jiff::{SignedDuration, Timestamp};

use super::rotation::{managed_display_name, parse_managed_display_name, previous_revoke_at};
use crate::api::appregistration::{
    CertificateCredentialSpec, CertificateCredentialStatus, CertificateSource, PendingCertificate,
    PreviousCertificate,
};

/// How long a key may be missing from Graph reads right after the operator uploaded it before it
/// is believed gone (Graph is eventually consistent).
pub const KEY_REPLICATION_GRACE: SignedDuration = SignedDuration::from_secs(120);

/// How often a `source: Secret` certificate's Secret is read again for a renewal.
pub const SOURCE_SECRET_POLL: SignedDuration = SignedDuration::from_secs(30);

/// One entry of the application's `keyCredentials` as Graph reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedKey {
    pub key_id: String,
    pub display_name: Option<String>,
    /// SHA-1 thumbprint, upper-case hex (from `customKeyIdentifier`).
    pub thumbprint: Option<String>,
    pub start: Option<Timestamp>,
    pub end: Timestamp,
}

impl ObservedKey {
    /// Whether this resource made it for this Secret.
    fn is_ours(&self, owner_uid: &str, secret_name: &str) -> bool {
        self.display_name
            .as_deref()
            .and_then(parse_managed_display_name)
            .is_some_and(|m| m.is_owned_by(owner_uid) && m.secret_name == secret_name)
    }

    fn has(&self, thumbprint: &str) -> bool {
        self.thumbprint
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(thumbprint))
    }
}

/// A certificate a Secret holds (public facts only; the driver keeps the material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldCertificate {
    pub thumbprint: String,
    pub not_after: Timestamp,
    /// The Secret also holds the matching private key.
    pub key_matches: bool,
}

/// What the Secret holds: the certificate in use (`tls.crt`) and one being rotated in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedCertificateSecret {
    pub current: Option<HeldCertificate>,
    pub staged: Option<HeldCertificate>,
}

/// Everything the state machine looks at for one certificate.
#[derive(Clone, Copy, Debug)]
pub struct CertificateInput<'a> {
    pub spec: &'a CertificateCredentialSpec,
    /// `metadata.uid` of the resource (in every key's marker).
    pub owner_uid: &'a str,
    pub status: Option<&'a CertificateCredentialStatus>,
    /// All key credentials of the application.
    pub graph: &'a [ObservedKey],
    /// The Secret, if it exists (and, for a generated certificate, is this resource's).
    pub secret: Option<&'a ObservedCertificateSecret>,
    pub rotate_annotation: Option<&'a str>,
    /// A certificate generated by this process since the last step and not yet staged.
    pub generated: Option<&'a HeldCertificate>,
    pub now: Timestamp,
}

/// The one next step for a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateAction {
    /// Nothing to do until `requeue_at`.
    Idle { requeue_at: Option<Timestamp> },
    /// Generate a key pair and certificate in memory and plan again with it as
    /// [`CertificateInput::generated`].
    Generate,
    /// Persist the plan's status (pending = this thumbprint) before anything carries it.
    RecordPending { thumbprint: String },
    /// Write the generated key and certificate to the Secret's staging keys.
    StageSecret,
    /// Upload the certificate with this thumbprint (from the Secret's staging keys, or its
    /// `tls.crt` for a `source: Secret` certificate) with this `displayName`.
    Upload {
        thumbprint: String,
        display_name: String,
        staged: bool,
    },
    /// Move the staged certificate and key to `tls.crt`, `tls.key` and `client.pem`.
    Promote,
    /// Persist the plan's status: the new certificate is current.
    CompleteRotation { thumbprint: String },
    /// Remove this key from the application, then persist the plan's status.
    RemoveKey { key_id: String },
    /// Persist the plan's status only.
    UpdateStatus,
    /// A retired certificate with no key left: delete its Secret if it is this resource's (never
    /// an issuer's), then remove the status entry.
    Forget,
}

impl CertificateAction {
    /// Whether the step writes to Graph or the Secret.
    pub fn writes_outside_status(&self) -> bool {
        matches!(
            self,
            CertificateAction::StageSecret
                | CertificateAction::Upload { .. }
                | CertificateAction::Promote
                | CertificateAction::RemoveKey { .. }
                | CertificateAction::Forget
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            CertificateAction::Idle { .. } => "idle",
            CertificateAction::Generate => "generate",
            CertificateAction::RecordPending { .. } => "record_pending",
            CertificateAction::StageSecret => "stage_secret",
            CertificateAction::Upload { .. } => "upload",
            CertificateAction::Promote => "promote",
            CertificateAction::CompleteRotation { .. } => "complete_rotation",
            CertificateAction::RemoveKey { .. } => "remove_key",
            CertificateAction::UpdateStatus => "update_status",
            CertificateAction::Forget => "forget",
        }
    }
}

/// Why a step is taken (event and condition reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateReason {
    Initial,
    RotationDue,
    RotateAnnotation,
    SecretDeleted,
    SecretEdited,
    CredentialMissing,
    /// A `source: Secret` certificate was renewed (cert-manager wrote a new `tls.crt`).
    SecretRenewed,
    RotationInProgress,
    /// The pending certificate's key is in no Secret any more (a crash before it was staged):
    /// remove it from Graph if it got there, and start again.
    RecoverLostKey,
    RotationComplete,
    RevokePrevious,
    RemoveOrphan,
    PreviousGone,
    /// The Secret holds a certificate of ours that status does not know: take it as current.
    Adopted,
    StatusRefreshed,
    WaitingForReplication,
    /// `source: Secret` and the Secret has no usable `tls.crt`/`tls.key` yet.
    WaitingForSecret,
    /// The spec no longer declares the certificate: its keys wind down over the overlap.
    Undeclared,
    UpToDate,
}

impl CertificateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateReason::Initial => "Initial",
            CertificateReason::RotationDue => "RotationDue",
            CertificateReason::RotateAnnotation => "RotateAnnotation",
            CertificateReason::SecretDeleted => "SecretDeleted",
            CertificateReason::SecretEdited => "SecretEdited",
            CertificateReason::CredentialMissing => "CredentialMissing",
            CertificateReason::SecretRenewed => "SecretRenewed",
            CertificateReason::RotationInProgress => "RotationInProgress",
            CertificateReason::RecoverLostKey => "RecoverLostKey",
            CertificateReason::RotationComplete => "RotationComplete",
            CertificateReason::RevokePrevious => "RevokePrevious",
            CertificateReason::RemoveOrphan => "RemoveOrphan",
            CertificateReason::PreviousGone => "PreviousGone",
            CertificateReason::Adopted => "Adopted",
            CertificateReason::StatusRefreshed => "StatusRefreshed",
            CertificateReason::WaitingForReplication => "WaitingForReplication",
            CertificateReason::WaitingForSecret => "WaitingForSecret",
            CertificateReason::Undeclared => "Undeclared",
            CertificateReason::UpToDate => "UpToDate",
        }
    }
}

impl std::fmt::Display for CertificateReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The next step, the status to persist once it succeeded, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificatePlan {
    pub action: CertificateAction,
    pub status: CertificateCredentialStatus,
    pub reason: CertificateReason,
}

/// Status this module cannot read (hand-edited, or a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status.certificates[{secret_name}].{field} is not an RFC 3339 timestamp: {value:?}")]
pub struct CertificateStatusError {
    pub secret_name: String,
    pub field: &'static str,
    pub value: String,
}

/// The `displayName` of a key this resource uploads for `secret_name`: the shared marker with the
/// thumbprint as its nonce.
pub fn certificate_display_name(owner_uid: &str, secret_name: &str, thumbprint: &str) -> String {
    managed_display_name(owner_uid, secret_name, &thumbprint.to_ascii_lowercase())
}

fn parse_time(
    secret_name: &str,
    field: &'static str,
    value: &str,
) -> Result<Timestamp, CertificateStatusError> {
    value.parse().map_err(|_| CertificateStatusError {
        secret_name: secret_name.to_string(),
        field,
        value: value.to_string(),
    })
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Decides the one next step for a declared certificate.
pub fn plan_certificate(
    input: &CertificateInput<'_>,
) -> Result<CertificatePlan, CertificateStatusError> {
    let secret_name = input.spec.secret_name.as_str();
    let status = input
        .status
        .cloned()
        .unwrap_or_else(|| CertificateCredentialStatus {
            secret_name: secret_name.into(),
            ..Default::default()
        });
    let plan = |action, status, reason| {
        Ok(CertificatePlan {
            action,
            status,
            reason,
        })
    };
    let in_graph = |thumbprint: &str| input.graph.iter().find(|k| k.has(thumbprint));
    let secret_current = input.secret.and_then(|s| s.current.as_ref());
    let secret_staged = input.secret.and_then(|s| s.staged.as_ref());
    let generated_source = input.spec.source == CertificateSource::Generated;

    // 1. A rotation in progress.
    if let Some(pending) = &status.pending {
        let p = pending.thumbprint.as_str();
        let held_current = secret_current.is_some_and(|c| same(&c.thumbprint, p) && c.key_matches);
        let held_staged = secret_staged.is_some_and(|c| same(&c.thumbprint, p) && c.key_matches);
        match in_graph(p) {
            Some(key) if held_current => {
                let held = secret_current.expect("held");
                return plan(
                    CertificateAction::CompleteRotation {
                        thumbprint: p.to_string(),
                    },
                    completed(input, &status, key, held)?,
                    CertificateReason::RotationComplete,
                );
            }
            Some(_) if held_staged => {
                return plan(
                    CertificateAction::Promote,
                    status,
                    CertificateReason::RotationInProgress,
                );
            }
            None if held_current || held_staged => {
                return plan(
                    CertificateAction::Upload {
                        thumbprint: p.to_string(),
                        display_name: certificate_display_name(input.owner_uid, secret_name, p),
                        staged: held_staged && !held_current,
                    },
                    status,
                    CertificateReason::RotationInProgress,
                );
            }
            _ => {}
        }
        if generated_source && input.generated.is_some_and(|g| same(&g.thumbprint, p)) {
            return plan(
                CertificateAction::StageSecret,
                status,
                CertificateReason::RotationInProgress,
            );
        }
        // Nothing holds the pending key any more.
        if let Some(key) = in_graph(p).filter(|k| k.is_ours(input.owner_uid, secret_name)) {
            return plan(
                CertificateAction::RemoveKey {
                    key_id: key.key_id.clone(),
                },
                status,
                CertificateReason::RecoverLostKey,
            );
        }
        let mut next = status.clone();
        next.pending = None;
        return plan(
            CertificateAction::UpdateStatus,
            next,
            CertificateReason::RecoverLostKey,
        );
    }

    // 2. The Secret holds a certificate of ours that status does not name: adopt it.
    if let Some(held) = secret_current
        && held.key_matches
        && status
            .thumbprint
            .as_deref()
            .is_none_or(|t| !same(t, &held.thumbprint))
        && let Some(key) = in_graph(&held.thumbprint)
        && key.is_ours(input.owner_uid, secret_name)
    {
        return plan(
            CertificateAction::UpdateStatus,
            completed(input, &status, key, held)?,
            CertificateReason::Adopted,
        );
    }

    // 3. Keys of ours for this Secret that nothing names.
    let named = |key: &ObservedKey| {
        let t = key.thumbprint.as_deref().unwrap_or_default();
        status.thumbprint.as_deref().is_some_and(|c| same(c, t))
            || status.previous.iter().any(|p| same(&p.thumbprint, t))
            || secret_current.is_some_and(|c| same(&c.thumbprint, t))
    };
    if let Some(orphan) = input
        .graph
        .iter()
        .find(|k| k.is_ours(input.owner_uid, secret_name) && !named(k))
    {
        return plan(
            CertificateAction::RemoveKey {
                key_id: orphan.key_id.clone(),
            },
            status,
            CertificateReason::RemoveOrphan,
        );
    }

    // 4. Previous certificates: forget the vanished, revoke the due.
    for (i, previous) in status.previous.iter().enumerate() {
        let revoke_at = parse_time(secret_name, "previous.revokeAt", &previous.revoke_at)?;
        let held = secret_current.is_some_and(|c| same(&c.thumbprint, &previous.thumbprint));
        let mut next = status.clone();
        next.previous.remove(i);
        match in_graph(&previous.thumbprint) {
            None => {
                return plan(
                    CertificateAction::UpdateStatus,
                    next,
                    CertificateReason::PreviousGone,
                );
            }
            Some(key) if revoke_at <= input.now && !held => {
                return plan(
                    CertificateAction::RemoveKey {
                        key_id: key.key_id.clone(),
                    },
                    next,
                    CertificateReason::RevokePrevious,
                );
            }
            _ => {}
        }
    }

    // 5. Does a rotation have to start?
    let current_key = status.thumbprint.as_deref().and_then(in_graph);
    let due = if generated_source {
        rotation_due(input, &status, current_key, secret_current)?
    } else {
        match secret_current {
            None => {
                return plan(
                    CertificateAction::Idle {
                        requeue_at: Some(input.now + SignedDuration::from_mins(1)),
                    },
                    status,
                    CertificateReason::WaitingForSecret,
                );
            }
            Some(held) if !held.key_matches => {
                return plan(
                    CertificateAction::Idle {
                        requeue_at: Some(input.now + SignedDuration::from_mins(1)),
                    },
                    status,
                    CertificateReason::WaitingForSecret,
                );
            }
            Some(held) => match status.thumbprint.as_deref() {
                None => Some((CertificateReason::Initial, held.thumbprint.clone())),
                Some(t) if !same(t, &held.thumbprint) => {
                    Some((CertificateReason::SecretRenewed, held.thumbprint.clone()))
                }
                Some(_) if current_key.is_none() && missing_for_good(input, &status)? => Some((
                    CertificateReason::CredentialMissing,
                    held.thumbprint.clone(),
                )),
                Some(_) => None,
            },
        }
    };
    if let Some((reason, thumbprint)) = due {
        if thumbprint.is_empty() {
            return plan(CertificateAction::Generate, status, reason);
        }
        let mut next = status.clone();
        next.pending = Some(PendingCertificate {
            thumbprint: thumbprint.clone(),
            since: input.now.to_string(),
        });
        // The annotation counts as honoured only when the rotation completes ([`completed`]): a
        // crash that loses the pending key must not also lose the request.
        return plan(
            CertificateAction::RecordPending { thumbprint },
            next,
            reason,
        );
    }

    // 6. Keep status in line with Graph and the spec, or wait.
    let mut next = status.clone();
    if let Some(key) = current_key {
        next.key_id = Some(key.key_id.clone());
        next.expires_at = Some(key.end.to_string());
        next.renew_at = generated_source.then(|| renew_at(input.spec, key.end).to_string());
    }
    if next != status {
        return plan(
            CertificateAction::UpdateStatus,
            next,
            CertificateReason::StatusRefreshed,
        );
    }
    let mut requeue_at: Option<Timestamp> = None;
    let mut earliest = |t: Timestamp| {
        requeue_at = Some(requeue_at.map_or(t, |r: Timestamp| r.min(t)));
    };
    if let Some(renew) = status.renew_at.as_deref() {
        earliest(parse_time(secret_name, "renewAt", renew)?);
    }
    for previous in &status.previous {
        earliest(parse_time(
            secret_name,
            "previous.revokeAt",
            &previous.revoke_at,
        )?);
    }
    if !generated_source {
        // The issuer's Secret is not watched (it carries no label of ours, and watching every
        // Secret of the cluster would cache them all): look at it again soon.
        earliest(input.now + SOURCE_SECRET_POLL);
    }
    plan(
        CertificateAction::Idle { requeue_at },
        status,
        CertificateReason::UpToDate,
    )
}

/// Secret names of certificates this resource made keys for (its UID in the marker) that the spec
/// does not declare: each is driven by [`plan_retired_certificate`] until it is gone.
pub fn undeclared_certificate_names<'a>(
    owner_uid: &str,
    declared_secret_names: &[&str],
    graph: &'a [ObservedKey],
) -> Vec<&'a str> {
    let mut names: Vec<&str> = graph
        .iter()
        .filter_map(|k| {
            k.display_name
                .as_deref()
                .and_then(parse_managed_display_name)
        })
        .filter(|m| m.is_owned_by(owner_uid) && !declared_secret_names.contains(&m.secret_name))
        .map(|m| m.secret_name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Decides the one next step for a certificate the spec no longer declares (`input.spec` carries
/// its secret name and the default overlap). Nothing is removed at once:
/// 1. a rotation in progress stops, and every key of ours for this Secret (the current one, one
///    uploaded by that rotation, any other) becomes a previous certificate, revoked after the
///    overlap counted from now (never after its own expiry);
/// 2. previous certificates are removed at their revoke time (whether or not a Secret still
///    holds them: retiring was the notice), forgotten when already gone;
/// 3. when none is left, [`CertificateAction::Forget`].
pub fn plan_retired_certificate(
    input: &CertificateInput<'_>,
) -> Result<CertificatePlan, CertificateStatusError> {
    let secret_name = input.spec.secret_name.as_str();
    let status = input
        .status
        .cloned()
        .unwrap_or_else(|| CertificateCredentialStatus {
            secret_name: secret_name.into(),
            ..Default::default()
        });
    let plan = |action, status| {
        Ok(CertificatePlan {
            action,
            status,
            reason: CertificateReason::Undeclared,
        })
    };
    let in_previous = |key: &ObservedKey| {
        status.previous.iter().any(|p| {
            p.key_id.as_deref() == Some(key.key_id.as_str())
                || key
                    .thumbprint
                    .as_deref()
                    .is_some_and(|t| same(t, &p.thumbprint))
        })
    };
    let named_current =
        |key: &ObservedKey| status.thumbprint.as_deref().is_some_and(|t| key.has(t));

    // 1. Everything of ours winds down from now.
    let winding: Vec<&ObservedKey> = input
        .graph
        .iter()
        .filter(|k| {
            (k.is_ours(input.owner_uid, secret_name) || named_current(k)) && !in_previous(k)
        })
        .collect();
    let mut next = status.clone();
    for key in winding {
        next.previous.push(PreviousCertificate {
            thumbprint: key.thumbprint.clone().unwrap_or_default(),
            key_id: Some(key.key_id.clone()),
            revoke_at: previous_revoke_at(&input.spec.overlap, key.end, input.now).to_string(),
        });
    }
    next.thumbprint = None;
    next.key_id = None;
    next.expires_at = None;
    next.renew_at = None;
    next.pending = None;
    next.created_at = None;
    if next != status {
        return plan(CertificateAction::UpdateStatus, next);
    }

    // 2. Forget the vanished, revoke the due.
    let mut requeue_at: Option<Timestamp> = None;
    for (i, previous) in status.previous.iter().enumerate() {
        let revoke_at = parse_time(secret_name, "previous.revokeAt", &previous.revoke_at)?;
        let key = input.graph.iter().find(|k| {
            previous.key_id.as_deref() == Some(k.key_id.as_str())
                || (!previous.thumbprint.is_empty() && k.has(&previous.thumbprint))
        });
        let mut next = status.clone();
        next.previous.remove(i);
        match key {
            None => return plan(CertificateAction::UpdateStatus, next),
            Some(key) if revoke_at <= input.now => {
                return plan(
                    CertificateAction::RemoveKey {
                        key_id: key.key_id.clone(),
                    },
                    next,
                );
            }
            Some(_) => requeue_at = Some(requeue_at.map_or(revoke_at, |r| r.min(revoke_at))),
        }
    }
    if status.previous.is_empty() {
        if input.status.is_none() && input.secret.is_none() {
            return plan(CertificateAction::Idle { requeue_at: None }, status);
        }
        return plan(CertificateAction::Forget, status);
    }
    plan(CertificateAction::Idle { requeue_at }, status)
}

/// For a generated certificate: the reason a rotation is due, with the thumbprint to record
/// (empty: generate one first; the in-memory one once generated).
fn rotation_due(
    input: &CertificateInput<'_>,
    status: &CertificateCredentialStatus,
    current_key: Option<&ObservedKey>,
    secret_current: Option<&HeldCertificate>,
) -> Result<Option<(CertificateReason, String)>, CertificateStatusError> {
    let secret_name = input.spec.secret_name.as_str();
    let reason = if status.thumbprint.is_none() {
        Some(CertificateReason::Initial)
    } else if input.secret.is_none() {
        Some(CertificateReason::SecretDeleted)
    } else if !secret_current.is_some_and(|c| {
        c.key_matches
            && status
                .thumbprint
                .as_deref()
                .is_some_and(|t| same(t, &c.thumbprint))
    }) {
        Some(CertificateReason::SecretEdited)
    } else if current_key.is_none() {
        missing_for_good(input, status)?.then_some(CertificateReason::CredentialMissing)
    } else if input
        .rotate_annotation
        .is_some_and(|a| !a.is_empty() && status.rotate_token.as_deref() != Some(a))
    {
        Some(CertificateReason::RotateAnnotation)
    } else if let Some(renew) = status.renew_at.as_deref() {
        (parse_time(secret_name, "renewAt", renew)? <= input.now)
            .then_some(CertificateReason::RotationDue)
    } else {
        None
    };
    Ok(reason.map(|r| {
        (
            r,
            input
                .generated
                .map(|g| g.thumbprint.clone())
                .unwrap_or_default(),
        )
    }))
}

/// Whether the current key's absence from Graph is real: right after the upload a Graph read may
/// not show it yet.
fn missing_for_good(
    input: &CertificateInput<'_>,
    status: &CertificateCredentialStatus,
) -> Result<bool, CertificateStatusError> {
    let Some(created) = status.created_at.as_deref() else {
        return Ok(true);
    };
    let created = parse_time(&input.spec.secret_name, "createdAt", created)?;
    Ok(input.now >= created + KEY_REPLICATION_GRACE)
}

fn renew_at(spec: &CertificateCredentialSpec, expires: Timestamp) -> Timestamp {
    let before =
        SignedDuration::try_from(spec.renew_before.as_std()).unwrap_or(SignedDuration::ZERO);
    expires.checked_sub(before).unwrap_or(expires)
}

/// Status once `key` (held by the Secret as `held`) is current: the old current certificate, if
/// any and different, joins `previous` with its revoke time.
fn completed(
    input: &CertificateInput<'_>,
    status: &CertificateCredentialStatus,
    key: &ObservedKey,
    held: &HeldCertificate,
) -> Result<CertificateCredentialStatus, CertificateStatusError> {
    let secret_name = input.spec.secret_name.as_str();
    let mut next = status.clone();
    if let Some(old) = status.thumbprint.as_deref()
        && !same(old, &held.thumbprint)
        && let Some(old_key) = input.graph.iter().find(|k| k.has(old))
    {
        let expires = match status.expires_at.as_deref() {
            Some(e) => parse_time(secret_name, "expiresAt", e)?,
            None => old_key.end,
        };
        next.previous.push(PreviousCertificate {
            thumbprint: old.to_string(),
            key_id: Some(old_key.key_id.clone()),
            revoke_at: previous_revoke_at(&input.spec.overlap, expires, input.now).to_string(),
        });
    }
    next.thumbprint = Some(held.thumbprint.clone());
    next.key_id = Some(key.key_id.clone());
    next.expires_at = Some(key.end.min(held.not_after).to_string());
    next.renew_at = (input.spec.source == CertificateSource::Generated)
        .then(|| renew_at(input.spec, key.end.min(held.not_after)).to_string());
    next.pending = None;
    next.created_at = Some(input.now.to_string());
    // Any rotation honours the annotation as it is now, so it does not start another.
    if let Some(token) = input.rotate_annotation.filter(|a| !a.is_empty()) {
        next.rotate_token = Some(token.to_string());
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "uid-1";
    const SECRET: &str = "api-cert";

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(source: CertificateSource) -> CertificateCredentialSpec {
        serde_json::from_value(serde_json::json!({
            "secretName": SECRET,
            "source": source,
            "lifetime": "365d",
            "renewBefore": "30d",
            "overlap": "7d",
        }))
        .unwrap()
    }

    fn held(thumbprint: &str) -> HeldCertificate {
        HeldCertificate {
            thumbprint: thumbprint.into(),
            not_after: t("2027-12-01T00:00:00Z"),
            key_matches: true,
        }
    }

    fn key(key_id: &str, thumbprint: &str, ours: bool) -> ObservedKey {
        ObservedKey {
            key_id: key_id.into(),
            display_name: Some(if ours {
                certificate_display_name(UID, SECRET, thumbprint)
            } else {
                "CN=someone".into()
            }),
            thumbprint: Some(thumbprint.into()),
            start: Some(t("2026-12-01T00:00:00Z")),
            end: t("2027-12-01T00:00:00Z"),
        }
    }

    struct World {
        spec: CertificateCredentialSpec,
        status: Option<CertificateCredentialStatus>,
        graph: Vec<ObservedKey>,
        secret: Option<ObservedCertificateSecret>,
        generated: Option<HeldCertificate>,
        now: Timestamp,
    }

    impl World {
        fn new(source: CertificateSource) -> Self {
            World {
                spec: spec(source),
                status: None,
                graph: Vec::new(),
                secret: None,
                generated: None,
                now: t("2026-12-02T00:00:00Z"),
            }
        }

        fn plan(&self) -> CertificatePlan {
            plan_certificate(&CertificateInput {
                spec: &self.spec,
                owner_uid: UID,
                status: self.status.as_ref(),
                graph: &self.graph,
                secret: self.secret.as_ref(),
                rotate_annotation: None,
                generated: self.generated.as_ref(),
                now: self.now,
            })
            .unwrap()
        }

        /// Applies a plan the way the driver would, with `thumbprint` as what generation makes.
        fn step(&mut self, next_thumbprint: &str) -> CertificateAction {
            let plan = self.plan();
            match &plan.action {
                CertificateAction::Generate => {
                    self.generated = Some(HeldCertificate {
                        not_after: self.now + SignedDuration::from_hours(24 * 365),
                        ..held(next_thumbprint)
                    })
                }
                CertificateAction::RecordPending { .. }
                | CertificateAction::CompleteRotation { .. }
                | CertificateAction::UpdateStatus => self.status = Some(plan.status.clone()),
                CertificateAction::StageSecret => {
                    let g = self.generated.take().unwrap();
                    self.secret.get_or_insert_with(Default::default).staged = Some(g);
                }
                CertificateAction::Upload {
                    thumbprint,
                    display_name,
                    ..
                } => {
                    let mut k = key(&format!("k-{thumbprint}"), thumbprint, true);
                    k.display_name = Some(display_name.clone());
                    let secret = self.secret.as_ref().unwrap();
                    k.end = [&secret.staged, &secret.current]
                        .into_iter()
                        .flatten()
                        .find(|h| &h.thumbprint == thumbprint)
                        .unwrap()
                        .not_after;
                    self.graph.push(k);
                }
                CertificateAction::Promote => {
                    let s = self.secret.as_mut().unwrap();
                    s.current = s.staged.take();
                }
                CertificateAction::RemoveKey { key_id } => {
                    self.graph.retain(|k| &k.key_id != key_id);
                    self.status = Some(plan.status.clone());
                }
                CertificateAction::Forget => {
                    self.secret = None;
                    self.status = None;
                }
                CertificateAction::Idle { .. } => {}
            }
            plan.action
        }

        fn run(&mut self, next_thumbprint: &str) -> Vec<&'static str> {
            let mut names = Vec::new();
            for _ in 0..20 {
                let action = self.step(next_thumbprint);
                names.push(action.name());
                if matches!(action, CertificateAction::Idle { .. }) {
                    return names;
                }
            }
            panic!("no idle after 20 steps: {names:?}");
        }
    }

    #[test]
    fn a_generated_certificate_is_staged_before_upload_and_promoted_after() {
        let mut w = World::new(CertificateSource::Generated);
        let steps = w.run("AA");
        assert_eq!(
            steps,
            [
                "generate",
                "record_pending",
                "stage_secret",
                "upload",
                "promote",
                "complete_rotation",
                "idle"
            ]
        );
        let status = w.status.unwrap();
        assert_eq!(status.thumbprint.as_deref(), Some("AA"));
        assert_eq!(status.key_id.as_deref(), Some("k-AA"));
        assert_eq!(status.renew_at.as_deref(), Some("2027-11-02T00:00:00Z"));
        assert!(status.pending.is_none());
    }

    #[test]
    fn rotation_keeps_the_previous_certificate_for_its_overlap_then_removes_it() {
        let mut w = World::new(CertificateSource::Generated);
        w.run("AA");
        w.now = t("2027-11-02T00:00:00Z");
        w.run("BB");
        assert_eq!(
            w.status.as_ref().unwrap().renew_at.as_deref(),
            Some("2028-10-02T00:00:00Z")
        );
        let status = w.status.clone().unwrap();
        assert_eq!(status.thumbprint.as_deref(), Some("BB"));
        assert_eq!(status.previous.len(), 1);
        assert_eq!(status.previous[0].thumbprint, "AA");
        assert_eq!(status.previous[0].revoke_at, "2027-11-09T00:00:00Z");
        assert!(
            w.graph.iter().any(|k| k.key_id == "k-AA"),
            "kept in overlap"
        );
        w.now = t("2027-11-09T00:00:01Z");
        w.run("CC");
        assert!(
            !w.graph.iter().any(|k| k.key_id == "k-AA"),
            "revoked after overlap"
        );
        assert!(w.status.unwrap().previous.is_empty());
    }

    #[test]
    fn a_crash_before_staging_loses_the_key_and_starts_again() {
        let mut w = World::new(CertificateSource::Generated);
        assert_eq!(w.step("AA").name(), "generate");
        assert_eq!(w.step("AA").name(), "record_pending");
        // Crash: the generated pair was only in memory.
        w.generated = None;
        let plan = w.plan();
        assert_eq!(plan.reason, CertificateReason::RecoverLostKey);
        assert_eq!(plan.action, CertificateAction::UpdateStatus);
        w.step("BB");
        w.run("BB");
        assert_eq!(w.status.unwrap().thumbprint.as_deref(), Some("BB"));
        assert_eq!(
            w.graph.len(),
            1,
            "only the key whose private key the Secret holds"
        );
    }

    #[test]
    fn a_pending_key_in_graph_that_no_secret_holds_is_removed() {
        let mut w = World::new(CertificateSource::Generated);
        w.status = Some(CertificateCredentialStatus {
            secret_name: SECRET.into(),
            pending: Some(PendingCertificate {
                thumbprint: "AA".into(),
                since: "2026-12-01T23:59:00Z".into(),
            }),
            ..Default::default()
        });
        w.graph.push(key("k-AA", "AA", true));
        w.secret = Some(ObservedCertificateSecret::default());
        assert_eq!(
            w.plan().action,
            CertificateAction::RemoveKey {
                key_id: "k-AA".into()
            }
        );
    }

    #[test]
    fn the_secret_is_promoted_only_after_graph_has_the_certificate() {
        let mut w = World::new(CertificateSource::Generated);
        for _ in 0..3 {
            w.step("AA");
        }
        // Staged, not uploaded: the next step uploads; promotion never comes first.
        assert!(matches!(
            w.plan().action,
            CertificateAction::Upload { staged: true, .. }
        ));
        w.step("AA");
        assert_eq!(w.plan().action, CertificateAction::Promote);
    }

    #[test]
    fn keys_of_others_are_never_removed() {
        let mut w = World::new(CertificateSource::Generated);
        w.graph.push(key("k-X", "XX", false));
        let mut other = key("k-Y", "YY", true);
        other.display_name = Some(certificate_display_name("uid-2", SECRET, "YY"));
        w.graph.push(other);
        w.run("AA");
        assert!(w.graph.iter().any(|k| k.key_id == "k-X"));
        assert!(w.graph.iter().any(|k| k.key_id == "k-Y"));
    }

    #[test]
    fn an_orphan_of_ours_is_removed() {
        let mut w = World::new(CertificateSource::Generated);
        w.run("AA");
        w.graph.push(key("k-ZZ", "ZZ", true));
        w.run("BB");
        assert!(!w.graph.iter().any(|k| k.key_id == "k-ZZ"));
        assert!(w.graph.iter().any(|k| k.key_id == "k-AA"));
    }

    #[test]
    fn a_renewed_secret_source_certificate_is_uploaded_and_the_old_one_kept_for_its_overlap() {
        let mut w = World::new(CertificateSource::Secret);
        assert_eq!(w.plan().reason, CertificateReason::WaitingForSecret);
        w.secret = Some(ObservedCertificateSecret {
            current: Some(held("AA")),
            staged: None,
        });
        assert_eq!(
            w.run("unused"),
            ["record_pending", "upload", "complete_rotation", "idle"]
        );
        assert!(w.status.as_ref().unwrap().renew_at.is_none());
        // cert-manager renews in place.
        w.secret.as_mut().unwrap().current = Some(held("BB"));
        w.run("unused");
        let status = w.status.clone().unwrap();
        assert_eq!(status.thumbprint.as_deref(), Some("BB"));
        assert_eq!(status.previous[0].thumbprint, "AA");
        assert_eq!(w.graph.len(), 2);
    }

    #[test]
    fn a_key_just_uploaded_but_not_yet_listed_does_not_start_a_rotation() {
        let mut w = World::new(CertificateSource::Generated);
        w.run("AA");
        w.graph.clear();
        w.now = t("2026-12-02T00:01:00Z");
        assert_eq!(w.plan().reason, CertificateReason::UpToDate);
        w.now = t("2026-12-02T00:05:00Z");
        assert_eq!(w.plan().reason, CertificateReason::CredentialMissing);
    }
}
