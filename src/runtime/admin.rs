//! The admin HTTP server: `/livez`, `/readyz` and `/metrics` on their own port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What `/readyz` reports: ready once the caches are synced and Graph authentication works.
#[derive(Default)]
pub struct Readiness {
    caches_synced: AtomicBool,
    graph_authenticated: AtomicBool,
}

impl Readiness {
    pub fn set_caches_synced(&self) {
        self.caches_synced.store(true, Ordering::SeqCst);
    }

    pub fn set_graph_authenticated(&self, ok: bool) {
        self.graph_authenticated.store(ok, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.caches_synced.load(Ordering::SeqCst) && self.graph_authenticated.load(Ordering::SeqCst)
    }

    fn explain(&self) -> String {
        format!(
            "caches synced: {}\ngraph authenticated: {}\n",
            self.caches_synced.load(Ordering::SeqCst),
            self.graph_authenticated.load(Ordering::SeqCst)
        )
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// The admin routes, separate from binding so tests can drive them.
pub fn admin_router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { metrics, readiness })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let status = if s.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, s.readiness.explain())
}

async fn metrics_text(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Serve the admin routes until `shutdown` resolves. Returns the bound address through `bound`.
pub async fn serve_admin(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = admin_router(metrics, readiness);
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf[9..12].parse().unwrap();
        (code, buf)
    }

    #[tokio::test]
    async fn readyz_turns_ready_when_caches_and_graph_are() {
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::default());
        let (addr, _h) = serve_admin(
            "127.0.0.1:0".parse().unwrap(),
            metrics,
            readiness.clone(),
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(get_text(addr, "/livez").await.0, 200);
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        readiness.set_caches_synced();
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        readiness.set_graph_authenticated(true);
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        let (code, body) = get_text(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("entra_operator_graph_throttled_total"),
            "{body}"
        );
    }
}
