//! Microsoft Graph client: authentication through `azure_identity`, typed models, retries with
//! backoff and jitter, `Retry-After`, a client-side write budget per tenant, replication-delay
//! retries, `$batch` reads, and errors as typed variants.
//!
//! ```no_run
//! # async fn demo() -> Result<(), entra_operator::graph::GraphError> {
//! use entra_operator::graph::{GraphClient, GraphConfig, Upserted};
//! let graph = GraphClient::new(&GraphConfig::from_env()?)?;
//! let body = serde_json::json!({ "displayName": "BookMe API" });
//! if let Upserted::Created(app) = graph.upsert_application_by_unique_name("bookme-default-api", &body).await? {
//!     println!("created {:?}", app.app_id);
//! }
//! # Ok(()) }
//! ```

mod auth;
mod batch;
mod client;
mod config;
mod error;
mod metrics;
mod models;
mod operations;
mod ratelimit;
mod retry;
mod secret;

pub use auth::{
    AzureIdentityTokenSource, CertificateAssertion, StaticToken, TokenClaims, TokenEndpointError,
    TokenProbe, TokenSource, build_http_client, der_to_base64, request_client_credentials,
};
pub use batch::MAX_BATCH;
pub use client::{GraphClient, GraphClientBuilder};
pub use config::{CredentialConfig, DEFAULT_AUTHORITY_HOST, DEFAULT_GRAPH_ENDPOINT, GraphConfig};
pub use error::{
    ErrorDetail, GraphError, GraphErrorBody, GraphErrorPayload, GraphInnerError, OptionalExt,
    Permission,
};
pub use metrics::{GraphMetrics, GraphObserver, NoopObserver};
pub use models::*;
pub use ratelimit::{RateLimits, SlidingWindow, TenantRateLimiter};
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::SecretString;

/// Microsoft Graph's appId, for `requiredResourceAccess`.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
