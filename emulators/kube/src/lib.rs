//! Kubernetes API server emulator: an in-memory API server that kube-rs controllers, `kubectl` and
//! the Python kubernetes client can use. Run it in-process with [`KubeEmulator::start`], or as the
//! `kube-emulator` binary. See the README for what is and is not supported.

pub mod api_error;
pub mod auth;
pub mod cel_cost;
pub mod cel_ext;
pub mod discovery;
pub mod events_view;
pub mod field_error;
pub mod gc;
pub mod http;
pub mod list;
pub mod protobuf;
pub mod rbac;
pub mod request;
pub mod resources;
pub mod selectors;
pub mod ssa;
pub mod state;
pub mod store;
pub mod table;
pub mod validation;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use base64::Engine;
use serde_json::Value;
use tokio::net::TcpListener;

pub use state::State;
pub use validation::{FieldError, render_message, validate_object};

/// How to start the emulator.
#[derive(Clone, Debug)]
pub struct KubeEmulatorConfig {
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Serve HTTPS with a generated CA (the kubeconfig carries the CA).
    pub tls: bool,
    /// Require `Authorization: Bearer <token>`; the kubeconfig carries it.
    pub token: Option<String>,
    /// Watch events kept for watches from a resource version (older ones get 410 Gone).
    pub history: usize,
    /// How often open watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Who may do what: [`Authorization::AlwaysAllow`] (every authenticated request) or
    /// [`Authorization::Rbac`] (Roles, ClusterRoles and bindings; the kubeconfig's admin token is
    /// in `system:masters` and may do anything; ServiceAccount tokens from TokenRequest).
    pub authorization: Authorization,
}

/// The authorization mode (kube-apiserver's `--authorization-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Authorization {
    #[default]
    AlwaysAllow,
    Rbac,
}

impl Default for KubeEmulatorConfig {
    fn default() -> Self {
        KubeEmulatorConfig {
            port: 0,
            tls: false,
            token: None,
            history: 50_000,
            bookmark_interval: Duration::from_secs(5),
            authorization: Authorization::AlwaysAllow,
        }
    }
}

/// A running emulator. Dropping it does not stop it; call [`KubeEmulator::shutdown`].
pub struct KubeEmulator {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    token: Option<String>,
    state: Arc<State>,
    stop: tokio::sync::watch::Sender<bool>,
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
}

fn make_tls() -> Result<Tls> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kube-emulator-ca");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = params.signed_by(&key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_pem: ca_cert.pem(),
    })
}

async fn serve_conn<S>(io: S, state: Arc<State>, mut stop: tokio::sync::watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let req = req.map(axum::body::Body::new);
            Ok::<_, std::convert::Infallible>(http::handle(state, req).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {}
    }
}

