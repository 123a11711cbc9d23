//! `kube-emulator`: the Kubernetes API server emulator as a standalone process.

use std::path::PathBuf;

use clap::Parser;
use kube_emulator::{KubeEmulator, KubeEmulatorConfig};

/// An in-memory Kubernetes API server for tests, the sandbox and kubectl: core Secrets,
/// ConfigMaps, Namespaces, Events, Leases and CRDs (with their custom resources, validated against
/// the CRD schema and CEL rules). Listens on 127.0.0.1 and writes a kubeconfig for its address.
#[derive(Parser, Debug)]
#[command(name = "kube-emulator", version)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free port; the kubeconfig and stdout say which).
    #[arg(long, default_value_t = 0, env = "KUBE_EMULATOR_PORT")]
    port: u16,
    /// Where to write the kubeconfig for this emulator.
    #[arg(long, env = "KUBE_EMULATOR_KUBECONFIG")]
    kubeconfig_out: Option<PathBuf>,
    /// Directory of CRD YAML files to install at start.
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Serve HTTPS with a generated CA (written into the kubeconfig).
    #[arg(long)]
    tls: bool,
    /// Require this bearer token (written into the kubeconfig).
    #[arg(long, env = "KUBE_EMULATOR_TOKEN")]
    token: Option<String>,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 5)]
    bookmark_interval: u64,
    /// Watch events kept for watches from an old resource version.
    #[arg(long, default_value_t = 50_000)]
    history: usize,
    /// `always-allow` (every authenticated request) or `rbac` (Roles, ClusterRoles and their
    /// bindings decide; the kubeconfig's admin token may do anything; `kubectl create token`
    /// issues ServiceAccount tokens).
    #[arg(long, default_value = "always-allow", value_parser = ["always-allow", "rbac"])]
    authorization: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let emu = KubeEmulator::start(KubeEmulatorConfig {
        port: args.port,
        tls: args.tls,
        token: args.token,
        history: args.history,
        bookmark_interval: std::time::Duration::from_secs(args.bookmark_interval.max(1)),
        authorization: if args.authorization == "rbac" {
            kube_emulator::Authorization::Rbac
        } else {
            kube_emulator::Authorization::AlwaysAllow
        },
    })
    .await?;
    if let Some(dir) = &args.crds {
        let n = emu.apply_crds_from_dir(dir)?;
        tracing::info!(count = n, dir = %dir.display(), "installed CRDs");
    }
    if let Some(path) = &args.kubeconfig_out {
        emu.write_kubeconfig(path)?;
        tracing::info!(path = %path.display(), "wrote kubeconfig");
    }
    println!("kube-emulator listening on {}", emu.base_url());
    tokio::signal::ctrl_c().await?;
    emu.shutdown();
    Ok(())
}
