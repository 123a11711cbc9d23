//! The AppRegistration controller. The plan stage is here: pure functions from the spec, the
//! resolved references and the observed Graph objects to the Graph writes and the status.
//!
//! Decisions the plan makes (see each function for why):
//! - The first create writes only the application (without `{appId}` identifier URIs); the plan
//!   asks to be run again (`reobserve_after_execute`) for everything that needs Graph's IDs.
//! - Complex properties (`api`, `web`, `spa`, `publicClient`) and collections are sent whole.
//! - A property that cannot be fully rendered (unresolved reference, unknown permission) is not
//!   written, so Graph keeps its current value instead of losing entries.
//! - Owners are only added, never removed; every federated credential on the app is managed.
//! - The admin-consent URL is the v1 form `{authority}/{tenant}/adminconsent?client_id={appId}`.
//! - The executor treats "already exists" answers to grants and owners as success: Graph is
//!   eventually consistent and the plan may have seen a state from before its own last write.

pub mod consent;
pub mod desired;
pub mod diff;
pub mod ids;
pub mod observed;
pub mod plan;
pub mod reconcile;
pub mod references;

pub use consent::{ConsentSettings, PermissionKind, RequiredPermission};
pub use observed::Observed;
pub use plan::{
    GraphOperation, Plan, PlanError, PlanInput, PlanSettings, PlannedStatus, plan_app_registration,
};
pub use references::{ReferenceLookup, ResolvedReferences, resolve_references};
