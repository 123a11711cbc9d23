//! The HTTP core of the Graph client: one place that rate-limits, authenticates, retries, maps
//! errors, logs and counts every request. Typed methods live in `applications.rs` and friends.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use super::auth::{AzureIdentityTokenSource, TokenClaims, TokenSource, build_http_client};
use super::config::{DEFAULT_AUTHORITY_HOST, GraphConfig};
use super::error::{
    GraphError, Permission, describe_reqwest_error, is_no_backing_application, map_status,
};
use super::metrics::{GraphObserver, NoopObserver};
use super::models::Page;
use super::ratelimit::{RateLimits, TenantRateLimiter};
use super::retry::{RetryPolicy, parse_retry_after};

/// How long a created object's keys make a 404 look like replication delay rather than absence.
const RECENT_CREATE_WINDOW: Duration = Duration::from_secs(120);
/// Pages followed at most when listing a collection (each page holds up to 100 objects).
const MAX_PAGES: usize = 200;

/// A Microsoft Graph client for one identity in one tenant. Cheap to clone; clones share the HTTP
/// pool, token cache, rate limiter and observer.
#[derive(Clone)]
pub struct GraphClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    /// `https://graph.microsoft.com` without trailing slash.
    pub(crate) endpoint: String,
    /// `https://graph.microsoft.com/v1.0`.
    pub(crate) base: String,
    pub(crate) authority_host: Url,
    tokens: Arc<dyn TokenSource>,
    pub(crate) retry: RetryPolicy,
    pub(crate) limiter: Arc<TenantRateLimiter>,
    pub(crate) observer: Arc<dyn GraphObserver>,
    /// Keys of objects created moments ago; keys of one object share a group.
    recent_creates: Mutex<HashMap<String, RecentCreate>>,
}

/// An object this client created moments ago, under one of its keys.
struct RecentCreate {
    at: Instant,
    group: u64,
    /// A read has returned it since.
    read_back: bool,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.inner.base)
            .field("authority_host", &self.inner.authority_host.as_str())
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// Assembles a [`GraphClient`]; [`GraphClient::new`] covers the usual case.
pub struct GraphClientBuilder {
    graph_endpoint: Url,
    authority_host: Url,
    http: Option<reqwest::Client>,
    tokens: Option<Arc<dyn TokenSource>>,
    retry: RetryPolicy,
    limits: RateLimits,
    limiter: Option<Arc<TenantRateLimiter>>,
    observer: Arc<dyn GraphObserver>,
    timeout: Duration,
}

impl GraphClientBuilder {
    /// A builder with the HTTP client and `azure_identity` credential that `config` describes.
    pub fn from_config(config: &GraphConfig) -> Result<Self, GraphError> {
        let http = build_http_client(config.extra_ca_pem.as_deref(), config.request_timeout)?;
        let tokens = AzureIdentityTokenSource::from_config(config, http.clone())?;
        Ok(Self {
            graph_endpoint: config.graph_endpoint.clone(),
            authority_host: config.authority_host.clone(),
            http: Some(http),
            tokens: Some(Arc::new(tokens)),
            retry: config.retry.clone(),
            limits: config.rate_limits.clone(),
            limiter: None,
            observer: Arc::new(NoopObserver),
            timeout: config.request_timeout,
        })
    }

    /// A builder for `graph_endpoint` with defaults; set a token source before `build`.
    pub fn new(graph_endpoint: Url) -> Self {
        Self {
            graph_endpoint,
            authority_host: Url::parse(DEFAULT_AUTHORITY_HOST).expect("static URL"),
            http: None,
            tokens: None,
            retry: RetryPolicy::default(),
            limits: RateLimits::default(),
            limiter: None,
            observer: Arc::new(NoopObserver),
            timeout: Duration::from_secs(30),
        }
    }

