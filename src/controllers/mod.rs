//! One module per kind, each an observe → plan → execute → report pipeline (see ARCHITECTURE.md),
//! plus the pieces they share.

pub mod appregistration;
pub mod bankclient;
pub mod bankclient_reconcile;
pub mod composed_reconcile;
pub mod conditions;
pub mod context;
pub mod naaintegration;
pub mod naaintegration_reconcile;
pub mod status;
pub mod tenantmapping;
pub mod tenantmapping_reconcile;
