//! The certificate driver's ports against the real world: the application's `keyCredentials` in
//! Graph (`addKey`/`removeKey` with a proof of possession, or a PATCH of the whole collection when
//! no valid key of ours can sign one), and the certificate's Kubernetes Secret.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};

use super::certgen::{self, CertificateInfo, GeneratedCertificate};
use super::certificate::ObservedKey;
use super::certificate_driver::{
    CertificateMaterial, CertificateSecretState, CertificateSecrets, Generator, GraphKeys,
    ProofSigner,
};
use super::driver::PortError;
use super::ports::{KubeSecretPort, bounded};
use super::secret::{
    KEY_AUTHORITY_HOST, KEY_CLIENT_ID, KEY_EXPIRES_AT, KEY_TENANT_ID, SecretContext, secret_labels,
};
use crate::graph::{Application, GraphClient, GraphError, KeyCredential, SecretString};

/// Secret keys of a certificate Secret (type `kubernetes.io/tls`).
pub const KEY_TLS_CRT: &str = "tls.crt";
pub const KEY_TLS_KEY: &str = "tls.key";
/// Certificate then private key in one PEM: what azure-identity's certificate credential reads
/// (`AZURE_CLIENT_CERTIFICATE_PATH` pointing at the mounted file).
pub const KEY_CLIENT_PEM: &str = "client.pem";
/// SHA-1 thumbprint (hex) of `tls.crt`.
pub const KEY_THUMBPRINT: &str = "thumbprint";
/// The next certificate and key while a rotation is in progress (before Entra knows it).
pub const KEY_NEXT_CRT: &str = "tls-next.crt";
pub const KEY_NEXT_KEY: &str = "tls-next.key";

/// The application's key credentials as the state machine sees them.
pub fn observed_keys(app: &Application) -> Vec<ObservedKey> {
    app.key_credentials
        .iter()
        .flatten()
        .filter_map(|k| {
            Some(ObservedKey {
                key_id: k.key_id.clone()?,
                display_name: k.display_name.clone(),
                thumbprint: k.custom_key_identifier.as_deref().and_then(thumbprint_hex),
                start: k.start_date_time,
                end: k.end_date_time?,
            })
        })
        .collect()
}

/// Graph's `customKeyIdentifier` of a certificate (base64 of the SHA-1 thumbprint) as upper-case
/// hex.
fn thumbprint_hex(custom_key_identifier: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(custom_key_identifier)
        .ok()?;
    (bytes.len() == 20).then(|| bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// One application's key credentials in Graph.
pub struct GraphKeyPort<'a> {
    pub graph: &'a GraphClient,
    pub object_id: &'a str,
    pub observed: Vec<ObservedKey>,
}

/// A write answered without the key it made.
#[derive(Debug, thiserror::Error)]
#[error("Graph did not report the uploaded certificate {0}")]
struct NotReported(String);

impl GraphKeyPort<'_> {
    fn proof(&self, signer: &ProofSigner<'_>) -> Result<String, PortError> {
        let pem = format!("{}\n{}", signer.cert_pem, signer.key_pem.expose());
        crate::graph::CertificateAssertion::from_pem(pem.as_bytes(), "", "")
            .and_then(|a| a.key_proof(self.object_id))
            .map_err(PortError::failed)
    }

    /// PATCH `keyCredentials` with every key but `without`, plus `with`: existing keys are named
    /// by `keyId` (Graph keeps them; it never returns their `key` on reads).
    async fn patch_keys(
        &self,
        without: Option<&str>,
        with: Option<KeyCredential>,
    ) -> Result<Application, PortError> {
        let app = self
            .graph
            .get_application(self.object_id)
            .await
            .map_err(PortError::failed)?;
        let mut keys: Vec<serde_json::Value> = app
            .key_credentials
            .iter()
            .flatten()
            .filter(|k| k.key_id.as_deref().is_some_and(|id| Some(id) != without))
            .map(|k| serde_json::json!({ "keyId": k.key_id }))
            .collect();
        if let Some(new) = with {
            keys.push(serde_json::to_value(new).map_err(PortError::failed)?);
        }
        self.graph
            .update_application(
                self.object_id,
                &serde_json::json!({ "keyCredentials": keys }),
            )
            .await
            .map_err(PortError::failed)?;
        self.graph
            .get_application(self.object_id)
            .await
            .map_err(PortError::failed)
    }
}

