//! Behaviours Graph documents that a first reading got wrong (FIDELITY.md lists each with its
//! source): the emulator must refuse what Graph refuses.

mod common;

use std::time::Duration;

use common::{Env, error_code};
use entra_emulator::{SwitchesPatch, ThrottleMode};
use serde_json::json;

const SCOPE_ID: &str = "5b0b5d7e-0000-4000-8000-000000000001";
const CLIENT_APP_ID: &str = "7b1a2c3d-0000-4000-8000-0000000000aa";

fn scope() -> serde_json::Value {
    json!({"id": SCOPE_ID, "value": "access", "type": "User", "isEnabled": true,
        "adminConsentDisplayName": "Access", "adminConsentDescription": "Access"})
}

#[tokio::test]
async fn a_scope_and_its_pre_authorization_in_one_write_are_refused() {
    let env = Env::new().await;
    let body = json!({"displayName": "api", "api": {
        "oauth2PermissionScopes": [scope()],
        "preAuthorizedApplications": [{"appId": CLIENT_APP_ID, "delegatedPermissionIds": [SCOPE_ID]}],
    }});
    let r = env.call("POST", "/v1.0/applications", Some(body)).await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "InvalidValue");
    assert_eq!(
        r.json()["error"]["message"],
        "Property api.preAuthorizedApplications.delegatedPermissionIds has a Permission Id that cannot be found in the AppPermissions sets."
    );

    // Same in one PATCH on an existing app; two writes (scope first) are accepted.
    let app = env.create_app(json!({"displayName": "api"})).await;
    let path = format!("/v1.0/applications/{}", app["id"].as_str().unwrap());
    let both = json!({"api": {"oauth2PermissionScopes": [scope()],
        "preAuthorizedApplications": [{"appId": CLIENT_APP_ID, "delegatedPermissionIds": [SCOPE_ID]}]}});
    assert_eq!(
        env.call("PATCH", &path, Some(both.clone())).await.status,
        400
    );
    let first = json!({"api": {"oauth2PermissionScopes": [scope()]}});
    assert_eq!(env.call("PATCH", &path, Some(first)).await.status, 204);
    let r = env.call("PATCH", &path, Some(both)).await;
    assert_eq!(r.status, 204, "{}", r.json());
}

#[tokio::test]
async fn app_role_origin_is_read_only() {
    let env = Env::new().await;
    let role = json!({"id": "6a1f0c2e-0000-4000-8000-000000000002", "value": "Reader", "displayName": "Reader",
        "description": "Reader", "isEnabled": true, "allowedMemberTypes": ["Application"]});
    let mut with_origin = role.clone();
    with_origin["origin"] = json!("Application");
    let r = env
        .call(
            "POST",
            "/v1.0/applications",
            Some(json!({"displayName": "roles", "appRoles": [with_origin.clone()]})),
        )
        .await;
    assert_eq!(r.status, 400);
    let app = env
        .create_app(json!({"displayName": "roles", "appRoles": [role]}))
        .await;
    assert_eq!(
        app["appRoles"][0]["origin"], "Application",
        "reads carry it"
    );
    let path = format!("/v1.0/applications/{}", app["id"].as_str().unwrap());
    let r = env
        .call("PATCH", &path, Some(json!({"appRoles": [with_origin]})))
        .await;
    assert_eq!(r.status, 400, "echoing a read role back is refused");
}

