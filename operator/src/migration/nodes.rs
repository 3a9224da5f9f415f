//! Calls to the shard nodes' admin API, and pushing the committed placement to every node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringshift_node_api::client::{AdminClient, ClientError};
use ringshift_node_api::{MemberEndpoint, PlacementAccepted, PlacementInstall};
use ringshift_ring::Placement;

use super::env::Env;

/// How long one admin call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to a node got no answer (its text goes to logs and move status messages).
#[derive(Debug, thiserror::Error)]
pub enum NodeCallError {
    /// The member's pod has no address yet.
    #[error("{0} has no address")]
    NoAddress(String),
    /// The failpoint `push.fail` refused the push to this member (tests only).
    #[error("{0}: placement push failed (failpoint push.fail)")]
    PushFailpoint(String),
    /// The placement push to this member took longer than [`CALL_TIMEOUT`].
    #[error("{0}: placement push timed out")]
    PushTimedOut(String),
    /// A call (running on its own task) got no answer in time.
    #[error("no answer within {} s", .0.as_secs())]
    NoAnswer(Duration),
    /// The node refused, or the request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The task running the call ended without an answer (aborted or panicked).
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Admin clients of a cluster's members, for one round.
pub struct Nodes {
    http: reqwest::Client,
    token: String,
    pub endpoints: BTreeMap<String, MemberEndpoint>,
}

impl Nodes {
    /// `None` when the admin token is not readable yet.
    pub fn new(http: &reqwest::Client, env: &Env) -> Option<Nodes> {
        let token = env.token.clone()?;
        let endpoints = env
            .members
            .iter()
            .filter_map(|(name, m)| {
                Some((
                    name.clone(),
                    MemberEndpoint {
                        name: name.clone(),
                        data_addr: m.data_addr()?,
                        admin_addr: m.admin_addr()?,
                    },
                ))
            })
            .collect();
        Some(Nodes {
            http: http.clone(),
            token,
            endpoints,
        })
    }

    pub fn client(&self, member: &str) -> Option<AdminClient> {
        let ep = self.endpoints.get(member)?;
        Some(AdminClient::new(
            self.http.clone(),
            &ep.admin_addr,
            &self.token,
        ))
    }

    pub fn install(
        &self,
        placement: &Placement,
        env: &Env,
        incarnations: BTreeMap<String, String>,
    ) -> PlacementInstall {
        PlacementInstall {
            placement: placement.clone(),
            members: self.endpoints.values().cloned().collect(),
            write_pause_budget_ms: env.limits.phase.write_pause_budget_ms,
            incarnations,
            owners_digest: placement.current().ok().map(|c| c.digest()),
        }
    }

    /// Installs `body` on `member`; returns the answer and how long it took.
    pub async fn push_one(
        &self,
        member: &str,
        body: &PlacementInstall,
    ) -> Result<(PlacementAccepted, Duration), NodeCallError> {
        let Some(c) = self.client(member) else {
            return Err(NodeCallError::NoAddress(member.to_string()));
        };
        let key = format!("{member}@{}", body.placement.epoch());
        if super::failpoints::fails("push.fail", &key) {
            return Err(NodeCallError::PushFailpoint(member.to_string()));
        }
        let t0 = Instant::now();
        match tokio::time::timeout(CALL_TIMEOUT, c.put_placement(body)).await {
            Ok(Ok(a)) => Ok((a, t0.elapsed())),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(NodeCallError::PushTimedOut(member.to_string())),
        }
    }

    /// Installs `body` on each of `members` concurrently; answers by member.
    pub async fn push_many(
        &self,
        members: &[String],
        body: &PlacementInstall,
    ) -> BTreeMap<String, Result<PlacementAccepted, NodeCallError>> {
        let calls = members
            .iter()
            .map(|m| async move { (m.clone(), self.push_one(m, body).await.map(|(a, _)| a)) });
        futures::future::join_all(calls).await.into_iter().collect()
    }
}

/// What the driver knows of one member when it decides whether to push it the placement.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// Epoch the member acknowledged (0: never).
    pub acked: u64,
    /// The member accepted the current member address list.
    pub addresses_current: bool,
    /// Its pod is Ready and has an address.
    pub ready: bool,
}

