//! The HTTP layer: every request enters at [`handle`]. Latency faults, authentication, request
//! counts, discovery, routing of `/api` and `/apis` paths ([`parse_resource_path`]), subresources,
//! RBAC, body decoding (JSON, YAML, protobuf), and dispatch of each verb to the state, `gc`, `list`,
//! `watch` and `table`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response, header};
use serde_json::{Value, json};

use crate::api_error::{ApiError, ApiResult, error_response, json_response};
use crate::request::{Params, ReqInfo};
use crate::resources::status_error;
use crate::state::State;
use crate::watch::watch;
use crate::{discovery, table};

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
    // `as=PartialObjectMetadata` (one object, watch events) and `as=PartialObjectMetadataList`
    // (a list): metadata only, as kube-rs's metadata_watcher and client-go's metadata informers
    // ask for (https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources).
    let want_meta = !want_table && accept.contains("as=PartialObjectMetadata");
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
                let shape = if want_table {
                    crate::watch::Shape::Table
                } else if want_meta {
                    crate::watch::Shape::Metadata
                } else {
                    crate::watch::Shape::Object
                };
                return watch(state, ri, params, shape).await;
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
                    } else if want_meta {
                        let items: Vec<Value> = items.iter().map(table::partial_metadata).collect();
                        Ok((
                            200,
                            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
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
                    } else if want_meta {
                        Ok((200, table::partial_metadata(&o)))
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
