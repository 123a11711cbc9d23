//! What every reconcile gets: clients, settings, metrics, the event reporter, and per-object
//! failure counts for backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;

use crate::api::{AppRegistration, EntraPolicy};

use crate::graph::GraphClient;
use crate::metrics::Metrics;

use super::appregistration::observed::ObservedServicePrincipal;
use super::appregistration::plan::PlanSettings;
use super::store_ready::StoreReady;

/// An AppRegistration controller's store, with the namespace it watches (`None`: all).
struct AppStore {
    namespace: Option<String>,
    store: Store<AppRegistration>,
    ready: StoreReady,
}

/// Operator-wide settings the controllers need.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// Unique-name prefix and consent URL settings.
    pub plan: PlanSettings,
    /// The operator's (home) tenant.
    pub tenant_id: String,
    /// Authority host written into Secrets and consent URLs, e.g. `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// Periodic resync of settled resources.
    pub resync: Duration,
    /// Secret handovers to banks: confirmation delay and notification.
    pub handover: HandoverSettings,
}

/// How a BankClient's secret handover is confirmed and announced.
#[derive(Clone, Debug)]
pub struct HandoverSettings {
    /// Between a confirmation (`entra.bookme.io/handover-confirmed`) and the revocation of the
    /// previous secrets.
    pub confirm_delay: Duration,
    /// Where a handover is announced (`--handover-webhook-url`), if anywhere.
    pub webhook: Option<crate::webhook::Webhook>,
    /// First retry after a failed notification; doubles per failure up to 10 minutes.
    pub notify_retry: Duration,
}

