//! What can fail in a reconcile, by stage of the pipeline, with the policy each failure gets: a
//! static `category()` (metric label, log field), a CamelCase `reason()` (condition and event
//! reason) and how soon to retry.

use std::time::Duration;

use crate::graph::GraphError;

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
    /// The registry database sink failed (the resource's `RegistrySynced` says so).
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A credential step could not run: not the leader any more, status kept changing, or a
    /// call failed in a way not covered above (e.g. a timeout).
    #[error("{0}")]
    CredentialStep(String),
    /// A Secret or ConfigMap exists and is not this resource's, or its name is claimed by another
    /// resource: left untouched.
    #[error(transparent)]
    Ownership(#[from] crate::credentials::SecretConflict),
    /// The tenant's app management policy refused a credential (e.g. its lifetime); Graph's
    /// message says which policy.
    #[error("the tenant's policy refused the credential: {0}")]
    TenantPolicy(String),
}

impl From<crate::credentials::DriverError> for Error {
    fn from(e: crate::credentials::DriverError) -> Self {
        use crate::credentials::{DriverError, PortError};
        match e {
            DriverError::Plan(e) => Error::Credential(e),
            DriverError::Port {
                source: PortError::Failed(source),
                step,
                secret_name,
            } => match source.downcast::<GraphError>() {
                Ok(graph) if graph.is_tenant_credential_policy() => {
                    Error::TenantPolicy(graph.to_string())
                }
                Ok(graph) => Error::Graph(*graph),
                Err(source) if source.is::<crate::credentials::SecretConflict>() => {
                    match source.downcast::<crate::credentials::SecretConflict>() {
                        Ok(conflict) => Error::Ownership(*conflict),
                        Err(other) => Error::CredentialStep(other.to_string()),
                    }
                }
                Err(source) => match source.downcast::<kube::Error>() {
                    Ok(kube) => Error::Kube(*kube),
                    Err(source) => {
                        Error::CredentialStep(format!("{step} for secret {secret_name}: {source}"))
                    }
                },
            },
            other => Error::CredentialStep(other.to_string()),
        }
    }
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
            Error::Registry(_) => "registry_database",
            Error::CredentialStep(_) => "credential_step",
            Error::Ownership(_) => "ownership",
            Error::TenantPolicy(_) => "tenant_policy",
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
            Error::Registry(e) => e.reason(),
            Error::CredentialStep(_) => "CredentialStepFailed",
            Error::Ownership(_) => "SecretConflict",
            Error::TenantPolicy(_) => "CredentialRefusedByTenantPolicy",
        }
    }

    /// How soon to retry before backoff: throttling says when; errors a human must fix wait longer.
    pub fn base_retry(&self) -> Duration {
        match self {
            Error::Graph(GraphError::Throttled {
                retry_after: Some(d),
                ..
            }) => (*d).max(Duration::from_secs(1)),
            // Entra's replicas catch up within seconds (2 s typical): look again soon.
            Error::Graph(GraphError::Replicating(_)) => Duration::from_secs(1),
            Error::Graph(GraphError::BadRequest(_) | GraphError::Forbidden { .. })
            | Error::Credential(_)
            | Error::Ownership(_)
            | Error::Invalid(_) => Duration::from_secs(60),
            // Only an administrator changing the tenant's policy (or the spec) helps.
            Error::TenantPolicy(_) => Duration::from_secs(15 * 60),
            _ => Duration::from_secs(5),
        }
    }

    /// The finalizer helper's JSON patch tests the finalizer list it read from the watch cache; a
    /// 422 (test failed) or 409 means the cache was behind the API server, which it is for a
    /// moment after every write (for example a reconcile woken by a related object right after
    /// the first one added the finalizer). Not a failure: look again shortly, once the watch
    /// has caught up.
    pub fn is_stale_cache(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(e) => match e.as_ref() {
                F::AddFinalizer(kube::Error::Api(status))
                | F::RemoveFinalizer(kube::Error::Api(status)) => {
                    status.code == 422 || status.code == 409
                }
                _ => false,
            },
            _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::runtime::finalizer::Error as F;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            Status {
                code,
                ..Status::failure("value did not match", "Invalid")
            }
            .boxed(),
        )
    }

    #[test]
    fn a_failed_finalizer_patch_test_is_a_stale_cache_not_a_failure() {
        assert!(Error::Finalizer(Box::new(F::AddFinalizer(api(422)))).is_stale_cache());
        assert!(Error::Finalizer(Box::new(F::RemoveFinalizer(api(409)))).is_stale_cache());
        // Anything else a finalizer write meets is a failure with backoff.
        assert!(!Error::Finalizer(Box::new(F::AddFinalizer(api(403)))).is_stale_cache());
        assert!(!Error::Kube(api(422)).is_stale_cache());
    }
}
