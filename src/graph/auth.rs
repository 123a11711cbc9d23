//! Tokens for Graph, and the token request that probes consent in other tenants.
//!
//! Operator tokens come from `azure_identity` credentials (workload identity, client secret, and
//! for certificates its `ClientAssertionCredential`), configured with a custom cloud (authority
//! host) and our own reqwest client as transport, so the extra CA and the single rustls+ring TLS
//! stack apply to token requests too. `azure_identity` caches tokens and refreshes them 5 minutes
//! before expiry.
//!
//! Why the certificate assertion is built here rather than with `ClientCertificateCredential`:
//! that credential needs OpenSSL (its `client_certificate` feature), a second TLS/crypto stack and
//! a system library in the image. Signing the assertion (RS256 with `x5t`/`x5t#S256`) with ring,
//! which kube already uses, keeps one stack. Consequence: the certificate file is PEM with an
//! unencrypted RSA key; PKCS#12 and password-protected keys are rejected with a clear error.
//!
//! Why the consent probe is a direct form POST: it must return the token endpoint's AADSTS code
//! (700016 = the app has no service principal in that tenant, i.e. not consented) and the token's
//! claims, which `azure_identity` flattens into an error string and an opaque token.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{
    ClientMethodOptions, ClientOptions, ExponentialRetryOptions, RetryOptions, Transport,
};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use url::Url;

use super::config::{CredentialConfig, GraphConfig, token_endpoint};
use super::error::GraphError;
use super::secret::SecretString;

/// Supplies bearer tokens for Graph. Implementations cache; `token` is called per request.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn token(&self) -> Result<SecretString, GraphError>;
}

/// A fixed token, for tests and for callers that obtained one elsewhere.
#[derive(Debug, Clone)]
pub struct StaticToken(pub SecretString);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<SecretString, GraphError> {
        Ok(self.0.clone())
    }
}

/// A token source backed by an `azure_identity` credential.
pub struct AzureIdentityTokenSource {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    kind: &'static str,
}

impl fmt::Debug for AzureIdentityTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureIdentityTokenSource")
            .field("kind", &self.kind)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for AzureIdentityTokenSource {
    async fn token(&self) -> Result<SecretString, GraphError> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| GraphError::Authentication {
                message: format!("{} credential: {e}", self.kind),
            })?;
        Ok(SecretString::new(token.token.secret()))
    }
}

impl AzureIdentityTokenSource {
    /// Builds the credential described by `config`, sending its requests through `http`.
    pub fn from_config(config: &GraphConfig, http: reqwest::Client) -> Result<Self, GraphError> {
        let client_options = client_options(&config.authority_host, http);
        let az = |e: azure_core::Error| GraphError::Config(e.to_string());
        let credential: Arc<dyn TokenCredential> = match &config.credential {
            CredentialConfig::ClientSecret { secret } => ClientSecretCredential::new(
                &config.tenant_id,
                config.client_id.clone(),
                Secret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map_err(az)?,
            CredentialConfig::WorkloadIdentity { token_file } => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions { client_options },
                    client_id: Some(config.client_id.clone()),
                    tenant_id: Some(config.tenant_id.clone()),
                    token_file_path: Some(token_file.clone()),
                }))
                .map_err(az)?
            }
            CredentialConfig::ClientCertificate { path, password } => {
                if password.is_some() {
                    return Err(GraphError::Config(
                        "AZURE_CLIENT_CERTIFICATE_PASSWORD is set, but only PEM files with an \
                         unencrypted RSA key are supported; decrypt the key into the mounted PEM"
                            .into(),
                    ));
                }
                let audience = config.token_endpoint(&config.tenant_id)?;
                let assertion = CertificateAssertion::from_pem_file(
                    path,
                    &config.client_id,
                    audience.as_str(),
                )?;
                ClientAssertionCredential::new(
                    config.tenant_id.clone(),
                    config.client_id.clone(),
                    assertion,
                    Some(ClientAssertionCredentialOptions { client_options }),
                )
                .map_err(az)?
            }
        };
        Ok(Self {
            credential,
            scope: config.scope(),
            kind: config.credential.kind(),
        })
    }
}