impl Default for HandoverSettings {
    fn default() -> Self {
        HandoverSettings {
            confirm_delay: Duration::from_secs(300),
            webhook: None,
            notify_retry: Duration::from_secs(5),
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub graph: GraphClient,
    pub settings: ControllerSettings,
    pub metrics: Arc<Metrics>,
    pub events: super::event_publisher::EventPublisher,
    /// The registry database sink, when `--registry-database-url` is set.
    pub registry: Option<Arc<crate::registry::RegistrySink>>,
    /// Checked before credential writes: closed when this replica cannot prove it leads.
    pub fence: crate::fence::Fence,
    /// Far requeues (resyncs, renewals days away), kept compactly (`later.rs`).
    pub later: Arc<super::later::Later>,
    /// The tenant's application and service principal changes (delta queries), so that a resync
    /// of an unchanged AppRegistration reads neither again. Not followed until its `run` runs.
    pub changes: Arc<crate::graph::ChangeFeed>,
    failures: Mutex<HashMap<String, u32>>,
    /// Service principals of Microsoft's APIs by appId, with when they were read.
    resource_sps: Mutex<HashMap<String, (Instant, ObservedServicePrincipal)>>,
    /// The AppRegistration controllers' stores (one per watched namespace, or one for all), so a
    /// reconcile reads its neighbours from memory instead of listing the API server.
    app_stores: Mutex<Vec<AppStore>>,
    /// The EntraPolicy store of an AppRegistration controller's policy watch (cluster-scoped, so
    /// any one will do), so a reconcile decides from memory instead of listing the policies.
    policy_store: Mutex<Option<(Store<EntraPolicy>, StoreReady)>>,
}

impl Context {
    pub fn new(
        client: Client,
        graph: GraphClient,
        settings: ControllerSettings,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        Context {
            events: super::event_publisher::EventPublisher::new(client.clone(), reporter),
            client,
            graph,
            settings,
            metrics,
            registry: None,
            fence: crate::fence::Fence::unfenced(),
            later: Arc::default(),
            changes: Arc::default(),
            failures: Mutex::new(HashMap::new()),
            resource_sps: Mutex::new(HashMap::new()),
            app_stores: Mutex::new(Vec::new()),
            policy_store: Mutex::new(None),
        }
    }

    /// Follows the tenant's change feed (`graph::ChangeFeed`) until `shutdown` resolves. A
    /// resource whose application or service principal a round reports after its last full read
    /// was covered is reconciled now (`Later::wake`), not at its next resync: drift behind the
    /// operator's back is repaired within about two feed intervals.
    pub fn follow_changes<S>(
        &self,
        shutdown: S,
    ) -> impl std::future::Future<Output = ()> + Send + use<S>
    where
        S: std::future::Future<Output = ()> + Send,
    {
        let later = self.later.clone();
        let metrics = self.metrics.clone();
        self.changes
            .clone()
            .run(self.graph.clone(), shutdown, move |round| {
                let woken = later.wake(|memo| round.changed_after(memo.mark, &memo.ids));
                if !woken.is_empty() {
                    metrics.drift_wakeups.inc_by(woken.len() as u64);
                    // Someone changed these in Entra (the portal, a script): worth a line each for
                    // whoever reviews what happened, but not thousands in one line.
                    const NAMED: usize = 20;
                    tracing::info!(
                        count = woken.len(),
                        resources = %woken[..woken.len().min(NAMED)].join(", "),
                        "delta reports changes made in Entra since these resources were last read; reconciling them now"
                    );
                }
            })
    }

    /// Makes an AppRegistration controller's store (watching `namespace`, `None`: all) available
    /// to [`Context::app_registrations_where`].
    pub fn register_app_store(
        &self,
        namespace: Option<String>,
        store: Store<AppRegistration>,
        ready: StoreReady,
    ) {
        self.app_stores.lock().unwrap().push(AppStore {
            namespace,
            store,
            ready,
        });
    }

    /// The AppRegistrations of `namespace` for which `keep` holds, from a controller's store once
    /// it holds its first full list; `None` when no running controller watches that namespace (the
    /// caller lists instead). Filtered under the store's lock, so only matches are copied out (a
    /// reconcile asks this of every AppRegistration in the namespace). May lag the API server by
    /// the watch's delay.
    pub async fn app_registrations_where(
        &self,
        namespace: &str,
        keep: impl Fn(&AppRegistration) -> bool,
    ) -> Option<Vec<Arc<AppRegistration>>> {
        let (store, ready) = {
            let stores = self.app_stores.lock().unwrap();
            let found = stores
                .iter()
                .find(|s| s.namespace.as_deref() == Some(namespace))
                .or_else(|| stores.iter().find(|s| s.namespace.is_none()))?;
            (found.store.clone(), found.ready.clone())
        };
        if !ready.wait().await {
            return None;
        }
        Some(store.state_filter(|a| a.metadata.namespace.as_deref() == Some(namespace) && keep(a)))
    }

    /// Makes an AppRegistration controller's EntraPolicy store available to
    /// [`Context::entra_policies`] (the first one registered is kept).
    pub fn register_policy_store(&self, store: Store<EntraPolicy>, ready: StoreReady) {
        let mut slot = self.policy_store.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some((store, ready));
        }
    }

    /// Every EntraPolicy, from the policy watch's store once it holds its first full list; `None`
    /// when no controller watches them (the caller lists instead). Never from a store that has not
    /// listed yet: an empty store would read as "no policy" and allow what a policy forbids. May
    /// lag the API server by the watch's delay; the watch wakes the affected resources when it
    /// catches up.
    pub async fn entra_policies(&self) -> Option<Vec<Arc<EntraPolicy>>> {
        let (store, ready) = self
            .policy_store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        if !ready.wait().await {
            return None;
        }
        Some(store.state())
    }

    /// Publish the bank registries to this database sink too (beside the ConfigMaps).
    pub fn with_registry(mut self, registry: Option<Arc<crate::registry::RegistrySink>>) -> Self {
        self.registry = registry;
        self
    }

    /// Uses this fence (the leader elector's) instead of none.
    pub fn with_fence(mut self, fence: crate::fence::Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Count a failed reconcile of `key` and return how long to wait before the next try:
    /// exponential from `base`, capped at 10 minutes, so a resource Graph keeps rejecting does
    /// not turn into a retry storm.
    pub fn record_failure(&self, key: &str, base: Duration) -> Duration {
        let mut failures = self.failures.lock().expect("failure map poisoned");
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        backoff(base, *count)
    }

    /// A resource service principal read less than `ttl` ago.
    pub fn cached_resource_sp(
        &self,
        app_id: &str,
        ttl: Duration,
    ) -> Option<ObservedServicePrincipal> {
        let cache = self.resource_sps.lock().expect("cache poisoned");
        cache
            .get(app_id)
            .filter(|(read_at, _)| read_at.elapsed() < ttl)
            .map(|(_, sp)| sp.clone())
    }

    /// Remember a resource service principal just read.
    pub fn cache_resource_sp(&self, app_id: &str, sp: ObservedServicePrincipal) {
        self.resource_sps
            .lock()
            .expect("cache poisoned")
            .insert(app_id.to_string(), (Instant::now(), sp));
    }

    /// Forget the cached service principals of the operator's own APIs (Microsoft's stay): a
    /// failed write may have used a role or service principal that is gone.
    pub fn forget_own_resource_sps(&self) {
        self.resource_sps
            .lock()
            .expect("cache poisoned")
            .retain(|app_id, _| app_id == crate::graph::MICROSOFT_GRAPH_APP_ID);
    }

    /// Forget the failures of `key` after a successful reconcile.
    pub fn record_success(&self, key: &str) {
        self.failures
            .lock()
            .expect("failure map poisoned")
            .remove(key);
    }
}

/// `base * 2^(failures-1)`, at most 10 minutes.
pub fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 30), Duration::from_secs(600));
    }
}
