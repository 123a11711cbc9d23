//! Service principals, app role assignments, delegated grants, tenant information, `$batch`.
mod common;

use common::*;
use entra_emulator::msgraph::{GRAPH_APP_ID, graph_role_id};
use serde_json::json;

#[tokio::test]
async fn create_duplicate_upsert_and_tags_union() {
    let env = Env::new().await;
    let app = env
        .create_app(
            json!({"displayName": "sp", "tags": ["WindowsAzureActiveDirectoryIntegratedApp"]}),
        )
        .await;
    let app_id = app["appId"].as_str().unwrap();
    let prefer = [("Prefer", "create-if-missing")];
    let key = format!("/v1.0/servicePrincipals(appId='{app_id}')");
    assert_eq!(
        env.call("PATCH", &key, Some(json!({"tags": ["HideApp"]})))
            .await
            .status,
        404
    );
    let created = env
        .call_with("PATCH", &key, &prefer, Some(json!({"tags": ["HideApp"]})))
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let dup = env
        .call(
            "POST",
            "/v1.0/servicePrincipals",
            Some(json!({"appId": app_id})),
        )
        .await;
    assert_eq!(
        (dup.status, error_code(&dup).as_str()),
        (409, "Request_MultipleObjectsWithSameKeyValue")
    );
    let r = env
        .call_with(
            "PATCH",
            &key,
            &prefer,
            Some(json!({"appRoleAssignmentRequired": true})),
        )
        .await;
    assert_eq!(r.status, 204);
    let sp = env.call("GET", &key, None).await.json();
    assert_eq!(sp["appRoleAssignmentRequired"], true);
    assert_eq!(sp["accountEnabled"], true);
    let tags = sp["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!("HideApp"))
            && tags.contains(&json!("WindowsAzureActiveDirectoryIntegratedApp"))
    );
    assert_eq!(sp["appDisplayName"], "sp");
    let by_id = env
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals/{}", sp["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(by_id.json()["appId"], app_id);
    let list = env
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId%20eq%20'{app_id}'"),
            None,
        )
        .await
        .json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let no_app = env
        .call(
            "POST",
            "/v1.0/servicePrincipals",
            Some(json!({"appId": "12345678-1234-4234-8234-123456789012"})),
        )
        .await;
    assert_eq!(no_app.status, 400);
    assert_eq!(
        no_app.json()["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );
    assert!(
        no_app.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not reference a valid application object")
    );
}

#[tokio::test]
async fn graph_sp_publishes_permissions_by_name() {
    let env = Env::new().await;
    let graph = env
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')"),
            None,
        )
        .await
        .json();
    let scope = |v: &str| {
        graph["oauth2PermissionScopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["value"] == v)
            .cloned()
    };
    let role = |v: &str| {
        graph["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["value"] == v)
            .cloned()
    };
    assert_eq!(
        scope("User.Read").unwrap()["id"],
        "e1fe6dd8-ba31-4d61-89e7-88639da4683d"
    );
    assert_eq!(
        scope("Calendars.ReadWrite").unwrap()["id"],
        "1ec239c2-d7c9-4623-a91a-a9775856bb36"
    );
    assert_eq!(
        scope("Mail.Send").unwrap()["id"],
        "e383f46e-2787-4529-855e-0e479a3ffac0"
    );
    assert_eq!(
        role("User.Read.All").unwrap()["id"],
        "df021288-bdef-4463-88db-98f22de89214"
    );
    assert_eq!(
        role("OnlineMeetings.ReadWrite.All").unwrap()["id"],
        "b8bb2037-6e08-44ac-a4ea-4674e010e2a4"
    );
    assert_eq!(
        role("Application.ReadWrite.OwnedBy").unwrap()["id"],
        "18a4783c-866b-4cc7-a460-3d5e5662c884"
    );
    assert!(scope("User.Read.All").is_some() && role("Mail.Send").is_some());
}

#[tokio::test]
async fn app_role_assignments_show_up_in_tokens() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "daemon"})).await;
    let (oid, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    let sp = env.create_sp(app_id).await;
    let sp_id = sp["id"].as_str().unwrap();
    let secret = env.add_password(oid, json!({})).await.json()["secretText"]
        .as_str()
        .unwrap()
        .to_string();
    let graph = env
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')"),
            None,
        )
        .await
        .json();
    let graph_id = graph["id"].as_str().unwrap();
    let role = graph_role_id("User.Read.All").unwrap();
    let body = json!({"principalId": sp_id, "resourceId": graph_id, "appRoleId": role});
    let path = format!("/v1.0/servicePrincipals/{graph_id}/appRoleAssignedTo");
    let r = env.call("POST", &path, Some(body.clone())).await;
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.json()["principalId"], sp_id);
    let dup = env.call("POST", &path, Some(body)).await;
    assert_eq!(dup.status, 400);
    assert!(
        dup.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let unknown = env.call("POST", &path, Some(json!({"principalId": sp_id, "resourceId": graph_id, "appRoleId": "e1fe6dd8-ba31-4d61-89e7-88639da4683d"}))).await;
    assert_eq!(
        unknown.status, 400,
        "a delegated scope id is not an app role"
    );
    let mine = env
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals/{sp_id}/appRoleAssignments"),
            None,
        )
        .await
        .json();
    assert_eq!(mine["value"].as_array().unwrap().len(), 1);
    let tok = env
        .token(&env.home(), app_id, &secret, GRAPH_SCOPE)
        .await
        .json();
    assert_eq!(
        claims(tok["access_token"].as_str().unwrap())["roles"],
        json!(["User.Read.All"])
    );
    let aid = mine["value"][0]["id"].as_str().unwrap();
    assert_eq!(
        env.call("DELETE", &format!("{path}/{aid}"), None)
            .await
            .status,
        204
    );
    let tok = env
        .token(&env.home(), app_id, &secret, GRAPH_SCOPE)
        .await
        .json();
    assert!(
        claims(tok["access_token"].as_str().unwrap())
            .get("roles")
            .is_none()
    );
}

