//! `managedFields` and server-side apply: field sets (FieldsV1), ownership per manager, conflicts
//! between managers, removal of fields a manager applied before and omits now, and merging the
//! applied configuration into the live object (maps merge, `listType: map` lists merge by key,
//! `listType: set` lists union, other lists are atomic).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A leaf (or list item) path: elements as in FieldsV1 (`f:name`, `k:{"type":"Ready"}`, `v:"x"`).
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

#[derive(Clone, Debug)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(&self.fields),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = Value::String(self.subresource.clone());
        }
        v
    }

    pub fn from_json(v: &Value) -> Option<Entry> {
        Some(Entry {
            manager: v["manager"].as_str().unwrap_or_default().to_string(),
            operation: v["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: v["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: v["time"].as_str().unwrap_or_default().to_string(),
            subresource: v["subresource"].as_str().unwrap_or_default().to_string(),
            fields: decode(&v["fieldsV1"]),
        })
    }
}

pub fn entries_of(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Writes the entries in the order the apiserver keeps them, whatever order they were changed in:
/// by operation, then time (whole seconds), manager, apiVersion and subresource (apimachinery
/// `managedfields/internal/managedfields.go`, `sortEncodedManagedFields`). Times are RFC 3339 in
/// whole seconds here, so comparing the strings compares the seconds.
pub fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.fields.is_empty()).collect();
    sorted.sort_by(|p, q| {
        (
            &p.operation,
            &p.time,
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                &q.operation,
                &q.time,
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    let list: Vec<Value> = sorted.into_iter().map(Entry::to_json).collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// FieldsV1 JSON from a set.
pub fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, el) in path.iter().enumerate() {
            let entry = node
                .entry(el.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let m = entry.as_object_mut().unwrap();
            if i == path.len() - 1
                && set
                    .iter()
                    .any(|p| p.len() > path.len() && p.starts_with(path))
            {
                m.insert(".".into(), json!({}));
            }
            node = m;
        }
    }
    Value::Object(root)
}

/// A set from FieldsV1 JSON.
pub fn decode(v: &Value) -> FieldSet {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else {
            return;
        };
        if (m.is_empty() || m.contains_key(".")) && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, child) in m {
            if k == "." {
                continue;
            }
            prefix.push(k.clone());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn metadata_schema() -> Value {
    json!({"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"], "items": {"type": "object"}}
    }})
}

fn child_schema<'a>(schema: &'a Value, key: &str) -> &'a Value {
    let p = &schema["properties"][key];
    if !p.is_null() {
        return p;
    }
    let a = &schema["additionalProperties"];
    if a.is_object() {
        return a;
    }
    &Value::Null
}

fn map_keys(schema: &Value) -> Option<Vec<String>> {
    if schema["x-kubernetes-list-type"] == "map" {
        schema["x-kubernetes-list-map-keys"].as_array().map(|ks| {
            ks.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
    } else {
        None
    }
}

fn is_set(schema: &Value) -> bool {
    schema["x-kubernetes-list-type"] == "set"
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Which top-level parts of an object a field set covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything except `status` (the main endpoint of a resource with a status subresource).
    MainWithoutStatus,
    /// Everything (resources without a status subresource).
    All,
    /// Only `status`.
    Status,
}

/// The fields an object sets, as leaf paths.
pub fn fields_of(obj: &Value, schema: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => continue,
            "status" if scope == Scope::MainWithoutStatus => continue,
            "metadata" => {
                if scope == Scope::Status {
                    continue;
                }
                let ms = metadata_schema();
                if let Some(meta) = v.as_object() {
                    for key in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(child) = meta.get(key) {
                            let mut p = vec!["f:metadata".to_string(), format!("f:{key}")];
                            walk_fields(child, &ms["properties"][key], &mut p, &mut out);
                        }
                    }
                }
                continue;
            }
            _ if scope == Scope::Status && k != "status" => continue,
            _ => {}
        }
        let mut p = vec![format!("f:{k}")];
        walk_fields(v, child_schema(schema, k), &mut p, &mut out);
    }
    out
}

