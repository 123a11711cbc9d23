//! Microsoft Graph v1.0: applications, credentials, federated credentials, owners, deleted items,
//! delta, service principals, app role assignments, delegated grants, tenant information, `$batch`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::crypto::{CertInfo, Jwt, SigningKey};
use crate::model::{App, Assignment, KeyCred, Password, Sp, State, Tenant};
use crate::msgraph::GRAPH_APP_ID;
use crate::route::{Route, route};
use crate::server::{Req, Resp, Shared};
use crate::util::{
    b64_decode, b64url, fmt_ts, is_guid, new_guid, new_secret_text, parse_ts, random_bytes, sha256,
};

const GRAPH_CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata#";
const MAX_FICS: usize = 20;
const PAGE_SIZE: usize = 100;

/// The caller of a Graph request, from its access token.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) tenant_id: String,
    pub(crate) app_id: String,
    pub(crate) sp_id: String,
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
    match (m, t) {
        ("POST", "/v1.0/applications") => return create_app(st, caller, req, None),
        ("GET", "/v1.0/applications") => return list_apps(st, caller, req, base),
        ("GET", "/v1.0/applications/delta") => return delta(st, caller, req, base),
        ("GET", "/v1.0/servicePrincipals") => return list_sps(st, caller, req, base),
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

// ---------------------------------------------------------------------------------------------
// $select, $filter, paging

fn select(value: Value, req: &Req) -> Value {
    let Some(sel) = req.query("$select") else {
        return value;
    };
    let fields: Vec<&str> = sel.split(',').map(str::trim).collect();
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| k.starts_with('@') || fields.iter().any(|f| f == k))
                .collect(),
        ),
        v => v,
    }
}

fn entity(status: u16, context: &str, value: Value, req: &Req) -> Resp {
    let mut v = select(value, req);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!("{GRAPH_CONTEXT}{context}/$entity")),
        );
    }
    Resp::json(status, &v)
}

enum Clause {
    Eq(String, Value),
    In(String, Vec<Value>),
    Any(String, Value),
    StartsWith(String, String),
}

fn parse_literal(s: &str) -> Value {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return json!(inner.replace("''", "'"));
    }
    match s {
        "true" => json!(true),
        "false" => json!(false),
        "null" => Value::Null,
        _ => s
            .parse::<i64>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(s)),
    }
}

fn parse_filter(filter: &str) -> Result<Vec<Clause>, GErr> {
    let unsupported = || GErr::new(400, "Request_UnsupportedQuery", "Unsupported Query.");
    let mut clauses = Vec::new();
    let lower = filter.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            in_quote = !in_quote;
        } else if !in_quote && lower[i..].starts_with(" and ") {
            parts.push(&filter[start..i]);
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&filter[start..]);
    for part in parts {
        let part = part.trim().trim_start_matches('(').trim_end_matches(')');
        let lower = part.to_ascii_lowercase();
        if lower.starts_with("startswith(") {
            let inner = &part["startswith(".len()..];
            let (prop, val) = inner.split_once(',').ok_or_else(unsupported)?;
            let val = parse_literal(val);
            clauses.push(Clause::StartsWith(
                prop.trim().to_string(),
                val.as_str().unwrap_or("").to_string(),
            ));
        } else if let Some(idx) = lower.find("/any(") {
            let prop = part[..idx].trim().to_string();
            let inner = &part[idx + 5..];
            let (_, cond) = inner.split_once(':').ok_or_else(unsupported)?;
            let lc = cond.to_ascii_lowercase();
            let eq = lc.find(" eq ").ok_or_else(unsupported)?;
            clauses.push(Clause::Any(prop, parse_literal(&cond[eq + 4..])));
        } else if let Some(idx) = lower.find(" eq ") {
            clauses.push(Clause::Eq(
                part[..idx].trim().to_string(),
                parse_literal(&part[idx + 4..]),
            ));
        } else if let Some(idx) = lower.find(" in ") {
            let list = part[idx + 4..].trim();
            let list = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(unsupported)?;
            clauses.push(Clause::In(
                part[..idx].trim().to_string(),
                list.split(',').map(parse_literal).collect(),
            ));
        } else {
            return Err(unsupported());
        }
    }
    Ok(clauses)
}

fn get_path<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for seg in path.split('/') {
        cur = cur.get(seg).unwrap_or(&Value::Null);
    }
    cur
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

fn matches_filter(v: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().all(|c| match c {
        Clause::Eq(p, lit) => values_eq(get_path(v, p), lit),
        Clause::In(p, lits) => lits.iter().any(|l| values_eq(get_path(v, p), l)),
        Clause::Any(p, lit) => get_path(v, p)
            .as_array()
            .is_some_and(|a| a.iter().any(|x| values_eq(x, lit))),
        Clause::StartsWith(p, prefix) => get_path(v, p).as_str().is_some_and(|s| {
            s.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        }),
    })
}

/// Filters, pages and renders a collection.
fn collection(req: &Req, base: &str, context: &str, items: Vec<Value>) -> GResult {
    collection_of(req, base, context, items, |v, _| v.clone(), Value::clone)
}

