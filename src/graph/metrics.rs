//! Hooks for counting Graph traffic. The client calls a [`GraphObserver`]; the runtime implements
//! it on its Prometheus registry. [`GraphMetrics`] is a dependency-free default with atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Receives one call per HTTP attempt and per notable event. Labels are static strings or status
/// codes, so cardinality stays bounded.
pub trait GraphObserver: Send + Sync + 'static {
    /// One HTTP attempt finished; `status` is `None` for a transport failure.
    fn request(&self, method: &'static str, status: Option<u16>, elapsed: Duration) {
        let _ = (method, status, elapsed);
    }
    /// Graph answered 429 (also counted per inner `$batch` response).
    fn throttled(&self, method: &'static str) {
        let _ = method;
    }
    /// A request is tried again; `reason` is `server_error`, `transport`, `throttled` or
    /// `replication`.
    fn retried(&self, reason: &'static str) {
        let _ = reason;
    }
    /// The client-side limiter delayed a request.
    fn rate_limited(&self, waited: Duration) {
        let _ = waited;
    }
}

/// Counts in atomics; read them for tests or wire them to a registry.
#[derive(Debug, Default)]
pub struct GraphMetrics {
    pub requests: AtomicU64,
    pub success: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub transport_errors: AtomicU64,
    pub throttled: AtomicU64,
    pub retries: AtomicU64,
    pub replication_retries: AtomicU64,
    pub rate_limited: AtomicU64,
    pub rate_limited_millis: AtomicU64,
}

impl GraphMetrics {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl GraphObserver for GraphMetrics {
    fn request(&self, _method: &'static str, status: Option<u16>, _elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let counter = match status {
            None => &self.transport_errors,
            Some(s) if s < 400 => &self.success,
            Some(s) if s < 500 => &self.client_errors,
            Some(_) => &self.server_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn throttled(&self, _method: &'static str) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    fn retried(&self, reason: &'static str) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if reason == "replication" {
            self.replication_retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn rate_limited(&self, waited: Duration) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        self.rate_limited_millis
            .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Ignores everything.
#[derive(Debug, Default)]
pub struct NoopObserver;

impl GraphObserver for NoopObserver {}
