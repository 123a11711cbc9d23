//! The Graph client against a scripted local HTTP server: retries on 5xx, `Retry-After` on 429,
//! replication-delay retries, no retry where a request must not be repeated, `$batch` with an inner
//! 429, paging, error mapping, the write budget, and the consent probe's token request.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use entra_operator::graph::{
    GraphClient, GraphError, GraphMetrics, PasswordCredentialRequest, Permission, RateLimits,
    RetryPolicy, SecretString, StaticToken, TokenProbe, Upserted,
};
use serde_json::{Value, json};

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query, percent-decoded.
    target: String,
    headers: HeaderMap,
    body: Value,
}

/// An answer: status, headers, JSON body (Null = empty).
struct Reply(u16, Vec<(&'static str, String)>, Value);

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct Mock {
    seen: Arc<Mutex<Vec<Seen>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    script: Arc<Script>,
}

async fn handle(
    State(mock): State<Mock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = percent_decode(&uri.to_string());
    let seen = Seen {
        method: method.to_string(),
        target: target.clone(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let key = format!("{method} {}", target.split('?').next().unwrap());
    let n = {
        let mut counts = mock.counts.lock().unwrap();
        let c = counts.entry(key).or_default();
        *c += 1;
        *c
    };
    mock.seen.lock().unwrap().push(seen.clone());
    let Reply(status, headers, body) = (mock.script)(&seen, n);
    let mut response = if body.is_null() {
        StatusCode::from_u16(status).unwrap().into_response()
    } else {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    for (k, v) in headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

struct Server {
    base: String,
    mock: Mock,
}

impl Server {
    async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let mock = Mock {
            seen: Default::default(),
            counts: Default::default(),
            script: Arc::new(script),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server {
            base: format!("http://{addr}"),
            mock,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.mock.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path_contains: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.target.contains(path_contains))
            .count()
    }

    fn client(&self) -> (GraphClient, Arc<GraphMetrics>) {
        self.client_with(RateLimits::default())
    }

    fn client_with(&self, limits: RateLimits) -> (GraphClient, Arc<GraphMetrics>) {
        let metrics = Arc::new(GraphMetrics::default());
        let client = GraphClient::builder(self.base.parse().unwrap())
            .authority_host(self.base.parse().unwrap())
            .token_source(Arc::new(StaticToken(SecretString::new("test-token"))))
            .retry(RetryPolicy::fast())
            .rate_limits(limits)
            .observer(metrics.clone())
            .build()
            .unwrap();
        (client, metrics)
    }
}

fn graph_error(status: u16, code: &str, message: &str) -> Reply {
    Reply(
        status,
        vec![("request-id", "req-123".into())],
        json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2025-01-01T00:00:00", "request-id": "req-123"}}}),
    )
}

fn app_json(id: &str) -> Value {
    json!({"id": id, "appId": format!("appid-{id}"), "displayName": "x", "uniqueName": format!("u-{id}")})
}

fn get(m: &std::sync::atomic::AtomicU64) -> u64 {
    m.load(Ordering::Relaxed)
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = Server::start(|_, n| match n {
        1 => graph_error(503, "serviceNotAvailable", "busy"),
        2 => graph_error(502, "badGateway", "oops"),
        _ => Reply(200, vec![], app_json("a1")),
    })
    .await;
    let (client, metrics) = server.client();
    let app = client.get_application("a1").await.unwrap();
    assert_eq!(app.id.as_deref(), Some("a1"));
    assert_eq!(server.count("GET", "/v1.0/applications/a1"), 3);
    assert_eq!(get(&metrics.retries), 2);
    assert_eq!(get(&metrics.server_errors), 2);
    assert_eq!(get(&metrics.success), 1);
    let seen = server.seen();
    assert_eq!(
        seen[0].headers.get("authorization").unwrap(),
        "Bearer test-token"
    );
}

#[tokio::test]
async fn server_errors_give_up_after_the_attempt_budget() {
    let server = Server::start(|_, _| graph_error(500, "generalException", "boom")).await;
    let (client, _) = server.client();
    let err = client.get_application("a1").await.unwrap_err();
    assert!(matches!(err, GraphError::Server(_)), "{err:?}");
    assert_eq!(err.detail().unwrap().request_id.as_deref(), Some("req-123"));
    assert_eq!(
        server.count("GET", "/applications/a1"),
        RetryPolicy::fast().max_attempts as usize
    );
}

#[tokio::test]
async fn throttling_honours_fractional_retry_after() {
    let server = Server::start(|_, n| match n {
        1 => {
            let mut r = graph_error(429, "TooManyRequests", "Please retry again later.");
            r.1.push(("retry-after", "0.3".into()));
            r
        }
        _ => Reply(200, vec![], app_json("a1")),
    })
    .await;
    let (client, metrics) = server.client();
    let start = Instant::now();
    client.get_application("a1").await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(get(&metrics.throttled), 1);
    assert_eq!(server.count("GET", "/applications/a1"), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_is_returned_to_the_caller() {
    let server = Server::start(|_, _| {
        let mut r = graph_error(429, "TooManyRequests", "Please retry again later.");
        r.1.push(("retry-after", "120".into()));
        r
    })
    .await;
    let (client, _) = server.client();
    let err = client.get_application("a1").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(err.reason(), "GraphThrottled");
    assert_eq!(server.count("GET", "/applications/a1"), 1);
}

#[tokio::test]
async fn not_found_after_a_create_is_retried_as_replication_delay() {
    let server = Server::start(|seen, n| {
        if seen.method == "PATCH" && seen.target.contains("uniqueName=") {
            return Reply(201, vec![], app_json("new1"));
        }
        if seen.target.contains("/applications/new1/addPassword") {
            return match n {
                1 | 2 => graph_error(404, "Request_ResourceNotFound", "Resource 'new1' does not exist"),
                _ => Reply(
                    200,
                    vec![],
                    json!({"keyId": "k1", "displayName": "nonce-1", "hint": "abc", "secretText": "abcDEF~secret-value-123",
                           "startDateTime": "2025-01-01T00:00:00Z", "endDateTime": "2027-01-01T00:00:00Z"}),
                ),
            };
        }
        // The read before the first write to the new app: not there yet once, then visible.
        if seen.method == "GET" && seen.target.starts_with("/v1.0/applications/new1?") {
            return match n {
                1 => graph_error(404, "Request_ResourceNotFound", "Resource 'new1' does not exist"),
                _ => Reply(200, vec![], json!({"id": "new1"})),
            };
        }
        graph_error(404, "Request_ResourceNotFound", "Resource does not exist")
    })
    .await;
    let (client, metrics) = server.client();

    // Unrelated ids are not retried: absence is an answer.
    let err = client.get_application("never-created").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(server.count("GET", "never-created"), 1);

    let created = client
        .upsert_application_by_unique_name("u-new1", &json!({"displayName": "x"}))
        .await
        .unwrap();
    let Upserted::Created(app) = created else {
        panic!("expected Created")
    };
    assert_eq!(app.app_id.as_deref(), Some("appid-new1"));
    let patch = server
        .seen()
        .into_iter()
        .find(|s| s.method == "PATCH")
        .unwrap();
    assert_eq!(patch.headers.get("prefer").unwrap(), "create-if-missing");
    assert_eq!(patch.target, "/v1.0/applications(uniqueName='u-new1')");

    let secret = client
        .add_password(
            "new1",
            &PasswordCredentialRequest {
                display_name: Some("nonce-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(secret.secret_text.expose(), "abcDEF~secret-value-123");
    assert!(!format!("{secret:?}").contains("secret-value"));
    // The read saw the app after one retry; the write's own 404s are still retried as lag
    // (another replica may answer the write).
    assert_eq!(server.count("GET", "/applications/new1?$select=id"), 2);
    assert_eq!(server.count("POST", "addPassword"), 3);
    assert_eq!(get(&metrics.replication_retries), 3);
    let body = server
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.target.contains("addPassword"))
        .unwrap()
        .body;
    assert_eq!(body["passwordCredential"]["displayName"], "nonce-1");
}

#[tokio::test]
async fn service_principal_upsert_waits_for_the_application_to_replicate() {
    let server = Server::start(|_, n| match n {
        1 | 2 => graph_error(
            400,
            "Request_BadRequest",
            "The appId 'appid-1' of the service principal does not reference a valid application object.",
        ),
        _ => Reply(201, vec![], json!({"id": "sp1", "appId": "appid-1", "accountEnabled": true})),
    })
    .await;
    let (client, _) = server.client();
    let sp = client
        .upsert_service_principal_by_app_id("appid-1", &json!({"accountEnabled": true}))
        .await
        .unwrap();
    assert_eq!(sp.created().unwrap().id.as_deref(), Some("sp1"));
    assert_eq!(
        server.count("PATCH", "servicePrincipals(appId='appid-1')"),
        3
    );
}

#[tokio::test]
async fn other_bad_requests_are_not_retried_and_keep_graphs_message() {
    let server = Server::start(|_, _| {
        graph_error(
            400,
            "Request_BadRequest",
            "Invalid value specified for property 'identifierUris' of resource 'Application'.",
        )
    })
    .await;
    let (client, _) = server.client();
    let err = client
        .update_application("a1", &json!({"identifierUris": ["bad"]}))
        .await
        .unwrap_err();
    let GraphError::BadRequest(detail) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(detail.code, "Request_BadRequest");
    assert!(detail.message.contains("identifierUris"));
    assert_eq!(server.count("PATCH", "/applications/a1"), 1);
}

#[tokio::test]
async fn add_password_is_not_repeated_after_a_server_error() {
    let server = Server::start(|_, _| graph_error(500, "generalException", "maybe done")).await;
    let (client, _) = server.client();
    let err = client
        .add_password("a1", &PasswordCredentialRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Server(_)));
    assert_eq!(server.count("POST", "addPassword"), 1);
}

#[tokio::test]
async fn add_password_is_retried_after_a_429() {
    let server = Server::start(|_, n| match n {
        1 => {
            let mut r = graph_error(429, "TooManyRequests", "Please retry again later.");
            r.1.push(("retry-after", "0.01".into()));
            r
        }
        _ => Reply(200, vec![], json!({"keyId": "k", "secretText": "s"})),
    })
    .await;
    let (client, _) = server.client();
    client
        .add_password("a1", &PasswordCredentialRequest::default())
        .await
        .unwrap();
    assert_eq!(server.count("POST", "addPassword"), 2);
}

#[tokio::test]
async fn forbidden_names_the_permission_of_the_call() {
    let server = Server::start(|_, _| {
        graph_error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    })
    .await;
    let (client, _) = server.client();
    let err = client
        .create_app_role_assignment("res-sp", "client-sp", "role-1")
        .await
        .unwrap_err();
    let GraphError::Forbidden {
        likely_missing_permission,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        *likely_missing_permission,
        Some("AppRoleAssignment.ReadWrite.All")
    );
    let err = client
        .list_oauth2_permission_grants("sp1")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("DelegatedPermissionGrant.ReadWrite.All"),
        "{err}"
    );
    let err = client.find_tenant_information("t2").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("CrossTenantInformation.ReadBasic.All"),
        "{err}"
    );
    let err = client
        .update_application("a", &json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Application.ReadWrite.OwnedBy"),
        "{err}"
    );
}

#[tokio::test]
async fn upsert_of_an_existing_object_is_updated_and_duplicates_are_conflicts() {
    let server = Server::start(|seen, _| {
        if seen.target.contains("owners") {
            return graph_error(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'owners'.",
            );
        }
        if seen.target.contains("appRoleAssignedTo") {
            return graph_error(400, "Request_BadRequest", "Permission being assigned already exists on the object");
        }
        Reply(204, vec![], Value::Null)
    })
    .await;
    let (client, _) = server.client();
    let r = client
        .upsert_application_by_unique_name("u1", &json!({"displayName": "x"}))
        .await
        .unwrap();
    assert_eq!(r, Upserted::Updated);
    client.add_application_owner("a1", "o1").await.unwrap();
    let owner_ref = server
        .seen()
        .into_iter()
        .find(|s| s.target.contains("owners"))
        .unwrap();
    assert_eq!(owner_ref.target, "/v1.0/applications/a1/owners/$ref");
    assert_eq!(
        owner_ref.body["@odata.id"],
        format!("{}/v1.0/directoryObjects/o1", server.base)
    );
    let err = client
        .create_app_role_assignment("res", "p", "r")
        .await
        .unwrap_err();
    assert!(err.is_conflict());
}

#[tokio::test]
async fn batch_retries_only_the_throttled_item() {
    let server = Server::start(|seen, n| {
        assert_eq!(seen.target, "/v1.0/$batch");
        let requests = seen.body["requests"].as_array().unwrap().clone();
        assert!(requests.len() <= 20);
        let responses: Vec<Value> = requests
            .iter()
            .map(|r| {
                let id = r["id"].as_str().unwrap();
                let url = r["url"].as_str().unwrap();
                if url.contains("missing") {
                    json!({"id": id, "status": 404, "headers": {},
                           "body": {"error": {"code": "Request_ResourceNotFound", "message": "nope"}}})
                } else if url.contains("hot") && n == 1 {
                    json!({"id": id, "status": 429, "headers": {"Retry-After": "0.05"},
                           "body": {"error": {"code": "TooManyRequests", "message": "Please retry again later."}}})
                } else {
                    let app_id = url.split('\'').nth(1).unwrap();
                    json!({"id": id, "status": 200, "headers": {"Content-Type": "application/json"},
                           "body": {"id": format!("obj-{app_id}"), "appId": app_id}})
                }
            })
            .rev() // Graph answers in any order
            .collect();
        Reply(200, vec![], json!({ "responses": responses }))
    })
    .await;
    let (client, metrics) = server.client();
    let mut ids: Vec<String> = (0..23).map(|i| format!("app{i}")).collect();
    ids[3] = "hot".into();
    ids[21] = "missing".into();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let results = client
        .batch_get_applications_by_app_id(&refs)
        .await
        .unwrap();
    assert_eq!(results.len(), 23);
    for (i, r) in results.iter().enumerate() {
        match i {
            21 => assert_eq!(r.as_ref().unwrap(), &None),
            _ => assert_eq!(
                r.as_ref().unwrap().as_ref().unwrap().app_id.as_deref(),
                Some(ids[i].as_str())
            ),
        }
    }
    let batches: Vec<Seen> = server.seen();
    // First chunk of 20, the retry of the throttled one alone, then the chunk of 3.
    let sizes: Vec<usize> = batches
        .iter()
        .map(|b| b.body["requests"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![20, 1, 3]);
    assert_eq!(
        batches[1].body["requests"][0]["url"],
        "/applications(appId='hot')"
    );
    assert_eq!(get(&metrics.throttled), 1);
}

#[tokio::test]
async fn lists_follow_next_links_and_filter_grants() {
    // The next link is absolute on the Graph endpoint, so the script needs its own address.
    let own = Arc::new(Mutex::new(String::new()));
    let own2 = own.clone();
    let server3 = Server::start(move |seen, _| {
        if seen.target.contains("skiptoken") {
            Reply(200, vec![], json!({"value": [{"id": "o2"}]}))
        } else if seen.target.contains("oauth2PermissionGrants") {
            Reply(200, vec![], json!({"value": [{"id": "g", "clientId": "sp1", "consentType": "AllPrincipals", "resourceId": "r", "scope": "a b"}]}))
        } else {
            let me = own2.lock().unwrap().clone();
            Reply(200, vec![], json!({"value": [{"id": "o1", "@odata.type": "#microsoft.graph.user"}],
                "@odata.nextLink": format!("{me}/v1.0/applications/a1/owners?$skiptoken=x")}))
        }
    })
    .await;
    *own.lock().unwrap() = server3.base.clone();
    let (client, _) = server3.client();
    let owners = client.list_application_owners("a1").await.unwrap();
    assert_eq!(
        owners.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        vec!["o1", "o2"]
    );
    let grants = client.list_oauth2_permission_grants("sp1").await.unwrap();
    assert_eq!(grants[0].scopes().collect::<Vec<_>>(), vec!["a", "b"]);
    let grant_request = server3
        .seen()
        .into_iter()
        .find(|s| s.target.contains("oauth2PermissionGrants"))
        .unwrap();
    assert_eq!(
        grant_request.target,
        "/v1.0/oauth2PermissionGrants?$filter=clientId eq 'sp1' and consentType eq 'AllPrincipals'"
    );
}

#[tokio::test]
async fn next_links_to_other_hosts_are_refused() {
    let server = Server::start(|_, _| {
        Reply(
            200,
            vec![],
            json!({"value": [], "@odata.nextLink": "https://evil.example/v1.0/x"}),
        )
    })
    .await;
    let (client, _) = server.client();
    let err = client.list_application_owners("a1").await.unwrap_err();
    assert!(
        err.to_string().contains("outside the Graph endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn the_write_budget_delays_instead_of_failing() {
    let server = Server::start(|_, _| Reply(204, vec![], Value::Null)).await;
    let (client, metrics) = server.client_with(RateLimits {
        writes_per_window: 2,
        write_window: Duration::from_millis(400),
        ..RateLimits::default()
    });
    let start = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.update_application(&format!("a{i}"), &json!({})).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(get(&metrics.rate_limited), 1);
    // Reads are not charged to the write budget.
    let start = Instant::now();
    let _ = client.get_application("x").await;
    assert!(start.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn throttle_percentage_headers_turn_on_pacing() {
    let server = Server::start(|_, _| {
        Reply(
            204,
            vec![
                ("x-ms-throttle-limit-percentage", "0.95".into()),
                (
                    "x-ms-throttle-scope",
                    "Tenant_Application/ReadWrite/t/a".into(),
                ),
            ],
            Value::Null,
        )
    })
    .await;
    let (client, _) = server.client();
    assert!(!client.rate_limiter().under_pressure());
    client.update_application("a1", &json!({})).await.unwrap();
    assert!(client.rate_limiter().under_pressure());
}

fn jwt(claims: Value) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        e.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        e.encode(claims.to_string())
    )
}

#[tokio::test]
async fn consent_probe_returns_claims_or_the_aadsts_code() {
    let server = Server::start(|seen, _| {
        assert_eq!(seen.method, "POST");
        let tenant = seen.target.split('/').nth(1).unwrap().to_string();
        if tenant == "consented" {
            Reply(
                200,
                vec![],
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                       "access_token": jwt(json!({"tid": "consented", "azp": "client-1", "roles": ["System"]}))}),
            )
        } else {
            Reply(
                400,
                vec![],
                json!({"error": "unauthorized_client",
                       "error_description": "AADSTS700016: Application with identifier 'client-1' was not found in the directory 'other'.",
                       "error_codes": [700016], "timestamp": "2025-01-01 00:00:00Z",
                       "trace_id": "t", "correlation_id": "c"}),
            )
        }
    })
    .await;
    let (client, _) = server.client();
    let secret = SecretString::new("app-secret-value");
    let probe = client
        .probe_client_credentials("consented", "client-1", &secret, "api://bookme/.default")
        .await
        .unwrap();
    let TokenProbe::Issued(claims) = probe else {
        panic!("{probe:?}")
    };
    assert_eq!(claims.roles, vec!["System"]);
    assert_eq!(claims.tid.as_deref(), Some("consented"));
    let form = server.seen()[0].clone();
    assert_eq!(form.target, "/consented/oauth2/v2.0/token");

    let probe = client
        .probe_client_credentials("other", "client-1", &secret, "api://bookme/.default")
        .await
        .unwrap();
    let TokenProbe::Rejected(e) = probe else {
        panic!("{probe:?}")
    };
    assert!(e.is_not_consented());
    assert_eq!(e.status, 400);
    assert!(!format!("{e:?}").contains("app-secret-value"));
}

#[tokio::test]
async fn graph_permission_names_match_the_least_privilege_table() {
    assert_eq!(
        Permission::ApplicationReadWriteOwnedBy.name(),
        Some("Application.ReadWrite.OwnedBy")
    );
    assert_eq!(Permission::None.name(), None);
}
