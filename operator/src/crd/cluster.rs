//! `ShardCluster`: the workload and its policy, written by users.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    conditions_schema, duration_schema, quantity_map_schema, quantity_schema, u64_string_schema,
};
use super::pod::{NodeTuning, PodSettings, ServiceSettings};

/// Desired state of a ringshift cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ringshift.dev",
    version = "v1alpha1",
    kind = "ShardCluster",
    plural = "shardclusters",
    singular = "shardcluster",
    shortname = "shc",
    shortname = "shardcl",
    category = "ringshift",
    namespaced,
    status = "ShardClusterStatus",
    derive = "PartialEq",
    doc = "A sharded Redis-protocol key-value store whose hash ranges ringshift moves safely between members.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Epoch", type_ = "string", json_path = ".status.epoch"),
    printcolumn(name = "Moves", type_ = "integer", json_path = ".status.movesInFlight"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Balanced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Balanced\")].status"
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.rebalance.summary"
    ),
    printcolumn(
        name = "ETA",
        type_ = "string",
        json_path = ".status.rebalance.eta",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShardClusterSpec {
    /// Number of members (pods). Scaling in moves data off the leaving members first.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Virtual nodes per unit of weight on the hash ring. Fixed once the cluster exists.
    #[serde(default = "default_vnodes")]
    #[schemars(range(min = 1, max = 1024))]
    pub vnodes: i32,
    /// Copies of each range. Only 1 is supported in v1alpha1.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 7))]
    pub replication_factor: i32,
    /// Container image of the shard node.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of the shard node container.
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,
    /// Persistent volume of each member. Immutable once the StatefulSet exists.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Compute resources of the shard node container. Unset: requests cpu 100m and memory =
    /// what the node's tuning needs (read cache + 4 memtables + 384Mi), no limits. Set: used as
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<NodeResources>,
    /// How ranges are moved between members.
    #[serde(default)]
    pub migration: MigrationPolicy,
    /// Per-member weights and drains, by member name (pod name, e.g. `demo-2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(length(max = 1000))]
    pub members: Vec<MemberSpec>,
    /// What happens to the members' volumes when the ShardCluster is deleted.
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    /// Optional password for the data port (Redis AUTH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Scheduling and metadata of the member pods: labels, annotations, nodeSelector,
    /// affinity, tolerations, topologySpreadConstraints, priorityClassName, imagePullSecrets.
    /// A change rolls the members one at a time, like any pod template change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSettings>,
    /// The client Service: type and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSettings>,
    /// Storage settings of the nodes (read cache, memtable size, durability). A change rolls
    /// the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<NodeTuning>,
}

fn default_replicas() -> i32 {
    3
}
fn default_vnodes() -> i32 {
    64
}
fn default_replication_factor() -> i32 {
    1
}
/// Default node image: the version of this operator.
pub fn default_image() -> String {
    format!("ringshift-node:{}", env!("CARGO_PKG_VERSION"))
}

/// Image pull policy (same values as a container's).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The string the Kubernetes API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Volume of each member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each member's volume.
    #[serde(default = "default_storage_size")]
    #[schemars(schema_with = "quantity_schema")]
    pub size: Quantity,
    /// Storage class of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

/// Requests and limits of the shard node container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeResources {
    /// Minimum resources (cpu, memory).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub requests: BTreeMap<String, Quantity>,
    /// Maximum resources (cpu, memory).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "quantity_map_schema")]
    pub limits: BTreeMap<String, Quantity>,
}

/// Policy of range moves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationPolicy {
    /// Moves that may run at the same time in this cluster.
    #[serde(default = "default_max_concurrent_moves")]
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrent_moves: i32,
    /// Copy bandwidth per move in bytes per second (decimal); unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub bandwidth_bytes_per_second: Option<String>,
    /// Catch-up proceeds to cutover when the lag is under this many change-log records.
    #[serde(default = "default_lag_threshold")]
    #[schemars(schema_with = "u64_string_schema")]
    pub lag_threshold_records: String,
    /// Longest time clients' commands on a moving range may be held during cutover (at most 60s).
    #[serde(default = "default_write_pause_budget")]
    #[schemars(schema_with = "duration_schema")]
    pub write_pause_budget: String,
    /// How long a source keeps its copy of a moved range after the commit.
    #[serde(default = "default_source_retention")]
    #[schemars(schema_with = "duration_schema")]
    pub source_retention: String,
    /// How long a node keeps change-log records nobody is reading.
    #[serde(default = "default_change_log_retention")]
    #[schemars(schema_with = "duration_schema")]
    pub change_log_retention: String,
    /// Automatic: moves start when planned. Manual: the plan waits for `approvedPlan`.
    #[serde(default)]
    pub approval: ApprovalMode,
    /// Hash of the published plan that a person approved (Manual approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_plan: Option<String>,
    /// Stops starting new migration phases; moves in flight finish their current step.
    #[serde(default)]
    pub paused: bool,
    /// Finished ShardMigrations kept per cluster.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 1000))]
    pub history_limit: i32,
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        Self {
            max_concurrent_moves: default_max_concurrent_moves(),
            bandwidth_bytes_per_second: None,
            lag_threshold_records: default_lag_threshold(),
            write_pause_budget: default_write_pause_budget(),
            source_retention: default_source_retention(),
            change_log_retention: default_change_log_retention(),
            approval: ApprovalMode::default(),
            approved_plan: None,
            paused: false,
            history_limit: default_history_limit(),
        }
    }
}

