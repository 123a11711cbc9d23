//! Graph applications: CRUD, upsert, PATCH rules, credentials, federated credentials, owners,
//! deleted items, delta (of applications and of service principals).
mod common;

use std::time::Duration;

use common::*;
use entra_emulator::{
    OPERATOR_CERT_PEM, SPARE_CERT_PEM, SPARE_KEY_PEM, certificate_key_value, key_proof,
};
use serde_json::{Value, json};

fn role(id: &str, value: &str, enabled: bool) -> Value {
    json!({"id": id, "value": value, "displayName": value, "description": value,
           "isEnabled": enabled, "allowedMemberTypes": ["Application"]})
}

#[tokio::test]
async fn create_get_by_id_and_app_id_and_list() {
    let env = Env::new().await;
    let missing = env
        .call(
            "POST",
            "/v1.0/applications",
            Some(json!({"signInAudience": "AzureADMyOrg"})),
        )
        .await;
    assert_eq!(
        (missing.status, error_code(&missing).as_str()),
        (400, "Request_BadRequest")
    );
    assert!(missing.json()["error"]["innerError"]["request-id"].is_string());
    assert_eq!(
        missing.header("request-id"),
        missing.json()["error"]["innerError"]["request-id"].as_str()
    );

    let app = env
        .create_app(json!({"displayName": "one", "tags": ["a"]}))
        .await;
    assert_eq!(app["passwordCredentials"], json!([]));
    assert_eq!(app["signInAudience"], "AzureADMyOrg");
    let (oid, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    let by_id = env
        .call("GET", &format!("/v1.0/applications/{oid}"), None)
        .await;
    assert_eq!(by_id.json()["appId"], app_id);
    let by_app = env
        .call(
            "GET",
            &format!("/v1.0/applications(appId='{app_id}')"),
            None,
        )
        .await;
    assert_eq!(by_app.json()["id"], oid);
    let sel = env
        .call(
            "GET",
            &format!("/v1.0/applications/{oid}?$select=id,displayName"),
            None,
        )
        .await
        .json();
    assert!(sel.get("tags").is_none());
    assert_eq!(sel["displayName"], "one");
    let list = env
        .call(
            "GET",
            &format!("/v1.0/applications?$filter=appId%20eq%20'{app_id}'"),
            None,
        )
        .await
        .json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let nf = env
        .call(
            "GET",
            "/v1.0/applications/00000000-0000-0000-0000-000000000001",
            None,
        )
        .await;
    assert_eq!(
        (nf.status, error_code(&nf).as_str()),
        (404, "Request_ResourceNotFound")
    );
    // The creating app becomes an owner.
    let owners = env
        .call("GET", &format!("/v1.0/applications/{oid}/owners"), None)
        .await
        .json();
    assert_eq!(
        owners["value"][0]["id"],
        env.emu.operator_credentials().service_principal_id
    );
}

#[tokio::test]
async fn upsert_by_unique_name_201_then_204_and_404_without_prefer() {
    let env = Env::new().await;
    let path = "/v1.0/applications(uniqueName='op-ns-a')";
    let prefer = [("Prefer", "create-if-missing")];
    let absent = env
        .call("PATCH", path, Some(json!({"displayName": "A"})))
        .await;
    assert_eq!(absent.status, 404);
    let created = env
        .call_with("PATCH", path, &prefer, Some(json!({"displayName": "A"})))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["uniqueName"], "op-ns-a");
    let updated = env
        .call_with("PATCH", path, &prefer, Some(json!({"displayName": "A2"})))
        .await;
    assert_eq!(updated.status, 204);
    let got = env.call("GET", path, None).await.json();
    assert_eq!(got["displayName"], "A2");
    assert_eq!(got["id"], created.json()["id"]);
    let immutable = env
        .call(
            "PATCH",
            &format!("/v1.0/applications/{}", got["id"].as_str().unwrap()),
            Some(json!({"uniqueName": "other"})),
        )
        .await;
    assert_eq!(immutable.status, 400);
    assert_eq!(
        env.emu
            .request_count("PATCH", "/v1.0/applications(uniqueName='{uniqueName}')"),
        3
    );
}