#[tokio::test]
async fn duplicate_grant_is_409_and_the_list_lags_a_fresh_grant() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "client"})).await;
    let sp = env.create_sp(app["appId"].as_str().unwrap()).await;
    let graph = env
        .call(
            "GET",
            "/v1.0/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')",
            None,
        )
        .await
        .json();
    env.emu.set_replication_delay(Duration::from_secs(30));
    let grant = json!({"clientId": sp["id"], "consentType": "AllPrincipals",
        "resourceId": graph["id"], "scope": "User.Read"});
    let r = env
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(grant.clone()))
        .await;
    assert_eq!(r.status, 201);
    let filter = format!(
        "/v1.0/oauth2PermissionGrants?$filter=clientId%20eq%20'{}'",
        sp["id"].as_str().unwrap()
    );
    let listed = env.call("GET", &filter, None).await.json();
    assert_eq!(listed["value"].as_array().unwrap().len(), 0, "list lags");
    let again = env
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(grant))
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(
        error_code(&again),
        "Request_MultipleObjectsWithSameKeyValue"
    );
    assert_eq!(
        again.json()["error"]["message"],
        "Permission entry already exists."
    );
    env.emu.advance_clock(Duration::from_secs(31));
    let listed = env.call("GET", &filter, None).await.json();
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn personal_account_audiences_need_token_version_2() {
    let env = Env::new().await;
    for audience in [
        "AzureADandPersonalMicrosoftAccount",
        "PersonalMicrosoftAccount",
    ] {
        let r = env
            .call(
                "POST",
                "/v1.0/applications",
                Some(json!({"displayName": "p", "signInAudience": audience})),
            )
            .await;
        assert_eq!(r.status, 400, "{audience}");
        let ok = json!({"displayName": "p", "signInAudience": audience, "api": {"requestedAccessTokenVersion": 2}});
        assert_eq!(
            env.call("POST", "/v1.0/applications", Some(ok))
                .await
                .status,
            201
        );
    }
}

#[tokio::test]
async fn two_password_cap_applies_only_to_live_sdk_apps() {
    let env = Env::new().await;
    let personal = json!({"displayName": "p", "signInAudience": "PersonalMicrosoftAccount",
        "api": {"requestedAccessTokenVersion": 2}});
    let app = env.create_app(personal.clone()).await;
    let id = app["id"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(env.add_password(id, json!({})).await.status, 200);
    }
    let live = env.create_app(personal).await;
    env.emu.update_switches(SwitchesPatch {
        live_sdk_app_ids: Some(vec![live["appId"].as_str().unwrap().to_string()]),
        ..Default::default()
    });
    let lid = live["id"].as_str().unwrap();
    assert_eq!(env.add_password(lid, json!({})).await.status, 200);
    assert_eq!(env.add_password(lid, json!({})).await.status, 200);
    let third = env.add_password(lid, json!({})).await;
    assert_eq!(third.status, 400);
    assert_eq!(error_code(&third), "TooManyAppPasswords");
}

