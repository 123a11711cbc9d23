//! The identity platform: OAuth 2.0 v2 client-credentials token endpoint (secret, certificate and
//! federated assertions), OIDC discovery, JWKS, instance discovery and the admin-consent endpoint.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::crypto::Jwt;
use crate::http::{LogCtx, Req, Resp};
use crate::model::{App, Assignment, Sp, State, Tenant};
use crate::msgraph::GRAPH_APP_ID;
use crate::route::Route;
use crate::shared::Shared;
use crate::util::{b64url, b64url_decode, new_guid, random_bytes, sha256};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ALIASES: &[&str] = &["common", "organizations", "consumers"];
/// Access token lifetime in seconds (Entra: 60–90 minutes; 3599 is what it reports most often).
const TOKEN_LIFETIME: i64 = 3599;

/// An Entra error body: `{error, error_description "AADSTSnnn: …", error_codes, timestamp, trace_id,
/// correlation_id, error_uri}`.
pub(crate) fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Resp {
    let trace = new_guid();
    let correlation = new_guid();
    let ts = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

pub(crate) fn transient_error(status: u16) -> Resp {
    aad_error(
        status,
        "temporarily_unavailable",
        90033,
        "A transient error has occurred. Please try again.",
    )
}

pub(crate) fn handle(shared: &Arc<Shared>, req: &Req, r: &Route, ctx: &mut LogCtx) -> Resp {
    let tenant_key = r.params.first().map(String::as_str).unwrap_or("");
    match (req.method.as_str(), r.template.as_str()) {
        ("POST", "/{tenant}/oauth2/v2.0/token") => token(shared, req, tenant_key, ctx, None),
        ("POST", "/{tenant}/oauth2/token") => {
            // v1 endpoint: `resource` instead of `scope`.
            let resource = req
                .form()
                .into_iter()
                .find(|(k, _)| k == "resource")
                .map(|(_, v)| format!("{}/.default", v.trim_end_matches('/')));
            token(
                shared,
                req,
                tenant_key,
                ctx,
                Some(resource.unwrap_or_default()),
            )
        }
        ("GET", "/{tenant}/v2.0/.well-known/openid-configuration") => {
            discovery(shared, tenant_key, true)
        }
        ("GET", "/{tenant}/.well-known/openid-configuration") => {
            discovery(shared, tenant_key, false)
        }
        ("GET", "/{tenant}/discovery/v2.0/keys") | ("GET", "/{tenant}/discovery/keys") => {
            let issuer = {
                let st = shared.state.lock();
                match st.resolve_tenant(tenant_key) {
                    Some(t) => format!("https://login.microsoftonline.com/{}/v2.0", t.id),
                    None if ALIASES.contains(&tenant_key) => {
                        "https://login.microsoftonline.com/{tenantid}/v2.0".to_string()
                    }
                    None => return unknown_tenant(tenant_key),
                }
            };
            Resp::json(200, &json!({"keys": [shared.key.jwk(&issuer)]}))
        }
        ("GET", "/{tenant}/discovery/instance") => {
            let host = shared.base.trim_start_matches("https://").to_string();
            Resp::json(
                200,
                &json!({
                    "tenant_discovery_endpoint": format!("{}/{tenant_key}/v2.0/.well-known/openid-configuration", shared.base),
                    "api-version": "1.1",
                    "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
                }),
            )
        }
        ("GET", "/{tenant}/adminconsent") => admin_consent(shared, req, tenant_key, false),
        ("GET", "/{tenant}/v2.0/adminconsent") => admin_consent(shared, req, tenant_key, true),
        _ => Resp::json(
            404,
            &json!({"error": "not_found", "error_description": "No such endpoint in the emulator."}),
        ),
    }
}

/// Discovery documents answer `invalid_tenant`; the token endpoint `invalid_request`.
fn unknown_tenant_as(error: &str, key: &str) -> Resp {
    aad_error(
        400,
        error,
        90002,
        &format!(
            "Tenant '{key}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn unknown_tenant(key: &str) -> Resp {
    unknown_tenant_as("invalid_tenant", key)
}

fn discovery(shared: &Arc<Shared>, tenant_key: &str, v2: bool) -> Resp {
    let (tid, path_tenant) = if ALIASES.contains(&tenant_key) {
        ("{tenantid}".to_string(), tenant_key.to_string())
    } else {
        let st = shared.state.lock();
        match st.resolve_tenant(tenant_key) {
            Some(t) => (t.id.clone(), t.id.clone()),
            None => return unknown_tenant(tenant_key),
        }
    };
    let base = &shared.base;
    let (issuer, oauth, keys) = if v2 {
        (
            format!("https://login.microsoftonline.com/{tid}/v2.0"),
            format!("{base}/{path_tenant}/oauth2/v2.0"),
            format!("{base}/{path_tenant}/discovery/v2.0/keys"),
        )
    } else {
        (
            format!("https://sts.windows.net/{tid}/"),
            format!("{base}/{path_tenant}/oauth2"),
            format!("{base}/{path_tenant}/discovery/keys"),
        )
    };
    Resp::json(
        200,
        &json!({
            "token_endpoint": format!("{oauth}/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": keys,
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": false,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": format!("{oauth}/authorize"),
            "device_authorization_endpoint": format!("{oauth}/devicecode"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "end_session_endpoint": format!("{oauth}/logout"),
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": format!("{base}/{path_tenant}/kerberos"),
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }),
    )
}

fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// How the client proved its identity: `"1"` secret, `"2"` certificate or federated assertion.
type Acr = &'static str;

fn token(
    shared: &Arc<Shared>,
    req: &Req,
    tenant_key: &str,
    ctx: &mut LogCtx,
    v1_scope: Option<String>,
) -> Resp {
    let form = req.form();
    let st = shared.state.lock();
    let now = st.now();
    if ALIASES.contains(&tenant_key) {
        return aad_error(
            400,
            "invalid_request",
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        );
    }
    let Some(tenant) = st.resolve_tenant(tenant_key) else {
        return unknown_tenant_as("invalid_request", tenant_key);
    };
    ctx.tenant_id = Some(tenant.id.clone());
    let grant = form_get(&form, "grant_type").unwrap_or("");
    if grant != "client_credentials" {
        return aad_error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    // client_secret_basic: credentials in the Authorization header.
    let basic = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(crate::util::b64_decode)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':').map(|(a, b)| {
                (
                    crate::util::percent_decode(a),
                    crate::util::percent_decode(b),
                )
            })
        });
    let client_id = form_get(&form, "client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(a, _)| a.clone()));
    let Some(client_id) = client_id else {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    ctx.client_id = Some(client_id.clone());
    let scope = v1_scope.or_else(|| form_get(&form, "scope").map(str::to_string));
    let Some(scope) = scope.filter(|s| !s.is_empty()) else {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let Some(resource) = scope.trim().strip_suffix("/.default").map(str::to_string) else {
        return aad_error(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let not_in_tenant = || {
        aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                tenant.display_name
            ),
        )
    };
    let Some((home, app)) = st.app_by_app_id(&client_id).filter(|(_, a)| a.visible(now)) else {
        return not_in_tenant();
    };
    if home.id != tenant.id && !app.multi_tenant() {
        return not_in_tenant();
    }
    let Some(client_sp) = tenant.sp_by_app_id(&client_id).filter(|s| s.visible(now)) else {
        if home.id == tenant.id {
            return aad_error(
                400,
                "invalid_client",
                7000229,
                &format!(
                    "The client application {client_id} is missing service principal in the tenant {}.",
                    tenant.id
                ),
            );
        }
        return not_in_tenant();
    };
    let secret = form_get(&form, "client_secret")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(_, b)| b.clone()));
    let acr: Acr = if let Some(secret) = secret {
        if let Err(resp) = check_secret(app, &secret, now) {
            return resp;
        }
        "1"
    } else if let Some(assertion) = form_get(&form, "client_assertion") {
        if form_get(&form, "client_assertion_type") != Some(ASSERTION_TYPE) {
            return aad_error(
                400,
                "invalid_request",
                50027,
                "Invalid client_assertion_type; expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        if let Err(resp) = check_assertion(&st, tenant, app, &client_id, assertion, now) {
            return resp;
        }
        "2"
    } else {
        return aad_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    let wanted = resource.trim_end_matches('/').to_ascii_lowercase();
    let Some(resource_sp) = tenant.sps.values().filter(|s| s.visible(now)).find(|s| {
        st.sp_names(s)
            .iter()
            .any(|n| n.trim_end_matches('/').to_ascii_lowercase() == wanted)
    }) else {
        return aad_error(
            400,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                tenant.display_name
            ),
        );
    };
    let roles = st.granted_roles(tenant, &client_sp.id, &resource_sp.id);
    let v2 = resource_sp.app_id != GRAPH_APP_ID
        && st
            .app_by_app_id(&resource_sp.app_id)
            .and_then(|(_, a)| a.props.get("api"))
            .and_then(|api| api.get("requestedAccessTokenVersion"))
            .and_then(Value::as_i64)
            == Some(2);
    let claims = access_token_claims(&AccessToken {
        tenant_id: &tenant.id,
        client_app: app,
        client_sp,
        resource_sp,
        requested: resource.trim_end_matches('/'),
        roles: &roles,
        acr,
        v2,
        now: now.as_second(),
    });
    let token = shared.key.sign(&claims);
    Resp::json(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        }),
    )
    .with_header("cache-control", "no-store, no-cache")
}

struct AccessToken<'a> {
    tenant_id: &'a str,
    client_app: &'a App,
    client_sp: &'a Sp,
    resource_sp: &'a Sp,
    requested: &'a str,
    roles: &'a [String],
    acr: Acr,
    v2: bool,
    now: i64,
}

fn access_token_claims(t: &AccessToken) -> Value {
    let tid = t.tenant_id;
    let mut c = if t.v2 {
        json!({
            "aud": t.resource_sp.app_id,
            "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "azp": t.client_app.app_id,
            "azpacr": t.acr,
            "ver": "2.0",
        })
    } else {
        let aud = if t.resource_sp.app_id == GRAPH_APP_ID {
            "https://graph.microsoft.com".to_string()
        } else {
            t.requested.to_string()
        };
        json!({
            "aud": aud,
            "iss": format!("https://sts.windows.net/{tid}/"),
            "idp": format!("https://sts.windows.net/{tid}/"),
            "appid": t.client_app.app_id,
            "appidacr": t.acr,
            "app_displayname": t.client_app.props.get("displayName").cloned().unwrap_or(Value::Null),
            "ver": "1.0",
        })
    };
    c["iat"] = json!(t.now);
    c["nbf"] = json!(t.now);
    c["exp"] = json!(t.now + TOKEN_LIFETIME);
    c["aio"] = json!(b64url(&random_bytes(24)));
    c["idtyp"] = json!("app");
    c["oid"] = json!(t.client_sp.id);
    c["sub"] = json!(t.client_sp.id);
    c["rh"] = json!(format!("0.{}.", b64url(&random_bytes(16))));
    c["tid"] = json!(tid);
    c["uti"] = json!(b64url(&random_bytes(16)));
    if !t.roles.is_empty() {
        c["roles"] = json!(t.roles);
    }
    c
}

fn check_secret(app: &App, secret: &str, now: jiff::Timestamp) -> Result<(), Resp> {
    let hash = sha256(secret.as_bytes());
    let matching: Vec<_> = app
        .passwords
        .iter()
        .filter(|p| p.hash == hash && p.usable_at <= now)
        .collect();
    if matching.is_empty() {
        return Err(aad_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.app_id
            ),
        ));
    }
    if !matching.iter().any(|p| p.end > now && p.start <= now) {
        return Err(aad_error(
            401,
            "invalid_client",
            7000222,
            &format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                app.app_id
            ),
        ));
    }
    Ok(())
}

