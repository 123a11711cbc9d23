//! `kube-emulator-bench`: holds 10,000 custom resources with a watch open, measuring write
//! throughput over loopback HTTP and the process's resident memory.
//!
//! `cargo run --release -p kube-emulator --bin kube-emulator-bench [-- COUNT WORKERS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use serde_json::json;
use tokio::net::TcpStream;

fn crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.bench.example.com"},
        "spec": {"group": "bench.example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"],
                        "x-kubernetes-validations": [{"rule": "self.size >= 0 && self.owner.startsWith('team-')", "message": "bad"}],
                        "properties": {
                            "size": {"type": "integer", "maximum": 1000000},
                            "owner": {"type": "string", "pattern": "^[a-z-]+$", "default": "team-x"},
                            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

async fn send(s: &mut Sender, method: &str, path: &str, ct: &str, body: Vec<u8>) -> u16 {
    s.ready().await.unwrap();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", ct)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

async fn phase(
    addr: std::net::SocketAddr,
    count: usize,
    workers: usize,
    f: impl Fn(usize) -> (&'static str, String, &'static str, Vec<u8>) + Send + Sync + 'static,
) -> f64 {
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let f = f.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    break;
                }
                let (m, p, ct, b) = f(i);
                let code = send(&mut s, m, &p, ct, b).await;
                assert!(code < 300, "{m} {p}: {code}");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let workers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let emu = KubeEmulator::start(KubeEmulatorConfig::default())
        .await
        .unwrap();
    emu.create_crd(crd()).unwrap();
    let addr = emu.addr();
    let rss_start = rss_kib();

    // A watch, open for the whole run, counting events.
    let seen = Arc::new(AtomicUsize::new(0));
    {
        let seen = seen.clone();
        let mut s = connect(addr).await;
        let req = Request::builder()
            .uri("/apis/bench.example.com/v1/gadgets?watch=true&allowWatchBookmarks=true&timeoutSeconds=3600")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = s.send_request(req).await.unwrap();
        tokio::spawn(async move {
            let mut body = resp.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    let n = d.iter().filter(|b| **b == b'\n').count();
                    seen.fetch_add(n, Ordering::SeqCst);
                }
            }
        });
    }
    let creates = phase(addr, count, workers, |i| {
        let body = json!({"apiVersion": "bench.example.com/v1", "kind": "Gadget",
            "metadata": {"name": format!("g-{i:05}"), "labels": {"bench": "yes"}},
            "spec": {"size": i, "tags": ["a", "b"]}});
        (
            "POST",
            "/apis/bench.example.com/v1/namespaces/default/gadgets".to_string(),
            "application/json",
            body.to_string().into_bytes(),
        )
    })
    .await;
    let patches = phase(addr, count, workers, |i| {
        let body = json!({"spec": {"size": i + 1}});
        (
            "PATCH",
            format!("/apis/bench.example.com/v1/namespaces/default/gadgets/g-{i:05}"),
            "application/merge-patch+json",
            body.to_string().into_bytes(),
        )
    })
    .await;
    let applies = phase(addr, count, workers, |i| {
        let body = json!({"apiVersion": "bench.example.com/v1", "kind": "Gadget", "metadata": {"name": format!("g-{i:05}")},
            "status": {"phase": "Ready", "observed": i}});
        ("PATCH", format!("/apis/bench.example.com/v1/namespaces/default/gadgets/g-{i:05}/status?fieldManager=bench&force=true"), "application/apply-patch+yaml", body.to_string().into_bytes())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::SeqCst) < 3 * count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list_start = Instant::now();
    let (items, _) = emu.state().store.list("bench.example.com/gadgets", None);
    let list_ms = list_start.elapsed().as_secs_f64() * 1000.0;
    let rss_end = rss_kib();
    println!("custom resources held:        {}", items.len());
    println!(
        "watch events received:        {} (expected {})",
        seen.load(Ordering::SeqCst),
        3 * count
    );
    println!("creates/s (POST, validated):  {creates:.0}");
    println!("merge patches/s:              {patches:.0}");
    println!("status applies/s (SSA):       {applies:.0}");
    println!("in-memory list of all:        {list_ms:.1} ms");
    println!(
        "resident memory (VmRSS):      {} MiB at start, {} MiB with {} objects",
        rss_start / 1024,
        rss_end / 1024,
        items.len()
    );
    emu.shutdown();
}
