//! `$batch`: at most 20 requests, unique ids, `dependsOn` (a failed dependency answers 424).

use std::collections::HashMap;

use super::*;

/// Runs a `$batch`: each inner request goes through `run` (the server's whole pipeline: faults,
/// auth, throttling, handler, log), so it is throttled and logged on its own. `run` answers `None`
/// when it picked a fault that drops the connection before answering.
pub(crate) fn batch(
    req: &Req,
    request_id: &str,
    crid: &str,
    run: &dyn Fn(&Req, &Route) -> Resp,
) -> Resp {
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
        let resp = run(&inner, &rt);
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