#[tokio::test]
async fn identifier_uris_accept_verified_domain_form_and_scope_uniqueness_by_audience() {
    let env = Env::new().await;
    let org = env.call("GET", "/v1.0/organization", None).await.json();
    let domain = org["value"][0]["verifiedDomains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["isDefault"] == true)
        .and_then(|d| d["name"].as_str())
        .unwrap()
        .to_string();
    let app = env.create_app(json!({"displayName": "u"})).await;
    let path = format!("/v1.0/applications/{}", app["id"].as_str().unwrap());
    let uri = format!("api://api.{domain}/orders");
    let r = env
        .call("PATCH", &path, Some(json!({"identifierUris": [uri]})))
        .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = env
        .call(
            "PATCH",
            &path,
            Some(json!({"identifierUris": ["api://api.unverified.example/orders"]})),
        )
        .await;
    assert_eq!(r.status, 400);
    // A second single-tenant app in the same tenant may not take it.
    let other = env.create_app(json!({"displayName": "v"})).await;
    let r = env
        .call(
            "PATCH",
            &format!("/v1.0/applications/{}", other["id"].as_str().unwrap()),
            Some(json!({"identifierUris": [uri]})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn v2_admin_consent_requires_a_redirect_uri_v1_does_not() {
    let env = Env::new().await;
    let client = env
        .create_app(json!({"displayName": "mt", "signInAudience": "AzureADMultipleOrgs"}))
        .await;
    let cid = client["appId"].as_str().unwrap();
    env.emu.set_consent_approve(true);
    let v2 = format!(
        "{}/{}/v2.0/adminconsent?client_id={cid}&scope=https://graph.microsoft.com/.default",
        env.emu.authority_host(),
        env.customer
    );
    let r = env.client.send("GET", &v2, &[], None).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(common::aadsts(&r), 900144);
    let v1 = format!(
        "{}/{}/adminconsent?client_id={cid}",
        env.emu.authority_host(),
        env.customer
    );
    let r = env.client.send("GET", &v1, &[], None).await.unwrap();
    assert!(
        r.status < 400,
        "v1 works without a redirect URI: {}",
        r.status
    );
}

#[tokio::test]
async fn expired_delta_token_is_400_sync_state_not_found() {
    let env = Env::new().await;
    let r = env
        .call("GET", "/v1.0/applications/delta?$deltatoken=latest", None)
        .await;
    let link = r.json()["@odata.deltaLink"].as_str().unwrap().to_string();
    env.emu.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let token = env.emu.operator_token().await.unwrap();
    let r = env
        .client
        .send(
            "GET",
            &link,
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "syncStateNotFound");
}

#[tokio::test]
async fn expired_service_principal_delta_token_is_400_sync_state_not_found() {
    let env = Env::new().await;
    let r = env.call("GET", "/v1.0/servicePrincipals/delta", None).await;
    assert_eq!(r.status, 200, "{}", r.json());
    let link = r.json()["@odata.deltaLink"].as_str().unwrap().to_string();
    env.emu.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let token = env.emu.operator_token().await.unwrap();
    let r = env
        .client
        .send(
            "GET",
            &link,
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "syncStateNotFound");
    assert_eq!(
        r.json()["error"]["message"],
        "The sync state generation is not found. The delta token is expired and data must be synchronized again."
    );
}

#[tokio::test]
async fn throttle_scope_is_sent_on_throttled_answers_only() {
    let env = Env::new().await;
    env.emu.set_throttling(ThrottleMode::Scaled {
        limit_factor: 0.002,
        window_factor: 0.2,
    });
    let mut throttled = None;
    for _ in 0..6 {
        let r = env.call("GET", "/v1.0/applications", None).await;
        if r.status == 429 {
            throttled = Some(r);
            break;
        }
        assert!(r.header("x-ms-throttle-scope").is_none(), "not on a 200");
    }
    let r = throttled.expect("throttled");
    let scope = r.header("x-ms-throttle-scope").unwrap().to_string();
    let parts: Vec<&str> = scope.split('/').collect();
    let client_id = env.emu.operator_credentials().client_id;
    assert_eq!(
        parts,
        vec![
            "Tenant_Application",
            "Read",
            client_id.as_str(),
            &env.home()
        ]
    );
}

#[tokio::test]
async fn unknown_properties_in_complex_types_are_refused_and_the_contract_names_them() {
    let env = Env::new().await;
    // The contract (on in every test) answers a misspelled property with its path.
    let body = json!({"displayName": "typo", "api": {"oauth2PermissionScope": [scope()]}});
    let r = env
        .call("POST", "/v1.0/applications", Some(body.clone()))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "SchemaContractViolation");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.oauth2PermissionScope"),
        "{}",
        r.json()
    );
    let recorded = env.emu.contract_violations();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["direction"], "request");
    // Misspelled top-level properties of an open type are contract violations too.
    let r = env
        .call(
            "POST",
            "/v1.0/applications",
            Some(json!({"displayName": "typo", "signinAudience": "AzureADMyOrg"})),
        )
        .await;
    assert_eq!(error_code(&r), "SchemaContractViolation");

    // Without the contract Graph's own rule stays: complex types are not open.
    env.emu.update_switches(SwitchesPatch {
        schema_contract: Some(false),
        ..Default::default()
    });
    let r = env.call("POST", "/v1.0/applications", Some(body)).await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "Request_BadRequest");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The property 'oauth2PermissionScope' does not exist on type 'microsoft.graph.apiApplication'"),
        "{}",
        r.json()
    );
}
