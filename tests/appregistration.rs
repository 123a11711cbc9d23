//! The AppRegistration controller end to end: kube-rs's real Controller against the kube emulator,
//! Graph through the Entra emulator, both in-process.

mod support;

use std::time::Duration;

use entra_operator::api::AppRegistration;
use entra_operator::controllers::later::Later;
use entra_operator::graph::TokenProbe;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, emulator_app, secret_data};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(30);

fn app(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

async fn get(h: &Harness, name: &str) -> AppRegistration {
    h.api::<AppRegistration>(NS).get(name).await.unwrap()
}

fn condition(obj: &AppRegistration, type_: &str) -> Option<(String, String, String)> {
    obj.status.as_ref()?.conditions.get(type_).map(|c| {
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    })
}

async fn wait_ready(h: &Harness, name: &str) -> AppRegistration {
    let what = format!("AppRegistration {name} Ready");
    h.wait_for(&what, WAIT, || async {
        let obj = get(h, name).await;
        let ready = condition(&obj, "Ready").is_some_and(|(s, _, _)| s == "True");
        let current =
            obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
        (ready && current).then_some(obj)
    })
    .await
}

/// Graph writes (non-GET requests under /v1.0) the emulator saw.
fn graph_writes(h: &Harness) -> Vec<String> {
    h.entra
        .requests()
        .into_iter()
        .filter(|r| r.template.starts_with("/v1.0") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.template))
        .collect()
}

/// Let the controller reconcile `name` again without a spec change.
async fn poke(h: &Harness, name: &str, value: &str) {
    h.api::<AppRegistration>(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": value}}})),
        )
        .await
        .unwrap();
}

async fn settle(h: &Harness, name: &str) {
    // The reconcile after a poke is done when a status write or nothing happens; give it time.
    let _ = wait_ready(h, name).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn reports_api() -> Value {
    json!({
        "displayName": "Reports API",
        "description": "first",
        "identifierUris": ["api://{appId}"],
        "api": {"requestedAccessTokenVersion": 2, "scopes": [{"value": "Reports.Read"}]},
        "appRoles": [
            {"value": "Reports.Export", "allowedMemberTypes": ["Application"]},
            {"value": "Reports.Admin", "allowedMemberTypes": ["User"]}
        ],
        "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"]}],
        "grantAdminConsent": true,
        "credentials": {"passwords": [{"secretName": "reports-credentials"}]}
    })
}

#[tokio::test]
async fn create_becomes_ready_with_ids_and_a_working_secret_and_resync_writes_nothing() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    let obj = wait_ready(&h, "reports").await;
    let status = obj.status.clone().unwrap();
    let app_id = status.app_id.clone().expect("appId");
    assert!(status.object_id.is_some());
    assert!(status.service_principal_id.is_some());
    assert_eq!(
        status.unique_name.as_deref(),
        Some("entra-operator.default.reports")
    );
    assert_eq!(status.identifier_uris, vec![format!("api://{app_id}")]);
    assert!(status.role_ids.contains_key("Reports.Export"));
    assert!(status.scope_ids.contains_key("Reports.Read"));
    assert_eq!(
        status.consent.as_ref().unwrap().state,
        entra_operator::api::appregistration::ConsentState::Granted
    );
    let cred = &status.credentials[0];
    assert!(cred.key_id.is_some() && cred.expires_at.is_some() && cred.renew_at.is_some());
    assert!(cred.pending.is_none());

    // The Secret works as it is: its values get a token from Entra.
    let data = secret_data(&h, NS, "reports-credentials")
        .await
        .expect("Secret written");
    assert_eq!(data["AZURE_CLIENT_ID"], app_id);
    assert_eq!(data["keyId"], *cred.key_id.as_ref().unwrap());
    let probe = support::probe_with_secret(&h, &data, "https://graph.microsoft.com/.default")
        .await
        .unwrap();
    assert!(matches!(probe, TokenProbe::Issued(_)), "{probe:?}");

    // A resync of the settled resource makes no Graph write at all.
    h.entra.clear_requests();
    poke(&h, "reports", "1").await;
    settle(&h, "reports").await;
    assert_eq!(graph_writes(&h), Vec::<String>::new());
    let reads: Vec<String> = h
        .entra
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.template.starts_with("/v1.0"))
        .map(|r| r.template)
        .collect();
    assert!(!reads.is_empty(), "the resync did observe Graph");
    // Only what the plan can act on is read: this app declares delegated permissions only and no
    // federated credential, so neither its app role assignments nor its federated credentials.
    assert!(
        reads.iter().any(|t| t.contains("oauth2PermissionGrants")),
        "{reads:?}"
    );
    assert!(
        !reads
            .iter()
            .any(|t| t.contains("appRoleAssignments") || t.contains("federatedIdentityCredentials")),
        "{reads:?}"
    );
}

