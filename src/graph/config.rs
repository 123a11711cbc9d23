//! How the Graph client finds Entra: endpoints, identity, credential, trust, budgets.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::error::GraphError;
use super::ratelimit::RateLimits;
use super::retry::RetryPolicy;
use super::secret::SecretString;

pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The credential the operator authenticates with.
#[derive(Clone, Debug, PartialEq)]
pub enum CredentialConfig {
    /// Workload identity: the projected service-account token in `token_file` is exchanged as a
    /// federated assertion (re-read on every token request, since kubelet rotates it).
    WorkloadIdentity { token_file: PathBuf },
    /// A client secret.
    ClientSecret { secret: SecretString },
    /// A certificate: a PEM file holding the certificate and its unencrypted RSA private key
    /// (PKCS#8 or PKCS#1). PKCS#12 and encrypted keys are not supported (see `auth`).
    ClientCertificate {
        path: PathBuf,
        password: Option<SecretString>,
    },
}

impl CredentialConfig {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialConfig::WorkloadIdentity { .. } => "workload-identity",
            CredentialConfig::ClientSecret { .. } => "client-secret",
            CredentialConfig::ClientCertificate { .. } => "client-certificate",
        }
    }
}

/// Configuration of a [`super::GraphClient`]. `Debug` never shows a secret (they are
/// [`SecretString`]s).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphConfig {
    /// Graph's base URL without `/v1.0`: `https://graph.microsoft.com`, a sovereign cloud's
    /// (`https://graph.microsoft.us`, `https://microsoftgraph.chinacloudapi.cn`), or the emulator.
    pub graph_endpoint: Url,
    /// The token authority: `https://login.microsoftonline.com`, `https://login.microsoftonline.us`,
    /// `https://login.chinacloudapi.cn`, or the emulator. Must be HTTPS.
    pub authority_host: Url,
    /// The operator's home tenant (the one whose applications it manages).
    pub tenant_id: String,
    /// The operator identity's client (application) id.
    pub client_id: String,
    pub credential: CredentialConfig,
    /// A PEM bundle trusted in addition to the system roots (the emulator's CA, a TLS-inspecting
    /// proxy's CA).
    pub extra_ca_pem: Option<PathBuf>,
    /// OAuth scope of Graph tokens; see [`GraphConfig::scope`] for the default.
    pub token_scope: Option<String>,
    /// Client-side budgets per tenant.
    pub rate_limits: RateLimits,
    pub retry: RetryPolicy,
    /// Timeout of one HTTP attempt.
    pub request_timeout: Duration,
}

