//! Prometheus metrics of the operator.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Controller name.
    pub controller: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of a reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Controller name.
    pub controller: String,
    /// Error kind (see `k8s::Error::reason`).
    pub reason: String,
}

/// Labels naming a controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name.
    pub controller: String,
}

/// Labels of one step of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// Controller name.
    pub controller: String,
    /// The step (see [`Metrics::observe_step`]).
    pub step: String,
}

/// Bucket bounds of reconcile times: 1 ms to 60 s, with a bound at the 100 ms goal of issue 17
/// (a p99 is read off as the bucket bound it falls under).
const RECONCILE_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Labels of a cluster's condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub cluster: String,
    pub condition: String,
}

/// Labels of a member's share of the ring.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub namespace: String,
    pub cluster: String,
    pub member: String,
}

/// What the cluster controller publishes per ShardCluster.
#[derive(Default)]
pub struct ClusterMetrics {
    /// 1 when the ShardCluster's condition is True, else 0.
    pub condition: Family<ConditionLabels, Gauge>,
    /// Share of the hash space each member owns in the committed placement (0-1).
    pub ring_share: Family<MemberLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `status.rebalance.percent` of the latest ring change.
    pub rebalance_percent: Family<crate::migration::metrics::ClusterLabels, Gauge>,
    /// Members last published per (namespace, cluster), to drop the series of those gone.
    members: std::sync::Mutex<std::collections::BTreeMap<(String, String), Vec<String>>>,
}

impl ClusterMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_condition",
            "1 while the ShardCluster's condition (Ready, Progressing, Balanced, Degraded) is True",
            self.condition.clone(),
        );
        registry.register(
            "ring_share",
            "Share of the hash space each member owns in the committed placement (0-1)",
            self.ring_share.clone(),
        );
        registry.register(
            "rebalance_percent",
            "Percent done of the latest ring change (status.rebalance.percent)",
            self.rebalance_percent.clone(),
        );
    }

    /// Publishes one cluster's conditions, ring shares (member, share 0-1) and progress.
    pub fn publish(
        &self,
        namespace: &str,
        cluster: &str,
        conditions: &[(&str, bool)],
        shares: &[(String, f64)],
        percent: Option<i32>,
    ) {
        for (condition, on) in conditions {
            self.condition
                .get_or_create(&ConditionLabels {
                    namespace: namespace.into(),
                    cluster: cluster.into(),
                    condition: (*condition).into(),
                })
                .set(i64::from(*on));
        }
        let member = |m: &str| MemberLabels {
            namespace: namespace.into(),
            cluster: cluster.into(),
            member: m.into(),
        };
        let now: Vec<String> = shares.iter().map(|(m, _)| m.clone()).collect();
        let mut last = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for gone in last
            .get(&(namespace.to_string(), cluster.to_string()))
            .into_iter()
            .flatten()
            .filter(|m| !now.contains(m))
        {
            self.ring_share.remove(&member(gone));
        }
        for (m, share) in shares {
            self.ring_share.get_or_create(&member(m)).set(*share);
        }
        last.insert((namespace.into(), cluster.into()), now);
        self.rebalance_percent
            .get_or_create(&crate::migration::metrics::ClusterLabels {
                namespace: namespace.into(),
                cluster: cluster.into(),
            })
            .set(i64::from(percent.unwrap_or(100)));
    }
}