fn client_options(authority_host: &Url, http: reqwest::Client) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = authority_host.as_str().trim_end_matches('/').to_string();
    // azure_core retries token requests for a minute by default; a TLS or DNS misconfiguration
    // would then hold every reconcile that long. A few quick tries, then the error surfaces and
    // the controller requeues.
    let retry = RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 3,
        max_total_elapsed: azure_core::time::Duration::seconds(10),
        max_delay: azure_core::time::Duration::seconds(2),
    });
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        retry,
        ..Default::default()
    }
}

/// Signs client assertions with a certificate's RSA key: a JWT with `x5t` and `x5t#S256` headers
/// and `aud` = the token endpoint, `iss` = `sub` = the client id, valid 5 minutes.
pub struct CertificateAssertion {
    client_id: String,
    audience: String,
    key: RsaKeyPair,
    x5t: String,
    x5t_s256: String,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    pub fn from_pem_file(path: &Path, client_id: &str, audience: &str) -> Result<Self, GraphError> {
        let pem = std::fs::read(path).map_err(|e| {
            GraphError::Config(format!("cannot read certificate {}: {e}", path.display()))
        })?;
        Self::from_pem(&pem, client_id, audience)
    }

    pub fn from_pem(pem: &[u8], client_id: &str, audience: &str) -> Result<Self, GraphError> {
        let cert = CertificateDer::pem_slice_iter(pem)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| {
                GraphError::Config("no CERTIFICATE block in the certificate PEM".into())
            })?;
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
            GraphError::Config(format!(
                "no unencrypted private key in the certificate PEM ({e}); PKCS#12 and encrypted keys are not supported"
            ))
        })?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(GraphError::Config(
                    "the certificate key must be RSA (Entra accepts RS256 assertions)".into(),
                ));
            }
        }
        .map_err(|e| GraphError::Config(format!("unusable RSA key: {e}")))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        Ok(Self {
            client_id: client_id.to_string(),
            audience: audience.to_string(),
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        })
    }

    /// A fresh signed assertion.
    pub fn sign(&self) -> Result<String, GraphError> {
        let now = unix_now();
        let jti: [u8; 16] = rand::random();
        self.sign_jwt(
            serde_json::json!({
                "alg": "RS256", "typ": "JWT", "x5t": self.x5t, "x5t#S256": self.x5t_s256,
            }),
            serde_json::json!({
                "aud": self.audience, "iss": self.client_id, "sub": self.client_id,
                "jti": hex(&jti), "nbf": now, "iat": now, "exp": now + 300,
            }),
        )
    }

    /// The proof of possession that `addKey` / `removeKey` require: a JWT signed by a currently
    /// valid certificate of the application, `aud` = AAD Graph's appId, `iss` = the application's
    /// object id, valid 10 minutes.
    pub fn key_proof(&self, application_object_id: &str) -> Result<String, GraphError> {
        let now = unix_now();
        let jti: [u8; 16] = rand::random();
        self.sign_jwt(
            serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t": self.x5t }),
            serde_json::json!({
                "aud": "00000002-0000-0000-c000-000000000000", "iss": application_object_id,
                "jti": hex(&jti), "nbf": now, "exp": now + 600,
            }),
        )
    }

    fn sign_jwt(
        &self,
        header: serde_json::Value,
        claims: serde_json::Value,
    ) -> Result<String, GraphError> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| GraphError::Config("RSA signing of a JWT failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The first certificate of a PEM file as standard base64 DER, the form of
/// `keyCredentials[].key`.
pub fn certificate_key_value(pem: &[u8]) -> Result<String, GraphError> {
    let cert = CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| GraphError::Config("no CERTIFICATE block in the PEM".into()))?;
    Ok(der_to_base64(cert.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        self.sign().map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string())
        })
    }
}

