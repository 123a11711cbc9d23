//! I/O shared by the controllers: the error type with its retry policy, the error policy, reconcile
//! metrics and events for every kind; and for the kinds that compose child AppRegistrations or
//! publish registries (BankClient, TenantMapping, NaaIntegration), applying children and ConfigMaps
//! with the operator's field manager and turning a child's status into the parent's Ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, warn};

use crate::api::{AppRegistration, condition};
use crate::controllers::conditions::DesiredCondition;
use crate::controllers::context::Context;
use crate::controllers::status::FIELD_MANAGER;
use crate::graph::GraphError;
use crate::runtime::metrics::{KindLabels, ReconcileLabels};

use crate::credentials::{LABEL_MANAGED_BY, MANAGED_BY};

/// Finalizer that keeps a BankClient or TenantMapping until its registry entry is removed: the
/// registry is a shared ConfigMap, so no owner reference can clean it up.
pub const REGISTRY_FINALIZER: &str = "entra.bookme.io/registry";

/// What can fail in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Short static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Graph(e) => e.category(),
            Error::Kube(_) => "kube_api",
            Error::Credential(_) => "credential_state",
            Error::Finalizer(_) => "finalizer",
            Error::Invalid(_) => "invalid",
        }
    }

    /// CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Graph(e) => e.reason(),
            Error::Kube(_) => "KubernetesApiError",
            Error::Credential(_) => "CredentialStateInvalid",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Invalid(_) => "Invalid",
        }
    }

    /// How soon to retry before backoff: throttling says when; errors a human must fix wait longer.
    pub fn base_retry(&self) -> Duration {
        match self {
            Error::Graph(GraphError::Throttled {
                retry_after: Some(d),
                ..
            }) => (*d).max(Duration::from_secs(1)),
            Error::Graph(GraphError::BadRequest(_) | GraphError::Forbidden { .. })
            | Error::Credential(_)
            | Error::Invalid(_) => Duration::from_secs(60),
            _ => Duration::from_secs(5),
        }
    }

    /// Unwrap the finalizer helper's wrapping so the apply/cleanup error itself is reported.
    pub fn from_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Error {
        match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        }
    }
}

/// `namespace/name`, the key of failure counts and log lines.
pub fn object_key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Requeue with backoff after a failure (the status already says what failed).
pub fn error_policy<K: ResourceExt>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(obj.as_ref());
    let wait = ctx.record_failure(&key, error.base_retry());
    warn!(object = %key, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Count one reconcile and its duration under `kind`.
pub fn record_reconcile<T>(
    ctx: &Context,
    kind: &'static str,
    started: std::time::Instant,
    result: &Result<T, Error>,
) {
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind,
            result: match result {
                Ok(_) => "success",
                Err(e) => e.category(),
            },
        })
        .inc();
}

/// Publish a Kubernetes event about `obj`; a failure to publish is only logged (events are help,
/// not state).
pub async fn publish<K>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str)
where
    K: Resource<DynamicType = ()>,
{
    let event = KubeEvent {
        type_,
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        debug!(error = %e, "could not publish event");
    }
}

/// Server-side apply a child AppRegistration (forcing ownership of the fields the parent sets) and
/// return it as the API server holds it, status included.
pub async fn apply_child(
    api: &Api<AppRegistration>,
    child: &AppRegistration,
) -> Result<AppRegistration, Error> {
    let name = child.name_any();
    let mut body = serde_json::to_value(child)
        .map_err(|e| Error::Invalid(format!("rendering AppRegistration {name}: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.remove("status");
    }
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?)
}

/// Server-side apply a ConfigMap holding exactly `data` (keys the operator applied before and
/// omits now are removed by the API server's field ownership).
pub async fn apply_config_map(
    ctx: &Context,
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, String>,
    extra_labels: &BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let mut labels = extra_labels.clone();
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
    let mut metadata = serde_json::json!({
        "name": name,
        "namespace": namespace,
        "labels": labels,
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = serde_json::json!([owner]);
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": data,
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Delete a child AppRegistration if it exists (its own finalizer removes the Entra application).
pub async fn delete_child(api: &Api<AppRegistration>, name: &str) -> Result<(), Error> {
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The parent's Ready as far as its children go: ready when every child is Ready for its current
/// generation; otherwise the first child that is not, with its reason, so `kubectl get` on the
/// parent tells what the child waits for.
pub fn children_readiness(children: &[&AppRegistration]) -> DesiredCondition {
    for child in children {
        let name = child.name_any();
        let status = child.status.as_ref();
        let current = status.and_then(|s| s.observed_generation) == child.metadata.generation;
        match status.and_then(|s| s.conditions.get(condition::READY)) {
            Some(c) if c.status == "True" && current => continue,
            Some(c) if c.status != "True" => {
                return DesiredCondition::failed(
                    condition::READY,
                    c.reason.clone(),
                    format!("AppRegistration {name}: {}", c.message),
                );
            }
            _ => {
                return DesiredCondition::failed(
                    condition::READY,
                    "Reconciling",
                    format!("AppRegistration {name} has not reported on its current spec yet"),
                );
            }
        }
    }
    DesiredCondition::ok(
        condition::READY,
        "Ready",
        "every child AppRegistration is Ready",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AppRegistrationStatus;
    use crate::controllers::conditions::merge_conditions;

    fn child(name: &str, generation: i64, ready: Option<(&str, &str)>) -> AppRegistration {
        let mut app: AppRegistration = serde_json::from_value(serde_json::json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": name, "namespace": "ns", "generation": generation},
            "spec": {"displayName": name}
        }))
        .unwrap();
        if let Some((status, reason)) = ready {
            let desired = DesiredCondition::new(
                condition::READY,
                status == "True",
                reason,
                "waiting for api",
            );
            app.status = Some(AppRegistrationStatus {
                conditions: merge_conditions(
                    &Default::default(),
                    &[desired],
                    Some(1),
                    jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: Some(1),
                ..Default::default()
            });
        }
        app
    }

    #[test]
    fn ready_only_when_every_child_is_ready_for_its_generation() {
        let a = child("a", 1, Some(("True", "Ready")));
        let b = child("b", 1, Some(("False", "WaitingForReference")));
        let stale = child("c", 2, Some(("True", "Ready")));
        let fresh = child("d", 1, None);
        assert!(children_readiness(&[&a]).status);
        let not = children_readiness(&[&a, &b]);
        assert!(!not.status);
        assert_eq!(not.reason, "WaitingForReference");
        assert!(not.message.starts_with("AppRegistration b:"));
        assert_eq!(children_readiness(&[&stale]).reason, "Reconciling");
        assert_eq!(children_readiness(&[&fresh]).reason, "Reconciling");
    }
}
