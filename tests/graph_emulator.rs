//! The Graph client against the Entra emulator over HTTPS, trusting the emulator's CA as the extra
//! CA: authentication with a client secret, a certificate and workload identity (through
//! `azure_identity`), application and service principal upserts, credentials, owners, federated
//! credentials, `$batch`, replication delay, a lost `addPassword` response, and the consent probe.

use std::path::PathBuf;
use std::time::Duration;

use entra_emulator::{EmulatorConfig, EntraEmulator, FaultKind, FaultRule, TenantSpec};
use entra_operator::graph::{
    CredentialConfig, FederatedIdentityCredential, GraphClient, GraphConfig, GraphError,
    PasswordCredentialRequest, RetryPolicy, SecretString, TokenProbe, Upserted,
};
use serde_json::json;

fn config(emu: &EntraEmulator, credential: CredentialConfig) -> GraphConfig {
    let creds = emu.operator_credentials();
    let mut config = GraphConfig::from_lookup(|k| match k {
        "AZURE_TENANT_ID" => Some(creds.tenant_id.clone()),
        "AZURE_CLIENT_ID" => Some(creds.client_id.clone()),
        "AZURE_CLIENT_SECRET" => Some(creds.client_secret.clone()),
        "AZURE_AUTHORITY_HOST" => Some(emu.authority_host()),
        "GRAPH_ENDPOINT" => Some(emu.graph_endpoint()),
        "ENTRA_CA_FILE" => Some(emu.ca_pem_path().display().to_string()),
        _ => None,
    })
    .unwrap();
    config.credential = credential;
    config.retry = RetryPolicy {
        replication_timeout: Duration::from_secs(10),
        replication_base_delay: Duration::from_millis(50),
        ..RetryPolicy::fast()
    };
    config
}

