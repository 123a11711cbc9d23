//! The request log: every call the emulator answered (control API excluded), with counts per method
//! and path template, so tests can assert exactly which calls an operator made.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

const MAX_ENTRIES: usize = 50_000;

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    pub time: String,
    pub method: String,
    /// Path as sent, without the query string.
    pub path: String,
    /// Path with ids replaced, e.g. `/v1.0/applications/{id}/addPassword`.
    pub template: String,
    /// Response status; 0 when the connection was dropped.
    pub status: u16,
    pub tenant_id: Option<String>,
    /// Calling application (from the token, or the token request's client_id).
    pub client_id: Option<String>,
    /// True for requests that came inside a `$batch`.
    pub in_batch: bool,
    /// The fault injected, if any.
    pub fault: Option<String>,
}

#[derive(Default)]
pub(crate) struct RequestLog {
    pub(crate) entries: VecDeque<RequestRecord>,
    pub(crate) counts: BTreeMap<(String, String), u64>,
    seq: u64,
}

impl RequestLog {
    pub(crate) fn push(&mut self, mut rec: RequestRecord) {
        self.seq += 1;
        rec.seq = self.seq;
        *self
            .counts
            .entry((rec.method.clone(), rec.template.clone()))
            .or_default() += 1;
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(rec);
    }

    pub(crate) fn count(&self, method: &str, template: &str) -> u64 {
        self.counts
            .get(&(method.to_ascii_uppercase(), template.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.counts.clear();
    }

    pub(crate) fn counts_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for ((method, template), n) in &self.counts {
            m.insert(format!("{method} {template}"), serde_json::json!(n));
        }
        serde_json::Value::Object(m)
    }
}
