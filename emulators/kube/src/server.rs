//! Request handling: routing, CRUD, patches, status subresource, finalizers, deletion and
//! garbage collection, list and watch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::{Request, Response, header};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::resources::{ResourceType, builtins, res_key, status_error};
use crate::selectors::{LabelSelector, parse_field_selector};
use crate::ssa::{self, Scope};
use crate::store::{EventType, Store, WatchMsg, WatchStart};
use crate::{discovery, table, validation};

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
    fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::with_details(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.group_qualified()),
            json!({"name": name, "group": rt.group, "kind": rt.plural}),
        )
    }
    fn conflict(rt: &ResourceType, name: &str) -> Self {
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
    fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Default)]
pub struct Faults {
    pub latency_ms: u64,
    /// Resource plural (or `*`) → (remaining failures, status code).
    pub fail_next: HashMap<String, (u32, u16)>,
}

pub struct State {
    pub store: Store,
    pub types: RwLock<Vec<ResourceType>>,
    pub faults: Mutex<Faults>,
    pub token: Option<String>,
    /// `--authorization rbac`: resource requests are authorized by RBAC (the admin token is in
    /// `system:masters`); otherwise every authenticated request is allowed.
    pub rbac: std::sync::atomic::AtomicBool,
    /// ServiceAccount tokens issued by TokenRequest: token → (namespace, name, uid).
    pub sa_tokens: Mutex<HashMap<String, (String, String, String)>>,
    pub gc: Notify,
    pub bookmark_interval: Duration,
    /// Requests served per (verb, resource plural), as the API server's `apiserver_request_total`
    /// counts them, so tests can assert which requests a client made (e.g. no LIST per reconcile).
    pub request_counts: Mutex<HashMap<(String, String), u64>>,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap()
}

