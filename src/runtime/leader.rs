//! Leader election on a `coordination.k8s.io/v1` Lease, with the timings of client-go's elector:
//! a 15 s lease, renewed every 2 s, given up after 10 s without a successful renewal; candidates
//! poll every 2 s. A standby takes over when it has seen the lease unchanged for a whole lease
//! duration (its own clock, so clock skew between nodes does not matter), i.e. at the earliest
//! 15 s after the leader's last successful renewal was committed.
//!
//! Every write is a replace with the observed `resourceVersion`, so two candidates can never both
//! believe they won: the API server rejects the second write with 409 Conflict. Every call to the
//! API server is bounded by [`LeaseTimings::request_timeout`], so a partition cannot hang a
//! renewal.
//!
//! # Fencing
//!
//! The leader hands a [`Fence`] to everything that writes. The fence is open until
//! `start of the last successful renewal + renew_deadline` (on the leader's monotonic clock): the
//! renewal was committed after it started, and a standby takes over no earlier than
//! `commit + lease_duration`, so a writer that checks the fence before each write stops at least
//! `lease_duration - renew_deadline` (5 s) before a standby can lead. That gap is the budget for a
//! write that passed the check to land; a request delayed in the network longer than that could
//! still land after a takeover (no fencing token reaches Graph), which the credential state machine
//! tolerates: its status writes are conditional, so a stale writer's status write is rejected.
//!
//! # Why not `kube-lease-manager`
//!
//! The `kube-lease-manager` crate (0.13, kube 5) was considered first. It cannot fence: it reports
//! leadership as a `watch::Receiver<bool>` that changes only when a sync *succeeds* and sees
//! another holder; while the API server is unreachable the channel keeps saying `true`, and the
//! time of the last successful renewal (which a fence needs) is not exposed. Its calls also carry
//! no timeout of their own. So the hand-written elector stays, with the fence and timeouts added.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use crate::fence::Fence;

/// Timings of the election.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTimings {
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// The leader gives up (and must stop writing) when it could not renew for this long. Must be
    /// shorter than `lease_duration`: the difference is the fence's safety margin.
    pub renew_deadline: Duration,
    /// How often a standby looks at the lease.
    pub retry_period: Duration,
    /// Bound on each call to the API server.
    pub request_timeout: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            request_timeout: Duration::from_secs(4),
        }
    }
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {0} was taken over by {1}")]
    TakenOver(String, String),
    #[error("lease {lease} could not be renewed for {seconds}s: {last_error}")]
    RenewDeadline {
        lease: String,
        seconds: u64,
        last_error: String,
    },
}

/// One candidate for a Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    fence: Fence,
}

/// What a candidate last saw in the lease, and when (on its own clock).
struct Observed {
    record: (Option<String>, Option<MicroTime>, Option<i32>),
    at: Instant,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            fence: Fence::closed(),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The fence of this candidate: open while it holds the lease with margin to spare.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// How long after the start of a successful renewal the fence stays open.
    fn fence_validity(&self) -> Duration {
        self.timings.renew_deadline.min(self.timings.lease_duration)
    }

