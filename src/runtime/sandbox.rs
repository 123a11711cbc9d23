//! `entra-operator sandbox`: both emulators and the operator in one process. Installs the CRDs,
//! applies the examples, shows each resource's progress until it is Ready, and writes a kubeconfig
//! for `kubectl`. The sandbox also plays the customer tenants' admins: it creates the tenants the
//! examples name and consents to the multi-tenant apps there once they exist.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use entra_emulator::{EmulatorConfig, EntraEmulator, TenantSpec};
use kube::api::{ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};
use serde_json::Value;
use tokio::task::JoinSet;
use tracing::warn;

use crate::api::{AppRegistration, BankClient, NaaIntegration, TenantMapping};
use crate::controllers::context::Context;
use crate::graph::{CredentialConfig, GraphConfig, SecretString};

use super::admin::{Readiness, serve_admin};
use super::config::LogFormat;
use super::run::{
    CONTROLLER_NAME, RunError, Shutdown, controller_settings, graph_client, init_logging,
    spawn_controllers, spawn_readiness_probe, termination_signal,
};
use crate::metrics::Metrics;

/// The chart's ServiceAccount and RBAC as Helm renders them with default values.
const CHART_RBAC: &str = include_str!("../../tests/fixtures/chart/rbac.yaml");
const CHART_NAMESPACE: &str = "entra-system";
const CHART_SERVICE_ACCOUNT: &str = "entra-operator";

/// Flags of `entra-operator sandbox`.
#[derive(Args, Clone, Debug)]
pub struct SandboxArgs {
    /// Folder of resources to apply (every `*.yaml`/`*.yml` file, in name order).
    #[arg(long, default_value = "examples")]
    pub apply: PathBuf,

    /// Where to write the kubeconfig for `kubectl` (default: `entra-operator-sandbox.kubeconfig`
    /// in the system's temporary folder).
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,

    /// Exit 0 once every resource is Ready, non-zero (with the reason) if that takes longer than
    /// `--timeout`. For scripts and CI.
    #[arg(long)]
    pub exit_when_ready: bool,

    /// How long `--exit-when-ready` waits, e.g. `120s` or `5m`.
    #[arg(long, default_value = "120s")]
    pub timeout: crate::api::Duration,

    /// Address of the operator's admin server (`/livez`, `/readyz`, `/metrics`); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin_addr: SocketAddr,

    /// Port of the Kubernetes API emulator on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub kube_port: u16,

    /// Port of the Entra ID / Microsoft Graph emulator on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub entra_port: u16,

    /// Operator log level (the progress lines are printed regardless), e.g. `info`.
    #[arg(long, env = "LOG_LEVEL", default_value = "warn")]
    pub log_level: String,
}

/// The four kinds, for listing.
fn kinds() -> Vec<(&'static str, ApiResource)> {
    vec![
        (
            "AppRegistration",
            ApiResource::erase::<AppRegistration>(&()),
        ),
        ("BankClient", ApiResource::erase::<BankClient>(&())),
        ("TenantMapping", ApiResource::erase::<TenantMapping>(&())),
        ("NaaIntegration", ApiResource::erase::<NaaIntegration>(&())),
    ]
}

fn sandbox_error(what: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Config(format!("sandbox: {what}: {e}"))
}

/// The documents of every YAML file in `dir`, in file-name order, with their file names.
fn read_documents(dir: &Path) -> Result<Vec<(String, Value)>, RunError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| sandbox_error(&format!("reading {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| sandbox_error(&format!("reading {}", path.display()), e))?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for doc in kube_emulator::yaml_documents(&text)
            .map_err(|e| sandbox_error(&format!("parsing {}", path.display()), e))?
        {
            out.push((file.clone(), doc));
        }
    }
    Ok(out)
}

/// Customer tenants the documents name: TenantMappings' `spec.tenantId` and NaaIntegrations'
/// `spec.tenants`.
pub fn customer_tenants(docs: &[Value]) -> BTreeSet<String> {
    let mut tenants = BTreeSet::new();
    for doc in docs {
        match doc["kind"].as_str() {
            Some("TenantMapping") => {
                if let Some(t) = doc["spec"]["tenantId"].as_str() {
                    tenants.insert(t.to_ascii_lowercase());
                }
            }
            Some("NaaIntegration") => {
                for t in doc["spec"]["tenants"].as_array().into_iter().flatten() {
                    // Entries are tenant IDs, or objects with a `tenantId`.
                    let id = t.as_str().or_else(|| t["tenantId"].as_str());
                    if let Some(id) = id {
                        tenants.insert(id.to_ascii_lowercase());
                    }
                }
            }
            _ => {}
        }
    }
    tenants
}

