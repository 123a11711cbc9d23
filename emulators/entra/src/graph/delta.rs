//! The delta functions: `applications/delta` and `servicePrincipals/delta`, one implementation.
//!
//! Sources: "Use delta query to track changes in Microsoft Graph data"
//! (https://learn.microsoft.com/graph/delta-query-overview), "application: delta"
//! (https://learn.microsoft.com/graph/api/application-delta) and "servicePrincipal: delta"
//! (https://learn.microsoft.com/graph/api/serviceprincipal-delta). Both share one model:
//!
//! - a round is one or more calls: pages linked by `@odata.nextLink`, the last one carrying an
//!   `@odata.deltaLink` whose token starts the next round;
//! - an initial round (no token) returns every current object; a later round returns the objects
//!   created or updated since, as their representation (the same object may come more than once),
//!   and the removed ones as `{"id", "@removed": {"reason": …}}`: `changed` when soft-deleted
//!   (restorable), `deleted` when gone for good;
//! - `$deltatoken=latest` starts from now and returns no data, only a delta link;
//! - `$select` is supported (`id` always comes); the only `$filter` is `id eq '…'`, several joined
//!   by `or`; both are carried into the links.
//!
//! What is a change: every write the emulator makes to the object itself sets its `changed_seq`
//! from [`State::next_seq`]. For a service principal: create (`POST`, the `(appId='…')` upsert,
//! admin consent), `PATCH`, owners, delete (and the delete of its application, which takes it along).
//! App role assignments and delegated permission grants are objects of their own: adding or
//! removing one does not make a service principal (or an application) appear. The delta overview
//! describes tracking of navigation properties only for users' `manager` and groups' `members`;
//! neither delta page lists any for applications or service principals, so modelling it so is our
//! choice. Nor does a change of the application a service principal inherits properties from (its
//! display name, `appRoles`, …) count as a change of the service principal: undocumented, and the
//! stricter reading for a client (one that needs it must read the service principal again).
//!
//! Replication delay: an object not visible yet is left out of the round, and the round's delta
//! link resumes before its change, so a later round returns it (with the other changes after it
//! again: Graph allows repeats). The skip tokens pin the visibility time of the round, so its
//! pages do not shift under it.

use super::*;

/// A collection with a delta function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DeltaOf {
    Applications,
    ServicePrincipals,
}

impl DeltaOf {
    fn collection(self) -> &'static str {
        match self {
            DeltaOf::Applications => "applications",
            DeltaOf::ServicePrincipals => "servicePrincipals",
        }
    }
}

