//! The crash matrix (docs/reliability.md, "Crash matrix"): `entra-operator run` as a real process,
//! killed with SIGKILL right after each of its writes (`ENTRA_OPERATOR_CRASH_AFTER_WRITE=N`, the
//! `crash-hook` feature), while it creates, rotates or revokes a client secret, or rotates a
//! generated certificate; with one replica
//! (the container restarts in the same pod and takes the lease back) and with two (the standby takes
//! over the lease). The write points are enumerated, not listed: N counts up from 1 until a run
//! finishes without reaching its Nth write.
//!
//! After each crash the operator converges, and the verdict is:
//! - the Secret gets a token through `azure_identity`, as a consumer would;
//! - no operator-made credential is held by nobody: each is the Secret's (current) or a previous one
//!   in its overlap;
//! - no duplicate: exactly the credentials the scenario should leave (create 1, rotate 2, revoke 1)
//!   and exactly one `addPassword` for a create or a rotation, none for a revocation;
//! - no pending rotation left in status.
//!
//! For a certificate rotation: the Secret's `client.pem` gets a token; every operator-made key in
//! Entra is status's current or previous certificate; exactly two (old and new) and exactly one
//! `addKey` (the key pair is staged in the Secret before the upload, so no crash point loses it
//! and causes a second upload); `tls.crt` is status's current certificate.
//!
//! Each test prints its rows; with `ENTRA_CRASH_MATRIX_TABLE=<file>` it also appends them there as
//! Markdown table rows (how the table in docs/reliability.md was made).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use entra_operator::api::AppRegistration;
use entra_operator::api::appregistration::{CertificateCredentialStatus, PasswordCredentialStatus};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{
    Harness, azure_identity_token_claims, certificate_token_claims, chart_rbac, emulator_app,
    secret_data,
};

const NS: &str = "default";
const APP: &str = "crashy";
const SECRET: &str = "crashy-secret";
const LEASE: &str = "entra-operator-crash-matrix";
const ADD_PASSWORD: &str = "/v1.0/applications/{id}/addPassword";
const ADD_KEY: &str = "/v1.0/applications/{id}/addKey";
/// Overlap of a rotation in the revoke scenario: short, so the revocation comes soon.
const SHORT_OVERLAP: Duration = Duration::from_secs(4);
const CONVERGE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Create,
    Rotate,
    Revoke,
    /// A rotation of a generated certificate.
    CertificateRotate,
}

impl Scenario {
    /// The Graph action that adds a credential, counted by the verdict.
    fn add_path(self) -> &'static str {
        match self {
            Scenario::CertificateRotate => ADD_KEY,
            _ => ADD_PASSWORD,
        }
    }
}

/// Both emulators, the chart's ServiceAccount, and the operator processes run as it.
struct World {
    h: Harness,
    dir: PathBuf,
    lease_namespace: String,
}

