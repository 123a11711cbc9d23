//! Client-side rate limiting: keep one identity under Graph's per-tenant budgets (docs/graph.md,
//! "Throttling") by waiting before a request, instead of discovering the limit through 429s that
//! cost every other reconcile in the tenant the same penalty.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Budgets for one app in one tenant. Defaults stay at 80% of Graph's published limits, leaving
/// room for other clients of the same identity (a second replica during rollout, an admin script).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// Writes (POST/PATCH/DELETE) allowed in any `write_window`. Graph: 3,000 per 150 s.
    pub writes_per_window: u32,
    pub write_window: Duration,
    /// Resource units allowed in any `read_window`. Graph: 3,500 per 10 s for the smallest tenants.
    pub read_units_per_window: u32,
    pub read_window: Duration,
    /// When Graph reports `x-ms-throttle-limit-percentage` at or above this, writes are paced.
    pub pressure_threshold: f64,
    /// How long one pressure report keeps pacing on.
    pub pressure_hold: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            writes_per_window: 2_400,
            write_window: Duration::from_secs(150),
            read_units_per_window: 2_800,
            read_window: Duration::from_secs(10),
            pressure_threshold: 0.8,
            pressure_hold: Duration::from_secs(15),
        }
    }
}

/// Sliding-window log: admits a request when the units used in the last `window` plus its cost fit
/// the capacity; otherwise sleeps until enough old entries leave the window. Exact (no burst of
/// twice the budget at a window edge, as a fixed window or a full token bucket allows).
#[derive(Debug)]
pub struct SlidingWindow {
    capacity: u32,
    window: Duration,
    state: Mutex<WindowState>,
}

#[derive(Debug, Default)]
struct WindowState {
    entries: VecDeque<(Instant, u32)>,
    used: u32,
}

impl SlidingWindow {
    pub fn new(capacity: u32, window: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            window,
            state: Mutex::new(WindowState::default()),
        }
    }

    /// Waits until `cost` units fit, records them, and returns how long it waited.
    pub async fn acquire(&self, cost: u32) -> Duration {
        let cost = cost.clamp(1, self.capacity);
        let start = Instant::now();
        let mut slept = false;
        loop {
            let wait_until = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while let Some(&(t, c)) = s.entries.front() {
                    if now.duration_since(t) >= self.window {
                        s.entries.pop_front();
                        s.used -= c;
                    } else {
                        break;
                    }
                }
                if s.used + cost <= self.capacity {
                    s.entries.push_back((now, cost));
                    s.used += cost;
                    return if slept {
                        now.duration_since(start)
                    } else {
                        Duration::ZERO
                    };
                }
                let need = s.used + cost - self.capacity;
                let mut freed = 0;
                let mut until = now;
                for &(t, c) in &s.entries {
                    freed += c;
                    until = t + self.window;
                    if freed >= need {
                        break;
                    }
                }
                until
            };
            tokio::time::sleep_until(wait_until).await;
            slept = true;
        }
    }

    /// Units used in the current window.
    pub fn used(&self) -> u32 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.entries
            .iter()
            .filter(|(t, _)| now.duration_since(*t) < self.window)
            .map(|(_, c)| c)
            .sum()
    }
}

/// The limiter of one tenant: writes, read units, and pacing under reported pressure. Share it
/// (`Arc`) between every client that uses the same identity in the same tenant.
#[derive(Debug)]
pub struct TenantRateLimiter {
    limits: RateLimits,
    writes: SlidingWindow,
    reads: SlidingWindow,
    pacing: Mutex<Pacing>,
}

#[derive(Debug, Default)]
struct Pacing {
    /// Pacing applies until this instant.
    until: Option<Instant>,
    spacing: Duration,
    next_slot: Option<Instant>,
}

/// Graph's real write limit per app and tenant, used to derive the pacing interval.
const GRAPH_WRITES_PER_150S: f64 = 3_000.0;