impl GraphConfig {
    /// A configuration with defaults for everything but identity and credential.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        credential: CredentialConfig,
    ) -> Self {
        Self {
            graph_endpoint: Url::parse(DEFAULT_GRAPH_ENDPOINT).expect("static URL"),
            authority_host: Url::parse(DEFAULT_AUTHORITY_HOST).expect("static URL"),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            credential,
            extra_ca_pem: None,
            token_scope: None,
            rate_limits: RateLimits::default(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Reads the Azure SDK's environment variables and the operator's own:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `AZURE_TENANT_ID` | home tenant (required) |
    /// | `AZURE_CLIENT_ID` | operator identity's client id (required) |
    /// | `AZURE_CLIENT_SECRET` | client secret credential |
    /// | `AZURE_CLIENT_CERTIFICATE_PATH` | PEM certificate + key credential |
    /// | `AZURE_CLIENT_CERTIFICATE_PASSWORD` | its password (rejected: encrypted keys unsupported) |
    /// | `AZURE_FEDERATED_TOKEN_FILE` | workload identity token file |
    /// | `AZURE_AUTHORITY_HOST` | token authority, default `https://login.microsoftonline.com` |
    /// | `GRAPH_ENDPOINT` | Graph base URL, default `https://graph.microsoft.com` |
    /// | `GRAPH_TOKEN_SCOPE` | token scope, default: see [`GraphConfig::scope`] |
    /// | `ENTRA_CA_FILE` | extra CA bundle (PEM) to trust |
    /// | `GRAPH_WRITE_BUDGET` | writes per 150 s the client allows itself, default 2850 |
    /// | `GRAPH_READ_BUDGET` | read resource units per 10 s the client allows itself, default 2800 |
    ///
    /// When several credentials are set, the Azure SDK's `EnvironmentCredential` order applies:
    /// secret, then certificate, then the federated token file.
    pub fn from_env() -> Result<Self, GraphError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`GraphConfig::from_env`] with a custom variable source (for tests and for flags).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, GraphError> {
        let required =
            |k: &str| get(k).ok_or_else(|| GraphError::Config(format!("{k} is not set")));
        let tenant_id = required("AZURE_TENANT_ID")?;
        let client_id = required("AZURE_CLIENT_ID")?;
        let credential = if let Some(secret) = get("AZURE_CLIENT_SECRET") {
            CredentialConfig::ClientSecret {
                secret: SecretString::new(secret),
            }
        } else if let Some(path) = get("AZURE_CLIENT_CERTIFICATE_PATH") {
            CredentialConfig::ClientCertificate {
                path: path.into(),
                password: get("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(SecretString::new),
            }
        } else if let Some(file) = get("AZURE_FEDERATED_TOKEN_FILE") {
            CredentialConfig::WorkloadIdentity {
                token_file: file.into(),
            }
        } else {
            return Err(GraphError::Config(
                "no credential: set AZURE_FEDERATED_TOKEN_FILE (workload identity), \
                 AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH"
                    .into(),
            ));
        };
        let mut config = Self::new(tenant_id, client_id, credential);
        if let Some(v) = get("AZURE_AUTHORITY_HOST") {
            config.authority_host = parse_url("AZURE_AUTHORITY_HOST", &v)?;
        }
        if let Some(v) = get("GRAPH_ENDPOINT") {
            config.graph_endpoint = parse_url("GRAPH_ENDPOINT", &v)?;
        }
        config.token_scope = get("GRAPH_TOKEN_SCOPE");
        config.extra_ca_pem = get("ENTRA_CA_FILE").map(PathBuf::from);
        if let Some(v) = get("GRAPH_WRITE_BUDGET") {
            config.rate_limits.writes_per_window = positive("GRAPH_WRITE_BUDGET", &v)?;
        }
        if let Some(v) = get("GRAPH_READ_BUDGET") {
            config.rate_limits.read_units_per_window = positive("GRAPH_READ_BUDGET", &v)?;
        }
        Ok(config)
    }

    /// The scope requested for Graph tokens: `token_scope`, else the national cloud's Graph
    /// origin when `graph_endpoint` is one, else `https://graph.microsoft.com/.default`. Any other
    /// host (the emulator, a proxy) still speaks for Microsoft Graph, whose resource is the public
    /// identifier.
    pub fn scope(&self) -> String {
        if let Some(s) = &self.token_scope {
            return s.clone();
        }
        const NATIONAL_GRAPH_HOSTS: [&str; 4] = [
            "graph.microsoft.com",
            "graph.microsoft.us",
            "dod-graph.microsoft.us",
            "microsoftgraph.chinacloudapi.cn",
        ];
        match self.graph_endpoint.host_str() {
            Some(host) if NATIONAL_GRAPH_HOSTS.contains(&host) => {
                format!("https://{host}/.default")
            }
            _ => format!("{DEFAULT_GRAPH_ENDPOINT}/.default"),
        }
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token` for any tenant.
    pub fn token_endpoint(&self, tenant: &str) -> Result<Url, GraphError> {
        token_endpoint(&self.authority_host, tenant)
    }
}

pub(crate) fn token_endpoint(authority: &Url, tenant: &str) -> Result<Url, GraphError> {
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(GraphError::Config(format!("invalid tenant id {tenant:?}")));
    }
    let base = authority.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/{tenant}/oauth2/v2.0/token"))
        .map_err(|e| GraphError::Config(format!("invalid token endpoint: {e}")))
}

/// A budget variable: a positive integer, or a configuration error naming it.
fn positive(name: &str, value: &str) -> Result<u32, GraphError> {
    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        GraphError::Config(format!("{name} must be a positive integer, got {value:?}"))
    })
}

fn parse_url(name: &str, value: &str) -> Result<Url, GraphError> {
    Url::parse(value).map_err(|e| GraphError::Config(format!("{name}={value:?} is not a URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_workload_identity_with_defaults() {
        let c = GraphConfig::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ]))
        .unwrap();
        assert_eq!(
            c.credential,
            CredentialConfig::WorkloadIdentity {
                token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into()
            }
        );
        assert_eq!(c.graph_endpoint.as_str(), "https://graph.microsoft.com/");
        assert_eq!(c.scope(), "https://graph.microsoft.com/.default");
        assert_eq!(
            c.token_endpoint("t1").unwrap().as_str(),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert_eq!(c.rate_limits.writes_per_window, 2850);
        let mut us = c.clone();
        us.graph_endpoint = Url::parse("https://graph.microsoft.us").unwrap();
        assert_eq!(us.scope(), "https://graph.microsoft.us/.default");
    }

    #[test]
    fn secret_wins_and_endpoints_are_configurable() {
        let c = GraphConfig::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_CLIENT_SECRET", "s3cr3t-value"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:8443/"),
            ("GRAPH_ENDPOINT", "https://127.0.0.1:8443/graph"),
            ("ENTRA_CA_FILE", "/tmp/ca.pem"),
            ("GRAPH_WRITE_BUDGET", "100"),
            ("GRAPH_READ_BUDGET", "700"),
        ]))
        .unwrap();
        assert_eq!(c.credential.kind(), "client-secret");
        assert_eq!(c.scope(), "https://graph.microsoft.com/.default");
        assert_eq!(
            c.token_endpoint("other").unwrap().as_str(),
            "https://127.0.0.1:8443/other/oauth2/v2.0/token"
        );
        assert_eq!(c.extra_ca_pem, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(c.rate_limits.writes_per_window, 100);
        assert_eq!(c.rate_limits.read_units_per_window, 700);
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn missing_values_are_config_errors() {
        let e = GraphConfig::from_lookup(lookup(&[("AZURE_TENANT_ID", "t")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_CLIENT_ID"));
        let e = GraphConfig::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("no credential"));
        let e = GraphConfig::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("GRAPH_READ_BUDGET", "0"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("GRAPH_READ_BUDGET"), "{e}");
        assert!(token_endpoint(&Url::parse("https://x").unwrap(), "a/b").is_err());
    }
}
