//! `applications/delta`.

use super::*;

pub(super) fn delta(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    // Tokens: base64url("{since}.{snapshot}.{offset}.{issued}") for skip, "{since}.{issued}" for delta.
    let decode = |s: &str| -> Option<Vec<i64>> {
        let raw = String::from_utf8(crate::util::b64url_decode(s)?).ok()?;
        raw.split('.').map(|p| p.parse().ok()).collect()
    };
    let (since, snapshot, offset) = if let Some(tok) = req.query("$skiptoken") {
        let v = decode(tok)
            .filter(|v| v.len() == 4)
            .ok_or_else(|| GErr::new(400, "Request_BadRequest", "The skip token is invalid."))?;
        (v[0] as u64, v[1] as u64, v[2] as usize)
    } else if let Some(tok) = req.query("$deltatoken") {
        if tok == "latest" {
            let link = format!(
                "{base}/v1.0/applications/delta?$deltatoken={}",
                b64url(format!("{}.{}", st.seq, now.as_second()).as_bytes())
            );
            return Ok(Resp::json(
                200,
                &json!({"@odata.context": format!("{GRAPH_CONTEXT}applications"), "value": [], "@odata.deltaLink": link}),
            ));
        }
        let v = decode(tok)
            .filter(|v| v.len() == 2)
            .ok_or_else(|| GErr::new(400, "Request_BadRequest", "The delta token is invalid."))?;
        if now.as_second() - v[1] > 7 * 24 * 3600 {
            // Delta links of identity resources live 7 days; after that Graph answers 400
            // syncStateNotFound (Microsoft 365 Developer Blog, 2020-07-03, "Duration of change
            // tracking tokens for identity and education resources").
            return Err(GErr::new(
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
            ));
        }
        (v[0] as u64, st.seq, 0)
    } else {
        (0, st.seq, 0)
    };
    let mut changes: Vec<(u64, Value)> = Vec::new();
    for app in t.apps.values() {
        if app.changed_seq <= since || app.changed_seq > snapshot {
            continue;
        }
        if app.deleted_at.is_some() {
            if since > 0 {
                changes.push((
                    app.changed_seq,
                    json!({"id": app.id, "@removed": {"reason": "changed"}}),
                ));
            }
        } else if app.visible_at <= now {
            changes.push((app.changed_seq, select(app.render(), req)));
        }
    }
    if since > 0 {
        for (seq, id, reason) in &t.tombstones {
            if *seq > since && *seq <= snapshot && *reason == "deleted" {
                changes.push((*seq, json!({"id": id, "@removed": {"reason": reason}})));
            }
        }
    }
    changes.sort_by_key(|(s, _)| *s);
    let page: Vec<Value> = changes
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .map(|(_, v)| v.clone())
        .collect();
    let select_q = req
        .query("$select")
        .map(|s| format!("&$select={s}"))
        .unwrap_or_default();
    let mut out = json!({"@odata.context": format!("{GRAPH_CONTEXT}applications"), "value": page});
    if offset + PAGE_SIZE < changes.len() {
        let tok = b64url(
            format!(
                "{since}.{snapshot}.{}.{}",
                offset + PAGE_SIZE,
                now.as_second()
            )
            .as_bytes(),
        );
        out["@odata.nextLink"] = json!(format!(
            "{base}/v1.0/applications/delta?$skiptoken={tok}{select_q}"
        ));
    } else {
        let tok = b64url(format!("{snapshot}.{}", now.as_second()).as_bytes());
        out["@odata.deltaLink"] = json!(format!(
            "{base}/v1.0/applications/delta?$deltatoken={tok}{select_q}"
        ));
    }
    Ok(Resp::json(200, &out))
}
