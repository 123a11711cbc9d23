//! The loop that executes the certificate state machine ([`super::certificate`]) with the same
//! discipline as the password driver ([`super::driver`]): every status write is conditional on
//! the version read (a stale read is confirmed before the first write outside status), every
//! write is fenced by the lease, and a crash anywhere ends the pass so the next one resumes from
//! what landed. The generated key pair lives in this function's memory only between
//! `RecordPending` and `StageSecret`; once staged, the Secret holds it.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use super::certgen::{CertificateInfo, GeneratedCertificate};
use super::certificate::{
    CertificateAction, CertificateInput, CertificateReason, HeldCertificate,
    ObservedCertificateSecret, ObservedKey, plan_certificate, plan_retired_certificate,
};
use super::driver::{
    Clock, CredentialEvent, DriverError, Events, Fence, MAX_CONFLICTS, MAX_STEPS, PortError,
    StatusStore, rotation_priority,
};
use crate::api::appregistration::{CertificateCredentialSpec, CertificateCredentialStatus};
use crate::graph::SecretString;
use crate::graph::with_priority;

/// A certificate a Secret holds, with its material.
#[derive(Clone)]
pub struct CertificateMaterial {
    pub info: CertificateInfo,
    pub cert_pem: String,
    /// The private key, when the Secret holds the one matching `info`.
    pub key_pem: Option<SecretString>,
}

impl CertificateMaterial {
    fn held(&self) -> HeldCertificate {
        HeldCertificate {
            thumbprint: self.info.thumbprint.clone(),
            not_after: self.info.not_after,
            key_matches: self.key_pem.is_some(),
        }
    }
}

/// What a certificate's Secret holds.
#[derive(Clone, Default)]
pub struct CertificateSecretState {
    /// `tls.crt` / `tls.key`.
    pub current: Option<CertificateMaterial>,
    /// The staging keys of a rotation in progress (generated certificates only).
    pub staged: Option<CertificateMaterial>,
}

impl CertificateSecretState {
    fn observed(&self) -> ObservedCertificateSecret {
        ObservedCertificateSecret {
            current: self.current.as_ref().map(CertificateMaterial::held),
            staged: self.staged.as_ref().map(CertificateMaterial::held),
        }
    }
}

/// A currently valid certificate of the application and its key: what signs the proof that
/// `addKey` and `removeKey` require.
pub struct ProofSigner<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a SecretString,
}

/// The application's key credentials in Graph.
#[async_trait]
pub trait GraphKeys: Send + Sync {
    async fn list(&self) -> Result<Vec<ObservedKey>, PortError>;
    /// Adds the certificate: `addKey` with a proof from `signer`, or without one a PATCH of the
    /// whole `keyCredentials` collection that keeps every existing key.
    async fn add(
        &self,
        certificate: &CertificateInfo,
        display_name: &str,
        signer: Option<ProofSigner<'_>>,
    ) -> Result<ObservedKey, PortError>;
    /// Removes the key (`removeKey` with a proof, or the PATCH without it); one already gone
    /// counts as removed.
    async fn remove(&self, key_id: &str, signer: Option<ProofSigner<'_>>) -> Result<(), PortError>;
}

/// The Secret of a certificate.
#[async_trait]
pub trait CertificateSecrets: Send + Sync {
    /// The Secret as it is now; `None` when it does not exist.
    async fn read(&self, name: &str) -> Result<Option<CertificateSecretState>, PortError>;
    /// Writes the generated pair to the staging keys, leaving the current pair as it is.
    async fn stage(&self, name: &str, generated: &GeneratedCertificate) -> Result<(), PortError>;
    /// Makes the staged pair the current one (`tls.crt`, `tls.key`, `client.pem`, thumbprint,
    /// expiresAt) and drops the staging keys.
    async fn promote(&self, name: &str) -> Result<(), PortError>;
    /// Deletes the Secret of a retired certificate if it is this resource's own (the operator's
    /// label and this resource as owner) and no declared credential writes it; leaves any other
    /// Secret alone. One already gone counts as deleted.
    async fn delete_own(&self, name: &str) -> Result<(), PortError>;
}

/// Makes a key pair and self-signed certificate. Async because RSA key generation takes a few
/// hundred milliseconds of CPU: the real generator runs it on the blocking pool, off the workers
/// that serve every other reconcile.
#[async_trait]
pub trait Generator: Send + Sync {
    async fn generate(
        &self,
        secret_name: &str,
        lifetime: SignedDuration,
        now: Timestamp,
    ) -> Result<GeneratedCertificate, PortError>;
}

/// The ports of one certificate pass.
#[derive(Clone, Copy)]
pub struct CertificatePorts<'a> {
    pub graph: &'a dyn GraphKeys,
    pub secrets: &'a dyn CertificateSecrets,
    pub status: &'a dyn StatusStore<CertificateCredentialStatus>,
    pub generator: &'a dyn Generator,
    pub events: &'a dyn Events,
    pub clock: &'a dyn Clock,
    pub fence: &'a dyn Fence,
}

