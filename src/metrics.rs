//! The operator's Prometheus metrics, in one registry with the `entra_operator` prefix.
//!
//! Labels are bounded: kind, namespace, name and secret come from the cluster's own objects;
//! results and Graph statuses are short static categories. No label ever carries a secret value.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::Text;

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Labels of a managed credential. Namespace, name and secret are shared texts ([`Text::label`]):
/// the four series of a credential (and every series of a namespace) hold one copy of each, not
/// one per series, at 10,000 credentials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    pub kind: &'static str,
    pub namespace: Text,
    pub name: Text,
    pub secret: Text,
    /// `password` (client secret), `certificate`, or empty for a resource's own series.
    pub credential: &'static str,
}

/// Labels of one reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    /// `success` or an error category such as `graph_throttled`, `waiting_for_reference`.
    pub result: &'static str,
}

/// Labels of one Graph request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GraphRequestLabels {
    pub method: &'static str,
    /// HTTP status code, or `error` for a transport failure.
    pub status: String,
}

/// Labels of one app's consent in one customer tenant (a TenantMapping).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantConsentLabels {
    pub namespace: String,
    /// The TenantMapping's name.
    pub name: String,
    pub tenant: String,
    /// The AppRegistration whose consent is checked.
    pub app: String,
}

/// Labels of one BankClient's secret handover.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandoverLabels {
    pub namespace: String,
    /// The BankClient's name.
    pub name: String,
    pub bank_id: String,
}