impl TenantRateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            writes: SlidingWindow::new(limits.writes_per_window, limits.write_window),
            reads: SlidingWindow::new(limits.read_units_per_window, limits.read_window),
            pacing: Mutex::new(Pacing::default()),
            limits,
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Before a write: pace if Graph reported pressure, then take a write and one read unit.
    pub async fn acquire_write(&self) -> Duration {
        let mut waited = self.pace().await;
        waited += self.writes.acquire(1).await;
        waited += self.reads.acquire(1).await;
        waited
    }

    /// Before a read costing `units` resource units.
    pub async fn acquire_read(&self, units: u32) -> Duration {
        self.reads.acquire(units).await
    }

    /// Records Graph's `x-ms-throttle-limit-percentage` (0.8–1.8 near the limit). At or above the
    /// threshold, writes are spaced so that they arrive no faster than Graph's budget scaled down
    /// by the reported usage, for `pressure_hold`.
    pub fn note_throttle_percentage(&self, percentage: f64) {
        if !percentage.is_finite() || percentage < self.limits.pressure_threshold {
            return;
        }
        let per_write = 150.0 / GRAPH_WRITES_PER_150S;
        let spacing = Duration::from_secs_f64(per_write * percentage.min(4.0) / 0.8);
        let mut p = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        p.until = Some(Instant::now() + self.limits.pressure_hold);
        p.spacing = p.spacing.max(spacing);
    }

    /// Whether writes are being paced now.
    pub fn under_pressure(&self) -> bool {
        let p = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        p.until.is_some_and(|u| Instant::now() < u)
    }

    async fn pace(&self) -> Duration {
        let slot = {
            let mut p = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            match p.until {
                Some(until) if now < until => {
                    let slot = p.next_slot.map_or(now, |s| s.max(now));
                    p.next_slot = Some(slot + p.spacing);
                    slot
                }
                Some(_) => {
                    *p = Pacing::default();
                    return Duration::ZERO;
                }
                None => return Duration::ZERO,
            }
        };
        let now = Instant::now();
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        slot.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_capacity_then_waits_for_the_window() {
        let w = SlidingWindow::new(3, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(w.acquire(1).await, Duration::ZERO);
        }
        assert_eq!(w.used(), 3);
        let waited = w.acquire(1).await;
        assert_eq!(waited, Duration::from_secs(10));
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sliding_window_never_admits_a_double_burst() {
        let w = Arc::new(SlidingWindow::new(10, Duration::from_secs(150)));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..35 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                w.acquire(1).await;
                Instant::now() - start
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        // In every 150 s window at most 10 admissions.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(150))
                .count();
            assert!(in_window <= 10, "{in_window} admissions in one window");
        }
        // 35 requests at 10 per 150 s: the last is admitted in the fourth window.
        assert_eq!(*times.last().unwrap(), Duration::from_secs(450));
    }

    #[tokio::test(start_paused = true)]
    async fn costs_are_weighted() {
        let w = SlidingWindow::new(5, Duration::from_secs(10));
        w.acquire(2).await;
        w.acquire(2).await;
        assert_eq!(w.acquire(2).await, Duration::from_secs(10));
        // A cost above capacity is clamped instead of waiting forever.
        assert_eq!(w.acquire(50).await, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn pressure_paces_writes_then_expires() {
        let l = TenantRateLimiter::new(RateLimits::default());
        assert_eq!(l.acquire_write().await, Duration::ZERO);
        l.note_throttle_percentage(0.5);
        assert!(!l.under_pressure());
        l.note_throttle_percentage(1.0);
        assert!(l.under_pressure());
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire_write().await;
        }
        // 5 writes at 62.5 ms spacing: the fifth starts 250 ms after the first.
        assert_eq!(Instant::now() - start, Duration::from_millis(250));
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!l.under_pressure());
        assert_eq!(l.acquire_write().await, Duration::ZERO);
        assert_eq!(l.acquire_write().await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_also_spend_read_units() {
        let l = TenantRateLimiter::new(RateLimits {
            writes_per_window: 100,
            read_units_per_window: 2,
            ..RateLimits::default()
        });
        l.acquire_write().await;
        l.acquire_read(1).await;
        assert_eq!(l.acquire_read(1).await, Duration::from_secs(10));
    }
}
