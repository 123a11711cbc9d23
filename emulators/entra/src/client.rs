//! A small HTTPS client that trusts the emulator's CA: used by the Rust tests, the benchmark, and
//! available to the operator's tests for direct calls (control API, Graph, token endpoint).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::Error;

/// An HTTP response, body fully read.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct EmulatorClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl EmulatorClient {
    /// A client that trusts only `ca_pem`.
    pub fn new(ca_pem: &str) -> Result<Self, Error> {
        let der = crate::crypto::pem_decode(ca_pem, "CERTIFICATE")
            .ok_or_else(|| Error::Tls("CA PEM has no certificate".into()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| Error::Tls(e.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(https);
        Ok(Self { inner })
    }

    /// Sends a request; `body` is sent as JSON when it is `Some`.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, Error> {
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).map_err(|e| Error::Http(e.to_string()))?)
            .uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let payload = match body {
            Some(b) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        self.send_raw(builder, payload).await
    }

    /// Sends a form-encoded POST (the token endpoint's format).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<HttpResponse, Error> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let builder = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/x-www-form-urlencoded");
        self.send_raw(builder, Bytes::from(body)).await
    }

    async fn send_raw(
        &self,
        builder: hyper::http::request::Builder,
        body: Bytes,
    ) -> Result<HttpResponse, Error> {
        let req = builder
            .body(Full::new(body))
            .map_err(|e| Error::Http(e.to_string()))?;
        let resp = self
            .inner
            .request(req)
            .await
            .map_err(|e| Error::Http(format!("{e:?}")))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Error::Http(e.to_string()))?
            .to_bytes();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Client-credentials token with a secret; returns the raw response.
    pub async fn token_with_secret(
        &self,
        token_endpoint: &str,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> Result<HttpResponse, Error> {
        self.post_form(
            token_endpoint,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ],
        )
        .await
    }

    /// Client-credentials token with a client assertion (certificate or federated).
    pub async fn token_with_assertion(
        &self,
        token_endpoint: &str,
        client_id: &str,
        assertion: &str,
        scope: &str,
    ) -> Result<HttpResponse, Error> {
        self.post_form(
            token_endpoint,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
                ("scope", scope),
            ],
        )
        .await
    }
}