fn audiences(jwt: &Jwt) -> Vec<String> {
    match jwt.claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Certificate assertions (header `x5t`/`x5t#S256`) are checked against the app's keyCredentials;
/// anything else is a federated assertion matched against its federated identity credentials.
fn check_assertion(
    st: &State,
    tenant: &Tenant,
    app: &App,
    client_id: &str,
    assertion: &str,
    now: jiff::Timestamp,
) -> Result<(), Resp> {
    let Some(jwt) = Jwt::parse(assertion) else {
        return Err(aad_error(
            400,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        ));
    };
    let t = now.as_second();
    let exp = jwt.claim_i64("exp").unwrap_or(0);
    let nbf = jwt.claim_i64("nbf").unwrap_or(0);
    if exp <= t || nbf > t + 300 {
        return Err(aad_error(
            400,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    let s256 = jwt.header_str("x5t#S256").and_then(b64url_decode);
    let s1 = jwt.header_str("x5t").and_then(b64url_decode);
    if s256.is_some() || s1.is_some() {
        let key = app.keys.iter().find(|k| {
            s256.as_ref().is_some_and(|h| *h == k.cert.sha256)
                || s1.as_ref().is_some_and(|h| *h == k.cert.sha1)
        });
        let not_registered = || {
            aad_error(
                401,
                "invalid_client",
                700027,
                &format!(
                    "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]",
                    jwt.header_str("x5t")
                        .or(jwt.header_str("x5t#S256"))
                        .unwrap_or("")
                ),
            )
        };
        let Some(key) = key.filter(|k| k.usable_at <= now) else {
            return Err(not_registered());
        };
        if key.end <= now || key.start > now {
            return Err(aad_error(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The key used is expired.]",
            ));
        }
        if !jwt.verify_with_cert(&key.cert) {
            return Err(aad_error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            ));
        }
        if jwt.claim_str("iss") != Some(client_id) || jwt.claim_str("sub") != Some(client_id) {
            return Err(aad_error(
                400,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            ));
        }
        let aud_ok = audiences(&jwt).iter().any(|a| {
            let a = a.trim_end_matches('/');
            (a.ends_with("/oauth2/v2.0/token") || a.ends_with("/oauth2/token"))
                && a.split('/')
                    .rev()
                    .nth(if a.ends_with("/v2.0/token") { 3 } else { 2 })
                    .and_then(|seg| st.resolve_tenant(seg))
                    .is_some_and(|x| x.id == tenant.id)
        });
        if !aud_ok {
            return Err(aad_error(
                400,
                "invalid_client",
                700027,
                "Client assertion audience claim does not match the token endpoint of the tenant.",
            ));
        }
        return Ok(());
    }
    // Federated: issuer, then subject, then audience (the signature is not verified; see README).
    let iss = jwt.claim_str("iss").unwrap_or("");
    let sub = jwt.claim_str("sub").unwrap_or("");
    let auds = audiences(&jwt);
    let by_issuer: Vec<_> = app.fics.iter().filter(|f| f["issuer"] == iss).collect();
    if by_issuer.is_empty() {
        return Err(aad_error(
            400,
            "invalid_client",
            700211,
            &format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        ));
    }
    let by_subject: Vec<_> = by_issuer
        .into_iter()
        .filter(|f| f["subject"] == sub)
        .collect();
    if by_subject.is_empty() {
        return Err(aad_error(
            400,
            "invalid_client",
            700213,
            &format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        ));
    }
    let aud_ok = by_subject.iter().any(|f| {
        f.get("audiences")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| auds.iter().any(|y| x == y.as_str())))
    });
    if !aud_ok {
        return Err(aad_error(
            400,
            "invalid_client",
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                auds.join(",")
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// admin consent

fn admin_consent(shared: &Arc<Shared>, req: &Req, tenant_key: &str, v2: bool) -> Resp {
    let client_id = req.query("client_id").unwrap_or("").to_ascii_lowercase();
    let redirect = req.query("redirect_uri").map(str::to_string);
    let state_param = req.query("state").map(str::to_string);
    let mut st = shared.state.lock();
    let now = st.now();
    // With `organizations`/`common` the admin's own tenant is chosen at sign-in; the emulator takes
    // it from `domain_hint` (tenant id or domain), or falls back to the home tenant.
    let key = if ALIASES.contains(&tenant_key) {
        req.query("domain_hint")
            .map(str::to_string)
            .unwrap_or_else(|| st.home_tenant_id.clone())
    } else {
        tenant_key.to_string()
    };
    let Some(tid) = st.resolve_tenant(&key).map(|t| t.id.clone()) else {
        return unknown_tenant(&key);
    };
    let fail = |status: u16, error: &str, code: u32, desc: &str| -> Resp {
        match &redirect {
            Some(uri) => redirect_to(
                uri,
                &[
                    ("error", error.to_string()),
                    ("error_description", format!("AADSTS{code}: {desc}")),
                    ("state", state_param.clone().unwrap_or_default()),
                ],
            ),
            None => aad_error(status, error, code, desc),
        }
    };
    let Some((home_id, app_visible, multi, registered)) =
        st.app_by_app_id(&client_id).map(|(h, a)| {
            (
                h.id.clone(),
                a.visible(now),
                a.multi_tenant(),
                str_array(a.props.get("web").and_then(|w| w.get("redirectUris"))),
            )
        })
    else {
        return fail(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    };
    if !app_visible {
        return fail(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    }
    if home_id != tid && !multi {
        return fail(
            400,
            "invalid_request",
            50194,
            &format!("Application '{client_id}' is not configured as a multi-tenant application."),
        );
    }
    // v2 lists `redirect_uri` as required (it must match a registered one); v1 does not.
    if v2 && redirect.is_none() {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    }
    if let Some(uri) = &redirect
        && !registered.iter().any(|r| r == uri)
    {
        return aad_error(
            400,
            "invalid_request",
            50011,
            &format!(
                "The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    if !st.switches.consent_approve {
        return fail(
            403,
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
    }
    let sp_id = grant_consent(&mut st, &tid, &client_id);
    drop(st);
    let mut params = vec![
        ("admin_consent", "True".to_string()),
        ("tenant", tid.clone()),
    ];
    if let Some(s) = state_param {
        params.push(("state", s));
    }
    if v2 && let Some(scope) = req.query("scope") {
        params.push(("scope", scope.to_string()));
    }
    match redirect {
        Some(uri) => redirect_to(&uri, &params),
        None => Resp::json(
            200,
            &json!({"admin_consent": "True", "tenant": tid, "servicePrincipalId": sp_id}),
        ),
    }
}

fn str_array(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn redirect_to(uri: &str, params: &[(&str, String)]) -> Resp {
    let qs = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let sep = if uri.contains('?') { '&' } else { '?' };
    Resp::empty(302).with_header("location", format!("{uri}{sep}{qs}"))
}

/// What an admin's approval does: the client's SP in the tenant, SPs for multi-tenant resources it
/// needs, app role assignments for its `Role` permissions and one AllPrincipals grant per resource
/// for its `Scope` permissions. Returns the client SP's id.
pub(crate) fn grant_consent(st: &mut State, tid: &str, client_app_id: &str) -> String {
    let now = st.now();
    let visible_at = st.visible_at();
    let required: Vec<Value> = st
        .app_by_app_id(client_app_id)
        .and_then(|(_, a)| {
            a.props
                .get("requiredResourceAccess")
                .and_then(Value::as_array)
                .cloned()
        })
        .unwrap_or_default();
    let ensure_sp = |st: &mut State, app_id: &str| -> Option<String> {
        if let Some(sp) = st.tenants[tid].sp_by_app_id(app_id) {
            return Some(sp.id.clone());
        }
        let ok = st
            .app_by_app_id(app_id)
            .is_some_and(|(h, a)| h.id == tid || a.multi_tenant());
        if !ok {
            return None;
        }
        let sp = Sp::new(app_id, now, visible_at, st.next_seq());
        let id = sp.id.clone();
        st.tenants.get_mut(tid)?.insert_sp(sp);
        Some(id)
    };
    let client_sp = ensure_sp(st, client_app_id).unwrap_or_default();
    for rra in required {
        let resource_app = rra
            .get("resourceAppId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(resource_sp) = ensure_sp(st, &resource_app) else {
            continue;
        };
        let (roles, scopes) = {
            let t = &st.tenants[tid];
            let sp = &t.sps[&resource_sp];
            (st.sp_app_roles(sp), st.sp_scopes(sp))
        };
        let mut scope_values = Vec::new();
        for access in rra
            .get("resourceAccess")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = access.get("id").and_then(Value::as_str).unwrap_or("");
            match access.get("type").and_then(Value::as_str) {
                Some("Role") if roles.iter().any(|r| r["id"] == id) => {
                    let t = st.tenants.get_mut(tid).expect("tenant");
                    let exists = t.assignments.values().any(|a| {
                        a.principal_id == client_sp
                            && a.resource_id == resource_sp
                            && a.app_role_id == id
                    });
                    if !exists {
                        let a = Assignment {
                            id: b64url(&random_bytes(32)),
                            app_role_id: id.to_string(),
                            principal_id: client_sp.clone(),
                            resource_id: resource_sp.clone(),
                            created: now,
                        };
                        t.assignments.insert(a.id.clone(), a);
                    }
                }
                Some("Scope") => {
                    if let Some(v) = scopes
                        .iter()
                        .find(|s| s["id"] == id)
                        .and_then(|s| s["value"].as_str())
                    {
                        scope_values.push(v.to_string());
                    }
                }
                _ => {}
            }
        }
        if !scope_values.is_empty() {
            let t = st.tenants.get_mut(tid).expect("tenant");
            let existing = t.grants.values_mut().find(|g| {
                g["clientId"] == client_sp.as_str()
                    && g["resourceId"] == resource_sp.as_str()
                    && g["consentType"] == "AllPrincipals"
            });
            match existing {
                Some(g) => {
                    let mut all: Vec<String> = g["scope"]
                        .as_str()
                        .unwrap_or("")
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    for v in scope_values {
                        if !all.contains(&v) {
                            all.push(v);
                        }
                    }
                    g.insert("scope".into(), json!(all.join(" ")));
                }
                None => {
                    let id = b64url(&random_bytes(32));
                    let grant = json!({
                        "id": id, "clientId": client_sp, "consentType": "AllPrincipals",
                        "principalId": null, "resourceId": resource_sp, "scope": scope_values.join(" "),
                    });
                    if let Value::Object(g) = grant {
                        t.grants.insert(id, g);
                    }
                }
            }
        }
    }
    client_sp
}
