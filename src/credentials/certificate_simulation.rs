//! Crash cases of the certificate driver: the production loop ([`drive_certificate`]) against
//! in-memory ports that stop the "process" right after its Nth write (Graph, Secret or status),
//! for every N of a first certificate and of a rotation, then a restart that runs to idle. After
//! every crash and at the end:
//! - the Secret's `tls.crt` is a certificate Graph holds (consumers never get one Entra refuses);
//! - every key of ours in Graph is one whose private key the Secret holds (current or staged), or
//!   one status tracks as current or previous until its revocation (no key in Entra that nobody
//!   holds and nothing will remove);
//! - at the end: no staged pair, no pending record, and Graph holds exactly current + previous.

use std::sync::Mutex;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use super::certgen::{CertificateInfo, GeneratedCertificate};
use super::certificate::ObservedKey;
use super::certificate_driver::{
    CertificateMaterial, CertificatePorts, CertificateSecretState, CertificateSecrets,
    CertificateTarget, Generator, GraphKeys, ProofSigner, drive_certificate,
};
use super::driver::{Clock, CredentialEvent, Events, Fence, Fenced, PortError, StatusStore};
use crate::api::appregistration::{CertificateCredentialSpec, CertificateCredentialStatus};
use crate::graph::SecretString;

const UID: &str = "uid-sim";
const SECRET: &str = "sim-cert";

#[derive(Debug, thiserror::Error)]
#[error("crashed")]
struct Crashed;

#[derive(Default)]
struct World {
    graph: Vec<ObservedKey>,
    secret: Option<CertificateSecretState>,
    status: Option<CertificateCredentialStatus>,
    /// Writes that landed so far in this life of the process.
    writes: usize,
    /// The process dies right after this many writes (None: it does not).
    crash_after: Option<usize>,
    crashed: bool,
    generated: usize,
    now: Timestamp,
    used_proof: usize,
    /// Graph refuses uploads.
    refuse_uploads: bool,
    events: Vec<CredentialEvent>,
}

struct Sim(Mutex<World>);

impl Sim {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    /// Before an operation: a dead process does nothing.
    fn alive(&self) -> Result<(), PortError> {
        if self.world().crashed {
            Err(PortError::failed(Crashed))
        } else {
            Ok(())
        }
    }

    /// After a write landed: count it, maybe die.
    fn wrote(&self) {
        let mut w = self.world();
        w.writes += 1;
        if w.crash_after.is_some_and(|n| w.writes >= n) {
            w.crashed = true;
        }
    }
}

fn info(thumbprint: &str, now: Timestamp) -> CertificateInfo {
    CertificateInfo {
        der: thumbprint.as_bytes().to_vec(),
        thumbprint: thumbprint.to_string(),
        not_before: now - SignedDuration::from_mins(5),
        not_after: now + SignedDuration::from_hours(24 * 365),
        rsa_bits: 2048,
        public_key: Vec::new(),
    }
}

#[async_trait]
impl GraphKeys for Sim {
    async fn list(&self) -> Result<Vec<ObservedKey>, PortError> {
        self.alive()?;
        Ok(self.world().graph.clone())
    }

    async fn add(
        &self,
        certificate: &CertificateInfo,
        display_name: &str,
        signer: Option<ProofSigner<'_>>,
    ) -> Result<ObservedKey, PortError> {
        self.alive()?;
        if self.world().refuse_uploads {
            return Err(PortError::failed(Crashed));
        }
        let key = ObservedKey {
            key_id: format!("k-{}", certificate.thumbprint),
            display_name: Some(display_name.to_string()),
            thumbprint: Some(certificate.thumbprint.clone()),
            start: Some(certificate.not_before),
            end: certificate.not_after,
        };
        {
            let mut w = self.world();
            w.used_proof += usize::from(signer.is_some());
            w.graph.push(key.clone());
        }
        self.wrote();
        Ok(key)
    }

    async fn remove(
        &self,
        key_id: &str,
        _signer: Option<ProofSigner<'_>>,
    ) -> Result<(), PortError> {
        self.alive()?;
        self.world().graph.retain(|k| k.key_id != key_id);
        self.wrote();
        Ok(())
    }
}

