//! `applications`: create, upsert by `uniqueName`, read, PATCH, DELETE, and the routes under an
//! application (credentials, owners, federated credentials) dispatched to their modules.

use super::*;

/// Finds a visible application in the caller's tenant; returns its object id.
pub(super) fn find_app(st: &State, caller: &Caller, key: &Key) -> Result<String, GErr> {
    let now = st.now();
    let t = tenant(st, caller);
    let (found, shown) = match key {
        Key::Id(id) => (t.apps.get(&id.to_ascii_lowercase()), *id),
        Key::AppId(a) => (t.app_by_app_id(a), *a),
        Key::UniqueName(u) => (
            t.apps_by_unique_name(u).find(|x| x.deleted_at.is_none()),
            *u,
        ),
    };
    match found {
        Some(app) if app.visible(now) => Ok(app.id.clone()),
        _ => Err(not_found(shown)),
    }
}

pub(super) fn app_routes(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    key: Key,
    suffix: &str,
    rest: &[String],
) -> GResult {
    let m = req.method.as_str();
    if let (Key::UniqueName(u), "PATCH", "") = (&key, m, suffix) {
        let existing = {
            let t = tenant(st, caller);
            t.apps_by_unique_name(u)
                .find(|x| x.deleted_at.is_none())
                .map(|a| a.id.clone())
        };
        return match existing {
            Some(id) => patch_app(st, caller, req, &id),
            None if prefer_create(req) => create_app(st, caller, req, Some(u)),
            None => Err(not_found(u)),
        };
    }
    let id = find_app(st, caller, &key)?;
    match (m, suffix) {
        ("GET", "") => {
            let v = tenant(st, caller).apps[&id].render();
            Ok(entity(200, "applications", v, req))
        }
        ("PATCH", "") => patch_app(st, caller, req, &id),
        ("DELETE", "") => delete_app(st, caller, &id),
        ("POST", "/addPassword") => add_password(st, caller, req, &id),
        ("POST", "/removePassword") => remove_password(st, caller, req, &id),
        ("POST", "/addKey") => add_key(st, caller, req, &id),
        ("POST", "/removeKey") => remove_key(st, caller, req, &id),
        ("GET", "/owners") => {
            let t = tenant(st, caller);
            let items = render_owners(st, t, &t.apps[&id].owners);
            collection(req, "", "directoryObjects", items)
        }
        ("POST", "/owners/$ref") => add_owner(st, caller, req, &id),
        // "application: remove owners" (https://learn.microsoft.com/graph/api/application-delete-owners):
        // 204; only the reference goes, the directory object stays. A reference that is not there
        // → 404 Request_ResourceNotFound (our choice: Graph's answer for an absent link is not
        // documented). Permission: Application.ReadWrite.OwnedBy as an owner, or ReadWrite.All.
        ("DELETE", "/owners/{id}/$ref") => {
            let owner = rest[0].to_ascii_lowercase();
            let seq = st.next_seq();
            let app = tenant_mut(st, caller).apps.get_mut(&id).expect("app");
            remove_owner(&mut app.owners, &owner)?;
            app.changed_seq = seq;
            Ok(Resp::empty(204))
        }
        ("GET", "/federatedIdentityCredentials") => {
            let items = tenant(st, caller).apps[&id]
                .fics
                .iter()
                .cloned()
                .map(Value::Object)
                .collect();
            collection(
                req,
                "",
                &format!("applications('{id}')/federatedIdentityCredentials"),
                items,
            )
        }
        ("POST", "/federatedIdentityCredentials") => {
            let body = body_object(req)?;
            create_fic(st, caller, &id, body, None)
        }
        (_, "/federatedIdentityCredentials/{id}")
        | (_, "/federatedIdentityCredentials(name='{name}')") => {
            let by_name = suffix.contains("(name=");
            let k = rest[0].clone();
            fic_routes(st, caller, req, &id, &k, by_name)
        }
        _ => Err(GErr::new(
            405,
            "Request_BadRequest",
            "The specified HTTP method is not allowed for the request target.",
        )),
    }
}

/// `appRole.origin` is read-only: the appRole resource page says it must not be included in any
/// POST or PATCH request. Graph fills it in on reads.
pub(super) fn refuse_role_origin(body: &Map<String, Value>) -> Result<(), GErr> {
    let has_origin = body
        .get("appRoles")
        .and_then(Value::as_array)
        .is_some_and(|roles| roles.iter().any(|r| r.get("origin").is_some()));
    if has_origin {
        return Err(bad_request(
            "Property 'origin' of appRoles is read-only and must not be included in a POST or PATCH request.",
        ));
    }
    Ok(())
}

pub(super) const READ_ONLY_APP_PROPS: &[&str] = &[
    "id",
    "appId",
    "createdDateTime",
    "deletedDateTime",
    "publisherDomain",
];

