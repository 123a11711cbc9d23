//! The driver's ports against the real world: Graph's password credentials of one application, the
//! Kubernetes Secrets, and the AppRegistration's status. Every Kubernetes call is bounded by
//! [`KUBE_CALL_TIMEOUT`]; the Graph client has its own timeouts and retries.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::driver::{GraphPasswords, PortError, SecretStore, StatusStore};
use super::rotation::{AddedPassword, ObservedPassword};
use super::secret::{
    ObservedSecret, SecretConflict, SecretContext, SecretCredential, foreign_owner, render_secret,
};
use crate::api::AppRegistration;
use crate::api::appregistration::{
    AppRegistrationStatus, CertificateCredentialStatus, PasswordCredentialStatus,
};
use crate::graph::{Application, GraphClient, GraphError, PasswordCredentialRequest};

/// Bound on each Kubernetes API call made for credentials: a partition must not hang a
/// reconcile (and with it the fence check before its next write).
pub const KUBE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kubernetes call that did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the Kubernetes API within {0:?}")]
pub struct KubeTimeout(pub Duration);

/// Runs a Kubernetes call with [`KUBE_CALL_TIMEOUT`].
pub async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, PortError> {
    match tokio::time::timeout(KUBE_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(PortError::failed(e)),
        Err(_) => Err(PortError::failed(KubeTimeout(KUBE_CALL_TIMEOUT))),
    }
}

/// The application's password credentials as the state machine sees them.
pub fn observed_passwords(app: &Application) -> Vec<ObservedPassword> {
    app.password_credentials
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(ObservedPassword {
                key_id: p.key_id.clone()?,
                display_name: p.display_name.clone(),
                hint: p.hint.clone(),
                start: p.start_date_time,
                end: p.end_date_time?,
            })
        })
        .collect()
}

/// One application's password credentials in Graph. `list` answers with what this reconcile
/// already observed (the application read moments ago), so a pass costs no extra Graph read.
pub struct GraphPasswordPort<'a> {
    pub graph: &'a GraphClient,
    /// The application's object ID.
    pub object_id: &'a str,
    pub observed: Vec<ObservedPassword>,
}

/// `addPassword` answered without a key ID.
#[derive(Debug, thiserror::Error)]
#[error("addPassword answered without a keyId")]
struct NoKeyId;

#[async_trait]
impl GraphPasswords for GraphPasswordPort<'_> {
    async fn list(&self) -> Result<Vec<ObservedPassword>, PortError> {
        Ok(self.observed.clone())
    }

    async fn add(&self, display_name: &str, end: Timestamp) -> Result<AddedPassword, PortError> {
        let request = PasswordCredentialRequest {
            display_name: Some(display_name.to_string()),
            // Entra's clock starts the credential: a fast operator clock must not make a secret
            // that is not valid yet.
            start_date_time: None,
            end_date_time: Some(end),
        };
        let created = self
            .graph
            .add_password(self.object_id, &request)
            .await
            .map_err(PortError::failed)?;
        Ok(AddedPassword {
            key_id: created.key_id.clone().ok_or(PortError::failed(NoKeyId))?,
            display_name: display_name.to_string(),
            hint: created.hint.clone(),
            start: created.start_date_time,
            end: created.end_date_time.unwrap_or(end),
            value: created.secret_text,
        })
    }

    async fn remove(&self, key_id: &str) -> Result<(), PortError> {
        match self.graph.remove_password(self.object_id, key_id).await {
            Ok(()) | Err(GraphError::NotFound(_)) => Ok(()),
            // Graph answers 400 for a key that is already gone.
            Err(GraphError::BadRequest(detail))
                if detail.to_string().contains("No password credential") =>
            {
                Ok(())
            }
            Err(e) => Err(PortError::failed(e)),
        }
    }
}

