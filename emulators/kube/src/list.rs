//! List: label and field selectors, and paging with `limit` and `continue` tokens.

use serde_json::{Value, json};

use crate::api_error::{ApiError, ApiResult};
use crate::request::{Params, ReqInfo};
use crate::selectors::{LabelSelector, parse_field_selector};
use crate::state::State;

impl State {
    pub(crate) fn list(&self, ri: &ReqInfo, params: &Params) -> ApiResult<(Vec<Value>, Value)> {
        let rt = &ri.rt;
        let labels = LabelSelector::parse(params.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = parse_field_selector(params.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let (items, rv) = self.store.list(&rt.key(), ri.namespace.as_deref());
        let limit: usize = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let start_after = match params.get("continue") {
            Some(c) if !c.is_empty() => Some(decode_continue(c)?),
            _ => None,
        };
        let mut out = Vec::new();
        let mut more = false;
        let mut remaining = 0usize;
        let mut last_key = None;
        for o in items.iter() {
            let k = format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            if let Some(s) = &start_after
                && k.as_str() <= s.as_str()
            {
                continue;
            }
            if !labels.matches(o) || !matches_field_selector(&fields, o) {
                continue;
            }
            if limit > 0 && out.len() >= limit {
                more = true;
                remaining += 1;
                continue;
            }
            last_key = Some(k);
            out.push(self.output(rt, &ri.version, o));
        }
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if more && let Some(k) = last_key {
            meta["continue"] = Value::String(encode_continue(&k));
            meta["remainingItemCount"] = json!(remaining);
        }
        Ok((out, meta))
    }
}

/// Whether `o` matches a field selector; an empty selector matches without copying `o` (lists
/// and watches of thousands of objects paid a copy of each).
pub(crate) fn matches_field_selector(fields: &LabelSelector, o: &Value) -> bool {
    fields.is_empty() || fields.matches_fields(&with_ns_field(o))
}

pub(crate) fn with_ns_field(o: &Value) -> Value {
    if o["metadata"]["namespace"].is_null() {
        let mut c = o.clone();
        c["metadata"]["namespace"] = json!("");
        c
    } else {
        o.clone()
    }
}

fn encode_continue(k: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"start": k}).to_string())
}

fn decode_continue(c: &str) -> ApiResult<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
    v["start"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))
}
