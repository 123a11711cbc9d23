//! The report's I/O: AppRegistrations, BankClients and TenantMappings listed through a kubeconfig (status only; Secrets are never
//! read), then printed as a table or JSON.

use std::path::PathBuf;

use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use super::{Inventory, build, render_table};
use crate::api::{AppRegistration, BankClient, TenantMapping};

/// How the report is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Two aligned tables: credentials, then tenant consent.
    #[default]
    Table,
    /// One JSON document with `credentials` and `consent` arrays.
    Json,
}

/// Arguments of `entra-operator report`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// `table` or `json`.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Only this namespace (default: all namespaces).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The kubeconfig to use (default: `$KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// A kube client as kubectl would build it from these flags.
pub async fn client(args: &ReportArgs) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
        (None, None) => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

async fn list<K>(client: &Client, namespace: Option<&str>) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing {}: {e}", K::plural(&())))?;
    Ok(list.items)
}

/// Every AppRegistration, BankClient and TenantMapping (in one namespace, or all).
pub async fn inventory(client: &Client, namespace: Option<&str>) -> anyhow::Result<Inventory> {
    let (app_registrations, bank_clients, tenant_mappings) = futures::try_join!(
        list::<AppRegistration>(client, namespace),
        list::<BankClient>(client, namespace),
        list::<TenantMapping>(client, namespace),
    )?;
    Ok(Inventory {
        app_registrations,
        bank_clients,
        tenant_mappings,
    })
}

/// The report's text in the requested format.
pub async fn report_text(client: &Client, args: &ReportArgs) -> anyhow::Result<String> {
    let inv = inventory(client, args.namespace.as_deref()).await?;
    let report = build(&inv, jiff::Timestamp::now());
    Ok(match args.output {
        OutputFormat::Table => render_table(&report),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
    })
}

/// `entra-operator report`: print the report on stdout.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let client = client(&args).await?;
    print!("{}", report_text(&client, &args).await?);
    Ok(())
}