/// Every metric of the operator, registered once.
pub struct Metrics {
    /// Reconciles by result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile errors by reason.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Time of the steps of a reconcile in seconds.
    pub reconcile_steps: Family<StepLabels, Histogram>,
    /// Reconcile duration in seconds.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Metrics of the migration driver.
    pub migration: crate::migration::metrics::MigrationMetrics,
    /// Per-cluster conditions, ring shares and progress.
    pub cluster: ClusterMetrics,
    /// The registry to encode.
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ringshift_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(RECONCILE_BUCKETS)
            });
        let reconcile_steps = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(RECONCILE_BUCKETS)
        });
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_step_seconds",
            "Time spent in one step of a reconcile: decide (from the caches, no request), \
             apply, status and create (API writes), sync and drive (node calls and the status \
             writes they lead to), cutover (fence to commit and push)",
            reconcile_steps.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        let migration = crate::migration::metrics::MigrationMetrics::new();
        migration.register(&mut registry);
        let cluster = ClusterMetrics::default();
        cluster.register(&mut registry);
        Self {
            cluster,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            reconcile_steps,
            leader,
            migration,
            registry,
        }
    }

    /// Puts one series in each labelled family that starts empty (an exposition leaves empty
    /// families out), so that a test can list every metric and its labels from `encode`.
    pub fn touch_every_family(&self) {
        self.observe("example", 0.0, Some("example"));
        self.observe_step("example", "decide", std::time::Duration::ZERO);
        let m = &self.migration;
        let cluster = crate::migration::metrics::ClusterLabels {
            namespace: "example".into(),
            cluster: "example".into(),
        };
        drop(
            m.moves
                .get_or_create(&crate::migration::metrics::PhaseLabels {
                    namespace: "example".into(),
                    cluster: "example".into(),
                    phase: "Pending".into(),
                }),
        );
        drop(m.bytes_copied.get_or_create(&cluster));
        drop(m.lag.get_or_create(&cluster));
        drop(m.cutovers_over_budget.get_or_create(&cluster));
        drop(m.moves_waiting_for_room.get_or_create(&cluster));
        drop(
            m.cutover_stage
                .get_or_create(&crate::migration::metrics::StageLabels {
                    stage: "fence".into(),
                }),
        );
        drop(
            m.phase_seconds
                .get_or_create(&crate::migration::metrics::PhaseTimeLabels {
                    phase: "Copying".into(),
                }),
        );
        self.cluster.publish(
            "example",
            "example",
            &[("Degraded", false)],
            &[("example-0".into(), 1.0)],
            None,
        );
    }

    /// Drops the per-cluster gauges when this replica stops leading: the new leader publishes
    /// them, and a stale copy here (a Degraded=1, moves in a phase) would keep alerts firing.
    /// Counters and histograms stay: they only ever add up.
    pub fn forget_clusters(&self) {
        self.cluster.condition.clear();
        self.cluster.ring_share.clear();
        self.cluster.rebalance_percent.clear();
        self.cluster
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let m = &self.migration;
        m.moves.clear();
        m.bytes_copied.clear();
        m.lag.clear();
        m.moves_waiting_for_room.clear();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Records one step of a reconcile of `controller`.
    pub fn observe_step(&self, controller: &str, step: &str, took: std::time::Duration) {
        self.reconcile_steps
            .get_or_create(&StepLabels {
                controller: controller.into(),
                step: step.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one reconcile.
    pub fn observe(&self, controller: &str, seconds: f64, error: Option<&str>) {
        // Both results exist from the first reconcile on, so rate() sees the first error.
        for result in ["ok", "error"] {
            let counter = self.reconciles.get_or_create(&ReconcileLabels {
                controller: controller.into(),
                result: result.into(),
            });
            if (result == "error") == error.is_some() {
                counter.inc();
            }
        }
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .observe(seconds);
        if let Some(reason) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_and_errors_show_in_the_exposition() {
        let m = Metrics::new();
        m.observe("shardcluster", 0.01, None);
        m.observe("shardcluster", 0.02, Some("Kube"));
        m.leader.set(1);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"ringshift_operator_reconciles_total{controller="shardcluster",result="error"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"ringshift_operator_reconcile_errors_total{controller="shardcluster",reason="Kube"} 1"#
        ));
        assert!(text.contains("ringshift_operator_leader 1"));
        assert!(text.contains("ringshift_operator_reconcile_duration_seconds_count"));
    }

    #[test]
    fn a_member_that_left_loses_its_ring_share_series() {
        let m = Metrics::new();
        let shares = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
            v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        };
        m.cluster.publish(
            "ns",
            "c",
            &[("Degraded", true), ("Balanced", false)],
            &shares(&[("c-0", 0.5), ("c-1", 0.5)]),
            Some(40),
        );
        m.cluster.publish(
            "ns",
            "c",
            &[("Degraded", false)],
            &shares(&[("c-0", 1.0)]),
            None,
        );
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"ringshift_operator_ring_share{namespace="ns",cluster="c",member="c-0"} 1.0"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"member="c-1""#), "{text}");
        assert!(text.contains(r#"ringshift_operator_cluster_condition{namespace="ns",cluster="c",condition="Degraded"} 0"#), "{text}");
        assert!(
            text.contains(
                r#"ringshift_operator_rebalance_percent{namespace="ns",cluster="c"} 100"#
            ),
            "{text}"
        );
        // A replica that stops leading leaves the gauges to the new leader.
        m.forget_clusters();
        let text = m.encode().unwrap();
        assert!(
            !text.contains("ringshift_operator_cluster_condition{"),
            "{text}"
        );
        assert!(!text.contains("ringshift_operator_ring_share{"), "{text}");
    }
}
