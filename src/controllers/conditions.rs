//! Building status conditions: the same condition written twice keeps its `lastTransitionTime`, so a
//! resync that changes nothing produces an identical status (and the status write is skipped).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use super::desired_condition::DesiredCondition;
use super::kstatus::kstatus_conditions;
use crate::api::{Condition, Conditions, condition};

/// Merge desired conditions into the previous ones. A condition whose status did not change keeps
/// its transition time; conditions of other types are kept as they were. When `desired` has a
/// `Ready` condition, the kstatus conditions `Reconciling` and `Stalled` are derived from it
/// ([`kstatus_conditions`]) unless `desired` sets them itself, so every kind and every path that
/// reports `Ready` reports them too.
pub fn merge_conditions(
    previous: &Conditions,
    desired: &[DesiredCondition],
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> Conditions {
    let derived: Vec<DesiredCondition> = desired
        .iter()
        .find(|d| d.type_ == condition::READY)
        .filter(|_| {
            !desired
                .iter()
                .any(|d| d.type_ == condition::RECONCILING || d.type_ == condition::STALLED)
        })
        .map(|ready| kstatus_conditions(ready).to_vec())
        .unwrap_or_default();
    let desired: Vec<&DesiredCondition> = desired.iter().chain(&derived).collect();
    let mut out: Vec<Condition> = previous
        .0
        .iter()
        .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for d in desired {
        let status = if d.status { "True" } else { "False" };
        let last_transition_time = previous
            .get(d.type_)
            .filter(|p| p.status == status)
            .map(|p| p.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(Condition {
            type_: d.type_.into(),
            status: status.into(),
            reason: d.reason.as_str().into(),
            message: d.message.as_str().into(),
            observed_generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    Conditions(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = merge_conditions(
            &Conditions::default(),
            &[DesiredCondition::ok("Ready", "Synced", "all good")],
            Some(1),
            ts("2026-01-01T00:00:00Z"),
        );
        let second = merge_conditions(
            &first,
            &[DesiredCondition::ok("Ready", "Synced", "all good")],
            Some(1),
            ts("2026-01-02T00:00:00Z"),
        );
        assert_eq!(first, second);
    }

    #[test]
    fn flipped_status_moves_transition_time_and_keeps_other_types() {
        let first = merge_conditions(
            &Conditions::default(),
            &[
                DesiredCondition::ok("Ready", "Synced", "ok"),
                DesiredCondition::ok("Synced", "Applied", "ok"),
            ],
            Some(1),
            ts("2026-01-01T00:00:00Z"),
        );
        let second = merge_conditions(
            &first,
            &[DesiredCondition::failed(
                "Ready",
                "GraphBadRequest",
                "identifier URI not on a verified domain",
            )],
            Some(2),
            ts("2026-01-02T00:00:00Z"),
        );
        let ready = second.get("Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time.0, ts("2026-01-02T00:00:00Z"));
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(second.get("Synced"), first.get("Synced"));
    }

    #[test]
    fn ready_brings_the_kstatus_conditions_with_it() {
        let merged = merge_conditions(
            &Conditions::default(),
            &[DesiredCondition::failed(
                condition::READY,
                "GraphForbidden",
                "grant Application.ReadWrite.OwnedBy",
            )],
            Some(3),
            ts("2026-01-01T00:00:00Z"),
        );
        let types: Vec<&str> = merged.0.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
        let stalled = merged.get(condition::STALLED).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "GraphForbidden")
        );
        assert_eq!(stalled.observed_generation, Some(3));
        assert_eq!(merged.get(condition::RECONCILING).unwrap().status, "False");
        // Without Ready in the desired set, the previous kstatus conditions stay as they were.
        let later = merge_conditions(
            &merged,
            &[DesiredCondition::ok(condition::SYNCED, "Synced", "ok")],
            Some(3),
            ts("2026-01-02T00:00:00Z"),
        );
        assert_eq!(
            later.get(condition::STALLED),
            merged.get(condition::STALLED)
        );
    }
}
