//! Calls to the shard nodes' admin API, and pushing the committed placement to every node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringshift_node_api::client::{AdminClient, ClientError};
use ringshift_node_api::{MemberEndpoint, PlacementAccepted, PlacementInstall};
use ringshift_ring::Placement;

use super::env::Env;

/// How long one admin call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
    ) -> Result<(PlacementAccepted, Duration), String> {
        let Some(c) = self.client(member) else {
            return Err(format!("{member} has no address"));
        };
        let key = format!("{member}@{}", body.placement.epoch());
        if super::failpoints::fails("push.fail", &key) {
            return Err(format!(
                "{member}: placement push failed (failpoint push.fail)"
            ));
        }
        let t0 = Instant::now();
        match tokio::time::timeout(CALL_TIMEOUT, c.put_placement(body)).await {
            Ok(Ok(a)) => Ok((a, t0.elapsed())),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("{member}: placement push timed out")),
        }
    }

    /// Installs `body` on each of `members` concurrently; answers by member.
    pub async fn push_many(
        &self,
        members: &[String],
        body: &PlacementInstall,
    ) -> BTreeMap<String, Result<PlacementAccepted, String>> {
        let calls = members
            .iter()
            .map(|m| async move { (m.clone(), self.push_one(m, body).await.map(|(a, _)| a)) });
        futures::future::join_all(calls).await.into_iter().collect()
    }
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
