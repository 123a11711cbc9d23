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

#[tokio::test]
async fn revoking_needs_the_permission_granting_needs_and_owners_go_with_owned_by() {
    use entra_emulator::msgraph::{GRAPH_APP_ID, graph_role_id};
    let env = Env::new().await;
    // With the full default set: an app (the operator owns it as its creator), its service
    // principal, an app role assignment on Microsoft Graph, a delegated grant and a second owner.
    let app = env.create_app(json!({"displayName": "client"})).await;
    let (oid, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    let sp = env.create_sp(app_id).await;
    let sp_id = sp["id"].as_str().unwrap();
    let graph = env
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')"),
            None,
        )
        .await
        .json();
    let graph_id = graph["id"].as_str().unwrap();
    let assigned_to = format!("/v1.0/servicePrincipals/{graph_id}/appRoleAssignedTo");
    let r = env
        .call(
            "POST",
            &assigned_to,
            Some(json!({"principalId": sp_id, "resourceId": graph_id,
                        "appRoleId": graph_role_id("User.Read.All").unwrap()})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let assignment = r.json()["id"].as_str().unwrap().to_string();
    let r = env
        .call(
            "POST",
            "/v1.0/oauth2PermissionGrants",
            Some(json!({"clientId": sp_id, "consentType": "AllPrincipals",
                        "resourceId": graph_id, "scope": "User.Read profile"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let grant = format!(
        "/v1.0/oauth2PermissionGrants/{}",
        r.json()["id"].as_str().unwrap()
    );
    let person = "0a0e0000-0000-4000-8000-0000000000aa";
    let r = env
        .call(
            "POST",
            &format!("/v1.0/applications/{oid}/owners/$ref"),
            Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{person}")})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json());

    // Owning the application is not enough to revoke what it was granted.
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let token = env.emu.operator_token().await.unwrap();
    for (method, path, body) in [
        ("DELETE", format!("{assigned_to}/{assignment}"), None),
        (
            "DELETE",
            format!("/v1.0/servicePrincipals/{sp_id}/appRoleAssignments/{assignment}"),
            None,
        ),
        (
            "POST",
            format!("/v1.0/servicePrincipals/{sp_id}/appRoleAssignments"),
            Some(json!({"principalId": sp_id, "resourceId": graph_id,
                        "appRoleId": graph_role_id("Application.Read.All").unwrap()})),
        ),
        ("PATCH", grant.clone(), Some(json!({"scope": "User.Read"}))),
        ("DELETE", grant.clone(), None),
    ] {
        let r = call_as(&env, &token, method, &path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.json());
        assert_eq!(error_code(&r), "Authorization_RequestDenied");
    }
    // Removing an owner of an application it owns is Application.ReadWrite.OwnedBy's.
    let owner_ref = format!("/v1.0/applications/{oid}/owners/{person}/$ref");
    let r = call_as(&env, &token, "DELETE", &owner_ref, None).await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(&env, &token, "DELETE", &owner_ref, None).await;
    assert_eq!(r.status, 404, "no longer an owner: {}", r.json());

    env.emu.set_operator_graph_roles(&[
        "Application.ReadWrite.OwnedBy",
        "AppRoleAssignment.ReadWrite.All",
        "DelegatedPermissionGrant.ReadWrite.All",
    ]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "PATCH",
        &grant,
        Some(json!({"scope": "User.Read"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(&env, &token, "GET", &grant, None).await;
    assert_eq!(r.json()["scope"], "User.Read");
    let r = call_as(
        &env,
        &token,
        "DELETE",
        &format!("{assigned_to}/{assignment}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(&env, &token, "DELETE", &grant, None).await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(&env, &token, "GET", &grant, None).await;
    assert_eq!(r.status, 404);
}

/// Adding an owner needs more than `Application.ReadWrite.OwnedBy`, even on an owned app
/// ("will not be sufficient to add another owner"); removing one from an owned app does not.
#[tokio::test]
async fn adding_an_owner_needs_read_write_all_and_directory_read_all() {
    let env = Env::new().await;
    const PERSON: &str = "0a0e0000-0000-4000-8000-0000000000aa";
    let owner_ref =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{PERSON}")});
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy", "Directory.Read.All"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/applications",
        Some(json!({"displayName": "mine"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let mine = r.json()["id"].as_str().unwrap().to_string();
    let owners = format!("/v1.0/applications/{mine}/owners/$ref");
    let r = call_as(&env, &token, "POST", &owners, Some(owner_ref.clone())).await;
    assert_eq!(
        r.status,
        403,
        "OwnedBy cannot add another owner: {}",
        r.json()
    );
    assert_eq!(error_code(&r), "Authorization_RequestDenied");

    env.emu.set_operator_graph_roles(&[
        "Application.ReadWrite.OwnedBy",
        "Application.ReadWrite.All",
        "Directory.Read.All",
    ]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(&env, &token, "POST", &owners, Some(owner_ref)).await;
    assert_eq!(r.status, 204, "{}", r.json());

    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "DELETE",
        &format!("/v1.0/applications/{mine}/owners/{PERSON}/$ref"),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        204,
        "OwnedBy removes owners of its own apps: {}",
        r.json()
    );
}

/// "Get user" (https://learn.microsoft.com/graph/api/user-get): by object id or user principal name,
/// `$select` honoured, 404 for an unknown user, 403 without a permission that reads users.
#[tokio::test]
async fn users_are_read_by_id_or_principal_name_with_a_user_reading_permission() {
    let env = Env::new().await;
    // One user through the in-process handle, one through the control API.
    let alice = env
        .emu
        .add_user(entra_emulator::UserSpec::new(
            "alice@contoso.onmicrosoft.com",
        ))
        .unwrap();
    let r = env
        .client
        .send(
            "POST",
            &format!("{}/_emulator/users", env.base),
            &[],
            Some(
                &json!({"userPrincipalName": "bob@contoso.onmicrosoft.com", "displayName": "Bob"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    let bob = r.json()["id"].as_str().unwrap().to_string();
    let r = env
        .client
        .send(
            "POST",
            &format!("{}/_emulator/users", env.base),
            &[],
            Some(&json!({"userPrincipalName": "BOB@contoso.onmicrosoft.com"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "a second user with the same UPN");

    // Without a permission that reads users: 403, as Graph answers a missing permission.
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.All", "Application.Read.All"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "GET",
        "/v1.0/users/alice@contoso.onmicrosoft.com",
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.json());
    assert_eq!(error_code(&r), "Authorization_RequestDenied");

    for role in ["User.Read.All", "Directory.Read.All", "User.ReadWrite.All"] {
        env.emu.set_operator_graph_roles(&[role]);
        let token = env.emu.operator_token().await.unwrap();
        let r = call_as(
            &env,
            &token,
            "GET",
            "/v1.0/users/Alice@Contoso.onmicrosoft.com?$select=id",
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{role}: {}", r.json());
        assert_eq!(r.json()["id"], alice.as_str());
        assert!(r.json().get("userPrincipalName").is_none(), "$select=id");
    }
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(&env, &token, "GET", &format!("/v1.0/users/{bob}"), None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["userPrincipalName"], "bob@contoso.onmicrosoft.com");
    assert_eq!(v["displayName"], "Bob");
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#users/$entity")
    );
    // URL-encoded `@` is the same user.
    let r = call_as(
        &env,
        &token,
        "GET",
        "/v1.0/users/bob%40contoso.onmicrosoft.com",
        None,
    )
    .await;
    assert_eq!(r.json()["id"], bob.as_str());

    let r = call_as(
        &env,
        &token,
        "GET",
        "/v1.0/users/nobody@contoso.onmicrosoft.com",
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.json());
    assert_eq!(error_code(&r), "Request_ResourceNotFound");
    assert!(r.json()["error"]["innerError"]["request-id"].is_string());

    // A user that owns an application is listed with its name.
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.All", "Directory.Read.All"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/applications",
        Some(json!({"displayName": "owned"})),
    )
    .await;
    let app = r.json()["id"].as_str().unwrap().to_string();
    let r = call_as(
        &env,
        &token,
        "POST",
        &format!("/v1.0/applications/{app}/owners/$ref"),
        Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{alice}")})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(
        &env,
        &token,
        "GET",
        &format!("/v1.0/applications/{app}/owners"),
        None,
    )
    .await;
    let owners = r.json()["value"].as_array().unwrap().clone();
    assert!(
        owners.iter().any(|o| o["id"] == alice.as_str()
            && o["userPrincipalName"] == "alice@contoso.onmicrosoft.com"
            && o["@odata.type"] == "#microsoft.graph.user"),
        "{owners:?}"
    );
}

fn reference(id: &str) -> Value {
    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")})
}

fn owner_ids(r: &HttpResponse) -> Vec<String> {
    r.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// The stricter reading (FIDELITY.md): a service principal an `OwnedBy` caller creates, through
/// `POST /servicePrincipals` or the `appId` upsert, has no owners, and every later write to it needs
/// the caller among the service principal's own owners; owning its application is not enough.
#[tokio::test]
async fn owned_by_creates_service_principals_without_owners_and_only_their_owners_change_them() {
    let env = Env::new().await;
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let token = env.emu.operator_token().await.unwrap();
    let mut app_ids = Vec::new();
    for name in ["upserted", "posted"] {
        let r = call_as(
            &env,
            &token,
            "POST",
            "/v1.0/applications",
            Some(json!({"displayName": name})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.json());
        app_ids.push(r.json()["appId"].as_str().unwrap().to_string());
    }
    // Creating is allowed for an application the caller owns, both ways.
    let by_app_id = format!("/v1.0/servicePrincipals(appId='{}')", app_ids[0]);
    let auth = format!("Bearer {token}");
    let r = env
        .client
        .send(
            "PATCH",
            &format!("{}{by_app_id}", env.base),
            &[("authorization", &auth), ("prefer", "create-if-missing")],
            Some(&json!({"appRoleAssignmentRequired": false})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "upsert creates: {}", r.json());
    let upserted = r.json()["id"].as_str().unwrap().to_string();
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/servicePrincipals",
        Some(json!({"appId": app_ids[1]})),
    )
    .await;
    assert_eq!(r.status, 201, "POST creates: {}", r.json());
    let posted = r.json()["id"].as_str().unwrap().to_string();

    for sp in [&upserted, &posted] {
        let r = call_as(
            &env,
            &token,
            "GET",
            &format!("/v1.0/servicePrincipals/{sp}/owners"),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.json());
        assert_eq!(
            owner_ids(&r),
            Vec::<String>::new(),
            "the creator is no owner"
        );
        let patch = format!("/v1.0/servicePrincipals/{sp}");
        for (method, path, body) in [
            (
                "PATCH",
                patch.clone(),
                Some(json!({"appRoleAssignmentRequired": true})),
            ),
            ("DELETE", patch.clone(), None),
        ] {
            let r = call_as(&env, &token, method, &path, body).await;
            assert_eq!(r.status, 403, "{method} {path}: {}", r.json());
            assert_eq!(error_code(&r), "Authorization_RequestDenied");
            assert_eq!(
                r.json()["error"]["message"],
                "Insufficient privileges to complete the operation."
            );
        }
    }
    // The upsert that finds the service principal is a change, not a creation.
    let r = env
        .client
        .send(
            "PATCH",
            &format!("{}{by_app_id}", env.base),
            &[("authorization", &auth), ("prefer", "create-if-missing")],
            Some(&json!({"appRoleAssignmentRequired": true})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "upsert of an existing one: {}", r.json());
    assert_eq!(error_code(&r), "Authorization_RequestDenied");

    // As an owner of the service principal (added with the full set), OwnedBy changes it.
    let op_sp = env.emu.operator_credentials().service_principal_id;
    let r = env
        .call(
            "POST",
            &format!("/v1.0/servicePrincipals/{upserted}/owners/$ref"),
            Some(reference(&op_sp)),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(
        &env,
        &token,
        "PATCH",
        &format!("/v1.0/servicePrincipals/{upserted}"),
        Some(json!({"appRoleAssignmentRequired": true})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = env
        .client
        .send(
            "PATCH",
            &format!("{}{by_app_id}", env.base),
            &[("authorization", &auth), ("prefer", "create-if-missing")],
            Some(&json!({"accountEnabled": false})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(
        &env,
        &token,
        "GET",
        &format!("/v1.0/servicePrincipals/{upserted}"),
        None,
    )
    .await;
    assert_eq!(
        (
            &r.json()["appRoleAssignmentRequired"],
            &r.json()["accountEnabled"]
        ),
        (&json!(true), &json!(false))
    );

    // Application.ReadWrite.All changes any service principal, owner or not.
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.All"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "PATCH",
        &format!("/v1.0/servicePrincipals/{posted}"),
        Some(json!({"appRoleAssignmentRequired": true})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(
        &env,
        &token,
        "DELETE",
        &format!("/v1.0/servicePrincipals/{posted}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
}

/// "Add owner" of a service principal (serviceprincipal-post-owners): `OwnedBy` with
/// `Directory.Read.All` adds owners to a service principal whose application (or which) the caller
/// owns; `OwnedBy` alone cannot; a duplicate is 400; removing is `OwnedBy` as an owner.
#[tokio::test]
async fn adding_a_service_principal_owner_needs_directory_read_all_and_ownership() {
    const PERSON: &str = "0a0e0000-0000-4000-8000-0000000000aa";
    let env = Env::new().await;
    let op_sp = env.emu.operator_credentials().service_principal_id;
    // A foreign application (the operator removed from its owners) with a service principal.
    let foreign = env.create_app(json!({"displayName": "foreign"})).await;
    let foreign_sp = env.create_sp(foreign["appId"].as_str().unwrap()).await;
    let foreign_sp = foreign_sp["id"].as_str().unwrap().to_string();
    let r = env
        .call(
            "DELETE",
            &format!(
                "/v1.0/applications/{}/owners/{op_sp}/$ref",
                foreign["id"].as_str().unwrap()
            ),
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
    let app_id = r.json()["appId"].as_str().unwrap().to_string();
    let r = call_as(
        &env,
        &token,
        "POST",
        "/v1.0/servicePrincipals",
        Some(json!({"appId": app_id})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let sp = r.json()["id"].as_str().unwrap().to_string();
    let owners = format!("/v1.0/servicePrincipals/{sp}/owners/$ref");
    let r = call_as(&env, &token, "POST", &owners, Some(reference(&op_sp))).await;
    assert_eq!(r.status, 403, "without Directory.Read.All: {}", r.json());
    assert_eq!(error_code(&r), "Authorization_RequestDenied");

    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy", "Directory.Read.All"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(
        &env,
        &token,
        "POST",
        &format!("/v1.0/servicePrincipals/{foreign_sp}/owners/$ref"),
        Some(reference(&op_sp)),
    )
    .await;
    assert_eq!(
        r.status,
        403,
        "neither the SP nor its app owned: {}",
        r.json()
    );
    // Its application's owner makes itself an owner of the service principal.
    let r = call_as(&env, &token, "POST", &owners, Some(reference(&op_sp))).await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(&env, &token, "POST", &owners, Some(reference(&op_sp))).await;
    assert_eq!(r.status, 400, "already an owner: {}", r.json());
    assert_eq!(error_code(&r), "Request_BadRequest");
    assert_eq!(
        r.json()["error"]["message"],
        "One or more added object references already exist for the following modified properties: 'owners'."
    );
    let r = call_as(
        &env,
        &token,
        "POST",
        &owners,
        Some(json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/nope"})),
    )
    .await;
    assert_eq!(r.status, 400, "not an object id: {}", r.json());
    // The appId form; then both are listed.
    let r = call_as(
        &env,
        &token,
        "POST",
        &format!("/v1.0/servicePrincipals(appId='{app_id}')/owners/$ref"),
        Some(reference(PERSON)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(
        &env,
        &token,
        "GET",
        &format!("/v1.0/servicePrincipals/{sp}/owners"),
        None,
    )
    .await;
    assert_eq!(owner_ids(&r), [op_sp.to_lowercase(), PERSON.to_string()]);
    assert_eq!(
        r.json()["value"][0]["@odata.type"],
        "#microsoft.graph.servicePrincipal"
    );

    // Removing an owner is OwnedBy's, as an owner of the service principal.
    env.emu
        .set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let token = env.emu.operator_token().await.unwrap();
    let person_ref = format!("/v1.0/servicePrincipals/{sp}/owners/{PERSON}/$ref");
    let r = call_as(&env, &token, "DELETE", &person_ref, None).await;
    assert_eq!(r.status, 204, "{}", r.json());
    let r = call_as(&env, &token, "DELETE", &person_ref, None).await;
    assert_eq!(r.status, 404, "no longer an owner: {}", r.json());
    let r = call_as(
        &env,
        &token,
        "DELETE",
        &format!("/v1.0/servicePrincipals/{foreign_sp}/owners/{op_sp}/$ref"),
        None,
    )
    .await;
    assert_eq!(r.status, 403, "not an owner of that one: {}", r.json());
}

#[tokio::test]
async fn service_principal_delta_is_read_with_owned_by_and_the_higher_permissions() {
    let env = Env::new().await;
    // "servicePrincipal: delta", Permissions: OwnedBy least privileged, then Application.Read.All,
    // Application.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All (the emulator's Graph
    // service principal does not publish the last, so no token carries it).
    for role in [
        "Application.ReadWrite.OwnedBy",
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
    ] {
        env.emu.set_operator_graph_roles(&[role]);
        let token = env.emu.operator_token().await.unwrap();
        let r = call_as(&env, &token, "GET", "/v1.0/servicePrincipals/delta", None).await;
        assert_eq!(r.status, 200, "{role}: {}", r.json());
        assert!(r.json()["@odata.deltaLink"].is_string(), "{role}");
        assert!(
            !r.json()["value"].as_array().unwrap().is_empty(),
            "{role}: every service principal (our choice for OwnedBy, as for applications)"
        );
    }
    env.emu.set_operator_graph_roles(&["User.Read.All"]);
    let token = env.emu.operator_token().await.unwrap();
    let r = call_as(&env, &token, "GET", "/v1.0/servicePrincipals/delta", None).await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r), "Authorization_RequestDenied");
}
