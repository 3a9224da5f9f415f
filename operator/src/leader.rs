//! Leader election through a coordination.k8s.io/v1 Lease.
//!
//! Only the leader runs controllers. Expiry is judged by the local clock from
//! the moment this replica last saw the lease change (as client-go does), so
//! clock skew between replicas does not matter. The lease is a liveness
//! mechanism; the safety of commits against a stale leader comes from
//! resourceVersion preconditions, attempt checks and the leader generation:
//! the Lease's `leaseTransitions` as this replica wrote it, which grows on every
//! change of holder. The driver stores it in ShardPlacement status before it acts
//! and every status edit refuses a replica whose generation is lower (rule 13).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

/// This replica's part, as the elector publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not leading: run nothing.
    Standby,
    /// Leading. `generation` is the Lease's `leaseTransitions` when this replica took it (None
    /// without leader election, where no other replica exists to fence off).
    Leading { generation: Option<i64> },
}

impl Role {
    pub fn is_leading(self) -> bool {
        matches!(self, Role::Leading { .. })
    }
}

/// What to do with the lease as last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds a live lease.
    Follow,
}

/// Decides from the lease spec, when we first saw its current holder and
/// renew time (`unchanged_since`), and the local time `now`.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_since: Instant,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(_) => {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(default_duration);
            if now.saturating_duration_since(unchanged_since) >= duration {
                Decision::Acquire
            } else {
                Decision::Follow
            }
        }
    }
}

/// Identity of what the lease says now: a change restarts the expiry clock.
fn fingerprint(spec: Option<&LeaseSpec>) -> String {
    let Some(s) = spec else { return String::new() };
    format!(
        "{}|{}|{}",
        s.holder_identity.as_deref().unwrap_or(""),
        s.renew_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        s.lease_transitions.unwrap_or(0)
    )
}

/// Runs the election until `shutdown` fires; publishes leadership on `tx`.
/// On shutdown a leader releases the lease so another replica takes over at once.
pub async fn run(
    api: Api<Lease>,
    cfg: LeaseConfig,
    tx: watch::Sender<Role>,
    mut shutdown: watch::Receiver<bool>,
    connected: impl Fn() + Send,
) {
    let mut seen = (String::new(), Instant::now());
    let mut last_renewal: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match attempt(&api, &cfg, &mut seen, now).await {
            Ok(generation) => {
                connected();
                if generation.is_some() {
                    last_renewal = Some(now);
                }
                let role = match generation {
                    Some(g) => Role::Leading {
                        generation: Some(g),
                    },
                    None => Role::Standby,
                };
                if *tx.borrow() != role {
                    tracing::info!(identity = %cfg.identity, leading = role.is_leading(), generation = ?generation, "leadership changed");
                }
                tx.send_replace(role);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease attempt failed");
                let expired =
                    last_renewal.is_none_or(|t| now.duration_since(t) > cfg.renew_deadline);
                if tx.borrow().is_leading() && expired {
                    tracing::warn!(identity = %cfg.identity, "could not renew the lease in time; stepping down");
                    tx.send_replace(Role::Standby);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    if tx.borrow().is_leading() {
        tx.send_replace(Role::Standby);
        if let Err(e) = release(&api, &cfg).await {
            tracing::warn!(error = %e, "releasing the lease failed; it expires by itself");
        } else {
            tracing::info!(identity = %cfg.identity, "released the lease");
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One look at the lease: `Some(leaseTransitions)` when this replica holds it now.
async fn attempt(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    seen: &mut (String, Instant),
    now: Instant,
) -> Result<Option<i64>, kube::Error> {
    let lease = api.get_opt(&cfg.name).await?;
    let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
    let fp = fingerprint(spec);
    if fp != seen.0 {
        *seen = (fp, now);
    }
    let duration_secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    match (
        decide(spec, &cfg.identity, seen.1, now, cfg.lease_duration),
        lease,
    ) {
        (Decision::Follow, _) => Ok(None),
        (Decision::Acquire, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Some(0)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(e),
            }
        }
        (Decision::Renew, None) => Ok(None),
        (decision, Some(mut lease)) => {
            let mut spec = lease.spec.take().unwrap_or_default();
            if decision == Decision::Acquire {
                tracing::info!(identity = %cfg.identity, previous = ?spec.holder_identity, "acquiring the lease");
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(now_micro());
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
            spec.lease_duration_seconds = Some(duration_secs);
            spec.renew_time = Some(now_micro());
            let generation = i64::from(spec.lease_transitions.unwrap_or(0));
            lease.spec = Some(spec);
            // The resourceVersion in `lease` makes this a compare-and-swap, so no two replicas
            // ever hold the same generation.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Some(generation)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn free_or_missing_leases_are_taken() {
        let t = Instant::now();
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", t, t, d), Decision::Acquire);
        let free = LeaseSpec {
            holder_identity: None,
            ..Default::default()
        };
        assert_eq!(decide(Some(&free), "a", t, t, d), Decision::Acquire);
    }

    #[test]
    fn a_live_lease_of_another_is_followed_until_it_expires() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let other = held_by("b", 10);
        assert_eq!(
            decide(Some(&other), "a", t0, t0 + Duration::from_secs(9), d),
            Decision::Follow
        );
        assert_eq!(
            decide(Some(&other), "a", t0, t0 + Duration::from_secs(10), d),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&held_by("a", 10)), "a", t0, t0, d),
            Decision::Renew
        );
    }
}