#[tokio::test]
async fn patch_replaces_collections_and_keeps_other_properties() {
    let env = Env::new().await;
    let app = env
        .create_app(json!({"displayName": "p", "tags": ["a", "b"], "web": {"redirectUris": ["https://x.example/cb"], "homePageUrl": "https://x.example"}}))
        .await;
    let path = format!("/v1.0/applications/{}", app["id"].as_str().unwrap());
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"tags": ["c"], "web": {"redirectUris": []}})),
        )
        .await;
    assert_eq!(r.status, 204);
    let got = env.call("GET", &path, None).await.json();
    assert_eq!(got["tags"], json!(["c"]));
    assert_eq!(got["web"]["redirectUris"], json!([]));
    assert_eq!(got["web"]["homePageUrl"], "https://x.example");
    assert_eq!(got["displayName"], "p");
    let pw = env
        .call("PATCH", &path, Some(json!({"passwordCredentials": []})))
        .await;
    assert_eq!(pw.status, 400);
    let bad_audience = env
        .call("PATCH", &path, Some(json!({"signInAudience": "Everyone"})))
        .await;
    assert_eq!(bad_audience.status, 400);
    let personal = env
        .call(
            "PATCH",
            &path,
            Some(json!({"signInAudience": "AzureADandPersonalMicrosoftAccount"})),
        )
        .await;
    assert_eq!(personal.status, 400, "personal accounts need v2 tokens");
    let naa = env
        .call(
            "PATCH",
            &path,
            Some(json!({"spa": {"redirectUris": ["brk-multihub://addin.example.com/path"]}})),
        )
        .await;
    assert_eq!(naa.status, 400);
    let naa = env
        .call(
            "PATCH",
            &path,
            Some(json!({"spa": {"redirectUris": ["brk-multihub://addin.example.com:8443"]}})),
        )
        .await;
    assert_eq!(naa.status, 204);
}

