//! `entra-operator sandbox` as a newcomer runs it: in the background, looked at with kubectl
//! through the kubeconfig it writes, stopped with SIGINT. Needs the `sandbox` feature (default).
#![cfg(feature = "sandbox")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Sandbox {
    child: Child,
    log: PathBuf,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Sandbox {
    let log = dir.join("sandbox.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_entra-operator"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("sandbox")
        .arg("--kubeconfig-out")
        .arg(dir.join("kubeconfig"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start sandbox");
    Sandbox { child, log }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("entra-operator-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `kubectl get <what> -o json` through the sandbox's kubeconfig, once it answers.
fn kubectl_items(kubeconfig: &std::path::Path, what: &str) -> Option<Vec<Value>> {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", what, "-o", "json", "--request-timeout=5s"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).ok()?;
    list["items"].as_array().cloned()
}

fn is_ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[test]
fn kubectl_sees_the_examples_bank_clients_become_ready() {
    if !std::path::Path::new(KUBECTL).exists() {
        eprintln!("skipped: {KUBECTL} not installed");
        return;
    }
    let dir = temp_dir("sandbox");
    let kubeconfig = dir.join("kubeconfig");
    let mut sandbox = start(&dir, &[]);
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(items) = kubectl_items(&kubeconfig, "bankclients") {
            let ready = items.iter().filter(|i| is_ready(i)).count();
            last = format!("{ready}/{} BankClients Ready", items.len());
            if !items.is_empty() && ready == items.len() {
                break;
            }
        }
        if let Ok(Some(status)) = sandbox.child.try_wait() {
            panic!(
                "sandbox exited early ({status}):\n{}",
                std::fs::read_to_string(&sandbox.log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{last} after 120s; sandbox output:\n{}",
            std::fs::read_to_string(&sandbox.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The generated credentials are in labelled Secrets.
    let secrets = kubectl_items(&kubeconfig, "secrets").unwrap_or_default();
    assert!(
        secrets
            .iter()
            .any(|s| s["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "entra-operator"),
        "no managed Secret"
    );
    let output = std::fs::read_to_string(&sandbox.log).unwrap_or_default();
    assert!(output.contains("kubectl get"), "{output}");

    // Ctrl-C stops it cleanly.
    Command::new("kill")
        .args(["-INT", &sandbox.child.id().to_string()])
        .status()
        .unwrap();
    let stop = Instant::now();
    loop {
        if let Some(status) = sandbox.child.try_wait().unwrap() {
            assert!(status.success(), "exit {status}");
            break;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(15),
            "no exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exit_when_ready_fails_with_the_reason_when_time_runs_out() {
    // One AppRegistration waiting for a reference that never appears.
    let dir = temp_dir("sandbox-timeout");
    let examples = dir.join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    std::fs::write(
        examples.join("waiting.yaml"),
        "apiVersion: entra.bookme.io/v1alpha1\nkind: BankClient\nmetadata:\n  name: orphan\nspec:\n  bankId: orphan\n  displayName: Orphan bank\n  api:\n    appRef:\n      name: does-not-exist\n    role: System\n  secret:\n    name: orphan-credentials\n",
    )
    .unwrap();
    let mut sandbox = start(
        &dir,
        &[
            "--exit-when-ready",
            "--timeout",
            "10s",
            "--apply",
            examples.to_str().unwrap(),
        ],
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = sandbox.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no exit");
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&sandbox.log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("Not all resources became Ready"),
        "{output}"
    );
    assert!(output.contains("BankClient orphan"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}
