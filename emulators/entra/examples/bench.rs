//! Throughput benchmark: mixed Graph traffic against an in-process emulator on loopback with
//! throttling off, so that it is clear the emulator is never what a performance test measures.
//!
//! `cargo run --release -p entra-emulator --example bench -- [SECONDS] [CONCURRENCY] [APPS]`
//!
//! Mix per request: 35% GET application by id, 20% upsert PATCH by uniqueName (204), 10%
//! addPassword, 20% GET service principal by appId, 10% list applications with `$filter`, 5%
//! GET application by appId.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use entra_emulator::{EmulatorConfig, EntraEmulator};
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let n_apps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);

    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .expect("start");
    let client = emu.client();
    let token = emu.operator_token().await.expect("token");
    let auth = format!("Bearer {token}");
    let base = emu.graph_endpoint();

    // Seed applications (with service principals) through Graph itself.
    let mut apps = Vec::new();
    for i in 0..n_apps {
        let unique = format!("bench-{i}");
        let r = client
            .send(
                "PATCH",
                &format!("{base}/v1.0/applications(uniqueName='{unique}')"),
                &[("authorization", &auth), ("prefer", "create-if-missing")],
                Some(&json!({"displayName": unique, "tags": ["bench"]})),
            )
            .await
            .expect("seed app");
        let app = r.json();
        let app_id = app["appId"].as_str().unwrap().to_string();
        client
            .send(
                "POST",
                &format!("{base}/v1.0/servicePrincipals"),
                &[("authorization", &auth)],
                Some(&json!({"appId": app_id})),
            )
            .await
            .expect("seed sp");
        apps.push((unique, app["id"].as_str().unwrap().to_string(), app_id));
    }
    emu.clear_requests();
    let apps = Arc::new(apps);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, auth, base, apps, done, errors) = (
            client.clone(),
            auth.clone(),
            base.clone(),
            apps.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w * 7919;
            while Instant::now() < deadline {
                i += 1;
                let (unique, oid, app_id) = &apps[i % apps.len()];
                let h = [("authorization", auth.as_str())];
                let t = Instant::now();
                let r = match i % 20 {
                    0..=6 => client.send("GET", &format!("{base}/v1.0/applications/{oid}"), &h, None).await,
                    7..=10 => {
                        client
                            .send(
                                "PATCH",
                                &format!("{base}/v1.0/applications(uniqueName='{unique}')"),
                                &[("authorization", auth.as_str()), ("prefer", "create-if-missing")],
                                Some(&json!({"displayName": unique, "notes": format!("n{i}")})),
                            )
                            .await
                    }
                    11 | 12 => {
                        client
                            .send(
                                "POST",
                                &format!("{base}/v1.0/applications/{oid}/addPassword"),
                                &h,
                                Some(&json!({"passwordCredential": {"displayName": "bench"}})),
                            )
                            .await
                    }
                    13..=16 => {
                        client
                            .send("GET", &format!("{base}/v1.0/servicePrincipals(appId='{app_id}')"), &h, None)
                            .await
                    }
                    17 | 18 => {
                        client
                            .send(
                                "GET",
                                &format!("{base}/v1.0/applications?$filter=uniqueName%20eq%20'{unique}'&$select=id,appId"),
                                &h,
                                None,
                            )
                            .await
                    }
                    _ => client.send("GET", &format!("{base}/v1.0/applications(appId='{app_id}')"), &h, None).await,
                };
                lat.push(t.elapsed());
                match r {
                    Ok(resp) if resp.status < 300 => {}
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let total = done.load(Ordering::Relaxed);
    println!(
        "{{\"seconds\": {elapsed:.1}, \"concurrency\": {concurrency}, \"apps\": {n_apps}, \"requests\": {total}, \"errors\": {}, \"req_per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        errors.load(Ordering::Relaxed),
        total as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
    println!("{}", emu.request_counts());
    emu.shutdown().await;
}
