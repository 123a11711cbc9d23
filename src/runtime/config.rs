//! `entra-operator run` configuration: flags, each with a matching environment variable.
//!
//! Azure credentials follow the Azure SDK conventions (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, and one of
//! `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::api::Duration;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Flags of `entra-operator run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated. Empty: all namespaces.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,

    /// Reconciles running at once, per kind. A worker never waits on Entra's replication (the
    /// resource is requeued), so workers only wait on Graph round trips and the write budget: 16
    /// keeps the budget, not the workers, the limit (BENCHMARKS.md, "Scale").
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// How often every resource is reconciled even without changes (e.g. `1h`).
    #[arg(long, env = "RESYNC_PERIOD", default_value = "1h")]
    pub resync: Duration,

    /// Prefix of the `uniqueName` given to applications: `<prefix>-<namespace>-<name>`. Changing it
    /// orphans existing applications, so pick it once per cluster.
    #[arg(long, env = "UNIQUE_NAME_PREFIX", default_value = "entra-operator")]
    pub unique_name_prefix: String,

    /// Microsoft Graph endpoint (sovereign clouds or the emulator), without `/v1.0`.
    #[arg(
        long,
        env = "GRAPH_ENDPOINT",
        default_value = "https://graph.microsoft.com"
    )]
    pub graph_endpoint: String,

    /// Entra authority host (sovereign clouds or the emulator).
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com"
    )]
    pub authority_host: String,

    /// Extra CA certificate (PEM) to trust for Graph and the authority, e.g. the emulator's.
    #[arg(long, env = "ENTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log level or filter, e.g. `info` or `entra_operator=debug,kube=info`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Address of the admin server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,

    /// Elect a leader through a Lease so only one replica reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "entra-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (usually the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a lease is valid after its last renewal; a standby takes over no earlier than this
    /// after the leader's last renewal (client-go's `LeaseDuration`).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s")]
    pub lease_duration: Duration,

    /// The leader stops writing, and gives up, when it could not renew for this long; must be
    /// shorter than `--lease-duration` (client-go's `RenewDeadline`).
    #[arg(long, env = "LEASE_RENEW_DEADLINE", default_value = "10s")]
    pub lease_renew_deadline: Duration,

    /// How often the leader renews and a standby looks at the lease (client-go's `RetryPeriod`);
    /// must be shorter than `--lease-renew-deadline`.
    #[arg(long, env = "LEASE_RETRY_PERIOD", default_value = "2s")]
    pub lease_retry_period: Duration,

    /// The database registry sink (off without `--registry-database-url`).
    #[command(flatten)]
    pub registry: crate::registry::config::RegistryArgs,

    /// BankClient secret handovers: confirmation delay and notification webhook.
    #[command(flatten)]
    pub handover: HandoverArgs,
}

/// Flags of a BankClient's secret handover.
#[derive(Args, Clone)]
pub struct HandoverArgs {
    /// After the `entra.bookme.io/handover-confirmed` annotation names the current secret, the
    /// previous secrets are revoked after this safety delay instead of at the end of their
    /// overlap (e.g. `5m`).
    #[arg(long, env = "HANDOVER_CONFIRM_DELAY", default_value = "5m")]
    pub handover_confirm_delay: Duration,

    /// Where a handover is announced when it starts: an http(s) URL that receives one POST per
    /// handover (never a secret value). It is a credential: pass it through the environment from a
    /// Secret. Unset: no notification.
    #[arg(long, env = "HANDOVER_WEBHOOK_URL", hide_env_values = true)]
    pub handover_webhook_url: Option<String>,

    /// The webhook's body: `json` (a generic document) or `teams` (a Microsoft Teams message
    /// with an Adaptive Card).
    #[arg(long, env = "HANDOVER_WEBHOOK_FORMAT", value_enum, default_value_t = crate::webhook::WebhookFormat::Json)]
    pub handover_webhook_format: crate::webhook::WebhookFormat,
}

