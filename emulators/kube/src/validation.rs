//! Custom resource defaulting, pruning and validation against a CRD's `openAPIV3Schema`, the way
//! kube-apiserver does it: unknown fields are pruned (unless preserved), `null`s for non-nullable
//! fields are dropped, schema `default`s are applied (nested objects and array items too), then the
//! value validations run (types, enums, patterns, formats, required, min/max, list types) and, when
//! the schema is satisfied, the `x-kubernetes-validations` CEL rules (including transition rules
//! with `oldSelf`). Errors carry the field path and a message worded like the apiserver's.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde_json::Value;

use crate::cel_ext;
use crate::field_error::go_value;
pub use crate::field_error::{FieldError, render_message};

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The `openAPIV3Schema` of the CRD version that `api_version` (`group/version`) names.
pub fn schema_for_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .filter(|s| !s.is_null())
}

/// Defaults, prunes and validates `obj` (a custom resource) against `crd` (a CRD document), with
/// `old` the stored object on an update (for transition rules). Returns the defaulted and pruned
/// object, or every error found.
pub fn validate_object(
    crd: &Value,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Value, Vec<FieldError>> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let schema = match schema_for_version(crd, version) {
        Some(s) => s.clone(),
        None => {
            let any = crd["spec"]["versions"]
                .as_array()
                .and_then(|v| v.first())
                .map(|v| v["schema"]["openAPIV3Schema"].clone());
            match any {
                Some(s) if !s.is_null() && version.is_empty() => s,
                _ => {
                    return Err(vec![FieldError::new(
                        "apiVersion",
                        "FieldValueNotSupported",
                        format!(
                            "Unsupported value: {}: version not served by this CRD",
                            go_value(&obj["apiVersion"])
                        ),
                    )]);
                }
            }
        }
    };
    validate_with_schema(&schema, obj, old)
}

