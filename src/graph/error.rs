//! Graph errors as typed variants, so controllers decide by kind (retry later, report a missing
//! permission, surface Graph's message) instead of parsing strings.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// What Graph said about a failed request: enough for a condition message and for support to find
/// the request in Entra's logs (`request-id`), never a body of a credential call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// HTTP status, 0 when no response was received.
    pub status: u16,
    /// Graph's error code, e.g. `Request_ResourceNotFound`.
    pub code: String,
    /// Graph's human-readable message.
    pub message: String,
    /// The `request-id` header or `innerError.request-id`.
    pub request_id: Option<String>,
    /// The request as `METHOD /path/template`, e.g. `PATCH /applications(uniqueName=…)`.
    pub operation: String,
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.operation, self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request-id {id})")?;
        }
        Ok(())
    }
}

/// An error from the Graph client.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// 404: the object does not exist (after replication-delay retries, where they apply).
    #[error("not found: {0}")]
    NotFound(ErrorDetail),
    /// An object created moments ago is not visible yet (a 404 on it, or "does not reference a
    /// valid application object"): Entra's replicas have not caught up. Not waited out in place
    /// (unless the retry policy says so): the controller requeues shortly, so its worker is free.
    #[error("waiting for Entra replication: {0}")]
    Replicating(ErrorDetail),
    /// 409, or a 400 saying the object or reference already exists.
    #[error("conflict: {0}")]
    Conflict(ErrorDetail),
    /// 429 after the retry budget was used; `retry_after` is Graph's last hint.
    #[error("throttled by Graph (retry after {retry_after:?}): {detail}")]
    Throttled {
        retry_after: Option<Duration>,
        detail: ErrorDetail,
    },
    /// 403: the operator's identity lacks a permission or ownership.
    #[error("forbidden: {detail}{}", permission_hint(.likely_missing_permission))]
    Forbidden {
        detail: ErrorDetail,
        /// The least-privileged Graph application permission that would most likely allow the call.
        likely_missing_permission: Option<&'static str>,
    },
    /// 400 (other than the replication-delay case): Graph rejected the request; its message says why.
    #[error("bad request: {0}")]
    BadRequest(ErrorDetail),
    /// 401 from Graph: the token was rejected.
    #[error("unauthorized: {0}")]
    Unauthorized(ErrorDetail),
    /// The operator could not get a token for Graph (wrong secret, unknown app, unreachable
    /// authority). `message` comes from the token endpoint (AADSTS code and description).
    #[error("authentication failed: {message}")]
    Authentication { message: String },
    /// 5xx after retries.
    #[error("Graph server error: {0}")]
    Server(ErrorDetail),
    /// Connection, TLS or timeout failure after retries; `message` has no request body.
    #[error("transport error on {operation}: {message}")]
    Transport { operation: String, message: String },
    /// Any other status (e.g. 410 Gone for an expired delta token, 412).
    #[error("unexpected response: {0}")]
    Unexpected(ErrorDetail),
    /// A 2xx response whose body did not match the expected shape.
    #[error("could not decode the response of {operation}: {message}")]
    Decode { operation: String, message: String },
    /// Invalid client configuration (missing env var, unreadable CA or certificate file).
    #[error("invalid Graph client configuration: {0}")]
    Config(String),
}

fn permission_hint(permission: &Option<&'static str>) -> String {
    match permission {
        Some(p) => format!(
            " (the operator's identity most likely lacks the Graph application permission {p}, or does not own the object)"
        ),
        None => String::new(),
    }
}