fn default_max_concurrent_moves() -> i32 {
    2
}
fn default_lag_threshold() -> String {
    "1000".into()
}
fn default_write_pause_budget() -> String {
    "250ms".into()
}
fn default_source_retention() -> String {
    "10m".into()
}
fn default_change_log_retention() -> String {
    "1h".into()
}
fn default_history_limit() -> i32 {
    10
}

/// Whether planned moves start by themselves.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ApprovalMode {
    /// Moves start as soon as they are planned.
    #[default]
    Automatic,
    /// Moves wait until `spec.migration.approvedPlan` equals the published plan hash.
    Manual,
}

/// User intent for one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// Member name: the pod name, `<cluster>-<ordinal>`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Relative share of the ring (default 100).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 100000))]
    pub weight: i32,
    /// Move every range off this member while keeping its pod.
    #[serde(default)]
    pub drain: bool,
}

/// Weight of a member that the spec does not mention.
pub const DEFAULT_WEIGHT: i32 = 100;

fn default_weight() -> i32 {
    DEFAULT_WEIGHT
}

/// What happens to volumes when the cluster is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletePolicy {
    /// Keep the PersistentVolumeClaims (and the data).
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaims: destroys the data.
    Delete,
}

/// Data-port authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret (same namespace) that holds the password clients send with AUTH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret (default `password`).
    #[serde(default = "default_password_key")]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// Observed state, written only by the cluster controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardClusterStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the StatefulSet (scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods, in string form (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Committed placement epoch (decimal u64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub epoch: Option<String>,
    /// ShardMigrations that have not finished.
    #[serde(default)]
    pub moves_in_flight: i32,
    /// One-word summary for `kubectl get`: Ready, Progressing, AwaitingApproval, Paused,
    /// Degraded, Invalid or Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Ready, Progressing, Balanced, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The plan waiting for approval (Manual approval only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<PublishedPlan>,
    /// Progress of the latest ring change across all of its moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceStatus>,
}

/// Cluster-wide progress of one ring change (the ShardMigrations planned towards one target
/// ring), summed from the moves' own progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    /// Identity of the target ring the moves belong to.
    pub target_ring: String,
    /// Moves committed (Cleanup or Completed).
    #[serde(default)]
    pub moves_done: i32,
    /// Moves of this ring change, cancelled ones excluded.
    #[serde(default)]
    pub moves_total: i32,
    /// Moves that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moves_failed: i32,
    /// Bytes copied so far (decimal u64).
    #[serde(default = "zero_string")]
    #[schemars(schema_with = "u64_string_schema")]
    pub bytes_moved: String,
    /// Bytes the moves are estimated to carry, over the moves whose estimate is known
    /// (decimal u64).
    #[serde(default = "zero_string")]
    #[schemars(schema_with = "u64_string_schema")]
    pub bytes_estimated: String,
    /// Percent done (0-100), weighted by each move's estimated bytes; 100 only once every
    /// move is committed.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
    /// Estimated time left, e.g. `3m20s`, when a rate has been seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub eta: Option<String>,
    /// `percent% (done/total)` for the printer column.
    pub summary: String,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

fn zero_string() -> String {
    "0".into()
}

/// A plan of moves published for a person to approve.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedPlan {
    /// Hash over the moves (not the estimates); set `spec.migration.approvedPlan` to it.
    pub hash: String,
    /// The moves of the plan.
    #[serde(default)]
    pub moves: Vec<PlannedMove>,
}

/// One source -> target transfer of a published plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMove {
    /// Member the ranges leave.
    pub source: String,
    /// Member the ranges go to.
    pub target: String,
    /// Number of hash ranges.
    #[serde(default)]
    pub ranges: i32,
    /// Estimated bytes to copy (decimal u64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub estimated_bytes: Option<String>,
}
