//! The caller's Graph application permissions, from its token's `roles` (FIDELITY.md, "Permissions").

mod common;

use common::{Env, error_code};
use entra_emulator::HttpResponse;
use serde_json::{Value, json};

async fn call_as(
    env: &Env,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> HttpResponse {
    let auth = format!("Bearer {token}");
    env.client
        .send(
            method,
            &format!("{}{path}", env.base),
            &[("authorization", &auth)],
            body.as_ref(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn owned_by_changes_only_owned_apps_and_opt_in_permissions_gate_consent_and_tenant_lookup() {
    let env = Env::new().await;
    let op_sp = env.emu.operator_credentials().service_principal_id;
    // An app the operator does not own (created with the full set, then its ownership removed).
    let foreign = env.create_app(json!({"displayName": "foreign"})).await;
    let fid = foreign["id"].as_str().unwrap().to_string();
    let r = env
        .call(
            "DELETE",
            &format!("/v1.0/applications/{fid}/owners/{op_sp}/$ref"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json());

    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/applications",
        Some(json!({"displayName": "mine"})),
    )
    .await;
    assert_eq!(r.status, 201, "OwnedBy may create: {}", r.json());
    let mine = r.json()["id"].as_str().unwrap().to_string();
    let r = call_as(
        &env,
        &token,
        "PATCH",
        &format!("/v1.0/applications/{mine}"),
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call_as(
        &env,
        &token,
        "PATCH",
        &format!("/v1.0/applications/{fid}"),
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r), "Authorization_RequestDenied");
    let r = call_as(
        &env,
        &token,
        "POST",
        &format!("/v1.0/applications/{fid}/addPassword"),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 403);

    let tenant_info = format!(
        "/v1.0/tenantRelationships/findTenantInformationByTenantId(tenantId='{}')",
        env.customer
    );
    assert_eq!(
        call_as(&env, &token, "GET", &tenant_info, None)
            .await
            .status,
        403
    );
    let grant = json!({"clientId": op_sp, "consentType": "AllPrincipals", "resourceId": op_sp, "scope": "x"});
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/oauth2PermissionGrants",
        Some(grant.clone()),
    )
    .await;
    assert_eq!(r.status, 403);

    env.emu.set_operator_graph_roles(&[
        "Application.ReadWrite.OwnedBy",
        "CrossTenantInformation.ReadBasic.All",
        "DelegatedPermissionGrant.ReadWrite.All",
    ]);
    let token = env.emu.operator_token().await.unwrap();
    assert_eq!(
        call_as(&env, &token, "GET", &tenant_info, None)
            .await
            .status,
        200
    );
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/oauth2PermissionGrants",
        Some(grant),
    )
    .await;
    assert_ne!(r.status, 403, "{}", r.json());
    let r = call_as(
        &env,
        &token,
        "PATCH",
        &format!("/v1.0/applications/{fid}"),
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(r.status, 403, "still not an owner");
}
