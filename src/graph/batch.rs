//! JSON `$batch` for reads: up to 20 GETs per round trip. Each inner request is throttled on its
//! own, so an inner 429 (or 5xx) is retried by itself after its `Retry-After`, while the other
//! answers are kept.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{Call, GraphClient, Kind, odata_str};
use super::error::{GraphError, Permission, map_status};
use super::models::{Application, ServicePrincipal};
use super::retry::parse_retry_after;

/// Graph's limit of requests in one batch.
pub const MAX_BATCH: usize = 20;

#[derive(Debug, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    responses: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
struct BatchItem {
    id: String,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

impl BatchItem {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }
}

impl GraphClient {
    /// GETs `paths` (relative to `/v1.0`, e.g. `/applications(appId='…')`) in `$batch`es of 20.
    /// Returns one result per path, in order; the outer `Err` is for a batch that failed as a
    /// whole. `permission` names what a 403 on an item most likely lacks.
    pub async fn batch_get<T: DeserializeOwned>(
        &self,
        paths: &[String],
        permission: Permission,
    ) -> Result<Vec<Result<T, GraphError>>, GraphError> {
        let mut results: Vec<Option<Result<T, GraphError>>> =
            (0..paths.len()).map(|_| None).collect();
        let indices: Vec<usize> = (0..paths.len()).collect();
        for chunk in indices.chunks(MAX_BATCH) {
            self.run_batch(paths, chunk, permission, &mut results)
                .await?;
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(GraphError::Decode {
                        operation: "POST /$batch".into(),
                        message: "no response for a request".into(),
                    })
                })
            })
            .collect())
    }

    async fn run_batch<T: DeserializeOwned>(
        &self,
        paths: &[String],
        chunk: &[usize],
        permission: Permission,
        results: &mut [Option<Result<T, GraphError>>],
    ) -> Result<(), GraphError> {
        let retry = self.inner.retry.clone();
        let observer = self.inner.observer.clone();
        let mut pending: Vec<usize> = chunk.to_vec();
        let mut attempt: u32 = 0;
        let started = tokio::time::Instant::now();
        loop {
            let requests: Vec<Value> = pending
                .iter()
                .map(|i| json!({ "id": i.to_string(), "method": "GET", "url": paths[*i] }))
                .collect();
            let call = Call::new(
                Method::POST,
                "/$batch".into(),
                "/$batch",
                Permission::None,
                Kind::Read(pending.len() as u32),
            )
            .json(&json!({ "requests": requests }))?;
            let response: BatchResponse = self.fetch(&call).await?;

            let mut answered: HashMap<usize, BatchItem> = HashMap::new();
            for item in response.responses {
                if let Ok(i) = item.id.parse::<usize>()
                    && pending.contains(&i)
                {
                    answered.insert(i, item);
                }
            }
            let mut again = Vec::new();
            let mut wait = Duration::ZERO;
            for &i in &pending {
                let Some(item) = answered.remove(&i) else {
                    again.push(i);
                    continue;
                };
                let body = item.body.clone().unwrap_or(Value::Null);
                if (200..300).contains(&item.status) {
                    results[i] =
                        Some(
                            serde_json::from_value(body).map_err(|e| GraphError::Decode {
                                operation: format!("GET {} (in $batch)", template_of(&paths[i])),
                                message: e.to_string(),
                            }),
                        );
                    continue;
                }
                let retry_after = item.header("retry-after").and_then(parse_retry_after);
                let err = map_status(
                    item.status,
                    body.to_string().as_bytes(),
                    item.header("request-id").map(str::to_string),
                    retry_after,
                    format!("GET {} (in $batch)", template_of(&paths[i])),
                    permission,
                );
                if item.status == 429 {
                    observer.throttled("GET");
                }
                if matches!(err, GraphError::Throttled { .. } | GraphError::Server(_)) {
                    wait = wait.max(retry_after.unwrap_or_else(|| retry.backoff(attempt)));
                    again.push(i);
                }
                results[i] = Some(Err(err));
            }
            if again.is_empty() {
                return Ok(());
            }
            let budget_left = attempt + 1 < retry.max_attempts
                && wait <= retry.max_retry_after
                && started.elapsed() + wait < retry.max_elapsed;
            if !budget_left {
                return Ok(());
            }
            tracing::debug!(
                retrying = again.len(),
                wait_ms = wait.as_millis() as u64,
                "retrying throttled or failed requests of a $batch"
            );
            observer.retried("throttled");
            attempt += 1;
            tokio::time::sleep(wait).await;
            pending = again;
        }
    }

    /// Applications by appId, in one or a few round trips; `Ok(None)` where none exists.
    pub async fn batch_get_applications_by_app_id(
        &self,
        app_ids: &[&str],
    ) -> Result<Vec<Result<Option<Application>, GraphError>>, GraphError> {
        let paths: Vec<String> = app_ids
            .iter()
            .map(|id| format!("/applications(appId={})", odata_str(id)))
            .collect();
        let results = self
            .batch_get::<Application>(&paths, Permission::ApplicationReadAll)
            .await?;
        Ok(results.into_iter().map(not_found_as_none).collect())
    }

    /// Service principals by appId (e.g. the resource APIs of required permissions).
    pub async fn batch_get_service_principals_by_app_id(
        &self,
        app_ids: &[&str],
    ) -> Result<Vec<Result<Option<ServicePrincipal>, GraphError>>, GraphError> {
        let paths: Vec<String> = app_ids
            .iter()
            .map(|id| format!("/servicePrincipals(appId={})", odata_str(id)))
            .collect();
        let results = self
            .batch_get::<ServicePrincipal>(&paths, Permission::ApplicationReadAll)
            .await?;
        Ok(results.into_iter().map(not_found_as_none).collect())
    }
}

fn not_found_as_none<T>(r: Result<T, GraphError>) -> Result<Option<T>, GraphError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(GraphError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A path with its keys elided for logs: `/applications(appId=…)`.
fn template_of(path: &str) -> String {
    let mut out = String::new();
    let mut in_quote = false;
    for c in path.split('?').next().unwrap_or("").chars() {
        match c {
            '\'' if !in_quote => {
                in_quote = true;
                out.push('…');
            }
            '\'' => in_quote = false,
            _ if in_quote => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hide_keys() {
        assert_eq!(
            template_of("/applications(appId='abc')"),
            "/applications(appId=…)"
        );
        assert_eq!(
            template_of("/applications/123?$select=id"),
            "/applications/123"
        );
    }
}