fn error_response(e: ApiError) -> Response<Body> {
    json_response(e.code, &e.body)
}

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
    fn parse(q: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

impl State {
    pub fn new(token: Option<String>, history: usize, bookmark_interval: Duration) -> Arc<State> {
        let state = Arc::new(State {
            store: Store::new(history),
            types: RwLock::new(builtins()),
            faults: Mutex::new(Faults::default()),
            token,
            rbac: std::sync::atomic::AtomicBool::new(false),
            sa_tokens: Mutex::new(HashMap::new()),
            gc: Notify::new(),
            bookmark_interval,
            request_counts: Mutex::new(HashMap::new()),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = state.create_object(
                "v1",
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                "kube-apiserver",
            );
        }
        state
    }

    /// Who sends a request: the admin token (or, with no token configured and RBAC off, anyone)
    /// is the admin; a ServiceAccount token whose account still exists is that account; no
    /// credentials with RBAC on is the anonymous user; anything else is not authenticated.
    pub fn authenticate(&self, headers: &hyper::HeaderMap) -> Option<crate::rbac::UserInfo> {
        use crate::rbac::UserInfo;
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let rbac = self.rbac.load(std::sync::atomic::Ordering::Relaxed);
        match bearer {
            Some(t) if self.token.as_deref() == Some(t) => Some(UserInfo::admin()),
            Some(t) => {
                let (ns, name, uid) = self.sa_tokens.lock().get(t).cloned()?;
                let sa = self
                    .store
                    .get(&res_key("", "serviceaccounts"), &ns, &name)?;
                (sa["metadata"]["uid"] == uid.as_str())
                    .then(|| UserInfo::service_account(&ns, &name))
            }
            None if self.token.is_some() && !rbac => None,
            None if rbac => Some(UserInfo::anonymous()),
            None => Some(UserInfo::admin()),
        }
    }

    /// RBAC over the Roles, ClusterRoles and bindings in the store.
    pub fn authorize(&self, user: &crate::rbac::UserInfo, a: &crate::rbac::Attributes) -> bool {
        if user.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        let all = |plural: &str| {
            self.store
                .list(&res_key("rbac.authorization.k8s.io", plural), None)
                .0
        };
        let (cr, crb, r, rb) = (
            all("clusterroles"),
            all("clusterrolebindings"),
            all("roles"),
            all("rolebindings"),
        );
        crate::rbac::Policy {
            cluster_roles: &cr,
            cluster_role_bindings: &crb,
            roles: &r,
            role_bindings: &rb,
        }
        .allows(user, a)
    }

    /// `POST serviceaccounts/<name>/token` (TokenRequest, what `kubectl create token` sends): a
    /// bearer token for the ServiceAccount, valid while the account exists.
    pub fn issue_token(&self, ri: &ReqInfo) -> ApiResult<Value> {
        self.token_request(ri, json!({}))
    }

    fn token_request(&self, ri: &ReqInfo, body: Value) -> ApiResult<Value> {
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.clone().unwrap_or_default();
        let Some(sa) = self.store.get(&ri.rt.key(), &ns, &name) else {
            return Err(ApiError::not_found(&ri.rt, &name));
        };
        let uid = sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let token = format!(
            "kube-emulator.{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.sa_tokens
            .lock()
            .insert(token.clone(), (ns.clone(), name.clone(), uid));
        let seconds = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        let expires = (chrono::Utc::now() + chrono::Duration::seconds(seconds))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut spec = body["spec"].clone();
        if !spec.is_object() {
            spec = json!({});
        }
        spec["expirationSeconds"] = json!(seconds);
        if spec["audiences"].is_null() {
            spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
        }
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": now()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .read()
            .iter()
            .find(|t| {
                t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    pub fn type_by_key(&self, key: &str) -> Option<ResourceType> {
        self.types.read().iter().find(|t| t.key() == key).cloned()
    }

    fn type_by_api_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.types
            .read()
            .iter()
            .find(|t| t.group == group && t.kind == kind && t.versions.iter().any(|v| v == version))
            .cloned()
    }

    fn check_fault(&self, rt: &ResourceType) -> ApiResult<()> {
        let mut f = self.faults.lock();
        for key in [rt.plural.as_str(), "*"] {
            if let Some((n, code)) = f.fail_next.get_mut(key)
                && *n > 0
            {
                *n -= 1;
                let code = *code;
                return Err(if code == 409 {
                    ApiError::conflict(rt, "injected")
                } else {
                    ApiError::new(
                        code,
                        "InternalError",
                        format!("Internal error occurred: injected fault ({code})"),
                    )
                });
            }
        }
        Ok(())
    }

    /// Converts a stored object to the version asked for (only `apiVersion` differs).
    fn output(&self, rt: &ResourceType, version: &str, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = Value::String(rt.api_version(version));
        o
    }

    // ---------------------------------------------------------------- create

    /// Creates an object (library use: CRDs, namespaces).
    pub fn create_object(
        &self,
        version: &str,
        namespace: Option<&str>,
        obj: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let api_version = obj["apiVersion"].as_str().unwrap_or(version).to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let rt = self.type_by_api_kind(&api_version, &kind).ok_or_else(|| {
            ApiError::new(404, "NotFound", format!("no kind {kind} in {api_version}"))
        })?;
        let v = api_version
            .rsplit('/')
            .next()
            .unwrap_or(version)
            .to_string();
        let ns = if rt.namespaced {
            Some(
                namespace
                    .map(String::from)
                    .or_else(|| obj["metadata"]["namespace"].as_str().map(String::from))
                    .unwrap_or_else(|| "default".into()),
            )
        } else {
            None
        };
        let ri = ReqInfo {
            rt,
            version: v,
            namespace: ns,
            name: None,
            sub: None,
        };
        self.create(&ri, obj, manager, false, false)
    }

    fn create(
        &self,
        ri: &ReqInfo,
        mut obj: Value,
        manager: &str,
        dry_run: bool,
        strict: bool,
    ) -> ApiResult<Value> {
        let rt = &ri.rt;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        fold_string_data(rt, &mut obj);
        if let Some(k) = obj["kind"].as_str()
            && !k.is_empty()
            && k != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                obj["apiVersion"].as_str().unwrap_or_default(),
                rt.api_version(&ri.version)
            )));
        }
        obj["apiVersion"] = Value::String(rt.api_version(&ri.version));
        obj["kind"] = Value::String(rt.kind.clone());
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let ns = if rt.namespaced {
            let url_ns = ri.namespace.clone().unwrap_or_else(|| "default".into());
            if let Some(body_ns) = obj["metadata"]["namespace"].as_str()
                && !body_ns.is_empty()
                && body_ns != url_ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = Value::String(url_ns.clone());
            url_ns
        } else {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            String::new()
        };
        let name = match obj["metadata"]["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match obj["metadata"]["generateName"].as_str() {
                Some(g) if !g.is_empty() => {
                    let suffix: String = uuid::Uuid::new_v4()
                        .simple()
                        .to_string()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .take(5)
                        .collect();
                    format!("{g}{suffix}")
                }
                _ => {
                    return Err(ApiError::with_details(
                        422,
                        "Invalid",
                        format!(
                            "{}.{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            rt.kind, rt.group
                        ),
                        json!({"kind": rt.kind, "group": rt.group, "causes": [{"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}]}),
                    ));
                }
            },
        };
        obj["metadata"]["name"] = Value::String(name.clone());

        if rt.namespaced {
            match self.store.get(&res_key("", "namespaces"), "", &ns) {
                None => {
                    return Err(ApiError::with_details(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                        json!({"name": ns, "kind": "namespaces"}),
                    ));
                }
                Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            rt.group_qualified()
                        ),
                    ));
                }
                _ => {}
            }
        }
        if rt.status_subresource
            && rt.is_custom()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        {
            let meta = obj["metadata"].as_object_mut().unwrap();
            for k in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(k);
            }
        }
        obj = self.validate(ri, obj, None, strict)?;
        let ts = now();
        {
            let meta = obj["metadata"].as_object_mut().unwrap();
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(ts));
            if rt.has_generation() {
                meta.insert("generation".into(), json!(1));
            }
        }
        if rt.plural == "namespaces" {
            if obj["status"]["phase"].is_null() {
                obj["status"] = json!({"phase": "Active"});
            }
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        if rt.plural == "customresourcedefinitions" {
            obj["status"] = crd_status(&obj);
        }
        let schema = rt.schema(&ri.version).cloned().unwrap_or(Value::Null);
        let scope = if rt.status_subresource {
            Scope::MainWithoutStatus
        } else {
            Scope::All
        };
        ssa::record_update(
            None,
            &mut obj,
            manager,
            &schema,
            scope,
            "",
            &rt.api_version(&ri.version),
            &ts,
        );
        if dry_run {
            return Ok(obj);
        }
        let key = rt.key();
        let stored = {
            let mut inner = self.store.inner.lock();
            if inner.get(&key, &ns, &name).is_some() {
                return Err(ApiError::with_details(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", rt.group_qualified()),
                    json!({"name": name, "group": rt.group, "kind": rt.plural}),
                ));
            }
            let rv = inner.next_rv();
            obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            let obj = Arc::new(obj);
            inner.commit(&key, &ns, &name, EventType::Added, obj.clone());
            obj
        };
        if rt.plural == "customresourcedefinitions" {
            self.register_crd(&stored);
        }
        Ok(self.output(rt, &ri.version, &stored))
    }

    /// Prunes, defaults and validates an object of a custom resource (or a CRD).
    fn validate(
        &self,
        ri: &ReqInfo,
        obj: Value,
        old: Option<&Value>,
        strict: bool,
    ) -> ApiResult<Value> {
        let rt = &ri.rt;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let invalid = |errors: Vec<validation::FieldError>| {
            let causes: Vec<Value> = errors
                .iter()
                .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
                .collect();
            ApiError::with_details(
                422,
                "Invalid",
                validation::render_message(&rt.kind, &rt.group, &name, &errors),
                json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}),
            )
        };
        if rt.plural == "customresourcedefinitions" {
            let errors = validation::validate_crd(&obj);
            if !errors.is_empty() {
                return Err(invalid(errors));
            }
            return Ok(obj);
        }
        if let Some(schema) = rt.schema(&ri.version) {
            if strict {
                let unknown = validation::unknown_fields(&obj, schema);
                if !unknown.is_empty() {
                    let msg = unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(
                        ApiError::bad_request(format!(".{}: {msg}", "")).with_message(format!(
                            "{}.{} \"{name}\" is invalid: strict decoding error: {msg}",
                            rt.kind, rt.group
                        )),
                    );
                }
            }
            return validation::validate_with_schema(schema, &obj, old).map_err(invalid);
        }
        if let Some(n) = obj["metadata"]["name"].as_str()
            && !validation::is_dns_subdomain(n)
            && rt.plural != "events"
        {
            return Err(invalid(vec![validation::FieldError {
                field: "metadata.name".into(),
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: \"{n}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            }]));
        }
        Ok(obj)
    }

    fn register_crd(&self, crd: &Value) {
        if let Some(rt) = ResourceType::from_crd(crd) {
            let mut types = self.types.write();
            types.retain(|t| !(t.group == rt.group && t.plural == rt.plural));
            types.push(rt);
        }
    }

    // ---------------------------------------------------------------- update / patch

    /// The object that results from writing `new` over `current` through `sub`, or `None` when
    /// nothing changes.
    #[allow(clippy::too_many_arguments)]
    fn prepare_update(
        &self,
        ri: &ReqInfo,
        current: &Value,
        mut new: Value,
        manager: &str,
        apply: Option<(&Value, bool)>,
        strict: bool,
    ) -> ApiResult<Option<Value>> {
        let rt = &ri.rt;
        let status_sub = ri.sub.as_deref() == Some("status");
        let schema = rt.schema(&ri.version).cloned().unwrap_or(Value::Null);
        let scope = if status_sub {
            Scope::Status
        } else if rt.status_subresource {
            Scope::MainWithoutStatus
        } else {
            Scope::All
        };
        let ts = now();
        let api_version = rt.api_version(&ri.version);
        let subresource = if status_sub { "status" } else { "" };
        if let Some((applied, force)) = apply {
            new = ssa::apply(ssa::ApplyInput {
                live: Some(current),
                applied,
                manager,
                force,
                schema: &schema,
                scope,
                subresource,
                api_version: &api_version,
                now: &ts,
            })
            .map_err(|c| conflict_error(rt, &ri.name.clone().unwrap_or_default(), &c))?;
        }
        new["apiVersion"] = Value::String(api_version.clone());
        new["kind"] = Value::String(rt.kind.clone());
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        fold_string_data(rt, &mut new);
        if status_sub {
            let mut merged = current.clone();
            match new.get("status") {
                Some(s) => merged["status"] = s.clone(),
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if apply.is_some() {
                merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
            }
            new = merged;
        } else if rt.status_subresource {
            match current.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let cm = &current["metadata"];
            let meta = new["metadata"].as_object_mut().unwrap();
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
            ] {
                match cm.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            meta.remove("resourceVersion");
        }
        new = self.validate(ri, new, Some(current), strict && !status_sub)?;
        if rt.has_generation() {
            let spec_changed = {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("metadata");
                        m.remove("status");
                    }
                    v
                };
                strip(current) != strip(&new)
            };
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(if spec_changed { g + 1 } else { g });
        }
        if apply.is_none() {
            ssa::record_update(
                Some(current),
                &mut new,
                manager,
                &schema,
                scope,
                subresource,
                &api_version,
                &ts,
            );
        }
        if rt.plural == "customresourcedefinitions" {
            new["status"] = crd_status(&new);
        }
        // No-op writes do not change the resource version.
        let comparable = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("resourceVersion");
                if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
                    for e in mf {
                        if let Some(em) = e.as_object_mut() {
                            em.remove("time");
                        }
                    }
                }
            }
            v["apiVersion"] = Value::Null;
            v
        };
        if comparable(current) == comparable(&new) {
            return Ok(None);
        }
        Ok(Some(new))
    }

    /// Commits an update if the stored object still has `expected_rv`. `Ok(None)`: lost a race.
    fn commit_update(
        &self,
        ri: &ReqInfo,
        ns: &str,
        name: &str,
        expected_rv: &str,
        mut new: Value,
    ) -> ApiResult<Option<Arc<Value>>> {
        let key = ri.rt.key();
        let mut inner = self.store.inner.lock();
        let Some(cur) = inner.get(&key, ns, name) else {
            return Err(ApiError::not_found(&ri.rt, name));
        };
        if cur["metadata"]["resourceVersion"].as_str() != Some(expected_rv) {
            return Ok(None);
        }
        new["apiVersion"] = Value::String(ri.rt.api_version(&ri.rt.storage_version));
        let rv = inner.next_rv();
        new["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let deleting = ri.rt.plural != "namespaces"
            && !new["metadata"]["deletionTimestamp"].is_null()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        let obj = Arc::new(new);
        if deleting {
            inner.commit(&key, ns, name, EventType::Deleted, obj.clone());
        } else {
            inner.commit(&key, ns, name, EventType::Modified, obj.clone());
        }
        drop(inner);
        if deleting {
            self.after_delete(&ri.rt, &obj);
        } else if ri.rt.plural == "customresourcedefinitions" {
            self.register_crd(&obj);
        }
        Ok(Some(obj))
    }

    fn update(
        &self,
        ri: &ReqInfo,
        body: Value,
        manager: &str,
        dry_run: bool,
        strict: bool,
    ) -> ApiResult<Value> {
        let rt = &ri.rt;
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.clone().unwrap_or_default();
        if let Some(n) = body["metadata"]["name"].as_str()
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let body_rv = body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if body_rv.is_empty() && rt.is_custom() {
            return Err(ApiError::with_details(
                422,
                "Invalid",
                format!(
                    "{}.{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                    rt.kind, rt.group
                ),
                json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update", "field": "metadata.resourceVersion"}]}),
            ));
        }
        self.check_fault(rt)?;
        loop {
            let current = self
                .store
                .get(&rt.key(), &ns, &name)
                .ok_or_else(|| ApiError::not_found(rt, &name))?;
            let cur_rv = current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if !body_rv.is_empty() && body_rv != cur_rv {
                return Err(ApiError::conflict(rt, &name));
            }
            let Some(new) =
                self.prepare_update(ri, &current, body.clone(), manager, None, strict)?
            else {
                return Ok(self.output(rt, &ri.version, &current));
            };
            if dry_run {
                return Ok(self.output(rt, &ri.version, &new));
            }
            if let Some(obj) = self.commit_update(ri, &ns, &name, &cur_rv, new)? {
                return Ok(self.output(rt, &ri.version, &obj));
            }
            if !body_rv.is_empty() {
                return Err(ApiError::conflict(rt, &name));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn patch(
        &self,
        ri: &ReqInfo,
        content_type: &str,
        body: &[u8],
        params: &Params,
        manager: &str,
        dry_run: bool,
        strict: bool,
    ) -> ApiResult<(u16, Value)> {
        let rt = &ri.rt;
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.clone().unwrap_or_default();
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let is_apply = ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor";
        let patch_doc: Value = if is_apply {
            serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
        };
        if is_apply && params.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(ApiError::with_details(
                400,
                "BadRequest",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                json!({}),
            ));
        }
        let force = params.flag("force");
        self.check_fault(rt)?;
        loop {
            let current = self.store.get(&rt.key(), &ns, &name);
            let Some(current) = current else {
                if is_apply && ri.sub.is_none() {
                    let mut obj = ssa::apply(ssa::ApplyInput {
                        live: None,
                        applied: &patch_doc,
                        manager,
                        force,
                        schema: rt.schema(&ri.version).unwrap_or(&Value::Null),
                        scope: if rt.status_subresource {
                            Scope::MainWithoutStatus
                        } else {
                            Scope::All
                        },
                        subresource: "",
                        api_version: &rt.api_version(&ri.version),
                        now: &now(),
                    })
                    .map_err(|c| conflict_error(rt, &name, &c))?;
                    obj["metadata"]["name"] = Value::String(name.clone());
                    let mf = obj["metadata"]["managedFields"].clone();
                    let created = self.create_with_managed(ri, obj, mf, dry_run, strict)?;
                    return Ok((201, created));
                }
                return Err(ApiError::not_found(rt, &name));
            };
            let cur_rv = current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let view = self.output(rt, &ri.version, &current);
            let new = match ct {
                "application/json-patch+json" => {
                    let p: json_patch::Patch =
                        serde_json::from_value(patch_doc.clone()).map_err(|e| {
                            ApiError::bad_request(format!("error decoding JSON patch: {e}"))
                        })?;
                    let mut doc = view.clone();
                    // As in Kubernetes (evanphx/json-patch), `test` of a missing path against
                    // null succeeds.
                    for op in p.0.iter() {
                        if let json_patch::PatchOperation::Test(t) = op
                            && t.value.is_null()
                            && doc.pointer(&t.path.to_string()).is_none()
                        {
                            continue;
                        }
                        if let Err(e) = json_patch::patch(&mut doc, std::slice::from_ref(op)) {
                            return Err(ApiError::new(
                                422,
                                "Invalid",
                                format!(
                                    "the server rejected our request due to an error in our request: {e}"
                                ),
                            ));
                        }
                    }
                    doc
                }
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    if ct == "application/strategic-merge-patch+json" && rt.is_custom() {
                        return Err(ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
                        ));
                    }
                    let mut doc = view.clone();
                    let p = if ct == "application/strategic-merge-patch+json" {
                        strip_directives(&patch_doc)
                    } else {
                        patch_doc.clone()
                    };
                    json_patch::merge(&mut doc, &p);
                    doc
                }
                _ if is_apply => view.clone(),
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml ({other})"
                        ),
                    ));
                }
            };
            if let Some(prv) = new["metadata"]["resourceVersion"].as_str()
                && !is_apply
                && prv != cur_rv
            {
                return Err(ApiError::conflict(rt, &name));
            }
            let apply = if is_apply {
                Some((&patch_doc, force))
            } else {
                None
            };
            let Some(new) = self.prepare_update(ri, &view, new, manager, apply, strict)? else {
                return Ok((200, view));
            };
            if dry_run {
                return Ok((200, self.output(rt, &ri.version, &new)));
            }
            if let Some(obj) = self.commit_update(ri, &ns, &name, &cur_rv, new)? {
                return Ok((200, self.output(rt, &ri.version, &obj)));
            }
        }
    }

    fn create_with_managed(
        &self,
        ri: &ReqInfo,
        obj: Value,
        managed: Value,
        dry_run: bool,
        strict: bool,
    ) -> ApiResult<Value> {
        let created = self.create(ri, obj, "__ssa_placeholder__", true, strict)?;
        let _ = created;
        // Create for real, then put the apply entry in place of the create entry.
        let mut obj2 = created.clone();
        obj2["metadata"]["managedFields"] = managed;
        if dry_run {
            return Ok(obj2);
        }
        let key = ri.rt.key();
        let ns = obj2["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj2["metadata"]["name"].as_str().unwrap_or("").to_string();
        let stored = {
            let mut inner = self.store.inner.lock();
            if inner.get(&key, &ns, &name).is_some() {
                return Err(ApiError::with_details(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", ri.rt.group_qualified()),
                    json!({"name": name, "group": ri.rt.group, "kind": ri.rt.plural}),
                ));
            }
            let rv = inner.next_rv();
            obj2["apiVersion"] = Value::String(ri.rt.api_version(&ri.rt.storage_version));
            obj2["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            let o = Arc::new(obj2);
            inner.commit(&key, &ns, &name, EventType::Added, o.clone());
            o
        };
        if ri.rt.plural == "customresourcedefinitions" {
            self.register_crd(&stored);
        }
        Ok(self.output(&ri.rt, &ri.version, &stored))
    }

    // ---------------------------------------------------------------- delete

    fn delete(&self, ri: &ReqInfo, opts: &Value, dry_run: bool) -> ApiResult<Value> {
        let rt = &ri.rt;
        let name = ri.name.clone().unwrap_or_default();
        let ns = ri.namespace.clone().unwrap_or_default();
        self.check_fault(rt)?;
        let policy = opts["propagationPolicy"]
            .as_str()
            .unwrap_or("Background")
            .to_string();
        let policy = if opts["orphanDependents"] == true {
            "Orphan".to_string()
        } else {
            policy
        };
        loop {
            let current = self
                .store
                .get(&rt.key(), &ns, &name)
                .ok_or_else(|| ApiError::not_found(rt, &name))?;
            let cur_rv = current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let Some(p) = opts["preconditions"]["resourceVersion"].as_str()
                && p != cur_rv
            {
                return Err(ApiError::conflict(rt, &name));
            }
            if let Some(p) = opts["preconditions"]["uid"].as_str()
                && Some(p) != current["metadata"]["uid"].as_str()
            {
                return Err(ApiError::conflict(rt, &name));
            }
            if dry_run {
                return Ok(self.output(rt, &ri.version, &current));
            }
            let mut new = (*current).clone();
            let mut finalizers: Vec<Value> = new["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if policy == "Foreground" && new["metadata"]["deletionTimestamp"].is_null() {
                let has_dependents = self
                    .dependents_of(current["metadata"]["uid"].as_str().unwrap_or(""))
                    .next_some();
                if has_dependents && !finalizers.contains(&json!("foregroundDeletion")) {
                    finalizers.push(json!("foregroundDeletion"));
                }
            }
            if policy == "Orphan" {
                self.orphan_dependents(current["metadata"]["uid"].as_str().unwrap_or(""));
            }
            if rt.plural == "namespaces" {
                // Namespaces terminate: content is deleted by the namespace controller (GC loop).
                if new["metadata"]["deletionTimestamp"].is_null() {
                    new["metadata"]["deletionTimestamp"] = json!(now());
                    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    new["status"]["phase"] = json!("Terminating");
                    if let Some(Some(o)) =
                        self.commit_update(ri, &ns, &name, &cur_rv, new)?.map(Some)
                    {
                        self.gc.notify_one();
                        return Ok(self.output(rt, &ri.version, &o));
                    }
                    continue;
                }
                return Ok(self.output(rt, &ri.version, &current));
            }
            if !finalizers.is_empty() {
                if !new["metadata"]["deletionTimestamp"].is_null() {
                    return Ok(self.output(rt, &ri.version, &current));
                }
                new["metadata"]["finalizers"] = Value::Array(finalizers);
                new["metadata"]["deletionTimestamp"] = json!(now());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if let Some(o) = self.commit_update(ri, &ns, &name, &cur_rv, new)? {
                    self.gc.notify_one();
                    return Ok(self.output(rt, &ri.version, &o));
                }
                continue;
            }
            // Delete now.
            let key = rt.key();
            let mut inner = self.store.inner.lock();
            match inner.get(&key, &ns, &name) {
                Some(c) if c["metadata"]["resourceVersion"].as_str() == Some(cur_rv.as_str()) => {}
                Some(_) => continue,
                None => return Err(ApiError::not_found(rt, &name)),
            }
            let rv = inner.next_rv();
            new["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            let obj = Arc::new(new);
            inner.commit(&key, &ns, &name, EventType::Deleted, obj.clone());
            drop(inner);
            self.after_delete(rt, &obj);
            return Ok(self.output(rt, &ri.version, &obj));
        }
    }

    fn after_delete(&self, rt: &ResourceType, obj: &Value) {
        if rt.plural == "customresourcedefinitions"
            && let Some(crt) = ResourceType::from_crd(obj)
        {
            let key = crt.key();
            let mut inner = self.store.inner.lock();
            let objs: Vec<((String, String), Arc<Value>)> = inner
                .objects
                .get(&key)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            for ((ns, name), o) in objs {
                let rv = inner.next_rv();
                let mut o = (*o).clone();
                o["metadata"]["resourceVersion"] = Value::String(rv.to_string());
                inner.commit(&key, &ns, &name, EventType::Deleted, Arc::new(o));
            }
            drop(inner);
            self.types
                .write()
                .retain(|t| !(t.group == crt.group && t.plural == crt.plural));
        }
        self.gc.notify_one();
    }

    fn dependents_of(&self, uid: &str) -> DependentIter {
        let inner = self.store.inner.lock();
        let v: Vec<(String, Arc<Value>)> = inner
            .all_objects()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        DependentIter(v)
    }

    fn orphan_dependents(&self, uid: &str) {
        for (key, o) in self.dependents_of(uid).0 {
            let Some(rt) = self.type_by_key(&key) else {
                continue;
            };
            let mut new = (*o).clone();
            if let Some(rs) = new["metadata"]["ownerReferences"].as_array_mut() {
                rs.retain(|r| r["uid"] != uid);
            }
            let ri = ReqInfo {
                version: rt.storage_version.clone(),
                namespace: o["metadata"]["namespace"].as_str().map(String::from),
                name: o["metadata"]["name"].as_str().map(String::from),
                sub: None,
                rt,
            };
            let _ = self.commit_update(
                &ri,
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or(""),
                o["metadata"]["resourceVersion"].as_str().unwrap_or(""),
                new,
            );
        }
    }

    /// One garbage-collection pass: deletes dependents whose owners are all gone, cascades
    /// foreground deletions, and finishes terminating namespaces.
    pub fn gc_pass(&self) {
        let (uids, objects): (HashSet<String>, Vec<(String, Arc<Value>)>) = {
            let inner = self.store.inner.lock();
            let uids = inner
                .all_objects()
                .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(String::from))
                .collect();
            let objs = inner
                .all_objects()
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect();
            (uids, objs)
        };
        let ri_for = |key: &str, o: &Value| -> Option<ReqInfo> {
            let rt = self.type_by_key(key)?;
            Some(ReqInfo {
                version: rt.storage_version.clone(),
                namespace: o["metadata"]["namespace"].as_str().map(String::from),
                name: o["metadata"]["name"].as_str().map(String::from),
                sub: None,
                rt,
            })
        };
        for (key, o) in &objects {
            let meta = &o["metadata"];
            // Dependents of deleted owners.
            if let Some(refs) = meta["ownerReferences"].as_array()
                && !refs.is_empty()
                && refs
                    .iter()
                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or("")))
                && meta["deletionTimestamp"].is_null()
                && let Some(ri) = ri_for(key, o)
            {
                let _ = self.delete(&ri, &json!({"propagationPolicy": "Background"}), false);
            }
            // Foreground deletion: delete dependents, then drop the finalizer.
            let fg = meta["finalizers"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("foregroundDeletion")));
            if fg && !meta["deletionTimestamp"].is_null() {
                let uid = meta["uid"].as_str().unwrap_or("");
                let deps = self.dependents_of(uid).0;
                if deps.is_empty() {
                    if let Some(ri) = ri_for(key, o) {
                        let mut new = (**o).clone();
                        if let Some(f) = new["metadata"]["finalizers"].as_array_mut() {
                            f.retain(|x| x != "foregroundDeletion");
                        }
                        let _ = self.commit_update(
                            &ri,
                            meta["namespace"].as_str().unwrap_or(""),
                            meta["name"].as_str().unwrap_or(""),
                            meta["resourceVersion"].as_str().unwrap_or(""),
                            new,
                        );
                    }
                } else {
                    for (dk, d) in deps {
                        if d["metadata"]["deletionTimestamp"].is_null()
                            && let Some(ri) = ri_for(&dk, &d)
                        {
                            let _ = self.delete(
                                &ri,
                                &json!({"propagationPolicy": "Foreground"}),
                                false,
                            );
                        }
                    }
                }
            }
            // Terminating namespaces.
            if key == "/namespaces" && !meta["deletionTimestamp"].is_null() {
                let ns = meta["name"].as_str().unwrap_or("");
                let content: Vec<(String, Arc<Value>)> = objects
                    .iter()
                    .filter(|(_, x)| x["metadata"]["namespace"].as_str() == Some(ns))
                    .cloned()
                    .collect();
                let mut remaining = 0;
                for (ck, c) in content {
                    remaining += 1;
                    if c["metadata"]["deletionTimestamp"].is_null()
                        && let Some(ri) = ri_for(&ck, &c)
                    {
                        let _ = self.delete(&ri, &json!({}), false);
                    }
                }
                if remaining == 0 {
                    let key = res_key("", "namespaces");
                    let mut inner = self.store.inner.lock();
                    if inner.get(&key, "", ns).is_some() {
                        let rv = inner.next_rv();
                        let mut n = (**o).clone();
                        n["metadata"]["resourceVersion"] = Value::String(rv.to_string());
                        inner.commit(&key, "", ns, EventType::Deleted, Arc::new(n));
                    }
                } else {
                    self.gc.notify_one();
                }
            }
        }
    }

    // ---------------------------------------------------------------- list

    fn list(&self, ri: &ReqInfo, params: &Params) -> ApiResult<(Vec<Value>, Value)> {
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
            if !labels.matches(o) || !fields.matches_fields(&with_ns_field(o)) {
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

struct DependentIter(Vec<(String, Arc<Value>)>);
impl DependentIter {
    fn next_some(&self) -> bool {
        !self.0.is_empty()
    }
}

fn with_ns_field(o: &Value) -> Value {
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

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !k.starts_with("$setElementOrder")
                        && !k.starts_with("$retainKeys")
                        && k.as_str() != "$patch"
                })
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn conflict_error(rt: &ResourceType, name: &str, conflicts: &[ssa::Conflict]) -> ApiError {
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

impl ApiError {
    fn with_message(mut self, m: String) -> Self {
        self.body["message"] = Value::String(m);
        self
    }
}

fn crd_status(crd: &Value) -> Value {
    let ts = now();
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd["spec"]["names"],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": ts},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": ts}
        ],
        "storedVersions": stored,
    })
}