impl GraphError {
    /// A short CamelCase reason for Kubernetes conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            GraphError::NotFound(_) => "GraphNotFound",
            GraphError::Replicating(_) => "GraphReplicating",
            GraphError::Conflict(_) => "GraphConflict",
            GraphError::Throttled { .. } => "GraphThrottled",
            GraphError::Forbidden { .. } => "GraphForbidden",
            GraphError::BadRequest(_) => "GraphBadRequest",
            GraphError::Unauthorized(_) => "GraphUnauthorized",
            GraphError::Authentication { .. } => "GraphAuthenticationFailed",
            GraphError::Server(_) => "GraphServerError",
            GraphError::Transport { .. } => "GraphUnreachable",
            GraphError::Unexpected(_) => "GraphUnexpectedResponse",
            GraphError::Decode { .. } => "GraphDecodeError",
            GraphError::Config(_) => "GraphConfigInvalid",
        }
    }

    /// A short snake_case category for metric labels (bounded cardinality).
    pub fn category(&self) -> &'static str {
        match self {
            GraphError::NotFound(_) => "graph_not_found",
            GraphError::Replicating(_) => "graph_replicating",
            GraphError::Conflict(_) => "graph_conflict",
            GraphError::Throttled { .. } => "graph_throttled",
            GraphError::Forbidden { .. } => "graph_forbidden",
            GraphError::BadRequest(_) => "graph_bad_request",
            GraphError::Unauthorized(_) => "graph_unauthorized",
            GraphError::Authentication { .. } => "graph_authentication",
            GraphError::Server(_) => "graph_server_error",
            GraphError::Transport { .. } => "graph_transport",
            GraphError::Unexpected(_) => "graph_unexpected",
            GraphError::Decode { .. } => "graph_decode",
            GraphError::Config(_) => "graph_config",
        }
    }

    /// Whether waiting and trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. }
                | GraphError::Server(_)
                | GraphError::Transport { .. }
                | GraphError::Authentication { .. }
                | GraphError::Replicating(_)
        )
    }

    /// Whether Graph refused a credential because of the tenant's app management policy (a 400
    /// with a code such as `CredentialInvalidLifetimeAsPerAppPolicy`, message "Credential lifetime
    /// exceeds the max value allowed as per assigned policy …"). Retrying cannot help; an
    /// administrator must change the policy, or the spec its lifetime.
    pub fn is_tenant_credential_policy(&self) -> bool {
        matches!(self, GraphError::BadRequest(d)
            if d.code.ends_with("AsPerAppPolicy") || d.message.contains("as per assigned policy"))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::NotFound(_))
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, GraphError::Conflict(_))
    }

    /// Graph's detail, when the error came from a Graph response.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            GraphError::NotFound(d)
            | GraphError::Replicating(d)
            | GraphError::Conflict(d)
            | GraphError::BadRequest(d)
            | GraphError::Unauthorized(d)
            | GraphError::Server(d)
            | GraphError::Unexpected(d) => Some(d),
            GraphError::Throttled { detail, .. } | GraphError::Forbidden { detail, .. } => {
                Some(detail)
            }
            _ => None,
        }
    }

    /// How long Graph asked us to wait, for a requeue delay.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `Result<T, GraphError>` → `Result<Option<T>, GraphError>` with NotFound as `None`, for lookups
/// where absence is an answer rather than a failure.
pub trait OptionalExt<T> {
    fn optional(self) -> Result<Option<T>, GraphError>;
}