pub(super) fn create_app(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    unique: Option<&str>,
) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    refuse_role_origin(&body)?;
    if body
        .get("displayName")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        return Err(bad_request(
            "Property 'displayName' is required and cannot be empty.",
        ));
    }
    if let Some(u) = unique {
        match body.get("uniqueName").and_then(Value::as_str) {
            Some(b) if !b.eq_ignore_ascii_case(u) => {
                return Err(bad_request(
                    "Property 'uniqueName' in the body does not match the key in the request URL.",
                ));
            }
            _ => {
                body.insert("uniqueName".into(), json!(u));
            }
        }
    }
    if body
        .get("passwordCredentials")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(bad_request(
            "Property 'passwordCredentials' cannot be set on create; use addPassword.",
        ));
    }
    body.remove("passwordCredentials");
    let key_creds = body.remove("keyCredentials");
    for p in READ_ONLY_APP_PROPS {
        body.remove(*p);
    }
    let now = st.now();
    let visible_at = st.visible_at();
    let usable_at = st.credential_usable_at();
    let (tid, domain) = {
        let t = tenant(st, caller);
        (t.id.clone(), t.default_domain.clone())
    };
    let mut props = App::default_props(&domain);
    deep_merge(&mut props, body);
    let app_id = new_guid();
    let id = new_guid();
    if let Some(u) = props.get("uniqueName").and_then(Value::as_str) {
        let taken = tenant(st, caller)
            .apps_by_unique_name(u)
            .any(|a| a.deleted_at.is_none());
        if taken {
            return Err(bad_request(
                "Another object with the same value for property uniqueName already exists.",
            ));
        }
    }
    validate_app(st, &tid, &app_id, &id, None, &props)?;
    let keys = match key_creds {
        Some(Value::Array(items)) => parse_key_credentials(&items, &[], now, usable_at)?,
        _ => Vec::new(),
    };
    let seq = st.next_seq();
    let mut owners = Vec::new();
    if !caller.sp_id.is_empty() {
        owners.push(caller.sp_id.clone());
    }
    let app = App {
        id: id.clone(),
        app_id: app_id.clone(),
        props,
        created: now,
        visible_at,
        deleted_at: None,
        passwords: Vec::new(),
        keys,
        fics: Vec::new(),
        owners,
        changed_seq: seq,
    };
    let rendered = app.render();
    st.app_home.insert(app_id, (tid.clone(), id.clone()));
    tenant_mut(st, caller).insert_app(app);
    Ok(entity(201, "applications", rendered, req))
}

pub(super) fn patch_app(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let mut body = body_object(req)?;
    body.remove("@odata.type");
    refuse_role_origin(&body)?;
    let now = st.now();
    let usable_at = st.credential_usable_at();
    let tid = caller.tenant_id.clone();
    let (mut props, app_id, existing_keys) = {
        let app = &tenant(st, caller).apps[id];
        (app.props.clone(), app.app_id.clone(), &app.keys)
    };
    for p in READ_ONLY_APP_PROPS {
        if let Some(v) = body.remove(*p) {
            let current = match *p {
                "id" => json!(id),
                "appId" => json!(app_id),
                _ => v.clone(),
            };
            if v != current {
                return Err(bad_request(format!(
                    "Property '{p}' is read-only and cannot be set."
                )));
            }
        }
    }
    if body.contains_key("passwordCredentials") {
        return Err(bad_request(
            "Property 'passwordCredentials' cannot be updated with PATCH; use addPassword and removePassword.",
        ));
    }
    if let Some(u) = body.get("uniqueName") {
        let current = props.get("uniqueName").cloned().unwrap_or(Value::Null);
        let same = match (u.as_str(), current.as_str()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => *u == current,
        };
        if !same {
            return Err(bad_request(
                "Property 'uniqueName' is immutable and cannot be changed.",
            ));
        }
        body.remove("uniqueName");
    }
    let new_keys = match body.remove("keyCredentials") {
        Some(Value::Array(items)) => Some(parse_key_credentials(
            &items,
            existing_keys,
            now,
            usable_at,
        )?),
        Some(_) => {
            return Err(bad_request(
                "Property 'keyCredentials' must be a collection.",
            ));
        }
        None => None,
    };
    let old = props.clone();
    deep_merge(&mut props, body);
    validate_app(st, &tid, &app_id, id, Some(&old), &props)?;
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    app.props = props;
    if let Some(k) = new_keys {
        app.keys = k;
    }
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}

/// PATCH semantics: nested objects merge, everything else (collections included) is replaced.
pub(super) fn deep_merge(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(&k), v) {
            (Some(Value::Object(t)), Value::Object(p)) => deep_merge(t, p),
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

pub(super) const AUDIENCES: &[&str] = &[
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
];