fn secret_client(emu: &EntraEmulator) -> GraphClient {
    let secret = SecretString::new(emu.operator_credentials().client_secret);
    GraphClient::new(&config(emu, CredentialConfig::ClientSecret { secret })).unwrap()
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "graph-emulator-{}-{}-{name}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, content).unwrap();
    path
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn manages_an_application_end_to_end_with_a_client_secret() {
    let emu = EntraEmulator::start(EmulatorConfig {
        customer_tenants: vec![TenantSpec::new("northwind")],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let graph = secret_client(&emu);
    graph.check_authentication().await.unwrap();

    let unique = "bookme-default-api";
    let created = graph
        .upsert_application_by_unique_name(
            unique,
            &json!({"displayName": "BookMe API", "signInAudience": "AzureADMyOrg", "tags": ["HideApp"]}),
        )
        .await
        .unwrap();
    let Upserted::Created(app) = created else {
        panic!("expected a new application")
    };
    let id = app.id.clone().unwrap();
    let app_id = app.app_id.clone().unwrap();
    assert_eq!(app.unique_name.as_deref(), Some(unique));

    let again = graph
        .upsert_application_by_unique_name(unique, &json!({"displayName": "BookMe API v2"}))
        .await
        .unwrap();
    assert_eq!(again, Upserted::Updated);

    let by_name = graph.get_application_by_unique_name(unique).await.unwrap();
    assert_eq!(by_name.display_name.as_deref(), Some("BookMe API v2"));
    let by_app_id = graph.get_application_by_app_id(&app_id).await.unwrap();
    assert_eq!(by_app_id.id.as_deref(), Some(id.as_str()));

    graph
        .update_application(&id, &json!({"description": "bookings"}))
        .await
        .unwrap();
    assert_eq!(
        graph
            .get_application(&id)
            .await
            .unwrap()
            .description
            .as_deref(),
        Some("bookings")
    );

    let secret = graph
        .add_password(
            &id,
            &PasswordCredentialRequest {
                display_name: Some("rotation-nonce-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(secret.secret_text.expose().len() >= 16);
    assert_eq!(
        secret.hint.as_deref(),
        Some(&secret.secret_text.expose()[..3])
    );
    let listed = graph.get_application(&id).await.unwrap();
    let creds = listed.password_credentials.unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].display_name.as_deref(), Some("rotation-nonce-1"));

    let sp = graph
        .upsert_service_principal_by_app_id(&app_id, &json!({"appRoleAssignmentRequired": true}))
        .await
        .unwrap();
    let sp = sp.created().cloned().expect("a new service principal");
    assert_eq!(sp.app_id.as_deref(), Some(app_id.as_str()));
    let fetched = graph
        .get_service_principal_by_app_id(&app_id)
        .await
        .unwrap();
    assert_eq!(fetched.app_role_assignment_required, Some(true));
    assert_eq!(
        graph
            .upsert_service_principal_by_app_id(&app_id, &json!({"accountEnabled": true}))
            .await
            .unwrap(),
        Upserted::Updated
    );

    // The app's own secret works against its home tenant; elsewhere it is not consented.
    let home = emu.home_tenant_id().to_string();
    let probe = graph
        .probe_client_credentials(
            &home,
            &app_id,
            &secret.secret_text,
            "https://graph.microsoft.com/.default",
        )
        .await
        .unwrap();
    let TokenProbe::Issued(claims) = probe else {
        panic!("{probe:?}")
    };
    assert_eq!(claims.tid.as_deref(), Some(home.as_str()));
    assert_eq!(claims.client_app_id(), Some(app_id.as_str()));
    let northwind = emu.tenant_ids().into_iter().find(|t| *t != home).unwrap();
    let probe = graph
        .probe_client_credentials(
            &northwind,
            &app_id,
            &secret.secret_text,
            "https://graph.microsoft.com/.default",
        )
        .await
        .unwrap();
    let TokenProbe::Rejected(e) = probe else {
        panic!("{probe:?}")
    };
    assert!(e.is_not_consented(), "{e:?}");

    let info = graph.find_tenant_information(&northwind).await.unwrap();
    assert_eq!(info.tenant_id, northwind);

    graph
        .remove_password(&id, secret.key_id.as_deref().unwrap())
        .await
        .unwrap();

    let results = graph
        .batch_get_applications_by_app_id(&[
            app_id.as_str(),
            "00000000-0000-0000-0000-000000000001",
        ])
        .await
        .unwrap();
    assert_eq!(
        results[0].as_ref().unwrap().as_ref().unwrap().id.as_deref(),
        Some(id.as_str())
    );
    assert!(results[1].as_ref().unwrap().is_none());

    let owner = emu.operator_credentials().service_principal_id;
    graph.add_application_owner(&id, &owner).await.unwrap();
    graph.add_application_owner(&id, &owner).await.unwrap();
    assert!(
        graph
            .list_application_owners(&id)
            .await
            .unwrap()
            .iter()
            .any(|o| o.id == owner)
    );

    graph.delete_application(&id).await.unwrap();
    let err = graph.get_application(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn replication_delay_is_waited_out() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    emu.set_replication_delay(Duration::from_millis(400));
    let graph = secret_client(&emu);
    let app = graph
        .upsert_application_by_unique_name("bookme-replicated", &json!({"displayName": "r"}))
        .await
        .unwrap();
    let app = app.created().cloned().unwrap();
    let id = app.id.unwrap();
    // Both hit the replication delay right after the create and succeed through retries.
    graph
        .add_password(&id, &PasswordCredentialRequest::default())
        .await
        .unwrap();
    let sp = graph
        .upsert_service_principal_by_app_id(app.app_id.as_deref().unwrap(), &json!({}))
        .await
        .unwrap();
    assert!(sp.was_created());
    // Waited out by reading, not by writing: a refused write spends the tenant's write budget.
    let refused: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.status >= 400)
        .map(|r| format!("{} {} {}", r.method, r.template, r.status))
        .collect();
    assert!(
        refused.is_empty(),
        "writes refused while replicating: {refused:?}"
    );
}

#[tokio::test]
async fn users_are_resolved_by_principal_name_and_an_unknown_one_is_not_found_at_once() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let alice = emu
        .add_user(entra_emulator::UserSpec::new(
            "alice@contoso.onmicrosoft.com",
        ))
        .unwrap();
    let dollar = emu
        .add_user(entra_emulator::UserSpec::new(
            "$svc@contoso.onmicrosoft.com",
        ))
        .unwrap();
    // Without a permission that reads users: Forbidden, naming User.Read.All.
    emu.set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let graph = secret_client(&emu);
    match graph
        .get_user_by_principal_name("alice@contoso.onmicrosoft.com")
        .await
    {
        Err(GraphError::Forbidden {
            likely_missing_permission,
            ..
        }) => assert_eq!(likely_missing_permission, Some("User.Read.All")),
        other => panic!("{other:?}"),
    }
    emu.set_operator_graph_roles(&["User.Read.All"]);
    let graph = secret_client(&emu);
    let user = graph
        .get_user_by_principal_name("alice@contoso.onmicrosoft.com")
        .await
        .unwrap();
    assert_eq!(user.id, alice);
    // A UPN starting with `$` goes as `/users('$…')`.
    let user = graph
        .get_user_by_principal_name("$svc@contoso.onmicrosoft.com")
        .await
        .unwrap();
    assert_eq!(user.id, dollar);
    // No such user: NotFound on the first answer (never waited out as replication).
    emu.set_replication_delay(Duration::from_millis(400));
    emu.clear_requests();
    let err = graph
        .get_user_by_principal_name("nobody@contoso.onmicrosoft.com")
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::NotFound(_)), "{err:?}");
    assert_eq!(emu.request_count("GET", "/v1.0/users/{id}"), 1);
}

#[tokio::test]
async fn a_lost_add_password_response_is_not_retried() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = secret_client(&emu);
    let app = graph
        .upsert_application_by_unique_name("bookme-lost", &json!({"displayName": "l"}))
        .await
        .unwrap();
    let id = app.created().unwrap().id.clone().unwrap();
    emu.add_fault(
        FaultRule::new(
            "POST",
            "/v1.0/applications/{id}/addPassword",
            FaultKind::CommitThenReset,
        )
        .times(1),
    );
    let err = graph
        .add_password(
            &id,
            &PasswordCredentialRequest {
                display_name: Some("nonce-lost".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Transport { .. }), "{err:?}");
    assert_eq!(
        emu.request_count("POST", "/v1.0/applications/{id}/addPassword"),
        1
    );
    // The secret exists; the caller finds it by its nonce and removes it.
    let app = graph.get_application(&id).await.unwrap();
    assert!(
        app.password_credentials
            .unwrap()
            .iter()
            .any(|c| c.display_name.as_deref() == Some("nonce-lost"))
    );
}

#[tokio::test]
async fn authenticates_with_a_certificate() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let creds = emu.operator_credentials();
    let pem = temp_file(
        "cert.pem",
        &format!("{}\n{}", creds.certificate_pem, creds.private_key_pem),
    );
    let graph = GraphClient::new(&config(
        &emu,
        CredentialConfig::ClientCertificate {
            path: pem.clone(),
            password: None,
        },
    ))
    .unwrap();
    graph.check_authentication().await.unwrap();
    graph.get_application(&creds.app_object_id).await.unwrap();
    let _ = std::fs::remove_file(pem);
}