/// Members to push placement `epoch` to in this round: those behind on the epoch or on the
/// member addresses, whose pod is Ready. A pod that is not Ready has no admin server answering
/// (readiness is the node's own `/readyz`): the push would wait out [`CALL_TIMEOUT`] and hold
/// the round, and with it every other move of the cluster. The pod watch starts a round when
/// the pod turns Ready, and that round pushes.
pub fn due_for_push<'a>(
    members: impl IntoIterator<Item = &'a String>,
    facts: impl Fn(&str) -> Due,
    epoch: u64,
) -> Vec<String> {
    members
        .into_iter()
        .filter(|m| {
            let f = facts(m);
            f.ready && (f.acked < epoch || !f.addresses_current)
        })
        .cloned()
        .collect()
}

/// The member address list each node last accepted, per cluster UID and member: a node that
/// acknowledged an epoch before a peer had an address, or before a peer restarted on a new
/// one, gets the same placement again with the current list (same epoch, so it is only an
/// address update). Kept in memory: after an operator restart every node is re-sent once.
#[derive(Default)]
pub struct PushedEndpoints(std::sync::Mutex<BTreeMap<(String, String), u64>>);

impl PushedEndpoints {
    /// A digest of the endpoint list (order-independent: the map is sorted).
    pub fn digest(endpoints: &BTreeMap<String, MemberEndpoint>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for e in endpoints.values() {
            (&e.name, &e.data_addr, &e.admin_addr).hash(&mut h);
        }
        h.finish()
    }

    pub fn is_current(&self, cluster_uid: &str, member: &str, digest: u64) -> bool {
        self.0
            .lock()
            .map(|m| m.get(&(cluster_uid.into(), member.into())) == Some(&digest))
            .unwrap_or(false)
    }

    pub fn record(&self, cluster_uid: &str, member: &str, digest: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert((cluster_uid.into(), member.into()), digest);
        }
    }
}

/// A client error in one line, without the token.
pub fn describe(e: &ClientError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addr_of_b: &str) -> BTreeMap<String, MemberEndpoint> {
        [("a", "127.0.0.2"), ("b", addr_of_b)]
            .into_iter()
            .map(|(n, ip)| {
                (
                    n.to_string(),
                    MemberEndpoint {
                        name: n.into(),
                        data_addr: format!("{ip}:6379"),
                        admin_addr: format!("{ip}:8080"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn only_ready_members_behind_on_epoch_or_addresses_are_pushed() {
        let facts = |m: &str| match m {
            "behind" => Due {
                acked: 3,
                addresses_current: true,
                ready: true,
            },
            "moved-peer" => Due {
                acked: 4,
                addresses_current: false,
                ready: true,
            },
            "current" => Due {
                acked: 4,
                addresses_current: true,
                ready: true,
            },
            "starting" => Due {
                acked: 0,
                addresses_current: false,
                ready: false,
            },
            "restarting" => Due {
                acked: 3,
                addresses_current: true,
                ready: false,
            },
            _ => unreachable!(),
        };
        let members: Vec<String> = ["behind", "moved-peer", "current", "starting", "restarting"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            due_for_push(&members, facts, 4),
            vec!["behind", "moved-peer"]
        );
        // Once its pod is Ready, the new member is due like any other.
        let ready_now = |m: &str| Due {
            ready: true,
            ..facts(m)
        };
        assert_eq!(
            due_for_push(&members, ready_now, 4),
            vec!["behind", "moved-peer", "starting", "restarting"]
        );
    }

    #[test]
    fn a_peer_on_a_new_address_makes_every_node_due_again() {
        let pushed = PushedEndpoints::default();
        let before = PushedEndpoints::digest(&endpoints("127.0.0.3"));
        pushed.record("uid", "a", before);
        assert!(pushed.is_current("uid", "a", before));
        assert!(!pushed.is_current("uid", "b", before), "never pushed");
        assert!(!pushed.is_current("other", "a", before), "another cluster");
        let after = PushedEndpoints::digest(&endpoints("127.0.0.9"));
        assert_ne!(before, after);
        assert!(!pushed.is_current("uid", "a", after));
    }
}
