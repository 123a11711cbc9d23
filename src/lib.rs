//! entra-operator: keeps Microsoft Entra ID identities in the state that custom resources declare.
//!
//! Layout follows `ARCHITECTURE.md`: `api` holds the CRD types, `graph` the Microsoft Graph client,
//! `controllers` one module per kind (observe / plan / execute / report), `credentials` the
//! rotation state machine, `runtime` the controller wiring.

pub mod api;
pub mod controllers;
pub mod credentials;
pub mod graph;
pub mod runtime;