#[tokio::test]
async fn authenticates_with_workload_identity() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let creds = emu.operator_credentials();
    let issuer = "https://oidc.prod-aks.azure.com/0000/";
    let subject = "system:serviceaccount:entra-operator:entra-operator";
    let graph = secret_client(&emu);
    let fic = FederatedIdentityCredential {
        name: "aks-entra-operator".into(),
        issuer: issuer.into(),
        subject: subject.into(),
        audiences: vec!["api://AzureADTokenExchange".into()],
        ..Default::default()
    };
    let upserted = graph
        .upsert_federated_identity_credential(&creds.app_object_id, &fic)
        .await
        .unwrap();
    assert!(upserted.was_created());
    let listed = graph
        .list_federated_identity_credentials(&creds.app_object_id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].subject, subject);

    let now = jiff::Timestamp::now().as_second();
    let token =
        entra_emulator::federated_assertion(issuer, subject, "api://AzureADTokenExchange", now);
    let token_file = temp_file("sa-token", &token);
    let wi = GraphClient::new(&config(
        &emu,
        CredentialConfig::WorkloadIdentity {
            token_file: token_file.clone(),
        },
    ))
    .unwrap();
    wi.check_authentication().await.unwrap();
    wi.get_application(&creds.app_object_id).await.unwrap();

    graph
        .delete_federated_identity_credential(
            &creds.app_object_id,
            listed[0].id.as_deref().unwrap(),
        )
        .await
        .unwrap();
    let _ = std::fs::remove_file(token_file);
}

#[tokio::test]
async fn a_wrong_secret_is_an_authentication_error() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = GraphClient::new(&config(
        &emu,
        CredentialConfig::ClientSecret {
            secret: SecretString::new("definitely-wrong-secret"),
        },
    ))
    .unwrap();
    let err = graph.get_application("x").await.unwrap_err();
    assert_eq!(err.reason(), "GraphAuthenticationFailed");
    assert!(err.to_string().contains("7000215"), "{err}");
    assert!(!err.to_string().contains("definitely-wrong-secret"));
}

