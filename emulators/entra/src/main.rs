//! `entra-emulator`: the Entra + Graph emulator as a standalone process, so the operator can be
//! killed and restarted against a live tenant. Prints its addresses and the operator's credentials as
//! one JSON line on stdout once listening; writes the state dump on exit when asked.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use entra_emulator::{
    AppPolicy, EmulatorConfig, EntraEmulator, OperatorSpec, Switches, TenantSpec, ThrottleMode,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Throttling {
    Off,
    Real,
    Scaled,
}

/// Microsoft Entra ID + Microsoft Graph emulator (HTTPS on 127.0.0.1).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "ENTRA_EMULATOR_PORT", default_value_t = 0)]
    port: u16,
    /// Write the CA certificate (PEM) here; clients must trust it.
    #[arg(long, env = "ENTRA_EMULATOR_CA_OUT")]
    ca_out: Option<PathBuf>,
    /// Write the start-up JSON (addresses, tenants, operator credentials) here as well as stdout.
    #[arg(long)]
    info_out: Option<PathBuf>,
    /// Write the state dump (JSON) here on exit.
    #[arg(long)]
    state_out: Option<PathBuf>,
    /// Home tenant name (its domain is NAME.onmicrosoft.com).
    #[arg(long, default_value = "contoso")]
    home_tenant: String,
    /// Home tenant id (default: derived from the name, stable across restarts).
    #[arg(long)]
    home_tenant_id: Option<String>,
    /// Customer tenant, as NAME or NAME=TENANT_ID; repeatable.
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Operator client id (default: derived from the home tenant, stable across restarts).
    #[arg(long, env = "ENTRA_EMULATOR_OPERATOR_CLIENT_ID")]
    operator_client_id: Option<String>,
    /// Operator client secret (default: generated).
    #[arg(long, env = "ENTRA_EMULATOR_OPERATOR_CLIENT_SECRET")]
    operator_client_secret: Option<String>,
    /// Identity throttling limits.
    #[arg(long, value_enum, default_value_t = Throttling::Off)]
    throttling: Throttling,
    /// With --throttling scaled: multiply every budget by this.
    #[arg(long, default_value_t = 0.01)]
    throttle_limit_factor: f64,
    /// With --throttling scaled: multiply every window by this.
    #[arg(long, default_value_t = 1.0)]
    throttle_window_factor: f64,
    /// New objects stay invisible to reads for this many milliseconds.
    #[arg(long, default_value_t = 0)]
    replication_delay_ms: u64,
    /// New credentials are refused by the token endpoint for this many milliseconds.
    #[arg(long, default_value_t = 0)]
    credential_delay_ms: u64,
    /// The admin-consent endpoint approves (a customer's admin clicks Accept).
    #[arg(long)]
    consent_approve: bool,
    /// App management policy: maximum password lifetime in seconds.
    #[arg(long)]
    max_password_lifetime_secs: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut home = TenantSpec::new(&args.home_tenant);
    home.id = args.home_tenant_id.clone();
    let customers = args
        .tenants
        .iter()
        .map(|t| {
            let (name, id) = t.split_once('=').unwrap_or((t, ""));
            let mut spec = TenantSpec::new(name);
            if !id.is_empty() {
                spec.id = Some(id.to_string());
            }
            spec
        })
        .collect();
    let throttling = match args.throttling {
        Throttling::Off => ThrottleMode::Off,
        Throttling::Real => ThrottleMode::Real,
        Throttling::Scaled => ThrottleMode::Scaled {
            limit_factor: args.throttle_limit_factor,
            window_factor: args.throttle_window_factor,
        },
    };
    let config = EmulatorConfig {
        port: args.port,
        ca_out: args.ca_out.clone(),
        home_tenant: home,
        customer_tenants: customers,
        operator: OperatorSpec {
            client_id: args.operator_client_id.clone(),
            client_secret: args.operator_client_secret.clone(),
            ..OperatorSpec::default()
        },
        extra_server_names: Vec::new(),
        switches: Switches {
            throttling,
            replication_delay_ms: args.replication_delay_ms,
            credential_delay_ms: args.credential_delay_ms,
            consent_approve: args.consent_approve,
            app_policy: AppPolicy {
                max_password_lifetime_secs: args.max_password_lifetime_secs,
                passwords_forbidden: false,
            },
            ..Switches::default()
        },
    };
    let emulator = EntraEmulator::start(config).await?;
    let info = serde_json::json!({
        "authorityHost": emulator.authority_host(),
        "graphEndpoint": emulator.graph_endpoint(),
        "port": emulator.port(),
        "caPemPath": emulator.ca_pem_path(),
        "homeTenantId": emulator.home_tenant_id(),
        "tenantIds": emulator.tenant_ids(),
        "operator": emulator.operator_credentials(),
        "controlApi": format!("{}/_emulator", emulator.authority_host()),
    });
    if let Some(path) = &args.info_out {
        std::fs::write(path, info.to_string())?;
    }
    println!("{info}");

    wait_for_signal().await;
    if let Some(path) = &args.state_out {
        std::fs::write(path, serde_json::to_string_pretty(&emulator.state_dump())?)?;
    }
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
