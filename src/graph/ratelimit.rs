//! Client-side rate limiting: keep one identity under Graph's per-tenant budgets (docs/graph.md,
//! "Throttling") by waiting before a request, instead of discovering the limit through 429s that
//! cost every other reconcile in the tenant the same penalty.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Who goes first when a budget is spent. Lower sorts first: a credential rotation that is due,
/// soonest expiry first, then everything else (creates, updates, reads) in arrival order. With
/// budget to spare, nothing waits and the order does not matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// A rotation of a credential that expires at this instant (Unix seconds).
    DueRotation {
        expires_at: i64,
    },
    Normal,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

/// Runs `work` with its Graph requests queued at `priority` when the budget is spent (a task-local,
/// so the Graph client's callers need not pass it through every layer).
pub async fn with_priority<F: std::future::Future>(priority: Priority, work: F) -> F::Output {
    PRIORITY.scope(priority, work).await
}

/// The priority of the calling task's requests (`Normal` outside [`with_priority`]).
pub fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Normal)
}

/// Budgets for one app in one tenant. Writes default to 95% of Graph's published limit: the margin
/// covers clock skew and requests in flight, and Graph's own `x-ms-throttle-limit-percentage`
/// (see [`TenantRateLimiter::note_throttle_percentage`]) slows the operator down when another
/// client of the same identity uses the budget too. (80% made the operator's steady rate 16
/// writes/s, 1.25× the floor of a large apply; BENCHMARKS.md.) Reads stay at 80%.
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

/// Graph's identity write limit for one app in one tenant, per `write_window` (docs/graph.md,
/// "Throttling").
pub const GRAPH_WRITES_PER_WINDOW: u32 = 3_000;

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            writes_per_window: 2_850,
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
/// twice the budget at a window edge, as a fixed window or a full token bucket allows). Requests
/// that had to wait are admitted by [`Priority`], then in arrival order.
#[derive(Debug)]
pub struct SlidingWindow {
    capacity: u32,
    window: Duration,
    state: Mutex<WindowState>,
    /// Wakes waiters held back by a queued request ahead of them once it was admitted or gave up.
    admitted: Notify,
}

#[derive(Debug, Default)]
struct WindowState {
    entries: VecDeque<(Instant, u32)>,
    used: u32,
    /// Requests waiting for room, in the order they get it.
    queue: BTreeSet<(Priority, u64)>,
    next_ticket: u64,
}

/// A queued request's place; leaves the queue when dropped (admitted, or the caller gave up).
struct Ticket<'a> {
    window: &'a SlidingWindow,
    key: Option<(Priority, u64)>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut s = self.window.state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.remove(&key);
            drop(s);
            self.window.admitted.notify_waiters();
        }
    }
}

