//! The kstatus conditions every kind writes beside `Ready`, so that Flux, Argo CD and other tools
//! built on sigs.k8s.io/cli-utils `kstatus` tell work in flight from what needs a human
//! (`docs/gitops.md`). Both are "abnormal-true" conditions and are always written:
//!
//! - `Reconciling=True` while the operator is still working: creating, rotating a secret, waiting for
//!   a reference or for replication, retrying a throttled or failing Graph;
//! - `Stalled=True` when nothing will change until a human acts: a missing Graph permission, a
//!   conflict, a request Graph refuses, a permission name no API publishes, a tenant that does not
//!   exist;
//! - both `False` when `Ready=True`, and also when `Ready=False` only because someone outside the
//!   cluster has yet to act (a customer's admin consent): kstatus then reads `Ready=False` as
//!   InProgress, Argo CD's health script shows Suspended.
//!
//! Which is which follows from `Ready`'s reason alone, so a parent that mirrors a child's reason
//! (BankClient, NaaIntegration) classifies it the same way.

use super::desired_condition::DesiredCondition;
use crate::api::condition::{RECONCILING, STALLED};

/// Where a resource stands, as far as GitOps tools care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `Ready=True`.
    Done,
    /// The operator is still working on it; it converges without anyone acting.
    InFlight,
    /// Nothing changes until a human fixes the spec, a permission or a duplicate.
    NeedsHuman,
    /// Waiting for someone outside the cluster (a customer's administrator).
    AwaitingOthers,
}

/// `Ready` reasons that need a human. Graph's refusals that retrying cannot fix (403, 400, 401, a
/// configuration the client rejects), plan errors in the spec, and the registries' conflicts.
pub const NEEDS_HUMAN: &[&str] = &[
    "GraphForbidden",
    "GraphBadRequest",
    "GraphUnauthorized",
    "GraphConfigInvalid",
    "PermissionNotFound",
    "ResourceNotFound",
    "ScopeNotDeclared",
    "AdoptedApplicationNotFound",
    "ConsentRefused",
    "AdoptionRefused",
    "OwnerNotFound",
    "SecretConflict",
    "CredentialRefusedByTenantPolicy",
    "Conflict",
    "TenantNotFound",
    "CredentialStateInvalid",
    "Invalid",
];

/// `Ready` reasons that wait for someone outside the cluster.
pub const AWAITING_OTHERS: &[&str] = &["NotConsented"];

/// Classifies a `Ready` condition. Every other `Ready=False` reason is work in flight
/// (`WaitingForReference`, `CredentialsPending`, `RotationInProgress`, `Reconciling`,
/// `ConsentUnknown`, `GraphThrottled`, `GraphServerError`, `GraphUnreachable`, ...): the operator
/// retries it by itself.
pub fn progress(ready: &DesiredCondition) -> Progress {
    let reason = ready.reason.as_str();
    if ready.status {
        Progress::Done
    } else if NEEDS_HUMAN.contains(&reason) {
        Progress::NeedsHuman
    } else if AWAITING_OTHERS.contains(&reason) {
        Progress::AwaitingOthers
    } else {
        Progress::InFlight
    }
}

/// `Reconciling` and `Stalled` for a resource whose `Ready` is `ready`. The `True` one repeats
/// `Ready`'s reason and message (what kstatus and Argo CD show); a `False` one carries `Ready`'s
/// reason and says why it is not the case.
pub fn kstatus_conditions(ready: &DesiredCondition) -> [DesiredCondition; 2] {
    let reason = ready.reason.clone();
    let both = |reconciling: Option<&str>, stalled: Option<&str>| {
        let condition = |type_, explanation: Option<&str>| match explanation {
            None => DesiredCondition::ok(type_, reason.clone(), ready.message.clone()),
            Some(why) => DesiredCondition::failed(type_, reason.clone(), why),
        };
        [
            condition(RECONCILING, reconciling),
            condition(STALLED, stalled),
        ]
    };
    match progress(ready) {
        Progress::Done => both(
            Some("Nothing in flight: the spec is applied"),
            Some("Nothing needs a human"),
        ),
        Progress::InFlight => both(
            None,
            Some("The operator is still working on it (see Reconciling)"),
        ),
        Progress::NeedsHuman => both(Some("Stopped until a human acts (see Stalled)"), None),
        Progress::AwaitingOthers => both(
            Some("Nothing in flight: waiting for someone outside the cluster (see Ready)"),
            Some("Nothing in the cluster to fix: waiting for someone outside it (see Ready)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: bool, reason: &str) -> DesiredCondition {
        DesiredCondition::new(
            crate::api::condition::READY,
            status,
            reason,
            format!("{reason} message"),
        )
    }

    /// `(Reconciling, Stalled)` statuses.
    fn statuses(ready: &DesiredCondition) -> (bool, bool) {
        let [r, s] = kstatus_conditions(ready);
        assert_eq!((r.type_, s.type_), (RECONCILING, STALLED));
        (r.status, s.status)
    }

    #[test]
    fn each_situation_sets_at_most_one_abnormal_condition() {
        assert_eq!(statuses(&ready(true, "Ready")), (false, false));
        for in_flight in [
            "WaitingForReference",
            "CredentialsPending",
            "RotationInProgress",
            "Reconciling",
            "ConsentUnknown",
            "GraphThrottled",
            "GraphServerError",
            "GraphUnreachable",
            "KubernetesApiError",
        ] {
            assert_eq!(progress(&ready(false, in_flight)), Progress::InFlight);
            assert_eq!(
                statuses(&ready(false, in_flight)),
                (true, false),
                "{in_flight}"
            );
        }
        for human in NEEDS_HUMAN {
            assert_eq!(statuses(&ready(false, human)), (false, true), "{human}");
        }
        assert_eq!(
            progress(&ready(false, "NotConsented")),
            Progress::AwaitingOthers
        );
        assert_eq!(statuses(&ready(false, "NotConsented")), (false, false));
    }

    #[test]
    fn the_true_condition_repeats_readys_reason_and_message_and_false_ones_keep_the_reason() {
        let [r, s] = kstatus_conditions(&ready(false, "GraphForbidden"));
        assert_eq!(
            (s.reason.as_str(), s.message.as_str()),
            ("GraphForbidden", "GraphForbidden message")
        );
        assert_eq!(r.reason, "GraphForbidden");
        assert!(r.message.contains("see Stalled"), "{}", r.message);
        let [r, _] = kstatus_conditions(&ready(false, "WaitingForReference"));
        assert_eq!(r.message, "WaitingForReference message");
        // Every condition has a non-empty reason and message.
        for d in [true, false] {
            for reason in ["Ready", "Conflict", "NotConsented", "CredentialsPending"] {
                for c in kstatus_conditions(&ready(d, reason)) {
                    assert!(!c.reason.is_empty() && !c.message.is_empty(), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn graph_errors_that_retrying_fixes_are_in_flight_and_refusals_need_a_human() {
        use crate::graph::GraphError;
        let refusals = ["GraphForbidden", "GraphBadRequest", "GraphUnauthorized"];
        for reason in refusals {
            assert_eq!(progress(&ready(false, reason)), Progress::NeedsHuman);
        }
        // What the Graph client itself calls transient is never Stalled.
        for transient in [
            GraphError::Server(Default::default()),
            GraphError::Transport {
                operation: "GET /applications".into(),
                message: "connection reset".into(),
            },
        ] {
            assert!(transient.is_transient());
            assert_eq!(
                progress(&ready(false, transient.reason())),
                Progress::InFlight
            );
        }
    }
}
