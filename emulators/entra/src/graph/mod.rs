//! Microsoft Graph v1.0: applications, credentials, federated credentials, owners, deleted items,
//! delta (of applications and of service principals), service principals, app role assignments,
//! delegated grants, tenant information, users (read by id or user principal name), `$batch`.

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::crypto::{CertInfo, Jwt, SigningKey};
use crate::model::{App, Assignment, KeyCred, Password, Sp, State, Tenant};
use crate::msgraph::GRAPH_APP_ID;
use crate::route::{Route, route};

use crate::http::{Req, Resp};
use crate::util::{
    b64_decode, b64url, fmt_ts, is_guid, new_guid, new_secret_text, parse_ts, random_bytes, sha256,
};
pub(crate) use batch::batch;

mod applications;
mod batch;
mod credentials;
mod deleted;
mod delta;
mod federated;
mod grants;
mod odata;
mod owners;
mod permissions;
mod service_principals;
mod tenant_info;
mod users;
mod validation;

use applications::*;
use credentials::*;
use deleted::*;
use delta::*;
use federated::*;
use grants::*;
use odata::*;
use owners::*;
use service_principals::*;
use tenant_info::*;
use users::*;
use validation::*;

const GRAPH_CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata#";
const MAX_FICS: usize = 20;
const PAGE_SIZE: usize = 100;

/// The caller of a Graph request, from its access token.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) tenant_id: String,
    pub(crate) app_id: String,
    pub(crate) sp_id: String,
    /// Graph application permissions (`roles` of the token).
    pub(crate) roles: Vec<String>,
}

/// A Graph error, rendered as `{"error": {code, message, innerError}}`.
#[derive(Debug)]
pub(crate) struct GErr {
    status: u16,
    code: String,
    message: String,
    details: Option<Value>,
}

impl GErr {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn into_resp(self, request_id: &str, client_request_id: &str) -> Resp {
        error_resp(
            self.status,
            &self.code,
            &self.message,
            self.details,
            request_id,
            client_request_id,
        )
    }
}

pub(crate) fn error_resp(
    status: u16,
    code: &str,
    message: &str,
    details: Option<Value>,
    request_id: &str,
    client_request_id: &str,
) -> Resp {
    let mut error = json!({
        "code": code,
        "message": message,
        "innerError": {
            "date": fmt_ts(Timestamp::now()),
            "request-id": request_id,
            "client-request-id": client_request_id,
        }
    });
    if let Some(d) = details {
        error["details"] = d;
    }
    Resp::json(status, &json!({ "error": error }))
}

type GResult = Result<Resp, GErr>;

fn bad_request(message: impl Into<String>) -> GErr {
    GErr::new(400, "Request_BadRequest", message)
}