fn manager_of(params: &Params, req_headers: &hyper::HeaderMap) -> String {
    if let Some(m) = params.get("fieldManager")
        && !m.is_empty()
    {
        return m.to_string();
    }
    req_headers
        .get(header::USER_AGENT)
        .and_then(|u| u.to_str().ok())
        .map(|u| u.split('/').next().unwrap_or(u).to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Splits `/api/v1/...` or `/apis/g/v/...` into a resource request.
pub fn parse_resource_path(state: &State, path: &str) -> Option<Result<ReqInfo, ApiError>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match *segs.first()? {
        "api" if segs.len() >= 3 => ("", segs[1], &segs[2..]),
        "apis" if segs.len() >= 4 => (segs[1], segs[2], &segs[3..]),
        _ => return None,
    };
    let mut namespace = None;
    let mut rest = rest.to_vec();
    if rest.len() >= 3 && rest[0] == "namespaces" {
        let candidate = rest[2];
        if state
            .find_type(group, version, candidate)
            .is_some_and(|t| t.namespaced)
        {
            namespace = Some(rest[1].to_string());
            rest = rest[2..].to_vec();
        }
    }
    let plural = rest.first()?;
    let Some(rt) = state.find_type(group, version, plural) else {
        return Some(Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )));
    };
    Some(Ok(ReqInfo {
        rt,
        version: version.to_string(),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    }))
}

