//! One event store, two views: core `v1` Events and `events.k8s.io/v1` Events are the same
//! objects in the API server (one storage, `events.k8s.io/v1` converted to and from the core form),
//! so an event written through either API is listed, watched and described through both — kube-rs'
//! `Recorder` writes `events.k8s.io/v1`, `kubectl describe` reads core `v1` with
//! `involvedObject.*` field selectors.
//!
//! The field mapping is the one of `pkg/apis/events/v1/conversion.go` in kubernetes/kubernetes:
//! `regarding`↔`involvedObject`, `note`↔`message`, `reportingController`↔`reportingComponent`,
//! `deprecatedSource`↔`source`, `deprecatedFirstTimestamp`↔`firstTimestamp`,
//! `deprecatedLastTimestamp`↔`lastTimestamp`, `deprecatedCount`↔`count`; the other fields
//! (`metadata`, `eventTime`, `series`, `action`, `reason`, `type`, `related`,
//! `reportingInstance`) keep their names.

use serde_json::{Map, Value};

use crate::resources::res_key;

/// (core name, events.k8s.io name)
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// The other view of an event stored under `res`: its store key and the object in that form.
pub fn mirror(res: &str, obj: &Value) -> Option<(String, Value)> {
    if res == res_key("", "events") {
        Some((res_key("events.k8s.io", "events"), to_events_v1(obj)))
    } else if res == res_key("events.k8s.io", "events") {
        Some((res_key("", "events"), to_core(obj)))
    } else {
        None
    }
}

fn rename(obj: &Value, to_new: bool, api_version: &str) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in src {
        let key = RENAMED
            .iter()
            .find_map(|(core, new)| match to_new {
                true if k == core => Some(*new),
                false if k == new => Some(*core),
                _ => None,
            })
            .unwrap_or(k.as_str());
        out.insert(key.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

pub fn to_events_v1(core: &Value) -> Value {
    rename(core, true, "events.k8s.io/v1")
}

pub fn to_core(events_v1: &Value) -> Value {
    rename(events_v1, false, "v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_two_forms_convert_both_ways() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"},
            "regarding": {"kind": "AppRegistration", "name": "a"},
            "note": "created", "reason": "Created", "type": "Normal",
            "reportingController": "entra-operator", "reportingInstance": "pod-1",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:00.000000Z"},
        });
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "a");
        assert_eq!(core["message"], "created");
        assert_eq!(core["reportingComponent"], "entra-operator");
        assert_eq!(core["series"]["count"], 2);
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(to_events_v1(&core), v1);
        assert_eq!(
            mirror(&res_key("", "events"), &core).unwrap().0,
            res_key("events.k8s.io", "events")
        );
        assert!(mirror(&res_key("", "configmaps"), &core).is_none());
    }
}
