//! entra-operator: keeps Microsoft Entra ID identities in the state that custom resources declare.
//!
//! Layout (docs/code-map.md): `api` holds the CRD types, `graph` the Microsoft Graph client,
//! `labels` and `metrics` what every layer stamps and counts, `credentials` the rotation state
//! machine, `controllers` one module per kind (observe / plan / execute / report, and its wiring),
//! `fence` the leader's write fence, `runtime` the process: configuration, leader election, the admin server, the sandbox;
//! `report` the `entra-operator report` command.
//! `registry` the optional database copy of the bank registries.

pub mod api;
pub mod controllers;
pub mod crash;
pub mod credentials;
pub mod fence;
pub mod graph;
pub mod labels;
pub mod metrics;
pub mod policy;
pub mod registry;
pub mod report;
pub mod runtime;
pub mod webhook;
