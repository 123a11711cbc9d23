//! Controller wiring, metrics, and the admin HTTP server.

pub mod metrics;
