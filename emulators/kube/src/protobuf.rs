//! Protobuf request bodies for the built-in kinds `kubectl create` sends.
//!
//! kubectl 1.32 and later send `Content-Type: application/vnd.kubernetes.protobuf` when they create a
//! built-in object (`kubectl create namespace|secret|configmap|serviceaccount|role|rolebinding|...`,
//! `kubectl create token`); a real API server decodes it. The wire format (Kubernetes docs, "API
//! concepts" → "Protobuf encoding"): the 4 bytes `k8s\0`, then a `runtime.Unknown` message whose
//! `typeMeta` names apiVersion and kind and whose `raw` is the object as protobuf.
//!
//! Only the kinds and fields those commands set are declared here, with the field numbers of the
//! published `generated.proto` files (checked against the `k8s-pb` crate 0.9, which is generated
//! from them). We declare ~15 messages instead of depending on `k8s-pb` because that crate compiles
//! every message of every API group. A kind not listed gets the API server's 415 with the kind named:
//! emulator limitation, documented in FIDELITY.md. Responses stay JSON (kubectl's Accept header
//! lists `application/json` after protobuf).

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceAccount {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(bool, optional, tag = "4")]
    automount_service_account_token: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct TokenRequest {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<TokenRequestSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct TokenRequestSpec {
    #[prost(string, repeated, tag = "1")]
    audiences: Vec<String>,
    #[prost(int64, optional, tag = "4")]
    expiration_seconds: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct Role {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, repeated, tag = "2")]
    rules: Vec<PolicyRule>,
}

#[derive(Clone, PartialEq, Message)]
struct PolicyRule {
    #[prost(string, repeated, tag = "1")]
    verbs: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    api_groups: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    resources: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    resource_names: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    non_resource_urls: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct RoleBinding {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, repeated, tag = "2")]
    subjects: Vec<Subject>,
    #[prost(message, optional, tag = "3")]
    role_ref: Option<RoleRef>,
}

#[derive(Clone, PartialEq, Message)]
struct Subject {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "2")]
    api_group: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    namespace: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct RoleRef {
    #[prost(string, optional, tag = "1")]
    api_group: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
}

/// Why a protobuf body was not turned into JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtobufError {
    /// Not the envelope, or a message that does not decode.
    Malformed(String),
    /// A kind this emulator does not decode from protobuf (the API server would).
    Unsupported(String),
}

/// The JSON object a protobuf request body carries.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ProtobufError::Malformed("missing the k8s protobuf prefix".into()))?;
    let envelope = Unknown::decode(rest).map_err(malformed)?;
    if envelope
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ProtobufError::Malformed(format!(
            "unsupported content encoding {:?}",
            envelope.content_encoding
        )));
    }
    let type_meta = envelope.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = envelope.raw.unwrap_or_default();
    let raw = raw.as_slice();
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = Namespace::decode(raw).map_err(malformed)?;
            let mut o = with_meta(ns.metadata);
            if let Some(spec) = ns.spec.filter(|s| !s.finalizers.is_empty()) {
                o.insert("spec".into(), json!({"finalizers": spec.finalizers}));
            }
            o
        }
        ("v1", "Secret") => {
            let s = Secret::decode(raw).map_err(malformed)?;
            let mut o = with_meta(s.metadata);
            if !s.data.is_empty() {
                o.insert("data".into(), base64_map(&s.data));
            }
            if !s.string_data.is_empty() {
                o.insert("stringData".into(), json!(s.string_data));
            }
            if let Some(t) = s.r#type {
                o.insert("type".into(), json!(t));
            }
            if let Some(i) = s.immutable {
                o.insert("immutable".into(), json!(i));
            }
            o
        }
        ("v1", "ConfigMap") => {
            let c = ConfigMap::decode(raw).map_err(malformed)?;
            let mut o = with_meta(c.metadata);
            if !c.data.is_empty() {
                o.insert("data".into(), json!(c.data));
            }
            if !c.binary_data.is_empty() {
                o.insert("binaryData".into(), base64_map(&c.binary_data));
            }
            if let Some(i) = c.immutable {
                o.insert("immutable".into(), json!(i));
            }
            o
        }
        ("v1", "ServiceAccount") => {
            let sa = ServiceAccount::decode(raw).map_err(malformed)?;
            let mut o = with_meta(sa.metadata);
            if let Some(a) = sa.automount_service_account_token {
                o.insert("automountServiceAccountToken".into(), json!(a));
            }
            o
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            let t = TokenRequest::decode(raw).map_err(malformed)?;
            let mut o = with_meta(t.metadata);
            let spec = t.spec.unwrap_or_default();
            let mut s = Map::new();
            s.insert("audiences".into(), json!(spec.audiences));
            if let Some(e) = spec.expiration_seconds {
                s.insert("expirationSeconds".into(), json!(e));
            }
            o.insert("spec".into(), Value::Object(s));
            o
        }
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => {
            let r = Role::decode(raw).map_err(malformed)?;
            let mut o = with_meta(r.metadata);
            o.insert(
                "rules".into(),
                r.rules.iter().map(rule_json).collect::<Vec<_>>().into(),
            );
            o
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            let b = RoleBinding::decode(raw).map_err(malformed)?;
            let mut o = with_meta(b.metadata);
            let subjects: Vec<Value> = b.subjects.iter().map(subject_json).collect();
            if !subjects.is_empty() {
                o.insert("subjects".into(), subjects.into());
            }
            if let Some(r) = b.role_ref {
                o.insert(
                    "roleRef".into(),
                    json!({
                        "apiGroup": r.api_group.unwrap_or_default(),
                        "kind": r.kind.unwrap_or_default(),
                        "name": r.name.unwrap_or_default(),
                    }),
                );
            }
            o
        }
        _ => {
            return Err(ProtobufError::Unsupported(format!(
                "{kind} ({api_version})"
            )));
        }
    };
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