fn walk_fields(v: &Value, schema: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() && schema["x-kubernetes-map-type"] != "atomic" => {
            for (k, child) in m {
                prefix.push(format!("f:{k}"));
                walk_fields(child, child_schema(schema, k), prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            if let Some(keys) = map_keys(schema) {
                out.insert(prefix.clone());
                for item in items {
                    prefix.push(item_key(item, &keys));
                    out.insert(prefix.clone());
                    walk_fields(item, &schema["items"], prefix, out);
                    prefix.pop();
                }
            } else if is_set(schema) {
                out.insert(prefix.clone());
                for item in items {
                    prefix.push(format!("v:{item}"));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            } else {
                out.insert(prefix.clone());
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The value at a field path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        cur = step(cur, el)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, el: &str) -> Option<&'a Value> {
    if let Some(f) = el.strip_prefix("f:") {
        cur.get(f)
    } else if let Some(k) = el.strip_prefix("k:") {
        let want: Value = serde_json::from_str(k).ok()?;
        let want = want.as_object()?;
        cur.as_array()?
            .iter()
            .find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)))
    } else if let Some(v) = el.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        cur.as_array()?.iter().find(|item| **item == want)
    } else {
        None
    }
}

/// Removes the field at `path` from `obj`; then drops maps emptied by it (below the top level).
fn remove_path(obj: &mut Value, path: &[String]) {
    if path.is_empty() {
        return;
    }
    fn rec(cur: &mut Value, path: &[String], depth: usize) -> bool {
        let el = &path[0];
        if path.len() == 1 {
            if let Some(f) = el.strip_prefix("f:") {
                if let Some(m) = cur.as_object_mut() {
                    m.remove(f);
                }
            } else if let Some(k) = el.strip_prefix("k:") {
                if let (Ok(Value::Object(want)), Some(a)) =
                    (serde_json::from_str::<Value>(k), cur.as_array_mut())
                {
                    a.retain(|item| !want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)));
                }
            } else if let Some(v) = el.strip_prefix("v:")
                && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
            {
                a.retain(|item| *item != want);
            }
        } else {
            let next = if let Some(f) = el.strip_prefix("f:") {
                cur.get_mut(f)
            } else if let Some(k) = el.strip_prefix("k:") {
                let want: Option<Value> = serde_json::from_str(k).ok();
                match (want, cur.as_array_mut()) {
                    (Some(Value::Object(want)), Some(a)) => a
                        .iter_mut()
                        .find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv))),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(next) = next
                && rec(next, &path[1..], depth + 1)
                && let Some(f) = el.strip_prefix("f:")
                && let Some(m) = cur.as_object_mut()
            {
                m.remove(f);
            }
        }
        depth > 0 && cur.as_object().is_some_and(|m| m.is_empty())
    }
    rec(obj, path, 0);
}

