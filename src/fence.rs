//! The write fence a leader hands to everything that writes (`runtime::leader` opens and closes
//! it; the controllers and the credential driver only check it). It lives below both, so the
//! controllers need not import the runtime. The timing argument is in `runtime::leader`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::credentials::Fenced;

/// Whether this replica can still prove it holds the lease. Cheap to clone; every writer checks
/// it before each write ([`crate::credentials::Fence`]).
#[derive(Clone, Debug)]
pub struct Fence {
    /// `None`: leader election is off (a single replica), the fence is always open.
    state: Option<Arc<Mutex<FenceState>>>,
}

#[derive(Debug, Default)]
struct FenceState {
    /// Open until this instant.
    valid_until: Option<Instant>,
    /// Leadership ended for this reason; the fence stays closed.
    closed: Option<String>,
}

impl Fence {
    /// A fence that never closes, for a replica that runs without leader election.
    pub fn unfenced() -> Self {
        Fence { state: None }
    }

    /// A fence that is closed until the first renewal.
    pub(crate) fn closed() -> Self {
        Fence {
            state: Some(Arc::new(Mutex::new(FenceState::default()))),
        }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, FenceState>> {
        self.state
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// A renewal that started at `started` was committed: open until `started + validity`.
    pub(crate) fn extend(&self, started: Instant, validity: Duration) {
        if let Some(mut state) = self.lock()
            && state.closed.is_none()
        {
            let until = started + validity;
            state.valid_until = Some(state.valid_until.map_or(until, |v| v.max(until)));
        }
    }

    /// Leadership ended: closed for good.
    pub(crate) fn close(&self, reason: &str) {
        if let Some(mut state) = self.lock() {
            state.closed.get_or_insert_with(|| reason.to_string());
        }
    }

    /// `Ok` while this replica holds the lease with margin to spare.
    pub fn check(&self) -> Result<(), Fenced> {
        let Some(state) = self.lock() else {
            return Ok(());
        };
        if let Some(reason) = &state.closed {
            return Err(Fenced(format!("leadership ended: {reason}")));
        }
        match state.valid_until {
            Some(until) if Instant::now() < until => Ok(()),
            Some(_) => Err(Fenced(
                "the lease was not renewed recently enough to prove leadership".into(),
            )),
            None => Err(Fenced("the lease has not been acquired".into())),
        }
    }
}

impl crate::credentials::Fence for Fence {
    fn check(&self) -> Result<(), Fenced> {
        Fence::check(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_without_election_is_never_fenced() {
        assert_eq!(Fence::unfenced().check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fence_opens_on_a_renewal_and_closes_when_the_next_is_overdue() {
        let fence = Fence::closed();
        assert!(
            fence.check().is_err(),
            "closed before the lease is acquired"
        );
        let renewed = Instant::now();
        fence.extend(renewed, Duration::from_secs(10));
        assert_eq!(fence.check(), Ok(()));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(fence.check(), Ok(()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(fence.check().is_err(), "overdue");
        // A later renewal opens it again; an older one never shortens it.
        fence.extend(Instant::now(), Duration::from_secs(10));
        fence.extend(renewed, Duration::from_secs(10));
        assert_eq!(fence.check(), Ok(()));
        // Clones share the state.
        let clone = fence.clone();
        fence.close("taken over");
        let err = clone.check().unwrap_err();
        assert!(err.to_string().contains("taken over"), "{err}");
        fence.extend(Instant::now(), Duration::from_secs(10));
        assert!(clone.check().is_err(), "closed for good");
    }
}