impl<T> OptionalExt<T> for Result<T, GraphError> {
    fn optional(self) -> Result<Option<T>, GraphError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(GraphError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Graph's error body: `{"error": {"code", "message", "innerError": {"request-id", …}}}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct GraphErrorBody {
    pub error: GraphErrorPayload,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GraphErrorPayload {
    pub code: String,
    pub message: String,
    pub inner_error: Option<GraphInnerError>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct GraphInnerError {
    pub date: Option<String>,
    #[serde(rename = "request-id")]
    pub request_id: Option<String>,
    #[serde(rename = "client-request-id")]
    pub client_request_id: Option<String>,
}

/// Which permission a call needs, so a 403 can name what is most likely missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Writes to applications the operator owns, their credentials, owners and service principals.
    ApplicationReadWriteOwnedBy,
    /// Reads of applications and service principals the operator does not own.
    ApplicationReadAll,
    /// `appRoleAssignedTo` writes (granting application permissions).
    AppRoleAssignmentReadWriteAll,
    /// `oauth2PermissionGrants` (delegated admin consent).
    DelegatedPermissionGrantReadWriteAll,
    /// `findTenantInformationByTenantId`.
    CrossTenantInformationReadBasicAll,
    /// `GET /users/{userPrincipalName}` (owners named by user principal name; opt-in).
    UserReadAll,
    /// With `Application.ReadWrite.OwnedBy`: adding an owner to a service principal.
    DirectoryReadAll,
    /// Not a Graph permission (token endpoint, `$batch` envelope).
    None,
}

impl Permission {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Permission::ApplicationReadWriteOwnedBy => Some("Application.ReadWrite.OwnedBy"),
            Permission::ApplicationReadAll => Some("Application.Read.All"),
            Permission::AppRoleAssignmentReadWriteAll => Some("AppRoleAssignment.ReadWrite.All"),
            Permission::DelegatedPermissionGrantReadWriteAll => {
                Some("DelegatedPermissionGrant.ReadWrite.All")
            }
            Permission::CrossTenantInformationReadBasicAll => {
                Some("CrossTenantInformation.ReadBasic.All")
            }
            Permission::UserReadAll => Some("User.Read.All"),
            Permission::DirectoryReadAll => Some("Directory.Read.All"),
            Permission::None => None,
        }
    }
}

/// True for the 400 Graph returns while a just-created application has not reached the replica
/// that serves service principal writes.
pub(crate) fn is_no_backing_application(code: &str, message: &str) -> bool {
    code == "NoBackingApplicationObject"
        || message.contains("does not reference a valid application object")
}

/// Maps a non-success Graph response to a typed error. `body` is the raw response body.
pub(crate) fn map_status(
    status: u16,
    body: &[u8],
    request_id: Option<String>,
    retry_after: Option<Duration>,
    operation: String,
    permission: Permission,
) -> GraphError {
    let parsed: GraphErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let payload = parsed.error;
    let request_id = request_id.or_else(|| payload.inner_error.and_then(|i| i.request_id));
    let detail = ErrorDetail {
        status,
        code: payload.code,
        message: payload.message,
        request_id,
        operation,
    };
    match status {
        400 if is_duplicate(&detail) => GraphError::Conflict(detail),
        400 => GraphError::BadRequest(detail),
        401 => GraphError::Unauthorized(detail),
        403 => GraphError::Forbidden {
            detail,
            likely_missing_permission: permission.name(),
        },
        404 => GraphError::NotFound(detail),
        409 => GraphError::Conflict(detail),
        429 => GraphError::Throttled {
            retry_after,
            detail,
        },
        500..=599 => GraphError::Server(detail),
        _ => GraphError::Unexpected(detail),
    }
}

/// Graph reports some duplicates as 400 rather than 409 (an owner already present, an app role
/// assignment that exists); they are conflicts for the caller, which can treat them as done.
fn is_duplicate(detail: &ErrorDetail) -> bool {
    let m = detail.message.to_ascii_lowercase();
    detail.code == "Request_MultipleObjectsWithSameKeyValue"
        || m.contains("already exist")
        || m.contains("permission being assigned already exists")
}

