//! Token endpoint, discovery, JWKS and admin consent.
mod common;

use common::*;
use entra_emulator::{
    OPERATOR_CERT_PEM, OPERATOR_KEY_PEM, SPARE_CERT_PEM, SPARE_KEY_PEM, certificate_assertion,
    federated_assertion,
};
use serde_json::json;

#[tokio::test]
async fn operator_token_carries_tenant_app_and_graph_roles() {
    let env = Env::new().await;
    let creds = env.emu.operator_credentials();
    let c = claims(&env.token);
    assert_eq!(c["tid"], env.home());
    assert_eq!(c["appid"], creds.client_id);
    assert_eq!(c["oid"], creds.service_principal_id);
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    assert_eq!(c["iss"], format!("https://sts.windows.net/{}/", env.home()));
    let roles: Vec<&str> = c["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(roles.contains(&"Application.ReadWrite.OwnedBy"));
    assert!(c["exp"].as_i64().unwrap() > now_unix() + 3000);
}

#[tokio::test]
async fn token_errors_use_aadsts_codes() {
    let env = Env::new().await;
    let creds = env.emu.operator_credentials();
    let wrong = env
        .token(&env.home(), &creds.client_id, "nope", GRAPH_SCOPE)
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(aadsts(&wrong), 7000215);
    assert_eq!(wrong.json()["error"], "invalid_client");
    assert!(
        wrong.json()["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215:")
    );

    let unknown = env
        .token(
            "00000000-1111-2222-3333-444444444444",
            &creds.client_id,
            &creds.client_secret,
            GRAPH_SCOPE,
        )
        .await;
    assert_eq!((unknown.status, aadsts(&unknown)), (400, 90002));
    assert_eq!(unknown.json()["error"], "invalid_request");

    // The operator's single-tenant app is not in the customer tenant.
    let elsewhere = env
        .token(
            &env.customer,
            &creds.client_id,
            &creds.client_secret,
            GRAPH_SCOPE,
        )
        .await;
    assert_eq!((elsewhere.status, aadsts(&elsewhere)), (400, 700016));
    assert_eq!(elsewhere.json()["error"], "unauthorized_client");

    let bad_scope = env
        .token(
            &env.home(),
            &creds.client_id,
            &creds.client_secret,
            "User.Read",
        )
        .await;
    assert_eq!(aadsts(&bad_scope), 1002012);

    let no_resource = env
        .token(
            &env.home(),
            &creds.client_id,
            &creds.client_secret,
            "api://nothing-here/.default",
        )
        .await;
    assert_eq!(aadsts(&no_resource), 500011);

    // A tenant can be named by its domain.
    let by_domain = env
        .token(
            "contoso.onmicrosoft.com",
            &creds.client_id,
            &creds.client_secret,
            GRAPH_SCOPE,
        )
        .await;
    assert_eq!(by_domain.status, 200);
    let common = env
        .token(
            "organizations",
            &creds.client_id,
            &creds.client_secret,
            GRAPH_SCOPE,
        )
        .await;
    assert_eq!(common.status, 400);
}

#[tokio::test]
async fn expired_secret_is_7000222_and_new_secret_works() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "client"})).await;
    let (oid, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    // No service principal yet: 7000229.
    let p = env.add_password(oid, json!({})).await.json();
    let secret = p["secretText"].as_str().unwrap();
    let missing_sp = env.token(&env.home(), app_id, secret, GRAPH_SCOPE).await;
    assert_eq!(aadsts(&missing_sp), 7000229);
    env.create_sp(app_id).await;
    let ok = env.token(&env.home(), app_id, secret, GRAPH_SCOPE).await;
    assert_eq!(ok.status, 200, "{}", ok.json());
    assert!(
        claims(ok.json()["access_token"].as_str().unwrap())
            .get("roles")
            .is_none()
    );

    let short = env
        .add_password(
            oid,
            json!({"startDateTime": "2020-01-01T00:00:00Z", "endDateTime": "2020-06-01T00:00:00Z"}),
        )
        .await
        .json();
    let expired = env
        .token(
            &env.home(),
            app_id,
            short["secretText"].as_str().unwrap(),
            GRAPH_SCOPE,
        )
        .await;
    assert_eq!((expired.status, aadsts(&expired)), (401, 7000222));

    // Moving the emulator's clock past the 2-year default expires the first one too.
    env.emu
        .advance_clock(std::time::Duration::from_secs(3 * 365 * 24 * 3600));
    let later = env.token(&env.home(), app_id, secret, GRAPH_SCOPE).await;
    assert_eq!(aadsts(&later), 7000222);
}