/// One resource's progress as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    ready: String,
    reason: String,
    message: String,
}

fn progress_of(obj: &DynamicObject) -> Progress {
    let ready = obj.data["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) => Progress {
            ready: c["status"].as_str().unwrap_or("Unknown").to_string(),
            reason: c["reason"].as_str().unwrap_or("").to_string(),
            message: c["message"].as_str().unwrap_or("").to_string(),
        },
        None => Progress {
            ready: "Unknown".into(),
            reason: "Pending".into(),
            message: "not reconciled yet".into(),
        },
    }
}

/// `sandbox`: returns the process exit code.
pub async fn sandbox(args: SandboxArgs) -> Result<i32, RunError> {
    init_logging(LogFormat::Text, &args.log_level)?;
    let docs = read_documents(&args.apply)?;
    if docs.is_empty() {
        return Err(sandbox_error(
            "nothing to apply",
            format!("no YAML in {}", args.apply.display()),
        ));
    }

    // Kubernetes API emulator over HTTPS (kubectl and the kube client trust its CA through the
    // kubeconfig), with the CRDs the operator generates (the same as `crds/`).
    // RBAC as on a real cluster: kubectl (the kubeconfig written below) is the admin; the operator
    // is the chart's ServiceAccount with exactly the RBAC Helm renders with default values
    // (tests/fixtures/chart/rbac.yaml, checked against the real Helm engine by conformance/helm).
    let kube = KubeEmulator::start(KubeEmulatorConfig {
        port: args.kube_port,
        tls: true,
        authorization: kube_emulator::Authorization::Rbac,
        ..Default::default()
    })
    .await
    .map_err(|e| sandbox_error("starting the Kubernetes API emulator", e))?;
    for crd in crate::api::crds() {
        let doc = serde_json::to_value(&crd).map_err(|e| sandbox_error("CRD", e))?;
        kube.create_crd(doc)
            .map_err(|e| sandbox_error("installing CRDs", e))?;
    }
    let _ = kube.create(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHART_NAMESPACE}
    }));
    for object in kube_emulator::yaml_documents(CHART_RBAC)
        .map_err(|e| sandbox_error("the chart's RBAC", e))?
    {
        kube.create(object)
            .map_err(|e| sandbox_error("creating the chart's RBAC", e))?;
    }
    let kubeconfig_path = args
        .kubeconfig_out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("entra-operator-sandbox.kubeconfig"));
    kube.write_kubeconfig(&kubeconfig_path)
        .map_err(|e| sandbox_error("writing the kubeconfig", e))?;

    // Entra ID emulator with the customer tenants the examples name.
    let tenants = customer_tenants(&docs.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>());
    let entra = EntraEmulator::start(EmulatorConfig {
        port: args.entra_port,
        ..Default::default()
    })
    .await
    .map_err(|e| sandbox_error("starting the Entra ID emulator", e))?;
    for id in &tenants {
        let mut spec = TenantSpec::new(&format!("customer-{}", &id[..id.len().min(8)]));
        spec.id = Some(id.clone());
        entra.add_tenant(spec);
    }
    let creds = entra.operator_credentials();
    println!("Kubernetes API emulator  {}", kube.base_url());
    println!("Entra ID emulator        {}", entra.authority_host());
    println!(
        "Customer tenants         {}",
        if tenants.is_empty() {
            "(none)".to_string()
        } else {
            tenants.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    );

    // The operator, as `run` wires it, without leader election (one process).
    let operator_kubeconfig = kube
        .service_account_kubeconfig_yaml(CHART_NAMESPACE, CHART_SERVICE_ACCOUNT)
        .map_err(|e| sandbox_error("the operator's ServiceAccount token", e))?;
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&operator_kubeconfig)
                .map_err(|e| sandbox_error("kubeconfig", e))?,
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| sandbox_error("kubeconfig", e))?,
    )?;
    let mut graph_config = GraphConfig::new(
        creds.tenant_id.clone(),
        creds.client_id.clone(),
        CredentialConfig::ClientSecret {
            secret: SecretString::new(creds.client_secret.clone()),
        },
    );
    graph_config.graph_endpoint = creds
        .graph_endpoint
        .parse()
        .map_err(|e| sandbox_error("Graph endpoint", e))?;
    graph_config.authority_host = creds
        .authority_host
        .parse()
        .map_err(|e| sandbox_error("authority host", e))?;
    graph_config.extra_ca_pem = Some(entra.ca_pem_path().to_path_buf());
    // The emulator issues Graph tokens for Graph's real resource URI, as Entra does.
    graph_config.token_scope = Some("https://graph.microsoft.com/.default".into());
    let metrics = Arc::new(Metrics::new());
    let graph = graph_client(&graph_config, metrics.clone())?;
    let ctx = Arc::new(Context::new(
        client.clone(),
        graph.clone(),
        controller_settings(&graph_config, "entra-operator", Duration::from_secs(300)),
        metrics.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some("sandbox".into()),
        },
    ));
    let (stop_tx, shutdown) = Shutdown::new();
    let readiness = Arc::new(Readiness::default());
    let (admin_addr, _admin) =
        serve_admin(args.admin_addr, metrics, readiness.clone(), shutdown.wait()).await?;
    let mut tasks = JoinSet::new();
    spawn_readiness_probe(&mut tasks, client.clone(), graph, None, readiness);
    spawn_controllers(&mut tasks, &ctx, &None, 4, &shutdown);
    println!("Operator admin server    http://{admin_addr}  (/livez /readyz /metrics)");
    println!(
        "Operator identity        system:serviceaccount:{CHART_NAMESPACE}:{CHART_SERVICE_ACCOUNT} (the chart's RBAC)"
    );
    println!();

    // Apply the resources.
    let mut expected: Vec<(String, String)> = Vec::new();
    for (file, mut doc) in docs {
        let kind = doc["kind"].as_str().unwrap_or("").to_string();
        let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
        // EntraPolicy is cluster-scoped: it has no namespace.
        if doc["metadata"]["namespace"].is_null() && kind != "EntraPolicy" {
            doc["metadata"]["namespace"] = Value::String("default".into());
        }
        match kube.create(doc) {
            Ok(_) => {
                println!("applied  {kind}/{name}  ({file})");
                if kinds().iter().any(|(k, _)| *k == kind) {
                    expected.push((kind, name));
                }
            }
            Err(e) => println!("skipped  {kind}/{name}  ({file}): {e}"),
        }
    }
    print_kubectl_hint(&kubeconfig_path);
    println!();
    println!("Progress (Ctrl-C to stop):");

    let deadline = tokio::time::Instant::now() + args.timeout.as_std();
    let mut shown: BTreeMap<(String, String), Progress> = BTreeMap::new();
    let mut consented: HashSet<(String, String, i64)> = HashSet::new();
    let mut nudged: BTreeSet<String> = BTreeSet::new();
    let mut all_ready_announced = false;
    let signal = termination_signal();
    tokio::pin!(signal);
    let code = loop {
        let (state, apps) = match observe(&client).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "listing resources failed");
                (BTreeMap::new(), Vec::new())
            }
        };
        // The customer admins consent to the multi-tenant apps once those exist.
        for (name, app_id, generation) in apps {
            for tenant in &tenants {
                if consented.insert((tenant.clone(), app_id.clone(), generation))
                    && entra.grant_admin_consent(tenant, &app_id).is_some()
                {
                    println!("  customer tenant {tenant}: admin consented to {name} ({app_id})");
                    nudged.insert(tenant.clone());
                }
            }
        }
        // Consent changed in these tenants: have their TenantMappings probe again now rather
        // than at their next interval.
        for tenant in std::mem::take(&mut nudged) {
            nudge_tenant_mappings(&client, &tenant).await;
        }
        for (key, progress) in &state {
            if shown.get(key) != Some(progress) {
                let detail = if progress.message.is_empty() {
                    progress.reason.clone()
                } else {
                    format!("{}: {}", progress.reason, progress.message)
                };
                println!(
                    "  {:<16} {:<28} Ready={:<7} {}",
                    key.0, key.1, progress.ready, detail
                );
                shown.insert(key.clone(), progress.clone());
            }
        }
        let pending: Vec<&(String, String)> = expected
            .iter()
            .filter(|k| state.get(*k).is_none_or(|p| p.ready != "True"))
            .collect();
        if pending.is_empty() && !all_ready_announced {
            all_ready_announced = true;
            println!();
            println!("All {} resources are Ready.", expected.len());
            print_kubectl_hint(&kubeconfig_path);
            if args.exit_when_ready {
                break 0;
            }
        }
        if args.exit_when_ready && tokio::time::Instant::now() >= deadline {
            println!();
            println!("Not all resources became Ready within {}:", args.timeout);
            for key in pending {
                let why = state.get(key).map_or_else(
                    || "not found".to_string(),
                    |p| format!("Ready={} {}: {}", p.ready, p.reason, p.message),
                );
                // No Ready condition at all: nothing ever reconciled it.
                let hint = if state.get(key).is_none_or(|p| p.reason == "Pending") {
                    " (never reconciled: does this build run a controller for this kind?)"
                } else {
                    ""
                };
                println!("  {} {}: {why}{hint}", key.0, key.1);
            }
            break 1;
        }
        tokio::select! {
            _ = &mut signal => break if args.exit_when_ready { 130 } else { 0 },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    kube.shutdown();
    Ok(code)
}