/// Like [`validate_object`], with the version's schema given directly.
pub fn validate_with_schema(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Value, Vec<FieldError>> {
    let mut out = obj.clone();
    prune(&mut out, schema, true);
    apply_defaults(&mut out, schema);
    let mut errors = Vec::new();
    validate_metadata(&out, &mut errors);
    validate_node(&out, schema, "", &mut errors, true);
    if errors.is_empty() {
        run_rules(&out, old, schema, "", &mut errors);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn validate_metadata(obj: &Value, errors: &mut Vec<FieldError>) {
    let meta = &obj["metadata"];
    if let Some(name) = meta["name"].as_str()
        && !is_dns_subdomain(name)
    {
        errors.push(FieldError::invalid(
            "metadata.name",
            &meta["name"],
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
}

pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .unwrap()
    });
    !name.is_empty() && name.len() <= 253 && re.is_match(name)
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

fn nullable(schema: &Value) -> bool {
    schema["nullable"] == true
}

/// Drops fields the schema does not know (unless preserved) and `null`s of non-nullable fields.
fn prune(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let embedded = schema["x-kubernetes-embedded-resource"] == true;
            let keep_unknown = preserves(schema) || additional == &Value::Bool(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    if k == "metadata" && root {
                        continue;
                    }
                    if let Some(p) = props.and_then(|p| p.get(&k))
                        && k != "metadata"
                    {
                        prune(map.get_mut(&k).unwrap(), p, false);
                    }
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(if additional.is_object() {
                    Some(additional)
                } else {
                    None
                });
                match child_schema {
                    Some(cs) => {
                        if map[&k].is_null() && !nullable(cs) {
                            map.remove(&k);
                            continue;
                        }
                        prune(map.get_mut(&k).unwrap(), cs, false);
                    }
                    None => {
                        if !keep_unknown {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = &schema["items"];
            if item_schema.is_object() {
                for item in items.iter_mut() {
                    prune(item, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default`s of properties missing from present objects, recursively.
pub fn apply_defaults(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, ps) in props {
                    if !map.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(k) {
                        apply_defaults(child, ps);
                    }
                }
            }
            let additional = &schema["additionalProperties"];
            if additional.is_object() {
                let props = schema["properties"].as_object();
                for (k, child) in map.iter_mut() {
                    if props.is_none_or(|p| !p.contains_key(k)) {
                        apply_defaults(child, additional);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = &schema["items"];
            if item_schema.is_object() {
                for item in items.iter_mut() {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn regex_cached(pattern: &str) -> Option<Arc<regex::Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<regex::Regex>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut guard = cache.lock();
    guard
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok().map(Arc::new))
        .clone()
}

fn type_matches(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => v.is_number(),
        _ => true,
    }
}

fn check_format(format: &str, s: &str) -> bool {
    static UUID: OnceLock<regex::Regex> = OnceLock::new();
    match format {
        "uuid" => UUID
            .get_or_init(|| {
                regex::Regex::new(
                    r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
                )
                .unwrap()
            })
            .is_match(s),
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "duration" => cel_ext::parse_go_duration(s).is_some(),
        "email" => s.contains('@') && !s.starts_with('@') && !s.ends_with('@'),
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "uri" => s.contains(':'),
        _ => true,
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Schema (non-CEL) validation of one node and its children.
fn validate_node(v: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>, root: bool) {
    if !schema.is_object() {
        return;
    }
    if v.is_null() {
        if nullable(schema) {
            return;
        }
        if let Some(ty) = schema["type"].as_str() {
            errors.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"null\": {path} in body must be of type {ty}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if int_or_string {
        if !(v.is_string() || type_matches(v, "integer")) {
            errors.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer,string: \"{}\"",
                    json_type(v),
                    json_type(v)
                ),
            ));
            return;
        }
    } else if let Some(ty) = schema["type"].as_str()
        && !type_matches(v, ty)
    {
        errors.push(FieldError::new(
            path,
            "FieldValueTypeInvalid",
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {ty}: \"{}\"",
                json_type(v),
                json_type(v)
            ),
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(go_value_full).collect();
        errors.push(FieldError::new(
            path,
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value_full(v),
                supported.join(", ")
            ),
        ));
    }
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                errors.push(FieldError::new(
                    path,
                    "FieldValueTooLong",
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                errors.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = schema["pattern"].as_str() {
                match regex_cached(p) {
                    Some(re) if !re.is_match(s) => errors.push(FieldError::invalid(
                        path,
                        v,
                        format!("{path} in body should match '{p}'"),
                    )),
                    _ => {}
                }
            }
            if let Some(f) = schema["format"].as_str()
                && !check_format(f, s)
            {
                errors.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body must be of type {f}: {}", go_value(v)),
                ));
            }
        }
        Value::Number(_) => {
            let x = num(v).unwrap_or_default();
            let excl_max = schema["exclusiveMaximum"] == true;
            let excl_min = schema["exclusiveMinimum"] == true;
            if let Some(max) = num(&schema["maximum"])
                && (x > max || (excl_max && x == max))
            {
                let rel = if excl_max {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errors.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body should be {rel} {}", fmt_num(max)),
                ));
            }
            if let Some(min) = num(&schema["minimum"])
                && (x < min || (excl_min && x == min))
            {
                let rel = if excl_min {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errors.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body should be {rel} {}", fmt_num(min)),
                ));
            }
            if let Some(m) = num(&schema["multipleOf"])
                && m != 0.0
                && (x / m).fract() != 0.0
            {
                errors.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body should be a multiple of {}", fmt_num(m)),
                ));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema["maxItems"].as_u64()
                && n > max
            {
                errors.push(FieldError::new(
                    path,
                    "FieldValueTooMany",
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && n < min
            {
                errors.push(FieldError::invalid(
                    path,
                    &Value::from(n),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            let list_type = schema["x-kubernetes-list-type"].as_str().unwrap_or("");
            if schema["uniqueItems"] == true || list_type == "set" {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errors.push(FieldError::new(
                            &format!("{path}[{i}]"),
                            "FieldValueDuplicate",
                            format!("Duplicate value: {}", go_value_full(item)),
                        ));
                    }
                }
            }
            if list_type == "map"
                && let Some(keys) = schema["x-kubernetes-list-map-keys"].as_array()
            {
                let key_of = |item: &Value| -> Vec<Value> {
                    keys.iter()
                        .map(|k| item[k.as_str().unwrap_or_default()].clone())
                        .collect()
                };
                for (i, item) in items.iter().enumerate() {
                    let k = key_of(item);
                    if items[..i].iter().any(|o| key_of(o) == k) {
                        let shown: Vec<String> = keys
                            .iter()
                            .zip(k.iter())
                            .map(|(name, val)| {
                                format!("\"{}\":{}", name.as_str().unwrap_or_default(), val)
                            })
                            .collect();
                        errors.push(FieldError::new(
                            &format!("{path}[{i}]"),
                            "FieldValueDuplicate",
                            format!("Duplicate value: map[string]interface {{}}{{{}}}", {
                                shown.join(", ")
                            }),
                        ));
                    }
                }
            }
            let item_schema = &schema["items"];
            for (i, item) in items.iter().enumerate() {
                validate_node(item, item_schema, &format!("{path}[{i}]"), errors, false);
            }
        }
        Value::Object(map) => {
            if let Some(req) = schema["required"].as_array() {
                for r in req {
                    let r = r.as_str().unwrap_or_default();
                    if !map.contains_key(r) {
                        errors.push(FieldError::required(&child_path(path, r)));
                    }
                }
            }
            if let Some(max) = schema["maxProperties"].as_u64()
                && map.len() as u64 > max
            {
                errors.push(FieldError::new(
                    path,
                    "FieldValueTooMany",
                    format!("Too many: {}: must have at most {max} items", map.len()),
                ));
            }
            if let Some(min) = schema["minProperties"].as_u64()
                && (map.len() as u64) < min
            {
                errors.push(FieldError::invalid(
                    path,
                    &Value::from(map.len()),
                    format!("{path} in body should have at least {min} properties"),
                ));
            }
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (k, child) in map {
                if root && (k == "metadata" || k == "apiVersion" || k == "kind") {
                    continue;
                }
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    validate_node(child, ps, &child_path(path, k), errors, false);
                } else if additional.is_object() {
                    validate_node(child, additional, &format!("{path}[{k}]"), errors, false);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
    // Composition keywords (value validations only, as structural schemas allow).
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            let mut sub = Vec::new();
            validate_node(v, &merged_with_type(s, schema), path, &mut sub, root);
            errors.extend(sub);
        }
    }
    if let Some(any) = schema["anyOf"].as_array() {
        let mut first = None;
        let ok = any.iter().any(|s| {
            let mut sub = Vec::new();
            validate_node(v, &merged_with_type(s, schema), path, &mut sub, root);
            if first.is_none() {
                first = Some(sub.clone());
            }
            sub.is_empty()
        });
        if !ok {
            errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must be valid against at least one of anyOf"),
            ));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one
            .iter()
            .filter(|s| {
                let mut sub = Vec::new();
                validate_node(v, &merged_with_type(s, schema), path, &mut sub, root);
                sub.is_empty()
            })
            .count();
        if n != 1 {
            errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must be valid against exactly one of oneOf"),
            ));
        }
    }
    if schema["not"].is_object() {
        let mut sub = Vec::new();
        validate_node(
            v,
            &merged_with_type(&schema["not"], schema),
            path,
            &mut sub,
            root,
        );
        if sub.is_empty() {
            errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must not validate the schema (not)"),
            ));
        }
    }
}

fn merged_with_type(sub: &Value, _parent: &Value) -> Value {
    sub.clone()
}

fn go_value_full(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Evaluates the `x-kubernetes-validations` rules found at `schema` and below.
fn run_rules(
    v: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if !schema.is_object() || v.is_null() {
        return;
    }
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            if let Some(e) = eval_rule(rule, v, old, schema, path) {
                errors.push(e);
            }
        }
    }
    match v {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (k, child) in map {
                let old_child = old.and_then(|o| o.get(k));
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    if path.is_empty() && k == "metadata" {
                        continue;
                    }
                    run_rules(child, old_child, ps, &child_path(path, k), errors);
                } else if additional.is_object() {
                    run_rules(
                        child,
                        old_child,
                        additional,
                        &format!("{path}[{k}]"),
                        errors,
                    );
                }
            }
        }
        Value::Array(items) => {
            let item_schema = &schema["items"];
            let map_keys: Option<Vec<String>> = if schema["x-kubernetes-list-type"] == "map" {
                schema["x-kubernetes-list-map-keys"].as_array().map(|ks| {
                    ks.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
            } else {
                None
            };
            for (i, item) in items.iter().enumerate() {
                // Only map-typed lists correlate items with the old object (by key).
                let old_item = match (&map_keys, old.and_then(|o| o.as_array())) {
                    (Some(keys), Some(old_items)) => old_items
                        .iter()
                        .find(|o| keys.iter().all(|k| o[k.as_str()] == item[k.as_str()])),
                    _ => None,
                };
                run_rules(item, old_item, item_schema, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn eval_rule(
    rule: &Value,
    v: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
) -> Option<FieldError> {
    let src = rule["rule"].as_str()?;
    let transition = cel_ext::references_old_self(src);
    if transition && old.is_none() && rule["optionalOldSelf"] != true {
        return None;
    }
    let self_val = cel_ext::json_to_cel(v, schema);
    let old_val = old.map(|o| cel_ext::json_to_cel(o, schema));
    let field = match rule["fieldPath"].as_str() {
        Some(fp) if !fp.is_empty() => {
            let fp = fp.trim_start_matches('.');
            if path.is_empty() {
                fp.to_string()
            } else if fp.starts_with('[') {
                format!("{path}{fp}")
            } else {
                format!("{path}.{fp}")
            }
        }
        _ => path.to_string(),
    };
    let ty = schema["type"].as_str().unwrap_or("object");
    let ty_val = Value::String(ty.to_string());
    match cel_ext::eval_bool(src, &self_val, old_val.as_ref()) {
        Ok(true) => None,
        Ok(false) => {
            let mut message = rule["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("failed rule: {src}"));
            if let Some(me) = rule["messageExpression"].as_str()
                && let Ok(m) = cel_ext::eval_string(me, &self_val, old_val.as_ref())
                && !m.trim().is_empty()
            {
                message = m;
            }
            let reason = rule["reason"].as_str().unwrap_or("FieldValueInvalid");
            Some(match reason {
                "FieldValueForbidden" => {
                    FieldError::new(&field, reason, format!("Forbidden: {message}"))
                }
                "FieldValueRequired" => {
                    FieldError::new(&field, reason, format!("Required value: {message}"))
                }
                "FieldValueDuplicate" => FieldError::new(
                    &field,
                    reason,
                    format!("Duplicate value: {}: {message}", go_value(&ty_val)),
                ),
                _ => FieldError::new(
                    &field,
                    "FieldValueInvalid",
                    format!("Invalid value: {}: {message}", go_value(&ty_val)),
                ),
            })
        }
        Err(e) => Some(FieldError::new(
            &field,
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: rule evaluation error: {src}: {e}",
                go_value(&ty_val)
            ),
        )),
    }
}

/// Validates a CRD document itself, minimally: names, group, versions, one storage version, and
/// that every rule compiles. Returns the errors (fields as in kube-apiserver).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        errors.push(FieldError::required("spec.group"));
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural"));
    }
    if spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        errors.push(FieldError::required("spec.names.kind"));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            &crd["metadata"]["name"],
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["versions"].as_array() {
        Some(vs) if !vs.is_empty() => {
            let storage = vs.iter().filter(|v| v["storage"] == true).count();
            if storage != 1 {
                errors.push(FieldError::invalid(
                    "spec.versions",
                    &spec["versions"],
                    "must have exactly one version marked as storage version",
                ));
            }
            for (i, v) in vs.iter().enumerate() {
                let mut rules = Vec::new();
                collect_rules(&v["schema"]["openAPIV3Schema"], &mut rules);
                for r in rules {
                    if let Err(e) = cel_ext::compile(&r) {
                        errors.push(FieldError::invalid(
                            &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                            &Value::String(r.clone()),
                            format!("compilation failed: {e}"),
                        ));
                    }
                }
            }
        }
        _ => errors.push(FieldError::required("spec.versions")),
    }
    if errors.is_empty() {
        errors.extend(crate::cel_cost::crd_cost_errors(crd));
    }
    errors
}

fn collect_rules(schema: &Value, out: &mut Vec<String>) {
    let Some(m) = schema.as_object() else {
        return;
    };
    if let Some(rs) = m.get("x-kubernetes-validations").and_then(|r| r.as_array()) {
        for r in rs {
            if let Some(s) = r["rule"].as_str() {
                out.push(s.to_string());
            }
        }
    }
    if let Some(props) = m.get("properties").and_then(|p| p.as_object()) {
        for p in props.values() {
            collect_rules(p, out);
        }
    }
    if let Some(i) = m.get("items") {
        collect_rules(i, out);
    }
    if let Some(a) = m.get("additionalProperties") {
        collect_rules(a, out);
    }
}

/// The value at a `.a.b[0].c`-style path (used for printer columns and field paths).
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        let mut rest = rest;
        while let Some(end) = rest.find(']') {
            let idx = &rest[1..end];
            cur = match idx.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(idx.trim_matches(|c| c == '\'' || c == '"'))?,
            };
            rest = &rest[end + 1..];
        }
    }
    Some(cur)
}

/// Fields of `obj` that the schema does not know and does not preserve (what pruning would drop),
/// as dotted paths; for `fieldValidation=Strict`.
pub fn unknown_fields(obj: &Value, schema: &Value) -> Vec<String> {
    fn walk(v: &Value, schema: &Value, path: &str, root: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                let props = schema["properties"].as_object();
                let additional = &schema["additionalProperties"];
                let keep = preserves(schema) || additional == &Value::Bool(true);
                let embedded = schema["x-kubernetes-embedded-resource"] == true;
                for (k, child) in map {
                    if (root || embedded)
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    {
                        continue;
                    }
                    let cs = props.and_then(|p| p.get(k)).or(if additional.is_object() {
                        Some(additional)
                    } else {
                        None
                    });
                    match cs {
                        Some(cs) => walk(child, cs, &child_path(path, k), false, out),
                        None if !keep => out.push(child_path(path, k)),
                        None => {}
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &schema["items"], &format!("{path}[{i}]"), false, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(obj, schema, "", true, &mut out);
    out
}