/// A resync at or past `Later`'s threshold is not kube-runtime's requeue: the reconcile hands it to
/// the operator's own queue, whose stream brings the resource back when it is due.
#[tokio::test]
async fn a_far_resync_comes_back_from_the_operators_own_queue_and_writes_nothing() {
    let mut h = Harness::start().await;
    {
        let ctx = std::sync::Arc::get_mut(&mut h.ctx).expect("no controller holds the context");
        ctx.settings.resync = Duration::from_secs(3);
        ctx.later = std::sync::Arc::new(Later::new(Duration::from_secs(2)));
    }
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    settle(&h, "reports").await;
    assert_eq!(
        h.ctx.later.len(),
        1,
        "the settled resource waits in the queue"
    );
    h.entra.clear_requests();
    // No watch event, no poke: only the queue can bring it back.
    h.wait_for("a resync that observes Graph", WAIT, || async {
        h.entra
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.template.starts_with("/v1.0/applications"))
            .then_some(())
    })
    .await;
    settle(&h, "reports").await;
    assert_eq!(graph_writes(&h), Vec::<String>::new());
    assert_eq!(h.ctx.later.len(), 1, "and it is back in the queue");
}

#[tokio::test]
async fn an_edit_sends_only_the_changed_property() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    wait_ready(&h, "reports").await;
    h.entra.clear_requests();
    h.api::<AppRegistration>(NS)
        .patch(
            "reports",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "second"}})),
        )
        .await
        .unwrap();
    let obj = wait_ready(&h, "reports").await;
    settle(&h, "reports").await;
    assert_eq!(
        graph_writes(&h),
        vec!["PATCH /v1.0/applications/{id}".to_string()]
    );
    let app = h
        .ctx
        .graph
        .get_application(obj.status.unwrap().object_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(app.description.as_deref(), Some("second"));
}

#[tokio::test]
async fn removing_a_role_disables_it_then_deletes_it() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("reports", reports_api())).await;
    let obj = wait_ready(&h, "reports").await;
    let object_id = obj.status.unwrap().object_id.unwrap();
    h.entra.clear_requests();
    let mut spec = reports_api();
    spec["appRoles"] = json!([{"value": "Reports.Export", "allowedMemberTypes": ["Application"]}]);
    h.api::<AppRegistration>(NS)
        .patch(
            "reports",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .unwrap();
    let obj = wait_ready(&h, "reports").await;
    settle(&h, "reports").await;
    let writes = graph_writes(&h);
    assert_eq!(
        writes,
        vec![
            "PATCH /v1.0/applications/{id}".to_string(),
            "PATCH /v1.0/applications/{id}".to_string()
        ],
        "disable, then remove"
    );
    let app = h.ctx.graph.get_application(&object_id).await.unwrap();
    let values: Vec<String> = app
        .app_roles
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(values, vec!["Reports.Export".to_string()]);
    assert!(!obj.status.unwrap().role_ids.contains_key("Reports.Admin"));
}

fn system_api() -> Value {
    json!({
        "displayName": "System API",
        "identifierUris": ["api://{appId}"],
        "appRoles": [{"value": "System", "allowedMemberTypes": ["Application"]}]
    })
}

