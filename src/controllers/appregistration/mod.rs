//! The AppRegistration controller. The plan stage is here: pure functions from the spec, the
//! resolved references and the observed Graph objects to the Graph writes and the status.

pub mod consent;
pub mod desired;
pub mod diff;
pub mod ids;
pub mod observed;
pub mod plan;
pub mod references;

pub use consent::{ConsentSettings, PermissionKind, RequiredPermission};
pub use observed::Observed;
pub use plan::{
    GraphOperation, Plan, PlanError, PlanInput, PlanSettings, PlannedStatus, plan_app_registration,
};
pub use references::{ReferenceLookup, ResolvedReferences, resolve_references};
