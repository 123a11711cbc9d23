//! Entra's identity and access throttling limits: resource-unit (RU) read budgets and write budgets
//! per app per tenant, per app across tenants, and per tenant across apps, over sliding windows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::ThrottleMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Read,
    Write,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    scope: &'static str,
    kind: Kind,
    app: String,
    tenant: String,
}

#[derive(Default)]
struct Window {
    events: VecDeque<(Instant, u32)>,
    sum: u64,
}

impl Window {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, c)) = self.events.front() {
            if now.duration_since(t) >= window {
                self.sum -= c as u64;
                self.events.pop_front();
            } else {
                break;
            }
        }
    }

    /// How long until `cost` more fits under `limit`.
    fn wait_for(&self, now: Instant, window: Duration, limit: u64, cost: u64) -> Duration {
        let mut sum = self.sum;
        for &(t, c) in &self.events {
            sum -= c as u64;
            if sum + cost <= limit {
                return (t + window).saturating_duration_since(now);
            }
        }
        window
    }
}

#[derive(Default)]
pub(crate) struct Throttle {
    windows: HashMap<Key, Window>,
}

/// The outcome of admitting one request.
pub(crate) enum Admission {
    Allowed {
        /// `x-ms-throttle-limit-percentage` and `x-ms-throttle-scope` when usage is at 80% or more.
        near_limit: Option<(f64, String)>,
    },
    Throttled {
        retry_after: Duration,
        scope: String,
    },
}

/// Resource units a Graph request costs (the table in `docs/graph.md`, "Throttling").
pub(crate) fn cost(
    method: &str,
    template: &str,
    query_has_select: bool,
    query_has_expand: bool,
) -> (u32, bool) {
    let write = method != "GET";
    if write {
        return (1, true);
    }
    let mut ru: i32 = if template == "/v1.0/applications"
        || template == "/v1.0/oauth2PermissionGrants"
        || template.ends_with("/appRoleAssignments")
    {
        2
    } else {
        1
    };
    if query_has_select {
        ru -= 1;
    }
    if query_has_expand {
        ru += 1;
    }
    (ru.max(1) as u32, false)
}

impl Throttle {
    pub(crate) fn admit(
        &mut self,
        mode: &ThrottleMode,
        app: &str,
        tenant: &str,
        user_count: u32,
        ru: u32,
        write: bool,
    ) -> Admission {
        let (limit_factor, window_factor) = match mode {
            ThrottleMode::Off => return Admission::Allowed { near_limit: None },
            ThrottleMode::Real => (1.0, 1.0),
            ThrottleMode::Scaled {
                limit_factor,
                window_factor,
            } => (*limit_factor, *window_factor),
        };
        let read_budget = match user_count {
            0..50 => 3_500,
            50..=500 => 5_000,
            _ => 8_000,
        };
        let mut budgets: Vec<(Key, u64, Duration, u64)> = vec![
            (
                key("Tenant_Application", Kind::Read, app, tenant),
                read_budget,
                Duration::from_secs(10),
                ru as u64,
            ),
            (
                key("Application", Kind::Read, app, ""),
                150_000,
                Duration::from_secs(20),
                ru as u64,
            ),
        ];
        if write {
            budgets.push((
                key("Tenant_Application", Kind::Write, app, tenant),
                3_000,
                Duration::from_secs(150),
                1,
            ));
            budgets.push((
                key("Application", Kind::Write, app, ""),
                35_000,
                Duration::from_secs(300),
                1,
            ));
            budgets.push((
                key("Tenant", Kind::Write, "", tenant),
                18_000,
                Duration::from_secs(300),
                1,
            ));
        }
        let now = Instant::now();
        let mut worst: Option<(f64, String)> = None;
        let mut throttled: Option<(Duration, String)> = None;
        for (k, limit, window, c) in &budgets {
            let limit = ((*limit as f64) * limit_factor).round().max(1.0) as u64;
            let window = window.mul_f64(window_factor.max(0.001));
            let w = self.windows.entry(k.clone()).or_default();
            w.expire(now, window);
            if w.sum + c > limit {
                let wait = w.wait_for(now, window, limit, *c);
                if throttled.as_ref().is_none_or(|(d, _)| wait > *d) {
                    throttled = Some((wait, scope_name(k)));
                }
            } else {
                let pct = (w.sum + c) as f64 / limit as f64;
                if pct >= 0.8 && worst.as_ref().is_none_or(|(p, _)| pct > *p) {
                    worst = Some((pct, scope_name(k)));
                }
            }
        }
        if let Some((retry_after, scope)) = throttled {
            return Admission::Throttled { retry_after, scope };
        }
        for (k, _, _, c) in budgets {
            let w = self.windows.entry(k).or_default();
            w.events.push_back((now, c as u32));
            w.sum += c;
        }
        Admission::Allowed { near_limit: worst }
    }

    pub(crate) fn reset(&mut self) {
        self.windows.clear();
    }
}

fn key(scope: &'static str, kind: Kind, app: &str, tenant: &str) -> Key {
    Key {
        scope,
        kind,
        app: app.to_string(),
        tenant: tenant.to_string(),
    }
}

/// `x-ms-throttle-scope` value, as the identity throttling page documents it:
/// `<Scope>/<Limit>/<ApplicationId>/<TenantId>`, e.g. `Tenant_Application/Write/{appId}/{tenantId}`.
fn scope_name(k: &Key) -> String {
    let kind = match k.kind {
        Kind::Read => "Read",
        Kind::Write => "Write",
    };
    format!("{}/{kind}/{}/{}", k.scope, k.app, k.tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_read_budget_throttles_and_reports_wait() {
        let mut t = Throttle::default();
        let mode = ThrottleMode::Scaled {
            limit_factor: 0.001,
            window_factor: 0.1,
        };
        // 3,500 RU * 0.001 = 4 RU (rounded) per 1 s.
        for _ in 0..4 {
            assert!(matches!(
                t.admit(&mode, "a", "t", 10, 1, false),
                Admission::Allowed { .. }
            ));
        }
        match t.admit(&mode, "a", "t", 10, 1, false) {
            Admission::Throttled { retry_after, scope } => {
                assert!(retry_after <= Duration::from_secs(1));
                assert!(scope.starts_with("Tenant_Application/Read/a/t"));
            }
            Admission::Allowed { .. } => panic!("expected throttling"),
        }
        // Another app in the same tenant has its own budget.
        assert!(matches!(
            t.admit(&mode, "b", "t", 10, 1, false),
            Admission::Allowed { .. }
        ));
    }

    #[test]
    fn both_delta_functions_cost_one_resource_unit() {
        // Neither is in the identity cost table's list of 2-RU reads ([throttle] in FIDELITY.md).
        for t in ["/v1.0/applications/delta", "/v1.0/servicePrincipals/delta"] {
            assert_eq!(cost("GET", t, false, false), (1, false), "{t}");
            assert_eq!(cost("GET", t, true, false), (1, false), "{t}");
        }
    }

    #[test]
    fn off_never_throttles() {
        let mut t = Throttle::default();
        for _ in 0..10_000 {
            assert!(matches!(
                t.admit(&ThrottleMode::Off, "a", "t", 10, 2, true),
                Admission::Allowed { near_limit: None }
            ));
        }
    }
}