/// Merges an applied configuration into the live object.
pub fn merge(live: &mut Value, applied: &Value, schema: &Value) {
    match (live, applied) {
        (Value::Object(lm), Value::Object(am)) => {
            for (k, av) in am {
                let cs = if k == "metadata" && schema.get("properties").is_some() {
                    &Value::Null
                } else {
                    child_schema(schema, k)
                };
                if k == "metadata" {
                    let ms = metadata_schema();
                    match lm.get_mut(k) {
                        Some(lv) => merge(lv, av, &ms),
                        None => {
                            lm.insert(k.clone(), av.clone());
                        }
                    }
                    continue;
                }
                match lm.get_mut(k) {
                    Some(lv) if !av.is_null() => merge(lv, av, cs),
                    _ => {
                        if av.is_null() {
                            lm.remove(k);
                        } else {
                            lm.insert(k.clone(), av.clone());
                        }
                    }
                }
            }
        }
        (Value::Array(la), Value::Array(aa)) => {
            if let Some(keys) = map_keys(schema) {
                for item in aa {
                    let key = item_key(item, &keys);
                    match la.iter_mut().find(|l| item_key(l, &keys) == key) {
                        Some(existing) => merge(existing, item, &schema["items"]),
                        None => la.push(item.clone()),
                    }
                }
            } else if is_set(schema) {
                for item in aa {
                    if !la.contains(item) {
                        la.push(item.clone());
                    }
                }
            } else {
                *la = aa.clone();
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// One field owned by another manager with a different value.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: String,
}

/// `.spec.x`, `.status.conditions[type="Ready"]`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(a, b)| format!("{a}={b}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

pub struct ApplyInput<'a> {
    pub live: Option<&'a Value>,
    pub applied: &'a Value,
    pub manager: &'a str,
    pub force: bool,
    pub schema: &'a Value,
    pub scope: Scope,
    pub subresource: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Server-side apply: returns the new object (with managedFields) or the conflicts.
pub fn apply(input: ApplyInput<'_>) -> Result<Value, Vec<Conflict>> {
    let ApplyInput {
        live,
        applied,
        manager,
        force,
        schema,
        scope,
        subresource,
        api_version,
        now,
    } = input;
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut entries = entries_of(live_obj);
    let applied_set = fields_of(applied, schema, scope);
    let is_mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !is_mine(e)) {
        for p in applied_set.intersection(&e.fields) {
            let leaf = !p
                .last()
                .is_some_and(|l| l.starts_with("k:") || l.starts_with("v:"));
            if !leaf {
                continue;
            }
            let lv = value_at(live_obj, p);
            let av = value_at(applied, p);
            if lv.is_some() && lv != av {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: display_path(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            let taken: Vec<FieldPath> = e
                .fields
                .intersection(&applied_set)
                .filter(|p| value_at(live_obj, p) != value_at(applied, p))
                .cloned()
                .collect();
            for p in taken {
                e.fields.remove(&p);
            }
        }
    }
    let prev: FieldSet = entries
        .iter()
        .filter(|e| is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut out = live_obj.clone();
    if !out.is_object() {
        out = json!({});
    }
    let mut applied_clean = applied.clone();
    if let Some(m) = applied_clean.as_object_mut() {
        match scope {
            Scope::MainWithoutStatus => {
                m.remove("status");
            }
            Scope::Status => {
                m.retain(|k, _| k == "status");
            }
            Scope::All => {}
        }
        if let Some(meta) = m.get_mut("metadata").and_then(|v| v.as_object_mut()) {
            meta.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                )
            });
        }
    }
    merge(&mut out, &applied_clean, schema);
    // Fields this manager applied before, omits now, and nobody else owns are removed. A path
    // applied before as an empty map (a leaf of its own, `f:data: {}`) and now applied with
    // content is still applied: it is a prefix of what is applied now, so it stays
    // (structured-merge-diff removes only what the new applied set no longer reaches).
    let removable: Vec<&FieldPath> = prev
        .iter()
        .filter(|p| !applied_set.iter().any(|a| a.starts_with(p)))
        .filter(|p| !others.iter().any(|o| o.starts_with(p)))
        .collect();
    // A path goes with its removed ancestor: a list-map item is removed whole by its key
    // (`k:{"type":"Ready"}`), not field by field — removing its key field first would leave an
    // item that no longer matches its key, a keyless `{}` in the list.
    let mut removed: Vec<&FieldPath> = removable
        .iter()
        .copied()
        .filter(|p| {
            !removable
                .iter()
                .any(|q| q.len() < p.len() && p.starts_with(q))
        })
        .collect();
    removed.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in removed {
        remove_path(&mut out, p);
    }
    // The entry's time moves only when the apply changed the object: structured-merge-diff
    // returns no object for a no-op apply and the apiserver then keeps the manager's time
    // (apimachinery `managedfields/internal/managedfieldsupdater.go`, `Apply`). A new time on a
    // no-op would make every repeated apply a write, a new resourceVersion and a watch event.
    // `out` still carries the live managedFields here (the merge and the removals touch neither),
    // so comparing it whole with the live object compares everything else.
    let unchanged = live.is_some() && out == *live_obj;
    let time = entries
        .iter()
        .find(|e| is_mine(e))
        .filter(|_| unchanged)
        .map_or_else(|| now.to_string(), |e| e.time.clone());
    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time,
        subresource: subresource.to_string(),
        fields: applied_set,
    });
    set_entries(&mut out, &entries);
    Ok(out)
}

