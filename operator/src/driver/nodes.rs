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

/// A client error in one line, without the token.
pub fn describe(e: &ClientError) -> String {
    e.to_string()
}
