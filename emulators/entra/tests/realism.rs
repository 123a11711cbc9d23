//! Realism switches: authentication, denial, throttling, replication delay, every fault kind, the
//! request log and the control API.
mod common;

use std::time::Duration;

use common::*;
use entra_emulator::{EmulatorConfig, FaultKind, FaultRule, Switches, ThrottleMode};
use serde_json::json;

#[tokio::test]
async fn graph_requires_a_valid_emulator_token() {
    let env = Env::new().await;
    let url = format!("{}/v1.0/applications", env.base);
    let none = env.client.send("GET", &url, &[], None).await.unwrap();
    assert_eq!(
        (none.status, error_code(&none).as_str()),
        (401, "InvalidAuthenticationToken")
    );
    let bogus = env
        .client
        .send(
            "GET",
            &url,
            &[("authorization", "Bearer abc.def.ghi")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(bogus.status, 401);
    // A token for another resource is not a Graph token.
    let creds = env.emu.operator_credentials();
    let app = env
        .create_app(json!({"displayName": "api", "api": {"requestedAccessTokenVersion": 2}}))
        .await;
    let app_id = app["appId"].as_str().unwrap();
    env.call(
        "PATCH",
        &format!("/v1.0/applications/{}", app["id"].as_str().unwrap()),
        Some(json!({"identifierUris": [format!("api://{app_id}")]})),
    )
    .await;
    env.create_sp(app_id).await;
    let other = env
        .token(
            &env.home(),
            &creds.client_id,
            &creds.client_secret,
            &format!("api://{app_id}/.default"),
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.json());
    let tok = other.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&tok)["aud"], app_id);
    let auth = format!("Bearer {tok}");
    let wrong_aud = env
        .client
        .send("GET", &url, &[("authorization", auth.as_str())], None)
        .await
        .unwrap();
    assert_eq!(wrong_aud.status, 401);
    // Tokens expire on the emulator's clock.
    env.emu.advance_clock(Duration::from_secs(3700));
    let expired = env.call("GET", "/v1.0/applications", None).await;
    assert_eq!(expired.status, 401);
}

#[tokio::test]
async fn denied_calls_get_403() {
    let env = Env::new().await;
    env.emu.deny(Some("POST"), "/v1.0/oauth2PermissionGrants");
    let r = env
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(json!({})))
        .await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (403, "Authorization_RequestDenied")
    );
    assert_eq!(
        r.json()["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    assert_eq!(
        env.call("GET", "/v1.0/oauth2PermissionGrants", None)
            .await
            .status,
        200
    );
    env.emu.clear_denies();
    assert_eq!(
        env.call("POST", "/v1.0/oauth2PermissionGrants", Some(json!({})))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn scaled_throttling_answers_429_with_retry_after() {
    let env = Env::new().await;
    // 3,500 RU * 0.002 = 7 RU per 10 s * 0.2 = 2 s; GET applications costs 2 RU.
    env.emu.set_throttling(ThrottleMode::Scaled {
        limit_factor: 0.002,
        window_factor: 0.2,
    });
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let r = env.call("GET", "/v1.0/applications", None).await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let r = last.unwrap();
    assert_eq!(r.json()["error"]["code"], "TooManyRequests");
    assert_eq!(r.json()["error"]["message"], "Please retry again later.");
    let retry: f64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0.0 && retry <= 2.0, "{retry}");
    assert!(
        r.header("x-ms-throttle-scope")
            .unwrap()
            .starts_with("Tenant_Application/Read/")
    );
    // $select makes a GET cheaper (1 RU); after the window passes calls go through again.
    tokio::time::sleep(Duration::from_secs_f64(retry + 0.05)).await;
    let ok = env.call("GET", "/v1.0/applications?$select=id", None).await;
    assert_eq!(ok.status, 200);
    // Near the limit the throttle headers appear.
    let mut saw_percentage = false;
    for _ in 0..6 {
        let r = env.call("GET", "/v1.0/applications?$select=id", None).await;
        if r.status == 200 && r.header("x-ms-throttle-limit-percentage").is_some() {
            saw_percentage = true;
        }
    }
    assert!(saw_percentage);
    // Throttling off: no limit.
    env.emu.set_throttling(ThrottleMode::Off);
    for _ in 0..20 {
        assert_eq!(
            env.call("GET", "/v1.0/applications", None).await.status,
            200
        );
    }
}

#[tokio::test]
async fn write_budget_is_separate_and_batch_items_are_throttled_individually() {
    let env = Env::new().await;
    // Write budget 3,000 per 150 s * 0.001 = 3 writes.
    env.emu.set_throttling(ThrottleMode::Scaled {
        limit_factor: 0.001,
        window_factor: 1.0,
    });
    let app = {
        env.emu.set_throttling(ThrottleMode::Off);
        let a = env.create_app(json!({"displayName": "w"})).await;
        env.emu.set_throttling(ThrottleMode::Scaled {
            limit_factor: 0.001,
            window_factor: 1.0,
        });
        a
    };
    let path = format!("/v1.0/applications/{}", app["id"].as_str().unwrap());
    let reqs: Vec<_> = (0..5)
        .map(|i| json!({"id": i.to_string(), "method": "PATCH", "url": format!("/applications/{}", app["id"].as_str().unwrap()),
            "headers": {"Content-Type": "application/json"}, "body": {"notes": format!("n{i}")}}))
        .collect();
    let r = env
        .call("POST", "/v1.0/$batch", Some(json!({"requests": reqs})))
        .await;
    assert_eq!(r.status, 200);
    let statuses: Vec<i64> = r.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2);
    let throttled = r.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["status"] == 429)
        .cloned()
        .unwrap();
    assert!(throttled["headers"]["Retry-After"].is_string());
    let r = env.call("PATCH", &path, Some(json!({"notes": "x"}))).await;
    assert_eq!(r.status, 429);
}

