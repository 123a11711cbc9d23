//! `meta.k8s.io/v1` `Table` responses (what `kubectl get` prints), using a CRD version's
//! `additionalPrinterColumns` for custom resources.

use jsonpath_rust::JsonPath;
use serde_json::{Value, json};

use crate::request::ReqInfo;
use crate::state::State;

/// Kubernetes' `duration.HumanDuration`, as kubectl's AGE column shows it: a time more than a
/// second in the future is `<invalid>` (apimachinery `util/duration/duration.go`; the API server
/// renders every `type: date` printer column through it, `ConvertToHumanReadableDateType`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rs = s % 60;
        return if rs == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rs}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let rm = m % 60;
        return if rm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rm}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if h < 192 {
        let rh = h % 24;
        return if rh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rh}h")
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    format!("{}y", d / 365)
}

fn age(obj: &Value) -> Value {
    match obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        Some(t) => Value::String(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds(),
        )),
        None => Value::String("<unknown>".into()),
    }
}

/// The value of a printer column's JSONPath (first match).
pub fn column_value(obj: &Value, path: &str) -> Value {
    let p = if path.starts_with('$') {
        path.to_string()
    } else {
        format!("${path}")
    };
    match obj.query(&p) {
        Ok(found) => match found.first() {
            Some(v) => (*v).clone(),
            None => Value::Null,
        },
        Err(_) => Value::Null,
    }
}

fn col(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    )
}

fn age_col() -> Value {
    col(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    )
}

type CellFn = Box<dyn Fn(&Value) -> Value>;

