//! The process: configuration, leader election, the admin HTTP server, the sandbox; it starts the
//! controllers (each wired in its own `controllers/<kind>/mod.rs`).

pub mod admin;
pub mod allocator;
pub mod config;
pub mod leader;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
