//! `entra-operator run` as a process: two replicas against the Kubernetes API emulator (in this
//! test process) and the Entra emulator. One leads, the other stands by and takes over when the
//! leader is killed; no credential is created twice; `/readyz` turns ready and `/metrics` shows
//! every credential's expiry; SIGTERM releases the lease.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use entra_emulator::{EmulatorConfig, EntraEmulator};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use serde_json::json;

const ADD_PASSWORD: &str = "/v1.0/applications/{id}/addPassword";
const LEASE: &str = "entra-operator-test";

struct Env {
    kube: KubeEmulator,
    entra: EntraEmulator,
    client: Client,
    dir: PathBuf,
}

impl Env {
    async fn start() -> Env {
        let kube = KubeEmulator::start(KubeEmulatorConfig::default())
            .await
            .expect("kube emulator");
        kube.apply_crds_from_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
            .expect("crds");
        let entra = EntraEmulator::start(EmulatorConfig::default())
            .await
            .expect("entra emulator");
        let dir = std::env::temp_dir().join(format!(
            "entra-operator-runtime-{}-{}",
            std::process::id(),
            kube.addr().port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        kube.write_kubeconfig(dir.join("kubeconfig")).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&kube.kubeconfig_yaml()).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = Client::try_from(config).unwrap();
        Env {
            kube,
            entra,
            client,
            dir,
        }
    }

    /// One `entra-operator run` process; its output goes to `<dir>/<identity>.log`.
    fn operator(&self, identity: &str, admin: SocketAddr) -> Operator {
        let creds = self.entra.operator_credentials();
        let log = std::fs::File::create(self.dir.join(format!("{identity}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_entra-operator"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("AZURE_TENANT_ID", &creds.tenant_id)
            .env("AZURE_CLIENT_ID", &creds.client_id)
            .env("AZURE_CLIENT_SECRET", &creds.client_secret)
            .env("AZURE_AUTHORITY_HOST", &creds.authority_host)
            .env("GRAPH_ENDPOINT", &creds.graph_endpoint)
            .env("ENTRA_CA_FILE", self.entra.ca_pem_path())
            .env("GRAPH_TOKEN_SCOPE", "https://graph.microsoft.com/.default")
            .env("LOG_FORMAT", "text")
            .env("LOG_LEVEL", "info")
            .env("ADMIN_ADDR", admin.to_string())
            .env("LEASE_NAME", LEASE)
            .env("POD_NAMESPACE", "default")
            .env("POD_NAME", identity)
            .env("RESYNC_PERIOD", "20s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start entra-operator run");
        Operator {
            child: Some(child),
            admin,
            log: self.dir.join(format!("{identity}.log")),
        }
    }

    async fn holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "default");
        leases
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    }

    async fn wait_for_holder(&self, want: Option<&str>, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let holder = self.holder().await;
            if holder.as_deref() == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "lease holder is {holder:?}, wanted {want:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn create_app(&self, name: &str, secret: &str) {
        self.kube
            .create(json!({
                "apiVersion": "entra.bookme.io/v1alpha1",
                "kind": "AppRegistration",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "displayName": name,
                    "credentials": {"passwords": [{"secretName": secret}]}
                }
            }))
            .expect("create AppRegistration");
    }

    async fn wait_ready(&self, name: &str, timeout: Duration) {
        let api: Api<entra_operator::api::AppRegistration> =
            Api::namespaced(self.client.clone(), "default");
        let start = Instant::now();
        loop {
            if let Ok(obj) = api.get(name).await
                && obj
                    .status
                    .as_ref()
                    .is_some_and(|s| s.conditions.is_true("Ready"))
            {
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), "default");
                let secret = obj.spec.credentials.passwords[0].secret_name.clone();
                if secrets.get_opt(&secret).await.ok().flatten().is_some() {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "{name} not Ready within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

struct Operator {
    child: Option<Child>,
    admin: SocketAddr,
    log: PathBuf,
}

impl Operator {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                panic!("operator did not exit within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// GET on the admin server: (status code, body); `None` when nothing listens yet.
fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.get(9..12)?.parse().ok()?;
    Some((code, buf))
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn expiry_lines(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("entra_operator_credential_expiry_timestamp_seconds{"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leads_the_other_takes_over_and_no_credential_is_rotated_twice() {
    let env = Env::start().await;
    let mut a = env.operator("replica-a", free_addr());
    env.wait_for_holder(Some("replica-a"), Duration::from_secs(30))
        .await;
    let mut b = env.operator("replica-b", free_addr());

    // Both turn ready (a standby is ready too: it can take over at any time).
    for op in [&a, &b] {
        wait_until("/readyz 200", Duration::from_secs(30), || {
            admin_get(op.admin, "/readyz").is_some_and(|(code, _)| code == 200)
        })
        .await;
        assert_eq!(admin_get(op.admin, "/livez").unwrap().0, 200);
    }

    env.create_app("first", "first-credentials");
    env.wait_ready("first", Duration::from_secs(60)).await;
    assert_eq!(env.entra.request_count("POST", ADD_PASSWORD), 1);
    assert_eq!(env.holder().await.as_deref(), Some("replica-a"));

    // The leader exposes the credential's expiry; the standby reconciled nothing.
    wait_until(
        "expiry metric on the leader",
        Duration::from_secs(10),
        || {
            admin_get(a.admin, "/metrics").is_some_and(|(_, body)| {
                expiry_lines(&body).iter().any(|l| {
                    l.contains("name=\"first\"") && l.contains("secret=\"first-credentials\"")
                })
            })
        },
    )
    .await;
    let standby_metrics = admin_get(b.admin, "/metrics").unwrap().1;
    assert!(
        expiry_lines(&standby_metrics).is_empty(),
        "standby reconciled: {standby_metrics}"
    );

    // Kill the leader without a chance to release the lease: the standby takes over in < 20 s.
    a.kill();
    let took = env
        .wait_for_holder(Some("replica-b"), Duration::from_secs(20))
        .await;
    eprintln!("replica-b took over {took:?} after replica-a was killed");

    env.create_app("second", "second-credentials");
    env.wait_ready("second", Duration::from_secs(60)).await;
    // The new leader resynced "first" without adding another password, and created one for "second".
    wait_until(
        "both expiries on the new leader",
        Duration::from_secs(30),
        || {
            admin_get(b.admin, "/metrics").is_some_and(|(_, body)| {
                let lines = expiry_lines(&body);
                lines
                    .iter()
                    .any(|l| l.contains("secret=\"first-credentials\""))
                    && lines
                        .iter()
                        .any(|l| l.contains("secret=\"second-credentials\""))
            })
        },
    )
    .await;
    // Give a rotation that should not happen the time to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.entra.request_count("POST", ADD_PASSWORD),
        2,
        "one addPassword per declared password; replica-a log:\n{}\nreplica-b log:\n{}",
        a.log(),
        b.log()
    );
    let metrics = admin_get(b.admin, "/metrics").unwrap().1;
    assert!(
        metrics.contains("entra_operator_graph_requests_total{"),
        "{metrics}"
    );

    // SIGTERM: a clean exit that hands the lease back.
    let status = b.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        b.log()
    );
    env.wait_for_holder(None, Duration::from_secs(5)).await;
    assert!(b.log().contains("released the lease"), "{}", b.log());
    let _ = std::fs::remove_dir_all(&env.dir);
    env.kube.shutdown();
}

#[test]
fn run_help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_entra-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, var) in [
        ("--namespaces", "WATCH_NAMESPACES"),
        ("--concurrency", "CONCURRENCY"),
        ("--resync", "RESYNC_PERIOD"),
        ("--unique-name-prefix", "UNIQUE_NAME_PREFIX"),
        ("--graph-endpoint", "GRAPH_ENDPOINT"),
        ("--authority-host", "AZURE_AUTHORITY_HOST"),
        ("--log-format", "LOG_FORMAT"),
        ("--log-level", "LOG_LEVEL"),
        ("--admin-addr", "ADMIN_ADDR"),
        ("--leader-election", "LEADER_ELECTION"),
        ("--lease-duration", "LEASE_DURATION"),
        ("--lease-renew-deadline", "LEASE_RENEW_DEADLINE"),
        ("--lease-retry-period", "LEASE_RETRY_PERIOD"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(help.contains(var), "{var} missing:\n{help}");
    }
}

#[test]
fn run_without_credentials_fails_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_entra-operator"))
        .arg("run")
        .env_clear()
        .env("LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AZURE_TENANT_ID"), "{err}");
}
