//! One module per kind, each an observe → plan → execute → report pipeline wired to the API server in
//! its own `mod.rs` (docs/code-map.md), plus the pieces they share: the context, conditions, the
//! error by stage, events, child objects, the status writer, the controller wiring, and the registry
//! database sink's rows and condition.

pub mod appregistration;
pub mod bankclient;
pub mod children;
pub mod coalesce;
pub mod conditions;
pub mod context;
pub mod desired_condition;
pub mod error;
pub mod event_publisher;
pub mod events;
pub mod kstatus;
pub mod later;
pub mod naaintegration;
pub mod registry_sink;
pub mod status_writer;
pub mod store_ready;
pub mod tenantmapping;
pub mod wiring;