fn malformed(e: prost::DecodeError) -> ProtobufError {
    ProtobufError::Malformed(e.to_string())
}

fn base64_map(m: &BTreeMap<String, Vec<u8>>) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    m.iter()
        .map(|(k, v)| (k.clone(), Value::String(b64.encode(v))))
        .collect::<Map<_, _>>()
        .into()
}

fn with_meta(meta: Option<ObjectMeta>) -> Map<String, Value> {
    let meta = meta.unwrap_or_default();
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            m.insert(k.into(), json!(v));
        }
    };
    put("name", meta.name);
    put("generateName", meta.generate_name);
    put("namespace", meta.namespace);
    if !meta.labels.is_empty() {
        m.insert("labels".into(), json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        m.insert("annotations".into(), json!(meta.annotations));
    }
    if !meta.finalizers.is_empty() {
        m.insert("finalizers".into(), json!(meta.finalizers));
    }
    let mut o = Map::new();
    o.insert("metadata".into(), Value::Object(m));
    o
}

fn rule_json(r: &PolicyRule) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: &Vec<String>| {
        if !v.is_empty() {
            o.insert(k.into(), json!(v));
        }
    };
    put("verbs", &r.verbs);
    put("apiGroups", &r.api_groups);
    put("resources", &r.resources);
    put("resourceNames", &r.resource_names);
    put("nonResourceURLs", &r.non_resource_urls);
    Value::Object(o)
}

fn subject_json(s: &Subject) -> Value {
    let mut o = Map::new();
    for (k, v) in [
        ("kind", &s.kind),
        ("apiGroup", &s.api_group),
        ("name", &s.name),
        ("namespace", &s.namespace),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            o.insert(k.into(), json!(v));
        }
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: None,
        }
        .encode(&mut out)
        .unwrap();
        out
    }

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        })
    }

    #[test]
    fn a_secret_decodes_to_the_json_kubectl_would_have_sent() {
        let secret = Secret {
            metadata: meta("creds"),
            data: [("password".to_string(), b"s3cr\x00t".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let body = envelope("v1", "Secret", secret.encode_to_vec());
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "type": "Opaque", "data": {"password": "czNjcgB0"},
            })
        );
    }

    #[test]
    fn rolebindings_and_namespaces_decode() {
        let binding = RoleBinding {
            metadata: meta("b"),
            subjects: vec![Subject {
                kind: Some("ServiceAccount".into()),
                name: Some("op".into()),
                namespace: Some("sys".into()),
                api_group: None,
            }],
            role_ref: Some(RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: Some("ClusterRole".into()),
                name: Some("view".into()),
            }),
        };
        let v = decode(&envelope(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            binding.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(v["subjects"][0]["namespace"], "sys");
        assert_eq!(v["roleRef"]["name"], "view");
        let ns = Namespace {
            metadata: meta("team-a"),
            spec: None,
        };
        let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        assert!(matches!(
            decode(&envelope("apps/v1", "Deployment", vec![])),
            Err(ProtobufError::Unsupported(k)) if k.contains("Deployment")
        ));
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Malformed(_))));
        assert!(matches!(
            decode(b"k8s\0\xff\xff\xff"),
            Err(ProtobufError::Malformed(_))
        ));
    }
}