fn bank_app() -> Value {
    json!({
        "displayName": "Bank client",
        "requiredResourceAccess": [{"appRef": {"name": "system-api"}, "application": ["System"]}],
        "grantAdminConsent": true,
        "credentials": {"passwords": [{"secretName": "bank-credentials"}]}
    })
}

#[tokio::test]
async fn references_converge_in_either_order_and_tokens_carry_the_granted_role() {
    let mut h = Harness::start().await;
    h.start_controllers();
    // The client first: it waits for the API, visibly.
    h.apply(app("bank", bank_app())).await;
    h.wait_for("WaitingForReference", WAIT, || async {
        let obj = get(&h, "bank").await;
        condition(&obj, "Ready").filter(|(s, r, m)| {
            s == "False" && r == "WaitingForReference" && m.contains("system-api")
        })
    })
    .await;
    h.apply(app("system-api", system_api())).await;
    let api = wait_ready(&h, "system-api").await;
    let bank = wait_ready(&h, "bank").await;
    let status = bank.status.unwrap();
    assert_eq!(
        status.consent.as_ref().unwrap().state,
        entra_operator::api::appregistration::ConsentState::Granted
    );
    let data = secret_data(&h, NS, "bank-credentials").await.unwrap();
    let api_app_id = api.status.unwrap().app_id.unwrap();
    let probe = support::probe_with_secret(&h, &data, &format!("api://{api_app_id}/.default"))
        .await
        .unwrap();
    // The Azure SDK, given only the Secret's keys, gets a token carrying the granted role.
    let claims =
        support::azure_identity_token_claims(&h, &data, &format!("api://{api_app_id}/.default"))
            .await
            .expect("azure_identity token from the Secret");
    assert_eq!(claims.roles, vec!["System".to_string()]);
    assert_eq!(
        claims.tid.as_deref(),
        Some(data["AZURE_TENANT_ID"].as_str())
    );
    match probe {
        TokenProbe::Issued(claims) => {
            assert_eq!(claims.roles, vec!["System".to_string()]);
            // v1 tokens (the API did not ask for v2) name the client in `appid`, v2 in `azp`.
            let client = claims.azp.as_deref().or(claims.appid.as_deref());
            assert_eq!(client, Some(data["AZURE_CLIENT_ID"].as_str()));
        }
        other => panic!("no token: {other:?}"),
    }
}

#[tokio::test]
async fn deleting_removes_the_application_and_orphan_keeps_it() {
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("gone", json!({"displayName": "Gone"}))).await;
    h.apply(app(
        "kept",
        json!({"displayName": "Kept", "deletionPolicy": "Orphan"}),
    ))
    .await;
    let gone = wait_ready(&h, "gone").await.status.unwrap().app_id.unwrap();
    let kept = wait_ready(&h, "kept").await.status.unwrap().app_id.unwrap();
    let api = h.api::<AppRegistration>(NS);
    api.delete("gone", &Default::default()).await.unwrap();
    api.delete("kept", &Default::default()).await.unwrap();
    h.wait_for("both deleted", WAIT, || async {
        let a = api.get_opt("gone").await.unwrap();
        let b = api.get_opt("kept").await.unwrap();
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    assert!(emulator_app(&h, &gone).is_none(), "deleted");
    assert!(emulator_app(&h, &kept).is_some(), "orphaned");
}

async fn edit(h: &Harness, name: &str, spec: Value) -> AppRegistration {
    h.api::<AppRegistration>(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
    wait_ready(h, name).await
}

async fn owner_ids(h: &Harness, object_id: &str) -> std::collections::BTreeSet<String> {
    h.ctx
        .graph
        .list_application_owners(object_id)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id.to_lowercase())
        .collect()
}

#[tokio::test]
async fn an_owner_removed_from_the_spec_leaves_entra_and_one_the_operator_did_not_add_stays() {
    const A: &str = "0a0e0000-0000-4000-8000-00000000000a";
    const B: &str = "0a0e0000-0000-4000-8000-00000000000b";
    const PERSON: &str = "0a0e0000-0000-4000-8000-0000000000aa";
    let mut h = Harness::start().await;
    // Adding owners needs Application.ReadWrite.All and Directory.Read.All on top of the least
    // privileges (README, "Required Graph permissions").
    h.grant_least_privilege_and(support::OWNER_PERMISSIONS);
    h.start_controllers();
    let operator = h
        .entra
        .operator_credentials()
        .service_principal_id
        .to_lowercase();
    h.apply(app(
        "owned",
        json!({"displayName": "Owned", "owners": [A, B]}),
    ))
    .await;
    let status = wait_ready(&h, "owned").await.status.unwrap();
    let object_id = status.object_id.unwrap();
    assert_eq!(status.managed_owners, [A, B]);
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [A, B, operator.as_str()].map(String::from).into()
    );
    // Someone adds an owner by hand: not the operator's.
    h.ctx
        .graph
        .add_application_owner(&object_id, PERSON)
        .await
        .unwrap();

    let status = edit(&h, "owned", json!({"owners": [A]}))
        .await
        .status
        .unwrap();
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [A, PERSON, operator.as_str()].map(String::from).into(),
        "B (added by the operator) removed; the hand-added owner and the operator stay"
    );
    assert_eq!(status.managed_owners, [A]);

    // Exact: every owner not declared goes, except the operator's own identity.
    edit(&h, "owned", json!({"ownersManagement": "Exact"})).await;
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [A, operator.as_str()].map(String::from).into()
    );
}

