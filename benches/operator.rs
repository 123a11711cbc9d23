//! Operator benchmark: N AppRegistrations (an app role, a Microsoft Graph permission with admin
//! consent, a client secret) created at once against both emulators in-process; time until all are
//! Ready, Graph requests per resource, then a resync of every resource (writes must be zero).
//!
//! `cargo bench --bench operator -- [N]` (default 100). Numbers go to BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use entra_operator::api::AppRegistration;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::Harness;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn ready_count(h: &Harness) -> usize {
    h.api::<AppRegistration>("default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|a| {
            a.status.as_ref().is_some_and(|s| {
                s.conditions.is_true("Ready")
                    && s.observed_generation == a.metadata.generation
                    && s.credentials.first().is_some_and(|c| c.pending.is_none())
            })
        })
        .count()
}

/// Waits until the emulator has seen no request for `quiet`.
async fn wait_quiet(h: &Harness, quiet: Duration) {
    let mut last = h.entra.requests().len();
    loop {
        tokio::time::sleep(quiet).await;
        let now = h.entra.requests().len();
        if now == last {
            return;
        }
        last = now;
    }
}

fn split_requests(h: &Harness) -> (usize, usize, usize) {
    let requests = h.entra.requests();
    let graph: Vec<_> = requests
        .iter()
        .filter(|r| r.template.starts_with("/v1.0"))
        .collect();
    let writes = graph.iter().filter(|r| r.method != "GET").count();
    let tokens = requests.len() - graph.len();
    (graph.len() - writes, writes, tokens)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let mut h = Harness::start().await;
    h.start_controllers();
    let rss_before = rss_mib();
    let started = Instant::now();
    for i in 0..n {
        h.apply(json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": format!("bench-{i}"), "namespace": "default"},
            "spec": {
                "displayName": format!("Bench {i}"),
                "appRoles": [{"value": "Reader", "allowedMemberTypes": ["Application"]}],
                "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph", "application": ["User.Read.All"]}],
                "grantAdminConsent": true,
                "credentials": {"passwords": [{"secretName": format!("bench-{i}-creds")}]}
            }
        }))
        .await;
    }
    loop {
        if ready_count(&h).await == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("not all Ready after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converge = started.elapsed();
    wait_quiet(&h, Duration::from_millis(500)).await;
    let (reads, writes, tokens) = split_requests(&h);
    let rss_after = rss_mib();

    // Resync: every resource reconciled again with nothing to change.
    h.entra.clear_requests();
    let api = h.api::<AppRegistration>("default");
    let resync_started = Instant::now();
    for i in 0..n {
        api.patch(
            &format!("bench-{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bench/resync": "1"}}})),
        )
        .await
        .unwrap();
    }
    // Every resource observed its application again, then nothing more happened.
    while h
        .entra
        .request_count("GET", "/v1.0/applications(uniqueName='{uniqueName}')")
        < n as u64
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_quiet(&h, Duration::from_millis(500)).await;
    let resync = resync_started.elapsed() - Duration::from_millis(500);
    let (resync_reads, resync_writes, _) = split_requests(&h);
    h.stop_controllers().await;

    let per = |x: usize| x as f64 / n as f64;
    println!("operator benchmark: {n} AppRegistrations, controller concurrency 4");
    println!(
        "  create → all Ready: {:.2} s ({:.1} resources/s)",
        converge.as_secs_f64(),
        n as f64 / converge.as_secs_f64()
    );
    println!(
        "  Graph requests per resource: {:.1} reads, {:.1} writes ({} token requests in all)",
        per(reads),
        per(writes),
        tokens
    );
    println!(
        "  resync of all: {:.2} s, {:.1} reads and {:.1} writes per resource",
        resync.as_secs_f64(),
        per(resync_reads),
        per(resync_writes)
    );
    println!(
        "  process RSS (operator + both emulators): {rss_before:.0} MiB before, {rss_after:.0} MiB after"
    );
    assert_eq!(
        resync_writes, 0,
        "a resync of unchanged resources must not write"
    );
}
