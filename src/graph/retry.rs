//! When and how long to wait before trying a Graph request again.

use std::time::Duration;

/// Retry limits. Every wait is bounded twice: per attempt and in total, so a reconcile never hangs
/// on Graph; what remains is returned as a typed error and the controller requeues.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included) for 5xx, connection errors and 429.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt (full jitter: the wait is uniform in 0..=ceiling).
    pub base_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
    /// A `Retry-After` longer than this is not waited out here; the error goes back to the caller,
    /// which requeues instead of holding a worker.
    pub max_retry_after: Duration,
    /// How long a 404 right after a create (or "does not reference a valid application object")
    /// is retried, waiting for Entra's replicas to catch up.
    pub replication_timeout: Duration,
    /// First wait of a replication retry; doubles, capped by `max_delay`.
    pub replication_base_delay: Duration,
    /// Wait out replication delay inside the call (up to `replication_timeout`). Off by default:
    /// the call returns `GraphError::Replicating` at once and the controller requeues shortly, so
    /// a worker is never parked on Entra's replication (with a 2 s delay and 4 workers that
    /// capped a burst of new apps at ~0.8/s). On for callers without a requeue (tests, tools).
    pub replication_in_place: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(90),
            max_retry_after: Duration::from_secs(60),
            replication_timeout: Duration::from_secs(60),
            replication_base_delay: Duration::from_secs(1),
            replication_in_place: false,
        }
    }
}

impl RetryPolicy {
    /// Tiny delays for tests.
    pub fn fast() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(5),
            replication_timeout: Duration::from_secs(2),
            replication_base_delay: Duration::from_millis(5),
            replication_in_place: true,
        }
    }

    /// The ceiling of the wait after failed attempt number `attempt` (0-based).
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        exp_ceiling(self.base_delay, self.max_delay, attempt)
    }

    /// Full-jitter exponential backoff: uniform in `0..=ceiling`, so many workers that failed
    /// together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        jitter(self.backoff_ceiling(attempt), 0.0)
    }

    /// Wait before a replication-delay retry: at least half the ceiling, since the object needs
    /// real time to appear and hammering does not help.
    pub fn replication_backoff(&self, attempt: u32) -> Duration {
        jitter(
            exp_ceiling(self.replication_base_delay, self.max_delay, attempt),
            0.5,
        )
    }
}

fn exp_ceiling(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(30));
    base.saturating_mul(factor).min(max)
}

/// Uniform in `floor*ceiling..=ceiling`.
fn jitter(ceiling: Duration, floor: f64) -> Duration {
    let r: f64 = rand::random();
    ceiling.mul_f64(floor + (1.0 - floor) * r)
}

/// Parses `Retry-After`: delta seconds (Graph sends fractional values such as `1.5`) or an
/// HTTP-date. A date in the past gives zero.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let delta = when.duration_since(now);
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_integer_fractional_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 "),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a past date means now"
        );
        let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let header =
            jiff::fmt::rfc2822::to_string(&future.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let d = parse_retry_after(&header).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_grows_exponentially_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(0), Duration::from_millis(500));
        assert_eq!(p.backoff_ceiling(1), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(3), Duration::from_secs(4));
        assert_eq!(p.backoff_ceiling(10), Duration::from_secs(20));
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_secs(20));
        for attempt in 0..12 {
            for _ in 0..50 {
                let d = p.backoff(attempt);
                assert!(d <= p.backoff_ceiling(attempt));
                let r = p.replication_backoff(attempt);
                let ceiling = exp_ceiling(p.replication_base_delay, p.max_delay, attempt);
                assert!(r >= ceiling / 2 && r <= ceiling, "{r:?} {ceiling:?}");
            }
        }
    }

    #[test]
    fn full_jitter_spreads_waits() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (0..100).map(|_| p.backoff(4)).collect();
        let min = waits.iter().min().unwrap();
        let max = waits.iter().max().unwrap();
        assert!(*max - *min > Duration::from_secs(1), "{min:?}..{max:?}");
    }
}