/// Like [`collection`], but filters on a cheap `view` of each item (holding the properties the
/// filter names) and renders only the page returned: listing stays cheap with many objects.
fn collection_of<T>(
    req: &Req,
    base: &str,
    context: &str,
    items: Vec<T>,
    view: impl Fn(&T, &[String]) -> Value,
    render: impl Fn(&T) -> Value,
) -> GResult {
    let items: Vec<T> = match req.query("$filter") {
        Some(f) => {
            let clauses = parse_filter(f)?;
            let keys: Vec<String> = clauses
                .iter()
                .map(|c| match c {
                    Clause::Eq(p, _)
                    | Clause::In(p, _)
                    | Clause::Any(p, _)
                    | Clause::StartsWith(p, _) => p.split('/').next().unwrap_or("").to_string(),
                })
                .collect();
            items
                .into_iter()
                .filter(|it| matches_filter(&view(it, &keys), &clauses))
                .collect()
        }
        None => items,
    };
    let top = req
        .query("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(PAGE_SIZE)
        .clamp(1, 999);
    let skip = req
        .query("$skiptoken")
        .and_then(crate::util::b64url_decode)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let total = items.len();
    let page: Vec<Value> = items
        .iter()
        .skip(skip)
        .take(top)
        .map(|v| select(render(v), req))
        .collect();
    let mut out = json!({
        "@odata.context": format!("{GRAPH_CONTEXT}{context}"),
        "value": page,
    });
    if skip + top < total {
        let mut q: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
            .cloned()
            .collect();
        q.push((
            "$skiptoken".into(),
            b64url((skip + top).to_string().as_bytes()),
        ));
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        out["@odata.nextLink"] = json!(format!("{base}{}?{qs}", req.path));
    }
    Ok(Resp::json(200, &out))
}

/// The properties of an application a filter can name, without rendering it whole.
fn app_view(app: &App, keys: &[String]) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(app.id));
    m.insert("appId".into(), json!(app.app_id));
    for k in keys {
        if let Some(v) = app.props.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// applications

/// Finds a visible application in the caller's tenant; returns its object id.
fn find_app(st: &State, caller: &Caller, key: &Key) -> Result<String, GErr> {
    let now = st.now();
    let t = tenant(st, caller);
    let (found, shown) = match key {
        Key::Id(id) => (t.apps.get(&id.to_ascii_lowercase()), *id),
        Key::AppId(a) => (t.app_by_app_id(a), *a),
        Key::UniqueName(u) => (
            t.apps.values().find(|x| {
                x.deleted_at.is_none() && x.unique_name().is_some_and(|n| n.eq_ignore_ascii_case(u))
            }),
            *u,
        ),
    };
    match found {
        Some(app) if app.visible(now) => Ok(app.id.clone()),
        _ => Err(not_found(shown)),
    }
}

fn app_routes(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    key: Key,
    suffix: &str,
    rest: &[String],
) -> GResult {
    let m = req.method.as_str();
    if let (Key::UniqueName(u), "PATCH", "") = (&key, m, suffix) {
        let existing = {
            let t = tenant(st, caller);
            t.apps
                .values()
                .find(|x| {
                    x.deleted_at.is_none()
                        && x.unique_name().is_some_and(|n| n.eq_ignore_ascii_case(u))
                })
                .map(|a| a.id.clone())
        };
        return match existing {
            Some(id) => patch_app(st, caller, req, &id),
            None if prefer_create(req) => create_app(st, caller, req, Some(u)),
            None => Err(not_found(u)),
        };
    }
    let id = find_app(st, caller, &key)?;
    match (m, suffix) {
        ("GET", "") => {
            let v = tenant(st, caller).apps[&id].render();
            Ok(entity(200, "applications", v, req))
        }
        ("PATCH", "") => patch_app(st, caller, req, &id),
        ("DELETE", "") => delete_app(st, caller, &id),
        ("POST", "/addPassword") => add_password(st, caller, req, &id),
        ("POST", "/removePassword") => remove_password(st, caller, req, &id),
        ("POST", "/addKey") => add_key(st, caller, req, &id),
        ("POST", "/removeKey") => remove_key(st, caller, req, &id),
        ("GET", "/owners") => {
            let t = tenant(st, caller);
            let items = t.apps[&id]
                .owners
                .iter()
                .map(|o| {
                    if let Some(sp) = t.sps.get(o) {
                        let mut v = st.render_sp(t, sp);
                        v["@odata.type"] = json!("#microsoft.graph.servicePrincipal");
                        v
                    } else {
                        json!({"@odata.type": "#microsoft.graph.user", "id": o})
                    }
                })
                .collect();
            collection(req, "", "directoryObjects", items)
        }
        ("POST", "/owners/$ref") => add_owner(st, caller, req, &id),
        ("DELETE", "/owners/{id}/$ref") => {
            let owner = rest[0].to_ascii_lowercase();
            let seq = st.next_seq();
            let app = tenant_mut(st, caller).apps.get_mut(&id).expect("app");
            let before = app.owners.len();
            app.owners.retain(|o| *o != owner);
            if app.owners.len() == before {
                return Err(not_found(&owner));
            }
            app.changed_seq = seq;
            Ok(Resp::empty(204))
        }
        ("GET", "/federatedIdentityCredentials") => {
            let items = tenant(st, caller).apps[&id]
                .fics
                .iter()
                .cloned()
                .map(Value::Object)
                .collect();
            collection(
                req,
                "",
                &format!("applications('{id}')/federatedIdentityCredentials"),
                items,
            )
        }
        ("POST", "/federatedIdentityCredentials") => {
            let body = body_object(req)?;
            create_fic(st, caller, &id, body, None)
        }
        (_, "/federatedIdentityCredentials/{id}")
        | (_, "/federatedIdentityCredentials(name='{name}')") => {
            let by_name = suffix.contains("(name=");
            let k = rest[0].clone();
            fic_routes(st, caller, req, &id, &k, by_name)
        }
        _ => Err(GErr::new(
            405,
            "Request_BadRequest",
            "The specified HTTP method is not allowed for the request target.",
        )),
    }
}

const READ_ONLY_APP_PROPS: &[&str] = &[
    "id",
    "appId",
    "createdDateTime",
    "deletedDateTime",
    "publisherDomain",
];

fn create_app(st: &mut State, caller: &Caller, req: &Req, unique: Option<&str>) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    if body
        .get("displayName")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(bad_request(
            "Property 'displayName' is required and cannot be empty.",
        ));
    }
    if let Some(u) = unique {
        match body.get("uniqueName").and_then(Value::as_str) {
            Some(b) if !b.eq_ignore_ascii_case(u) => {
                return Err(bad_request(
                    "Property 'uniqueName' in the body does not match the key in the request URL.",
                ));
            }
            _ => {
                body.insert("uniqueName".into(), json!(u));
            }
        }
    }
    if body
        .get("passwordCredentials")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(bad_request(
            "Property 'passwordCredentials' cannot be set on create; use addPassword.",
        ));
    }
    body.remove("passwordCredentials");
    let key_creds = body.remove("keyCredentials");
    for p in READ_ONLY_APP_PROPS {
        body.remove(*p);
    }
    let now = st.now();
    let visible_at = st.visible_at();
    let usable_at = st.credential_usable_at();
    let (tid, domain) = {
        let t = tenant(st, caller);
        (t.id.clone(), t.default_domain.clone())
    };
    let mut props = App::default_props(&domain);
    deep_merge(&mut props, body);
    let app_id = new_guid();
    let id = new_guid();
    if let Some(u) = props.get("uniqueName").and_then(Value::as_str) {
        let taken = tenant(st, caller).apps.values().any(|a| {
            a.deleted_at.is_none() && a.unique_name().is_some_and(|n| n.eq_ignore_ascii_case(u))
        });
        if taken {
            return Err(bad_request(
                "Another object with the same value for property uniqueName already exists.",
            ));
        }
    }
    validate_app(st, &tid, &app_id, &id, None, &props)?;
    let keys = match key_creds {
        Some(Value::Array(items)) => parse_key_credentials(&items, &[], now, usable_at)?,
        _ => Vec::new(),
    };
    let seq = st.next_seq();
    let mut owners = Vec::new();
    if !caller.sp_id.is_empty() {
        owners.push(caller.sp_id.clone());
    }
    let app = App {
        id: id.clone(),
        app_id: app_id.clone(),
        props,
        created: now,
        visible_at,
        deleted_at: None,
        passwords: Vec::new(),
        keys,
        fics: Vec::new(),
        owners,
        changed_seq: seq,
    };
    let rendered = app.render();
    st.app_home.insert(app_id, (tid.clone(), id.clone()));
    tenant_mut(st, caller).apps.insert(id, app);
    Ok(entity(201, "applications", rendered, req))
}

fn patch_app(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    let now = st.now();
    let usable_at = st.credential_usable_at();
    let tid = caller.tenant_id.clone();
    let (mut props, app_id, existing_keys) = {
        let app = &tenant(st, caller).apps[id];
        (app.props.clone(), app.app_id.clone(), &app.keys)
    };
    for p in READ_ONLY_APP_PROPS {
        if let Some(v) = body.remove(*p) {
            let current = match *p {
                "id" => json!(id),
                "appId" => json!(app_id),
                _ => v.clone(),
            };
            if v != current {
                return Err(bad_request(format!(
                    "Property '{p}' is read-only and cannot be set."
                )));
            }
        }
    }
    if body.contains_key("passwordCredentials") {
        return Err(bad_request(
            "Property 'passwordCredentials' cannot be updated with PATCH; use addPassword and removePassword.",
        ));
    }
    if let Some(u) = body.get("uniqueName") {
        let current = props.get("uniqueName").cloned().unwrap_or(Value::Null);
        let same = match (u.as_str(), current.as_str()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => *u == current,
        };
        if !same {
            return Err(bad_request(
                "Property 'uniqueName' is immutable and cannot be changed.",
            ));
        }
        body.remove("uniqueName");
    }
    let new_keys = match body.remove("keyCredentials") {
        Some(Value::Array(items)) => Some(parse_key_credentials(
            &items,
            existing_keys,
            now,
            usable_at,
        )?),
        Some(_) => {
            return Err(bad_request(
                "Property 'keyCredentials' must be a collection.",
            ));
        }
        None => None,
    };
    let old = props.clone();
    deep_merge(&mut props, body);
    validate_app(st, &tid, &app_id, id, Some(&old), &props)?;
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    app.props = props;
    if let Some(k) = new_keys {
        app.keys = k;
    }
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}

