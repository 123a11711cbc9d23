//! Both emulators in-process and the operator's controllers against them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use entra_emulator::{EmulatorConfig, EntraEmulator};
use entra_operator::api::AppRegistration;
use entra_operator::controllers::appregistration::PlanSettings;
use entra_operator::controllers::appregistration::consent::ConsentSettings;
use entra_operator::controllers::context::{Context, ControllerSettings, HandoverSettings};
use entra_operator::controllers::wiring::SharedWatch;
use entra_operator::graph::{
    CredentialConfig, GraphClient, GraphConfig, RetryPolicy, SecretString,
};
use entra_operator::metrics::Metrics;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use kube::runtime::watcher;
use kube::{Api, Client};
use kube_emulator::{Authorization, KubeEmulator, KubeEmulatorConfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Harness {
    pub kube: KubeEmulator,
    pub entra: EntraEmulator,
    pub client: Client,
    pub ctx: Arc<Context>,
    pub metrics: Arc<Metrics>,
    controller: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart's ServiceAccount and RBAC as Helm renders them with default values
/// (`tests/fixtures/chart/rbac.yaml`; conformance/helm checks it against the real Helm engine).
pub fn chart_rbac() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/chart/rbac.yaml"))
        .expect("tests/fixtures/chart/rbac.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).expect("rbac.yaml parses");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// A client authenticated as the ServiceAccount in `rbac` (created with its namespace, roles and
/// bindings) through a TokenRequest, as a pod's projected token would be.
async fn service_account_client(
    kube: &KubeEmulator,
    admin: &Client,
    admin_config: &kube::Config,
    rbac: Vec<Value>,
) -> Client {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let account = rbac
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .expect("the chart renders a ServiceAccount")
        .clone();
    let namespace = account["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let name = account["metadata"]["name"].as_str().unwrap().to_string();
    let _ = kube.create(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
    }));
    for object in rbac {
        kube.create(object).expect("chart RBAC object");
    }
    let token = kube::Api::<ServiceAccount>::namespaced(admin.clone(), &namespace)
        .create_token_request(
            &name,
            &Default::default(),
            &TokenRequest {
                spec: TokenRequestSpec::default(),
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;
    let mut config = admin_config.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).expect("ServiceAccount client")
}

/// The Graph application permissions the README lists for every feature, least privilege first
/// (no `Application.ReadWrite.All`).
pub const LEAST_PRIVILEGE: &[&str] = &[
    "Application.ReadWrite.OwnedBy",
    "Application.Read.All",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "CrossTenantInformation.ReadBasic.All",
];

/// The operator's controller context as `run` builds it: a Graph client for `graph_config`, a kube
/// client, the consent settings of the operator's home tenant and a 5-minute resync.
pub fn operator_context(
    client: Client,
    graph_config: &GraphConfig,
    metrics: Arc<Metrics>,
    unique_name_prefix: &str,
) -> Context {
    let graph = GraphClient::new(graph_config).expect("graph client");
    let authority_host = graph_config.authority_host.to_string();
    let authority_host = authority_host.trim_end_matches('/').to_string();
    let tenant_id = graph_config.tenant_id.clone();
    let settings = ControllerSettings {
        plan: PlanSettings {
            unique_name_prefix: unique_name_prefix.into(),
            consent: ConsentSettings {
                authority_host: authority_host.clone(),
                tenant_id: tenant_id.clone(),
            },
            operator_client_id: Some(graph_config.client_id.clone()),
        },
        tenant_id,
        authority_host,
        resync: Duration::from_secs(300),
        handover: Default::default(),
    };
    Context::new(
        client,
        graph,
        settings,
        metrics,
        Reporter {
            controller: "entra-operator".into(),
            instance: Some("test".into()),
        },
    )
}

/// All four controllers (all namespaces) under one shutdown, as `run` starts them; send on the
/// channel (or drop it) to stop them.
pub fn spawn_all_controllers(ctx: Arc<Context>) -> (oneshot::Sender<()>, JoinHandle<()>) {
    use entra_operator::controllers::{appregistration, bankclient, naaintegration, tenantmapping};
    use futures::FutureExt;
    let (tx, rx) = oneshot::channel::<()>();
    let stop = rx.shared();
    let signal = move || {
        let stop = stop.clone();
        async move {
            let _ = stop.await;
        }
    };
    // One AppRegistration watch shared by the four, as `run` wires them.
    let apps = SharedWatch::<AppRegistration>::new();
    let (a, b, c, d, e) = (
        apps.feed(),
        apps.feed(),
        apps.feed(),
        apps.feed(),
        apps.feed(),
    );
    let watch = apps.run(Api::all(ctx.client.clone()), watcher::Config::default());
    let handle = tokio::spawn(async move {
        let controllers = async {
            futures::join!(
                appregistration::run(ctx.clone(), None, 4, signal(), a, b),
                bankclient::run(ctx.clone(), None, 2, signal(), c),
                tenantmapping::run(ctx.clone(), None, 2, signal(), d),
                naaintegration::run(ctx.clone(), None, 2, signal(), e),
            )
        };
        tokio::select! {
            _ = controllers => {}
            _ = watch => {}
        }
    });
    (tx, handle)
}

/// The AppRegistration controller alone (all namespaces) with its AppRegistration watch, until
/// `shutdown` resolves and in-flight reconciles finish.
pub async fn run_app_controller(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let apps = SharedWatch::<AppRegistration>::new();
    let (trigger, changes) = (apps.feed(), apps.feed());
    let watch = apps.run(Api::all(ctx.client.clone()), watcher::Config::default());
    tokio::select! {
        _ = entra_operator::controllers::appregistration::run(
            ctx, None, concurrency, shutdown, trigger, changes,
        ) => {}
        _ = watch => {}
    }
}

/// What `spec.owners` needs besides [`LEAST_PRIVILEGE`]: `Application.ReadWrite.OwnedBy` cannot add
/// another owner (Microsoft's "application: add owners" page).
pub const OWNER_PERMISSIONS: &[&str] = &["Application.ReadWrite.All", "Directory.Read.All"];

/// Retries tuned for tests: quick, bounded.
fn test_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        ..RetryPolicy::default()
    }
}

impl Harness {
    /// Both emulators, the CRDs installed, a kube client and a Graph client; no controller yet.
    pub async fn start() -> Harness {
        Self::start_with(EmulatorConfig::default()).await
    }

    pub async fn start_with(entra_config: EmulatorConfig) -> Harness {
        Self::start_with_registry(entra_config, None).await
    }

    /// As `start_with`, the controllers also publishing to a registry database sink.
    pub async fn start_with_registry(
        entra_config: EmulatorConfig,
        registry: Option<Arc<entra_operator::registry::RegistrySink>>,
    ) -> Harness {
        Self::start_with_rbac(entra_config, registry, chart_rbac()).await
    }

    /// The general form: the operator runs as the chart's ServiceAccount with exactly the RBAC
    /// objects `rbac` (normally [`chart_rbac`], what Helm renders; a test may remove a rule).
    pub async fn start_with_rbac(
        entra_config: EmulatorConfig,
        registry: Option<Arc<entra_operator::registry::RegistrySink>>,
        rbac: Vec<Value>,
    ) -> Harness {
        Self::start_full(entra_config, registry, rbac, None).await
    }

    /// The operator configured with these handover settings (confirmation delay, webhook).
    pub async fn start_with_handover(handover: HandoverSettings) -> Harness {
        Self::start_full(
            EmulatorConfig::default(),
            None,
            chart_rbac(),
            Some(handover),
        )
        .await
    }

    async fn start_full(
        mut entra_config: EmulatorConfig,
        registry: Option<Arc<entra_operator::registry::RegistrySink>>,
        rbac: Vec<Value>,
        handover: Option<HandoverSettings>,
    ) -> Harness {
        // Every end-to-end test checks the operator's Graph bodies (and the emulator's answers)
        // against Graph's published v1.0 schema; `Drop` fails the test on any violation.
        entra_config.switches.schema_contract = true;
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        // RBAC on, as on a real cluster: the test's own client is the admin, the operator's is the
        // chart's ServiceAccount.
        let kube = KubeEmulator::start(KubeEmulatorConfig {
            authorization: Authorization::Rbac,
            ..KubeEmulatorConfig::default()
        })
        .await
        .expect("kube emulator");
        kube.apply_crds_from_dir(root().join("crds")).expect("crds");
        let entra = EntraEmulator::start(entra_config)
            .await
            .expect("entra emulator");
        // The operator's identity holds exactly the README's least-privilege permissions
        // ("Required Graph permissions"), so that table is proven by the suite, not claimed.
        entra.set_operator_graph_roles(LEAST_PRIVILEGE);
        let kubeconfig = Kubeconfig::from_yaml(&kube.kubeconfig_yaml()).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        let client = Client::try_from(config.clone()).unwrap();
        let operator_client = service_account_client(&kube, &client, &config, rbac).await;
        let creds = entra.operator_credentials();
        let mut graph_config = GraphConfig::new(
            creds.tenant_id.clone(),
            creds.client_id.clone(),
            CredentialConfig::ClientSecret {
                secret: SecretString::new(creds.client_secret.clone()),
            },
        );
        graph_config.graph_endpoint = creds.graph_endpoint.parse().unwrap();
        graph_config.authority_host = creds.authority_host.parse().unwrap();
        graph_config.extra_ca_pem = Some(entra.ca_pem_path().to_path_buf());
        graph_config.retry = test_retry();
        // The emulator issues Graph tokens for Graph's real resource URI, as Entra does.
        graph_config.token_scope = Some("https://graph.microsoft.com/.default".into());
        let metrics = Arc::new(Metrics::new());
        let mut ctx = operator_context(
            operator_client,
            &graph_config,
            metrics.clone(),
            "entra-operator",
        )
        .with_registry(registry);
        ctx.settings.handover = handover.unwrap_or_default();
        let ctx = Arc::new(ctx);
        Harness {
            kube,
            entra,
            client,
            ctx,
            metrics,
            controller: None,
        }
    }

    /// Start the AppRegistration controller (all namespaces).
    pub fn start_controllers(&mut self) {
        let (tx, rx) = oneshot::channel();
        let ctx = self.ctx.clone();
        let handle = tokio::spawn(async move {
            run_app_controller(ctx, 4, async {
                let _ = rx.await;
            })
            .await;
        });
        self.controller = Some((tx, handle));
    }

    /// Stop the controller (as a process exit would, but letting in-flight reconciles finish).
    pub async fn stop_controllers(&mut self) {
        if let Some((tx, handle)) = self.controller.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    /// Kill the controller as a crash would: in-flight reconciles stop wherever they are.
    pub async fn kill_controllers(&mut self) {
        if let Some((_tx, handle)) = self.controller.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Create an object through the API server (JSON or YAML documents).
    pub async fn apply(&self, doc: Value) -> Value {
        self.kube.create(doc).expect("create")
    }

    pub fn api<K>(&self, namespace: &str) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        kube::Api::namespaced(self.client.clone(), namespace)
    }

    /// Waits until `check` returns Some, polling the API server.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The live (not soft-deleted) application with this appId as the emulator holds it (any tenant),
/// without going through the operator's Graph client.
pub fn emulator_app(h: &Harness, app_id: &str) -> Option<Value> {
    let dump = h.entra.state_dump();
    dump["tenants"]
        .as_array()?
        .iter()
        .flat_map(|t| t["applications"].as_array().cloned().unwrap_or_default())
        .find(|a| a["appId"] == app_id && a["deletedDateTime"].is_null())
}

impl Harness {
    /// The operator's identity holds the README's least-privilege permissions and `extra`.
    pub fn grant_least_privilege_and(&self, extra: &[&str]) {
        let roles: Vec<&str> = LEAST_PRIVILEGE.iter().chain(extra).copied().collect();
        self.entra.set_operator_graph_roles(&roles);
    }
}

impl Harness {
    /// Start all four controllers (AppRegistration, BankClient, TenantMapping, NaaIntegration; all
    /// namespaces) under one shutdown, as `run` does. `stop_controllers`/`kill_controllers` stop them.
    pub fn start_all_controllers(&mut self) {
        self.controller = Some(spawn_all_controllers(self.ctx.clone()));
    }
}

/// Gets a token with the `azure_identity` crate's client-secret credential, configured from nothing
/// but a Secret's keys read as the Azure SDKs read environment variables (plus trust in the
/// emulator's CA), as a consumer of the Secret would, and returns its claims.
pub async fn azure_identity_token_claims(
    h: &Harness,
    secret_data: &std::collections::BTreeMap<String, String>,
    scope: &str,
) -> Result<entra_operator::graph::TokenClaims, String> {
    secret_token_claims(secret_data, scope, Some(h.entra.ca_pem_path())).await
}

/// A token for a certificate Secret's values through the operator's own azure-identity
/// configuration, with `client.pem` written to a file as a mounted Secret would be
/// (`AZURE_CLIENT_CERTIFICATE_PATH`).
#[allow(dead_code)]
pub async fn certificate_token_claims(
    h: &Harness,
    secret_data: &std::collections::BTreeMap<String, String>,
    scope: &str,
) -> Result<entra_operator::graph::TokenClaims, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "entra-cert-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("client.pem");
    let pem = secret_data
        .get("client.pem")
        .ok_or("the Secret has no client.pem")?;
    std::fs::write(&path, pem).map_err(|e| e.to_string())?;
    let mut env = secret_data.clone();
    env.remove("AZURE_CLIENT_SECRET");
    env.insert(
        "AZURE_CLIENT_CERTIFICATE_PATH".into(),
        path.display().to_string(),
    );
    let result = secret_token_claims(&env, scope, Some(h.entra.ca_pem_path())).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// As [`azure_identity_token_claims`], trusting `extra_ca` (if any) besides the system's roots:
/// for a target that is not a [`Harness`] (a real tenant trusts the system roots alone).
pub async fn secret_token_claims(
    secret_data: &std::collections::BTreeMap<String, String>,
    scope: &str,
    extra_ca: Option<&std::path::Path>,
) -> Result<entra_operator::graph::TokenClaims, String> {
    use entra_operator::graph::{
        AzureIdentityTokenSource, TokenClaims, TokenSource, build_http_client,
    };
    let mut config =
        GraphConfig::from_lookup(|k| secret_data.get(k).cloned()).map_err(|e| e.to_string())?;
    config.token_scope = Some(scope.to_string());
    config.extra_ca_pem = extra_ca.map(std::path::Path::to_path_buf);
    let http = build_http_client(config.extra_ca_pem.as_deref(), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let source = AzureIdentityTokenSource::from_config(&config, http).map_err(|e| e.to_string())?;
    let token = source.token().await.map_err(|e| e.to_string())?;
    TokenClaims::decode_unverified(token.expose()).map_err(|e| e.to_string())
}

/// A Secret's data as strings (the operator writes UTF-8 values).
pub async fn secret_data(
    h: &Harness,
    namespace: &str,
    name: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let secret = h
        .api::<k8s_openapi::api::core::v1::Secret>(namespace)
        .get_opt(name)
        .await
        .unwrap()?;
    Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
    )
}

/// A client-credentials token request for Microsoft Graph with a Secret's values.
pub async fn probe_with_secret(
    h: &Harness,
    data: &std::collections::BTreeMap<String, String>,
    scope: &str,
) -> Result<entra_operator::graph::TokenProbe, entra_operator::graph::GraphError> {
    h.ctx
        .graph
        .probe_client_credentials(
            &data["AZURE_TENANT_ID"],
            &data["AZURE_CLIENT_ID"],
            &SecretString::new(data["AZURE_CLIENT_SECRET"].clone()),
            scope,
        )
        .await
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let violations = self.entra.contract_violations();
        assert!(
            violations.is_empty(),
            "Graph bodies outside Microsoft's v1.0 schema: {violations:#?}"
        );
    }
}