/// Records a non-apply write: fields the manager changed become its own (operation `Update`) and
/// are taken from other managers; fields removed are dropped from every manager.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    schema: &Value,
    scope: Scope,
    subresource: &str,
    api_version: &str,
    now: &str,
) {
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let mut entries = entries_of(old_obj);
    let old_set = fields_of(old_obj, schema, scope);
    let new_set = fields_of(new, schema, scope);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| value_at(old_obj, p) != value_at(new, p) || !old_set.contains(*p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !removed.contains(p) && (e.manager == manager || !changed.contains(p)));
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.to_string(),
                fields: changed,
            }),
        }
    }
    set_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fieldsv1_round_trips() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"labels": {"a": "1"}},
            "spec": {"x": 1, "y": {"z": "q"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let schema = json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}}}}}});
        let set = fields_of(&obj, &schema, Scope::All);
        let encoded = encode(&set);
        assert_eq!(encoded["f:spec"]["f:y"]["f:z"], json!({}));
        assert_eq!(
            encoded["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"]["."],
            json!({})
        );
        assert_eq!(decode(&encoded), set);
    }

    #[test]
    fn apply_removes_omitted_fields_and_detects_conflicts() {
        let schema = json!({});
        let now = "2024-01-01T00:00:00Z";
        let first = apply(ApplyInput {
            live: None,
            applied: &json!({"metadata": {"name": "a"}, "spec": {"a": 1, "b": 2}}),
            manager: "m1",
            force: false,
            schema: &schema,
            scope: Scope::All,
            subresource: "",
            api_version: "v1",
            now,
        })
        .unwrap();
        let second = apply(ApplyInput {
            live: Some(&first),
            applied: &json!({"spec": {"a": 1}}),
            manager: "m1",
            force: false,
            schema: &schema,
            scope: Scope::All,
            subresource: "",
            api_version: "v1",
            now,
        })
        .unwrap();
        assert_eq!(second["spec"], json!({"a": 1}));
        let conflict = apply(ApplyInput {
            live: Some(&second),
            applied: &json!({"spec": {"a": 5}}),
            manager: "m2",
            force: false,
            schema: &schema,
            scope: Scope::All,
            subresource: "",
            api_version: "v1",
            now,
        })
        .unwrap_err();
        assert_eq!(conflict[0].manager, "m1");
        assert_eq!(conflict[0].path, ".spec.a");
        // Same value: shared ownership, no conflict.
        apply(ApplyInput {
            live: Some(&second),
            applied: &json!({"spec": {"a": 1}}),
            manager: "m2",
            force: false,
            schema: &schema,
            scope: Scope::All,
            subresource: "",
            api_version: "v1",
            now,
        })
        .unwrap();
    }

    #[test]
    fn conditions_no_longer_applied_are_removed_whole() {
        let schema = json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}}}}}});
        let cond = |t: &str| json!({"type": t, "status": "True", "reason": "R", "message": "m"});
        let input = |live, applied| ApplyInput {
            live,
            applied,
            manager: "ctl",
            force: true,
            schema: &schema,
            scope: Scope::Status,
            subresource: "status",
            api_version: "v1",
            now: "2026-12-03T00:00:00Z",
        };
        let three = json!({"status": {"conditions": [cond("Ready"), cond("Reconciling"), cond("Stalled")]}});
        let live = json!({"metadata": {"name": "x"}});
        let first = apply(input(Some(&live), &three)).unwrap();
        let one = json!({"status": {"conditions": [cond("Ready")]}});
        let second = apply(input(Some(&first), &one)).unwrap();
        assert_eq!(second["status"]["conditions"], json!([cond("Ready")]));
    }
}
