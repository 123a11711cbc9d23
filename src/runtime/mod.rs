//! Controller wiring, metrics, and the admin HTTP server.

pub mod admin;
pub mod metrics;
