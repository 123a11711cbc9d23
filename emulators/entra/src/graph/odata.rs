//! OData query handling shared by the Graph resources: `$select`, `$filter`, paging.

use super::*;

pub(super) fn select(value: Value, req: &Req) -> Value {
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

pub(super) fn entity(status: u16, context: &str, value: Value, req: &Req) -> Resp {
    let mut v = select(value, req);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            json!(format!("{GRAPH_CONTEXT}{context}/$entity")),
        );
    }
    Resp::json(status, &v)
}

pub(super) enum Clause {
    Eq(String, Value),
    In(String, Vec<Value>),
    Any(String, Value),
    StartsWith(String, String),
}

pub(super) fn parse_literal(s: &str) -> Value {
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

pub(super) fn parse_filter(filter: &str) -> Result<Vec<Clause>, GErr> {
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

pub(super) fn get_path<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for seg in path.split('/') {
        cur = cur.get(seg).unwrap_or(&Value::Null);
    }
    cur
}

pub(super) fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

pub(super) fn matches_filter(v: &Value, clauses: &[Clause]) -> bool {
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
pub(super) fn collection(req: &Req, base: &str, context: &str, items: Vec<Value>) -> GResult {
    collection_of(req, base, context, items, |v, _| v.clone(), Value::clone)
}

/// Like [`collection`], but filters on a cheap `view` of each item (holding the properties the
/// filter names) and renders only the page returned: listing stays cheap with many objects.
pub(super) fn collection_of<T>(
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
pub(super) fn app_view(app: &App, keys: &[String]) -> Value {
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