#[tokio::test]
async fn roles_and_scopes_must_be_disabled_before_removal() {
    let env = Env::new().await;
    let id1 = "11111111-0000-4000-8000-000000000001";
    let app = env
        .create_app(json!({"displayName": "r", "appRoles": [role(id1, "System", true)]}))
        .await;
    let path = format!("/v1.0/applications/{}", app["id"].as_str().unwrap());
    let r = env
        .call("PATCH", &path, Some(json!({"appRoles": []})))
        .await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (400, "CannotDeleteOrUpdateEnabledEntitlement")
    );
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"appRoles": [role(id1, "Renamed", true)]})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"appRoles": [role(id1, "System", false)]})),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = env
        .call("PATCH", &path, Some(json!({"appRoles": []})))
        .await;
    assert_eq!(r.status, 204);

    let scope = json!({"id": id1, "value": "access_as_user", "type": "User", "isEnabled": true,
        "adminConsentDisplayName": "a", "adminConsentDescription": "a"});
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"api": {"oauth2PermissionScopes": [scope]}})),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"api": {"oauth2PermissionScopes": []}})),
        )
        .await;
    assert_eq!(error_code(&r), "CannotDeleteOrUpdateEnabledEntitlement");
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"appRoles": [role(id1, "has space", false)]})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn identifier_uris_follow_formats_and_are_unique() {
    let env = Env::new().await;
    let a = env.create_app(json!({"displayName": "a"})).await;
    let b = env.create_app(json!({"displayName": "b"})).await;
    let (pa, app_a) = (
        format!("/v1.0/applications/{}", a["id"].as_str().unwrap()),
        a["appId"].as_str().unwrap(),
    );
    let pb = format!("/v1.0/applications/{}", b["id"].as_str().unwrap());
    let home = env.home();
    for ok in [
        format!("api://{app_a}"),
        format!("api://{home}/{app_a}"),
        format!("api://{home}/bookme"),
        format!("api://bookme/{app_a}"),
        "https://api.contoso.onmicrosoft.com/x".to_string(),
    ] {
        let r = env
            .call("PATCH", &pa, Some(json!({"identifierUris": [ok]})))
            .await;
        assert_eq!(r.status, 204, "{ok}: {}", r.json());
    }
    for bad in [
        "api://bookme".to_string(),
        "api://11111111-2222-3333-4444-555555555555".to_string(),
        "https://unverified.example/x".to_string(),
        format!("api://{}/x", "11111111-2222-3333-4444-555555555555"),
    ] {
        let r = env
            .call("PATCH", &pa, Some(json!({"identifierUris": [bad]})))
            .await;
        assert_eq!(r.status, 400, "{bad} must be rejected");
    }
    let r = env
        .call(
            "PATCH",
            &pa,
            Some(json!({"identifierUris": [format!("api://{home}/shared")]})),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = env
        .call(
            "PATCH",
            &pb,
            Some(json!({"identifierUris": [format!("api://{home}/shared")]})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identifierUris")
    );
}

#[tokio::test]
async fn add_and_remove_password() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "pw"})).await;
    let oid = app["id"].as_str().unwrap();
    let r = env
        .add_password(oid, json!({"displayName": "rotation-nonce-1"}))
        .await;
    assert_eq!(r.status, 200);
    let p = r.json();
    let secret = p["secretText"].as_str().unwrap();
    assert!(secret.len() >= 16 && secret.len() <= 64);
    assert_eq!(p["hint"].as_str().unwrap(), &secret[..3]);
    assert_eq!(p["displayName"], "rotation-nonce-1");
    let start: jiff::Timestamp = p["startDateTime"].as_str().unwrap().parse().unwrap();
    let end: jiff::Timestamp = p["endDateTime"].as_str().unwrap().parse().unwrap();
    let days = end.duration_since(start).as_hours() / 24;
    assert!(
        (729..=731).contains(&days),
        "default lifetime is 2 years, got {days} days"
    );
    // The value is returned once only.
    let got = env
        .call("GET", &format!("/v1.0/applications/{oid}"), None)
        .await
        .json();
    assert_eq!(got["passwordCredentials"][0]["secretText"], Value::Null);
    assert_eq!(got["passwordCredentials"][0]["hint"], p["hint"]);
    assert!(!env.emu.state_dump().to_string().contains(secret));

    let key_id = p["keyId"].as_str().unwrap();
    let r = env
        .call(
            "POST",
            &format!("/v1.0/applications/{oid}/removePassword"),
            Some(json!({"keyId": key_id})),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = env
        .call(
            "POST",
            &format!("/v1.0/applications/{oid}/removePassword"),
            Some(json!({"keyId": key_id})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn app_management_policy_caps_secret_lifetime() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "pol"})).await;
    let oid = app["id"].as_str().unwrap();
    env.emu.set_app_policy(entra_emulator::AppPolicy {
        max_password_lifetime_secs: Some(90 * 24 * 3600),
        passwords_forbidden: false,
    });
    let r = env.add_password(oid, json!({})).await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (400, "CredentialInvalidLifetimeAsPerAppPolicy")
    );
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
    let r = env
        .add_password(oid, json!({"endDateTime": end.to_string()}))
        .await;
    assert_eq!(r.status, 200);
    env.emu.set_app_policy(entra_emulator::AppPolicy {
        max_password_lifetime_secs: None,
        passwords_forbidden: true,
    });
    let r = env.add_password(oid, json!({})).await;
    assert_eq!(error_code(&r), "CredentialTypeNotAllowedAsPerAppPolicy");
}