#[tokio::test]
async fn owners_named_by_user_principal_name_are_added_and_removed_and_an_unknown_name_removes_nothing()
 {
    const A: &str = "0a0e0000-0000-4000-8000-00000000000a";
    let mut h = Harness::start().await;
    // Owners by name need User.Read.All on top of what adding owners needs.
    h.grant_least_privilege_and(&[support::OWNER_PERMISSIONS, &["User.Read.All"]].concat());
    let alice = h
        .entra
        .add_user(entra_emulator::UserSpec::new(
            "alice@contoso.onmicrosoft.com",
        ))
        .unwrap();
    h.start_controllers();
    let operator = h
        .entra
        .operator_credentials()
        .service_principal_id
        .to_lowercase();
    h.apply(app(
        "named",
        json!({"displayName": "Named", "owners": [A],
               "ownerUserPrincipalNames": ["alice@contoso.onmicrosoft.com"]}),
    ))
    .await;
    let status = wait_ready(&h, "named").await.status.unwrap();
    let object_id = status.object_id.unwrap();
    let mut expected = vec![A.to_string(), alice.clone()];
    expected.sort();
    assert_eq!(status.managed_owners, expected);
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [A, alice.as_str(), operator.as_str()]
            .map(String::from)
            .into()
    );
    assert!(
        h.entra.request_count("GET", "/v1.0/users/{id}").ge(&1),
        "resolved through GET /users/{{userPrincipalName}}"
    );

    // Named no longer: removed, like an object ID that leaves `owners`.
    let status = edit(&h, "named", json!({"ownerUserPrincipalNames": null}))
        .await
        .status
        .unwrap();
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [A, operator.as_str()].map(String::from).into()
    );
    assert_eq!(status.managed_owners, [A]);

    // A name no user has: OwnerNotFound naming it, and the owner the operator added (A), no longer
    // declared, is not removed while a declared owner cannot be resolved.
    h.api::<AppRegistration>(NS)
        .patch(
            "named",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"owners": null,
                "ownerUserPrincipalNames": ["nobody@contoso.onmicrosoft.com"]}})),
        )
        .await
        .unwrap();
    let obj = h
        .wait_for("OwnerNotFound", WAIT, || async {
            let obj = get(&h, "named").await;
            let current =
                obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
            let not_found = condition(&obj, "Ready").is_some_and(|(s, r, m)| {
                s == "False" && r == "OwnerNotFound" && m.contains("nobody@contoso.onmicrosoft.com")
            });
            (current && not_found).then_some(obj)
        })
        .await;
    let (stalled, reason, _) = condition(&obj, "Stalled").unwrap();
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "OwnerNotFound")
    );
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [A, operator.as_str()].map(String::from).into(),
        "nothing removed while a declared owner is unknown"
    );
    assert_eq!(obj.status.unwrap().managed_owners, [A]);

    // The user appears (created in Entra): resolved, added, and only then is A removed.
    let nobody = h
        .entra
        .add_user(entra_emulator::UserSpec::new(
            "nobody@contoso.onmicrosoft.com",
        ))
        .unwrap();
    poke(&h, "named", "user-created").await;
    let status = wait_ready(&h, "named").await.status.unwrap();
    assert_eq!(
        owner_ids(&h, &object_id).await,
        [nobody.as_str(), operator.as_str()]
            .map(String::from)
            .into()
    );
    assert_eq!(status.managed_owners, [nobody.as_str()]);
}