/// Labels of a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Unix time at which each managed credential expires.
    pub credential_expiry: Family<CredentialLabels, Gauge<f64, AtomicU64>>,
    /// Unix time at which each managed credential will be rotated.
    pub credential_next_rotation: Family<CredentialLabels, Gauge<f64, AtomicU64>>,
    /// Rotations performed.
    pub rotations: Family<CredentialLabels, Counter>,
    /// Rotations that failed (alerting: any increase deserves a look).
    pub rotation_failures: Family<CredentialLabels, Counter>,
    /// Reconciles by kind and result category.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Resyncs that found nothing changed without reading the application or its service
    /// principal again (delta queries said neither changed).
    pub quiet_resyncs: Family<KindLabels, Counter>,
    /// Resources reconciled before their resync because delta reported a change to their
    /// application or service principal after their last read (drift behind the operator's back).
    pub drift_wakeups: Counter,
    /// Reconcile duration by kind.
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Graph requests by method and status.
    pub graph_requests: Family<GraphRequestLabels, Counter>,
    /// Graph requests answered 429.
    pub graph_throttled: Counter,
    /// Seconds Graph requests waited for the operator's own budget (client-side pacing).
    pub graph_budget_wait: Counter<f64, AtomicU64>,
    /// 1 when the last reconcile of a resource left it Ready.
    pub resource_ready: Family<CredentialLabels, Gauge>,
    /// 1 when an app is consented in a customer tenant, else 0.
    pub tenant_consent: Family<TenantConsentLabels, Gauge>,
    /// Unix time at which the previous secret of a BankClient's handover in progress is revoked.
    pub handover_previous_revoke: Family<HandoverLabels, Gauge<f64, AtomicU64>>,
    /// 1 when the bank confirmed the handover in progress, else 0.
    pub handover_confirmed: Family<HandoverLabels, Gauge>,
    /// The consent series last written for each TenantMapping, to drop an app's once it goes.
    tenant_consent_series:
        std::sync::Mutex<std::collections::HashMap<(String, String), Vec<TenantConsentLabels>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("entra_operator");
        let credential_expiry = Family::<CredentialLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "credential_expiry_timestamp_seconds",
            "Unix time at which a managed client secret expires",
            credential_expiry.clone(),
        );
        let credential_next_rotation = Family::<CredentialLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "credential_next_rotation_timestamp_seconds",
            "Unix time at which a managed client secret will be rotated",
            credential_next_rotation.clone(),
        );
        let rotations = Family::<CredentialLabels, Counter>::default();
        registry.register(
            "credential_rotations",
            "Client secret rotations completed",
            rotations.clone(),
        );
        let rotation_failures = Family::<CredentialLabels, Counter>::default();
        registry.register(
            "credential_rotation_failures",
            "Client secret rotations that failed and will be retried",
            rotation_failures.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result category",
            reconciles.clone(),
        );
        let quiet_resyncs = Family::<KindLabels, Counter>::default();
        registry.register(
            "quiet_resyncs",
            "Resyncs that found nothing changed in Kubernetes or Entra without reading the application or its service principal",
            quiet_resyncs.clone(),
        );
        let drift_wakeups = Counter::default();
        registry.register(
            "drift_wakeups",
            "Resources reconciled before their resync because delta reported a change to their application or service principal after their last read",
            drift_wakeups.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let graph_requests = Family::<GraphRequestLabels, Counter>::default();
        registry.register(
            "graph_requests",
            "Microsoft Graph and token requests by method and HTTP status",
            graph_requests.clone(),
        );
        let graph_throttled = Counter::default();
        registry.register(
            "graph_throttled",
            "Microsoft Graph requests answered 429 Too Many Requests",
            graph_throttled.clone(),
        );
        let graph_budget_wait = Counter::<f64, AtomicU64>::default();
        registry.register(
            "graph_budget_wait_seconds",
            "Seconds Microsoft Graph requests waited for the operator's own write and read budget (GRAPH_WRITE_BUDGET, GRAPH_READ_BUDGET), summed over requests",
            graph_budget_wait.clone(),
        );
        let resource_ready = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "resource_ready",
            "1 when the resource's Ready condition is True, else 0 (secret label empty)",
            resource_ready.clone(),
        );
        let tenant_consent = Family::<TenantConsentLabels, Gauge>::default();
        registry.register(
            "tenant_app_consented",
            "1 when the app is consented in the customer tenant of a TenantMapping, else 0",
            tenant_consent.clone(),
        );
        let handover_previous_revoke = Family::<HandoverLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "handover_previous_revoke_timestamp_seconds",
            "Unix time at which the previous client secret of a BankClient's handover in progress is revoked (only while a handover is in progress)",
            handover_previous_revoke.clone(),
        );
        let handover_confirmed = Family::<HandoverLabels, Gauge>::default();
        registry.register(
            "handover_confirmed",
            "1 when the bank confirmed the BankClient's handover in progress, else 0 (only while a handover is in progress)",
            handover_confirmed.clone(),
        );
        Metrics {
            registry,
            handover_previous_revoke,
            handover_confirmed,
            tenant_consent,
            tenant_consent_series: Default::default(),
            credential_expiry,
            credential_next_rotation,
            rotations,
            rotation_failures,
            reconciles,
            quiet_resyncs,
            drift_wakeups,
            reconcile_duration,
            graph_requests,
            graph_throttled,
            graph_budget_wait,
            resource_ready,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Set one TenantMapping's consent series to `apps` (`(app, consented)`), dropping the series of
    /// apps no longer listed; an empty list forgets the mapping.
    pub fn set_tenant_consent(
        &self,
        namespace: &str,
        name: &str,
        tenant: &str,
        apps: &[(String, bool)],
    ) {
        let mut series = self
            .tenant_consent_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        for old in series.remove(&key).unwrap_or_default() {
            self.tenant_consent.remove(&old);
        }
        let labels: Vec<TenantConsentLabels> = apps
            .iter()
            .map(|(app, consented)| {
                let l = TenantConsentLabels {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    tenant: tenant.to_string(),
                    app: app.clone(),
                };
                self.tenant_consent
                    .get_or_create(&l)
                    .set(i64::from(*consented));
                l
            })
            .collect();
        if !labels.is_empty() {
            series.insert(key, labels);
        }
    }

    /// One BankClient's handover series: set while a handover is in progress
    /// (`Some((revoke unix time, confirmed))`), removed when it ends (`None`) or the BankClient goes.
    pub fn set_handover(&self, labels: &HandoverLabels, handover: Option<(f64, bool)>) {
        match handover {
            Some((revoke_at, confirmed)) => {
                self.handover_previous_revoke
                    .get_or_create(labels)
                    .set(revoke_at);
                self.handover_confirmed
                    .get_or_create(labels)
                    .set(i64::from(confirmed));
            }
            None => {
                self.handover_previous_revoke.remove(labels);
                self.handover_confirmed.remove(labels);
            }
        }
    }

    /// Forget every series of one credential (its password entry is gone): expiry and next
    /// rotation, and its rotation counters, so no alert fires for a credential that no longer
    /// exists.
    pub fn forget_credential(&self, labels: &CredentialLabels) {
        self.credential_expiry.remove(labels);
        self.credential_next_rotation.remove(labels);
        self.rotations.remove(labels);
        self.rotation_failures.remove(labels);
    }

    /// Forget every series of a deleted resource: its readiness and each of its credentials'.
    pub fn forget_resource<'a>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        secrets: impl IntoIterator<Item = &'a str>,
    ) {
        let labels = |secret: &str, credential| CredentialLabels {
            kind,
            namespace: Text::label(namespace),
            name: Text::label(name),
            secret: Text::label(secret),
            credential,
        };
        self.resource_ready.remove(&labels("", ""));
        for secret in secrets {
            for credential in ["password", "certificate"] {
                self.forget_credential(&labels(secret, credential));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_credential_expiry_with_labels() {
        let m = Metrics::new();
        let labels = CredentialLabels {
            kind: "AppRegistration",
            namespace: "default".into(),
            name: "management-api".into(),
            secret: "management-api-credentials".into(),
            credential: "password",
        };
        m.credential_expiry.get_or_create(&labels).set(1.9e9);
        m.graph_throttled.inc();
        let text = m.render();
        assert!(
            text.contains("entra_operator_credential_expiry_timestamp_seconds{kind=\"AppRegistration\",namespace=\"default\",name=\"management-api\",secret=\"management-api-credentials\",credential=\"password\"} 1900000000"),
            "{text}"
        );
        assert!(
            text.contains("entra_operator_graph_throttled_total 1"),
            "{text}"
        );
        m.forget_credential(&labels);
        assert!(!m.render().contains("management-api-credentials"));
    }

    #[test]
    fn a_deleted_resource_leaves_no_series() {
        let m = Metrics::new();
        let labels = |secret: &str| CredentialLabels {
            kind: "AppRegistration",
            namespace: "team-a".into(),
            name: "api".into(),
            secret: secret.into(),
            credential: if secret.is_empty() { "" } else { "password" },
        };
        m.resource_ready.get_or_create(&labels("")).set(1);
        m.credential_expiry.get_or_create(&labels("s1")).set(1.9e9);
        m.credential_next_rotation
            .get_or_create(&labels("s1"))
            .set(1.8e9);
        m.rotations.get_or_create(&labels("s1")).inc();
        m.rotation_failures.get_or_create(&labels("s2")).inc();
        assert!(m.render().contains("team-a"));
        m.forget_resource("AppRegistration", "team-a", "api", ["s1", "s2"]);
        assert!(!m.render().contains("team-a"), "{}", m.render());
    }

    #[test]
    fn handover_series_exist_only_during_a_handover() {
        let m = Metrics::new();
        let labels = HandoverLabels {
            namespace: "banks".into(),
            name: "nordbank".into(),
            bank_id: "nordbank".into(),
        };
        m.set_handover(&labels, Some((1.9e9, false)));
        let text = m.render();
        assert!(text.contains("entra_operator_handover_previous_revoke_timestamp_seconds{namespace=\"banks\",name=\"nordbank\",bank_id=\"nordbank\"} 1900000000"), "{text}");
        assert!(text.contains("entra_operator_handover_confirmed{namespace=\"banks\",name=\"nordbank\",bank_id=\"nordbank\"} 0"), "{text}");
        m.set_handover(&labels, Some((1.8e9, true)));
        assert!(m.render().contains("bank_id=\"nordbank\"} 1\n"));
        m.set_handover(&labels, None);
        assert!(!m.render().contains("nordbank"), "{}", m.render());
    }

    #[test]
    fn tenant_consent_series_follow_the_listed_apps() {
        let m = Metrics::new();
        let apps = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(a, c)| (a.to_string(), *c)).collect()
        };
        m.set_tenant_consent(
            "bookme",
            "nordic",
            "t-1",
            &apps(&[("api", true), ("ui", false)]),
        );
        let text = m.render();
        assert!(text.contains("entra_operator_tenant_app_consented{namespace=\"bookme\",name=\"nordic\",tenant=\"t-1\",app=\"api\"} 1"), "{text}");
        assert!(text.contains("app=\"ui\"} 0"), "{text}");
        m.set_tenant_consent("bookme", "nordic", "t-1", &apps(&[("api", true)]));
        assert!(!m.render().contains("app=\"ui\""));
        m.set_tenant_consent("bookme", "nordic", "t-1", &[]);
        assert!(!m.render().contains("nordic"));
    }
}
