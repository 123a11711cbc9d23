//! Password and certificate credentials: `addPassword`, `removePassword`, `addKey`, `removeKey`,
//! and the `keyCredentials` collection.

use super::*;

pub(super) fn add_password(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let cred = body.get("passwordCredential").cloned().unwrap_or(json!({}));
    let now = st.now();
    let usable_at = st.credential_usable_at();
    let policy = st.switches.app_policy.clone();
    if policy.passwords_forbidden {
        return Err(GErr::new(
            400,
            "CredentialTypeNotAllowedAsPerAppPolicy",
            "Password credentials are not allowed by the application management policy.",
        ));
    }
    let start = match cred.get("startDateTime").and_then(Value::as_str) {
        Some(s) => parse_ts(s).ok_or_else(|| bad_request("Invalid startDateTime."))?,
        None => now,
    };
    let end = match cred.get("endDateTime").and_then(Value::as_str) {
        Some(s) => parse_ts(s).ok_or_else(|| bad_request("Invalid endDateTime."))?,
        None => start
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_add(jiff::Span::new().years(2))
            .map(|z| z.timestamp())
            .unwrap_or(start),
    };
    if end <= start {
        return Err(bad_request(
            "Password credential end date must be later than its start date.",
        ));
    }
    if let Some(max) = policy.max_password_lifetime_secs
        && end.duration_since(start) > SignedDuration::from_secs(max as i64)
    {
        return Err(GErr::new(
            400,
            "CredentialInvalidLifetimeAsPerAppPolicy",
            "Credential lifetime exceeds the max value allowed as per assigned policy.",
        ));
    }
    // The addPassword page: at most two passwords "if liveSDK is enabled"; no cap otherwise.
    let app = &tenant(st, caller).apps[id];
    let live_sdk = st
        .switches
        .live_sdk_app_ids
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&app.app_id));
    if live_sdk && app.passwords.len() >= 2 {
        return Err(GErr::new(
            400,
            "TooManyAppPasswords",
            "Applications that use the Live SDK can have at most 2 passwords.",
        ));
    }
    let secret = new_secret_text();
    let password = Password {
        key_id: new_guid(),
        display_name: cred
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        hint: secret[..3].to_string(),
        hash: sha256(secret.as_bytes()),
        start,
        end,
        usable_at,
    };
    let mut out = password.render();
    out["secretText"] = json!(secret);
    out["@odata.context"] = json!(format!("{GRAPH_CONTEXT}microsoft.graph.passwordCredential"));
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    app.passwords.push(password);
    app.changed_seq = seq;
    Ok(Resp::json(200, &out))
}

pub(super) fn remove_password(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'keyId' is required."))?
        .to_ascii_lowercase();
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    let before = app.passwords.len();
    app.passwords.retain(|p| p.key_id != key_id);
    if app.passwords.len() == before {
        return Err(bad_request(format!(
            "No password credential found with keyId '{key_id}'."
        )));
    }
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}

