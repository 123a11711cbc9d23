//! Comparing a desired Graph JSON value with what Graph returned.
//!
//! Only what the operator manages is compared: keys that Graph adds (`origin`, `redirectUriSettings`,
//! …) are ignored, `null`, a missing key, `[]` and `false` mean the same (Graph's defaults differ
//! between objects), and collections are compared as sets because their order carries no meaning.

use serde_json::Value;

/// Whether `observed` already holds everything `desired` says.
pub fn json_matches(desired: &Value, observed: Option<&Value>) -> bool {
    let observed = match observed {
        None | Some(Value::Null) => return is_default_like(desired),
        Some(o) => o,
    };
    match (desired, observed) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, value)| json_matches(value, have.get(key))),
        (Value::Object(_), _) => false,
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return false;
            }
            let mut want: Vec<&Value> = want.iter().collect();
            let mut have: Vec<&Value> = have.iter().collect();
            want.sort_by_key(|v| collection_key(v));
            have.sort_by_key(|v| collection_key(v));
            want.iter()
                .zip(&have)
                .all(|(w, h)| json_matches(w, Some(h)))
        }
        (Value::Null, other) => is_default_like(other),
        (Value::Bool(false), Value::Null) => true,
        (want, have) => want == have,
    }
}

/// `null`, `[]`, `false`, or an object of only such values: what Graph returns for "not set".
fn is_default_like(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_default_like),
        _ => false,
    }
}

/// The sort key of a collection member: its identifying property when it has one.
fn collection_key(value: &Value) -> String {
    if let Value::Object(map) = value {
        for key in ["id", "appId", "resourceAppId", "name"] {
            if let Some(Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_rules() {
        let cases = [
            // (desired, observed, matches)
            (json!("a"), Some(json!("a")), true),
            (json!("a"), Some(json!("b")), false),
            (json!(null), None, true),
            (json!(null), Some(json!("set in the portal")), false),
            (json!([]), Some(json!(null)), true),
            (json!(["b", "a"]), Some(json!(["a", "b"])), true),
            (json!(["a"]), Some(json!(["a", "b"])), false),
            (
                json!({"redirectUris": [], "homePageUrl": null}),
                Some(json!({"redirectUris": [], "homePageUrl": null, "redirectUriSettings": []})),
                true,
            ),
            (
                json!({"implicitGrantSettings": {"enableIdTokenIssuance": false}}),
                Some(json!({"implicitGrantSettings": null})),
                true,
            ),
            (
                json!([{"id": "2", "v": 1}, {"id": "1", "v": 2}]),
                Some(json!([{"id": "1", "v": 2, "origin": "Application"}, {"id": "2", "v": 1}])),
                true,
            ),
            (
                json!([{"id": "1", "isEnabled": true}]),
                Some(json!([{"id": "1", "isEnabled": false}])),
                false,
            ),
            (json!(2), Some(json!(null)), false),
        ];
        for (i, (desired, observed, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                json_matches(&desired, observed.as_ref()),
                want,
                "case {i}: {desired} vs {observed:?}"
            );
        }
    }
}