#[tokio::test]
async fn without_the_extra_ca_tls_fails() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let mut config = config(
        &emu,
        CredentialConfig::ClientSecret {
            secret: SecretString::new(emu.operator_credentials().client_secret),
        },
    );
    config.extra_ca_pem = None;
    let graph = GraphClient::new(&config).unwrap();
    let err = graph.check_authentication().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// 60 writes from 6 concurrent tasks against a tenant whose write budget is scaled down to 30 per
/// 1.5 s.
async fn write_burst(graph: &GraphClient, app_id: &str) -> Duration {
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let graph = graph.clone();
            let app_id = app_id.to_string();
            tokio::spawn(async move {
                for i in 0..10 {
                    graph
                        .update_application(&app_id, &json!({"description": format!("{t}-{i}")}))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn throttled_emulator() -> (EntraEmulator, String) {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = secret_client(&emu);
    let app = graph
        .upsert_application_by_unique_name("bookme-throttled", &json!({"displayName": "t"}))
        .await
        .unwrap();
    let id = app.created().unwrap().id.clone().unwrap();
    emu.set_throttling(entra_emulator::ThrottleMode::Scaled {
        limit_factor: 0.01,
        window_factor: 0.01,
    });
    emu.reset_throttling();
    (emu, id)
}

#[tokio::test]
async fn throttled_writes_succeed_by_honouring_retry_after() {
    let (emu, id) = throttled_emulator().await;
    let metrics = std::sync::Arc::new(entra_operator::graph::GraphMetrics::default());
    let secret = SecretString::new(emu.operator_credentials().client_secret);
    let graph = entra_operator::graph::GraphClientBuilder::from_config(&config(
        &emu,
        CredentialConfig::ClientSecret { secret },
    ))
    .unwrap()
    .observer(metrics.clone())
    .build()
    .unwrap();
    write_burst(&graph, &id).await;
    assert!(
        metrics.throttled.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the emulator's budget was exceeded without a 429"
    );
}

#[tokio::test]
async fn the_client_side_budget_avoids_429s() {
    let (emu, id) = throttled_emulator().await;
    let metrics = std::sync::Arc::new(entra_operator::graph::GraphMetrics::default());
    let secret = SecretString::new(emu.operator_credentials().client_secret);
    let mut config = config(&emu, CredentialConfig::ClientSecret { secret });
    // 80% of the emulator's scaled budget, as the defaults are of Graph's.
    config.rate_limits.writes_per_window = 24;
    config.rate_limits.write_window = Duration::from_millis(1500);
    let graph = entra_operator::graph::GraphClientBuilder::from_config(&config)
        .unwrap()
        .observer(metrics.clone())
        .build()
        .unwrap();
    let elapsed = write_burst(&graph, &id).await;
    assert_eq!(
        metrics.throttled.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    assert!(
        metrics
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[tokio::test]
async fn batch_items_throttled_on_their_own_are_retried() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(entra_operator::graph::GraphMetrics::default());
    let secret = SecretString::new(emu.operator_credentials().client_secret);
    let graph = entra_operator::graph::GraphClientBuilder::from_config(&config(
        &emu,
        CredentialConfig::ClientSecret { secret },
    ))
    .unwrap()
    .observer(metrics.clone())
    .build()
    .unwrap();
    let mut app_ids = Vec::new();
    for i in 0..25 {
        let app = graph
            .upsert_application_by_unique_name(
                &format!("bookme-batch-{i}"),
                &json!({"displayName": format!("b{i}")}),
            )
            .await
            .unwrap();
        app_ids.push(app.created().unwrap().app_id.clone().unwrap());
    }
    // A read budget of 14 RU per second: a batch of 20 reads overflows it.
    emu.set_throttling(entra_emulator::ThrottleMode::Scaled {
        limit_factor: 0.004,
        window_factor: 0.1,
    });
    emu.reset_throttling();
    let refs: Vec<&str> = app_ids.iter().map(String::as_str).collect();
    let results = graph.batch_get_applications_by_app_id(&refs).await.unwrap();
    for (result, app_id) in results.iter().zip(&app_ids) {
        let app = result.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(app.app_id.as_ref(), Some(app_id));
    }
    assert!(metrics.throttled.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn adds_and_removes_a_certificate_with_proof_of_possession() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let creds = emu.operator_credentials();
    let graph = secret_client(&emu);
    // The operator's current certificate proves possession for its own application.
    let current = entra_operator::graph::CertificateAssertion::from_pem(
        format!("{}\n{}", creds.certificate_pem, creds.private_key_pem).as_bytes(),
        &creds.client_id,
        &emu.token_endpoint(&creds.tenant_id),
    )
    .unwrap();
    let new_pem = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/graph/testdata/client-cert.pem"
    ));
    let key = entra_operator::graph::KeyCredential {
        kind: Some("AsymmetricX509Cert".into()),
        usage: Some("Verify".into()),
        display_name: Some("rotation-cert-1".into()),
        key: Some(entra_operator::graph::certificate_key_value(new_pem).unwrap()),
        ..Default::default()
    };
    let added = graph
        .add_key(
            &creds.app_object_id,
            &key,
            &current.key_proof(&creds.app_object_id).unwrap(),
        )
        .await
        .unwrap();
    let key_id = added.key_id.clone().unwrap();
    let app = graph.get_application(&creds.app_object_id).await.unwrap();
    assert!(
        app.key_credentials
            .unwrap()
            .iter()
            .any(|k| k.key_id.as_deref() == Some(key_id.as_str()))
    );

    // The new certificate authenticates.
    let pem_path = temp_file("new-cert.pem", std::str::from_utf8(new_pem).unwrap());
    let by_new_cert = GraphClient::new(&config(
        &emu,
        CredentialConfig::ClientCertificate {
            path: pem_path.clone(),
            password: None,
        },
    ))
    .unwrap();
    by_new_cert.check_authentication().await.unwrap();
    let _ = std::fs::remove_file(pem_path);

    graph
        .remove_key(
            &creds.app_object_id,
            &key_id,
            &current.key_proof(&creds.app_object_id).unwrap(),
        )
        .await
        .unwrap();
    let app = graph.get_application(&creds.app_object_id).await.unwrap();
    assert!(
        !app.key_credentials
            .unwrap()
            .iter()
            .any(|k| k.key_id.as_deref() == Some(key_id.as_str()))
    );
}

/// An application with a service principal; returns (object id, SP id, Graph's SP id).
async fn app_with_sp(graph: &GraphClient, unique: &str) -> (String, String, String) {
    let Upserted::Created(app) = graph
        .upsert_application_by_unique_name(unique, &json!({"displayName": unique}))
        .await
        .unwrap()
    else {
        panic!("expected a new application")
    };
    let Upserted::Created(sp) = graph
        .upsert_service_principal_by_app_id(app.app_id.as_deref().unwrap(), &json!({}))
        .await
        .unwrap()
    else {
        panic!("expected a new service principal")
    };
    let graph_sp = graph
        .get_service_principal_by_app_id("00000003-0000-0000-c000-000000000000")
        .await
        .unwrap();
    (app.id.unwrap(), sp.id.unwrap(), graph_sp.id.unwrap())
}

#[tokio::test]
async fn a_grant_that_already_exists_is_found_and_extended_while_the_list_lags() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = secret_client(&emu);
    let (_, sp, graph_sp) = app_with_sp(&graph, "grant-client").await;
    // The list lags fresh grants (replication), so a second POST meets Graph's 409.
    emu.set_replication_delay(Duration::from_millis(400));
    graph
        .create_oauth2_permission_grant(&sp, &graph_sp, &["User.Read"])
        .await
        .unwrap();
    let grant = graph
        .create_oauth2_permission_grant(&sp, &graph_sp, &["User.Read", "Mail.Read"])
        .await
        .expect("409 Permission entry already exists is the existing grant");
    assert_eq!(grant.resource_id, graph_sp);
    let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
    assert!(
        scopes.contains(&"User.Read") && scopes.contains(&"Mail.Read"),
        "{scopes:?}"
    );
    assert_eq!(emu.request_count("POST", "/v1.0/oauth2PermissionGrants"), 2);
}

#[tokio::test]
async fn an_app_role_assignment_that_already_exists_is_found() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = secret_client(&emu);
    let (_, sp, graph_sp) = app_with_sp(&graph, "role-client").await;
    let role = "df021288-bdef-4463-88db-98f22de89214"; // User.Read.All
    let first = graph
        .create_app_role_assignment(&graph_sp, &sp, role)
        .await
        .unwrap();
    let again = graph
        .create_app_role_assignment(&graph_sp, &sp, role)
        .await
        .expect("an existing assignment is success");
    assert_eq!(again.id, first.id);
}

#[tokio::test]
async fn removing_a_password_that_is_gone_is_success_decided_by_reading_the_app() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = secret_client(&emu);
    let (id, _, _) = app_with_sp(&graph, "gone-password").await;
    // Graph answers 400 for an unknown keyId; the app no longer lists it, so it is gone.
    graph
        .remove_password(&id, "1b2c3d4e-0000-4000-8000-000000000009")
        .await
        .expect("a key that is not there is removed");
    // A refused remove of a key that is still there stays an error.
    let added = graph
        .add_password(&id, &PasswordCredentialRequest::default())
        .await
        .unwrap();
    let key_id = added.key_id.clone().unwrap();
    emu.add_fault(
        FaultRule::new(
            "POST",
            "/v1.0/applications/{id}/removePassword",
            FaultKind::Status { status: 400 },
        )
        .times(1),
    );
    assert!(graph.remove_password(&id, &key_id).await.is_err());
    graph.remove_password(&id, &key_id).await.unwrap();
}

#[tokio::test]
async fn a_federated_credential_description_can_be_cleared() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let graph = secret_client(&emu);
    let (id, _, _) = app_with_sp(&graph, "fic-description").await;
    let mut fic = FederatedIdentityCredential {
        name: "aks".into(),
        issuer: "https://oidc.aks.example/x".into(),
        subject: "system:serviceaccount:bookme:api".into(),
        audiences: vec!["api://AzureADTokenExchange".into()],
        description: Some("old cluster".into()),
        ..Default::default()
    };
    graph
        .upsert_federated_identity_credential(&id, &fic)
        .await
        .unwrap();
    fic.description = None;
    graph
        .upsert_federated_identity_credential(&id, &fic)
        .await
        .unwrap();
    let listed = graph
        .list_federated_identity_credentials(&id)
        .await
        .unwrap();
    assert_eq!(listed[0].description.as_deref().unwrap_or(""), "");
}

/// An upsert that finds a service principal the operator does not own (under
/// `Application.ReadWrite.OwnedBy` its creator is no owner: the emulator's stricter reading) makes
/// the operator its owner and is sent once more; without `Directory.Read.All` the upsert's own 403
/// stands, naming that permission.
#[tokio::test]
async fn an_upsert_that_finds_a_service_principal_it_does_not_own_makes_the_operator_its_owner() {
    let emu = EntraEmulator::start(EmulatorConfig::default())
        .await
        .unwrap();
    let operator = emu
        .operator_credentials()
        .service_principal_id
        .to_lowercase();
    emu.set_operator_graph_roles(&["Application.ReadWrite.OwnedBy"]);
    let graph = secret_client(&emu);
    let (_, sp, _) = app_with_sp(&graph, "sp-upsert").await;
    let app_id = graph
        .get_application_by_unique_name("sp-upsert")
        .await
        .unwrap()
        .app_id
        .unwrap();
    assert!(
        graph
            .list_service_principal_owners(&sp)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        graph.own_service_principal_id().await.unwrap().as_deref(),
        Some(operator.as_str()),
        "the oid of the operator's token"
    );

    let body = json!({"appRoleAssignmentRequired": true});
    match graph
        .upsert_service_principal_by_app_id(&app_id, &body)
        .await
    {
        Err(GraphError::Forbidden {
            detail,
            likely_missing_permission,
        }) => {
            assert_eq!(detail.operation, "PATCH /servicePrincipals(appId=…)");
            assert!(
                likely_missing_permission.is_some_and(|p| p.starts_with("Directory.Read.All")),
                "{likely_missing_permission:?}"
            );
        }
        other => panic!("{other:?}"),
    }

    emu.set_operator_graph_roles(&["Application.ReadWrite.OwnedBy", "Directory.Read.All"]);
    let graph = secret_client(&emu);
    emu.clear_requests();
    let again = graph
        .upsert_service_principal_by_app_id(&app_id, &body)
        .await
        .unwrap();
    assert_eq!(again, Upserted::Updated);
    assert_eq!(
        emu.request_count("POST", "/v1.0/servicePrincipals/{id}/owners/$ref"),
        1
    );
    let owners: Vec<String> = graph
        .list_service_principal_owners(&sp)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id.to_lowercase())
        .collect();
    assert_eq!(owners, [operator]);
    let fetched = graph
        .get_service_principal_by_app_id(&app_id)
        .await
        .unwrap();
    assert_eq!(fetched.app_role_assignment_required, Some(true));
}