#[async_trait]
impl CertificateSecrets for Sim {
    async fn read(&self, _name: &str) -> Result<Option<CertificateSecretState>, PortError> {
        self.alive()?;
        Ok(self.world().secret.clone())
    }

    async fn stage(&self, _name: &str, generated: &GeneratedCertificate) -> Result<(), PortError> {
        self.alive()?;
        self.world()
            .secret
            .get_or_insert_with(Default::default)
            .staged = Some(CertificateMaterial {
            info: generated.info.clone(),
            cert_pem: generated.cert_pem.clone(),
            key_pem: Some(generated.key_pem.clone()),
        });
        self.wrote();
        Ok(())
    }

    async fn delete_own(&self, _name: &str) -> Result<(), PortError> {
        self.alive()?;
        if self.world().secret.take().is_some() {
            self.wrote();
        }
        Ok(())
    }

    async fn promote(&self, _name: &str) -> Result<(), PortError> {
        self.alive()?;
        {
            let mut w = self.world();
            let secret = w.secret.get_or_insert_with(Default::default);
            if let Some(staged) = secret.staged.take() {
                secret.current = Some(staged);
            }
        }
        self.wrote();
        Ok(())
    }
}

#[async_trait]
impl StatusStore<CertificateCredentialStatus> for Sim {
    async fn read(
        &self,
        _secret_name: &str,
    ) -> Result<Option<CertificateCredentialStatus>, PortError> {
        self.alive()?;
        Ok(self.world().status.clone())
    }

    async fn write(
        &self,
        _secret_name: &str,
        entry: Option<&CertificateCredentialStatus>,
    ) -> Result<(), PortError> {
        self.alive()?;
        self.world().status = entry.cloned();
        self.wrote();
        Ok(())
    }
}

#[async_trait]
impl Generator for Sim {
    async fn generate(
        &self,
        _secret_name: &str,
        _lifetime: SignedDuration,
        now: Timestamp,
    ) -> Result<GeneratedCertificate, PortError> {
        let mut w = self.world();
        w.generated += 1;
        let thumbprint = format!("T{:02}", w.generated);
        Ok(GeneratedCertificate {
            info: info(&thumbprint, now),
            cert_pem: format!("CERT {thumbprint}"),
            key_pem: SecretString::new(format!("KEY {thumbprint}")),
        })
    }
}

#[async_trait]
impl Events for Sim {
    async fn emit(&self, event: CredentialEvent) {
        self.world().events.push(event);
    }
}

impl Clock for Sim {
    fn now(&self) -> Timestamp {
        self.world().now
    }
}

impl Fence for Sim {
    fn check(&self) -> Result<(), Fenced> {
        Ok(())
    }
}

fn spec() -> CertificateCredentialSpec {
    serde_json::from_value(serde_json::json!({
        "secretName": SECRET, "lifetime": "365d", "renewBefore": "30d", "overlap": "7d",
    }))
    .unwrap()
}

async fn pass(sim: &Sim, spec: &CertificateCredentialSpec, rotate: Option<&str>) -> bool {
    drive(sim, spec, rotate, true).await
}

/// A pass for a certificate the spec no longer declares.
async fn retired_pass(sim: &Sim) -> bool {
    let retired: CertificateCredentialSpec =
        serde_json::from_value(serde_json::json!({"secretName": SECRET})).unwrap();
    drive(sim, &retired, None, false).await
}

async fn drive(
    sim: &Sim,
    spec: &CertificateCredentialSpec,
    rotate: Option<&str>,
    declared: bool,
) -> bool {
    let result = drive_certificate(
        CertificateTarget {
            spec,
            declared,
            owner_uid: UID,
            rotate_annotation: rotate,
        },
        CertificatePorts {
            graph: sim,
            secrets: sim,
            status: sim,
            generator: sim,
            events: sim,
            clock: sim,
            fence: sim,
        },
    )
    .await;
    result.is_ok()
}