/// PATCH semantics: nested objects merge, everything else (collections included) is replaced.
fn deep_merge(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(&k), v) {
            (Some(Value::Object(t)), Value::Object(p)) => deep_merge(t, p),
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

const AUDIENCES: &[&str] = &[
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
];

fn str_array(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Graph's rules for an application's properties, checked before any write.
fn validate_app(
    st: &State,
    tid: &str,
    app_id: &str,
    object_id: &str,
    old: Option<&Map<String, Value>>,
    props: &Map<String, Value>,
) -> Result<(), GErr> {
    let audience = props
        .get("signInAudience")
        .and_then(Value::as_str)
        .unwrap_or("AzureADMyOrg");
    if !AUDIENCES.contains(&audience) {
        return Err(bad_request(format!(
            "Invalid value specified for property 'signInAudience' of resource 'Application': '{audience}'."
        )));
    }
    let personal = audience.contains("Personal");
    let api = props.get("api").cloned().unwrap_or(json!({}));
    let version = api
        .get("requestedAccessTokenVersion")
        .and_then(Value::as_i64);
    if let Some(v) = version
        && v != 1
        && v != 2
    {
        return Err(bad_request(
            "Property api.requestedAccessTokenVersion is invalid.",
        ));
    }
    if personal && version != Some(2) {
        return Err(bad_request(
            "Property api.requestedAccessTokenVersion is invalid. It must be 2 for applications that allow personal Microsoft accounts.",
        ));
    }

    // App roles and scopes.
    let roles = props
        .get("appRoles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    validate_entitlements(&roles, "appRoles", true)?;
    let scopes = api
        .get("oauth2PermissionScopes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    validate_entitlements(&scopes, "api.oauth2PermissionScopes", false)?;
    if let Some(old) = old {
        let old_roles = old
            .get("appRoles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        check_enabled_before_remove(&old_roles, &roles, &["value", "allowedMemberTypes"])?;
        let old_scopes = old
            .get("api")
            .and_then(|a| a.get("oauth2PermissionScopes"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        check_enabled_before_remove(&old_scopes, &scopes, &["value", "type"])?;
    }
    for pre in api
        .get("preAuthorizedApplications")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ok_app = pre
            .get("appId")
            .and_then(Value::as_str)
            .is_some_and(is_guid);
        let ids = str_array(pre.get("delegatedPermissionIds"));
        if !ok_app {
            return Err(bad_request(
                "Property preAuthorizedApplications.appId is invalid.",
            ));
        }
        for pid in ids {
            if !scopes.iter().any(|s| s["id"] == pid.as_str()) {
                return Err(bad_request(format!(
                    "Property preAuthorizedApplications.delegatedPermissionIds references '{pid}', which is not a scope of this application."
                )));
            }
        }
    }

    // Redirect URIs.
    let mut uris = Vec::new();
    for (path, spa) in [("web", false), ("spa", true), ("publicClient", false)] {
        for u in str_array(props.get(path).and_then(|p| p.get("redirectUris"))) {
            if u.len() > 256 {
                return Err(bad_request(format!(
                    "Property {path}.redirectUris has a value longer than 256 characters."
                )));
            }
            if spa
                && let Some(rest) = u.strip_prefix("brk-multihub://")
                && (rest.is_empty() || rest.contains(['/', '?', '#']))
            {
                return Err(bad_request(format!(
                    "Invalid brokered redirect URI '{u}': it must be an origin (brk-multihub://host[:port]) without a path."
                )));
            }
            uris.push(u);
        }
    }
    let max_uris = if personal { 100 } else { 256 };
    if uris.len() > max_uris {
        return Err(bad_request(format!(
            "The number of redirect URIs ({}) exceeds the limit of {max_uris}.",
            uris.len()
        )));
    }

    // Required resource access.
    let rra = props
        .get("requiredResourceAccess")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if rra.len() > 50 {
        return Err(bad_request(
            "The number of resources in requiredResourceAccess exceeds the limit of 50.",
        ));
    }
    let total: usize = rra
        .iter()
        .map(|r| {
            r.get("resourceAccess")
                .and_then(Value::as_array)
                .map_or(0, |a| a.len())
        })
        .sum();
    if total > 400 {
        return Err(bad_request(
            "The number of permissions in requiredResourceAccess exceeds the limit of 400.",
        ));
    }
    for r in &rra {
        if !r
            .get("resourceAppId")
            .and_then(Value::as_str)
            .is_some_and(is_guid)
        {
            return Err(bad_request(
                "Property requiredResourceAccess.resourceAppId is invalid.",
            ));
        }
        for a in r
            .get("resourceAccess")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ty = a.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(ty, "Scope" | "Role")
                || !a.get("id").and_then(Value::as_str).is_some_and(is_guid)
            {
                return Err(bad_request(
                    "Property requiredResourceAccess.resourceAccess is invalid.",
                ));
            }
        }
    }

    // Identifier URIs: format, then global uniqueness (soft-deleted apps keep theirs).
    let t = &st.tenants[tid];
    let ids = str_array(props.get("identifierUris"));
    for uri in &ids {
        validate_identifier_uri(uri, app_id, tid, &t.domains)?;
    }
    if !ids.is_empty() {
        for tenant in st.tenants.values() {
            for other in tenant.apps.values() {
                if other.id == object_id {
                    continue;
                }
                let theirs = str_array(other.props.get("identifierUris"));
                if ids
                    .iter()
                    .any(|u| theirs.iter().any(|x| x.eq_ignore_ascii_case(u)))
                {
                    return Err(bad_request(
                        "Another object with the same value for property identifierUris already exists.",
                    ));
                }
            }
        }
    }
    if str_array(props.get("tags")).iter().any(|t| t.len() > 256) {
        return Err(bad_request("A tag is longer than 256 characters."));
    }
    Ok(())
}

fn validate_entitlements(items: &[Value], prop: &str, roles: bool) -> Result<(), GErr> {
    let mut ids = Vec::new();
    let mut values = Vec::new();
    for item in items {
        let id = item.get("id").and_then(Value::as_str).unwrap_or("");
        if !is_guid(id) {
            return Err(bad_request(format!("Property {prop}.id is invalid.")));
        }
        if ids.contains(&id.to_ascii_lowercase()) {
            return Err(bad_request(format!(
                "Property {prop} has duplicate id '{id}'."
            )));
        }
        ids.push(id.to_ascii_lowercase());
        if let Some(value) = item.get("value").and_then(Value::as_str) {
            if value.len() > 120 || value.contains(' ') || value.is_empty() {
                return Err(bad_request(format!(
                    "Property {prop}.value is invalid: '{value}' (at most 120 characters, no spaces)."
                )));
            }
            if values.contains(&value.to_ascii_lowercase()) {
                return Err(bad_request(format!(
                    "Property {prop} has duplicate value '{value}'."
                )));
            }
            values.push(value.to_ascii_lowercase());
        }
        if roles {
            let types = str_array(item.get("allowedMemberTypes"));
            if types.is_empty() || types.iter().any(|t| t != "User" && t != "Application") {
                return Err(bad_request(format!(
                    "Property {prop}.allowedMemberTypes is invalid."
                )));
            }
        } else if let Some(ty) = item.get("type").and_then(Value::as_str)
            && ty != "User"
            && ty != "Admin"
        {
            return Err(bad_request(format!("Property {prop}.type is invalid.")));
        }
    }
    Ok(())
}

/// An enabled role or scope can't be removed or changed: it must be disabled in an earlier write.
fn check_enabled_before_remove(old: &[Value], new: &[Value], fields: &[&str]) -> Result<(), GErr> {
    for o in old {
        if o.get("isEnabled").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let id = o.get("id").and_then(Value::as_str).unwrap_or("");
        let n = new.iter().find(|n| {
            n.get("id")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(id))
        });
        let changed = match n {
            None => true,
            Some(n) => fields.iter().any(|f| o.get(*f) != n.get(*f)),
        };
        if changed {
            return Err(GErr::new(
                400,
                "CannotDeleteOrUpdateEnabledEntitlement",
                "Permission (scope or role) cannot be deleted or updated unless disabled first.",
            ));
        }
    }
    Ok(())
}

fn validate_identifier_uri(
    uri: &str,
    app_id: &str,
    tenant_id: &str,
    domains: &[String],
) -> Result<(), GErr> {
    let invalid = || {
        GErr::new(
            400,
            "HostNameNotOnVerifiedDomain",
            format!(
                "Values of identifierUris property must use a verified domain of the organization or its subdomain, or follow the api:// formats: '{uri}'"
            ),
        )
    };
    if let Some(rest) = uri.strip_prefix("api://") {
        let rest = rest.trim_end_matches('/');
        let parts: Vec<&str> = rest.split('/').collect();
        let is_app = |s: &str| s.eq_ignore_ascii_case(app_id);
        let is_tenant = |s: &str| s.eq_ignore_ascii_case(tenant_id);
        let ok = match parts.as_slice() {
            [one] => is_app(one),
            [first, second] => {
                // api://<tenantId>/<appId>, api://<tenantId>/<string>, api://<string>/<appId>
                if is_tenant(first) {
                    !second.is_empty() && (!is_guid(second) || is_app(second))
                } else if is_app(second) {
                    !is_guid(first)
                } else {
                    false
                }
            }
            _ => false,
        };
        return if ok { Ok(()) } else { Err(invalid()) };
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
        let ok = domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            host == d || host.ends_with(&format!(".{d}"))
        });
        return if ok { Ok(()) } else { Err(invalid()) };
    }
    Err(invalid())
}

fn delete_app(st: &mut State, caller: &Caller, id: &str) -> GResult {
    let now = st.now();
    let seq = st.next_seq();
    let t = tenant_mut(st, caller);
    let app = t.apps.get_mut(id).expect("app");
    app.deleted_at = Some(now);
    app.changed_seq = seq;
    let app_id = app.app_id.clone();
    t.tombstones.push((seq, id.to_string(), "changed"));
    // The home tenant's service principal goes with the application.
    if let Some(sp_id) = t.sp_by_app_id(&app_id).map(|s| s.id.clone()) {
        remove_sp(t, &sp_id);
    }
    Ok(Resp::empty(204))
}

fn remove_sp(t: &mut Tenant, sp_id: &str) {
    t.sps.remove(sp_id);
    t.assignments
        .retain(|_, a| a.principal_id != sp_id && a.resource_id != sp_id);
    t.grants.retain(|_, g| {
        g.get("clientId").and_then(Value::as_str) != Some(sp_id)
            && g.get("resourceId").and_then(Value::as_str) != Some(sp_id)
    });
}

fn list_apps(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    let mut apps: Vec<&App> = t.apps.values().filter(|a| a.visible(now)).collect();
    apps.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    collection_of(
        req,
        base,
        "applications",
        apps,
        |a, k| app_view(a, k),
        |a| a.render(),
    )
}

fn list_deleted(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let t = tenant(st, caller);
    let items = t
        .apps
        .values()
        .filter(|a| a.deleted_at.is_some())
        .map(App::render)
        .collect();
    collection(
        req,
        base,
        "directory/deletedItems/microsoft.graph.application",
        items,
    )
}

fn get_deleted(st: &State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let t = tenant(st, caller);
    match t.apps.get(&id.to_ascii_lowercase()) {
        Some(a) if a.deleted_at.is_some() => {
            let mut v = a.render();
            v["@odata.type"] = json!("#microsoft.graph.application");
            Ok(entity(200, "directory/deletedItems", v, req))
        }
        _ => Err(not_found(id)),
    }
}

fn restore(st: &mut State, caller: &Caller, id: &str) -> GResult {
    let id = id.to_ascii_lowercase();
    let visible_at = st.visible_at();
    let conflict_name = {
        let t = tenant(st, caller);
        let Some(app) = t.apps.get(&id).filter(|a| a.deleted_at.is_some()) else {
            return Err(not_found(&id));
        };
        app.unique_name().is_some_and(|u| {
            t.apps.values().any(|o| {
                o.id != id
                    && o.deleted_at.is_none()
                    && o.unique_name().is_some_and(|n| n.eq_ignore_ascii_case(u))
            })
        })
    };
    if conflict_name {
        return Err(bad_request(
            "Another object with the same value for property uniqueName already exists.",
        ));
    }
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(&id).expect("app");
    app.deleted_at = None;
    app.changed_seq = seq;
    app.visible_at = visible_at;
    let mut v = app.render();
    v["@odata.type"] = json!("#microsoft.graph.application");
    v["@odata.context"] = json!(format!("{GRAPH_CONTEXT}directoryObjects/$entity"));
    Ok(Resp::json(200, &v))
}

fn purge(st: &mut State, caller: &Caller, id: &str) -> GResult {
    let id = id.to_ascii_lowercase();
    let seq = st.next_seq();
    let t = tenant_mut(st, caller);
    match t.apps.get(&id) {
        Some(a) if a.deleted_at.is_some() => {
            let app_id = a.app_id.clone();
            t.apps.remove(&id);
            t.tombstones.push((seq, id, "deleted"));
            st.app_home.remove(&app_id);
            Ok(Resp::empty(204))
        }
        _ => Err(not_found(&id)),
    }
}

// ---------------------------------------------------------------------------------------------
// password and key credentials

fn add_password(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let cred = body.get("passwordCredential").cloned().unwrap_or(json!({}));
    let now = st.now();
    let usable_at = st.credential_usable_at();
    let policy = st.switches.app_policy.clone();
    if policy.passwords_forbidden {
        return Err(GErr::new(
            400,
            "CredentialTypeNotAllowedAsPerAppPolicy",
            "Password credentials are not allowed by the application management policy.",
        ));
    }
    let start = match cred.get("startDateTime").and_then(Value::as_str) {
        Some(s) => parse_ts(s).ok_or_else(|| bad_request("Invalid startDateTime."))?,
        None => now,
    };
    let end = match cred.get("endDateTime").and_then(Value::as_str) {
        Some(s) => parse_ts(s).ok_or_else(|| bad_request("Invalid endDateTime."))?,
        None => start
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_add(jiff::Span::new().years(2))
            .map(|z| z.timestamp())
            .unwrap_or(start),
    };
    if end <= start {
        return Err(bad_request(
            "Password credential end date must be later than its start date.",
        ));
    }
    if let Some(max) = policy.max_password_lifetime_secs
        && end.duration_since(start) > SignedDuration::from_secs(max as i64)
    {
        return Err(GErr::new(
            400,
            "CredentialInvalidLifetimeAsPerAppPolicy",
            "Credential lifetime exceeds the max value allowed as per assigned policy.",
        ));
    }
    let app = &tenant(st, caller).apps[id];
    if app
        .props
        .get("signInAudience")
        .and_then(Value::as_str)
        .is_some_and(|a| a.contains("Personal"))
        && app.passwords.len() >= 2
    {
        return Err(GErr::new(
            400,
            "TooManyAppPasswords",
            "Applications that allow personal Microsoft accounts can have at most 2 passwords.",
        ));
    }
    let secret = new_secret_text();
    let password = Password {
        key_id: new_guid(),
        display_name: cred
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        hint: secret[..3].to_string(),
        hash: sha256(secret.as_bytes()),
        start,
        end,
        usable_at,
    };
    let mut out = password.render();
    out["secretText"] = json!(secret);
    out["@odata.context"] = json!(format!("{GRAPH_CONTEXT}microsoft.graph.passwordCredential"));
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    app.passwords.push(password);
    app.changed_seq = seq;
    Ok(Resp::json(200, &out))
}

fn remove_password(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'keyId' is required."))?
        .to_ascii_lowercase();
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    let before = app.passwords.len();
    app.passwords.retain(|p| p.key_id != key_id);
    if app.passwords.len() == before {
        return Err(bad_request(format!(
            "No password credential found with keyId '{key_id}'."
        )));
    }
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}

/// Parses a PATCHed `keyCredentials` collection: entries with `key` are new certificates; entries
/// without it must name an existing credential by `keyId`, which is kept.
fn parse_key_credentials(
    items: &[Value],
    existing: &[KeyCred],
    now: Timestamp,
    usable_at: Timestamp,
) -> Result<Vec<KeyCred>, GErr> {
    let mut out = Vec::new();
    for item in items {
        let key_id = item
            .get("keyId")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        match item.get("key").and_then(Value::as_str) {
            Some(key) => {
                let mut k = parse_key_credential(item, key, now, usable_at)?;
                if let Some(kid) = key_id {
                    k.key_id = kid;
                }
                out.push(k);
            }
            None => {
                let kid = key_id.ok_or_else(|| {
                    bad_request("Each keyCredential needs either 'key' or the 'keyId' of an existing credential.")
                })?;
                let e = existing
                    .iter()
                    .find(|k| k.key_id == kid)
                    .ok_or_else(|| bad_request(format!("No key credential with keyId '{kid}'.")))?;
                out.push(KeyCred {
                    key_id: e.key_id.clone(),
                    display_name: e.display_name.clone(),
                    key_type: e.key_type.clone(),
                    usage: e.usage.clone(),
                    der: e.der.clone(),
                    cert: e.cert.clone(),
                    start: e.start,
                    end: e.end,
                    usable_at: e.usable_at,
                });
            }
        }
    }
    Ok(out)
}

fn parse_key_credential(
    item: &Value,
    key: &str,
    _now: Timestamp,
    usable_at: Timestamp,
) -> Result<KeyCred, GErr> {
    let ty = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("AsymmetricX509Cert");
    let usage = item
        .get("usage")
        .and_then(Value::as_str)
        .unwrap_or("Verify");
    if ty != "AsymmetricX509Cert" || !matches!(usage, "Verify" | "Sign") {
        return Err(bad_request(
            "Key credential type must be AsymmetricX509Cert with usage Verify or Sign.",
        ));
    }
    let der = b64_decode(key)
        .or_else(|| {
            String::from_utf8(b64_decode(key)?)
                .ok()
                .and_then(|pem| crate::crypto::pem_decode(&pem, "CERTIFICATE"))
        })
        .ok_or_else(|| bad_request("Invalid key credential: key is not base64."))?;
    let cert = CertInfo::parse(&der).ok_or_else(|| {
        bad_request("Invalid certificate: key value is not a valid RSA X.509 certificate.")
    })?;
    let start = item
        .get("startDateTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(cert.not_before);
    let end = item
        .get("endDateTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(cert.not_after);
    if end > cert.not_after || start < cert.not_before {
        return Err(bad_request(
            "Key credential start and end dates must lie within the certificate's validity.",
        ));
    }
    Ok(KeyCred {
        key_id: new_guid(),
        display_name: item
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        key_type: ty.to_string(),
        usage: usage.to_string(),
        der,
        cert,
        start,
        end,
        usable_at,
    })
}

/// Checks an addKey/removeKey proof: a JWT signed by one of the app's currently valid certificates,
/// aud `00000002-0000-0000-c000-000000000000`, iss the app's object id, lifetime ≤ 10 minutes.
fn check_proof(app: &App, proof: &str, now: Timestamp) -> Result<(), GErr> {
    let fail = |m: &str| {
        bad_request(format!(
            "Key credential proof of possession is invalid: {m}"
        ))
    };
    let jwt = Jwt::parse(proof).ok_or_else(|| fail("not a JWT"))?;
    if jwt.claim_str("aud") != Some("00000002-0000-0000-c000-000000000000") {
        return Err(fail("aud must be 00000002-0000-0000-c000-000000000000"));
    }
    if !jwt
        .claim_str("iss")
        .is_some_and(|i| i.eq_ignore_ascii_case(&app.id))
    {
        return Err(fail("iss must be the application's object id"));
    }
    let nbf = jwt.claim_i64("nbf").ok_or_else(|| fail("nbf missing"))?;
    let exp = jwt.claim_i64("exp").ok_or_else(|| fail("exp missing"))?;
    if exp - nbf > 600 {
        return Err(fail("lifetime longer than 10 minutes"));
    }
    let t = now.as_second();
    if t + 300 < nbf || t > exp {
        return Err(fail("expired or not yet valid"));
    }
    let signed = app
        .keys
        .iter()
        .filter(|k| k.start <= now && k.end > now)
        .any(|k| jwt.verify_with_cert(&k.cert));
    if signed {
        Ok(())
    } else {
        Err(fail("not signed by a valid certificate of the application"))
    }
}

fn add_key(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let now = st.now();
    let usable_at = st.credential_usable_at();
    if body.get("passwordCredential").is_some_and(|p| !p.is_null()) {
        return Err(bad_request(
            "addKey with a passwordCredential is not supported by the emulator.",
        ));
    }
    let item = body
        .get("keyCredential")
        .ok_or_else(|| bad_request("Property 'keyCredential' is required."))?;
    let key = item
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'keyCredential.key' is required."))?;
    let proof = body.get("proof").and_then(Value::as_str).unwrap_or("");
    check_proof(&tenant(st, caller).apps[id], proof, now)?;
    let k = parse_key_credential(item, key, now, usable_at)?;
    let mut out = k.render();
    out["@odata.context"] = json!(format!("{GRAPH_CONTEXT}microsoft.graph.keyCredential"));
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    app.keys.push(k);
    app.changed_seq = seq;
    Ok(Resp::json(200, &out))
}

fn remove_key(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let now = st.now();
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'keyId' is required."))?
        .to_ascii_lowercase();
    let proof = body.get("proof").and_then(Value::as_str).unwrap_or("");
    check_proof(&tenant(st, caller).apps[id], proof, now)?;
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    let before = app.keys.len();
    app.keys.retain(|k| k.key_id != key_id);
    if app.keys.len() == before {
        return Err(bad_request(format!(
            "No key credential found with keyId '{key_id}'."
        )));
    }
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}

// ---------------------------------------------------------------------------------------------
// owners

fn add_owner(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let odata_id = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property '@odata.id' is required."))?;
    let oid = odata_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_start_matches("directoryObjects(")
        .trim_matches(|c| c == '\'' || c == ')')
        .to_ascii_lowercase();
    if !is_guid(&oid) {
        return Err(bad_request(format!("Invalid object identifier '{oid}'.")));
    }
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    if app.owners.contains(&oid) {
        return Err(bad_request(
            "One or more added object references already exist for the following modified properties: 'owners'.",
        ));
    }
    app.owners.push(oid);
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}

// ---------------------------------------------------------------------------------------------
// federated identity credentials

fn create_fic(
    st: &mut State,
    caller: &Caller,
    app_id: &str,
    mut body: Map<String, Value>,
    name: Option<&str>,
) -> GResult {
    if let Some(n) = name {
        match body.get("name").and_then(Value::as_str) {
            Some(b) if b != n => {
                return Err(bad_request(
                    "Property 'name' in the body does not match the key in the request URL.",
                ));
            }
            _ => {
                body.insert("name".into(), json!(n));
            }
        }
    }
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'name' is required."))?
        .to_string();
    validate_fic(&body, &name)?;
    let app = &tenant(st, caller).apps[app_id];
    if app.fics.len() >= MAX_FICS {
        return Err(bad_request(format!(
            "The application can have at most {MAX_FICS} federated identity credentials."
        )));
    }
    if app.fics.iter().any(|f| f["name"] == name.as_str()) {
        return Err(conflict(format!(
            "A federated identity credential named '{name}' already exists on the application."
        )));
    }
    check_fic_unique(app, &body, None)?;
    let fic = json!({
        "id": new_guid(),
        "name": name,
        "issuer": body["issuer"],
        "subject": body["subject"],
        "audiences": body.get("audiences").cloned().unwrap_or(json!(["api://AzureADTokenExchange"])),
        "description": body.get("description").cloned().unwrap_or(Value::Null),
    });
    let Value::Object(fic) = fic else {
        unreachable!()
    };
    let mut out = Value::Object(fic.clone());
    out["@odata.context"] = json!(format!(
        "{GRAPH_CONTEXT}applications('{app_id}')/federatedIdentityCredentials/$entity"
    ));
    tenant_mut(st, caller)
        .apps
        .get_mut(app_id)
        .expect("app")
        .fics
        .push(fic);
    Ok(Resp::json(201, &out))
}

fn validate_fic(body: &Map<String, Value>, name: &str) -> Result<(), GErr> {
    if name.is_empty()
        || name.len() > 120
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad_request(
            "Property 'name' must be 1–120 characters of letters, digits, '-' or '_'.",
        ));
    }
    let issuer = body.get("issuer").and_then(Value::as_str).unwrap_or("");
    let subject = body.get("subject").and_then(Value::as_str).unwrap_or("");
    if issuer.is_empty() || !issuer.starts_with("https://") {
        return Err(bad_request("Property 'issuer' must be an https URL."));
    }
    if subject.is_empty() || subject.len() > 600 {
        return Err(bad_request("Property 'subject' must be 1–600 characters."));
    }
    if let Some(a) = body.get("audiences") {
        let list = str_array(Some(a));
        if list.len() != 1 {
            return Err(bad_request(
                "Property 'audiences' must hold exactly one value.",
            ));
        }
    }
    Ok(())
}

fn check_fic_unique(
    app: &App,
    body: &Map<String, Value>,
    except: Option<&str>,
) -> Result<(), GErr> {
    let issuer = body.get("issuer");
    let subject = body.get("subject");
    if app.fics.iter().any(|f| {
        Some(f["name"].as_str().unwrap_or("")) != except
            && f.get("issuer") == issuer
            && f.get("subject") == subject
    }) {
        return Err(conflict(
            "A federated identity credential with the same issuer and subject already exists on the application.",
        ));
    }
    Ok(())
}

fn fic_routes(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    app_id: &str,
    key: &str,
    by_name: bool,
) -> GResult {
    let idx = tenant(st, caller).apps[app_id].fics.iter().position(|f| {
        if by_name {
            f["name"] == key
        } else {
            f["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(key))
        }
    });
    match (req.method.as_str(), idx) {
        ("GET", Some(i)) => {
            let v = Value::Object(tenant(st, caller).apps[app_id].fics[i].clone());
            Ok(entity(
                200,
                &format!("applications('{app_id}')/federatedIdentityCredentials"),
                v,
                req,
            ))
        }
        ("DELETE", Some(i)) => {
            tenant_mut(st, caller)
                .apps
                .get_mut(app_id)
                .expect("app")
                .fics
                .remove(i);
            Ok(Resp::empty(204))
        }
        ("PATCH", Some(i)) => {
            let body = body_object(req)?;
            let app = &tenant(st, caller).apps[app_id];
            let mut fic = app.fics[i].clone();
            if body.get("name").is_some_and(|n| *n != fic["name"]) {
                return Err(bad_request("Property 'name' is immutable."));
            }
            for k in ["issuer", "subject", "audiences", "description"] {
                if let Some(v) = body.get(k) {
                    fic.insert(k.into(), v.clone());
                }
            }
            let name = fic["name"].as_str().unwrap_or("").to_string();
            validate_fic(&fic, &name)?;
            check_fic_unique(app, &fic, Some(&name))?;
            tenant_mut(st, caller)
                .apps
                .get_mut(app_id)
                .expect("app")
                .fics[i] = fic;
            Ok(Resp::empty(204))
        }
        ("PATCH", None) if by_name && prefer_create(req) => {
            let body = body_object(req)?;
            create_fic(st, caller, app_id, body, Some(key))
        }
        _ => Err(not_found(key)),
    }
}

// ---------------------------------------------------------------------------------------------
// delta

fn delta(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    // Tokens: base64url("{since}.{snapshot}.{offset}.{issued}") for skip, "{since}.{issued}" for delta.
    let decode = |s: &str| -> Option<Vec<i64>> {
        let raw = String::from_utf8(crate::util::b64url_decode(s)?).ok()?;
        raw.split('.').map(|p| p.parse().ok()).collect()
    };
    let (since, snapshot, offset) = if let Some(tok) = req.query("$skiptoken") {
        let v = decode(tok)
            .filter(|v| v.len() == 4)
            .ok_or_else(|| GErr::new(400, "Request_BadRequest", "The skip token is invalid."))?;
        (v[0] as u64, v[1] as u64, v[2] as usize)
    } else if let Some(tok) = req.query("$deltatoken") {
        if tok == "latest" {
            let link = format!(
                "{base}/v1.0/applications/delta?$deltatoken={}",
                b64url(format!("{}.{}", st.seq, now.as_second()).as_bytes())
            );
            return Ok(Resp::json(
                200,
                &json!({"@odata.context": format!("{GRAPH_CONTEXT}applications"), "value": [], "@odata.deltaLink": link}),
            ));
        }
        let v = decode(tok)
            .filter(|v| v.len() == 2)
            .ok_or_else(|| GErr::new(400, "Request_BadRequest", "The delta token is invalid."))?;
        if now.as_second() - v[1] > 7 * 24 * 3600 {
            return Err(GErr::new(
                410,
                "SyncStateNotFound",
                "The sync state generation is too old. Start a new synchronization without a delta token.",
            ));
        }
        (v[0] as u64, st.seq, 0)
    } else {
        (0, st.seq, 0)
    };
    let mut changes: Vec<(u64, Value)> = Vec::new();
    for app in t.apps.values() {
        if app.changed_seq <= since || app.changed_seq > snapshot {
            continue;
        }
        if app.deleted_at.is_some() {
            if since > 0 {
                changes.push((
                    app.changed_seq,
                    json!({"id": app.id, "@removed": {"reason": "changed"}}),
                ));
            }
        } else if app.visible_at <= now {
            changes.push((app.changed_seq, select(app.render(), req)));
        }
    }
    if since > 0 {
        for (seq, id, reason) in &t.tombstones {
            if *seq > since && *seq <= snapshot && *reason == "deleted" {
                changes.push((*seq, json!({"id": id, "@removed": {"reason": reason}})));
            }
        }
    }
    changes.sort_by_key(|(s, _)| *s);
    let page: Vec<Value> = changes
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .map(|(_, v)| v.clone())
        .collect();
    let select_q = req
        .query("$select")
        .map(|s| format!("&$select={s}"))
        .unwrap_or_default();
    let mut out = json!({"@odata.context": format!("{GRAPH_CONTEXT}applications"), "value": page});
    if offset + PAGE_SIZE < changes.len() {
        let tok = b64url(
            format!(
                "{since}.{snapshot}.{}.{}",
                offset + PAGE_SIZE,
                now.as_second()
            )
            .as_bytes(),
        );
        out["@odata.nextLink"] = json!(format!(
            "{base}/v1.0/applications/delta?$skiptoken={tok}{select_q}"
        ));
    } else {
        let tok = b64url(format!("{snapshot}.{}", now.as_second()).as_bytes());
        out["@odata.deltaLink"] = json!(format!(
            "{base}/v1.0/applications/delta?$deltatoken={tok}{select_q}"
        ));
    }
    Ok(Resp::json(200, &out))
}

// ---------------------------------------------------------------------------------------------
// service principals

fn find_sp(st: &State, caller: &Caller, key: &Key) -> Result<String, GErr> {
    let now = st.now();
    let t = tenant(st, caller);
    let (found, shown) = match key {
        Key::Id(id) => (t.sps.get(&id.to_ascii_lowercase()), *id),
        Key::AppId(a) => (t.sp_by_app_id(a), *a),
        Key::UniqueName(u) => (None, *u),
    };
    match found {
        Some(sp) if sp.visible(now) => Ok(sp.id.clone()),
        _ => Err(not_found(shown)),
    }
}

const SP_READ_ONLY: &[&str] = &[
    "id",
    "appId",
    "appRoles",
    "oauth2PermissionScopes",
    "servicePrincipalNames",
    "appOwnerOrganizationId",
    "createdDateTime",
    "deletedDateTime",
    "appDisplayName",
];

fn create_sp(st: &mut State, caller: &Caller, req: &Req, app_id: Option<&str>) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    let app_id = match app_id {
        Some(a) => a.to_string(),
        None => body
            .get("appId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("Property 'appId' is required."))?
            .to_string(),
    }
    .to_ascii_lowercase();
    let now = st.now();
    let backed = st.app_by_app_id(&app_id).is_some_and(|(home, app)| {
        app.visible(now) && (home.id == caller.tenant_id || app.multi_tenant())
    });
    if !backed {
        return Err(bad_request(format!(
            "The appId '{app_id}' of the service principal does not reference a valid application object."
        ))
        .details(json!([{"code": "NoBackingApplicationObject", "target": "appId"}])));
    }
    if tenant(st, caller).sp_by_app_id(&app_id).is_some() {
        return Err(conflict(
            "Another object with the same value for property servicePrincipalNames already exists.",
        ));
    }
    for p in SP_READ_ONLY {
        body.remove(*p);
    }
    let visible_at = st.visible_at();
    let mut sp = Sp::new(&app_id, now, visible_at);
    sp.props = body;
    let rendered = st.render_sp(tenant(st, caller), &sp);
    tenant_mut(st, caller).sps.insert(sp.id.clone(), sp);
    Ok(entity(201, "servicePrincipals", rendered, req))
}

fn sp_routes(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    key: Key,
    suffix: &str,
    rest: &[String],
) -> GResult {
    let m = req.method.as_str();
    if let (Key::AppId(a), "PATCH", "") = (&key, m, suffix) {
        let now = st.now();
        let exists = tenant(st, caller)
            .sp_by_app_id(a)
            .filter(|s| s.visible(now))
            .map(|s| s.id.clone());
        return match exists {
            Some(id) => patch_sp(st, caller, req, &id),
            None if prefer_create(req) => create_sp(st, caller, req, Some(a)),
            None => Err(not_found(a)),
        };
    }
    let id = find_sp(st, caller, &key)?;
    match (m, suffix) {
        ("GET", "") => {
            let t = tenant(st, caller);
            let v = st.render_sp(t, &t.sps[&id]);
            Ok(entity(200, "servicePrincipals", v, req))
        }
        ("PATCH", "") => patch_sp(st, caller, req, &id),
        ("DELETE", "") => {
            remove_sp(tenant_mut(st, caller), &id);
            Ok(Resp::empty(204))
        }
        ("GET", "/appRoleAssignedTo") | ("GET", "/appRoleAssignments") => {
            let by_resource = suffix == "/appRoleAssignedTo";
            let t = tenant(st, caller);
            let mut list: Vec<&Assignment> = t
                .assignments
                .values()
                .filter(|a| {
                    if by_resource {
                        a.resource_id == id
                    } else {
                        a.principal_id == id
                    }
                })
                .collect();
            list.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
            let items = list
                .into_iter()
                .map(|a| render_assignment(st, t, a))
                .collect();
            collection(
                req,
                "",
                &format!("servicePrincipals('{id}'){suffix}"),
                items,
            )
        }
        ("POST", "/appRoleAssignedTo") | ("POST", "/appRoleAssignments") => {
            create_assignment(st, caller, req, &id, suffix == "/appRoleAssignedTo")
        }
        ("GET", "/appRoleAssignedTo/{id}") | ("GET", "/appRoleAssignments/{id}") => {
            let t = tenant(st, caller);
            let a = t
                .assignments
                .get(&rest[0])
                .filter(|a| a.resource_id == id || a.principal_id == id)
                .ok_or_else(|| not_found(&rest[0]))?;
            let v = render_assignment(st, t, a);
            Ok(entity(200, "appRoleAssignments", v, req))
        }
        ("DELETE", "/appRoleAssignedTo/{id}") | ("DELETE", "/appRoleAssignments/{id}") => {
            let t = tenant_mut(st, caller);
            match t.assignments.get(&rest[0]) {
                Some(a) if a.resource_id == id || a.principal_id == id => {
                    t.assignments.remove(&rest[0]);
                    Ok(Resp::empty(204))
                }
                _ => Err(not_found(&rest[0])),
            }
        }
        ("GET", "/oauth2PermissionGrants") => {
            let items = tenant(st, caller)
                .grants
                .values()
                .filter(|g| g["clientId"] == id.as_str())
                .cloned()
                .map(Value::Object)
                .collect();
            collection(req, "", "oauth2PermissionGrants", items)
        }
        _ => Err(GErr::new(
            405,
            "Request_BadRequest",
            "The specified HTTP method is not allowed for the request target.",
        )),
    }
}

fn patch_sp(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    let app_id = tenant(st, caller).sps[id].app_id.clone();
    for p in SP_READ_ONLY {
        if let Some(v) = body.remove(*p) {
            if *p == "appId" && v.as_str().is_some_and(|x| x.eq_ignore_ascii_case(&app_id)) {
                continue;
            }
            return Err(bad_request(format!(
                "Property '{p}' is read-only and cannot be set."
            )));
        }
    }
    if let Some(v) = body.get("accountEnabled")
        && !v.is_boolean()
    {
        return Err(bad_request("Property 'accountEnabled' must be a boolean."));
    }
    if let Some(v) = body.get("appRoleAssignmentRequired")
        && !v.is_boolean()
    {
        return Err(bad_request(
            "Property 'appRoleAssignmentRequired' must be a boolean.",
        ));
    }
    let sp = tenant_mut(st, caller).sps.get_mut(id).expect("sp");
    deep_merge(&mut sp.props, body);
    Ok(Resp::empty(204))
}

fn render_assignment(st: &State, t: &Tenant, a: &Assignment) -> Value {
    let name = |id: &str| {
        t.sps
            .get(id)
            .map(|sp| st.render_sp(t, sp)["displayName"].clone())
            .unwrap_or(Value::Null)
    };
    a.render(&name(&a.principal_id), &name(&a.resource_id))
}

fn create_assignment(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    path_sp: &str,
    path_is_resource: bool,
) -> GResult {
    let body = body_object(req)?;
    let get = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| bad_request(format!("Property '{k}' is required.")))
    };
    let principal = get("principalId")?;
    let resource = get("resourceId")?;
    let role = get("appRoleId")?;
    let expected = if path_is_resource {
        &resource
    } else {
        &principal
    };
    if expected != path_sp {
        return Err(bad_request(format!(
            "Property '{}' must be the service principal in the request URL.",
            if path_is_resource {
                "resourceId"
            } else {
                "principalId"
            }
        )));
    }
    let now = st.now();
    let t = tenant(st, caller);
    if !t.sps.get(&principal).is_some_and(|s| s.visible(now)) {
        return Err(not_found(&principal));
    }
    let Some(resource_sp) = t.sps.get(&resource).filter(|s| s.visible(now)) else {
        return Err(not_found(&resource));
    };
    let default_access = role == "00000000-0000-0000-0000-000000000000";
    let roles = st.sp_app_roles(resource_sp);
    let found = roles.iter().any(|r| {
        r["id"]
            .as_str()
            .is_some_and(|i| i.eq_ignore_ascii_case(&role))
            && r["isEnabled"] != false
            && str_array(r.get("allowedMemberTypes"))
                .iter()
                .any(|m| m == "Application")
    });
    if !default_access && !found {
        return Err(bad_request(format!(
            "Permission being assigned was not found on application '{}'.",
            resource_sp.app_id
        )));
    }
    if t.assignments
        .values()
        .any(|a| a.principal_id == principal && a.resource_id == resource && a.app_role_id == role)
    {
        return Err(bad_request(
            "Permission being assigned already exists on the object",
        ));
    }
    let a = Assignment {
        id: b64url(&random_bytes(32)),
        app_role_id: role,
        principal_id: principal,
        resource_id: resource,
        created: now,
    };
    let v = render_assignment(st, t, &a);
    tenant_mut(st, caller).assignments.insert(a.id.clone(), a);
    Ok(entity(201, "appRoleAssignments", v, req))
}

fn list_sps(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    let mut sps: Vec<&Sp> = t.sps.values().filter(|s| s.visible(now)).collect();
    sps.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    let view = |sp: &&Sp, keys: &[String]| {
        if keys.iter().all(|k| k == "appId" || k == "id") {
            json!({"id": sp.id, "appId": sp.app_id})
        } else {
            st.render_sp(t, sp)
        }
    };
    collection_of(req, base, "servicePrincipals", sps, view, |sp| {
        st.render_sp(t, sp)
    })
}

// ---------------------------------------------------------------------------------------------
// oauth2PermissionGrants

fn list_grants(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let items = tenant(st, caller)
        .grants
        .values()
        .cloned()
        .map(Value::Object)
        .collect();
    collection(req, base, "oauth2PermissionGrants", items)
}

fn create_grant(st: &mut State, caller: &Caller, req: &Req) -> GResult {
    let body = body_object(req)?;
    let get = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let client = get("clientId").ok_or_else(|| bad_request("Property 'clientId' is required."))?;
    let resource =
        get("resourceId").ok_or_else(|| bad_request("Property 'resourceId' is required."))?;
    let consent_type = body
        .get("consentType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'consentType' is required."))?
        .to_string();
    let principal = get("principalId");
    match (consent_type.as_str(), &principal) {
        ("AllPrincipals", None) | ("Principal", Some(_)) => {}
        ("AllPrincipals", Some(_)) => {
            return Err(bad_request(
                "principalId must be null when consentType is AllPrincipals.",
            ));
        }
        ("Principal", None) => {
            return Err(bad_request(
                "principalId is required when consentType is Principal.",
            ));
        }
        _ => return Err(bad_request("Invalid value for property 'consentType'.")),
    }
    let scope = body
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let now = st.now();
    let t = tenant(st, caller);
    for sp in [&client, &resource] {
        if !t.sps.get(sp).is_some_and(|s| s.visible(now)) {
            return Err(not_found(sp));
        }
    }
    if t.grants.values().any(|g| {
        g["clientId"] == client.as_str()
            && g["resourceId"] == resource.as_str()
            && g["consentType"] == consent_type.as_str()
            && g.get("principalId").and_then(Value::as_str) == principal.as_deref()
    }) {
        return Err(conflict(
            "A permission grant already exists for this client, resource and principal.",
        ));
    }
    let id = b64url(&random_bytes(32));
    let grant = json!({
        "id": id,
        "clientId": client,
        "consentType": consent_type,
        "principalId": principal,
        "resourceId": resource,
        "scope": scope,
    });
    let Value::Object(g) = grant.clone() else {
        unreachable!()
    };
    tenant_mut(st, caller).grants.insert(id, g);
    Ok(entity(201, "oauth2PermissionGrants", grant, req))
}

