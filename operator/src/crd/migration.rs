//! `ShardMigration`: one source -> target transfer of a ring change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{HashRange, conditions_schema, duration_schema, u64_string_schema};

/// One transfer of hash ranges from a source member to a target member.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ringshift.dev",
    version = "v1alpha1",
    kind = "ShardMigration",
    plural = "shardmigrations",
    singular = "shardmigration",
    shortname = "shm",
    category = "ringshift",
    namespaced,
    status = "ShardMigrationStatus",
    derive = "PartialEq",
    doc = "One source-to-target transfer of hash ranges: copy, catch-up, cutover, cleanup.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.cluster",
        priority = 1
    ),
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Progress",
        type_ = "integer",
        json_path = ".status.progress.percent"
    ),
    printcolumn(name = "Lag", type_ = "string", json_path = ".status.lag"),
    printcolumn(
        name = "ETA",
        type_ = "string",
        json_path = ".status.eta",
        priority = 1
    ),
    printcolumn(name = "Pause", type_ = "string", json_path = ".status.cutoverPause"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShardMigrationSpec {
    /// Name of the ShardCluster.
    pub cluster: String,
    /// Member the ranges leave.
    pub source: String,
    /// Member the ranges go to.
    pub target: String,
    /// Hash ranges moved, inclusive bounds.
    #[serde(default)]
    pub ranges: Vec<HashRange>,
    /// Epoch of the placement in transition this move was planned from (decimal u64).
    #[schemars(schema_with = "u64_string_schema")]
    pub epoch: String,
    /// Identity of the target ring (hash of its RingSpec) this move belongs to.
    pub target_ring: String,
}

/// Progress of a migration, written only by the migration driver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardMigrationStatus {
    /// Current phase.
    #[serde(default)]
    pub phase: MigrationPhase,
    /// Attempt number; node calls carry it and nodes refuse older ones.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub attempt: i64,
    /// Attempt at which the current copy started: the target resumes a pull of this attempt
    /// and starts over (clearing the ranges) for a newer one.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub copy_attempt: i64,
    /// Consecutive failed attempts (for backoff); reset on progress.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failures: i32,
    /// Placement epoch at which the move was seen committed (decimal u64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub committed_epoch: Option<String>,
    /// When the commit was seen; the source keeps its copy for sourceRetention after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Time>,
    /// Generation of the spec last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Copy progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<MigrationProgress>,
    /// Change-log records the target is behind the source (decimal u64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub lag: Option<String>,
    /// Estimated time to the end of the copy, e.g. `42s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub eta: Option<String>,
    /// Measured write pause of the cutover (fence to target serving), e.g. `12ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub cutover_pause: Option<String>,
    /// Source change-log offset of the snapshot the copy read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_offset: Option<String>,
    /// Source change-log offset at which the ranges were fenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_offset: Option<String>,
    /// When the current phase started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started: Option<Time>,
    /// Why the migration is Failed or Cancelled, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions of the migration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Phase of a migration: the planner's own type (its schema comes with the planner's
/// `schema` feature).
pub use ringshift_planner::Phase as MigrationPhase;

/// Copy progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationProgress {
    /// Keys copied (decimal u64).
    #[serde(default = "zero")]
    #[schemars(schema_with = "u64_string_schema")]
    pub keys: String,
    /// Bytes copied (decimal u64).
    #[serde(default = "zero")]
    #[schemars(schema_with = "u64_string_schema")]
    pub bytes: String,
    /// Percent of the estimated bytes copied (0-100).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
    /// Bytes the copy is estimated to carry (the source's stored bytes times the share of its
    /// ranges that move; decimal u64), measured before Copying for the room check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub estimated_bytes: Option<String>,
}

fn zero() -> String {
    "0".into()
}