impl std::fmt::Debug for HandoverArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is a credential (it lets anyone post to the channel).
        f.debug_struct("HandoverArgs")
            .field("handover_confirm_delay", &self.handover_confirm_delay)
            .field(
                "handover_webhook_url",
                &self.handover_webhook_url.as_ref().map(|_| "<set>"),
            )
            .field("handover_webhook_format", &self.handover_webhook_format)
            .finish()
    }
}

impl HandoverArgs {
    /// The controllers' handover settings; the webhook's HTTP client trusts `extra_ca_pem` too.
    pub fn settings(
        &self,
        extra_ca_pem: Option<&std::path::Path>,
    ) -> Result<crate::controllers::context::HandoverSettings, crate::webhook::WebhookError> {
        let webhook = self
            .handover_webhook_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|url| {
                crate::webhook::Webhook::new(
                    crate::graph::SecretString::new(url),
                    self.handover_webhook_format,
                    extra_ca_pem,
                )
            })
            .transpose()?;
        Ok(crate::controllers::context::HandoverSettings {
            confirm_delay: self.handover_confirm_delay.as_std(),
            webhook,
            ..Default::default()
        })
    }
}

impl RunArgs {
    /// The watched namespaces, or `None` for all.
    pub fn watched_namespaces(&self) -> Option<Vec<String>> {
        let list: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        (!list.is_empty()).then_some(list)
    }

    /// The leader election's timings, or why they cannot work together.
    pub fn lease_timings(&self) -> Result<crate::runtime::leader::LeaseTimings, String> {
        let (duration, deadline, retry) = (
            self.lease_duration.as_std(),
            self.lease_renew_deadline.as_std(),
            self.lease_retry_period.as_std(),
        );
        if retry.is_zero() || retry >= deadline || deadline >= duration {
            return Err(format!(
                "leader election needs 0 < --lease-retry-period ({}) < --lease-renew-deadline ({}) < --lease-duration ({})",
                self.lease_retry_period, self.lease_renew_deadline, self.lease_duration
            ));
        }
        Ok(crate::runtime::leader::LeaseTimings {
            lease_duration: duration,
            renew_period: retry,
            renew_deadline: deadline,
            retry_period: retry,
            // Each call must give up well before the renew deadline; 4 s by default.
            request_timeout: (deadline * 2 / 5).max(std::time::Duration::from_millis(500)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn defaults_watch_everything_and_lists_parse() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.run.watched_namespaces(), None);
        assert_eq!(cli.run.resync.as_secs(), 3600);
        let cli = Cli::try_parse_from([
            "x",
            "--namespaces",
            "a,b",
            "--resync",
            "90s",
            "--leader-election",
            "false",
        ])
        .unwrap();
        assert_eq!(
            cli.run.watched_namespaces(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(cli.run.resync.as_secs(), 90);
        assert!(!cli.run.leader_election);
        assert!(Cli::try_parse_from(["x", "--resync", "soon"]).is_err());
    }

    #[test]
    fn lease_timings_default_to_client_go_and_must_nest() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let t = cli.run.lease_timings().unwrap();
        assert_eq!(t.lease_duration.as_secs(), 15);
        assert_eq!(t.renew_deadline.as_secs(), 10);
        assert_eq!(t.retry_period.as_secs(), 2);
        assert_eq!(t.request_timeout.as_secs(), 4);
        let cli = Cli::try_parse_from([
            "x",
            "--lease-duration",
            "3s",
            "--lease-renew-deadline",
            "2s",
            "--lease-retry-period",
            "1s",
        ])
        .unwrap();
        assert_eq!(cli.run.lease_timings().unwrap().lease_duration.as_secs(), 3);
        let cli = Cli::try_parse_from(["x", "--lease-renew-deadline", "15s"]).unwrap();
        let err = cli.run.lease_timings().unwrap_err();
        assert!(err.contains("--lease-renew-deadline (15s)"), "{err}");
    }
}