/// Claims of an access token, decoded without verifying the signature: the probe only needs to
/// know what the token endpoint granted, and the token came straight from it over TLS.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TokenClaims {
    /// Tenant that issued the token.
    pub tid: Option<String>,
    /// Client app id (v2 tokens).
    pub azp: Option<String>,
    /// Client app id (v1 tokens).
    pub appid: Option<String>,
    /// Object ID of the caller; in an app-only token, the client's service principal.
    pub oid: Option<String>,
    /// Application permissions granted in that tenant; empty when none.
    #[serde(deserialize_with = "string_or_list")]
    pub roles: Vec<String>,
    pub iss: Option<String>,
    pub aud: Option<String>,
    pub exp: Option<i64>,
}

impl TokenClaims {
    /// The client's app id, whichever token version.
    pub fn client_app_id(&self) -> Option<&str> {
        self.azp.as_deref().or(self.appid.as_deref())
    }

    /// Decodes the payload of a JWT.
    pub fn decode_unverified(jwt: &str) -> Result<Self, GraphError> {
        let bad = |m: &str| GraphError::Decode {
            operation: "token claims".into(),
            message: m.into(),
        };
        let payload = jwt.split('.').nth(1).ok_or_else(|| bad("not a JWT"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| bad("payload is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(&format!("payload is not JSON: {e}")))
    }
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// An error answer of the token endpoint.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TokenEndpointError {
    #[serde(skip)]
    pub status: u16,
    /// OAuth error, e.g. `unauthorized_client`, `invalid_client`.
    pub error: String,
    /// `AADSTS700016: Application with identifier … was not found in the directory …`.
    pub error_description: String,
    pub error_codes: Vec<u32>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl TokenEndpointError {
    /// The first AADSTS code, e.g. `AADSTS700016`.
    pub fn aadsts(&self) -> Option<String> {
        if let Some(code) = self.error_codes.first() {
            return Some(format!("AADSTS{code}"));
        }
        let d = self.error_description.strip_prefix("AADSTS")?;
        let digits: String = d.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
    }

    fn has(&self, code: u32) -> bool {
        self.aadsts().as_deref() == Some(format!("AADSTS{code}").as_str())
    }

    /// AADSTS700016: the app is unknown in that tenant, i.e. no admin consented to it there.
    pub fn is_not_consented(&self) -> bool {
        self.has(700016)
    }
    /// AADSTS7000215: wrong secret.
    pub fn is_invalid_secret(&self) -> bool {
        self.has(7000215)
    }
    /// AADSTS7000222: the secret expired.
    pub fn is_expired_secret(&self) -> bool {
        self.has(7000222)
    }
    /// AADSTS90002: no such tenant.
    pub fn is_tenant_not_found(&self) -> bool {
        self.has(90002)
    }
}

/// The answer to a client-credentials token request.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenProbe {
    /// A token was issued; its claims (the token itself is dropped).
    Issued(TokenClaims),
    /// The token endpoint refused, with its AADSTS code.
    Rejected(TokenEndpointError),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
}

/// `POST {authority}/{tenant}/oauth2/v2.0/token` with `client_credentials` and a client secret.
/// Never logs the form or the response body.
pub async fn request_client_credentials(
    http: &reqwest::Client,
    authority_host: &Url,
    tenant_id: &str,
    client_id: &str,
    client_secret: &SecretString,
    scope: &str,
) -> Result<TokenProbe, GraphError> {
    let url = token_endpoint(authority_host, tenant_id)?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret.expose())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .finish();
    let operation = "POST /{tenant}/oauth2/v2.0/token".to_string();
    let started = std::time::Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| GraphError::Transport {
            operation: operation.clone(),
            message: super::error::describe_reqwest_error(&e),
        })?;
    let status = response.status().as_u16();
    tracing::debug!(
        operation = %operation,
        tenant = tenant_id,
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "token request"
    );
    let body = response.bytes().await.map_err(|e| GraphError::Transport {
        operation: operation.clone(),
        message: super::error::describe_reqwest_error(&e),
    })?;
    if (200..300).contains(&status) {
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| GraphError::Decode {
                operation: operation.clone(),
                message: e.to_string(),
            })?;
        return TokenClaims::decode_unverified(token.access_token.expose()).map(TokenProbe::Issued);
    }
    match serde_json::from_slice::<TokenEndpointError>(&body) {
        Ok(mut e) if !e.error.is_empty() => {
            e.status = status;
            Ok(TokenProbe::Rejected(e))
        }
        _ => Err(super::error::map_status(
            status,
            &body,
            None,
            None,
            operation,
            super::error::Permission::None,
        )),
    }
}

