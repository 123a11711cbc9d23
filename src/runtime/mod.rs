//! Controller wiring, configuration, metrics, and the admin HTTP server.

pub mod admin;
pub mod config;
pub mod controllers;
pub mod metrics;
pub mod leader;
pub mod run;
pub mod sandbox;
pub mod workflows;
