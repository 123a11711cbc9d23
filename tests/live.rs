//! The scenarios that matter to a user, written so they can run against a real tenant and a real
//! cluster (README, "Testing against a real tenant"): the platform example converging, a client
//! secret rotated with overlap, and admin consent granted and reported.
//!
//! Without `ENTRA_LIVE=1` they run against the emulators, through the same code: a [`Target`]
//! hands out a kube client and the operator's Graph configuration, the operator's four controllers
//! run in this process with them, and every check uses only what a real cluster and tenant offer
//! (the Kubernetes API, Graph, the token endpoint through `azure_identity`). Nothing reads the
//! emulators' state. With `ENTRA_LIVE=1`:
//! - the cluster is the current `KUBECONFIG` context (the CRDs installed, the namespace
//!   `ENTRA_LIVE_NAMESPACE` existing, default `entra-operator-live`);
//! - the tenant is the one of the `AZURE_TENANT_ID` / `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET`
//!   identity, which needs the README's Graph permissions;
//! - applications are named `entra-operator-live.<namespace>.<name>` and deleted at the end (the
//!   Delete deletion policy: they stay restorable in the tenant's deleted items for 30 days).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use entra_operator::api::AppRegistration;
use entra_operator::graph::GraphConfig;
use entra_operator::metrics::Metrics;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::{Harness, operator_context, spawn_all_controllers};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the scenarios run, and the operator running against it.
struct Target {
    live: bool,
    client: Client,
    namespace: String,
    graph_config: GraphConfig,
    /// Extra trust for the token endpoint (the emulator's CA), as the operator's Graph client has.
    ca: Option<std::path::PathBuf>,
    /// How long convergence may take: a real tenant replicates for seconds to minutes.
    wait: Duration,
    controllers: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    _emulators: Option<Harness>,
}

impl Target {
    async fn start() -> Target {
        let mut target = if std::env::var("ENTRA_LIVE").as_deref() == Ok("1") {
            Self::live().await
        } else {
            Self::emulated().await
        };
        let ctx = operator_context(
            target.client.clone(),
            &target.graph_config,
            Arc::new(Metrics::new()),
            if target.live {
                "entra-operator-live"
            } else {
                "entra-operator"
            },
        );
        target.controllers = Some(spawn_all_controllers(Arc::new(ctx)));
        target
    }

    async fn live() -> Target {
        let client = Client::try_default()
            .await
            .expect("ENTRA_LIVE=1 needs a KUBECONFIG for the cluster");
        let graph_config = GraphConfig::from_env()
            .expect("ENTRA_LIVE=1 needs AZURE_TENANT_ID, AZURE_CLIENT_ID and a credential");
        Target {
            live: true,
            client,
            namespace: std::env::var("ENTRA_LIVE_NAMESPACE")
                .unwrap_or_else(|_| "entra-operator-live".into()),
            graph_config,
            ca: None,
            wait: Duration::from_secs(600),
            controllers: None,
            _emulators: None,
        }
    }

    async fn emulated() -> Target {
        let h = Harness::start().await;
        let creds = h.entra.operator_credentials();
        let mut graph_config = GraphConfig::from_lookup(|k| match k {
            "AZURE_TENANT_ID" => Some(creds.tenant_id.clone()),
            "AZURE_CLIENT_ID" => Some(creds.client_id.clone()),
            "AZURE_CLIENT_SECRET" => Some(creds.client_secret.clone()),
            "AZURE_AUTHORITY_HOST" => Some(creds.authority_host.clone()),
            "GRAPH_ENDPOINT" => Some(creds.graph_endpoint.clone()),
            _ => None,
        })
        .expect("graph config");
        graph_config.extra_ca_pem = Some(h.entra.ca_pem_path().to_path_buf());
        graph_config.token_scope = Some("https://graph.microsoft.com/.default".into());
        Target {
            live: false,
            // The admin's client applies and reads; the operator runs with the same (RBAC is the
            // e2e suite's concern, not these scenarios').
            client: h.client.clone(),
            namespace: "default".into(),
            graph_config,
            ca: Some(h.entra.ca_pem_path().to_path_buf()),
            wait: Duration::from_secs(60),
            controllers: None,
            _emulators: Some(h),
        }
    }

    fn dynamic(&self, kind: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("entra.bookme.io", "v1alpha1", kind);
        let plural = format!("{}s", kind.to_ascii_lowercase());
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    /// Server-side apply of one of our resources, into the target's namespace.
    async fn apply(&self, mut doc: Value) -> (String, String) {
        doc["metadata"]["namespace"] = json!(self.namespace);
        let kind = doc["kind"].as_str().unwrap().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        self.dynamic(&kind)
            .patch(
                &name,
                &PatchParams::apply("entra-operator-live-test").force(),
                &Patch::Apply(&doc),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
        (kind, name)
    }

    /// Polls `check` until it answers, for at most the target's wait.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(if self.live { 2000 } else { 100 })).await;
        }
    }

    async fn condition(&self, kind: &str, name: &str, type_: &str) -> Option<(String, String)> {
        let obj = self.dynamic(kind).get_opt(name).await.ok().flatten()?;
        let conditions = obj.data["status"]["conditions"].as_array()?.clone();
        conditions.iter().find(|c| c["type"] == type_).map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
    }