/// The Secrets of one resource's namespace.
///
/// Only what is this resource's is read as its state and written: a Secret that exists without the
/// operator's label or without an owner reference to this resource, or a name another resource
/// claimed first (`claimed_elsewhere`), answers [`SecretConflict`] and is never written or deleted.
pub struct KubeSecretPort {
    pub api: Api<Secret>,
    /// What the Secret tells its consumers besides the value.
    pub context: SecretContext,
    /// The resource that owns the Secrets (garbage collection with the resource).
    pub owner: Option<OwnerReference>,
    pub field_manager: String,
    /// Secret names another resource in the namespace claimed first, with that resource's name.
    pub claimed_elsewhere: std::collections::BTreeMap<String, String>,
}

impl KubeSecretPort {
    /// The Secret as it is, if it may be this resource's; [`SecretConflict`] otherwise.
    pub(crate) async fn read_own(&self, name: &str) -> Result<Option<Secret>, PortError> {
        let secret = bounded(self.api.get_opt(name)).await?;
        let conflict = |why: String| {
            Err(PortError::failed(SecretConflict {
                kind: "Secret",
                name: name.to_string(),
                why,
            }))
        };
        let owner_uid = self.owner.as_ref().map(|o| o.uid.as_str()).unwrap_or("");
        match &secret {
            Some(existing) => {
                let observed = ObservedSecret::from_secret(existing);
                if let Some(why) = foreign_owner(
                    observed.managed_by_operator,
                    &observed.owner_uids,
                    owner_uid,
                ) {
                    return conflict(why);
                }
            }
            None => {
                if let Some(other) = self.claimed_elsewhere.get(name) {
                    return conflict(format!("{other} declared the same secretName first"));
                }
            }
        }
        Ok(secret)
    }
}

#[async_trait]
impl SecretStore for KubeSecretPort {
    async fn read(&self, name: &str) -> Result<Option<ObservedSecret>, PortError> {
        Ok(self
            .read_own(name)
            .await?
            .map(|s| ObservedSecret::from_secret(&s)))
    }

    async fn write(&self, name: &str, credential: &AddedPassword) -> Result<(), PortError> {
        // Checked again right before the write: someone may have created it since the last read.
        self.read_own(name).await?;
        let mut secret = render_secret(
            &self.context,
            name,
            &SecretCredential {
                key_id: &credential.key_id,
                expires_at: credential.end,
                value: &credential.value,
            },
        );
        secret.metadata.owner_references = self.owner.clone().map(|r| vec![r]);
        bounded(self.api.patch(
            name,
            &PatchParams::apply(&self.field_manager).force(),
            &Patch::Apply(&secret),
        ))
        .await?;
        crate::crash::after_write("secret apply");
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), PortError> {
        if self.read_own(name).await?.is_none() {
            return Ok(());
        }
        match tokio::time::timeout(
            KUBE_CALL_TIMEOUT,
            self.api.delete(name, &Default::default()),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => Ok(()),
            Ok(Err(e)) => Err(PortError::failed(e)),
            Err(_) => Err(PortError::failed(KubeTimeout(KUBE_CALL_TIMEOUT))),
        }
    }
}

/// An AppRegistration's status as this reconcile last read or wrote it, with its
/// `resourceVersion`. Every write is a `PUT …/status` carrying that version, so it lands only if
/// nobody wrote in between (see [`super::driver`], "Fresh state").
pub struct StatusHandle {
    api: Api<AppRegistration>,
    name: String,
    object: Mutex<AppRegistration>,
    /// The last credential write conflicted: the next credential read is a GET.
    refresh: AtomicBool,
}

/// A status write that did not land.
#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    #[error("the resource changed since it was read")]
    Conflict,
    #[error(transparent)]
    Failed(PortError),
}

/// How often [`StatusHandle::update`] reads again and retries after a conflict.
const UPDATE_ATTEMPTS: usize = 3;