/// The invariants that hold at every point.
fn check_always(w: &World, when: &str) {
    let has = |t: &str| w.graph.iter().any(|k| k.thumbprint.as_deref() == Some(t));
    if let Some(current) = w.secret.as_ref().and_then(|s| s.current.as_ref()) {
        assert!(
            has(&current.info.thumbprint),
            "{when}: the Secret holds {} which Graph does not know",
            current.info.thumbprint
        );
    }
    for key in &w.graph {
        let t = key.thumbprint.as_deref().unwrap_or_default();
        let held = w.secret.as_ref().is_some_and(|s| {
            [&s.current, &s.staged]
                .iter()
                .any(|m| m.as_ref().is_some_and(|m| m.info.thumbprint == t))
        });
        // The certificate status still calls current after the Secret moved on (a crash between
        // promotion and completion) is the one its consumers were using: it becomes previous.
        let tracked = w.status.as_ref().is_some_and(|s| {
            s.thumbprint.as_deref() == Some(t) || s.previous.iter().any(|p| p.thumbprint == t)
        });
        assert!(
            held || tracked,
            "{when}: Graph holds {t} whose key no Secret holds"
        );
    }
}

fn check_settled(w: &World, when: &str) {
    check_always(w, when);
    let status = w.status.as_ref().expect("status");
    let secret = w.secret.as_ref().expect("secret");
    assert!(status.pending.is_none(), "{when}: still pending");
    assert!(secret.staged.is_none(), "{when}: a staged pair is left");
    let current = secret
        .current
        .as_ref()
        .expect("current")
        .info
        .thumbprint
        .clone();
    assert_eq!(
        status.thumbprint.as_deref(),
        Some(current.as_str()),
        "{when}"
    );
    let mut expected: Vec<String> = status
        .previous
        .iter()
        .map(|p| p.thumbprint.clone())
        .collect();
    expected.push(current);
    expected.sort();
    let mut graph: Vec<String> = w
        .graph
        .iter()
        .filter_map(|k| k.thumbprint.clone())
        .collect();
    graph.sort();
    assert_eq!(
        graph, expected,
        "{when}: Graph holds exactly current and previous"
    );
}

/// Runs `setup` (uncrashed), then for N = 1.. crashes the scenario's pass after N writes,
/// restarts, and checks; stops once a pass needs fewer than N writes.
async fn crash_every_write(
    name: &str,
    setup: impl Fn(&Sim) -> futures::future::BoxFuture<'_, ()>,
    rotate: Option<&str>,
) -> usize {
    let spec = spec();
    let rotated = |sim: &Sim, before: &Option<String>, when: &str| {
        let w = sim.world();
        let now = w.status.as_ref().and_then(|s| s.thumbprint.clone());
        if rotate.is_some() {
            assert_ne!(&now, before, "{when}: the requested rotation happened");
        }
    };
    for n in 1.. {
        let sim = Sim(Mutex::new(World {
            now: "2026-12-02T00:00:00Z".parse().unwrap(),
            ..World::default()
        }));
        setup(&sim).await;
        let before = sim
            .world()
            .status
            .as_ref()
            .and_then(|s| s.thumbprint.clone());
        {
            let mut w = sim.world();
            w.writes = 0;
            w.crash_after = Some(n);
        }
        let finished = pass(&sim, &spec, rotate).await;
        let crashed = sim.world().crashed;
        if !crashed {
            assert!(finished, "{name}: the pass failed without a crash");
            check_settled(&sim.world(), &format!("{name}, no crash"));
            rotated(&sim, &before, name);
            return n - 1;
        }
        check_always(&sim.world(), &format!("{name}, crash after write {n}"));
        {
            let mut w = sim.world();
            w.crashed = false;
            w.crash_after = None;
        }
        assert!(
            pass(&sim, &spec, rotate).await,
            "{name}: restart after write {n}"
        );
        check_settled(&sim.world(), &format!("{name}, restart after write {n}"));
        rotated(&sim, &before, &format!("{name}, restart after write {n}"));
    }
    unreachable!()
}

#[tokio::test]
async fn every_crash_point_of_a_first_certificate_recovers() {
    let points = crash_every_write("first certificate", |_| Box::pin(async {}), None).await;
    assert!(
        points >= 4,
        "record, stage, upload, promote, complete: {points}"
    );
}

#[tokio::test]
async fn every_crash_point_of_a_rotation_recovers_and_keeps_the_previous_certificate() {
    let points = crash_every_write(
        "rotation",
        |sim| {
            Box::pin(async move {
                assert!(pass(sim, &spec(), None).await);
            })
        },
        Some("rotate-1"),
    )
    .await;
    assert!(points >= 4, "{points}");
}