#[tokio::test]
async fn certificates_via_patch_then_add_key_with_proof() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "certs"})).await;
    let oid = app["id"].as_str().unwrap();
    let path = format!("/v1.0/applications/{oid}");
    let spare = certificate_key_value(SPARE_CERT_PEM).unwrap();
    // No certificate yet: addKey can't be proven; PATCH keyCredentials instead.
    let proof = key_proof(SPARE_KEY_PEM, SPARE_CERT_PEM, oid, now_unix()).unwrap();
    let op = certificate_key_value(OPERATOR_CERT_PEM).unwrap();
    let r = env.call("POST", &format!("{path}/addKey"), Some(json!({"keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify", "key": op}, "passwordCredential": null, "proof": proof}))).await;
    assert_eq!(r.status, 400);
    let r = env.call("PATCH", &path, Some(json!({"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": spare, "displayName": "spare"}]}))).await;
    assert_eq!(r.status, 204, "{}", r.json());
    let got = env.call("GET", &path, None).await.json();
    assert_eq!(got["keyCredentials"].as_array().unwrap().len(), 1);
    assert_eq!(got["keyCredentials"][0]["key"], Value::Null);
    // Now a proof signed by the spare certificate adds the operator certificate.
    let r = env.call("POST", &format!("{path}/addKey"), Some(json!({"keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify", "key": op}, "passwordCredential": null, "proof": proof}))).await;
    assert_eq!(r.status, 200, "{}", r.json());
    let new_key = r.json()["keyId"].as_str().unwrap().to_string();
    let bad_proof = key_proof(
        SPARE_KEY_PEM,
        SPARE_CERT_PEM,
        "00000000-0000-0000-0000-000000000000",
        now_unix(),
    )
    .unwrap();
    let r = env
        .call(
            "POST",
            &format!("{path}/removeKey"),
            Some(json!({"keyId": new_key, "proof": bad_proof})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .call(
            "POST",
            &format!("{path}/removeKey"),
            Some(json!({"keyId": new_key, "proof": proof})),
        )
        .await;
    assert_eq!(r.status, 204);
    let got = env.call("GET", &path, None).await.json();
    assert_eq!(got["keyCredentials"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn federated_credentials_upsert_limit_and_uniqueness() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "fic"})).await;
    let base = format!(
        "/v1.0/applications/{}/federatedIdentityCredentials",
        app["id"].as_str().unwrap()
    );
    let fic = |n: usize| json!({"name": format!("fic-{n}"), "issuer": "https://issuer.example", "subject": format!("sub-{n}"), "audiences": ["api://AzureADTokenExchange"]});
    let by_name = format!("{base}(name='wi')");
    let r = env.call("PATCH", &by_name, Some(json!({"issuer": "https://issuer.example", "subject": "wi", "audiences": ["api://AzureADTokenExchange"]}))).await;
    assert_eq!(r.status, 404);
    let prefer = [("Prefer", "create-if-missing")];
    let body = json!({"issuer": "https://issuer.example", "subject": "wi", "audiences": ["api://AzureADTokenExchange"]});
    assert_eq!(
        env.call_with("PATCH", &by_name, &prefer, Some(body.clone()))
            .await
            .status,
        201
    );
    let mut changed = body.clone();
    changed["subject"] = json!("wi-2");
    assert_eq!(
        env.call_with("PATCH", &by_name, &prefer, Some(changed))
            .await
            .status,
        204
    );
    assert_eq!(
        env.call("GET", &by_name, None).await.json()["subject"],
        "wi-2"
    );
    let dup = json!({"name": "dup", "issuer": "https://issuer.example", "subject": "wi-2", "audiences": ["api://AzureADTokenExchange"]});
    assert_eq!(env.call("POST", &base, Some(dup)).await.status, 409);
    for n in 0..19 {
        let r = env.call("POST", &base, Some(fic(n))).await;
        assert_eq!(r.status, 201, "{n}: {}", r.json());
    }
    let r = env.call("POST", &base, Some(fic(99))).await;
    assert_eq!(r.status, 400, "the 21st credential is refused");
    assert_eq!(
        env.call("GET", &base, None).await.json()["value"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(env.call("DELETE", &by_name, None).await.status, 204);
}

#[tokio::test]
async fn owners_ref_add_duplicate_remove() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "own"})).await;
    let base = format!("/v1.0/applications/{}/owners", app["id"].as_str().unwrap());
    let user = "5b1c3f4e-1111-4222-8333-444455556666";
    let body =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{user}")});
    assert_eq!(
        env.call("POST", &format!("{base}/$ref"), Some(body.clone()))
            .await
            .status,
        204
    );
    assert_eq!(
        env.call("POST", &format!("{base}/$ref"), Some(body))
            .await
            .status,
        400
    );
    assert_eq!(
        env.call("DELETE", &format!("{base}/{user}/$ref"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        env.call("DELETE", &format!("{base}/{user}/$ref"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn delete_restore_purge() {
    let env = Env::new().await;
    let app = env
        .create_app(json!({"displayName": "gone", "identifierUris": []}))
        .await;
    let oid = app["id"].as_str().unwrap();
    assert_eq!(
        env.call("DELETE", &format!("/v1.0/applications/{oid}"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        env.call("GET", &format!("/v1.0/applications/{oid}"), None)
            .await
            .status,
        404
    );
    let deleted = env
        .call(
            "GET",
            "/v1.0/directory/deletedItems/microsoft.graph.application",
            None,
        )
        .await
        .json();
    assert_eq!(deleted["value"][0]["id"], oid);
    assert!(deleted["value"][0]["deletedDateTime"].is_string());
    let r = env
        .call(
            "POST",
            &format!("/v1.0/directory/deletedItems/{oid}/restore"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.call("GET", &format!("/v1.0/applications/{oid}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        env.call("DELETE", &format!("/v1.0/applications/{oid}"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        env.call(
            "DELETE",
            &format!("/v1.0/directory/deletedItems/{oid}"),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        env.call(
            "POST",
            &format!("/v1.0/directory/deletedItems/{oid}/restore"),
            None
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn delta_pages_to_a_delta_link_and_reports_changes() {
    let env = Env::new().await;
    let a = env.create_app(json!({"displayName": "d1"})).await;
    let b = env.create_app(json!({"displayName": "d2"})).await;
    let first = env
        .call("GET", "/v1.0/applications/delta?$select=displayName", None)
        .await
        .json();
    let names: Vec<&str> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["displayName"].as_str())
        .collect();
    assert!(names.contains(&"d1") && names.contains(&"d2"));
    let link = first["@odata.deltaLink"].as_str().unwrap().to_string();
    let path = link.strip_prefix(&env.base).unwrap().to_string();
    let none = env.call("GET", &path, None).await.json();
    assert_eq!(none["value"], json!([]));
    env.call(
        "PATCH",
        &format!("/v1.0/applications/{}", a["id"].as_str().unwrap()),
        Some(json!({"displayName": "d1b"})),
    )
    .await;
    env.call(
        "DELETE",
        &format!("/v1.0/applications/{}", b["id"].as_str().unwrap()),
        None,
    )
    .await;
    let changes = env.call("GET", &path, None).await.json();
    let v = changes["value"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{changes}");
    assert!(v.iter().any(|x| x["displayName"] == "d1b"));
    assert!(
        v.iter()
            .any(|x| x["id"] == b["id"] && x["@removed"]["reason"] == "changed")
    );
    let latest = env
        .call("GET", "/v1.0/applications/delta?$deltatoken=latest", None)
        .await
        .json();
    assert_eq!(latest["value"], json!([]));
    assert!(latest["@odata.deltaLink"].is_string());
}

/// The values of a delta page, the link that ends it (`@odata.nextLink` or `@odata.deltaLink`) as a
/// path on the emulator, and whether it is the delta link.
async fn delta_page(env: &Env, path: &str) -> (Vec<Value>, String, bool) {
    let r = env.call("GET", path, None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.json());
    let body = r.json();
    let (link, is_delta) = match (
        body["@odata.nextLink"].as_str(),
        body["@odata.deltaLink"].as_str(),
    ) {
        (Some(next), None) => (next, false),
        (None, Some(delta)) => (delta, true),
        _ => panic!("a page has exactly one of nextLink and deltaLink: {body}"),
    };
    let path = link.strip_prefix(&env.base).unwrap().to_string();
    (body["value"].as_array().unwrap().clone(), path, is_delta)
}

/// Follows a round to its delta link: every value, and the delta link's path.
async fn delta_round(env: &Env, path: &str) -> (Vec<Value>, String) {
    let mut all = Vec::new();
    let mut path = path.to_string();
    loop {
        let (values, link, done) = delta_page(env, &path).await;
        all.extend(values);
        path = link;
        if done {
            return (all, path);
        }
    }
}

fn ids(values: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = values
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn service_principal_delta_pages_from_scratch_to_a_delta_link() {
    let env = Env::new().await;
    let graph_sp = env
        .call(
            "GET",
            "/v1.0/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')",
            None,
        )
        .await
        .json();
    let mut expected = vec![
        graph_sp["id"].as_str().unwrap().to_string(),
        env.emu.operator_credentials().service_principal_id,
    ];
    // 100 more than the two built in: more than one page of 100.
    for i in 0..100 {
        let app = env
            .create_app(json!({"displayName": format!("sp-{i}")}))
            .await;
        let sp = env.create_sp(app["appId"].as_str().unwrap()).await;
        expected.push(sp["id"].as_str().unwrap().to_string());
    }
    expected.sort();
    let r = env
        .call(
            "GET",
            "/v1.0/servicePrincipals/delta()?$select=appId,displayName",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let first = r.json();
    assert_eq!(
        first["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals"
    );
    assert_eq!(first["value"].as_array().unwrap().len(), 100);
    assert!(first.get("@odata.deltaLink").is_none(), "{first}");
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/v1.0/servicePrincipals/delta?", env.base)),
        "{next}"
    );
    let (rest, link, done) = delta_page(&env, next.strip_prefix(&env.base).unwrap()).await;
    assert!(done, "the second page ends the round");
    assert_eq!(rest.len(), 2);
    let mut all = first["value"].as_array().unwrap().clone();
    all.extend(rest);
    assert_eq!(ids(&all), expected, "every service principal, once");
    for v in &all {
        // $select is carried to the next page; id always comes.
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["appId", "displayName", "id"], "{v}");
    }
    assert!(all.iter().any(|v| v["displayName"] == "sp-99"));
    let (none, _, done) = delta_page(&env, &link).await;
    assert!(done);
    assert_eq!(none, Vec::<Value>::new(), "nothing changed since the round");
}

#[tokio::test]
async fn service_principal_delta_after_latest_reports_a_patch_a_new_one_and_a_deleted_one() {
    let env = Env::new().await;
    let mut sps = Vec::new();
    for name in ["patched", "deleted", "untouched"] {
        let app = env.create_app(json!({"displayName": name})).await;
        sps.push(env.create_sp(app["appId"].as_str().unwrap()).await);
    }
    let id = |sp: &Value| sp["id"].as_str().unwrap().to_string();
    let (none, link) = delta_round(&env, "/v1.0/servicePrincipals/delta?$deltatoken=latest").await;
    assert_eq!(none, Vec::<Value>::new(), "latest returns no data");

    let r = env
        .call(
            "PATCH",
            &format!("/v1.0/servicePrincipals/{}", id(&sps[0])),
            Some(json!({"notes": "changed"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = env
        .call(
            "DELETE",
            &format!("/v1.0/servicePrincipals/{}", id(&sps[1])),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let app = env.create_app(json!({"displayName": "new"})).await;
    let created = env.create_sp(app["appId"].as_str().unwrap()).await;
    // An application without a service principal is no change here.
    env.create_app(json!({"displayName": "no-sp"})).await;

    let (changes, link) = delta_round(&env, &link).await;
    assert_eq!(changes.len(), 3, "{changes:#?}");
    let by_id = |i: String| changes.iter().find(|v| v["id"] == i.as_str()).unwrap();
    assert_eq!(by_id(id(&sps[0]))["notes"], "changed");
    assert!(by_id(id(&sps[0])).get("@removed").is_none());
    assert_eq!(by_id(id(&created))["appId"], app["appId"]);
    assert_eq!(
        *by_id(id(&sps[1])),
        json!({"id": id(&sps[1]), "@removed": {"reason": "deleted"}}),
        "no soft delete for service principals: gone for good"
    );
    let (none, _) = delta_round(&env, &link).await;
    assert_eq!(none, Vec::<Value>::new());
}

#[tokio::test]
async fn service_principal_delta_ignores_app_role_assignments_and_grants() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "client"})).await;
    let sp = env.create_sp(app["appId"].as_str().unwrap()).await;
    let sp_id = sp["id"].as_str().unwrap();
    let graph = env
        .call(
            "GET",
            "/v1.0/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')",
            None,
        )
        .await
        .json();
    let graph_id = graph["id"].as_str().unwrap();
    let (_, link) = delta_round(&env, "/v1.0/servicePrincipals/delta").await;

    let role = entra_emulator::msgraph::graph_role_id("User.Read.All").unwrap();
    let path = format!("/v1.0/servicePrincipals/{graph_id}/appRoleAssignedTo");
    let r = env
        .call(
            "POST",
            &path,
            Some(json!({"principalId": sp_id, "resourceId": graph_id, "appRoleId": role})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let r = env
        .call(
            "POST",
            "/v1.0/oauth2PermissionGrants",
            Some(json!({"clientId": sp_id, "consentType": "AllPrincipals",
                "resourceId": graph_id, "scope": "User.Read"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let (changes, link) = delta_round(&env, &link).await;
    assert_eq!(
        changes,
        Vec::<Value>::new(),
        "assignments and grants are objects of their own"
    );
    // A change to the service principal itself still shows.
    let r = env
        .call(
            "PATCH",
            &format!("/v1.0/servicePrincipals/{sp_id}"),
            Some(json!({"tags": ["HideApp"]})),
        )
        .await;
    assert_eq!(r.status, 204);
    let (changes, _) = delta_round(&env, &link).await;
    assert_eq!(ids(&changes), [sp_id]);
}

#[tokio::test]
async fn delta_filter_by_id_scopes_both_delta_functions() {
    let env = Env::new().await;
    let (mut apps, mut sps) = (Vec::new(), Vec::new());
    for name in ["f1", "f2", "f3"] {
        let app = env.create_app(json!({"displayName": name})).await;
        sps.push(
            env.create_sp(app["appId"].as_str().unwrap()).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        apps.push(app["id"].as_str().unwrap().to_string());
    }
    for (collection, ids_of) in [("servicePrincipals", &sps), ("applications", &apps)] {
        let q = format!(
            "/v1.0/{collection}/delta?$filter=id%20eq%20'{}'%20or%20id%20eq%20'{}'",
            ids_of[0], ids_of[1]
        );
        let (values, link) = delta_round(&env, &q).await;
        let mut want = vec![ids_of[0].clone(), ids_of[1].clone()];
        want.sort();
        assert_eq!(ids(&values), want, "{collection}");
        // The delta link keeps the filter: a change outside it does not show.
        for id in [&ids_of[0], &ids_of[2]] {
            let r = env
                .call(
                    "PATCH",
                    &format!("/v1.0/{collection}/{id}"),
                    Some(json!({"notes": "n"})),
                )
                .await;
            assert_eq!(r.status, 204, "{}", r.json());
        }
        let (values, _) = delta_round(&env, &link).await;
        assert_eq!(ids(&values), [ids_of[0].clone()], "{collection}");
        let r = env
            .call(
                "GET",
                &format!("/v1.0/{collection}/delta?$filter=displayName%20eq%20'f1'"),
                None,
            )
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(error_code(&r), "Request_UnsupportedQuery");
    }
}

#[tokio::test]
async fn delta_returns_an_object_still_replicating_in_a_later_round() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "backing"})).await;
    let (_, sp_link) = delta_round(&env, "/v1.0/servicePrincipals/delta?$deltatoken=latest").await;
    let (_, app_link) = delta_round(&env, "/v1.0/applications/delta?$deltatoken=latest").await;
    env.emu.set_replication_delay(Duration::from_secs(30));
    let sp = env.create_sp(app["appId"].as_str().unwrap()).await;
    let late_app = env.create_app(json!({"displayName": "late"})).await;
    let (sp_none, sp_link) = delta_round(&env, &sp_link).await;
    let (app_none, app_link) = delta_round(&env, &app_link).await;
    assert_eq!(sp_none, Vec::<Value>::new(), "not replicated yet");
    assert_eq!(app_none, Vec::<Value>::new(), "not replicated yet");
    env.emu.advance_clock(Duration::from_secs(31));
    let (sps, _) = delta_round(&env, &sp_link).await;
    let (apps, _) = delta_round(&env, &app_link).await;
    assert_eq!(ids(&sps), [sp["id"].as_str().unwrap()]);
    assert_eq!(ids(&apps), [late_app["id"].as_str().unwrap()]);
}