#[async_trait]
impl GraphKeys for GraphKeyPort<'_> {
    async fn list(&self) -> Result<Vec<ObservedKey>, PortError> {
        Ok(self.observed.clone())
    }

    async fn add(
        &self,
        certificate: &CertificateInfo,
        display_name: &str,
        signer: Option<ProofSigner<'_>>,
    ) -> Result<ObservedKey, PortError> {
        let request = KeyCredential {
            display_name: Some(display_name.to_string()),
            kind: Some("AsymmetricX509Cert".into()),
            usage: Some("Verify".into()),
            key: Some(certificate.key_base64()),
            ..KeyCredential::default()
        };
        let keys = match signer {
            Some(signer) => {
                let proof = self.proof(&signer)?;
                let added = self
                    .graph
                    .add_key(self.object_id, &request, &proof)
                    .await
                    .map_err(PortError::failed)?;
                observed_keys(&Application {
                    key_credentials: Some(vec![added]),
                    ..Application::default()
                })
            }
            None => observed_keys(&self.patch_keys(None, Some(request)).await?),
        };
        keys.into_iter()
            .find(|k| {
                k.thumbprint
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(&certificate.thumbprint))
            })
            .ok_or_else(|| PortError::failed(NotReported(certificate.thumbprint.clone())))
    }

    async fn remove(&self, key_id: &str, signer: Option<ProofSigner<'_>>) -> Result<(), PortError> {
        match signer {
            Some(signer) => {
                let proof = self.proof(&signer)?;
                match self.graph.remove_key(self.object_id, key_id, &proof).await {
                    Ok(()) | Err(GraphError::NotFound(_)) => {}
                    Err(e) => return Err(PortError::failed(e)),
                }
            }
            None => {
                self.patch_keys(Some(key_id), None).await?;
            }
        }
        Ok(())
    }
}

/// Generates RSA key pairs and self-signed certificates (CN = the Secret's name).
pub struct RsaGenerator;

#[async_trait]
impl Generator for RsaGenerator {
    async fn generate(
        &self,
        secret_name: &str,
        lifetime: jiff::SignedDuration,
        now: jiff::Timestamp,
    ) -> Result<GeneratedCertificate, PortError> {
        let common_name = secret_name.to_string();
        tokio::task::spawn_blocking(move || certgen::generate(&common_name, lifetime, now))
            .await
            .map_err(PortError::failed)?
            .map_err(PortError::failed)
    }
}

/// The Secret of a generated certificate (this resource's own, checked as for client secrets) or
/// of one from an existing Secret (`read_only`: read, never written).
pub struct KubeCertificateSecretPort<'a> {
    pub secrets: &'a KubeSecretPort,
    pub read_only: bool,
    /// Whether a retired certificate's Secret may be deleted: false while a declared credential
    /// of the resource still writes a Secret of that name.
    pub may_delete: bool,
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|s| !s.trim().is_empty())
}

/// The certificate under `crt` and, when it matches, the key under `key`.
fn material(secret: &Secret, crt: &str, key: &str) -> Option<CertificateMaterial> {
    let cert_pem = text(secret, crt)?;
    let info = certgen::parse_certificate_pem(&cert_pem).ok()?;
    let key_pem = text(secret, key)
        .filter(|k| certgen::key_matches(k, &info).unwrap_or(false))
        .map(SecretString::new);
    Some(CertificateMaterial {
        info,
        cert_pem,
        key_pem,
    })
}