/// One `entra-operator run` process.
struct Replica {
    child: Child,
    log: PathBuf,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The write the crash hook killed it after, if it did.
    fn crashed_after(&self) -> Option<String> {
        self.log()
            .lines()
            .find_map(|l| l.strip_prefix("crash-hook: killed after write "))
            .map(|rest| {
                rest.split_once(": ")
                    .map_or(rest, |(_, what)| what)
                    .to_string()
            })
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl World {
    async fn start(tag: &str) -> World {
        let h = Harness::start().await;
        let account = chart_rbac()
            .into_iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .expect("the chart renders a ServiceAccount");
        let lease_namespace = account["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let account_name = account["metadata"]["name"].as_str().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "entra-operator-crash-{tag}-{}-{}",
            std::process::id(),
            h.kube.addr().port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = h
            .kube
            .service_account_kubeconfig_yaml(&lease_namespace, account_name)
            .expect("the operator's kubeconfig");
        std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();
        World {
            h,
            dir,
            lease_namespace,
        }
    }

    /// Starts a replica; `crash_after` arms the crash hook.
    fn replica(&self, identity: &str, crash_after: Option<u64>, leader_election: bool) -> Replica {
        self.spawn(identity, crash_after, leader_election, "kubeconfig")
    }

    /// A leader-elected replica that reaches the API server through `kubeconfig` (in the world's
    /// directory).
    fn replica_with_kubeconfig(&self, identity: &str, kubeconfig: &str) -> Replica {
        self.spawn(identity, None, true, kubeconfig)
    }

    fn spawn(
        &self,
        identity: &str,
        crash_after: Option<u64>,
        leader_election: bool,
        kubeconfig: &str,
    ) -> Replica {
        let creds = self.h.entra.operator_credentials();
        let log = self.dir.join(format!(
            "{identity}-{}.log",
            crash_after.map_or("clean".to_string(), |n| n.to_string())
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_entra-operator"));
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", self.dir.join(kubeconfig))
            .env("AZURE_TENANT_ID", &creds.tenant_id)
            .env("AZURE_CLIENT_ID", &creds.client_id)
            .env("AZURE_CLIENT_SECRET", &creds.client_secret)
            .env("AZURE_AUTHORITY_HOST", &creds.authority_host)
            .env("GRAPH_ENDPOINT", &creds.graph_endpoint)
            .env("ENTRA_CA_FILE", self.h.entra.ca_pem_path())
            .env("GRAPH_TOKEN_SCOPE", "https://graph.microsoft.com/.default")
            .env("LOG_FORMAT", "text")
            .env("LOG_LEVEL", "info")
            .env("ADMIN_ADDR", "127.0.0.1:0")
            .env("LEADER_ELECTION", leader_election.to_string())
            .env("LEASE_NAME", LEASE)
            .env("POD_NAMESPACE", &self.lease_namespace)
            .env("POD_NAME", identity)
            .env("LEASE_DURATION", "3s")
            .env("LEASE_RENEW_DEADLINE", "2s")
            .env("LEASE_RETRY_PERIOD", "1s")
            .env("RESYNC_PERIOD", "30s")
            .env("CONCURRENCY", "2");
        if let Some(n) = crash_after {
            command.env("ENTRA_OPERATOR_CRASH_AFTER_WRITE", n.to_string());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start entra-operator run");
        Replica { child, log }
    }

    async fn holder(&self) -> Option<String> {
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(self.h.client.clone(), &self.lease_namespace);
        leases
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    }

    fn apps(&self) -> kube::Api<AppRegistration> {
        self.h.api(NS)
    }

    async fn create_app(&self, overlap: Duration, certificate: bool) {
        let credential = json!({
            "secretName": SECRET,
            "lifetime": "1h",
            "renewBefore": "10m",
            "overlap": format!("{}s", overlap.as_secs()),
        });
        let credentials = if certificate {
            json!({"certificates": [credential]})
        } else {
            json!({"passwords": [credential]})
        };
        self.h
            .apply(json!({
                "apiVersion": "entra.bookme.io/v1alpha1",
                "kind": "AppRegistration",
                "metadata": {"name": APP, "namespace": NS},
                "spec": {"displayName": APP, "credentials": credentials}
            }))
            .await;
    }

    async fn certificate(&self) -> Option<(AppRegistration, CertificateCredentialStatus)> {
        let app = self.apps().get_opt(APP).await.ok().flatten()?;
        let entry = app
            .status
            .as_ref()?
            .certificates
            .iter()
            .find(|c| c.secret_name == SECRET)?
            .clone();
        Some((app, entry))
    }

    /// The Secret's value at `key`.
    async fn secret_value(&self, key: &str) -> Option<String> {
        self.h
            .api::<Secret>(NS)
            .get_opt(SECRET)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.data)
            .and_then(|d| {
                d.get(key)
                    .map(|v| String::from_utf8_lossy(&v.0).to_string())
            })
    }

    /// The certificate counterpart of [`World::done`]: Ready, nothing pending, `tls.crt` is status's
    /// current certificate, and it is not `before`.
    async fn certificate_done(&self, before: Option<&str>) -> bool {
        let Some((app, entry)) = self.certificate().await else {
            return false;
        };
        let ready = app
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.is_true("Ready"));
        let Some(thumbprint) = entry.thumbprint.as_deref() else {
            return false;
        };
        ready
            && entry.pending.is_none()
            && entry.key_id.is_some()
            && self.secret_value("thumbprint").await.as_deref() == Some(thumbprint)
            && Some(thumbprint) != before
    }

    async fn credential(&self) -> Option<(AppRegistration, PasswordCredentialStatus)> {
        let app = self.apps().get_opt(APP).await.ok().flatten()?;
        let entry = app
            .status
            .as_ref()?
            .credentials
            .iter()
            .find(|c| c.secret_name == SECRET)?
            .clone();
        Some((app, entry))
    }

    /// Whether the scenario's work is done: Ready, nothing pending, the Secret holds status's key,
    /// and (rotate) the key changed from `before` / (revoke) no previous credential is left.
    async fn done(&self, scenario: Scenario, before: Option<&str>) -> bool {
        if scenario == Scenario::CertificateRotate {
            return self.certificate_done(before).await;
        }
        let Some((app, entry)) = self.credential().await else {
            return false;
        };
        let ready = app
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.is_true("Ready"));
        let Some(key) = entry.key_id.as_deref() else {
            return false;
        };
        let secret_key = self
            .h
            .api::<Secret>(NS)
            .get_opt(SECRET)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.data)
            .and_then(|d| {
                d.get("keyId")
                    .map(|v| String::from_utf8_lossy(&v.0).to_string())
            });
        let scenario_done = match scenario {
            Scenario::Create => true,
            Scenario::Rotate => Some(key) != before,
            Scenario::Revoke => entry.previous.is_empty(),
            Scenario::CertificateRotate => unreachable!("certificate_done"),
        };
        ready && entry.pending.is_none() && secret_key.as_deref() == Some(key) && scenario_done
    }

    async fn wait_done(&self, scenario: Scenario, before: Option<&str>, logs: &[&Replica]) {
        let start = Instant::now();
        while !self.done(scenario, before).await {
            if start.elapsed() > CONVERGE {
                let status = self
                    .apps()
                    .get_opt(APP)
                    .await
                    .ok()
                    .flatten()
                    .map(|a| a.status);
                panic!(
                    "{scenario:?} did not converge within {CONVERGE:?}; status {status:#?}\n{}",
                    logs.iter()
                        .map(|r| format!("--- {}\n{}", r.log.display(), r.log()))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Brings the world to the scenario's starting point with a replica that is never killed by
    /// the hook, then stops it. Returns the key before the scenario's write (rotate).
    async fn prepare(&self, scenario: Scenario) -> Option<String> {
        let overlap = if scenario == Scenario::Revoke {
            SHORT_OVERLAP
        } else {
            Duration::from_secs(3600)
        };
        let certificate = scenario == Scenario::CertificateRotate;
        self.create_app(overlap, certificate).await;
        if scenario == Scenario::Create {
            return None;
        }
        let prep = self.replica("prep", None, false);
        if certificate {
            self.wait_done(scenario, None, &[&prep]).await;
            return self.certificate().await.unwrap().1.thumbprint;
        }
        self.wait_done(Scenario::Create, None, &[&prep]).await;
        let key = self.credential().await.unwrap().1.key_id.unwrap();
        if scenario == Scenario::Rotate {
            drop(prep);
            return Some(key);
        }
        self.request_rotation("prep").await;
        // Revoke: the rotation done, stopped before its overlap ends.
        let start = Instant::now();
        loop {
            if let Some((_, entry)) = self.credential().await
                && entry.key_id.as_deref() != Some(key.as_str())
                && entry.pending.is_none()
                && !entry.previous.is_empty()
            {
                break;
            }
            assert!(start.elapsed() < CONVERGE, "prep rotation:\n{}", prep.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(prep);
        let (_, entry) = self.credential().await.unwrap();
        assert_eq!(
            entry.previous.len(),
            1,
            "the prep replica was stopped before the overlap ended"
        );
        // The overlap is over when the hooked replica starts: revocation is its first work.
        tokio::time::sleep(SHORT_OVERLAP + Duration::from_secs(1)).await;
        Some(entry.key_id.unwrap())
    }

    async fn request_rotation(&self, value: &str) {
        self.apps()
            .patch(
                APP,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "entra.bookme.io/rotate": value
                }}})),
            )
            .await
            .expect("annotate");
    }

    /// The verdict at rest, after the scenario converged. `what` is the write the crash followed,
    /// `adds` the number of `addPassword` calls the scenario made.
    async fn verdict(&self, scenario: Scenario, what: &str, adds: u64) -> Result<(), String> {
        if scenario == Scenario::CertificateRotate {
            return self.certificate_verdict(adds).await;
        }
        let (app, entry) = self.credential().await.ok_or("no credential status")?;
        if entry.pending.is_some() {
            return Err(format!("pending left: {:?}", entry.pending));
        }
        let data = secret_data(&self.h, NS, SECRET).await.ok_or("no Secret")?;
        azure_identity_token_claims(&self.h, &data, "https://graph.microsoft.com/.default")
            .await
            .map_err(|e| format!("the Secret gets no token: {e}"))?;
        let app_id = app
            .status
            .as_ref()
            .and_then(|s| s.app_id.clone())
            .ok_or("no appId")?;
        let graph_app = emulator_app(&self.h, &app_id).ok_or("no application in Entra")?;
        let ours: Vec<&Value> = graph_app["passwordCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["displayName"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("entra-operator:"))
            })
            .collect();
        let mut known: Vec<&str> = entry.previous.iter().map(|p| p.key_id.as_str()).collect();
        known.extend(entry.key_id.as_deref());
        for c in &ours {
            let key = c["keyId"].as_str().unwrap_or_default();
            if !known.contains(&key) {
                return Err(format!("orphan: credential {key} is held by nobody"));
            }
        }
        let expected = match scenario {
            Scenario::Create | Scenario::Revoke => 1,
            Scenario::Rotate | Scenario::CertificateRotate => 2,
        };
        if ours.len() != expected {
            return Err(format!(
                "{} operator-made credentials in Entra, expected {expected}",
                ours.len()
            ));
        }
        // A crash right after `addPassword` loses the value Graph returned once: that credential is
        // removed (held by nobody) and a second one added. Any other crash point adds nothing extra.
        let expected_adds = match scenario {
            Scenario::Revoke => 0,
            _ if what.ends_with("/addPassword") => 2,
            _ => 1,
        };
        if adds != expected_adds {
            return Err(format!(
                "{adds} addPassword calls, expected {expected_adds}"
            ));
        }
        Ok(())
    }

    /// The verdict at rest after a certificate rotation (see the module documentation).
    async fn certificate_verdict(&self, adds: u64) -> Result<(), String> {
        let (app, entry) = self.certificate().await.ok_or("no certificate status")?;
        if entry.pending.is_some() {
            return Err(format!("pending left: {:?}", entry.pending));
        }
        let data = secret_data(&self.h, NS, SECRET).await.ok_or("no Secret")?;
        if data.keys().any(|k| k.starts_with("tls-next")) {
            return Err("a staged key pair is left in the Secret".into());
        }
        certificate_token_claims(&self.h, &data, "https://graph.microsoft.com/.default")
            .await
            .map_err(|e| format!("the Secret's certificate gets no token: {e}"))?;
        let app_id = app
            .status
            .as_ref()
            .and_then(|s| s.app_id.clone())
            .ok_or("no appId")?;
        let graph_app = emulator_app(&self.h, &app_id).ok_or("no application in Entra")?;
        let ours: Vec<&Value> = graph_app["keyCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["displayName"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("entra-operator:"))
            })
            .collect();
        let mut known: Vec<&str> = entry
            .previous
            .iter()
            .filter_map(|p| p.key_id.as_deref())
            .collect();
        known.extend(entry.key_id.as_deref());
        for c in &ours {
            let key = c["keyId"].as_str().unwrap_or_default();
            if !known.contains(&key) {
                return Err(format!("orphan: key {key} is held by nobody"));
            }
        }
        if ours.len() != 2 {
            return Err(format!(
                "{} operator-made keys in Entra, expected 2 (old and new)",
                ours.len()
            ));
        }
        if adds != 1 {
            return Err(format!("{adds} addKey calls, expected 1"));
        }
        Ok(())
    }
}

/// One cell: a fresh world, crash after write `n`, recover, judge. `None` when the run finished
/// before its `n`th write (the enumeration is complete).
async fn run_case(
    scenario: Scenario,
    replicas: u8,
    n: u64,
) -> Option<(String, Result<(), String>)> {
    let world = World::start(&format!("{scenario:?}-{replicas}-{n}")).await;
    let before = world.prepare(scenario).await;
    let adds_before = world.h.entra.request_count("POST", scenario.add_path());
    if matches!(scenario, Scenario::Rotate | Scenario::CertificateRotate) {
        world.request_rotation("matrix").await;
    }
    let hooked = world.replica("replica-a", Some(n), true);
    // The standby starts once the hooked replica leads (or already died), so it is the one killed.
    let standby = if replicas == 2 {
        let start = Instant::now();
        while world.holder().await.as_deref() != Some("replica-a")
            && hooked.crashed_after().is_none()
        {
            assert!(
                start.elapsed() < CONVERGE,
                "replica-a never led:\n{}",
                hooked.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(world.replica("replica-b", None, true))
    } else {
        None
    };
    // Until it dies, or finishes the scenario and stays alive a while longer.
    let start = Instant::now();
    let mut done_since: Option<Instant> = None;
    let crashed = loop {
        if let Some(what) = hooked.crashed_after() {
            break Some(what);
        }
        if world.done(scenario, before.as_deref()).await {
            let since = *done_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                break None;
            }
        }
        assert!(
            start.elapsed() < CONVERGE,
            "write {n}: neither crashed nor converged:\n{}",
            hooked.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let what = crashed?;
    // The killed replica restarts in the same pod (one replica), or the standby takes over (two).
    let recovery = match standby {
        Some(standby) => standby,
        None => world.replica("replica-a", None, true),
    };
    world
        .wait_done(scenario, before.as_deref(), &[&hooked, &recovery])
        .await;
    let adds = world.h.entra.request_count("POST", scenario.add_path()) - adds_before;
    let verdict = world.verdict(scenario, &what, adds).await;
    drop(recovery);
    Some((what, verdict))
}

async fn matrix(scenario: Scenario, replicas: u8) {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for n in 1.. {
        let Some((what, verdict)) = run_case(scenario, replicas, n).await else {
            break;
        };
        let cell = match &verdict {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                failures.push(format!("write {n} ({what}): {e}"));
                format!("FAILED: {e}")
            }
        };
        rows.push(format!(
            "| {scenario:?} | {replicas} | {n} | `{what}` | {cell} |"
        ));
        assert!(
            n < 40,
            "more than 40 write points: the enumeration does not end"
        );
    }
    println!("{}", rows.join("\n"));
    if let Ok(path) = std::env::var("ENTRA_CRASH_MATRIX_TABLE") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{}", rows.join("\n")).unwrap();
    }
    assert!(
        rows.len() >= 2,
        "{scenario:?} crashed at fewer than 2 write points: the hook is not armed"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_create_one_replica() {
    matrix(Scenario::Create, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_create_two_replicas() {
    matrix(Scenario::Create, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_rotation_one_replica() {
    matrix(Scenario::Rotate, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_rotation_two_replicas() {
    matrix(Scenario::Rotate, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_certificate_rotation_one_replica() {
    matrix(Scenario::CertificateRotate, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_certificate_rotation_two_replicas() {
    matrix(Scenario::CertificateRotate, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_revocation_one_replica() {
    matrix(Scenario::Revoke, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_write_of_a_revocation_two_replicas() {
    matrix(Scenario::Revoke, 2).await;
}

/// A TCP proxy between one replica and the API server that can partition it: `cut` drops the
/// connections in flight and black-holes new ones (accepted, never answered), as a network
/// partition looks to the replica; `heal` lets traffic through again.
struct Partition {
    addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pumps: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    held: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
}

impl Partition {
    async fn start(target: std::net::SocketAddr) -> Partition {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let partition = Partition {
            addr: listener.local_addr().unwrap(),
            cut: Default::default(),
            pumps: Default::default(),
            held: Default::default(),
        };
        let (cut, pumps, held) = (
            partition.cut.clone(),
            partition.pumps.clone(),
            partition.held.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut.load(Ordering::SeqCst) {
                    held.lock().unwrap().push(inbound);
                    continue;
                }
                let pump = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                pumps.lock().unwrap().push(pump);
            }
        });
        partition
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for pump in self.pumps.lock().unwrap().drain(..) {
            pump.abort();
        }
    }

    fn heal(&self) {
        self.held.lock().unwrap().clear();
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The leader is cut off from the API server in the middle of a rotation (its `addPassword` still
/// reaches Graph) while the standby takes over: the cut-off leader's fence closes before its next
/// write, the standby finishes the rotation, nothing is rotated twice or orphaned, and once the
/// partition heals the old leader writes no stale status or Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_writes_nothing_after_the_standby_takes_over() {
    let world = World::start("partition").await;
    let partition = Partition::start(world.h.kube.addr()).await;
    let direct = std::fs::read_to_string(world.dir.join("kubeconfig")).unwrap();
    let proxied = direct.replace(
        &format!("127.0.0.1:{}", world.h.kube.addr().port()),
        &partition.addr.to_string(),
    );
    assert_ne!(
        direct, proxied,
        "the kubeconfig names the API server by 127.0.0.1:<port>"
    );
    std::fs::write(world.dir.join("kubeconfig-proxied"), proxied).unwrap();

    world.create_app(Duration::from_secs(3600), false).await;
    let leader = world.replica_with_kubeconfig("replica-a", "kubeconfig-proxied");
    world.wait_done(Scenario::Create, None, &[&leader]).await;
    assert_eq!(world.holder().await.as_deref(), Some("replica-a"));
    let standby = world.replica("replica-b", None, true);
    let key = world.credential().await.unwrap().1.key_id.unwrap();
    let adds_before = world.h.entra.request_count("POST", ADD_PASSWORD);

    // A slow addPassword, a rotation, and the partition while the leader waits for Graph.
    world.h.entra.add_fault(
        entra_emulator::FaultRule::new(
            "POST",
            ADD_PASSWORD,
            entra_emulator::FaultKind::Delay { ms: 1500 },
        )
        .times(1),
    );
    world.request_rotation("partition").await;
    let start = Instant::now();
    while world
        .credential()
        .await
        .is_none_or(|(_, c)| c.pending.is_none())
    {
        assert!(
            start.elapsed() < CONVERGE,
            "no pending rotation:\n{}",
            leader.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    partition.cut();

    // The standby takes over and finishes the rotation.
    let start = Instant::now();
    while world.holder().await.as_deref() != Some("replica-b") {
        assert!(
            start.elapsed() < CONVERGE,
            "no takeover:\n{}",
            standby.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world
        .wait_done(Scenario::Rotate, Some(&key), &[&leader, &standby])
        .await;
    // One more pass of the new leader, as a resync would make, settles what the old one left.
    world
        .apps()
        .patch(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/nudge": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    world
        .wait_done(Scenario::Rotate, Some(&key), &[&leader, &standby])
        .await;

    // Heal: the old leader must not write what it planned before the partition.
    let (app, entry) = world.credential().await.unwrap();
    let version = app.metadata.resource_version.clone();
    partition.heal();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (app_after, entry_after) = world.credential().await.unwrap();
    assert_eq!(
        (
            app_after.metadata.resource_version,
            entry_after.key_id.clone()
        ),
        (version, entry.key_id.clone()),
        "something wrote the resource after the partition healed:\nreplica-a:\n{}\nreplica-b:\n{}",
        leader.log(),
        standby.log()
    );
    let adds = world.h.entra.request_count("POST", ADD_PASSWORD) - adds_before;
    let what = if adds == 2 { "/addPassword" } else { "" };
    world
        .verdict(Scenario::Rotate, what, adds)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nreplica-a:\n{}\nreplica-b:\n{}",
                leader.log(),
                standby.log()
            )
        });
    assert!(
        leader.log().contains("fence") || leader.log().contains("leadership"),
        "the old leader says why it stopped:\n{}",
        leader.log()
    );
}