#[tokio::test]
async fn owners_by_name_without_user_read_all_report_graph_forbidden_naming_it() {
    let mut h = Harness::start().await;
    h.grant_least_privilege_and(&["Application.ReadWrite.All"]);
    h.entra
        .add_user(entra_emulator::UserSpec::new(
            "alice@contoso.onmicrosoft.com",
        ))
        .unwrap();
    h.start_controllers();
    h.apply(app(
        "named",
        json!({"displayName": "Named", "ownerUserPrincipalNames": ["alice@contoso.onmicrosoft.com"]}),
    ))
    .await;
    h.wait_for("GraphForbidden naming User.Read.All", WAIT, || async {
        let obj = get(&h, "named").await;
        condition(&obj, "Ready").filter(|(s, r, m)| {
            s == "False" && r == "GraphForbidden" && m.contains("User.Read.All")
        })
    })
    .await;
}

fn orders_api() -> Value {
    json!({
        "displayName": "Orders API",
        "identifierUris": ["api://{appId}"],
        "api": {"scopes": [{"value": "Orders.Access"}]},
        "appRoles": [
            {"value": "Orders.Read", "allowedMemberTypes": ["Application"]},
            {"value": "Orders.Write", "allowedMemberTypes": ["Application"]},
            {"value": "Orders.Admin", "allowedMemberTypes": ["Application"]}
        ]
    })
}

