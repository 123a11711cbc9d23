//! Federated identity credentials under an application.

use super::*;

pub(super) fn create_fic(
    st: &mut State,
    caller: &Caller,
    app_id: &str,
    mut body: Map<String, Value>,
    name: Option<&str>,
) -> GResult {
    if let Some(n) = name {
        match body.get("name").and_then(Value::as_str) {
            Some(b) if b != n => {
                return Err(bad_request(
                    "Property 'name' in the body does not match the key in the request URL.",
                ));
            }
            _ => {
                body.insert("name".into(), json!(n));
            }
        }
    }
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'name' is required."))?
        .to_string();
    validate_fic(&body, &name)?;
    let app = &tenant(st, caller).apps[app_id];
    if app.fics.len() >= MAX_FICS {
        return Err(bad_request(format!(
            "The application can have at most {MAX_FICS} federated identity credentials."
        )));
    }
    if app.fics.iter().any(|f| f["name"] == name.as_str()) {
        return Err(conflict(format!(
            "A federated identity credential named '{name}' already exists on the application."
        )));
    }
    check_fic_unique(app, &body, None)?;
    let fic = json!({
        "id": new_guid(),
        "name": name,
        "issuer": body["issuer"],
        "subject": body["subject"],
        "audiences": body.get("audiences").cloned().unwrap_or(json!(["api://AzureADTokenExchange"])),
        "description": body.get("description").cloned().unwrap_or(Value::Null),
    });
    let Value::Object(fic) = fic else {
        unreachable!()
    };
    let mut out = Value::Object(fic.clone());
    out["@odata.context"] = json!(format!(
        "{GRAPH_CONTEXT}applications('{app_id}')/federatedIdentityCredentials/$entity"
    ));
    tenant_mut(st, caller)
        .apps
        .get_mut(app_id)
        .expect("app")
        .fics
        .push(fic);
    Ok(Resp::json(201, &out))
}

pub(super) fn validate_fic(body: &Map<String, Value>, name: &str) -> Result<(), GErr> {
    if name.is_empty()
        || name.len() > 120
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad_request(
            "Property 'name' must be 1–120 characters of letters, digits, '-' or '_'.",
        ));
    }
    let issuer = body.get("issuer").and_then(Value::as_str).unwrap_or("");
    let subject = body.get("subject").and_then(Value::as_str).unwrap_or("");
    if issuer.is_empty() || !issuer.starts_with("https://") {
        return Err(bad_request("Property 'issuer' must be an https URL."));
    }
    if subject.is_empty() || subject.len() > 600 {
        return Err(bad_request("Property 'subject' must be 1–600 characters."));
    }
    if let Some(a) = body.get("audiences") {
        let list = str_array(Some(a));
        if list.len() != 1 {
            return Err(bad_request(
                "Property 'audiences' must hold exactly one value.",
            ));
        }
    }
    Ok(())
}

pub(super) fn check_fic_unique(
    app: &App,
    body: &Map<String, Value>,
    except: Option<&str>,
) -> Result<(), GErr> {
    let issuer = body.get("issuer");
    let subject = body.get("subject");
    if app.fics.iter().any(|f| {
        Some(f["name"].as_str().unwrap_or("")) != except
            && f.get("issuer") == issuer
            && f.get("subject") == subject
    }) {
        return Err(conflict(
            "A federated identity credential with the same issuer and subject already exists on the application.",
        ));
    }
    Ok(())
}

pub(super) fn fic_routes(
    st: &mut State,
    caller: &Caller,
    req: &Req,
    app_id: &str,
    key: &str,
    by_name: bool,
) -> GResult {
    let idx = tenant(st, caller).apps[app_id].fics.iter().position(|f| {
        if by_name {
            f["name"] == key
        } else {
            f["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(key))
        }
    });
    match (req.method.as_str(), idx) {
        ("GET", Some(i)) => {
            let v = Value::Object(tenant(st, caller).apps[app_id].fics[i].clone());
            Ok(entity(
                200,
                &format!("applications('{app_id}')/federatedIdentityCredentials"),
                v,
                req,
            ))
        }
        ("DELETE", Some(i)) => {
            tenant_mut(st, caller)
                .apps
                .get_mut(app_id)
                .expect("app")
                .fics
                .remove(i);
            Ok(Resp::empty(204))
        }
        ("PATCH", Some(i)) => {
            let body = body_object(req)?;
            let app = &tenant(st, caller).apps[app_id];
            let mut fic = app.fics[i].clone();
            if body.get("name").is_some_and(|n| *n != fic["name"]) {
                return Err(bad_request("Property 'name' is immutable."));
            }
            for k in ["issuer", "subject", "audiences", "description"] {
                if let Some(v) = body.get(k) {
                    fic.insert(k.into(), v.clone());
                }
            }
            let name = fic["name"].as_str().unwrap_or("").to_string();
            validate_fic(&fic, &name)?;
            check_fic_unique(app, &fic, Some(&name))?;
            tenant_mut(st, caller)
                .apps
                .get_mut(app_id)
                .expect("app")
                .fics[i] = fic;
            Ok(Resp::empty(204))
        }
        ("PATCH", None) if by_name && prefer_create(req) => {
            let body = body_object(req)?;
            create_fic(st, caller, app_id, body, Some(key))
        }
        _ => Err(not_found(key)),
    }
}
