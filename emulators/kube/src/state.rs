//! The emulator's shared state (store, served types, fault switches, tokens, request counts) and the
//! object semantics of writes: create, update and patch (JSON patch, merge patch, strategic merge
//! patch and server-side apply), validation, `generation`, `resourceVersion` and no-op writes, the
//! commit every write goes through, and the per-kind rules (Secret `stringData`, CRD status,
//! CRD registration and removal). Deletion and garbage collection are in `gc`, list in `list`,
//! authentication in `auth`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::api_error::{ApiError, ApiResult, conflict_error};
use crate::request::{Params, ReqInfo};
use crate::resources::{ResourceType, builtins, res_key};
use crate::ssa::{self, Scope};
use crate::store::{EventType, Store};
use crate::validation;

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

    pub(crate) fn check_fault(&self, rt: &ResourceType) -> ApiResult<()> {
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
    pub(crate) fn output(&self, rt: &ResourceType, version: &str, obj: &Value) -> Value {
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

    pub(crate) fn create(
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
        if let Some(error) = data_too_long(rt, &obj) {
            return Err(invalid(vec![error]));
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
    pub(crate) fn commit_update(
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

    pub(crate) fn update(
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
    pub(crate) fn patch(
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

    /// After an object is gone (called by the commit and by `gc`): a deleted CRD takes its objects
    /// and its served type with it, and the garbage collector is woken.
    pub(crate) fn after_delete(&self, rt: &ResourceType, obj: &Value) {
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

/// What a ConfigMap or a Secret may hold: 1 MiB (`core.MaxSecretSize`).
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// A ConfigMap whose keys and values (`data` and decoded `binaryData`), or a Secret whose keys and
/// decoded values, add up to more than [`MAX_DATA_SIZE`] is invalid (`ValidateConfigMap` and
/// `ValidateSecret` in `pkg/apis/core/validation/validation.go`: the ConfigMap's error is on the
/// whole object, the Secret's on `data`).
fn data_too_long(rt: &ResourceType, obj: &Value) -> Option<validation::FieldError> {
    let decoded = |v: &Value| {
        v.as_str()
            .and_then(|s| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).ok()
            })
            .map_or(0, |b| b.len())
    };
    let sum = |field: &str, size: &dyn Fn(&Value) -> usize| {
        obj[field].as_object().map_or(0, |m| {
            m.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>()
        })
    };
    let text = |v: &Value| v.as_str().map_or(0, str::len);
    let (field, total) = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") => ("[]", sum("data", &text) + sum("binaryData", &decoded)),
        ("", "Secret") => ("data", sum("data", &decoded)),
        _ => return None,
    };
    (total > MAX_DATA_SIZE).then(|| {
        validation::FieldError::new(
            field,
            "FieldValueTooLong",
            format!("Too long: must have at most {MAX_DATA_SIZE} bytes"),
        )
    })
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