/// Describes a reqwest error with its causes (a TLS "UnknownIssuer" hides two levels down).
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str, permission: Permission) -> GraphError {
        map_status(
            status,
            body.as_bytes(),
            None,
            None,
            "GET /applications/{id}".into(),
            permission,
        )
    }

    #[test]
    fn maps_graph_error_bodies_to_variants() {
        let body = r#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist or one of its queried reference-property objects are not present.","innerError":{"date":"2024-05-01T10:00:00","request-id":"r-1","client-request-id":"c-1"}}}"#;
        let err = map(404, body, Permission::ApplicationReadAll);
        let GraphError::NotFound(d) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(d.code, "Request_ResourceNotFound");
        assert_eq!(d.request_id.as_deref(), Some("r-1"));
        assert_eq!(err.reason(), "GraphNotFound");
        assert_eq!(err.category(), "graph_not_found");

        let err = map(
            409,
            r#"{"error":{"code":"Request_MultipleObjectsWithSameKeyValue","message":"Another object with the same value for property appId already exists."}}"#,
            Permission::ApplicationReadWriteOwnedBy,
        );
        assert!(err.is_conflict());

        let err = map(
            400,
            r#"{"error":{"code":"Request_BadRequest","message":"Permission being assigned already exists on the object"}}"#,
            Permission::AppRoleAssignmentReadWriteAll,
        );
        assert!(err.is_conflict(), "duplicate assignment is a conflict");

        let err = map(
            400,
            r#"{"error":{"code":"Request_BadRequest","message":"Invalid value specified for property 'identifierUris' of resource 'Application'."}}"#,
            Permission::ApplicationReadWriteOwnedBy,
        );
        let GraphError::BadRequest(d) = &err else {
            panic!("{err:?}")
        };
        assert!(d.message.contains("identifierUris"));
        assert!(err.to_string().contains("identifierUris"));
        assert!(!err.is_transient());
    }

    #[test]
    fn forbidden_names_the_likely_missing_permission() {
        let body = r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#;
        for (permission, name) in [
            (
                Permission::ApplicationReadWriteOwnedBy,
                "Application.ReadWrite.OwnedBy",
            ),
            (
                Permission::AppRoleAssignmentReadWriteAll,
                "AppRoleAssignment.ReadWrite.All",
            ),
            (
                Permission::DelegatedPermissionGrantReadWriteAll,
                "DelegatedPermissionGrant.ReadWrite.All",
            ),
            (
                Permission::CrossTenantInformationReadBasicAll,
                "CrossTenantInformation.ReadBasic.All",
            ),
            (Permission::ApplicationReadAll, "Application.Read.All"),
            (Permission::UserReadAll, "User.Read.All"),
            (Permission::DirectoryReadAll, "Directory.Read.All"),
        ] {
            let err = map(403, body, permission);
            let GraphError::Forbidden {
                likely_missing_permission,
                ..
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!(*likely_missing_permission, Some(name));
            assert!(err.to_string().contains(name));
            assert_eq!(err.reason(), "GraphForbidden");
        }
    }

    #[test]
    fn throttled_and_server_errors_are_transient() {
        let err = map_status(
            429,
            br#"{"error":{"code":"TooManyRequests","message":"Please retry again later."}}"#,
            Some("req".into()),
            Some(Duration::from_millis(1500)),
            "PATCH /applications/{id}".into(),
            Permission::ApplicationReadWriteOwnedBy,
        );
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(err.category(), "graph_throttled");
        assert!(map(503, "", Permission::None).is_transient());
        assert!(matches!(
            map(503, "not json", Permission::None),
            GraphError::Server(_)
        ));
        assert!(matches!(
            map(410, "", Permission::None),
            GraphError::Unexpected(_)
        ));
        assert!(matches!(
            map(401, "", Permission::None),
            GraphError::Unauthorized(_)
        ));
    }

    #[test]
    fn optional_turns_not_found_into_none() {
        let r: Result<u8, GraphError> = Err(map(404, "", Permission::None));
        assert_eq!(r.optional().unwrap(), None);
        let r: Result<u8, GraphError> = Ok(3);
        assert_eq!(r.optional().unwrap(), Some(3));
        let r: Result<u8, GraphError> = Err(map(500, "", Permission::None));
        assert!(r.optional().is_err());
    }

    #[test]
    fn replication_message_is_recognised() {
        assert!(is_no_backing_application(
            "Request_BadRequest",
            "The appId 'x' of the service principal does not reference a valid application object."
        ));
        assert!(is_no_backing_application("NoBackingApplicationObject", ""));
        assert!(!is_no_backing_application(
            "Request_BadRequest",
            "Invalid value"
        ));
    }
}
