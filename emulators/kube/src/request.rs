//! What a resource request addresses ([`ReqInfo`]) and its query parameters ([`Params`]), shared by
//! the HTTP layer and the state it calls.

use std::collections::HashMap;

use crate::resources::ResourceType;

/// What a resource request addresses.
pub struct ReqInfo {
    pub rt: ResourceType,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(q: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}
