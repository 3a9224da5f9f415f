//! Metrics of the migration driver: moves by phase, bytes copied, lag, cutover pauses.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

/// Labels of a phase count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub cluster: String,
    pub phase: String,
}

/// Labels of a phase's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseTimeLabels {
    pub phase: String,
}

/// Labels of a cutover stage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

/// Labels of a cutover outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Registered once with the operator's registry.
#[derive(Clone)]
pub struct MigrationMetrics {
    /// ShardMigrations by phase (gauge, refreshed per reconcile).
    pub moves: Family<PhaseLabels, Gauge>,
    /// Bytes copied by the moves of a cluster that are in flight.
    pub bytes_copied: Family<ClusterLabels, Gauge>,
    /// Largest catch-up lag (records) among a cluster's moves.
    pub lag: Family<ClusterLabels, Gauge>,
    /// Measured client write pause of each committed cutover (fence to target serving).
    pub cutover_pause: Histogram,
    /// Where each committed cutover's pause went: fence, drain, commit, push.
    pub cutover_stage: Family<StageLabels, Histogram>,
    /// Cutovers by outcome (committed, aborted).
    pub cutovers: Family<OutcomeLabels, Counter>,
    /// Time spent in each phase, observed when a move leaves it.
    pub phase_seconds: Family<PhaseTimeLabels, Histogram>,
    /// Committed cutovers whose write pause exceeded the cluster's writePauseBudget.
    pub cutovers_over_budget: Family<ClusterLabels, Counter>,
    /// Unfinished moves whose target lacks room (TargetHasRoom=False).
    pub moves_waiting_for_room: Family<ClusterLabels, Gauge>,
}

impl Default for MigrationMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MigrationMetrics {
    pub fn new() -> Self {
        let cutovers = Family::<OutcomeLabels, Counter>::default();
        // Both outcomes exist from the start, so that increase() sees the first abort.
        for outcome in ["committed", "aborted"] {
            drop(cutovers.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            }));
        }
        MigrationMetrics {
            moves: Family::default(),
            bytes_copied: Family::default(),
            lag: Family::default(),
            cutover_pause: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            cutover_stage: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            cutovers,
            phase_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 16))
            }),
            cutovers_over_budget: Family::default(),
            moves_waiting_for_room: Family::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register("migrations", "ShardMigrations by phase", self.moves.clone());
        registry.register(
            "migration_bytes_copied",
            "Bytes copied by the moves in flight",
            self.bytes_copied.clone(),
        );
        registry.register(
            "migration_lag_records",
            "Largest catch-up lag among a cluster's moves",
            self.lag.clone(),
        );
        registry.register(
            "cutover_pause_seconds",
            "Client write pause of committed cutovers (fence to target serving)",
            self.cutover_pause.clone(),
        );
        registry.register(
            "cutover_stage_seconds",
            "Parts of committed cutovers' pauses: fence, drain (target applies up to the fence), commit (API server write), push (target installs the placement)",
            self.cutover_stage.clone(),
        );
        registry.register("cutovers", "Cutovers by outcome", self.cutovers.clone());
        registry.register(
            "migration_phase_seconds",
            "Time moves spent in each phase",
            self.phase_seconds.clone(),
        );
        registry.register(
            "cutovers_over_budget",
            "Committed cutovers whose client write pause exceeded spec.migration.writePauseBudget",
            self.cutovers_over_budget.clone(),
        );
        registry.register(
            "migrations_waiting_for_room",
            "Unfinished moves whose target has too little free space (TargetHasRoom=False)",
            self.moves_waiting_for_room.clone(),
        );
    }
}