#[tokio::test]
async fn a_rotation_signs_its_upload_with_the_current_certificate() {
    let sim = Sim(Mutex::new(World {
        now: "2026-12-02T00:00:00Z".parse().unwrap(),
        ..World::default()
    }));
    assert!(pass(&sim, &spec(), None).await);
    assert_eq!(
        sim.world().used_proof,
        0,
        "the first key goes up without a proof (PATCH)"
    );
    assert!(pass(&sim, &spec(), Some("r1")).await);
    assert_eq!(
        sim.world().used_proof,
        1,
        "the next one with addKey and a proof"
    );
    let w = sim.world();
    assert_eq!(w.status.as_ref().unwrap().previous.len(), 1);
    check_settled(&w, "after rotation");
}

/// A world with a certificate rotated once (current + one previous), retired at `now`.
async fn rotated_then_retired() -> Sim {
    let sim = Sim(Mutex::new(World {
        now: "2026-12-02T00:00:00Z".parse().unwrap(),
        ..World::default()
    }));
    assert!(pass(&sim, &spec(), None).await);
    assert!(pass(&sim, &spec(), Some("r1")).await);
    assert_eq!(sim.world().graph.len(), 2);
    sim
}

#[tokio::test]
async fn a_retired_certificate_keeps_its_keys_for_the_overlap_then_removes_them_and_its_secret() {
    let sim = rotated_then_retired().await;
    assert!(retired_pass(&sim).await);
    {
        let w = sim.world();
        assert_eq!(w.graph.len(), 2, "nothing is revoked at once");
        let status = w
            .status
            .as_ref()
            .expect("the entry stays while keys remain");
        assert_eq!(status.thumbprint, None);
        assert_eq!(status.previous.len(), 2);
        assert!(
            w.secret.is_some(),
            "the Secret still serves during the overlap"
        );
    }
    // A day later: still inside the default 7-day overlap.
    sim.world().now += SignedDuration::from_hours(24);
    assert!(retired_pass(&sim).await);
    assert_eq!(sim.world().graph.len(), 2);

    sim.world().now += SignedDuration::from_hours(24 * 7);
    assert!(retired_pass(&sim).await);
    let w = sim.world();
    assert!(w.graph.is_empty(), "every key removed after the overlap");
    assert!(w.status.is_none(), "the entry is forgotten");
    assert!(w.secret.is_none(), "the operator's Secret is deleted");
}

#[tokio::test]
async fn every_crash_point_of_a_retirement_recovers() {
    for n in 1.. {
        let sim = rotated_then_retired().await;
        assert!(retired_pass(&sim).await);
        {
            let mut w = sim.world();
            w.now += SignedDuration::from_hours(24 * 8);
            w.writes = 0;
            w.crash_after = Some(n);
        }
        let finished = retired_pass(&sim).await;
        if !sim.world().crashed {
            assert!(finished);
            assert!(
                n > 3,
                "two removals, their status, the Secret, the entry: {n}"
            );
            return;
        }
        {
            let mut w = sim.world();
            // Whatever is still in Graph is tracked for removal.
            let status = w.status.clone();
            for key in &w.graph {
                assert!(
                    status.as_ref().is_some_and(|s| s
                        .previous
                        .iter()
                        .any(|p| p.key_id.as_deref() == Some(key.key_id.as_str()))),
                    "crash after write {n}: {} is tracked by nobody",
                    key.key_id
                );
            }
            w.crashed = false;
            w.crash_after = None;
        }
        assert!(retired_pass(&sim).await, "restart after write {n}");
        let w = sim.world();
        assert!(
            w.graph.is_empty() && w.status.is_none() && w.secret.is_none(),
            "write {n}"
        );
        assert!(n < 20);
    }
}

#[tokio::test]
async fn a_refused_upload_is_reported_as_a_rotation_failure() {
    let sim = Sim(Mutex::new(World {
        now: "2026-12-02T00:00:00Z".parse().unwrap(),
        refuse_uploads: true,
        ..World::default()
    }));
    assert!(!pass(&sim, &spec(), None).await, "the pass fails");
    let w = sim.world();
    assert!(
        w.events.iter().any(|e| matches!(
            e,
            CredentialEvent::CertificateAddFailed { secret_name } if secret_name == SECRET
        )),
        "{:?}",
        w.events
    );
    assert!(w.graph.is_empty());
}
