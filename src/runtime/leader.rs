//! Leader election on a `coordination.k8s.io/v1` Lease, with the timings of client-go's elector:
//! a 15 s lease renewed every 5 s, candidates polling every 2 s. A standby takes over when it has
//! seen the lease unchanged for a whole lease duration (its own clock, so clock skew between
//! nodes does not matter), i.e. within about 17 s of the leader's last renewal.
//!
//! Every write is a replace with the observed `resourceVersion`, so two candidates can never both
//! believe they won: the API server rejects the second write with 409 Conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Timings of the election.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTimings {
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// The leader gives up (and must stop writing) when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often a standby looks at the lease.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
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
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
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
            match self.try_acquire(&mut observed).await {
                Ok(None) => {
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
    ) -> Result<Option<String>, kube::Error> {
        let now = Self::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
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
            self.api.create(&PostParams::default(), &lease).await?;
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
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(None)
    }

    /// Renews the lease until it is lost; returns why. Call after [`LeaderElector::acquire`].
    /// The caller must stop writing as soon as this returns.
    pub async fn hold(&self) -> LeaseError {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timings.renew_period).await;
            loop {
                match self.renew().await {
                    Ok(()) => {
                        last_renewed = Instant::now();
                        break;
                    }
                    Err(RenewError::TakenOver(holder)) => {
                        return LeaseError::TakenOver(self.name.clone(), holder);
                    }
                    Err(RenewError::Api(e)) => {
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
        let mut lease = self.api.get(&self.name).await.map_err(RenewError::Api)?;
        let spec = lease.spec.get_or_insert_with(Default::default);
        match spec.holder_identity.as_deref() {
            Some(h) if h == self.identity => {}
            other => {
                return Err(RenewError::TakenOver(other.unwrap_or("nobody").to_string()));
            }
        }
        spec.renew_time = Some(Self::now());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 => {
                    RenewError::TakenOver("another replica (conflict)".into())
                }
                e => RenewError::Api(e),
            })?;
        Ok(())
    }

    /// Gives the lease up so a standby takes over at once (graceful shutdown).
    pub async fn release(&self) {
        let result = async {
            let mut lease = self.api.get(&self.name).await?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(Self::now());
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await?;
            Ok::<bool, kube::Error>(true)
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
    Api(kube::Error),
}