    async fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .ok()
            .flatten()?;
        Some(
            secret
                .data?
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).to_string()))
                .collect(),
        )
    }

    /// Whether the Secret's values get a Graph token through `azure_identity`, as a consumer would.
    async fn token_works(&self, data: &BTreeMap<String, String>) -> Result<(), String> {
        support::secret_token_claims(
            data,
            "https://graph.microsoft.com/.default",
            self.ca.as_deref(),
        )
        .await
        .map(|_| ())
    }

    /// Deletes what a scenario applied and waits until the finalizers have run (the applications
    /// are deleted in the tenant).
    async fn clean_up(&self, applied: &[(String, String)]) {
        for (kind, name) in applied.iter().rev() {
            let _ = self
                .dynamic(kind)
                .delete(name, &DeleteParams::default())
                .await;
        }
        for (kind, name) in applied {
            self.wait_for(&format!("{kind}/{name} deleted"), || async {
                self.dynamic(kind)
                    .get_opt(name)
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            })
            .await;
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.controllers.take() {
            let _ = stop.send(());
        }
    }
}

/// A client secret rotated with overlap: the Secret works, a rotation gives a new one, and the
/// old one keeps working during the overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_rotates_with_overlap() {
    let target = Target::start().await;
    let app = target
        .apply(json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": "live-rotation"},
            "spec": {"displayName": "entra-operator live rotation",
                     "credentials": {"passwords": [{"secretName": "live-rotation-credentials",
                                                    "overlap": "1h"}]}}
        }))
        .await;
    target
        .wait_for("live-rotation Ready", || async {
            let (status, _) = target
                .condition("AppRegistration", "live-rotation", "Ready")
                .await?;
            (status == "True").then_some(())
        })
        .await;
    let first = target.secret("live-rotation-credentials").await.unwrap();
    target
        .wait_for("the first secret works", || async {
            target.token_works(&first).await.ok()
        })
        .await;

    target
        .dynamic("AppRegistration")
        .patch(
            "live-rotation",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"entra.bookme.io/rotate": "live"}}})),
        )
        .await
        .unwrap();
    let second = target
        .wait_for("a new secret", || async {
            let data = target.secret("live-rotation-credentials").await?;
            (data.get("keyId") != first.get("keyId")).then_some(data)
        })
        .await;
    target
        .wait_for("the new secret works", || async {
            target.token_works(&second).await.ok()
        })
        .await;
    target
        .token_works(&first)
        .await
        .expect("the previous secret still works during the overlap");
    let apps: Api<AppRegistration> = Api::namespaced(target.client.clone(), &target.namespace);
    let status = apps.get("live-rotation").await.unwrap().status.unwrap();
    assert_eq!(
        status.credentials[0].previous.len(),
        1,
        "one previous in overlap"
    );
    target.clean_up(&[app]).await;
}

/// Admin consent granted and reported: an app that asks for Microsoft Graph's `User.Read` with
/// `grantAdminConsent` shows `ConsentGranted=True`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_consent_is_granted_and_reported() {
    let target = Target::start().await;
    let app = target
        .apply(json!({
            "apiVersion": "entra.bookme.io/v1alpha1", "kind": "AppRegistration",
            "metadata": {"name": "live-consent"},
            "spec": {"displayName": "entra-operator live consent", "grantAdminConsent": true,
                     "requiredResourceAccess": [{"wellKnownApi": "MicrosoftGraph",
                                                 "delegated": ["User.Read"]}]}
        }))
        .await;
    target
        .wait_for("consent granted and Ready", || async {
            let consent = target
                .condition("AppRegistration", "live-consent", "ConsentGranted")
                .await?;
            let ready = target
                .condition("AppRegistration", "live-consent", "Ready")
                .await?;
            (consent.0 == "True" && ready.0 == "True").then_some(())
        })
        .await;
    target.clean_up(&[app]).await;
}

/// The platform example converges: every AppRegistration, BankClient and NaaIntegration Ready,
/// every bank's Secret working; TenantMappings wait for their customers' admins (`NotConsented`,
/// with the consent URL), are Ready where a customer already consented, or report the example's
/// fictional tenants `TenantNotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_example_converges() {
    let target = Target::start().await;
    let text = std::fs::read_to_string(support::root().join("examples/bookme-platform.yaml"))
        .expect("examples/bookme-platform.yaml");
    let mut applied = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        applied.push(target.apply(value).await);
    }
    for (kind, name) in &applied {
        target
            .wait_for(&format!("{kind}/{name} settled"), || async {
                let (status, reason) = target.condition(kind, name, "Ready").await?;
                // The example's customer tenants are fictional: a real tenant (and the emulator,
                // which knows no customer tenant here) reports them not found; a real customer
                // tenant waits for its administrator.
                let settled = status == "True"
                    || (kind == "TenantMapping"
                        && (reason == "NotConsented" || reason == "TenantNotFound"));
                settled.then_some(())
            })
            .await;
    }
    let banks = target
        .dynamic("BankClient")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(!banks.items.is_empty(), "the example declares banks");
    for bank in banks.items {
        let secret = bank.data["status"]["secretName"]
            .as_str()
            .expect("a Ready BankClient names its Secret")
            .to_string();
        let data = target
            .secret(&secret)
            .await
            .unwrap_or_else(|| panic!("{}: no Secret {secret}", bank.name_any()));
        target
            .wait_for(&format!("{}'s secret works", bank.name_any()), || async {
                target.token_works(&data).await.ok()
            })
            .await;
    }
    target.clean_up(&applied).await;
}