#[tokio::test]
async fn certificate_assertion_is_checked_against_key_credentials() {
    let env = Env::new().await;
    let creds = env.emu.operator_credentials();
    let endpoint = env.emu.token_endpoint(&env.home());
    let good = certificate_assertion(
        OPERATOR_KEY_PEM,
        OPERATOR_CERT_PEM,
        &creds.client_id,
        &endpoint,
        now_unix(),
    )
    .unwrap();
    let r = env
        .client
        .token_with_assertion(&endpoint, &creds.client_id, &good, GRAPH_SCOPE)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(
        claims(r.json()["access_token"].as_str().unwrap())["appidacr"],
        "2"
    );

    let unregistered = certificate_assertion(
        SPARE_KEY_PEM,
        SPARE_CERT_PEM,
        &creds.client_id,
        &endpoint,
        now_unix(),
    )
    .unwrap();
    let r = env
        .client
        .token_with_assertion(&endpoint, &creds.client_id, &unregistered, GRAPH_SCOPE)
        .await
        .unwrap();
    assert_eq!((r.status, aadsts(&r)), (401, 700027));

    // Registered thumbprint, wrong key: signature check fails.
    let forged = certificate_assertion(
        SPARE_KEY_PEM,
        OPERATOR_CERT_PEM,
        &creds.client_id,
        &endpoint,
        now_unix(),
    )
    .unwrap();
    let r = env
        .client
        .token_with_assertion(&endpoint, &creds.client_id, &forged, GRAPH_SCOPE)
        .await
        .unwrap();
    assert_eq!(aadsts(&r), 700027);

    let expired = certificate_assertion(
        OPERATOR_KEY_PEM,
        OPERATOR_CERT_PEM,
        &creds.client_id,
        &endpoint,
        now_unix() - 7200,
    )
    .unwrap();
    let r = env
        .client
        .token_with_assertion(&endpoint, &creds.client_id, &expired, GRAPH_SCOPE)
        .await
        .unwrap();
    assert_eq!(aadsts(&r), 700024);
}