/// One entry of a round; only the entries of the page returned are rendered.
enum Entry<'a> {
    App(&'a App),
    Sp(&'a Sp),
    Removed(&'a str, &'static str),
}

const SYNC_STATE_NOT_FOUND: &str = "The sync state generation is not found. The delta token is expired and data must be synchronized again.";

/// `GET /v1.0/{applications|servicePrincipals}/delta`.
///
/// Tokens: base64url("{since}.{snapshot}.{offset}.{asOfNs}") for `$skiptoken` (changes after
/// `since` up to `snapshot`, visibility judged at `asOfNs`, in nanoseconds: objects are created
/// within the same millisecond), "{since}.{issued}" for `$deltatoken`.
pub(super) fn delta(st: &State, caller: &Caller, req: &Req, base: &str, of: DeltaOf) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    let name = of.collection();
    let ids = id_filter(req)?;
    let carried = carried_query(req);
    let link = |param: &str, token: String| {
        format!(
            "{base}/v1.0/{name}/delta?{param}={}{carried}",
            b64url(token.as_bytes())
        )
    };
    let context = format!("{GRAPH_CONTEXT}{name}");
    let decode = |s: &str| -> Option<Vec<i64>> {
        let raw = String::from_utf8(crate::util::b64url_decode(s)?).ok()?;
        raw.split('.').map(|p| p.parse().ok()).collect()
    };
    let (since, snapshot, offset, as_of) = if let Some(tok) = req.query("$skiptoken") {
        let v = decode(tok)
            .filter(|v| v.len() == 4 && v[..3].iter().all(|n| *n >= 0))
            .ok_or_else(|| GErr::new(400, "Request_BadRequest", "The skip token is invalid."))?;
        let as_of = Timestamp::from_nanosecond(v[3].into())
            .map_err(|_| GErr::new(400, "Request_BadRequest", "The skip token is invalid."))?;
        (v[0] as u64, v[1] as u64, v[2] as usize, as_of)
    } else if let Some(tok) = req.query("$deltatoken") {
        if tok == "latest" {
            let out = json!({
                "@odata.context": context,
                "value": [],
                "@odata.deltaLink": link("$deltatoken", format!("{}.{}", st.seq, now.as_second())),
            });
            return Ok(Resp::json(200, &out));
        }
        let v = decode(tok)
            .filter(|v| v.len() == 2 && v[0] >= 0)
            .ok_or_else(|| GErr::new(400, "Request_BadRequest", "The delta token is invalid."))?;
        if now.as_second() - v[1] > 7 * 24 * 3600 {
            // Delta links of identity resources live 7 days; after that Graph answers 400
            // syncStateNotFound (Microsoft 365 Developer Blog, 2020-07-03, "Duration of change
            // tracking tokens for identity and education resources").
            return Err(GErr::new(400, "syncStateNotFound", SYNC_STATE_NOT_FOUND));
        }
        (v[0] as u64, st.seq, 0, now)
    } else {
        (0, st.seq, 0, now)
    };
    // An initial round (since 0) returns every current object and nothing removed.
    let initial = since == 0;
    let in_round = |seq: u64| (initial || seq > since) && seq <= snapshot;
    let wanted = |id: &str| {
        ids.as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i.eq_ignore_ascii_case(id)))
    };
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    // The oldest change in the round whose object is not visible yet (replication delay).
    let mut pending: Option<u64> = None;
    match of {
        DeltaOf::Applications => {
            for app in t.apps.values() {
                if !in_round(app.changed_seq) || !wanted(&app.id) {
                    continue;
                }
                if app.deleted_at.is_some() {
                    // Soft-deleted: restorable from deletedItems.
                    if !initial {
                        entries.push((app.changed_seq, Entry::Removed(&app.id, "changed")));
                    }
                } else if app.visible_at <= as_of {
                    entries.push((app.changed_seq, Entry::App(app)));
                } else {
                    pending = Some(pending.map_or(app.changed_seq, |p| p.min(app.changed_seq)));
                }
            }
            if !initial {
                for (seq, id, reason) in &t.tombstones {
                    if *reason == "deleted" && in_round(*seq) && wanted(id) {
                        entries.push((*seq, Entry::Removed(id, reason)));
                    }
                }
            }
        }
        DeltaOf::ServicePrincipals => {
            for sp in t.sps.values() {
                if !in_round(sp.changed_seq) || !wanted(&sp.id) {
                    continue;
                }
                if sp.visible(as_of) {
                    entries.push((sp.changed_seq, Entry::Sp(sp)));
                } else {
                    pending = Some(pending.map_or(sp.changed_seq, |p| p.min(sp.changed_seq)));
                }
            }
            if !initial {
                // No soft delete for service principals in the emulator: gone for good.
                for (seq, id) in &t.sp_tombstones {
                    if in_round(*seq) && wanted(id) {
                        entries.push((*seq, Entry::Removed(id, "deleted")));
                    }
                }
            }
        }
    }
    entries.sort_by_key(|(s, _)| *s);
    let page: Vec<Value> = entries
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .map(|(_, e)| match e {
            Entry::App(app) => select_with_id(app.render(), req),
            Entry::Sp(sp) => select_with_id(st.render_sp(t, sp), req),
            Entry::Removed(id, reason) => json!({"id": id, "@removed": {"reason": reason}}),
        })
        .collect();
    let mut out = json!({"@odata.context": context, "value": page});
    if offset + PAGE_SIZE < entries.len() {
        out["@odata.nextLink"] = json!(link(
            "$skiptoken",
            format!(
                "{since}.{snapshot}.{}.{}",
                offset + PAGE_SIZE,
                i64::try_from(as_of.as_nanosecond()).unwrap_or(i64::MAX)
            )
        ));
    } else {
        // The next round resumes before the oldest change not visible yet.
        let resume = pending.map_or(snapshot, |p| snapshot.min(p - 1));
        out["@odata.deltaLink"] =
            json!(link("$deltatoken", format!("{resume}.{}", now.as_second())));
    }
    Ok(Resp::json(200, &out))
}

/// `$select` as for any read, but `id` always comes (both delta pages: "The id property is always
/// returned").
fn select_with_id(value: Value, req: &Req) -> Value {
    let id = value.get("id").cloned();
    let mut out = select(value, req);
    if let (Value::Object(m), Some(id)) = (&mut out, id) {
        m.entry("id").or_insert(id);
    }
    out
}

/// `$filter=id eq '…'`, or several joined by `or`: the only filter both delta functions support
/// (application-delta and serviceprincipal-delta, "Optional query parameters"). Lowercase ids;
/// `None` without a filter. Any other filter → 400 `Request_UnsupportedQuery` "Unsupported Query."
/// (the code Graph answers it with is not documented: our choice, the one `parse_filter` uses).
fn id_filter(req: &Req) -> Result<Option<Vec<String>>, GErr> {
    let Some(filter) = req.query("$filter") else {
        return Ok(None);
    };
    let unsupported = || GErr::new(400, "Request_UnsupportedQuery", "Unsupported Query.");
    let words: Vec<&str> = filter.split_whitespace().collect();
    let mut ids = Vec::new();
    for clause in words.split(|w| w.eq_ignore_ascii_case("or")) {
        let [prop, op, literal] = clause else {
            return Err(unsupported());
        };
        let prop = prop.trim_start_matches('(');
        let literal = literal.trim_end_matches(')');
        if !prop.eq_ignore_ascii_case("id") || !op.eq_ignore_ascii_case("eq") {
            return Err(unsupported());
        }
        match parse_literal(literal) {
            Value::String(id) if !id.is_empty() => ids.push(id.to_ascii_lowercase()),
            _ => return Err(unsupported()),
        }
    }
    Ok(Some(ids))
}

/// The query options of a round's first request that its links carry (`&$select=…&$filter=…`).
fn carried_query(req: &Req) -> String {
    ["$select", "$filter"]
        .iter()
        .filter_map(|k| {
            req.query(k).map(|v| {
                format!(
                    "&{k}={}",
                    form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect()
}