    /// Runs one API call with [`LeaseTimings::request_timeout`].
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.timings.request_timeout, call).await {
            Ok(result) => result.map_err(CallError::Api),
            Err(_) => Err(CallError::Timeout(self.timings.request_timeout)),
        }
    }

    fn now() -> MicroTime {
        MicroTime(jiff::Timestamp::now())
    }

    fn lease_seconds(&self) -> i32 {
        self.timings.lease_duration.as_secs().max(1) as i32
    }

    /// Waits until this candidate holds the lease. Errors talking to the API server are logged and
    /// retried: a standby has nothing better to do.
    pub async fn acquire(&self) {
        let mut observed: Option<Observed> = None;
        let mut announced_holder: Option<String> = None;
        loop {
            let started = Instant::now();
            match self.try_acquire(&mut observed).await {
                Ok(None) => {
                    self.fence.extend(started, self.fence_validity());
                    info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(Some(holder)) => {
                    if announced_holder.as_deref() != Some(holder.as_str()) {
                        info!(lease = %self.name, leader = %holder, "standing by; another replica leads");
                        announced_holder = Some(holder);
                    }
                }
                Err(e) => debug!(lease = %self.name, error = %e, "lease not acquired"),
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// One attempt: `Ok(None)` when acquired, `Ok(Some(holder))` while someone else holds it.
    async fn try_acquire(
        &self,
        observed: &mut Option<Observed>,
    ) -> Result<Option<String>, CallError> {
        let now = Self::now();
        let Some(mut lease) = self.bounded(self.api.get_opt(&self.name)).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            self.bounded(self.api.create(&PostParams::default(), &lease))
                .await?;
            return Ok(None);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (
            holder.clone(),
            spec.renew_time.clone(),
            spec.lease_transitions,
        );
        let at = match observed {
            Some(o) if o.record == record => o.at,
            _ => Instant::now(),
        };
        *observed = Some(Observed { record, at });
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.timings.lease_duration);
        let held_by_me = holder.as_deref() == Some(self.identity.as_str());
        if let Some(h) = &holder
            && !held_by_me
            && at.elapsed() < duration
        {
            return Ok(Some(h.clone()));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if held_by_me { 0 } else { 1 };
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: if held_by_me {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        });
        if let Some(previous) = &holder
            && !held_by_me
        {
            warn!(lease = %self.name, previous = %previous, "taking over an expired lease");
        }
        // Replace carries the resourceVersion we read: a concurrent candidate's write wins the race
        // and ours fails with 409.
        self.bounded(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await?;
        Ok(None)
    }

    /// Renews the lease until it is lost; returns why. Call after [`LeaderElector::acquire`].
    /// The fence closes when a renewal is overdue, before this returns; the caller must stop
    /// writing as soon as this returns.
    pub async fn hold(&self) -> LeaseError {
        let error = self.renew_until_lost().await;
        self.fence.close(&error.to_string());
        error
    }

    async fn renew_until_lost(&self) -> LeaseError {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timings.renew_period).await;
            loop {
                let started = Instant::now();
                match self.renew().await {
                    Ok(()) => {
                        self.fence.extend(started, self.fence_validity());
                        last_renewed = started;
                        break;
                    }
                    Err(RenewError::TakenOver(holder)) => {
                        return LeaseError::TakenOver(self.name.clone(), holder);
                    }
                    Err(RenewError::Call(e)) => {
                        if last_renewed.elapsed() >= self.timings.renew_deadline {
                            return LeaseError::RenewDeadline {
                                lease: self.name.clone(),
                                seconds: self.timings.renew_deadline.as_secs(),
                                last_error: e.to_string(),
                            };
                        }
                        warn!(lease = %self.name, error = %e, "lease renewal failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    async fn renew(&self) -> Result<(), RenewError> {
        let mut lease = self
            .bounded(self.api.get(&self.name))
            .await
            .map_err(RenewError::Call)?;
        let spec = lease.spec.get_or_insert_with(Default::default);
        match spec.holder_identity.as_deref() {
            Some(h) if h == self.identity => {}
            other => {
                return Err(RenewError::TakenOver(other.unwrap_or("nobody").to_string()));
            }
        }
        spec.renew_time = Some(Self::now());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        self.bounded(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await
            .map_err(|e| match e {
                CallError::Api(kube::Error::Api(s)) if s.code == 409 => {
                    RenewError::TakenOver("another replica (conflict)".into())
                }
                e => RenewError::Call(e),
            })?;
        Ok(())
    }

    /// Gives the lease up so a standby takes over at once (graceful shutdown).
    pub async fn release(&self) {
        self.fence.close("released");
        let result = async {
            let mut lease = self.bounded(self.api.get(&self.name)).await?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(Self::now());
            self.bounded(self.api.replace(&self.name, &PostParams::default(), &lease))
                .await?;
            Ok::<bool, CallError>(true)
        }
        .await;
        match result {
            Ok(true) => info!(lease = %self.name, "released the lease"),
            Ok(false) => debug!(lease = %self.name, "lease not ours; nothing to release"),
            Err(e) => warn!(lease = %self.name, error = %e, "could not release the lease"),
        }
    }
}

enum RenewError {
    TakenOver(String),
    Call(CallError),
}

/// A failed or timed-out call to the API server.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Api(kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_timings() -> LeaseTimings {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            request_timeout: Duration::from_secs(4),
        }
    }

    /// An API server that accepts connections and never answers: a partition.
    async fn black_hole() -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_partitioned_leader_is_fenced_before_a_standby_can_take_over() {
        let timings = fast_timings();
        let elector = LeaderElector::new(black_hole().await, "default", "lease", "me", timings);
        let fence = elector.fence();
        // As if the last successful renewal started now.
        let renewed = Instant::now();
        fence.extend(renewed, elector.fence_validity());
        let holding = tokio::spawn(async move {
            let lost = elector.hold().await;
            (lost, Instant::now())
        });
        // Watch the fence at a fine grain until hold gives up.
        let mut closed_at = None;
        while !holding.is_finished() {
            if closed_at.is_none() && fence.check().is_err() {
                closed_at = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (lost, returned_at) = holding.await.unwrap();
        assert!(matches!(lost, LeaseError::RenewDeadline { .. }), "{lost}");
        let closed_at = closed_at.expect("fence closed while renewals hung");
        // The earliest a standby can take over is a lease duration after the last commit, which
        // came after `renewed`.
        let takeover = renewed + timings.lease_duration;
        assert!(closed_at <= renewed + timings.renew_deadline + Duration::from_millis(100));
        assert!(
            takeover - closed_at >= Duration::from_secs(4),
            "at least the margin before a takeover: {:?}",
            takeover - closed_at
        );
        // Hung calls time out, so hold returns soon after the deadline.
        assert!(returned_at <= renewed + timings.renew_deadline + timings.request_timeout * 2);
        assert!(fence.check().is_err());
    }
}
