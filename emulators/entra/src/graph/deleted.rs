//! Soft delete: `directory/deletedItems` (list, get, restore, purge).

use super::*;

pub(super) fn delete_app(st: &mut State, caller: &Caller, id: &str) -> GResult {
    let now = st.now();
    let seq = st.next_seq();
    let sp_seq = st.next_seq();
    let t = tenant_mut(st, caller);
    let app = t.apps.get_mut(id).expect("app");
    app.deleted_at = Some(now);
    app.changed_seq = seq;
    let app_id = app.app_id.clone();
    t.tombstones.push((seq, id.to_string(), "changed"));
    // The home tenant's service principal goes with the application.
    if let Some(sp_id) = t.sp_by_app_id(&app_id).map(|s| s.id.clone()) {
        remove_sp(t, &sp_id, sp_seq);
    }
    Ok(Resp::empty(204))
}

/// Removes a service principal for good (the emulator has no soft delete for service principals)
/// with its app role assignments and grants; `servicePrincipals/delta` reports it removed with
/// reason `deleted` from change `seq` on. The assignments and grants going is no change of any
/// other service principal's delta.
pub(super) fn remove_sp(t: &mut Tenant, sp_id: &str, seq: u64) {
    if t.sps.remove(sp_id).is_some() {
        t.sp_tombstones.push((seq, sp_id.to_string()));
    }
    t.assignments
        .retain(|_, a| a.principal_id != sp_id && a.resource_id != sp_id);
    t.grants.retain(|_, g| {
        g.get("clientId").and_then(Value::as_str) != Some(sp_id)
            && g.get("resourceId").and_then(Value::as_str) != Some(sp_id)
    });
}

pub(super) fn list_apps(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let now = st.now();
    let t = tenant(st, caller);
    let mut apps: Vec<&App> = t.apps.values().filter(|a| a.visible(now)).collect();
    apps.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    collection_of(
        req,
        base,
        "applications",
        apps,
        |a, k| app_view(a, k),
        |a| a.render(),
    )
}

pub(super) fn list_deleted(st: &State, caller: &Caller, req: &Req, base: &str) -> GResult {
    let t = tenant(st, caller);
    let items = t
        .apps
        .values()
        .filter(|a| a.deleted_at.is_some())
        .map(App::render)
        .collect();
    collection(
        req,
        base,
        "directory/deletedItems/microsoft.graph.application",
        items,
    )
}

pub(super) fn get_deleted(st: &State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let t = tenant(st, caller);
    match t.apps.get(&id.to_ascii_lowercase()) {
        Some(a) if a.deleted_at.is_some() => {
            let mut v = a.render();
            v["@odata.type"] = json!("#microsoft.graph.application");
            Ok(entity(200, "directory/deletedItems", v, req))
        }
        _ => Err(not_found(id)),
    }
}

pub(super) fn restore(st: &mut State, caller: &Caller, id: &str) -> GResult {
    let id = id.to_ascii_lowercase();
    let visible_at = st.visible_at();
    let conflict_name = {
        let t = tenant(st, caller);
        let Some(app) = t.apps.get(&id).filter(|a| a.deleted_at.is_some()) else {
            return Err(not_found(&id));
        };
        app.unique_name().is_some_and(|u| {
            t.apps_by_unique_name(u)
                .any(|o| o.id != id && o.deleted_at.is_none())
        })
    };
    if conflict_name {
        return Err(bad_request(
            "Another object with the same value for property uniqueName already exists.",
        ));
    }
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(&id).expect("app");
    app.deleted_at = None;
    app.changed_seq = seq;
    app.visible_at = visible_at;
    let mut v = app.render();
    v["@odata.type"] = json!("#microsoft.graph.application");
    v["@odata.context"] = json!(format!("{GRAPH_CONTEXT}directoryObjects/$entity"));
    Ok(Resp::json(200, &v))
}

pub(super) fn purge(st: &mut State, caller: &Caller, id: &str) -> GResult {
    let id = id.to_ascii_lowercase();
    let seq = st.next_seq();
    let t = tenant_mut(st, caller);
    match t.apps.get(&id) {
        Some(a) if a.deleted_at.is_some() => {
            let app_id = a.app_id.clone();
            t.apps.remove(&id);
            t.tombstones.push((seq, id, "deleted"));
            st.app_home.remove(&app_id);
            Ok(Resp::empty(204))
        }
        _ => Err(not_found(&id)),
    }
}
