//! `--log-format text` writes ANSI colour codes only to a terminal: a pipe (or a file, or a log
//! collector) gets plain text.

use std::process::{Command, Stdio};

#[test]
fn text_logs_into_a_pipe_carry_no_ansi_codes() {
    // No Azure identity in the environment: `run` logs its start, then stops with an error, both
    // through the text formatter, without needing a cluster.
    let out = Command::new(env!("CARGO_BIN_EXE_entra-operator"))
        .args(["run", "--log-format", "text", "--log-level", "info"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run entra-operator");
    assert!(!out.status.success(), "run without an identity must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INFO") && stderr.contains("starting entra-operator"),
        "expected a text log line on stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("ERROR"),
        "expected the error logged in text:\n{stderr}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "ANSI escape codes in piped text logs:\n{stderr:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\x1b["));
}