/// One certificate to drive.
#[derive(Clone, Copy, Debug)]
pub struct CertificateTarget<'a> {
    pub spec: &'a CertificateCredentialSpec,
    /// Whether the spec declares it; a retired one (secret name and default overlap only) winds
    /// down ([`plan_retired_certificate`]).
    pub declared: bool,
    pub owner_uid: &'a str,
    pub rotate_annotation: Option<&'a str>,
}

/// Where a certificate pass ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateOutcome {
    pub requeue_at: Option<Timestamp>,
    pub status: Option<CertificateCredentialStatus>,
    pub graph: Vec<ObservedKey>,
    pub reason: CertificateReason,
}

/// Runs the certificate state machine until it is idle (see the module documentation).
pub async fn drive_certificate(
    target: CertificateTarget<'_>,
    ports: CertificatePorts<'_>,
) -> Result<CertificateOutcome, DriverError> {
    let mut pass = CertPass {
        target,
        ports,
        graph: ports
            .graph
            .list()
            .await
            .map_err(|e| port_error(target, "list key credentials", e))?,
        generated: None,
    };
    let mut conflicts = 0;
    loop {
        match pass.steps().await? {
            Some(outcome) => return Ok(outcome),
            None => {
                conflicts += 1;
                if conflicts > MAX_CONFLICTS {
                    return Err(DriverError::Conflicts {
                        secret_name: target.spec.secret_name.to_string(),
                        conflicts,
                    });
                }
            }
        }
    }
}

fn port_error(target: CertificateTarget<'_>, step: &'static str, source: PortError) -> DriverError {
    DriverError::Port {
        step,
        secret_name: target.spec.secret_name.to_string(),
        source,
    }
}

struct CertPass<'a> {
    target: CertificateTarget<'a>,
    ports: CertificatePorts<'a>,
    graph: Vec<ObservedKey>,
    /// The generated pair: its only copy until the Secret's staging keys hold it.
    generated: Option<GeneratedCertificate>,
}