#[tokio::test]
async fn federated_assertion_matches_issuer_subject_audience() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "workload"})).await;
    let (oid, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    env.create_sp(app_id).await;
    let r = env
        .call(
            "POST",
            &format!("/v1.0/applications/{oid}/federatedIdentityCredentials"),
            Some(json!({"name": "kube", "issuer": "https://kube.example", "subject": "system:serviceaccount:ns:sa", "audiences": ["api://AzureADTokenExchange"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let endpoint = env.emu.token_endpoint(&env.home());
    let try_with = |iss: &'static str, sub: &'static str, aud: &'static str| {
        let a = federated_assertion(iss, sub, aud, now_unix());
        let c = env.client.clone();
        let e = endpoint.clone();
        let id = app_id.to_string();
        async move {
            c.token_with_assertion(&e, &id, &a, GRAPH_SCOPE)
                .await
                .unwrap()
        }
    };
    let ok = try_with(
        "https://kube.example",
        "system:serviceaccount:ns:sa",
        "api://AzureADTokenExchange",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json());
    let r = try_with(
        "https://other.example",
        "system:serviceaccount:ns:sa",
        "api://AzureADTokenExchange",
    )
    .await;
    assert_eq!(aadsts(&r), 700211);
    let r = try_with(
        "https://kube.example",
        "system:serviceaccount:ns:other",
        "api://AzureADTokenExchange",
    )
    .await;
    assert_eq!(aadsts(&r), 700213);
    let r = try_with(
        "https://kube.example",
        "system:serviceaccount:ns:sa",
        "api://Other",
    )
    .await;
    assert_eq!(aadsts(&r), 700212);
}

#[tokio::test]
async fn discovery_and_jwks_per_tenant_and_alias() {
    let env = Env::new().await;
    let base = env.emu.authority_host();
    let get = |url: String| {
        let c = env.client.clone();
        async move { c.send("GET", &url, &[], None).await.unwrap() }
    };
    let d = get(format!(
        "{base}/{}/v2.0/.well-known/openid-configuration",
        env.home()
    ))
    .await;
    assert_eq!(d.status, 200);
    let d = d.json();
    assert_eq!(
        d["issuer"],
        format!("https://login.microsoftonline.com/{}/v2.0", env.home())
    );
    assert_eq!(d["token_endpoint"], env.emu.token_endpoint(&env.home()));
    let keys = get(d["jwks_uri"].as_str().unwrap().to_string())
        .await
        .json();
    let kid = keys["keys"][0]["kid"].as_str().unwrap();
    let header: serde_json::Value = {
        use base64::Engine;
        let h = env.token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["kid"], kid);
    assert_eq!(header["alg"], "RS256");
    let org = get(format!(
        "{base}/organizations/v2.0/.well-known/openid-configuration"
    ))
    .await
    .json();
    assert_eq!(
        org["issuer"],
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    );
    let common = get(format!("{base}/common/discovery/v2.0/keys")).await;
    assert_eq!(common.status, 200);
    let unknown = get(format!(
        "{base}/nobody.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_eq!((unknown.status, aadsts(&unknown)), (400, 90002));
}

#[tokio::test]
async fn admin_consent_creates_the_sp_in_the_customer_tenant() {
    let env = Env::new().await;
    // A multi-tenant API with an app role, and a multi-tenant client that requires it.
    let api = env
        .create_app(json!({
            "displayName": "bank api", "signInAudience": "AzureADMultipleOrgs",
            "appRoles": [{"id": "7d4c6f7a-0000-4000-8000-000000000001", "value": "System", "displayName": "System",
                "description": "System", "isEnabled": true, "allowedMemberTypes": ["Application"]}],
            "api": {"requestedAccessTokenVersion": 2},
        }))
        .await;
    let api_app_id = api["appId"].as_str().unwrap();
    let r = env
        .call(
            "PATCH",
            &format!("/v1.0/applications/{}", api["id"].as_str().unwrap()),
            Some(json!({"identifierUris": [format!("api://{api_app_id}")]})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json());
    env.create_sp(api_app_id).await;
    let client = env
        .create_app(json!({
            "displayName": "bank client", "signInAudience": "AzureADMultipleOrgs",
            "web": {"redirectUris": ["https://client.example/done"]},
            "requiredResourceAccess": [{"resourceAppId": api_app_id, "resourceAccess": [{"id": "7d4c6f7a-0000-4000-8000-000000000001", "type": "Role"}]}],
        }))
        .await;
    let (coid, cid) = (
        client["id"].as_str().unwrap(),
        client["appId"].as_str().unwrap(),
    );
    env.create_sp(cid).await;
    let secret = env.add_password(coid, json!({})).await.json()["secretText"]
        .as_str()
        .unwrap()
        .to_string();
    let scope = format!("api://{api_app_id}/.default");

    let before = env.token(&env.customer, cid, &secret, &scope).await;
    assert_eq!(aadsts(&before), 700016);

    let url = format!(
        "{}/{}/v2.0/adminconsent?client_id={cid}&scope={}&redirect_uri=https://client.example/done&state=s1",
        env.emu.authority_host(),
        env.customer,
        scope
    );
    let declined = env.client.send("GET", &url, &[], None).await.unwrap();
    assert_eq!(declined.status, 302);
    assert!(
        declined
            .header("location")
            .unwrap()
            .contains("error=access_denied")
    );

    env.emu.set_consent_approve(true);
    let approved = env.client.send("GET", &url, &[], None).await.unwrap();
    assert_eq!(approved.status, 302);
    let loc = approved.header("location").unwrap();
    assert!(
        loc.starts_with("https://client.example/done?admin_consent=True"),
        "{loc}"
    );
    assert!(loc.contains(&format!("tenant={}", env.customer)));
    assert!(loc.contains("state=s1"));

    let after = env.token(&env.customer, cid, &secret, &scope).await;
    assert_eq!(after.status, 200, "{}", after.json());
    let c = claims(after.json()["access_token"].as_str().unwrap());
    assert_eq!(c["tid"], env.customer);
    assert_eq!(c["azp"], cid);
    assert_eq!(c["aud"], api_app_id);
    assert_eq!(
        c["iss"],
        format!("https://login.microsoftonline.com/{}/v2.0", env.customer)
    );
    assert_eq!(c["roles"], json!(["System"]));
}