fn grant_routes(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let t = tenant_mut(st, caller);
    let Some(grant) = t.grants.get_mut(id) else {
        return Err(not_found(id));
    };
    match req.method.as_str() {
        "GET" => {
            let v = Value::Object(grant.clone());
            Ok(entity(200, "oauth2PermissionGrants", v, req))
        }
        "PATCH" => {
            let body = body_object(req)?;
            for (k, v) in body {
                if k == "scope" {
                    grant.insert(k, v);
                } else if grant.get(&k) != Some(&v) {
                    return Err(bad_request(format!("Property '{k}' cannot be updated.")));
                }
            }
            Ok(Resp::empty(204))
        }
        "DELETE" => {
            t.grants.remove(id);
            Ok(Resp::empty(204))
        }
        _ => Err(GErr::new(405, "Request_BadRequest", "Method not allowed.")),
    }
}

// ---------------------------------------------------------------------------------------------
// tenant information

fn tenant_info(st: &State, req: &Req, id: Option<&str>, domain: Option<&str>) -> GResult {
    let t = match (id, domain) {
        (Some(id), _) => st.tenants.get(&id.to_ascii_lowercase()),
        (_, Some(d)) => st.resolve_tenant(d),
        _ => None,
    };
    match t {
        Some(t) => {
            let mut v = t.info();
            v["@odata.context"] =
                json!(format!("{GRAPH_CONTEXT}microsoft.graph.tenantInformation"));
            Ok(Resp::json(200, &select(v, req)))
        }
        None => Err(GErr::new(
            404,
            "Request_ResourceNotFound",
            format!(
                "Tenant information for '{}' was not found.",
                id.or(domain).unwrap_or("")
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// $batch

pub(crate) fn batch(shared: &Arc<Shared>, req: &Req, request_id: &str, crid: &str) -> Resp {
    let err = |m: &str| GErr::new(400, "BadRequest", m).into_resp(request_id, crid);
    let Some(body) = req.json() else {
        return err("Invalid batch payload format.");
    };
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return err("Invalid batch payload format.");
    };
    if requests.len() > 20 {
        return err("Number of batch request steps exceeds the maximum of 20.");
    }
    let mut ids = Vec::new();
    for r in requests {
        let id = r.get("id").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let Some(id) = id else {
            return err("Each batch request needs an id.");
        };
        if ids.contains(&id) {
            return err("Batch request ids must be unique.");
        }
        ids.push(id);
    }
    let auth = req.header("authorization").unwrap_or("").to_string();
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::new();
    for (r, id) in requests.iter().zip(ids) {
        let depends: Vec<String> = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if depends
            .iter()
            .any(|d| statuses.get(d).is_none_or(|s| *s >= 400))
        {
            statuses.insert(id.clone(), 424);
            responses.push(json!({
                "id": id,
                "status": 424,
                "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "FailedDependency", "message": "The request depends on a request that failed."}},
            }));
            continue;
        }
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let url = r.get("url").and_then(Value::as_str).unwrap_or("");
        let url = match url.find("/v1.0/") {
            Some(i) => url[i + 5..].to_string(),
            None => format!("/{}", url.trim_start_matches('/')),
        };
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let mut headers = hyper::HeaderMap::new();
        if let Some(h) = r.get("headers").and_then(Value::as_object) {
            for (k, v) in h {
                if let (Ok(k), Some(Ok(v))) = (
                    hyper::header::HeaderName::try_from(k.as_str()),
                    v.as_str().map(hyper::header::HeaderValue::try_from),
                ) {
                    headers.append(k, v);
                }
            }
        }
        if let Ok(v) = hyper::header::HeaderValue::try_from(auth.as_str()) {
            headers.insert("authorization", v);
        }
        let body = match r.get("body") {
            None | Some(Value::Null) => Bytes::new(),
            Some(v) => Bytes::from(v.to_string()),
        };
        let inner = Req {
            method: method.clone(),
            path: format!("/v1.0{path}"),
            query: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            body,
        };
        let rt = route(&inner.path);
        let fault = shared_pick(shared, &method, &rt.template);
        let resp = shared.process(&inner, &rt, fault, true);
        if resp.drop_connection {
            return Resp::dropped();
        }
        statuses.insert(id.clone(), resp.status);
        let mut h = Map::new();
        for (k, v) in &resp.headers {
            h.insert(k.clone(), json!(v));
        }
        let mut item = json!({"id": id, "status": resp.status, "headers": h});
        if !resp.body.is_empty() {
            item["body"] = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        }
        responses.push(item);
    }
    Resp::json(200, &json!({ "responses": responses }))
}

fn shared_pick(
    shared: &Arc<Shared>,
    method: &str,
    template: &str,
) -> Option<crate::config::FaultKind> {
    // Delays are ignored inside a batch: the batch is answered as one response.
    shared
        .pick_fault(method, template)
        .filter(|f| !matches!(f, crate::config::FaultKind::Delay { .. }))
}
