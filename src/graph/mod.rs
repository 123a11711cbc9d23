//! Microsoft Graph client: authentication through `azure_identity`, typed models, retries with
//! backoff and jitter, `Retry-After`, a client-side write budget per tenant, replication-delay
//! retries, `$batch` reads, and errors as typed variants.
//!
//! Behaviour the controllers can rely on:
//! - **Configuration**: [`GraphConfig::from_env`] reads the Azure SDK variables plus
//!   `GRAPH_ENDPOINT`, `ENTRA_CA_FILE`, `GRAPH_TOKEN_SCOPE`, `GRAPH_WRITE_BUDGET` (table there).
//! - **Retries** (bounded by [`RetryPolicy`]): 5xx and connection errors with full-jitter
//!   exponential backoff; 429 after its `Retry-After` (fractional seconds allowed; per item in
//!   `$batch`); a 404 on an object this client created moments ago, and the 400 "does not
//!   reference a valid application object" on service principal writes, as replication delay.
//!   Other 4xx are never retried.
//! - **Non-idempotent writes** (`add_password`) are retried only when Graph certainly did not act
//!   (429, replication 404, connection refused); after a lost response or a 5xx the error is
//!   returned, and the rotation state machine recovers by the nonce in `displayName`.
//! - **Rate limiting**: [`TenantRateLimiter`] delays writes and reads to stay under 95% (writes) and 80% (reads) of Graph's
//!   per-tenant budgets and paces writes when Graph reports `x-ms-throttle-limit-percentage` ≥ 0.8.
//! - **Errors**: [`GraphError`] variants carry Graph's code, message and request-id; `reason()` and
//!   `category()` give condition reasons and metric labels; `Forbidden` names the permission most
//!   likely missing. Duplicates reported as 400 ("already exist") are `Conflict`.
//! - **Secrets** ([`SecretString`]) print as `<redacted>`; bodies are never logged.
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
mod delta;
mod error;
mod metrics;
mod models;
mod operations;
mod ratelimit;
mod retry;
mod secret;

pub use auth::{
    AzureIdentityTokenSource, CertificateAssertion, StaticToken, TokenClaims, TokenEndpointError,
    TokenProbe, TokenSource, build_http_client, certificate_key_value, der_to_base64,
    request_client_credentials,
};
pub use batch::MAX_BATCH;
pub use client::{GraphClient, GraphClientBuilder};
pub use config::{CredentialConfig, DEFAULT_AUTHORITY_HOST, DEFAULT_GRAPH_ENDPOINT, GraphConfig};
pub use delta::{ChangeFeed, Mark, Round};
pub use error::{
    ErrorDetail, GraphError, GraphErrorBody, GraphErrorPayload, GraphInnerError, OptionalExt,
    Permission,
};
pub use metrics::{GraphMetrics, GraphObserver, NoopObserver};
pub use models::*;
pub use ratelimit::{
    Priority, RateLimits, SlidingWindow, TenantRateLimiter, current_priority, with_priority,
};
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::SecretString;

/// Microsoft Graph's appId, for `requiredResourceAccess`.
pub const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