#[tokio::test]
async fn a_permission_removed_from_the_spec_is_revoked_and_grants_the_operator_did_not_make_stay() {
    use entra_operator::api::appregistration::GrantedPermissionKind;
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("orders-api", orders_api())).await;
    h.apply(app(
        "orders-client",
        json!({
            "displayName": "Orders client",
            "requiredResourceAccess": [
                {"appRef": {"name": "orders-api"}, "application": ["Orders.Read", "Orders.Write"],
                 "delegated": ["Orders.Access"]},
                {"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read", "profile"]}
            ],
            "grantAdminConsent": true
        }),
    ))
    .await;
    let api = wait_ready(&h, "orders-api").await.status.unwrap();
    let client = wait_ready(&h, "orders-client").await.status.unwrap();
    assert_eq!(client.granted_permissions.len(), 5, "{client:#?}");
    let client_sp = client.service_principal_id.unwrap();
    let graph = &h.ctx.graph;
    let api_sp = graph
        .get_service_principal_by_app_id(api.app_id.as_deref().unwrap())
        .await
        .unwrap()
        .id
        .unwrap();
    // Granted by someone else: an app role and a delegated scope.
    graph
        .create_app_role_assignment(&api_sp, &client_sp, &api.role_ids["Orders.Admin"])
        .await
        .unwrap();
    let graph_grant = |grants: &[entra_operator::graph::OAuth2PermissionGrant]| {
        grants
            .iter()
            .find(|g| g.resource_id != api_sp)
            .cloned()
            .expect("the Microsoft Graph grant")
    };
    let grants = graph
        .list_oauth2_permission_grants(&client_sp)
        .await
        .unwrap();
    assert_eq!(grants.len(), 2);
    let before = graph_grant(&grants);
    graph
        .update_oauth2_permission_grant(
            before.id.as_deref().unwrap(),
            &["User.Read", "profile", "email"],
        )
        .await
        .unwrap();

    h.entra.clear_requests();
    let client = edit(
        &h,
        "orders-client",
        json!({"requiredResourceAccess": [
            {"appRef": {"name": "orders-api"}, "application": ["Orders.Read"]},
            {"wellKnownApi": "MicrosoftGraph", "delegated": ["User.Read"]}
        ]}),
    )
    .await
    .status
    .unwrap();
    let writes = graph_writes(&h);
    for expected in [
        "DELETE /v1.0/servicePrincipals/{id}/appRoleAssignedTo/{id}",
        "PATCH /v1.0/oauth2PermissionGrants/{id}",
        "DELETE /v1.0/oauth2PermissionGrants/{id}",
    ] {
        assert!(
            writes.iter().any(|w| w == expected),
            "{expected}: {writes:?}"
        );
    }
    let mut roles: Vec<String> = graph
        .list_app_role_assignments(&client_sp)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.app_role_id)
        .collect();
    roles.sort();
    let mut want = vec![
        api.role_ids["Orders.Read"].clone(),
        api.role_ids["Orders.Admin"].clone(),
    ];
    want.sort();
    assert_eq!(
        roles, want,
        "Orders.Write revoked; Orders.Admin (not ours) stays"
    );
    let grants = graph
        .list_oauth2_permission_grants(&client_sp)
        .await
        .unwrap();
    assert_eq!(
        grants.len(),
        1,
        "the Orders API grant had only Orders.Access: deleted"
    );
    assert_eq!(
        graph_grant(&grants).scope,
        "User.Read email",
        "profile trimmed; email (not ours) stays"
    );
    let recorded: std::collections::BTreeSet<(GrantedPermissionKind, &str)> = client
        .granted_permissions
        .iter()
        .map(|g| (g.kind, g.value.as_str()))
        .collect();
    assert_eq!(
        recorded,
        [
            (GrantedPermissionKind::Application, "Orders.Read"),
            (GrantedPermissionKind::Delegated, "User.Read")
        ]
        .into()
    );
    assert_eq!(
        client.consent.unwrap().state,
        entra_operator::api::appregistration::ConsentState::Granted
    );
}