/// Builds the reqwest client used for Graph and token requests: rustls with ring (the provider
/// kube uses), system roots plus the extra CA bundle, per-attempt timeout.
pub fn build_http_client(
    extra_ca_pem: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, GraphError> {
    // reqwest is built without a default crypto provider so that aws-lc is never linked; make
    // ring the process default unless someone installed one already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("entra-operator/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = extra_ca_pem {
        let pem = std::fs::read(path).map_err(|e| {
            GraphError::Config(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| GraphError::Config(format!("invalid CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(GraphError::Config(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| GraphError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Standard base64 of DER, as Graph's `keyCredentials[].key` wants it.
pub fn der_to_base64(der: &[u8]) -> String {
    STANDARD.encode(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_PEM: &[u8] = include_bytes!("testdata/client-cert.pem");

    fn b64json(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn certificate_assertion_is_a_verifiable_rs256_jwt() {
        let aud = "https://login.example/t1/oauth2/v2.0/token";
        let a = CertificateAssertion::from_pem(TEST_PEM, "client-1", aud).unwrap();
        let jwt = a.sign().unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        // sha1 fingerprint of testdata/client-cert.pem (openssl x509 -fingerprint -sha1).
        let x5t = URL_SAFE_NO_PAD
            .decode(header["x5t"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex(&x5t), "bc2c4451063f7f36e8c9b381ee9330b92f727962");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["nbf"].as_u64().unwrap(),
            300
        );
        // Verify the signature with the key's public half.
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            a.key.public().as_ref(),
        );
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn certificate_errors_are_config_errors() {
        let e = CertificateAssertion::from_pem(b"nothing", "c", "a").unwrap_err();
        assert_eq!(e.category(), "graph_config");
        let cert_only: Vec<u8> = String::from_utf8_lossy(TEST_PEM)
            .split("-----BEGIN PRIVATE KEY-----")
            .next()
            .unwrap()
            .as_bytes()
            .to_vec();
        let e = CertificateAssertion::from_pem(&cert_only, "c", "a").unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
    }

    #[test]
    fn decodes_token_claims_without_verifying() {
        let payload = b64json(serde_json::json!({
            "aud": "https://graph.microsoft.com", "iss": "https://sts.windows.net/t2/",
            "tid": "t2", "appid": "app-1", "roles": ["Bookings.Read", "System"], "exp": 1
        }));
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        let c = TokenClaims::decode_unverified(&jwt).unwrap();
        assert_eq!(c.tid.as_deref(), Some("t2"));
        assert_eq!(c.client_app_id(), Some("app-1"));
        assert_eq!(c.roles, vec!["Bookings.Read", "System"]);

        let payload = b64json(serde_json::json!({"tid": "t3", "azp": "app-2"}));
        let c = TokenClaims::decode_unverified(&format!("a.{payload}.b")).unwrap();
        assert!(c.roles.is_empty(), "no roles claim when none granted");
        assert_eq!(c.client_app_id(), Some("app-2"));
        assert!(TokenClaims::decode_unverified("garbage").is_err());
    }

    #[test]
    fn token_endpoint_errors_expose_aadsts_codes() {
        let e: TokenEndpointError = serde_json::from_str(
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.","error_codes":[700016],"timestamp":"2024-01-01 00:00:00Z","trace_id":"t","correlation_id":"c"}"#,
        )
        .unwrap();
        assert!(e.is_not_consented());
        assert_eq!(e.aadsts().as_deref(), Some("AADSTS700016"));
        let e = TokenEndpointError {
            error: "invalid_client".into(),
            error_description: "AADSTS7000215: Invalid client secret provided.".into(),
            ..Default::default()
        };
        assert!(e.is_invalid_secret());
        assert!(!e.is_expired_secret());
        assert!(!e.is_not_consented());
    }
}
