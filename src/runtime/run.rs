//! `entra-operator run`: logging, the Graph and kube clients, the admin server, leader election,
//! the controllers of every watched namespace, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::api::AppRegistration;
use crate::controllers::appregistration::PlanSettings;
use crate::controllers::appregistration::consent::ConsentSettings;
use crate::controllers::context::{Context, ControllerSettings};
use crate::controllers::wiring::{SharedWatch, api_for};
use crate::graph::{GraphClient, GraphClientBuilder, GraphConfig, GraphError, GraphObserver};

use super::admin::{Readiness, serve_admin};
use super::config::{LogFormat, RunArgs};
use super::leader::{Fence, LeaderElector, LeaseError};
use crate::metrics::{GraphRequestLabels, Metrics};

/// How long in-flight reconciles may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The controller name in Events and the Lease.
pub const CONTROLLER_NAME: &str = "entra-operator";

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("Microsoft Graph: {0}")]
    Graph(Box<GraphError>),
    #[error("Kubernetes client: {0}")]
    Kube(Box<kube::Error>),
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(#[from] kube::config::InferConfigError),
    #[error("admin server: {0}")]
    Io(#[from] std::io::Error),
    #[error("leadership lost, stopped at once: {0}")]
    LeaseLost(#[from] LeaseError),
}

impl From<GraphError> for RunError {
    fn from(e: GraphError) -> Self {
        RunError::Graph(Box::new(e))
    }
}

impl From<kube::Error> for RunError {
    fn from(e: kube::Error) -> Self {
        RunError::Kube(Box::new(e))
    }
}

/// Installs the global tracing subscriber: JSON lines or human-readable text, filtered by `level`
/// (`info`, or a filter such as `entra_operator=debug,kube=info`).
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), RunError> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| RunError::Config(format!("log level {level:?}: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only when a person reads stderr: files, pipes and log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| RunError::Config(format!("logging: {e}")))
}

/// Graph requests and 429s counted in the Prometheus registry.
impl GraphObserver for Metrics {
    fn request(&self, method: &'static str, status: Option<u16>, _elapsed: Duration) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.graph_requests
            .get_or_create(&GraphRequestLabels { method, status })
            .inc();
    }

    fn throttled(&self, _method: &'static str) {
        self.graph_throttled.inc();
    }

    fn rate_limited(&self, waited: Duration) {
        self.graph_budget_wait.inc_by(waited.as_secs_f64());
    }
}

/// The Graph configuration: Azure SDK environment variables for the identity, flags (and their
/// variables) for the endpoints and the extra CA.
pub fn graph_config(args: &RunArgs) -> Result<GraphConfig, GraphError> {
    let graph_endpoint = args.graph_endpoint.clone();
    let authority_host = args.authority_host.clone();
    let extra_ca = args
        .extra_ca_file
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    GraphConfig::from_lookup(move |key| match key {
        "GRAPH_ENDPOINT" => Some(graph_endpoint.clone()),
        "AZURE_AUTHORITY_HOST" => Some(authority_host.clone()),
        "ENTRA_CA_FILE" => extra_ca.clone(),
        other => std::env::var(other).ok().filter(|v| !v.is_empty()),
    })
}

/// A Graph client whose traffic is counted in `metrics`.
pub fn graph_client(
    config: &GraphConfig,
    metrics: Arc<Metrics>,
) -> Result<GraphClient, GraphError> {
    GraphClientBuilder::from_config(config)?
        .observer(metrics)
        .build()
}

/// Controller settings from the flags and the Graph configuration.
pub fn controller_settings(
    config: &GraphConfig,
    unique_name_prefix: &str,
    resync: Duration,
) -> ControllerSettings {
    let authority_host = config
        .authority_host
        .as_str()
        .trim_end_matches('/')
        .to_string();
    ControllerSettings {
        plan: PlanSettings {
            unique_name_prefix: unique_name_prefix.to_string(),
            consent: ConsentSettings {
                authority_host: authority_host.clone(),
                tenant_id: config.tenant_id.clone(),
            },
            operator_client_id: Some(config.client_id.clone()),
        },
        tenant_id: config.tenant_id.clone(),
        authority_host,
        resync,
        handover: Default::default(),
    }
}

/// A shutdown signal that many tasks can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once shutdown is requested (or the sender is gone).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Starts every controller for every watched namespace (`None`: all namespaces) on `tasks`.
pub fn spawn_controllers(
    tasks: &mut JoinSet<()>,
    ctx: &Arc<Context>,
    namespaces: &Option<Vec<String>>,
    concurrency: u16,
    shutdown: &Shutdown,
) {
    let scopes: Vec<Option<String>> = match namespaces {
        Some(list) => list.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    // The tenant's application and service principal changes, for quiet resyncs and to repair
    // drift early.
    tasks.spawn(ctx.follow_changes(shutdown.wait()));
    for ns in scopes {
        // One watch of AppRegistrations per scope, shared by all four controllers: one store of
        // them in memory instead of one per controller, and one list and watch on the API server.
        // Every subscription is taken before the watch runs, so each sees the first list.
        let apps = SharedWatch::<AppRegistration>::new();
        tasks.spawn(crate::controllers::appregistration::run(
            ctx.clone(),
            ns.clone(),
            concurrency,
            shutdown.wait(),
            apps.feed(),
            apps.feed(),
        ));
        tasks.spawn(crate::controllers::bankclient::run(
            ctx.clone(),
            ns.clone(),
            concurrency,
            shutdown.wait(),
            apps.feed(),
        ));
        tasks.spawn(crate::controllers::tenantmapping::run(
            ctx.clone(),
            ns.clone(),
            concurrency,
            shutdown.wait(),
            apps.feed(),
        ));
        tasks.spawn(crate::controllers::naaintegration::run(
            ctx.clone(),
            ns.clone(),
            concurrency,
            shutdown.wait(),
            apps.feed(),
        ));
        // The watch ends at shutdown; the controllers' streams then end with their subscriptions
        // once in-flight reconciles finish.
        let watch = apps.run(api_for(&ctx.client, &ns), watcher::Config::default());
        let stop = shutdown.wait();
        tasks.spawn(async move {
            tokio::select! {
                _ = watch => {}
                _ = stop => {}
            }
        });
    }
}

/// Marks readiness once Graph authentication works and the watched kinds can be listed; keeps
/// re-checking Graph authentication every minute so `/readyz` reflects a revoked credential.
pub fn spawn_readiness_probe(
    tasks: &mut JoinSet<()>,
    client: Client,
    graph: GraphClient,
    namespaces: Option<Vec<String>>,
    readiness: Arc<Readiness>,
) {
    tasks.spawn(async move {
        let scopes: Vec<Api<AppRegistration>> = match &namespaces {
            Some(list) => list
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
            None => vec![Api::all(client.clone())],
        };
        loop {
            let mut listed = true;
            for api in &scopes {
                if let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await {
                    warn!(error = %e, "cannot list AppRegistrations yet");
                    listed = false;
                }
            }
            if listed {
                readiness.set_caches_synced();
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let mut was_ok = None;
        loop {
            let ok = match graph.check_authentication().await {
                Ok(()) => true,
                Err(e) => {
                    if was_ok != Some(false) {
                        error!(error = %e, "Graph authentication fails; /readyz reports not ready");
                    }
                    false
                }
            };
            if ok && was_ok != Some(true) {
                info!("Graph authentication works");
            }
            readiness.set_graph_authenticated(ok);
            was_ok = Some(ok);
            tokio::time::sleep(if ok {
                Duration::from_secs(60)
            } else {
                Duration::from_secs(5)
            })
            .await;
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM received; shutting down"),
                    _ = tokio::signal::ctrl_c() => info!("SIGINT received; shutting down"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// This replica's identity in the Lease: `--identity`/`POD_NAME`, else host name and process id.
fn replica_identity(args: &RunArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "entra-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

/// `entra-operator run`. Logging must already be set up ([`init_logging`]).
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let namespaces = args.watched_namespaces();
    let identity = replica_identity(&args);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespaces = ?namespaces,
        concurrency = args.concurrency,
        resync_seconds = args.resync.as_secs(),
        leader_election = args.leader_election,
        identity = %identity,
        "starting entra-operator"
    );
    let metrics = Arc::new(Metrics::new());
    let config = graph_config(&args)?;
    // GraphConfig's Debug redacts the credential.
    info!(graph = %config.graph_endpoint, authority = %config.authority_host, tenant = %config.tenant_id, credential = config.credential.kind(), "Graph configuration");
    let graph = graph_client(&config, metrics.clone())?;
    let client = Client::try_default().await?;
    let mut settings = controller_settings(&config, &args.unique_name_prefix, args.resync.as_std());
    settings.handover = args
        .handover
        .settings(args.extra_ca_file.as_deref())
        .map_err(|e| RunError::Config(e.to_string()))?;
    info!(confirm_delay_seconds = settings.handover.confirm_delay.as_secs(), webhook = ?settings.handover.webhook.as_ref().map(|w| w.format), "handover settings");
    let registry = args
        .registry
        .build()
        .map_err(|e| RunError::Config(e.to_string()))?
        .map(Arc::new);
    if let Some(sink) = &registry {
        info!(bank_clients = %sink.bank_clients_layout().table, tenant_mappings = %sink.tenant_mappings_layout().table, migrate = args.registry.registry_database_migrate, "registry database sink configured");
    }
    let timings = args.lease_timings().map_err(RunError::Config)?;
    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            timings,
        )
    });
    // Every credential write checks the elector's fence: a replica that cannot prove it still
    // holds the lease stops before its next Graph, Secret or status write.
    let fence = elector
        .as_ref()
        .map_or_else(Fence::unfenced, LeaderElector::fence);
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            graph.clone(),
            settings,
            metrics.clone(),
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: Some(identity.clone()),
            },
        )
        .with_registry(registry)
        .with_fence(fence),
    );

    let (stop_tx, shutdown) = Shutdown::new();
    let readiness = Arc::new(Readiness::default());
    let (admin_addr, admin) = serve_admin(
        args.admin_addr,
        metrics.clone(),
        readiness.clone(),
        shutdown.wait(),
    )
    .await?;
    info!(addr = %admin_addr, "admin server listening (/livez, /readyz, /metrics)");
    let mut background = JoinSet::new();
    spawn_readiness_probe(
        &mut background,
        client.clone(),
        graph.clone(),
        namespaces.clone(),
        readiness.clone(),
    );

    let signal = termination_signal();
    tokio::pin!(signal);

    if let Some(elector) = &elector {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut signal => {
                let _ = stop_tx.send(true);
                background.abort_all();
                let _ = admin.await;
                return Ok(());
            }
        }
    }

    let mut controllers = JoinSet::new();
    spawn_controllers(
        &mut controllers,
        &ctx,
        &namespaces,
        args.concurrency,
        &shutdown,
    );
    let lost = async {
        match &elector {
            Some(elector) => elector.hold().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = &mut signal => Ok(()),
        lease = lost => Err(lease),
        _ = controllers.join_next() => {
            error!("a controller stopped unexpectedly; shutting down");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    background.abort_all();
    match outcome {
        Ok(()) => {
            // In-flight reconciles finish (bounded), then the lease goes to a standby at once.
            if tokio::time::timeout(SHUTDOWN_GRACE, async {
                while controllers.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                warn!(
                    grace_seconds = SHUTDOWN_GRACE.as_secs(),
                    "reconciles still running after the grace period; aborting them"
                );
                controllers.abort_all();
            }
            if let Some(elector) = &elector {
                elector.release().await;
            }
            let _ = admin.await;
            info!("stopped");
            Ok(())
        }
        Err(lost) => {
            // Another replica may be writing already: stop every reconcile where it is.
            controllers.abort_all();
            error!(error = %lost, "leadership lost; stopping at once");
            Err(RunError::LeaseLost(lost))
        }
    }
}