impl StatusHandle {
    /// Starts from `object` as the reconcile got it (possibly from a cache: a stale copy costs a
    /// conflict and a GET at the first write, never a lost update).
    pub fn new(api: Api<AppRegistration>, object: &AppRegistration) -> Self {
        StatusHandle {
            api,
            name: object.name_any(),
            object: Mutex::new(object.clone()),
            refresh: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AppRegistration> {
        self.object
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The status as last read or written.
    pub fn status(&self) -> AppRegistrationStatus {
        self.lock().status.clone().unwrap_or_default()
    }

    /// Reads the resource (a quorum GET, not the cache).
    pub async fn refresh(&self) -> Result<(), PortError> {
        let fresh = bounded(self.api.get(&self.name)).await?;
        *self.lock() = fresh;
        Ok(())
    }

    /// Writes `status` on the version last seen. Skipped when it equals the status last seen,
    /// unless `confirm` (then it reaches the server, which answers without a new version when
    /// nothing changes, or 409 if the version moved on).
    async fn put(
        &self,
        status: AppRegistrationStatus,
        confirm: bool,
    ) -> Result<(), StatusWriteError> {
        let mut object = self.lock().clone();
        if !confirm && object.status.as_ref() == Some(&status) {
            return Ok(());
        }
        object.status = Some(status);
        object.metadata.managed_fields = None;
        match bounded(
            self.api
                .replace_status(&self.name, &PostParams::default(), &object),
        )
        .await
        {
            Ok(written) => {
                *self.lock() = written;
                crate::crash::after_write("status replace");
                Ok(())
            }
            Err(PortError::Failed(e))
                if matches!(
                    e.downcast_ref::<kube::Error>(),
                    Some(kube::Error::Api(s)) if s.code == 409
                ) =>
            {
                Err(StatusWriteError::Conflict)
            }
            Err(e) => Err(StatusWriteError::Failed(e)),
        }
    }

    /// Applies `change` to the latest status and writes it; on a conflict reads again (GET) and
    /// applies `change` to what it read. Returns whether a write happened.
    pub async fn update(
        &self,
        change: impl Fn(&mut AppRegistrationStatus),
    ) -> Result<bool, PortError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let before = self.status();
            let mut status = before.clone();
            change(&mut status);
            if status == before {
                return Ok(false);
            }
            match self.put(status, false).await {
                Ok(()) => return Ok(true),
                Err(StatusWriteError::Conflict) => self.refresh().await?,
                Err(StatusWriteError::Failed(e)) => return Err(e),
            }
        }
        Err(PortError::Conflict)
    }
}

/// A kind of status entry kept by Secret name in a list of the AppRegistration's status.
pub trait StatusEntry: Clone + Send + Sync {
    fn entries(status: &mut AppRegistrationStatus) -> &mut Vec<Self>;
    fn secret_name(&self) -> &str;
}

impl StatusEntry for PasswordCredentialStatus {
    fn entries(status: &mut AppRegistrationStatus) -> &mut Vec<Self> {
        &mut status.credentials
    }
    fn secret_name(&self) -> &str {
        &self.secret_name
    }
}

impl StatusEntry for CertificateCredentialStatus {
    fn entries(status: &mut AppRegistrationStatus) -> &mut Vec<Self> {
        &mut status.certificates
    }
    fn secret_name(&self) -> &str {
        &self.secret_name
    }
}

#[async_trait]
impl<E: StatusEntry + 'static> StatusStore<E> for StatusHandle {
    async fn read(&self, secret_name: &str) -> Result<Option<E>, PortError> {
        if self.refresh.swap(false, Ordering::SeqCst) {
            self.refresh().await?;
        }
        let mut status = self.status();
        Ok(E::entries(&mut status)
            .iter()
            .find(|c| c.secret_name() == secret_name)
            .cloned())
    }

    async fn write(&self, secret_name: &str, entry: Option<&E>) -> Result<(), PortError> {
        let mut status = self.status();
        let entries = E::entries(&mut status);
        match (
            entries.iter_mut().find(|c| c.secret_name() == secret_name),
            entry,
        ) {
            (Some(existing), Some(entry)) => *existing = entry.clone(),
            (None, Some(entry)) => entries.push(entry.clone()),
            (_, None) => entries.retain(|c| c.secret_name() != secret_name),
        }
        match self.put(status, true).await {
            Ok(()) => Ok(()),
            Err(StatusWriteError::Conflict) => {
                self.refresh.store(true, Ordering::SeqCst);
                Err(PortError::Conflict)
            }
            Err(StatusWriteError::Failed(e)) => Err(e),
        }
    }
}