impl CertPass<'_> {
    fn name(&self) -> &str {
        &self.target.spec.secret_name
    }

    fn err(&self, step: &'static str, e: PortError) -> DriverError {
        port_error(self.target, step, e)
    }

    /// A conditional, fenced status write; `Ok(false)` on a conflict.
    async fn persist(&self, entry: &CertificateCredentialStatus) -> Result<bool, DriverError> {
        self.ports.fence.check()?;
        match self.ports.status.write(self.name(), Some(entry)).await {
            Ok(()) => Ok(true),
            Err(PortError::Conflict) => Ok(false),
            Err(e) => Err(self.err("write status", e)),
        }
    }

    async fn event(&self, reason: CertificateReason, key_id: Option<String>) {
        self.ports
            .events
            .emit(CredentialEvent::Certificate {
                secret_name: self.name().to_string(),
                reason,
                key_id,
            })
            .await;
    }

    /// The current certificate and key when Graph holds that certificate and it is valid now.
    fn signer<'s>(
        &self,
        secret: &'s CertificateSecretState,
        now: Timestamp,
    ) -> Option<ProofSigner<'s>> {
        let current = secret.current.as_ref()?;
        let key_pem = current.key_pem.as_ref()?;
        let valid = self.graph.iter().any(|k| {
            k.thumbprint
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(&current.info.thumbprint))
                && k.start.is_none_or(|s| s <= now)
                && k.end > now
        });
        valid.then_some(ProofSigner {
            cert_pem: &current.cert_pem,
            key_pem,
        })
    }

    /// Reads status, then plans and executes until idle (`Some`) or a conflict (`None`).
    async fn steps(&mut self) -> Result<Option<CertificateOutcome>, DriverError> {
        let name = self.name().to_string();
        let mut entry: Option<CertificateCredentialStatus> = self
            .ports
            .status
            .read(&name)
            .await
            .map_err(|e| self.err("read status", e))?;
        let mut confirmed = false;
        let mut reason = CertificateReason::UpToDate;
        for _ in 0..MAX_STEPS {
            let secret = self
                .ports
                .secrets
                .read(&name)
                .await
                .map_err(|e| self.err("read secret", e))?;
            let observed = secret.as_ref().map(CertificateSecretState::observed);
            let now = self.ports.clock.now();
            let generated = self.generated.as_ref().map(|g| HeldCertificate {
                thumbprint: g.info.thumbprint.clone(),
                not_after: g.info.not_after,
                key_matches: true,
            });
            let input = CertificateInput {
                spec: self.target.spec,
                owner_uid: self.target.owner_uid,
                status: entry.as_ref(),
                graph: &self.graph,
                secret: observed.as_ref(),
                rotate_annotation: self.target.rotate_annotation,
                generated: generated.as_ref(),
                now,
            };
            let plan = if self.target.declared {
                plan_certificate(&input)?
            } else {
                plan_retired_certificate(&input)?
            };
            reason = plan.reason;
            tracing::debug!(secret = %name, reason = %plan.reason, action = plan.action.name(), "certificate step");
            if plan.action.writes_outside_status() && !confirmed {
                let current = entry
                    .clone()
                    .unwrap_or_else(|| CertificateCredentialStatus {
                        secret_name: name.clone().into(),
                        ..Default::default()
                    });
                if !self.persist(&current).await? {
                    return Ok(None);
                }
                confirmed = true;
            }
            match plan.action {
                CertificateAction::Idle { requeue_at } => {
                    return Ok(Some(CertificateOutcome {
                        requeue_at,
                        status: entry,
                        graph: std::mem::take(&mut self.graph),
                        reason,
                    }));
                }
                CertificateAction::Generate => {
                    let lifetime = SignedDuration::try_from(self.target.spec.lifetime.as_std())
                        .unwrap_or(SignedDuration::from_hours(24 * 365));
                    self.generated = Some(
                        self.ports
                            .generator
                            .generate(&name, lifetime, now)
                            .await
                            .map_err(|e| self.err("generate certificate", e))?,
                    );
                }
                CertificateAction::RecordPending { .. } => {
                    if !self.persist(&plan.status).await? {
                        return Ok(None);
                    }
                    confirmed = true;
                    entry = Some(plan.status);
                    self.event(reason, None).await;
                }
                CertificateAction::StageSecret => {
                    let Some(generated) = self.generated.as_ref() else {
                        continue;
                    };
                    self.ports.fence.check()?;
                    self.ports
                        .secrets
                        .stage(&name, generated)
                        .await
                        .map_err(|e| self.err("stage certificate in secret", e))?;
                    self.generated = None;
                }
                CertificateAction::Upload {
                    thumbprint,
                    display_name,
                    staged,
                } => {
                    let Some(secret) = secret.as_ref() else {
                        continue;
                    };
                    let material = if staged {
                        &secret.staged
                    } else {
                        &secret.current
                    };
                    let Some(material) = material
                        .as_ref()
                        .filter(|m| m.info.thumbprint.eq_ignore_ascii_case(&thumbprint))
                    else {
                        continue;
                    };
                    self.ports.fence.check()?;
                    let signer = self.signer(secret, now);
                    let priority =
                        rotation_priority(entry.as_ref().and_then(|e| e.expires_at.as_deref()));
                    let key = match with_priority(
                        priority,
                        self.ports.graph.add(&material.info, &display_name, signer),
                    )
                    .await
                    {
                        Ok(key) => key,
                        Err(e) => {
                            self.ports
                                .events
                                .emit(CredentialEvent::CertificateAddFailed {
                                    secret_name: name.clone(),
                                })
                                .await;
                            return Err(self.err("upload certificate", e));
                        }
                    };
                    self.graph.retain(|k| k.key_id != key.key_id);
                    self.graph.push(key);
                }
                CertificateAction::Promote => {
                    self.ports.fence.check()?;
                    self.ports
                        .secrets
                        .promote(&name)
                        .await
                        .map_err(|e| self.err("promote certificate in secret", e))?;
                }
                CertificateAction::CompleteRotation { .. } | CertificateAction::UpdateStatus => {
                    if entry.as_ref() != Some(&plan.status) {
                        if !self.persist(&plan.status).await? {
                            return Ok(None);
                        }
                        confirmed = true;
                        if !matches!(
                            reason,
                            CertificateReason::StatusRefreshed | CertificateReason::PreviousGone
                        ) {
                            self.event(reason, plan.status.key_id.clone()).await;
                        }
                    }
                    entry = Some(plan.status);
                }
                CertificateAction::Forget => {
                    self.ports.fence.check()?;
                    self.ports
                        .secrets
                        .delete_own(&name)
                        .await
                        .map_err(|e| self.err("delete retired certificate secret", e))?;
                    self.ports.fence.check()?;
                    match self.ports.status.write(&name, None).await {
                        Ok(()) => {}
                        Err(PortError::Conflict) => return Ok(None),
                        Err(e) => return Err(self.err("write status", e)),
                    }
                    return Ok(Some(CertificateOutcome {
                        requeue_at: None,
                        status: None,
                        graph: std::mem::take(&mut self.graph),
                        reason,
                    }));
                }
                CertificateAction::RemoveKey { key_id } => {
                    self.ports.fence.check()?;
                    let signer = secret.as_ref().and_then(|s| self.signer(s, now));
                    self.ports
                        .graph
                        .remove(&key_id, signer)
                        .await
                        .map_err(|e| self.err("remove certificate", e))?;
                    self.graph.retain(|k| k.key_id != key_id);
                    if entry.as_ref() != Some(&plan.status) {
                        if !self.persist(&plan.status).await? {
                            return Ok(None);
                        }
                        entry = Some(plan.status);
                    }
                    self.event(reason, Some(key_id)).await;
                }
            }
        }
        Ok(Some(CertificateOutcome {
            requeue_at: Some(self.ports.clock.now() + SignedDuration::from_secs(2)),
            status: entry,
            graph: std::mem::take(&mut self.graph),
            reason,
        }))
    }
}