/// Parses a PATCHed `keyCredentials` collection: entries with `key` are new certificates; entries
/// without it must name an existing credential by `keyId`, which is kept.
pub(super) fn parse_key_credentials(
    items: &[Value],
    existing: &[KeyCred],
    now: Timestamp,
    usable_at: Timestamp,
) -> Result<Vec<KeyCred>, GErr> {
    let mut out = Vec::new();
    for item in items {
        let key_id = item
            .get("keyId")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        match item.get("key").and_then(Value::as_str) {
            Some(key) => {
                let mut k = parse_key_credential(item, key, now, usable_at)?;
                if let Some(kid) = key_id {
                    k.key_id = kid;
                }
                out.push(k);
            }
            None => {
                let kid = key_id.ok_or_else(|| {
                    bad_request("Each keyCredential needs either 'key' or the 'keyId' of an existing credential.")
                })?;
                let e = existing
                    .iter()
                    .find(|k| k.key_id == kid)
                    .ok_or_else(|| bad_request(format!("No key credential with keyId '{kid}'.")))?;
                out.push(KeyCred {
                    key_id: e.key_id.clone(),
                    display_name: e.display_name.clone(),
                    key_type: e.key_type.clone(),
                    usage: e.usage.clone(),
                    der: e.der.clone(),
                    cert: e.cert.clone(),
                    start: e.start,
                    end: e.end,
                    usable_at: e.usable_at,
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn parse_key_credential(
    item: &Value,
    key: &str,
    _now: Timestamp,
    usable_at: Timestamp,
) -> Result<KeyCred, GErr> {
    let ty = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("AsymmetricX509Cert");
    let usage = item
        .get("usage")
        .and_then(Value::as_str)
        .unwrap_or("Verify");
    if ty != "AsymmetricX509Cert" || !matches!(usage, "Verify" | "Sign") {
        return Err(bad_request(
            "Key credential type must be AsymmetricX509Cert with usage Verify or Sign.",
        ));
    }
    let der = b64_decode(key)
        .or_else(|| {
            String::from_utf8(b64_decode(key)?)
                .ok()
                .and_then(|pem| crate::crypto::pem_decode(&pem, "CERTIFICATE"))
        })
        .ok_or_else(|| bad_request("Invalid key credential: key is not base64."))?;
    let cert = CertInfo::parse(&der).ok_or_else(|| {
        bad_request("Invalid certificate: key value is not a valid RSA X.509 certificate.")
    })?;
    let start = item
        .get("startDateTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(cert.not_before);
    let end = item
        .get("endDateTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(cert.not_after);
    if end > cert.not_after || start < cert.not_before {
        return Err(bad_request(
            "Key credential start and end dates must lie within the certificate's validity.",
        ));
    }
    Ok(KeyCred {
        key_id: new_guid(),
        display_name: item
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        key_type: ty.to_string(),
        usage: usage.to_string(),
        der,
        cert,
        start,
        end,
        usable_at,
    })
}

/// Checks an addKey/removeKey proof: a JWT signed by one of the app's currently valid certificates,
/// aud `00000002-0000-0000-c000-000000000000`, iss the app's object id, lifetime ≤ 10 minutes.
pub(super) fn check_proof(app: &App, proof: &str, now: Timestamp) -> Result<(), GErr> {
    let fail = |m: &str| {
        bad_request(format!(
            "Key credential proof of possession is invalid: {m}"
        ))
    };
    let jwt = Jwt::parse(proof).ok_or_else(|| fail("not a JWT"))?;
    if jwt.claim_str("aud") != Some("00000002-0000-0000-c000-000000000000") {
        return Err(fail("aud must be 00000002-0000-0000-c000-000000000000"));
    }
    if !jwt
        .claim_str("iss")
        .is_some_and(|i| i.eq_ignore_ascii_case(&app.id))
    {
        return Err(fail("iss must be the application's object id"));
    }
    let nbf = jwt.claim_i64("nbf").ok_or_else(|| fail("nbf missing"))?;
    let exp = jwt.claim_i64("exp").ok_or_else(|| fail("exp missing"))?;
    if exp - nbf > 600 {
        return Err(fail("lifetime longer than 10 minutes"));
    }
    let t = now.as_second();
    if t + 300 < nbf || t > exp {
        return Err(fail("expired or not yet valid"));
    }
    let signed = app
        .keys
        .iter()
        .filter(|k| k.start <= now && k.end > now)
        .any(|k| jwt.verify_with_cert(&k.cert));
    if signed {
        Ok(())
    } else {
        Err(fail("not signed by a valid certificate of the application"))
    }
}

pub(super) fn add_key(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let now = st.now();
    let usable_at = st.credential_usable_at();
    if body.get("passwordCredential").is_some_and(|p| !p.is_null()) {
        return Err(bad_request(
            "addKey with a passwordCredential is not supported by the emulator.",
        ));
    }
    let item = body
        .get("keyCredential")
        .ok_or_else(|| bad_request("Property 'keyCredential' is required."))?;
    let key = item
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'keyCredential.key' is required."))?;
    let proof = body.get("proof").and_then(Value::as_str).unwrap_or("");
    check_proof(&tenant(st, caller).apps[id], proof, now)?;
    let k = parse_key_credential(item, key, now, usable_at)?;
    let mut out = k.render();
    out["@odata.context"] = json!(format!("{GRAPH_CONTEXT}microsoft.graph.keyCredential"));
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    app.keys.push(k);
    app.changed_seq = seq;
    Ok(Resp::json(200, &out))
}

pub(super) fn remove_key(st: &mut State, caller: &Caller, req: &Req, id: &str) -> GResult {
    let body = body_object(req)?;
    let now = st.now();
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Property 'keyId' is required."))?
        .to_ascii_lowercase();
    let proof = body.get("proof").and_then(Value::as_str).unwrap_or("");
    check_proof(&tenant(st, caller).apps[id], proof, now)?;
    let seq = st.next_seq();
    let app = tenant_mut(st, caller).apps.get_mut(id).expect("app");
    let before = app.keys.len();
    app.keys.retain(|k| k.key_id != key_id);
    if app.keys.len() == before {
        return Err(bad_request(format!(
            "No key credential found with keyId '{key_id}'."
        )));
    }
    app.changed_seq = seq;
    Ok(Resp::empty(204))
}
