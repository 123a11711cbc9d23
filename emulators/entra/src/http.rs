//! A request and a response as the emulator's handlers see them, below any handler.

use bytes::Bytes;
use hyper::header::HeaderMap;
use serde_json::{Value, json};

/// A request as the handlers see it.
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Req {
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> Option<Value> {
        if self.body.is_empty() {
            return Some(json!({}));
        }
        serde_json::from_slice(&self.body).ok()
    }

    pub(crate) fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A response before it becomes HTTP; `drop_connection` closes the connection without answering.
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
    pub(crate) drop_connection: bool,
}

impl Resp {
    pub(crate) fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Bytes::from(body.to_string()),
            drop_connection: false,
        }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            drop_connection: false,
        }
    }

    pub(crate) fn dropped() -> Self {
        Self {
            status: 0,
            headers: Vec::new(),
            body: Bytes::new(),
            drop_connection: true,
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Who made a request and where, for the log.
#[derive(Default, Clone)]
pub(crate) struct LogCtx {
    pub(crate) tenant_id: Option<String>,
    pub(crate) client_id: Option<String>,
}