impl KubeEmulator {
    /// Starts the emulator on 127.0.0.1.
    pub async fn start(config: KubeEmulatorConfig) -> Result<KubeEmulator> {
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .context("binding the emulator's port")?;
        let addr = listener.local_addr()?;
        let mut config = config;
        if config.authorization == Authorization::Rbac && config.token.is_none() {
            // The admin needs a credential the anonymous user does not have.
            config.token = Some(format!("admin-{}", uuid::Uuid::new_v4().simple()));
        }
        let state = State::new(
            config.token.clone(),
            config.history,
            config.bookmark_interval,
        );
        state.rbac.store(
            config.authorization == Authorization::Rbac,
            std::sync::atomic::Ordering::Relaxed,
        );
        let tls = if config.tls { Some(make_tls()?) } else { None };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let acceptor = tls.map(|t| t.acceptor);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        {
            let state = state.clone();
            let mut stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((sock, _)) = accepted else { continue };
                            let _ = sock.set_nodelay(true);
                            let state = state.clone();
                            let stop_rx = stop_rx.clone();
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                match acceptor {
                                    Some(a) => {
                                        if let Ok(s) = a.accept(sock).await {
                                            serve_conn(s, state, stop_rx).await;
                                        }
                                    }
                                    None => serve_conn(sock, state, stop_rx).await,
                                }
                            });
                        }
                        _ = stop_rx.changed() => break,
                    }
                }
            });
        }
        {
            // Garbage collector and namespace controller.
            let state = state.clone();
            let mut stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = state.gc.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop_rx.changed() => break,
                    }
                    state.gc_pass();
                }
            });
        }
        Ok(KubeEmulator {
            addr,
            tls: config.tls,
            ca_pem,
            token: config.token,
            state,
            stop,
        })
    }

    /// `http://127.0.0.1:<port>` (or `https://`).
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The generated CA (PEM) when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The shared state (store, types, fault switches), for tests that look inside.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// A kubeconfig (context `kube-emulator`, namespace `default`) for this emulator.
    pub fn kubeconfig_yaml(&self) -> String {
        let mut cluster = format!("    server: {}\n", self.base_url());
        if let Some(ca) = &self.ca_pem {
            let data = base64::engine::general_purpose::STANDARD.encode(ca);
            cluster.push_str(&format!("    certificate-authority-data: {data}\n"));
        }
        let user = match &self.token {
            Some(t) => format!("    token: {t}\n"),
            None => "    username: admin\n".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-emulator\n  cluster:\n{cluster}users:\n- name: kube-emulator\n  user:\n{user}contexts:\n- name: kube-emulator\n  context:\n    cluster: kube-emulator\n    user: kube-emulator\n    namespace: default\ncurrent-context: kube-emulator\npreferences: {{}}\n"
        )
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<()> {
        std::fs::write(path.as_ref(), self.kubeconfig_yaml())
            .with_context(|| format!("writing {}", path.as_ref().display()))
    }

    /// Creates (or replaces) a CRD from its JSON/YAML document; its resources are served at once.
    pub fn create_crd(&self, crd: Value) -> Result<()> {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rt = self
            .state
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("CRDs are built in");
        if self.state.store.get(&rt.key(), "", &name).is_some() {
            return Ok(());
        }
        self.state
            .create_object("v1", None, crd, "kube-emulator")
            .map_err(|e| anyhow::anyhow!("creating CRD {name}: {}", e.body["message"]))?;
        Ok(())
    }

    /// Creates every CRD in the `*.yaml`/`*.yml`/`*.json` files of a directory.
    pub fn apply_crds_from_dir(&self, dir: impl AsRef<Path>) -> Result<usize> {
        let mut n = 0;
        let mut paths: Vec<_> = std::fs::read_dir(dir.as_ref())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "yaml" | "yml" | "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for doc in yaml_documents(&text)? {
                if doc["kind"] == "CustomResourceDefinition" {
                    self.create_crd(doc)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// A kubeconfig that authenticates as the ServiceAccount `namespace/name` (the account is
    /// created when missing), with a token from TokenRequest, as `kubectl create token` gives.
    pub fn service_account_kubeconfig_yaml(&self, namespace: &str, name: &str) -> Result<String> {
        let rt = self
            .state
            .find_type("", "v1", "serviceaccounts")
            .expect("ServiceAccounts are built in");
        if self.state.store.get(&rt.key(), namespace, name).is_none() {
            self.create(
                serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace}}),
            )?;
        }
        let ri = request::ReqInfo {
            rt,
            version: "v1".into(),
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            sub: Some("token".into()),
        };
        let tr = self
            .state
            .issue_token(&ri)
            .map_err(|e| anyhow::anyhow!("{}", e.body["message"]))?;
        let token = tr["status"]["token"].as_str().unwrap_or_default();
        let admin = self.kubeconfig_yaml();
        let start = admin.find("users:").unwrap_or(0);
        let end = admin.find("contexts:").unwrap_or(admin.len());
        Ok(format!(
            "{}users:\n- name: kube-emulator\n  user:\n    token: {token}\n{}",
            &admin[..start],
            &admin[end..]
        ))
    }

    /// Creates any object (namespaced objects go to `metadata.namespace` or `default`).
    pub fn create(&self, obj: Value) -> Result<Value> {
        let ns = obj["metadata"]["namespace"].as_str().map(String::from);
        self.state
            .create_object("v1", ns.as_deref(), obj, "kube-emulator")
            .map_err(|e| anyhow::anyhow!("{}", e.body["message"]))
    }

    /// Ends every open watch (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.state.store.drop_watches();
    }

    /// Makes the next `n` writes (create, update, patch, delete) of `resource` (a plural such as
    /// `configmaps`, or `*` for any) fail with `code` (409 → Conflict, otherwise InternalError).
    pub fn fail_next_writes(&self, resource: &str, n: u32, code: u16) {
        self.state
            .faults
            .lock()
            .fail_next
            .insert(resource.to_string(), (n, code));
    }

    /// Delays every request by `ms` milliseconds (0 turns it off).
    pub fn set_latency(&self, ms: u64) {
        self.state.faults.lock().latency_ms = ms;
    }

    /// The global resource version (as etcd's revision).
    /// Requests served so far with this verb (`list`, `watch`, `get`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`) on this resource plural (e.g. `bankclients`).
    pub fn request_count(&self, verb: &str, plural: &str) -> u64 {
        self.state
            .request_counts
            .lock()
            .get(&(verb.to_string(), plural.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn resource_version(&self) -> u64 {
        self.state.store.current_rv()
    }

    /// Stops serving: the listener closes and open connections end.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.state.store.drop_watches();
    }
}

/// The documents of a multi-document YAML text (empty ones skipped).
pub fn yaml_documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(d)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}