#[tokio::test]
async fn delegated_grants_create_filter_patch_delete() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "spa"})).await;
    let sp = env.create_sp(app["appId"].as_str().unwrap()).await;
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
    let body = json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_id, "scope": "User.Read Calendars.ReadWrite"});
    let r = env
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        env.call("POST", "/v1.0/oauth2PermissionGrants", Some(body))
            .await
            .status,
        409
    );
    let filter = format!(
        "/v1.0/oauth2PermissionGrants?$filter=clientId%20eq%20'{sp_id}'%20and%20consentType%20eq%20'AllPrincipals'"
    );
    let list = env.call("GET", &filter, None).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["scope"], "User.Read Calendars.ReadWrite");
    let other = env
        .call(
            "GET",
            "/v1.0/oauth2PermissionGrants?$filter=clientId%20eq%20'nobody'",
            None,
        )
        .await
        .json();
    assert_eq!(other["value"], json!([]));
    assert_eq!(
        env.call(
            "PATCH",
            &format!("/v1.0/oauth2PermissionGrants/{id}"),
            Some(json!({"scope": "User.Read"}))
        )
        .await
        .status,
        204
    );
    assert_eq!(
        env.call("GET", &format!("/v1.0/oauth2PermissionGrants/{id}"), None)
            .await
            .json()["scope"],
        "User.Read"
    );
    assert_eq!(
        env.call(
            "DELETE",
            &format!("/v1.0/oauth2PermissionGrants/{id}"),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        env.call("GET", &format!("/v1.0/oauth2PermissionGrants/{id}"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn tenant_information_by_id() {
    let env = Env::new().await;
    let r = env
        .call(
            "GET",
            &format!(
                "/v1.0/tenantRelationships/findTenantInformationByTenantId(tenantId='{}')",
                env.customer
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tenantId"], env.customer);
    assert_eq!(r.json()["defaultDomainName"], "fabrikam.onmicrosoft.com");
    let r = env.call("GET", "/v1.0/tenantRelationships/findTenantInformationByTenantId(tenantId='99999999-9999-4999-8999-999999999999')", None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn batch_runs_requests_with_dependencies() {
    let env = Env::new().await;
    let app = env.create_app(json!({"displayName": "b"})).await;
    let oid = app["id"].as_str().unwrap();
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/applications/{oid}")},
        {"id": "2", "method": "GET", "url": "/applications/00000000-0000-0000-0000-000000000009"},
        {"id": "3", "method": "PATCH", "url": format!("/applications/{oid}"), "dependsOn": ["2"],
         "headers": {"Content-Type": "application/json"}, "body": {"displayName": "never"}},
        {"id": "4", "method": "POST", "url": format!("/applications/{oid}/addPassword"), "dependsOn": ["1"],
         "headers": {"Content-Type": "application/json"}, "body": {"passwordCredential": {"displayName": "from batch"}}},
    ]});
    let r = env.call("POST", "/v1.0/$batch", Some(body)).await;
    assert_eq!(r.status, 200);
    let responses = r.json()["responses"].as_array().unwrap().clone();
    let status = |id: &str| {
        responses.iter().find(|x| x["id"] == id).unwrap()["status"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        (status("1"), status("2"), status("3"), status("4")),
        (200, 404, 424, 200)
    );
    let pw = responses.iter().find(|x| x["id"] == "4").unwrap();
    assert!(pw["body"]["secretText"].is_string());
    assert_eq!(
        env.emu
            .request_count("POST", "/v1.0/applications/{id}/addPassword"),
        1
    );
    assert!(
        env.emu
            .requests()
            .iter()
            .any(|r| r.in_batch && r.template == "/v1.0/applications/{id}")
    );
    let too_many: Vec<_> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/applications"}))
        .collect();
    let r = env
        .call("POST", "/v1.0/$batch", Some(json!({"requests": too_many})))
        .await;
    assert_eq!(r.status, 400);
}