    pub fn token_source(mut self, tokens: Arc<dyn TokenSource>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn authority_host(mut self, authority_host: Url) -> Self {
        self.authority_host = authority_host;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Shares a limiter with other clients of the same identity and tenant.
    pub fn rate_limiter(mut self, limiter: Arc<TenantRateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    pub fn observer(mut self, observer: Arc<dyn GraphObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub fn build(self) -> Result<GraphClient, GraphError> {
        let tokens = self
            .tokens
            .ok_or_else(|| GraphError::Config("no token source".into()))?;
        let http = match self.http {
            Some(h) => h,
            None => build_http_client(None, self.timeout)?,
        };
        let endpoint = self
            .graph_endpoint
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(TenantRateLimiter::new(self.limits)));
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                base: format!("{endpoint}/v1.0"),
                endpoint,
                authority_host: self.authority_host,
                tokens,
                retry: self.retry,
                limiter,
                observer: self.observer,
                recent_creates: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Whether a request may be sent again after an ambiguous failure (no response, or a 5xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A read costing this many resource units.
    Read(u32),
    /// A write whose repetition is harmless: PATCH, DELETE, or a create keyed by something unique
    /// (a repeat yields Conflict, never a second object).
    Write,
    /// A write that would do its effect twice (`addPassword` mints a second secret). Retried only
    /// when Graph certainly did not act on it: 429, a replication 404, or a connection that was
    /// never established.
    WriteOnce,
}

/// One logical request, retried as a unit.
pub(crate) struct Call {
    pub method: Method,
    /// Path below `/v1.0` starting with `/`, or an absolute `@odata.nextLink`.
    pub path: String,
    /// The path with keys elided, for logs, metrics and errors: `/applications/{id}`.
    pub template: &'static str,
    pub body: Option<Vec<u8>>,
    pub prefer: Option<&'static str>,
    pub permission: Permission,
    pub kind: Kind,
    /// Keys in the path; a 404 while one was created moments ago is replication delay.
    pub keys: Vec<String>,
    /// Retry Graph's 400 "does not reference a valid application object" (SP create after app create).
    pub retry_no_backing_app: bool,
}

impl Call {
    pub fn get(path: String, template: &'static str, permission: Permission, units: u32) -> Self {
        Self::new(Method::GET, path, template, permission, Kind::Read(units))
    }

    pub fn new(
        method: Method,
        path: String,
        template: &'static str,
        permission: Permission,
        kind: Kind,
    ) -> Self {
        Self {
            method,
            path,
            template,
            body: None,
            prefer: None,
            permission,
            kind,
            keys: Vec::new(),
            retry_no_backing_app: false,
        }
    }

    pub fn json(mut self, body: &impl Serialize) -> Result<Self, GraphError> {
        self.body = Some(serde_json::to_vec(body).map_err(|e| GraphError::Decode {
            operation: self.template.to_string(),
            message: format!("cannot serialize the request body: {e}"),
        })?);
        Ok(self)
    }

    pub fn prefer(mut self, prefer: &'static str) -> Self {
        self.prefer = Some(prefer);
        self
    }

    pub fn keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.keys.extend(keys.into_iter().map(Into::into));
        self
    }

    pub fn retry_no_backing_app(mut self) -> Self {
        self.retry_no_backing_app = true;
        self
    }

    pub(crate) fn operation(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    #[allow(dead_code)]
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub(crate) fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Encodes an OData string key: `'` doubled, then percent-encoded for the path, e.g.
/// `uniqueName='a''b%20c'`.
pub(crate) fn odata_str(value: &str) -> String {
    format!("'{}'", encode(&value.replace('\'', "''")))
}

/// Percent-encodes all but unreserved characters and `'` (kept literal for OData literals).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'\'') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl GraphClient {
    /// A client for the identity and endpoints in `config`.
    pub fn new(config: &GraphConfig) -> Result<Self, GraphError> {
        GraphClientBuilder::from_config(config)?.build()
    }

    pub fn builder(graph_endpoint: Url) -> GraphClientBuilder {
        GraphClientBuilder::new(graph_endpoint)
    }

    /// The tenant's rate limiter, to share with another client or to inspect.
    pub fn rate_limiter(&self) -> &Arc<TenantRateLimiter> {
        &self.inner.limiter
    }

    /// Fetches a token now: a readiness check that the credential works.
    pub async fn check_authentication(&self) -> Result<(), GraphError> {
        self.inner.tokens.token().await.map(|_| ())
    }

    /// The claims of the token this client sends to Graph (decoded, not verified: it came from
    /// the token endpoint). The token itself never leaves this function.
    pub(crate) async fn token_claims(&self) -> Result<TokenClaims, GraphError> {
        let token = self.inner.tokens.token().await?;
        TokenClaims::decode_unverified(token.expose())
    }

    /// Marks keys (object id, appId, uniqueName) as just created, so 404s on them are retried as
    /// replication delay for a while. The client does this itself for objects it creates; call it
    /// when a create happened elsewhere (another replica, before a restart).
    pub fn note_created<S: AsRef<str>>(&self, keys: impl IntoIterator<Item = S>) {
        let now = Instant::now();
        let group: u64 = rand::random();
        let mut recent = self
            .inner
            .recent_creates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, r| now.duration_since(r.at) < RECENT_CREATE_WINDOW);
        for k in keys {
            let k = k.as_ref();
            if !k.is_empty() {
                let entry = RecentCreate {
                    at: now,
                    group,
                    read_back: false,
                };
                recent.insert(k.to_string(), entry);
            }
        }
    }

    /// Forgets the keys, and the other keys of the same objects (a deleted app's appId too).
    fn forget_created(&self, keys: &[String]) {
        let mut recent = self
            .inner
            .recent_creates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let groups: Vec<u64> = keys
            .iter()
            .filter_map(|k| recent.get(k).map(|r| r.group))
            .collect();
        recent.retain(|_, r| !groups.contains(&r.group));
    }

    fn recently_created(&self, keys: &[String]) -> bool {
        self.any_recent(keys, |_| true)
    }

    /// Whether one of `keys` names an object created moments ago that no read has returned yet.
    fn unconfirmed(&self, keys: &[String]) -> bool {
        self.any_recent(keys, |r| !r.read_back)
    }

    fn any_recent(&self, keys: &[String], also: impl Fn(&RecentCreate) -> bool) -> bool {
        let now = Instant::now();
        let recent = self
            .inner
            .recent_creates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        keys.iter().any(|k| {
            recent
                .get(k)
                .is_some_and(|r| now.duration_since(r.at) < RECENT_CREATE_WINDOW && also(r))
        })
    }

    /// A read answered for these keys: the objects they name have replicated this far.
    fn confirm(&self, keys: &[String]) {
        let mut recent = self
            .inner
            .recent_creates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some(entry) = recent.get_mut(k) {
                entry.read_back = true;
            }
        }
    }

    /// Reads `probe` before a write that needs the object it reads, when this client created that
    /// object moments ago and no read has returned it since. Graph refuses such a write while the
    /// object replicates (a service principal for a new app: 400 `NoBackingApplicationObject`; an
    /// assignment to a new principal: 404), and a refused write still spends one of the tenant's
    /// 3,000 writes per 150 s, where the read costs one or two of 3,500 resource units per 10 s.
    /// The probe's 404 is replication like any other (the caller is told `Replicating`).
    pub(crate) async fn await_replicated(&self, probe: &Call) -> Result<(), GraphError> {
        if self.unconfirmed(&probe.keys) {
            self.execute(probe).await?;
        }
        Ok(())
    }

    fn url(&self, path: &str) -> Result<String, GraphError> {
        if path.starts_with("https://") || path.starts_with("http://") {
            // nextLinks must stay on Graph: the bearer token goes with them.
            if !path.starts_with(&format!("{}/", self.inner.endpoint)) {
                return Err(GraphError::Decode {
                    operation: "follow @odata.nextLink".into(),
                    message: "the next link points outside the Graph endpoint".into(),
                });
            }
            return Ok(path.to_string());
        }
        Ok(format!("{}{}", self.inner.base, path))
    }

    /// Sends `call`, retrying as the policy allows; returns the 2xx reply or a typed error.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Reply, GraphError> {
        let retry = &self.inner.retry;
        let observer = &self.inner.observer;
        let method = method_name(&call.method);
        let operation = call.operation();
        let url = self.url(&call.path)?;
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut replication_attempt: u32 = 0;
        loop {
            let waited = match call.kind {
                Kind::Read(units) => self.inner.limiter.acquire_read(units).await,
                Kind::Write | Kind::WriteOnce => self.inner.limiter.acquire_write().await,
            };
            if !waited.is_zero() {
                observer.rate_limited(waited);
                tracing::debug!(operation = %operation, waited_ms = waited.as_millis() as u64, "graph rate limiter delayed request");
            }
            let token = self.inner.tokens.token().await?;
            let mut request = self
                .inner
                .http
                .request(call.method.clone(), &url)
                .bearer_auth(token.expose())
                .header("accept", "application/json");
            if let Some(prefer) = call.prefer {
                request = request.header("prefer", prefer);
            }
            if let Some(body) = &call.body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            let sent_at = Instant::now();
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok((status, headers, body.to_vec())),
                        Err(e) => Err((e, true)),
                    }
                }
                Err(e) => {
                    let never_sent = e.is_connect();
                    Err((e, !never_sent))
                }
            };
            let elapsed = sent_at.elapsed();
            let (status, headers, body) = match outcome {
                Ok(ok) => ok,
                Err((e, maybe_processed)) => {
                    observer.request(method, None, elapsed);
                    let message = describe_reqwest_error(&e);
                    tracing::debug!(operation = %operation, error = %message, elapsed_ms = elapsed.as_millis() as u64, "graph request failed");
                    let may_retry = call.kind != Kind::WriteOnce || !maybe_processed;
                    if may_retry && self.budget_left(attempt, started, Duration::ZERO) {
                        let wait = retry.backoff(attempt);
                        attempt += 1;
                        observer.retried("transport");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(GraphError::Transport { operation, message });
                }
            };
            observer.request(method, Some(status), elapsed);
            let request_id = header_str(&headers, "request-id")
                .or_else(|| header_str(&headers, "client-request-id"))
                .map(str::to_string);
            tracing::debug!(
                method,
                path = call.template,
                status,
                request_id = request_id.as_deref().unwrap_or(""),
                elapsed_ms = elapsed.as_millis() as u64,
                "graph request"
            );
            if let Some(pct) = header_str(&headers, "x-ms-throttle-limit-percentage")
                .and_then(|v| v.trim().parse::<f64>().ok())
            {
                self.inner.limiter.note_throttle_percentage(pct);
            }
            if (200..300).contains(&status) {
                if call.method != Method::GET && !call.template.contains("$batch") {
                    crate::crash::after_write(format_args!("graph {operation}"));
                }
                if call.method == Method::DELETE {
                    // Gone on purpose: a later 404 on these keys is the truth, not lag.
                    self.forget_created(&call.keys);
                }
                if call.method == Method::GET {
                    self.confirm(&call.keys);
                }
                return Ok(Reply {
                    status,
                    headers,
                    body,
                });
            }
            let retry_after = header_str(&headers, "retry-after").and_then(parse_retry_after);
            let err = map_status(
                status,
                &body,
                request_id,
                retry_after,
                operation.clone(),
                call.permission,
            );
            if matches!(err, GraphError::Throttled { .. }) {
                observer.throttled(method);
            }
            // (wait, reason, is a replication retry) when this error deserves another attempt.
            let replication_pending = started.elapsed() < retry.replication_timeout;
            let next = match &err {
                GraphError::Throttled { .. } => {
                    let wait = retry_after.unwrap_or_else(|| retry.backoff(attempt));
                    (wait <= retry.max_retry_after && self.budget_left(attempt, started, wait))
                        .then_some((wait, "throttled", false))
                }
                GraphError::Server(_)
                    if call.kind != Kind::WriteOnce
                        && self.budget_left(attempt, started, Duration::ZERO) =>
                {
                    let wait = retry_after.unwrap_or_else(|| retry.backoff(attempt));
                    Some((wait.min(retry.max_delay), "server_error", false))
                }
                GraphError::NotFound(d) if self.recently_created(&call.keys) => {
                    if !retry.replication_in_place {
                        observer.retried("replication");
                        return Err(GraphError::Replicating(d.clone()));
                    }
                    replication_pending.then(|| {
                        (
                            retry.replication_backoff(replication_attempt),
                            "replication",
                            true,
                        )
                    })
                }
                GraphError::BadRequest(d)
                    if call.retry_no_backing_app
                        && is_no_backing_application(&d.code, &d.message) =>
                {
                    // Created by this client moments ago: certainly replication. Otherwise (made
                    // before a restart) it is waited out here as before, bounded.
                    if !retry.replication_in_place && self.recently_created(&call.keys) {
                        observer.retried("replication");
                        return Err(GraphError::Replicating(d.clone()));
                    }
                    replication_pending.then(|| {
                        (
                            retry.replication_backoff(replication_attempt),
                            "replication",
                            true,
                        )
                    })
                }
                _ => None,
            };
            if let Some((wait, reason, replication)) = next {
                tracing::debug!(operation = %operation, status, reason, wait_ms = wait.as_millis() as u64, "retrying graph request");
                if replication {
                    replication_attempt += 1;
                } else {
                    attempt += 1;
                }
                observer.retried(reason);
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(err);
        }
    }

    fn budget_left(&self, attempt: u32, started: Instant, next_wait: Duration) -> bool {
        let retry = &self.inner.retry;
        attempt + 1 < retry.max_attempts && started.elapsed() + next_wait < retry.max_elapsed
    }

    /// Sends and decodes a JSON response.
    pub(crate) async fn fetch<T: DeserializeOwned>(&self, call: &Call) -> Result<T, GraphError> {
        let reply = self.execute(call).await?;
        decode(&reply.body, call)
    }

    /// Sends, expecting no body of interest (204).
    pub(crate) async fn send(&self, call: &Call) -> Result<(), GraphError> {
        self.execute(call).await.map(|_| ())
    }

    /// Reads every page of a collection.
    pub(crate) async fn list<T: DeserializeOwned>(&self, call: Call) -> Result<Vec<T>, GraphError> {
        let mut items = Vec::new();
        let mut call = call;
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.fetch(&call).await?;
            items.extend(page.value);
            match page.next_link {
                Some(next) => call.path = next,
                None => return Ok(items),
            }
        }
        Err(GraphError::Decode {
            operation: call.operation(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Upsert: 201 → `Created(decoded body)` and its keys noted as just created; 204 → `Updated`.
    pub(crate) async fn upsert<T: DeserializeOwned>(
        &self,
        call: &Call,
        created_keys: impl Fn(&T) -> Vec<String>,
    ) -> Result<super::models::Upserted<T>, GraphError> {
        let reply = self.execute(call).await?;
        if reply.status == 201 {
            let created: T = decode(&reply.body, call)?;
            self.note_created(created_keys(&created));
            Ok(super::models::Upserted::Created(created))
        } else {
            Ok(super::models::Upserted::Updated)
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(body: &[u8], call: &Call) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|e| GraphError::Decode {
        operation: call.operation(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_keys_are_quoted_and_encoded() {
        assert_eq!(odata_str("bookme-default-app"), "'bookme-default-app'");
        assert_eq!(odata_str("o'brien app"), "'o''brien%20app'");
        assert_eq!(odata_str("a/b?c#d"), "'a%2Fb%3Fc%23d'");
    }
}