#[tokio::test]
async fn known_client_applications_follow_the_spec() {
    const OUTSIDE: &str = "c11e0000-0000-4000-8000-0000000000c1";
    let mut h = Harness::start().await;
    h.start_controllers();
    h.apply(app("desktop", json!({"displayName": "Desktop client"})))
        .await;
    h.apply(app(
        "bundle-api",
        json!({"displayName": "Bundle API", "api": {"knownClientApplications": [
            {"appRef": {"name": "desktop"}}, {"appId": OUTSIDE}
        ]}}),
    ))
    .await;
    let desktop = wait_ready(&h, "desktop")
        .await
        .status
        .unwrap()
        .app_id
        .unwrap();
    let api = wait_ready(&h, "bundle-api")
        .await
        .status
        .unwrap()
        .app_id
        .unwrap();
    let known = |h: &Harness| {
        let mut ids: Vec<String> = emulator_app(h, &api).unwrap()["api"]["knownClientApplications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_lowercase())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![desktop.to_lowercase(), OUTSIDE.to_string()];
    both.sort();
    assert_eq!(known(&h), both);

    edit(
        &h,
        "bundle-api",
        json!({"api": {"knownClientApplications": [{"appRef": {"name": "desktop"}}]}}),
    )
    .await;
    assert_eq!(
        known(&h),
        [desktop.to_lowercase()],
        "the removed entry is removed"
    );
}

/// Creates the AppRegistration `name` with a service principal and waits for Ready; returns the
/// service principal's object ID. Creating costs the application's and the service principal's
/// upsert and nothing else: no owner is added up front.
async fn create_with_service_principal(h: &Harness, name: &str) -> String {
    h.entra.clear_requests();
    h.apply(app(name, json!({"displayName": name}))).await;
    let status = wait_ready(h, name).await.status.unwrap();
    settle(h, name).await;
    assert_eq!(
        graph_writes(h),
        vec![
            "PATCH /v1.0/applications(uniqueName='{uniqueName}')".to_string(),
            "PATCH /v1.0/servicePrincipals(appId='{appId}')".to_string(),
        ],
        "two writes per new resource"
    );
    let sp = status.service_principal_id.expect("service principal");
    let owners = h
        .ctx
        .graph
        .list_service_principal_owners(&sp)
        .await
        .unwrap();
    assert!(owners.is_empty(), "the creator is no owner: {owners:?}");
    sp
}

/// Graph does not document that the creator of a service principal owns it; the emulator takes the
/// stricter reading (no owner), so with `Application.ReadWrite.OwnedBy` a change to the service
/// principal is refused until the operator adds itself as its owner, which needs
/// `Directory.Read.All`.
#[tokio::test]
async fn changing_a_service_principal_under_owned_by_makes_the_operator_its_owner() {
    let mut h = Harness::start().await;
    h.grant_least_privilege_and(&["Directory.Read.All"]);
    h.start_controllers();
    let sp = create_with_service_principal(&h, "guarded").await;
    let operator = h
        .entra
        .operator_credentials()
        .service_principal_id
        .to_lowercase();

    h.entra.clear_requests();
    let status = edit(
        &h,
        "guarded",
        json!({"servicePrincipal": {"appRoleAssignmentRequired": true}}),
    )
    .await
    .status
    .unwrap();
    settle(&h, "guarded").await;
    assert_eq!(
        graph_writes(&h),
        vec![
            "PATCH /v1.0/servicePrincipals/{id}".to_string(),
            "POST /v1.0/servicePrincipals/{id}/owners/$ref".to_string(),
            "PATCH /v1.0/servicePrincipals/{id}".to_string(),
        ],
        "refused, the operator becomes owner, the change goes through"
    );
    let owners: Vec<String> = h
        .ctx
        .graph
        .list_service_principal_owners(&sp)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id.to_lowercase())
        .collect();
    assert_eq!(owners, [operator]);
    let fetched = h
        .ctx
        .graph
        .get_service_principal_by_app_id(status.app_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.app_role_assignment_required, Some(true));

    // An owner now: the next change is one PATCH.
    h.entra.clear_requests();
    edit(
        &h,
        "guarded",
        json!({"servicePrincipal": {"appRoleAssignmentRequired": true, "enabledForSignIn": false}}),
    )
    .await;
    settle(&h, "guarded").await;
    assert_eq!(
        graph_writes(&h),
        vec!["PATCH /v1.0/servicePrincipals/{id}".to_string()]
    );
}

#[tokio::test]
async fn without_directory_read_all_a_service_principal_change_reports_graph_forbidden_naming_it() {
    let mut h = Harness::start().await;
    h.start_controllers();
    let sp = create_with_service_principal(&h, "stuck").await;
    h.api::<AppRegistration>(NS)
        .patch(
            "stuck",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"servicePrincipal": {"appRoleAssignmentRequired": true}}}),
            ),
        )
        .await
        .unwrap();
    let (_, _, message) = h
        .wait_for("GraphForbidden naming Directory.Read.All", WAIT, || async {
            let obj = get(&h, "stuck").await;
            let current =
                obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
            condition(&obj, "Ready")
                .filter(|(s, r, _)| current && s == "False" && r == "GraphForbidden")
        })
        .await;
    assert!(message.contains("Directory.Read.All"), "{message}");
    assert!(
        message.contains("PATCH /servicePrincipals/{id}")
            && message.contains("Insufficient privileges to complete the operation."),
        "the service principal's own 403, with Graph's message: {message}"
    );
    let owners = h
        .ctx
        .graph
        .list_service_principal_owners(&sp)
        .await
        .unwrap();
    assert!(owners.is_empty(), "{owners:?}");
}
