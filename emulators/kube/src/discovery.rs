//! Discovery (`/version`, `/api`, `/apis`, group and group-version resource lists, aggregated
//! discovery v2 when asked for), health endpoints and minimal OpenAPI documents.

use axum::body::Body;
use hyper::{Method, Response, header};
use serde_json::{Value, json};

use crate::resources::{ResourceType, version_priority};
use crate::state::State;

fn respond(body: &Value, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap()
}

fn not_found() -> Response<Body> {
    Response::builder()
        .status(404)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404})
            .to_string(),
        ))
        .unwrap()
}

/// Groups served, each with its versions sorted by preference.
fn groups(state: &State) -> Vec<(String, Vec<String>)> {
    let types = state.types.read();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let entry = match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some(e) => e,
            None => {
                out.push((t.group.clone(), Vec::new()));
                out.last_mut().unwrap()
            }
        };
        for v in &t.versions {
            if !entry.1.contains(v) {
                entry.1.push(v.clone());
            }
        }
    }
    for (_, vs) in out.iter_mut() {
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    out
}

fn resource_entries(t: &ResourceType, aggregated: bool) -> Vec<Value> {
    if aggregated {
        let mut r = json!({
            "resource": t.plural, "responseKind": {"group": t.group, "version": "", "kind": t.kind},
            "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": t.singular, "verbs": t.verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        if t.status_subresource {
            r["subresources"] = json!([{"subresource": "status", "responseKind": {"group": t.group, "version": "", "kind": t.kind}, "verbs": ["get", "patch", "update"]}]);
        }
        return vec![r];
    }
    let mut r = json!({
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
        "kind": t.kind, "verbs": t.verbs(),
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let mut out = vec![r];
    if t.status_subresource {
        out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
    }
    out
}

fn resource_list(state: &State, group: &str, version: &str) -> Option<Value> {
    let types = state.types.read();
    let matching: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        .collect();
    if matching.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = matching
        .iter()
        .flat_map(|t| resource_entries(t, false))
        .collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn aggregated(state: &State, legacy: bool, v2: bool) -> Value {
    let types = state.types.read().clone();
    let items: Vec<Value> = if legacy {
        let resources: Vec<Value> = types
            .iter()
            .filter(|t| t.group.is_empty())
            .flat_map(|t| resource_entries(t, true))
            .map(|mut r| {
                r["responseKind"]["version"] = json!("v1");
                r
            })
            .collect();
        vec![
            json!({"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]}),
        ]
    } else {
        groups(state)
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = types
                            .iter()
                            .filter(|t| t.group == g && t.versions.contains(v))
                            .flat_map(|t| resource_entries(t, true))
                            .map(|mut r| {
                                r["responseKind"]["version"] = json!(v);
                                if let Some(subs) = r["subresources"].as_array_mut() {
                                    for s in subs {
                                        s["responseKind"]["version"] = json!(v);
                                    }
                                }
                                r
                            })
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect()
    };
    let api_version = if v2 {
        "apidiscovery.k8s.io/v2"
    } else {
        "apidiscovery.k8s.io/v2beta1"
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

/// Handles discovery and other non-resource paths; `None` for resource paths.
pub fn handle(state: &State, method: &Method, path: &str, accept: &str) -> Option<Response<Body>> {
    if method != Method::GET {
        return None;
    }
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    let json_ct = "application/json";
    let wants_aggregated = accept.contains("as=APIGroupDiscoveryList");
    let v2 = accept.contains("v=v2;") || accept.contains("v=v2,") || accept.ends_with("v=v2");
    match segs.as_slice() {
        ["version"] => Some(respond(
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-emulator", "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
            json_ct,
        )),
        ["healthz"] | ["livez"] | ["readyz"] => Some(
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("ok"))
                .unwrap(),
        ),
        ["api"] => {
            if wants_aggregated {
                let ct = format!(
                    "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
                    if v2 { "v2" } else { "v2beta1" }
                );
                return Some(respond(&aggregated(state, true, v2), &ct));
            }
            Some(respond(
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:0"}]}),
                json_ct,
            ))
        }
        ["apis"] => {
            if wants_aggregated {
                let ct = format!(
                    "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
                    if v2 { "v2" } else { "v2beta1" }
                );
                return Some(respond(&aggregated(state, false, v2), &ct));
            }
            let groups: Vec<Value> = groups(state)
                .into_iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            Some(respond(
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                json_ct,
            ))
        }
        ["api", "v1"] => resource_list(state, "", "v1").map(|b| respond(&b, json_ct)),
        ["apis", group] => {
            let (g, vs) = groups(state).into_iter().find(|(g, _)| g == group)?;
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            Some(respond(
                &json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0]}),
                json_ct,
            ))
        }
        ["apis", group, version] => Some(
            resource_list(state, group, version)
                .map(|b| respond(&b, json_ct))
                .unwrap_or_else(not_found),
        ),
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] => Some(openapi_v2(accept)),
        ["openapi", "v3"] => Some(respond(&openapi_root(state), json_ct)),
        ["openapi", "v3", "api", "v1"] => openapi_gv(state, "", "v1").map(|d| respond(&d, json_ct)),
        ["openapi", "v3", "apis", group, version] => {
            openapi_gv(state, group, version).map(|d| respond(&d, json_ct))
        }
        ["openapi", "v3", ..] => Some(not_found()),
        _ => None,
    }
}

fn openapi_root(state: &State) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", state.store.current_rv())}),
    );
    for (g, vs) in groups(state) {
        for v in vs {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={}", state.store.current_rv())}),
            );
        }
    }
    json!({"paths": paths})
}

fn reverse_group(group: &str) -> String {
    if group.is_empty() {
        return "io.k8s.api.core".into();
    }
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    parts.join(".")
}

/// An OpenAPI v3 document for one group-version: paths (with the `fieldValidation` parameter
/// that kubectl looks for) and, for custom resources, the CRD's schema.
fn openapi_gv(state: &State, group: &str, version: &str) -> Option<Value> {
    let types = state.types.read().clone();
    let matching: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        .collect();
    if matching.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in matching {
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}}
        ]);
        let op = |verb: &str| json!({"operationId": format!("{verb}{}", t.kind), "parameters": params, "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": verb, "responses": {"200": {"description": "OK"}}});
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        paths.insert(base.clone(), json!({"get": op("list"), "post": op("post")}));
        paths.insert(format!("{base}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        let schema_name = format!("{}.{version}.{}", reverse_group(group), t.kind);
        let mut schema = t.schema(version).cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}

/// A minimal OpenAPI v2 document (no paths or definitions): kubectl 1.27's `apply` needs one to
/// exist, in protobuf (gnostic `openapi_v2.Document`) when it asks for that, else JSON.
fn openapi_v2(accept: &str) -> Response<Body> {
    if accept.contains("protobuf") {
        fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![tag, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        }
        let mut info = field(0x0A, b"Kubernetes");
        info.extend(field(0x12, b"v1.33.0"));
        let mut doc = field(0x0A, b"2.0");
        doc.extend(field(0x12, &info));
        doc.extend(field(0x42, &[]));
        return Response::builder()
            .status(200)
            .header(
                header::CONTENT_TYPE,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )
            .body(Body::from(doc))
            .unwrap();
    }
    respond(
        &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}}),
        "application/json",
    )
}