impl KubeCertificateSecretPort<'_> {
    async fn get(&self, name: &str) -> Result<Option<Secret>, PortError> {
        if self.read_only {
            bounded(self.secrets.api.get_opt(name)).await
        } else {
            self.secrets.read_own(name).await
        }
    }

    async fn apply(
        &self,
        name: &str,
        current: Option<&CertificateMaterial>,
        next: Option<(&str, &SecretString)>,
    ) -> Result<(), PortError> {
        let context = &self.secrets.context;
        let mut data: BTreeMap<String, String> = BTreeMap::from([
            (KEY_CLIENT_ID.to_string(), context.client_id.clone()),
            (KEY_TENANT_ID.to_string(), context.tenant_id.clone()),
            (
                KEY_AUTHORITY_HOST.to_string(),
                context.authority_host.clone(),
            ),
            // A kubernetes.io/tls Secret must have both keys, also before the first promotion.
            (KEY_TLS_CRT.to_string(), String::new()),
            (KEY_TLS_KEY.to_string(), String::new()),
        ]);
        if let Some(current) = current
            && let Some(key_pem) = &current.key_pem
        {
            data.insert(KEY_TLS_CRT.into(), current.cert_pem.clone());
            data.insert(KEY_TLS_KEY.into(), key_pem.expose().to_string());
            data.insert(
                KEY_CLIENT_PEM.into(),
                certgen::client_pem(&current.cert_pem, key_pem.expose())
                    .expose()
                    .to_string(),
            );
            data.insert(KEY_THUMBPRINT.into(), current.info.thumbprint.clone());
            data.insert(KEY_EXPIRES_AT.into(), current.info.not_after.to_string());
        }
        if let Some((cert_pem, key_pem)) = next {
            data.insert(KEY_NEXT_CRT.into(), cert_pem.to_string());
            data.insert(KEY_NEXT_KEY.into(), key_pem.expose().to_string());
        }
        let secret = render_certificate_secret(context, name, data);
        let mut secret = secret;
        secret.metadata.owner_references = self.secrets.owner.clone().map(|r| vec![r]);
        bounded(self.secrets.api.patch(
            name,
            &PatchParams::apply(&self.secrets.field_manager).force(),
            &Patch::Apply(&secret),
        ))
        .await?;
        crate::crash::after_write("certificate secret apply");
        Ok(())
    }
}

/// The whole certificate Secret for server-side apply. Holds the private key: never log it.
fn render_certificate_secret(
    context: &SecretContext,
    name: &str,
    data: BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(context.namespace.clone()),
            labels: Some(secret_labels(&context.app_registration)),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Someone asked to write a Secret the operator only reads.
#[derive(Debug, thiserror::Error)]
#[error("Secret {0} belongs to its issuer (source: Secret); the operator does not write it")]
struct ReadOnly(String);

#[async_trait]
impl CertificateSecrets for KubeCertificateSecretPort<'_> {
    async fn read(&self, name: &str) -> Result<Option<CertificateSecretState>, PortError> {
        Ok(self.get(name).await?.map(|s| CertificateSecretState {
            current: material(&s, KEY_TLS_CRT, KEY_TLS_KEY),
            staged: material(&s, KEY_NEXT_CRT, KEY_NEXT_KEY),
        }))
    }

    async fn stage(&self, name: &str, generated: &GeneratedCertificate) -> Result<(), PortError> {
        if self.read_only {
            return Err(PortError::failed(ReadOnly(name.to_string())));
        }
        let state = self.read(name).await?.unwrap_or_default();
        self.apply(
            name,
            state.current.as_ref(),
            Some((&generated.cert_pem, &generated.key_pem)),
        )
        .await
    }

    async fn delete_own(&self, name: &str) -> Result<(), PortError> {
        if !self.may_delete {
            return Ok(());
        }
        let Some(secret) = bounded(self.secrets.api.get_opt(name)).await? else {
            return Ok(());
        };
        let owner_uid = self.secrets.owner.as_ref().map(|o| o.uid.as_str());
        let ours = owner_uid.is_some_and(|uid| {
            crate::credentials::ObservedSecret::from_secret(&secret).is_operators_for(uid)
        });
        if !ours {
            return Ok(());
        }
        match bounded(self.secrets.api.delete(name, &Default::default())).await {
            Ok(_) => {}
            Err(PortError::Failed(e))
                if e.downcast_ref::<kube::Error>()
                    .is_some_and(|k| matches!(k, kube::Error::Api(s) if s.code == 404)) => {}
            Err(e) => return Err(e),
        }
        crate::crash::after_write("certificate secret delete");
        Ok(())
    }

    async fn promote(&self, name: &str) -> Result<(), PortError> {
        if self.read_only {
            return Err(PortError::failed(ReadOnly(name.to_string())));
        }
        let state = self.read(name).await?.unwrap_or_default();
        match state.staged {
            Some(staged) => self.apply(name, Some(&staged), None).await,
            None => Ok(()),
        }
    }
}