fn columns(ri: &ReqInfo) -> (Vec<Value>, Vec<CellFn>) {
    let rt = &ri.rt;
    let name_cell: CellFn = Box::new(|o: &Value| o["metadata"]["name"].clone());
    if let Some(version) = rt.crd_version(&ri.version) {
        let mut defs = vec![name_col()];
        let mut cells: Vec<CellFn> = vec![name_cell];
        match version["additionalPrinterColumns"].as_array() {
            Some(cols) if !cols.is_empty() => {
                for c in cols {
                    defs.push(col(
                        c["name"].as_str().unwrap_or(""),
                        c["type"].as_str().unwrap_or("string"),
                        c["format"].as_str().unwrap_or(""),
                        c["description"].as_str().unwrap_or(""),
                        c["priority"].as_i64().unwrap_or(0),
                    ));
                    let path = c["jsonPath"].as_str().unwrap_or("").to_string();
                    let ty = c["type"].as_str().unwrap_or("string").to_string();
                    cells.push(Box::new(move |o: &Value| {
                        let v = column_value(o, &path);
                        match (&v, ty.as_str()) {
                            (Value::String(t), "date") => {
                                match chrono::DateTime::parse_from_rfc3339(t) {
                                    Ok(t) => Value::String(human_duration(
                                        (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                                            .num_seconds(),
                                    )),
                                    Err(_) => Value::String("<invalid>".into()),
                                }
                            }
                            (Value::Array(_) | Value::Object(_), _) => Value::String(v.to_string()),
                            _ => v,
                        }
                    }));
                }
            }
            _ => {
                defs.push(col("Age", "date", "", "", 0));
                cells.push(Box::new(age));
            }
        }
        return (defs, cells);
    }
    let s = |v: &Value| Value::String(v.as_str().unwrap_or("").to_string());
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => (
            vec![
                name_col(),
                col("Status", "string", "", "The status of the namespace", 0),
                age_col(),
            ],
            vec![
                name_cell,
                Box::new(move |o| s(&o["status"]["phase"])),
                Box::new(age),
            ],
        ),
        ("", "secrets") => (
            vec![
                name_col(),
                col("Type", "string", "", "The type of the secret", 0),
                col("Data", "string", "", "The number of entries in the data", 0),
                age_col(),
            ],
            vec![
                name_cell,
                Box::new(move |o| {
                    s(&o["type"])
                        .as_str()
                        .map(|t| {
                            if t.is_empty() {
                                "Opaque".into()
                            } else {
                                t.to_string()
                            }
                        })
                        .map(Value::String)
                        .unwrap()
                }),
                Box::new(|o| json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0))),
                Box::new(age),
            ],
        ),
        ("", "configmaps") => (
            vec![
                name_col(),
                col("Data", "string", "", "The number of entries in the data", 0),
                age_col(),
            ],
            vec![
                name_cell,
                Box::new(|o| {
                    json!(
                        o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                            + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0)
                    )
                }),
                Box::new(age),
            ],
        ),
        ("coordination.k8s.io", "leases") => (
            vec![
                name_col(),
                col("Holder", "string", "", "The holder of the lease", 0),
                age_col(),
            ],
            vec![
                name_cell,
                Box::new(move |o| s(&o["spec"]["holderIdentity"])),
                Box::new(age),
            ],
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![name_col(), col("Created At", "date", "", "", 0)],
            vec![
                name_cell,
                Box::new(|o| o["metadata"]["creationTimestamp"].clone()),
            ],
        ),
        (_, "events") => (
            vec![
                col("Last Seen", "string", "", "", 0),
                col("Type", "string", "", "", 0),
                col("Reason", "string", "", "", 0),
                col("Object", "string", "", "", 0),
                col("Message", "string", "", "", 0),
            ],
            vec![
                Box::new(|o| {
                    let t = ["lastTimestamp", "eventTime", "deprecatedLastTimestamp"]
                        .iter()
                        .find_map(|k| o[*k].as_str())
                        .or(o["metadata"]["creationTimestamp"].as_str());
                    match t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
                        Some(t) => Value::String(human_duration(
                            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds(),
                        )),
                        None => Value::String("<unknown>".into()),
                    }
                }),
                Box::new(move |o| s(&o["type"])),
                Box::new(move |o| s(&o["reason"])),
                Box::new(|o| {
                    let r = if o["regarding"].is_object() {
                        &o["regarding"]
                    } else {
                        &o["involvedObject"]
                    };
                    Value::String(format!(
                        "{}/{}",
                        r["kind"].as_str().unwrap_or("").to_lowercase(),
                        r["name"].as_str().unwrap_or("")
                    ))
                }),
                Box::new(|o| {
                    Value::String(
                        o["note"]
                            .as_str()
                            .or(o["message"].as_str())
                            .unwrap_or("")
                            .to_string(),
                    )
                }),
            ],
        ),
        _ => (vec![name_col(), age_col()], vec![name_cell, Box::new(age)]),
    }
}

/// A Table of `items`; `include` is `includeObject` (`None`, `Metadata` (default), `Object`).
pub fn table_for(
    _state: &State,
    ri: &ReqInfo,
    items: &[Value],
    list_meta: Value,
    include: Option<&str>,
    with_columns: bool,
) -> Value {
    let (defs, cells) = columns(ri);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells.iter().map(|f| f(o)).collect::<Vec<_>>()});
            match include.unwrap_or("Metadata") {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    let mut meta = o["metadata"].clone();
                    if let Some(m) = meta.as_object_mut() {
                        m.remove("managedFields");
                    }
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta});
                }
            }
            row
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = Value::Array(defs);
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

/// An object as `meta.k8s.io/v1` `PartialObjectMetadata`: its metadata only (no spec, status or
/// Secret data).
pub(crate) fn partial_metadata(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_work_for_printer_columns() {
        let o = json!({"status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            column_value(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            json!("True")
        );
        assert_eq!(column_value(&o, ".status.missing"), Value::Null);
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
        // The future: within the 2 s tolerance "0s", beyond it "<invalid>".
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(-2), "<invalid>");
        assert_eq!(human_duration(-86400 * 90), "<invalid>");
    }
}
