//! kstatus, the status rules Flux (kustomize-controller's `wait`/`healthChecks`) and other
//! cli-utils users apply, ported rule by rule from sigs.k8s.io/cli-utils `pkg/kstatus/status`
//! (master as of 2026-12). Only the path a custom resource takes is ported: our kinds have no
//! type-specific rule (`core.go` `GetLegacyConditionsFn` knows built-in kinds only).

use serde_json::Value;

/// `status.go`: the statuses `Compute` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Failed,
    Current,
    Terminating,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "InProgress" => Status::InProgress,
            "Failed" => Status::Failed,
            "Current" => Status::Current,
            "Terminating" => Status::Terminating,
            _ => return None,
        })
    }
}

/// `status.go` `Result`, without the synthesized conditions (nothing here reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub message: String,
}

fn outcome(status: Status, message: impl Into<String>) -> Option<Outcome> {
    Some(Outcome {
        status,
        message: message.into(),
    })
}

/// `status.go` `Compute`: the generic properties first; then (for a kind without a legacy rule) the
/// `Ready` condition; then Current.
pub fn compute(u: &Value) -> Outcome {
    check_generic_properties(u)
        .or_else(|| check_ready_condition(u))
        .unwrap_or(Outcome {
            status: Status::Current,
            message: "Resource is current".into(),
        })
}

/// `generic.go` `checkGenericProperties`.
fn check_generic_properties(u: &Value) -> Option<Outcome> {
    // A non-empty metadata.deletionTimestamp: Terminating, before anything else.
    if let Some(ts) = u["metadata"]["deletionTimestamp"].as_str()
        && !ts.is_empty()
    {
        return outcome(Status::Terminating, "Resource scheduled for deletion");
    }
    if let Some(result) = check_generation(u) {
        return Some(result);
    }
    // The first condition, in list order, that is Reconciling=True or Stalled=True decides.
    for c in conditions(u) {
        if c["type"] == "Reconciling" && c["status"] == "True" {
            return outcome(Status::InProgress, text(&c["message"]));
        }
        if c["type"] == "Stalled" && c["status"] == "True" {
            return outcome(Status::Failed, text(&c["message"]));
        }
    }
    None
}

/// `generic.go` `checkGeneration`: only when both `metadata.generation` and
/// `status.observedGeneration` are present, a difference means InProgress.
fn check_generation(u: &Value) -> Option<Outcome> {
    let generation = u["metadata"]["generation"].as_i64()?;
    let observed = u["status"]["observedGeneration"].as_i64()?;
    if observed != generation {
        let kind = text(&u["kind"]);
        return outcome(
            Status::InProgress,
            format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    None
}

/// `status.go` `checkReadyCondition`: the first `Ready` condition with a known status decides —
/// True is Current, False or Unknown is InProgress (with the condition's message).
fn check_ready_condition(u: &Value) -> Option<Outcome> {
    for c in conditions(u) {
        if c["type"] != "Ready" {
            continue;
        }
        match c["status"].as_str() {
            Some("True") => return outcome(Status::Current, "Resource is Ready"),
            Some("False") | Some("Unknown") => {
                return outcome(Status::InProgress, text(&c["message"]));
            }
            _ => {}
        }
    }
    None
}

fn conditions(u: &Value) -> Vec<&Value> {
    u["status"]["conditions"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    //! The rules themselves, on hand-written objects (the fixtures from the e2e suite are in
    //! `fixtures.rs`).
    use super::*;
    use serde_json::json;

    fn obj(generation: i64, observed: Option<i64>, conditions: Value) -> Value {
        let mut status = json!({"conditions": conditions});
        if let Some(o) = observed {
            status["observedGeneration"] = json!(o);
        }
        json!({"kind": "BankClient", "metadata": {"name": "x", "generation": generation},
               "status": status})
    }

    fn c(type_: &str, status: &str, message: &str) -> Value {
        json!({"type": type_, "status": status, "reason": "R", "message": message})
    }

    #[test]
    fn deletion_wins_over_everything() {
        let mut o = obj(1, Some(1), json!([c("Stalled", "True", "x")]));
        o["metadata"]["deletionTimestamp"] = json!("2026-12-02T12:00:00Z");
        assert_eq!(compute(&o).status, Status::Terminating);
    }

    #[test]
    fn unobserved_generation_is_in_progress_even_when_ready() {
        let r = compute(&obj(3, Some(2), json!([c("Ready", "True", "")])));
        assert_eq!(r.status, Status::InProgress);
        assert_eq!(
            r.message,
            "BankClient generation is 3, but latest observed generation is 2"
        );
        // Without status.observedGeneration the check is skipped.
        let r = compute(&obj(3, None, json!([c("Ready", "True", "")])));
        assert_eq!(r.status, Status::Current);
    }

    #[test]
    fn abnormal_true_conditions_decide_in_list_order() {
        let r = compute(&obj(
            1,
            Some(1),
            json!([
                c("Ready", "True", ""),
                c("Stalled", "True", "stuck"),
                c("Reconciling", "True", "busy")
            ]),
        ));
        assert_eq!((r.status, r.message.as_str()), (Status::Failed, "stuck"));
        let r = compute(&obj(
            1,
            Some(1),
            json!([
                c("Reconciling", "True", "busy"),
                c("Stalled", "True", "stuck")
            ]),
        ));
        assert_eq!((r.status, r.message.as_str()), (Status::InProgress, "busy"));
    }

    #[test]
    fn ready_false_without_abnormal_conditions_is_in_progress_not_current() {
        let r = compute(&obj(
            1,
            Some(1),
            json!([
                c("Ready", "False", "waiting"),
                c("Reconciling", "False", ""),
                c("Stalled", "False", "")
            ]),
        ));
        assert_eq!(
            (r.status, r.message.as_str()),
            (Status::InProgress, "waiting")
        );
    }

    #[test]
    fn no_conditions_at_all_is_current() {
        // The corner case the kstatus README names: a resource seen before its controller wrote
        // any status looks Current.
        let o = json!({"kind": "BankClient", "metadata": {"name": "x", "generation": 1}});
        assert_eq!(compute(&o).status, Status::Current);
    }
}