/// Sets the recheck annotation of every TenantMapping of `tenant`, so it probes consent again now.
async fn nudge_tenant_mappings(client: &Client, tenant: &str) {
    let resource = ApiResource::erase::<TenantMapping>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let Ok(list) = api.list(&Default::default()).await else {
        return;
    };
    for tm in list {
        let matches = tm.data["spec"]["tenantId"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(tenant));
        let (Some(ns), Some(name)) = (tm.metadata.namespace.clone(), tm.metadata.name.clone())
        else {
            continue;
        };
        if !matches {
            continue;
        }
        // What an engineer does after a customer's admin consented: ask for a recheck.
        let patch = serde_json::json!({"metadata": {"annotations": {
            crate::api::RECHECK_ANNOTATION: jiff::Timestamp::now().to_string()
        }}});
        let namespaced: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        if let Err(e) = namespaced
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            warn!(error = %e, tenant_mapping = %name, "could not nudge TenantMapping");
        }
    }
}

fn print_kubectl_hint(kubeconfig: &Path) {
    println!();
    println!("Look around with kubectl:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get appregistrations,bankclients,tenantmappings,naaintegrations");
    println!("  kubectl describe appregistration management-api");
    println!(
        "Generated credentials are in the Secrets named in each resource's spec \
         (kubectl get secrets -l app.kubernetes.io/managed-by=entra-operator)."
    );
}

