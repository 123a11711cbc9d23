//! API errors: the code and `Status` body a failed request gets (worded as kube-apiserver's), and
//! the JSON responses that carry them.

use axum::body::Body;
use hyper::{Response, header};
use serde_json::{Value, json};

use crate::resources::{ResourceType, status_error};
use crate::ssa;

pub struct ApiError {
    pub code: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            body: status_error(code, reason, &message.into(), None),
        }
    }
    pub fn with_details(code: u16, reason: &str, message: impl Into<String>, d: Value) -> Self {
        ApiError {
            code,
            body: status_error(code, reason, &message.into(), Some(d)),
        }
    }
    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::with_details(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.group_qualified()),
            json!({"name": name, "group": rt.group, "kind": rt.plural}),
        )
    }
    pub(crate) fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::with_details(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.group_qualified()
            ),
            json!({"name": name, "group": rt.group, "kind": rt.plural}),
        )
    }
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }
    pub(crate) fn with_message(mut self, m: String) -> Self {
        self.body["message"] = Value::String(m);
        self
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap()
}

pub(crate) fn error_response(e: ApiError) -> Response<Body> {
    json_response(e.code, &e.body)
}

pub(crate) fn conflict_error(
    rt: &ResourceType,
    name: &str,
    conflicts: &[ssa::Conflict],
) -> ApiError {
    let n = conflicts.len();
    let mut by_manager: Vec<(String, String, Vec<String>)> = Vec::new();
    for c in conflicts {
        match by_manager.iter_mut().find(|(m, _, _)| *m == c.manager) {
            Some(e) => e.2.push(c.path.clone()),
            None => by_manager.push((
                c.manager.clone(),
                c.api_version.clone(),
                vec![c.path.clone()],
            )),
        }
    }
    let mut msg = format!(
        "Apply failed with {n} conflict{}: ",
        if n == 1 { "" } else { "s" }
    );
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, av, paths)| {
            if paths.len() == 1 {
                format!("conflict with \"{m}\" using {av}: {}", paths[0])
            } else {
                format!(
                    "conflicts with \"{m}\" using {av}:\n- {}",
                    paths.join("\n- ")
                )
            }
        })
        .collect();
    msg.push_str(&parts.join("\n"));
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version), "field": c.path}))
        .collect();
    ApiError::with_details(
        409,
        "Conflict",
        msg,
        json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
    )
}