fn not_found(id: &str) -> GErr {
    GErr::new(
        404,
        "Request_ResourceNotFound",
        format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn conflict(message: impl Into<String>) -> GErr {
    GErr::new(409, "Request_MultipleObjectsWithSameKeyValue", message)
}

/// Validates the bearer token: signed by this emulator, for Graph, unexpired, in a known tenant.
pub(crate) fn authenticate(st: &State, key: &SigningKey, req: &Req) -> Result<Caller, GErr> {
    let invalid = |m: &str| GErr::new(401, "InvalidAuthenticationToken", m);
    let auth = req.header("authorization").unwrap_or("");
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if token.is_empty() {
        return Err(invalid("Access token is empty."));
    }
    let Some(claims) = key.verify(token) else {
        return Err(invalid(
            "Access token validation failure. Invalid signature.",
        ));
    };
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if !matches!(
        aud.trim_end_matches('/'),
        "https://graph.microsoft.com" | GRAPH_APP_ID
    ) {
        return Err(invalid(
            "Access token validation failure. Invalid audience.",
        ));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= st.now().as_second() {
        return Err(invalid("Lifetime validation failed, the token is expired."));
    }
    let tid = claims.get("tid").and_then(Value::as_str).unwrap_or("");
    if !st.tenants.contains_key(tid) {
        return Err(invalid("Access token validation failure. Invalid tenant."));
    }
    let app_id = claims
        .get("appid")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(Caller {
        tenant_id: tid.to_string(),
        app_id: app_id.to_string(),
        sp_id: claims
            .get("oid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        roles: claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// How a request addresses one object.
enum Key<'a> {
    Id(&'a str),
    AppId(&'a str),
    UniqueName(&'a str),
}

/// Splits `/v1.0/{collection}…` into the object key, the rest of the template and its parameters.
fn split<'a>(
    template: &'a str,
    params: &'a [String],
    collection: &str,
) -> Option<(Key<'a>, &'a str, &'a [String])> {
    let rest = template.strip_prefix("/v1.0/")?.strip_prefix(collection)?;
    let first = params.first()?;
    if let Some(s) = rest.strip_prefix("/{id}") {
        return Some((Key::Id(first), s, &params[1..]));
    }
    if let Some(s) = rest.strip_prefix("(appId='{appId}')") {
        return Some((Key::AppId(first), s, &params[1..]));
    }
    if let Some(s) = rest.strip_prefix("(uniqueName='{uniqueName}')") {
        return Some((Key::UniqueName(first), s, &params[1..]));
    }
    None
}

pub(crate) fn dispatch(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    r: &Route,
    base: &str,
) -> GResult {
    let m = req.method.as_str();
    let t = r.template.as_str();
    let p = r.params.as_slice();
    permissions::authorize(st, caller, req, t, p)?;
    match (m, t) {
        ("POST", "/v1.0/applications") => return create_app(st, caller, req, None),
        ("GET", "/v1.0/applications") => return list_apps(st, caller, req, base),
        ("GET", "/v1.0/applications/delta") => {
            return delta(st, caller, req, base, DeltaOf::Applications);
        }
        ("GET", "/v1.0/servicePrincipals") => return list_sps(st, caller, req, base),
        ("GET", "/v1.0/servicePrincipals/delta") => {
            return delta(st, caller, req, base, DeltaOf::ServicePrincipals);
        }
        ("POST", "/v1.0/servicePrincipals") => return create_sp(st, caller, req, None),
        ("GET", "/v1.0/oauth2PermissionGrants") => return list_grants(st, caller, req, base),
        ("POST", "/v1.0/oauth2PermissionGrants") => return create_grant(st, caller, req),
        ("GET", "/v1.0/directory/deletedItems/microsoft.graph.application") => {
            return list_deleted(st, caller, req, base);
        }
        ("GET", "/v1.0/directory/deletedItems/{id}") => return get_deleted(st, caller, req, &p[0]),
        ("DELETE", "/v1.0/directory/deletedItems/{id}") => return purge(st, caller, &p[0]),
        ("POST", "/v1.0/directory/deletedItems/{id}/restore") => {
            return restore(st, caller, &p[0]);
        }
        (
            "GET",
            "/v1.0/tenantRelationships/findTenantInformationByTenantId(tenantId='{tenantId}')",
        ) => {
            return tenant_info(st, req, Some(&p[0]), None);
        }
        (
            "GET",
            "/v1.0/tenantRelationships/findTenantInformationByDomainName(domainName='{domainName}')",
        ) => return tenant_info(st, req, None, Some(&p[0])),
        ("GET", "/v1.0/users/{id}") => return get_user(st, caller, req, &p[0]),
        ("GET", "/v1.0/organization") => {
            let t = tenant(st, caller);
            let org = json!({"id": t.id, "displayName": t.display_name,
                "verifiedDomains": t.domains.iter().map(|d| json!({"name": d, "isDefault": *d == t.default_domain, "isInitial": d.ends_with(".onmicrosoft.com"), "type": "Managed", "capabilities": "None"})).collect::<Vec<_>>()});
            return Ok(Resp::json(
                200,
                &json!({"@odata.context": format!("{GRAPH_CONTEXT}organization"), "value": [org]}),
            ));
        }
        _ => {}
    }
    if let Some((key, suffix, rest)) = split(t, p, "applications") {
        return app_routes(st, caller, req, key, suffix, rest);
    }
    if let Some((key, suffix, rest)) = split(t, p, "servicePrincipals") {
        return sp_routes(st, caller, req, key, suffix, rest);
    }
    if let Some(rest) = t.strip_prefix("/v1.0/oauth2PermissionGrants/{id}")
        && rest.is_empty()
    {
        return grant_routes(st, caller, req, &p[0]);
    }
    Err(GErr::new(
        400,
        "BadRequest",
        format!(
            "Resource not found for the segment '{}'.",
            req.path.rsplit('/').next().unwrap_or("")
        ),
    ))
}

fn tenant<'a>(st: &'a State, caller: &Caller) -> &'a Tenant {
    &st.tenants[&caller.tenant_id]
}

fn tenant_mut<'a>(st: &'a mut State, caller: &Caller) -> &'a mut Tenant {
    st.tenants
        .get_mut(&caller.tenant_id)
        .expect("caller tenant exists")
}

fn body_object(req: &Req) -> Result<Map<String, Value>, GErr> {
    match req.json() {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(GErr::new(
            400,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        )),
        None => Err(GErr::new(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )),
    }
}

fn prefer_create(req: &Req) -> bool {
    req.headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("create-if-missing"))
        })
}
