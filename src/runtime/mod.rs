//! Controller wiring, configuration, metrics, and the admin HTTP server.

pub mod admin;
pub mod config;
pub mod controllers;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod sandbox;
pub mod workflows;
