//! Everything one reconcile of a cluster's migrations looks at, read once per round.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use ringshift_planner::Policy;
use ringshift_planner::phase::PhasePolicy;
use ringshift_ring::{Placement, RingSpec};

use super::Error;
use super::placement_io::Writer;
use crate::cache::Stores;
use crate::cluster::desired::names::{self, ADMIN_PORT, ADMIN_TOKEN_KEY, DATA_PORT};
use crate::cluster::observed::pod_facts;
use crate::cluster::validate::{Existing, validate};
use crate::crd::{ApprovalMode, ShardCluster, ShardMigration, ShardPlacement};

/// A member pod as the driver needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub ip: Option<String>,
    pub ready: bool,
}

impl Member {
    pub fn data_addr(&self) -> Option<String> {
        self.ip.as_ref().map(|ip| format!("{ip}:{DATA_PORT}"))
    }
    pub fn admin_addr(&self) -> Option<String> {
        self.ip.as_ref().map(|ip| format!("{ip}:{ADMIN_PORT}"))
    }
}

/// Limits and switches of the cluster's migration policy, parsed.
#[derive(Debug, Clone)]
pub struct Limits {
    pub phase: PhasePolicy,
    pub plan: Policy,
    pub paused: bool,
    pub bandwidth: Option<u64>,
    pub history_limit: usize,
    pub write_pause_budget: Duration,
}

/// One round's view of a cluster.
pub struct Env {
    pub client: kube::Client,
    pub ns: String,
    pub name: String,
    pub cluster: ShardCluster,
    pub placement_obj: ShardPlacement,
    /// Committed placement (None until the driver first writes it).
    pub placement: Option<Placement>,
    /// Desired ring (ShardPlacement spec).
    pub desired: RingSpec,
    pub migrations: Vec<ShardMigration>,
    pub members: BTreeMap<String, Member>,
    pub token: Option<String>,
    pub limits: Limits,
    /// This replica's leader generation, carried by every ShardPlacement status edit.
    pub generation: Option<i64>,
}

impl Env {
    /// Reads the cluster, its pods, migrations and admin token from the shared caches (a
    /// stale read costs a retry: every status write carries a precondition, every node call the
    /// attempt, and the commit points re-read live, see placement_io.rs). `Ok(None)` when there
    /// is nothing to drive (the cluster is gone, being deleted, unreadable, or its spec is
    /// invalid: the cluster controller reports why).
    pub fn load(
        client: &kube::Client,
        stores: &Stores,
        placement_obj: &ShardPlacement,
    ) -> Result<Option<Env>, Error> {
        let ns = placement_obj
            .namespace()
            .ok_or_else(|| Error::NoNamespace(placement_obj.name_any()))?;
        let name = placement_obj.spec.cluster.clone();
        let Some(cached) = stores.cluster(&ns, &name) else {
            return Ok(None);
        };
        let Ok(cluster) = cached.0.clone() else {
            return Ok(None);
        };
        if cluster.meta().deletion_timestamp.is_some() {
            return Ok(None);
        }
        // Only the cluster's own placement (its name and UID) is driven: a copy or a stray
        // object naming the cluster must never push placements to its nodes.
        if placement_obj.name_any() != name
            || cluster.uid().as_deref() != Some(placement_obj.spec.cluster_uid.as_str())
        {
            tracing::warn!(
                namespace = %ns,
                placement = %placement_obj.name_any(),
                cluster = %name,
                "ignoring a ShardPlacement that is not this cluster's own (name or clusterUid differ)"
            );
            return Ok(None);
        }
        let Ok(valid) = validate(&name, &cluster.spec, &Existing::default()) else {
            return Ok(None);
        };
        let desired: RingSpec = serde_json::from_value(placement_obj.spec.ring.clone())
            .map_err(|e| Error::Document(format!("ShardPlacement {ns}/{name} spec.ring: {e}")))?;
        let placement = placement_obj
            .status
            .as_ref()
            .and_then(|s| s.placement.clone())
            .map(serde_json::from_value::<Placement>)
            .transpose()
            .map_err(|e| {
                Error::Document(format!("ShardPlacement {ns}/{name} status.placement: {e}"))
            })?;

        let members = stores
            .pods_with(&ns, &names::selector_labels(&name))
            .iter()
            .filter(|p| p.meta().deletion_timestamp.is_none())
            .map(|p| {
                let f = pod_facts(p);
                let ip = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .filter(|ip| !ip.is_empty());
                (f.name.clone(), Member { ip, ready: f.ready })
            })
            .collect();

        let mut migrations: Vec<ShardMigration> = stores
            .migrations_of(&ns, &name)
            .into_iter()
            .filter(|m| m.labels().get(names::CLUSTER_LABEL) == Some(&name))
            .collect();
        migrations.sort_by_key(|m| m.name_any());

        let secret_name = names::admin_secret(&name);
        let token = stores
            .secrets
            .get(&ObjectRef::new(&secret_name).within(&ns))
            .and_then(|s| s.data.clone())
            .and_then(|d| d.get(ADMIN_TOKEN_KEY).cloned())
            .and_then(|b| String::from_utf8(b.0).ok())
            .map(|t| t.trim().to_string());

        let m = &cluster.spec.migration;
        let limits = Limits {
            phase: PhasePolicy {
                lag_threshold: valid.lag_threshold_records,
                write_pause_budget_ms: u64::try_from(valid.write_pause_budget.as_millis())
                    .unwrap_or(u64::MAX),
                source_retention_ms: u64::try_from(valid.source_retention.as_millis())
                    .unwrap_or(u64::MAX),
                max_failures: 10,
            },
            plan: Policy {
                max_concurrent_moves: u32::try_from(m.max_concurrent_moves).unwrap_or(1).max(1),
                max_moves_per_member: 1,
                manual_approval: m.approval == ApprovalMode::Manual,
                approved_plan: m.approved_plan.clone(),
            },
            paused: m.paused,
            bandwidth: valid.bandwidth_bytes_per_second,
            history_limit: usize::try_from(m.history_limit).unwrap_or(10),
            write_pause_budget: valid.write_pause_budget,
        };
        Ok(Some(Env {
            client: client.clone(),
            ns,
            name,
            cluster,
            placement_obj: placement_obj.clone(),
            placement,
            desired,
            migrations,
            members,
            token,
            limits,
            generation: None,
        }))
    }

    /// Writes of this cluster's ShardPlacement status, as this leader.
    pub fn writer(&self) -> Writer {
        Writer {
            api: Api::namespaced(self.client.clone(), &self.ns),
            name: self.placement_obj.name_any(),
            generation: self.generation,
        }
    }

    /// UID of the cluster, which every node call and placement carries.
    pub fn cluster_uid(&self) -> String {
        self.cluster.metadata.uid.clone().unwrap_or_default()
    }

    /// Incarnation last acknowledged by each member (from ShardPlacement status).
    pub fn incarnations(&self) -> BTreeMap<String, String> {
        self.placement_obj
            .status
            .as_ref()
            .map(|s| {
                s.acks
                    .iter()
                    .filter_map(|a| Some((a.member.clone(), a.incarnation.clone()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Epoch each member acknowledged.
    pub fn acked(&self, member: &str) -> u64 {
        self.placement_obj
            .status
            .as_ref()
            .and_then(|s| s.acks.iter().find(|a| a.member == member))
            .and_then(|a| a.epoch.parse().ok())
            .unwrap_or(0)
    }

    pub fn ready(&self, member: &str) -> bool {
        self.members
            .get(member)
            .is_some_and(|m| m.ready && m.ip.is_some())
    }
}