impl SlidingWindow {
    pub fn new(capacity: u32, window: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            window,
            state: Mutex::new(WindowState::default()),
            admitted: Notify::new(),
        }
    }

    /// Waits until `cost` units fit, records them, and returns how long it waited. Queued at the
    /// calling task's [`current_priority`].
    pub async fn acquire(&self, cost: u32) -> Duration {
        self.acquire_at(cost, current_priority()).await
    }

    /// [`SlidingWindow::acquire`] at an explicit priority.
    pub async fn acquire_at(&self, cost: u32, priority: Priority) -> Duration {
        let cost = cost.clamp(1, self.capacity);
        let start = Instant::now();
        let mut ticket = Ticket {
            window: self,
            key: None,
        };
        let mut waited = false;
        loop {
            let admitted = self.admitted.notified();
            tokio::pin!(admitted);
            // Registered before the state is read, so an admission in between is not missed.
            admitted.as_mut().enable();
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
                let fits = s.used + cost <= self.capacity;
                // First in line: nobody queued, or this request is the queue's head.
                let first = match (s.queue.first(), ticket.key) {
                    (None, _) => true,
                    (Some(head), Some(mine)) => *head == mine,
                    (Some(head), None) => (priority, u64::MAX) < *head,
                };
                if fits && first {
                    s.entries.push_back((now, cost));
                    s.used += cost;
                    if let Some(key) = ticket.key.take() {
                        s.queue.remove(&key);
                        drop(s);
                        self.admitted.notify_waiters();
                    }
                    return if waited {
                        now.duration_since(start)
                    } else {
                        Duration::ZERO
                    };
                }
                if ticket.key.is_none() {
                    let key = (priority, s.next_ticket);
                    s.next_ticket += 1;
                    s.queue.insert(key);
                    ticket.key = Some(key);
                }
                if fits {
                    // Room, but someone ahead: wait for it to be admitted.
                    None
                } else {
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
                    Some(until)
                }
            };
            waited = true;
            match wait_until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => admitted.await,
            }
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
    /// threshold, writes are spaced so that they arrive no faster than the client's own write budget
    /// (`writes_per_window` per `write_window`, which follows Graph's) scaled down by the reported
    /// usage, for `pressure_hold` — unless this client's own writes explain the reported usage.
    /// Graph counts every client of the identity; the write window already keeps this client's
    /// own writes under its budget, so pacing for its own usage only slowed it further (at 95% of
    /// Graph's limit, Graph reports 0.9–1.0 and the spacing became 16 writes/s against a budget of
    /// 19; BENCHMARKS.md, "Scale"). The header has one decimal, hence the 0.1 margin.
    pub fn note_throttle_percentage(&self, percentage: f64) {
        if !percentage.is_finite() || percentage < self.limits.pressure_threshold {
            return;
        }
        // Graph's own limit for one app in one tenant: 3,000 writes per 150 s, or the configured
        // budget where a tenant allows more (the emulator's scaled throttling).
        let graph_limit = f64::from(GRAPH_WRITES_PER_WINDOW.max(self.limits.writes_per_window));
        let own = f64::from(self.writes.used()) / graph_limit;
        if percentage < own + 0.1 {
            return;
        }
        let per_write = self.limits.write_window.as_secs_f64()
            / f64::from(self.limits.writes_per_window.max(1));
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
        // 5 writes at the budget's spacing (150 s / 2,850) stretched by 1.0 / 0.8: the fifth
        // starts four spacings after the first.
        let spacing = Duration::from_secs_f64(150.0 / 2850.0 * 1.0 / 0.8);
        let elapsed = Instant::now() - start;
        assert!(
            elapsed.abs_diff(spacing * 4) < Duration::from_millis(1),
            "{elapsed:?}"
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!l.under_pressure());
        assert_eq!(l.acquire_write().await, Duration::ZERO);
        assert_eq!(l.acquire_write().await, Duration::ZERO);
    }

    /// Graph's percentage counts this client's own writes too: at 95% of the limit, all of it
    /// this client's, nothing is paced beyond the window; the same report with the budget unused
    /// by this client (another client of the identity) is paced.
    #[tokio::test(start_paused = true)]
    async fn pressure_that_is_this_clients_own_usage_is_not_paced() {
        let l = TenantRateLimiter::new(RateLimits::default());
        for _ in 0..2_850 {
            l.writes.acquire(1).await;
        }
        l.note_throttle_percentage(0.9);
        l.note_throttle_percentage(1.0);
        assert!(!l.under_pressure());

        let other = TenantRateLimiter::new(RateLimits::default());
        for _ in 0..1_500 {
            other.writes.acquire(1).await;
        }
        // Half the limit is this client's; Graph reports 0.9: someone else uses the rest.
        other.note_throttle_percentage(0.9);
        assert!(other.under_pressure());
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

    #[tokio::test(start_paused = true)]
    async fn due_rotations_go_first_soonest_expiry_first_then_arrival_order() {
        let w = Arc::new(SlidingWindow::new(2, Duration::from_secs(10)));
        w.acquire(1).await;
        w.acquire(1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        let mut spawn = |name: &'static str, priority: Priority| {
            let (w, order) = (w.clone(), order.clone());
            tasks.push(tokio::spawn(with_priority(priority, async move {
                w.acquire(1).await;
                order
                    .lock()
                    .unwrap()
                    .push((name, (Instant::now() - start).as_secs()));
            })));
        };
        // Creates queue first; two rotations arrive later, the one expiring sooner last.
        for name in ["create-1", "create-2", "create-3"] {
            spawn(name, Priority::Normal);
            tokio::task::yield_now().await;
        }
        spawn("rotation-later", Priority::DueRotation { expires_at: 200 });
        tokio::task::yield_now().await;
        spawn("rotation-sooner", Priority::DueRotation { expires_at: 100 });
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [
                ("rotation-sooner", 10),
                ("rotation-later", 10),
                ("create-1", 20),
                ("create-2", 20),
                ("create-3", 30),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_does_not_hold_the_queue() {
        let w = Arc::new(SlidingWindow::new(1, Duration::from_secs(10)));
        w.acquire(1).await;
        let ahead = {
            let w = w.clone();
            tokio::spawn(async move {
                w.acquire_at(1, Priority::DueRotation { expires_at: 1 })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let behind = {
            let w = w.clone();
            tokio::spawn(async move { w.acquire(1).await })
        };
        tokio::task::yield_now().await;
        ahead.abort();
        assert_eq!(behind.await.unwrap(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn pressure_pacing_follows_the_configured_budget() {
        // A budget four times Graph's default (a tenant with scaled limits): pacing four times
        // faster, not at the default budget's rate.
        let l = TenantRateLimiter::new(RateLimits {
            writes_per_window: 11_400,
            ..RateLimits::default()
        });
        l.note_throttle_percentage(0.8);
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire_write().await;
        }
        let spacing = Duration::from_secs_f64(150.0 / 11_400.0);
        let elapsed = Instant::now() - start;
        assert!(
            elapsed.abs_diff(spacing * 4) < Duration::from_millis(1),
            "{elapsed:?}"
        );
    }
}