type Observed = (
    BTreeMap<(String, String), Progress>,
    Vec<(String, String, i64)>,
);

/// Every resource's progress, and the (name, appId, generation) of Ready apps the customer admins should consent
/// to: multi-tenant AppRegistrations and NaaIntegrations' apps.
async fn observe(client: &Client) -> Result<Observed, kube::Error> {
    let mut state = BTreeMap::new();
    let mut apps = Vec::new();
    for (kind, resource) in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for obj in api.list(&Default::default()).await? {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let status = &obj.data["status"];
            let multi_tenant = obj.data["spec"]["signInAudience"]
                .as_str()
                .is_some_and(|a| a.contains("Multiple"));
            let progress = progress_of(&obj);
            // Consent once the app is Ready, i.e. its permissions and pre-authorizations are
            // written; again when its spec changes (a new generation).
            if kind == "NaaIntegration" || multi_tenant {
                // -1 until Ready: consent as soon as the app exists, and again once it is Ready.
                let generation = if progress.ready == "True" {
                    obj.metadata.generation.unwrap_or(0)
                } else {
                    -1
                };
                for field in ["appId", "webApiAppId"] {
                    if let Some(id) = status[field].as_str().filter(|s| !s.is_empty()) {
                        apps.push((name.clone(), id.to_string(), generation));
                    }
                }
            }
            state.insert((kind.to_string(), name), progress);
        }
    }
    Ok((state, apps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_customer_tenants_of_mappings_and_naa() {
        let docs = vec![
            serde_json::json!({"kind": "TenantMapping", "spec": {"tenantId": "AAA"}}),
            serde_json::json!({"kind": "NaaIntegration", "spec": {"tenants": ["bbb", {"tenantId": "ccc"}]}}),
            serde_json::json!({"kind": "AppRegistration", "spec": {}}),
        ];
        let t: Vec<String> = customer_tenants(&docs).into_iter().collect();
        assert_eq!(t, vec!["aaa", "bbb", "ccc"]);
    }
}