/// Entry point for every HTTP request.
pub async fn handle(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    let latency = state.faults.lock().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let user = match state.authenticate(req.headers()) {
        Some(u) => u,
        None => {
            return json_response(
                401,
                &status_error(401, "Unauthorized", "Unauthorized", None),
            );
        }
    };
    let rbac_on = state.rbac.load(std::sync::atomic::Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let params = Params::parse(req.uri().query());
    if let Some(Ok(ri)) = parse_resource_path(&state, &path) {
        // The verbs of the API server's request metrics (list and watch of a collection, get of
        // one object, then the write verbs).
        let verb = match (
            req.method().as_str(),
            ri.name.is_some(),
            params.flag("watch"),
        ) {
            ("GET", _, true) => "watch",
            ("GET", false, false) => "list",
            ("GET", true, false) => "get",
            ("POST", _, _) => "create",
            ("PUT", _, _) => "update",
            ("PATCH", _, _) => "patch",
            ("DELETE", false, _) => "deletecollection",
            ("DELETE", true, _) => "delete",
            _ => "other",
        };
        *state
            .request_counts
            .lock()
            .entry((verb.to_string(), ri.rt.plural.clone()))
            .or_default() += 1;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("")
        .to_string();
    if rbac_on
        && user.name == "system:anonymous"
        && !matches!(
            path.as_str(),
            "/version" | "/healthz" | "/livez" | "/readyz"
        )
        && parse_resource_path(&state, &path).is_none()
    {
        // Discovery is for authenticated users (`system:discovery`); the anonymous user only
        // reads the public info (`system:public-info-viewer`).
        return json_response(
            403,
            &status_error(
                403,
                "Forbidden",
                &format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
                Some(json!({})),
            ),
        );
    }
    if let Some(resp) = discovery::handle(&state, req.method(), &path, &accept) {
        return resp;
    }
    let ri = match parse_resource_path(&state, &path) {
        Some(Ok(ri)) => ri,
        Some(Err(e)) => return error_response(e),
        None => {
            return json_response(
                404,
                &status_error(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                ),
            );
        }
    };
    if ri.rt.namespaced
        && ri.namespace.is_none()
        && !(req.method() == hyper::Method::GET && ri.name.is_none())
    {
        // Namespaced resource addressed without a namespace (create or by name): default is not
        // implied by the apiserver, except that POST to the cluster-wide path is an error.
        if req.method() != hyper::Method::GET || ri.name.is_some() {
            return error_response(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    }
    if let Some(sub) = &ri.sub
        && !(sub == "status" && (ri.rt.status_subresource || ri.rt.plural == "namespaces"))
        && !(sub == "finalize" && ri.rt.plural == "namespaces")
        && !(sub == "token"
            && ri.rt.plural == "serviceaccounts"
            && req.method() == hyper::Method::POST)
    {
        return error_response(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let method = req.method().clone();
    let headers = req.headers().clone();
    if rbac_on {
        let verb = match (method.as_str(), ri.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if params.flag("watch") => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "",
        };
        let attrs = crate::rbac::Attributes {
            verb,
            group: &ri.rt.group,
            resource: &ri.rt.plural,
            subresource: ri.sub.as_deref(),
            namespace: ri.namespace.as_deref(),
            name: ri.name.as_deref(),
        };
        if !state.authorize(&user, &attrs) {
            let (code, body) = crate::rbac::forbidden(&user, &attrs);
            return json_response(code, &body);
        }
        // Server-side apply of an object that does not exist creates it: the API server asks the
        // authorizer for `create` too (endpoints/handlers/patch.go, createAuthorizerAttributes).
        let is_apply = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/apply-patch"));
        if verb == "patch"
            && is_apply
            && state
                .store
                .get(
                    &ri.rt.key(),
                    ri.namespace.as_deref().unwrap_or(""),
                    ri.name.as_deref().unwrap_or(""),
                )
                .is_none()
        {
            let create = crate::rbac::Attributes {
                verb: "create",
                ..attrs
            };
            if !state.authorize(&user, &create) {
                let (code, body) = crate::rbac::forbidden(&user, &create);
                return json_response(code, &body);
            }
        }
    }
    let mut content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let mut body: Bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    // kubectl 1.32+ creates built-in objects with protobuf bodies (see protobuf.rs); custom
    // resources have no protobuf form, so the API server refuses protobuf for them with the 415
    // below.
    if content_type.contains("protobuf") && !ri.rt.is_custom() && !body.is_empty() {
        match crate::protobuf::decode(&body) {
            Ok(object) => {
                body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
                content_type = "application/json".into();
            }
            Err(crate::protobuf::ProtobufError::Malformed(why)) => {
                return error_response(ApiError::bad_request(format!(
                    "error decoding protobuf body: {why}"
                )));
            }
            Err(crate::protobuf::ProtobufError::Unsupported(kind)) => {
                return error_response(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "kube-emulator decodes protobuf bodies only for the kinds kubectl create sends, not {kind}; send JSON"
                    ),
                ));
            }
        }
    }
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return error_response(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml ({content_type})"
            ),
        ));
    }
    let manager = manager_of(&params, &headers);
    let dry_run = params.get("dryRun") == Some("All");
    let strict = params.get("fieldValidation") == Some("Strict");
    let want_table = accept.contains("as=Table");
    let parse_body = |b: &Bytes| -> ApiResult<Value> {
        if content_type.contains("yaml") {
            serde_yaml::from_slice(b)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        } else {
            serde_json::from_slice(b)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
        }
    };
    let st = state.clone();
    let result: ApiResult<(u16, Value)> = match (method.as_str(), ri.name.is_some()) {
        ("GET", false) => {
            if params.flag("watch") {
                return watch(state, ri, params, want_table).await;
            }
            match st.list(&ri, &params) {
                Ok((items, meta)) => {
                    if want_table {
                        Ok((
                            200,
                            table::table_for(
                                &st,
                                &ri,
                                &items,
                                meta,
                                params.get("includeObject"),
                                true,
                            ),
                        ))
                    } else {
                        Ok((
                            200,
                            json!({"kind": format!("{}List", ri.rt.kind), "apiVersion": ri.rt.api_version(&ri.version), "metadata": meta, "items": items}),
                        ))
                    }
                }
                Err(e) => Err(e),
            }
        }
        ("GET", true) => {
            let name = ri.name.clone().unwrap_or_default();
            match st
                .store
                .get(&ri.rt.key(), ri.namespace.as_deref().unwrap_or(""), &name)
            {
                Some(o) => {
                    let o = st.output(&ri.rt, &ri.version, &o);
                    if want_table {
                        let rv = o["metadata"]["resourceVersion"].clone();
                        Ok((
                            200,
                            table::table_for(
                                &st,
                                &ri,
                                &[o],
                                json!({"resourceVersion": rv}),
                                params.get("includeObject"),
                                true,
                            ),
                        ))
                    } else {
                        Ok((200, o))
                    }
                }
                None => Err(ApiError::not_found(&ri.rt, &name)),
            }
        }
        ("POST", true) if ri.sub.as_deref() == Some("token") => parse_body(&body)
            .and_then(|b| st.token_request(&ri, b))
            .map(|o| (201, o)),
        ("POST", false) => parse_body(&body)
            .and_then(|b| {
                st.check_fault(&ri.rt)?;
                st.create(&ri, b, &manager, dry_run, strict)
            })
            .map(|o| (201, o)),
        ("PUT", true) => parse_body(&body)
            .and_then(|b| st.update(&ri, b, &manager, dry_run, strict))
            .map(|o| (200, o)),
        ("PATCH", true) => st.patch(
            &ri,
            &content_type,
            &body,
            &params,
            &manager,
            dry_run,
            strict,
        ),
        ("DELETE", true) => {
            let mut opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).unwrap_or(json!({}))
            };
            if let Some(p) = params.get("propagationPolicy") {
                opts["propagationPolicy"] = json!(p);
            }
            let dry = dry_run
                || opts["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.contains(&json!("All")));
            st.delete(&ri, &opts, dry).map(|o| (200, o))
        }
        ("DELETE", false) => {
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).unwrap_or(json!({}))
            };
            match st.list(&ri, &params) {
                Ok((items, meta)) => {
                    let mut deleted = Vec::new();
                    for o in items {
                        let ri2 = ReqInfo {
                            rt: ri.rt.clone(),
                            version: ri.version.clone(),
                            namespace: o["metadata"]["namespace"].as_str().map(String::from),
                            name: o["metadata"]["name"].as_str().map(String::from),
                            sub: None,
                        };
                        if let Ok(d) = st.delete(&ri2, &opts, dry_run) {
                            deleted.push(d);
                        }
                    }
                    Ok((
                        200,
                        json!({"kind": format!("{}List", ri.rt.kind), "apiVersion": ri.rt.api_version(&ri.version), "metadata": meta, "items": deleted}),
                    ))
                }
                Err(e) => Err(e),
            }
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_string(),
        )),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(e),
    }
}

