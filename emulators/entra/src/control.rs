//! The control API under `/_emulator/…`: switches, request log, state dump, tenants, clock. It needs
//! no token (it is the test harness's side door) and is never counted in the request log.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{Switches, SwitchesPatch, TenantSpec, UserSpec};
use crate::http::{Req, Resp};
use crate::model::State;
use crate::shared::Shared;
use crate::util::fmt_ts;

pub(crate) fn handle(shared: &Arc<Shared>, req: &Req) -> Resp {
    let bad = |m: String| Resp::json(400, &json!({"error": m}));
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/_emulator/health") => Resp::json(200, &json!({"status": "ok"})),
        ("GET", "/_emulator/info") => {
            let mut info = shared.info.clone();
            let st = shared.state.lock();
            info["tenants"] = st.tenants.values().map(|t| t.info()).collect();
            Resp::json(200, &info)
        }
        ("GET", "/_emulator/requests") => {
            let since: u64 = req.query("since").and_then(|s| s.parse().ok()).unwrap_or(0);
            let st = shared.state.lock();
            let entries: Vec<_> = st.log.entries.iter().filter(|e| e.seq > since).collect();
            Resp::json(
                200,
                &json!({"counts": st.log.counts_json(), "requests": entries}),
            )
        }
        ("DELETE", "/_emulator/requests") => {
            shared.state.lock().log.clear();
            Resp::empty(204)
        }
        ("GET", "/_emulator/state") => Resp::json(200, &dump(&shared.state.lock())),
        ("GET", "/_emulator/contract") => Resp::json(
            200,
            &json!({"violations": shared.state.lock().contract_violations.clone()}),
        ),
        ("DELETE", "/_emulator/contract") => {
            shared.state.lock().contract_violations.clear();
            Resp::empty(204)
        }
        ("GET", "/_emulator/switches") => {
            Resp::json(200, &json!(shared.state.lock().switches.clone()))
        }
        ("PATCH", "/_emulator/switches") => {
            match serde_json::from_slice::<SwitchesPatch>(&req.body) {
                Ok(patch) => {
                    let mut st = shared.state.lock();
                    st.switches.apply(patch);
                    Resp::json(200, &json!(st.switches.clone()))
                }
                Err(e) => bad(format!("invalid switches: {e}")),
            }
        }
        ("PUT", "/_emulator/switches") => match serde_json::from_slice::<Switches>(&req.body) {
            Ok(s) => {
                let mut st = shared.state.lock();
                st.switches = s;
                Resp::json(200, &json!(st.switches.clone()))
            }
            Err(e) => bad(format!("invalid switches: {e}")),
        },
        ("POST", "/_emulator/throttling/reset") => {
            shared.state.lock().throttle.reset();
            Resp::empty(204)
        }
        ("POST", "/_emulator/tenants") => match serde_json::from_slice::<TenantSpec>(&req.body) {
            Ok(spec) => {
                let mut st = shared.state.lock();
                let id = st.add_tenant(&spec);
                Resp::json(201, &st.tenants[&id].info())
            }
            Err(e) => bad(format!("invalid tenant: {e}")),
        },
        ("POST", "/_emulator/users") => match serde_json::from_slice::<UserSpec>(&req.body) {
            Ok(spec) => match shared.state.lock().add_user(&spec) {
                Ok(user) => Resp::json(201, &user.render()),
                Err(e) => bad(e),
            },
            Err(e) => bad(format!("invalid user: {e}")),
        },
        ("POST", "/_emulator/clock/advance") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
            let secs = body.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
            let mut st = shared.state.lock();
            st.clock_offset_ms += (secs * 1000.0) as i64;
            Resp::json(200, &json!({"now": fmt_ts(st.now())}))
        }
        ("POST", "/_emulator/consent") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
            let (Some(tid), Some(client)) = (
                body.get("tenantId").and_then(Value::as_str),
                body.get("clientId").and_then(Value::as_str),
            ) else {
                return bad("tenantId and clientId are required".into());
            };
            let mut st = shared.state.lock();
            if !st.tenants.contains_key(tid) || st.app_by_app_id(client).is_none() {
                return Resp::json(404, &json!({"error": "unknown tenant or client"}));
            }
            let sp = crate::identity::grant_consent(&mut st, tid, &client.to_ascii_lowercase());
            Resp::json(200, &json!({"servicePrincipalId": sp}))
        }
        _ => Resp::json(404, &json!({"error": "no such control endpoint"})),
    }
}

/// The whole directory as JSON (secret values are never kept, so never shown).
pub(crate) fn dump(st: &State) -> Value {
    let tenants: Vec<Value> = st
        .tenants
        .values()
        .map(|t| {
            let apps: Vec<Value> = t
                .apps
                .values()
                .map(|a| {
                    let mut v = a.render();
                    v["owners"] = json!(a.owners);
                    v["federatedIdentityCredentials"] =
                        Value::Array(a.fics.iter().cloned().map(Value::Object).collect());
                    v["_visibleAt"] = json!(fmt_ts(a.visible_at));
                    v
                })
                .collect();
            let sps: Vec<Value> = t
                .sps
                .values()
                .map(|s| {
                    let mut v = st.render_sp(t, s);
                    v["owners"] = json!(s.owners);
                    v
                })
                .collect();
            let assignments: Vec<Value> = t
                .assignments
                .values()
                .map(|a| a.render(&Value::Null, &Value::Null))
                .collect();
            json!({
                "tenantId": t.id,
                "displayName": t.display_name,
                "defaultDomainName": t.default_domain,
                "applications": apps,
                "servicePrincipals": sps,
                "appRoleAssignments": assignments,
                "users": t.users.values().map(|u| u.render()).collect::<Vec<_>>(),
                "oauth2PermissionGrants": t.grants.values().cloned().map(Value::Object).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "now": fmt_ts(st.now()),
        "homeTenantId": st.home_tenant_id,
        "switches": st.switches,
        "tenants": tenants,
    })
}