#[tokio::test]
async fn replication_delay_hides_new_objects() {
    let env = Env::new().await;
    env.emu.set_replication_delay(Duration::from_millis(400));
    let app = env.create_app(json!({"displayName": "slow"})).await;
    let (oid, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    assert_eq!(
        env.call("GET", &format!("/v1.0/applications/{oid}"), None)
            .await
            .status,
        404
    );
    let sp = env
        .call(
            "POST",
            "/v1.0/servicePrincipals",
            Some(json!({"appId": app_id})),
        )
        .await;
    assert_eq!(sp.status, 400);
    assert_eq!(
        sp.json()["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );
    // The upsert key is consistent immediately: a retried create doesn't duplicate.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        env.call("GET", &format!("/v1.0/applications/{oid}"), None)
            .await
            .status,
        200
    );
    env.emu.set_replication_delay(Duration::ZERO);
    assert_eq!(
        env.call(
            "POST",
            "/v1.0/servicePrincipals",
            Some(json!({"appId": app_id}))
        )
        .await
        .status,
        201
    );

    env.emu.set_credential_delay(Duration::from_millis(300));
    let secret = env.add_password(oid, json!({})).await.json()["secretText"]
        .as_str()
        .unwrap()
        .to_string();
    let early = env.token(&env.home(), app_id, &secret, GRAPH_SCOPE).await;
    assert_eq!(aadsts(&early), 7000215);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        env.token(&env.home(), app_id, &secret, GRAPH_SCOPE)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn status_fault_does_nothing_and_answers_the_error() {
    let env = Env::new().await;
    env.emu.add_fault(
        FaultRule::new(
            "POST",
            "/v1.0/applications",
            FaultKind::Status { status: 503 },
        )
        .times(1),
    );
    let r = env
        .call(
            "POST",
            "/v1.0/applications",
            Some(json!({"displayName": "f"})),
        )
        .await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (503, "serviceNotAvailable")
    );
    let list = env.call("GET", "/v1.0/applications", None).await.json();
    assert_eq!(
        list["value"].as_array().unwrap().len(),
        1,
        "only the operator's app exists"
    );
    // `times` ran out: the next call goes through.
    assert_eq!(
        env.call(
            "POST",
            "/v1.0/applications",
            Some(json!({"displayName": "f"}))
        )
        .await
        .status,
        201
    );
    assert_eq!(env.emu.request_count("POST", "/v1.0/applications"), 2);
    assert_eq!(
        env.emu
            .requests()
            .iter()
            .filter(|r| r.fault.is_some())
            .count(),
        1
    );
}

#[tokio::test]
async fn reset_fault_drops_the_connection_without_writing() {
    let env = Env::new().await;
    env.emu
        .add_fault(FaultRule::new("POST", "/v1.0/applications", FaultKind::Reset).times(1));
    let url = format!("{}/v1.0/applications", env.base);
    let auth = format!("Bearer {}", env.token);
    let r = env
        .client
        .send(
            "POST",
            &url,
            &[("authorization", auth.as_str())],
            Some(&json!({"displayName": "r"})),
        )
        .await;
    assert!(r.is_err(), "connection should be dropped");
    let list = env.call("GET", "/v1.0/applications", None).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn commit_then_fail_faults_write_and_hide_the_result() {
    let env = Env::new().await;
    let path = "/v1.0/applications(uniqueName='ctf')";
    let prefer = [("Prefer", "create-if-missing")];
    env.emu.add_fault(
        FaultRule::new(
            "PATCH",
            "/v1.0/applications(uniqueName='{uniqueName}')",
            FaultKind::CommitThenStatus { status: 500 },
        )
        .times(1),
    );
    let r = env
        .call_with("PATCH", path, &prefer, Some(json!({"displayName": "c"})))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        env.call("GET", path, None).await.status,
        200,
        "the write happened"
    );
    // Retrying the upsert is idempotent: 204, not a second app.
    assert_eq!(
        env.call_with("PATCH", path, &prefer, Some(json!({"displayName": "c"})))
            .await
            .status,
        204
    );

    let app = env.call("GET", path, None).await.json();
    let oid = app["id"].as_str().unwrap();
    env.emu.add_fault(
        FaultRule::new(
            "POST",
            "/v1.0/applications/{id}/addPassword",
            FaultKind::CommitThenReset,
        )
        .times(1),
    );
    let url = format!("{}/v1.0/applications/{oid}/addPassword", env.base);
    let auth = format!("Bearer {}", env.token);
    let r = env
        .client
        .send(
            "POST",
            &url,
            &[("authorization", auth.as_str())],
            Some(&json!({"passwordCredential": {"displayName": "nonce-7"}})),
        )
        .await;
    assert!(r.is_err());
    let after = env
        .call("GET", &format!("/v1.0/applications/{oid}"), None)
        .await
        .json();
    assert_eq!(
        after["passwordCredentials"][0]["displayName"], "nonce-7",
        "the secret exists but its value was lost"
    );
}

#[tokio::test]
async fn delay_and_rate_faults() {
    let env = Env::new().await;
    env.emu.add_fault(
        FaultRule::new("GET", "/v1.0/applications", FaultKind::Delay { ms: 300 }).times(1),
    );
    let t = std::time::Instant::now();
    assert_eq!(
        env.call("GET", "/v1.0/applications", None).await.status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    env.emu.clear_faults();
    env.emu.add_fault(
        FaultRule::new(
            "GET",
            "/v1.0/organization",
            FaultKind::Status { status: 500 },
        )
        .rate(0.5),
    );
    let mut fails = 0;
    for _ in 0..60 {
        if env.call("GET", "/v1.0/organization", None).await.status == 500 {
            fails += 1;
        }
    }
    assert!((10..=50).contains(&fails), "rate 0.5 gave {fails}/60");
    // Faults also apply to the token endpoint.
    env.emu.clear_faults();
    env.emu.add_fault(
        FaultRule::new(
            "POST",
            "/{tenant}/oauth2/v2.0/token",
            FaultKind::Status { status: 503 },
        )
        .times(1),
    );
    let creds = env.emu.operator_credentials();
    let r = env
        .token(
            &env.home(),
            &creds.client_id,
            &creds.client_secret,
            GRAPH_SCOPE,
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        env.token(
            &env.home(),
            &creds.client_id,
            &creds.client_secret,
            GRAPH_SCOPE
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn control_api_sets_switches_and_reads_the_log() {
    let env = Env::with_config(EmulatorConfig {
        switches: Switches {
            consent_approve: true,
            ..Switches::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let ctl = format!("{}/_emulator", env.base);
    let s = env
        .client
        .send("GET", &format!("{ctl}/switches"), &[], None)
        .await
        .unwrap()
        .json();
    assert_eq!(s["consentApprove"], true);
    let patch = json!({"throttling": {"mode": "scaled", "limitFactor": 0.001}, "faults": [{"method": "GET", "pathTemplate": "/v1.0/organization", "kind": {"type": "status", "status": 502}, "times": 1}]});
    let r = env
        .client
        .send("PATCH", &format!("{ctl}/switches"), &[], Some(&patch))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(
        env.emu.switches().throttling,
        ThrottleMode::Scaled {
            limit_factor: 0.001,
            window_factor: 1.0
        }
    );
    assert_eq!(
        env.call("GET", "/v1.0/organization", None).await.status,
        502
    );
    let log = env
        .client
        .send("GET", &format!("{ctl}/requests"), &[], None)
        .await
        .unwrap()
        .json();
    assert_eq!(log["counts"]["GET /v1.0/organization"], 1);
    assert_eq!(log["counts"]["POST /{tenant}/oauth2/v2.0/token"], 1);
    assert_eq!(
        env.client
            .send("DELETE", &format!("{ctl}/requests"), &[], None)
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(env.emu.request_count("GET", "/v1.0/organization"), 0);
    let t = env
        .client
        .send(
            "POST",
            &format!("{ctl}/tenants"),
            &[],
            Some(&json!({"name": "northwind"})),
        )
        .await
        .unwrap();
    assert_eq!(t.status, 201);
    assert_eq!(t.json()["defaultDomainName"], "northwind.onmicrosoft.com");
    let state = env
        .client
        .send("GET", &format!("{ctl}/state"), &[], None)
        .await
        .unwrap()
        .json();
    assert_eq!(state["tenants"].as_array().unwrap().len(), 3);
    assert!(
        !state
            .to_string()
            .contains(&env.emu.operator_credentials().client_secret)
    );
}