/// A watch stream: newline-delimited `{"type": ..., "object": ...}`.
async fn watch(state: Arc<State>, ri: ReqInfo, params: Params, want_table: bool) -> Response<Body> {
    let labels = match LabelSelector::parse(params.get("labelSelector").unwrap_or("")) {
        Ok(l) => l,
        Err(e) => return error_response(ApiError::bad_request(e)),
    };
    let fields = match parse_field_selector(params.get("fieldSelector").unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return error_response(ApiError::bad_request(e)),
    };
    let bookmarks = params.flag("allowWatchBookmarks");
    let send_initial = params.flag("sendInitialEvents");
    let rv_param = params.get("resourceVersion").unwrap_or("").to_string();
    let from = if send_initial || rv_param.is_empty() || rv_param == "0" {
        None
    } else {
        match rv_param.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_response(ApiError::bad_request(format!(
                    "invalid resource version: {rv_param}"
                )));
            }
        }
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let start = state.store.watch(
        &ri.rt.key(),
        ri.namespace.as_deref(),
        from,
        send_initial && bookmarks,
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    match start {
        WatchStart::Gone => {
            let status = status_error(
                410,
                "Expired",
                &format!(
                    "too old resource version: {rv_param} ({})",
                    state.store.current_rv()
                ),
                None,
            );
            let line = format!("{}\n", json!({"type": "ERROR", "object": status}));
            let _ = tx.send(Ok(Bytes::from(line))).await;
        }
        WatchStart::Started {
            id,
            rx: mut events,
            replay,
            ..
        } => {
            let st = state.clone();
            tokio::spawn(async move {
                struct Guard(Arc<State>, u64);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        self.0.store.remove_watcher(self.1);
                    }
                }
                let _guard = Guard(st.clone(), id);
                let deadline = tokio::time::Instant::now() + timeout;
                let mut first = true;
                let render = |kind: &str, obj: &Value, first: &mut bool| -> Option<Bytes> {
                    let mut o = st.output(&ri.rt, &ri.version, obj);
                    if want_table {
                        let rv = o["metadata"]["resourceVersion"].clone();
                        o = table::table_for(
                            &st,
                            &ri,
                            &[o],
                            json!({"resourceVersion": rv}),
                            params.get("includeObject"),
                            *first,
                        );
                        *first = false;
                    }
                    let line = format!("{}\n", json!({"type": kind, "object": o}));
                    Some(Bytes::from(line))
                };
                let matches =
                    |o: &Value| labels.matches(o) && fields.matches_fields(&with_ns_field(o));
                for e in replay {
                    if !matches(&e.object) {
                        continue;
                    }
                    if let Some(b) = render(e.kind.as_str(), &e.object, &mut first)
                        && tx.send(Ok(b)).await.is_err()
                    {
                        return;
                    }
                }
                let mut tick = tokio::time::interval(st.bookmark_interval);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = tick.tick(), if bookmarks => st.store.bookmark(id),
                        _ = tx.closed() => return,
                        msg = events.recv() => {
                            let Some(msg) = msg else { return };
                            let bytes = match msg {
                                WatchMsg::Event(e) => {
                                    if !matches(&e.object) { continue; }
                                    match render(e.kind.as_str(), &e.object, &mut first) { Some(b) => b, None => continue }
                                }
                                WatchMsg::Bookmark { rv, initial_end } => {
                                    if !bookmarks { continue; }
                                    let mut meta = json!({"resourceVersion": rv.to_string()});
                                    if initial_end {
                                        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                                    }
                                    let obj = json!({"kind": ri.rt.kind, "apiVersion": ri.rt.api_version(&ri.version), "metadata": meta});
                                    Bytes::from(format!("{}\n", json!({"type": "BOOKMARK", "object": obj})))
                                }
                            };
                            if tx.send(Ok(bytes)).await.is_err() { return; }
                        }
                    }
                }
            });
        }
    }
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// A Secret's `stringData` is write-only: the API server merges it into `data` (base64) on every
/// write, overriding keys already there, and never stores or returns it.
fn fold_string_data(rt: &ResourceType, obj: &mut Value) {
    if rt.group.is_empty()
        && rt.kind == "Secret"
        && let Some(Value::Object(string_data)) =
            obj.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            obj["data"][key] = Value::String(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                text,
            ));
        }
    }
}
