//! Application owners (`owners/$ref`).

use super::*;

pub(super) fn add_owner(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let odata_id = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property '@odata.id' is required."))?;
    let oid = odata_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_start_matches("directoryObjects(")
        .trim_matches(|c| c == '\'' || c == ')')
        .to_ascii_lowercase();
    if !is_guid(&oid) {
        return Err(bad_request(format!("Invalid object identifier '{oid}'.")));
    }
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    if app.owners.contains(&oid) {
        return Err(bad_request(
            "One or more added object references already exist for the following modified properties: 'owners'.",
        ));
    }
    app.owners.push(oid);
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}
