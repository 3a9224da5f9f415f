//! `ShardPlacement`: the authoritative placement that nodes are given.
//!
//! Its spec (the desired ring) is written only by the cluster controller; its
//! status (committed placement, cutover records, acknowledgements) only by the
//! migration driver, with resourceVersion preconditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use ringshift_ring::{Placement, RingSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{conditions_schema, opaque_object_schema, u64_string_schema};

/// Desired ring of a cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ringshift.dev",
    version = "v1alpha1",
    kind = "ShardPlacement",
    plural = "shardplacements",
    singular = "shardplacement",
    shortname = "shp",
    category = "ringshift",
    namespaced,
    status = "ShardPlacementStatus",
    derive = "PartialEq",
    doc = "The placement of a ShardCluster's hash ranges: desired ring (spec) and committed placement (status). Written only by the operator.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Epoch", type_ = "string", json_path = ".status.epoch"),
    printcolumn(
        name = "Transition",
        type_ = "boolean",
        json_path = ".status.inTransition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShardPlacementSpec {
    /// Name of the ShardCluster.
    pub cluster: String,
    /// UID of the ShardCluster; nodes refuse placements of another cluster.
    pub cluster_uid: String,
    /// Desired ring: `ringshift-ring`'s RingSpec (algorithm, vnodes, membership operations).
    #[schemars(schema_with = "opaque_object_schema")]
    pub ring: serde_json::Value,
}

/// Committed state, written only by the migration driver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardPlacementStatus {
    /// Committed epoch (decimal u64), a copy of `placement.epoch` for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "u64_string_schema")]
    pub epoch: Option<String>,
    /// Whether a target ring is in flight.
    #[serde(default)]
    pub in_transition: bool,
    /// Committed placement: `ringshift-ring`'s Placement (cluster UID, epoch,
    /// base ring, overlay, target ring, committed transfers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object_schema")]
    pub placement: Option<serde_json::Value>,
    /// Cutover decisions, one per migration (the commit point of a move).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["migrationUid"]))]
    pub cutovers: Vec<CutoverRecord>,
    /// Generation of the leader that wrote last (the leader Lease's `leaseTransitions` when it
    /// took the lease). A new leader stores its own before it acts; a status edit by a replica
    /// with a lower generation is refused (rule 13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub leader_generation: Option<i64>,
    /// Placement epochs acknowledged by each member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["member"]))]
    pub acks: Vec<NodeAck>,
    /// Conditions of the placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The decision about one migration's cutover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CutoverRecord {
    /// UID of the ShardMigration.
    pub migration_uid: String,
    /// Attempt of the migration this record is about.
    #[schemars(range(min = 0))]
    pub attempt: i64,
    /// Committing, Committed or Aborted.
    pub state: CutoverState,
}

/// State of a cutover record: the planner's own type.
pub use ringshift_planner::CutoverState;

/// The placement a member has installed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAck {
    /// Member name.
    pub member: String,
    /// Highest epoch the member acknowledged (decimal u64).
    #[schemars(schema_with = "u64_string_schema")]
    pub epoch: String,
    /// Incarnation id of the member's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
}

/// A ShardPlacement field that does not hold the document it should (the ring crate's types
/// are stored as opaque JSON, so only reading them checks them).
#[derive(Debug, thiserror::Error)]
#[error("{field} does not parse: {source}")]
pub struct DocumentError {
    /// Which field (`spec.ring`, `status.placement`).
    pub field: &'static str,
    /// The serde error.
    #[source]
    pub source: serde_json::Error,
}

impl ShardPlacementSpec {
    /// The spec of `cluster` (UID `cluster_uid`) with `ring` as its desired ring.
    pub fn new(cluster: &str, cluster_uid: &str, ring: &RingSpec) -> Result<Self, DocumentError> {
        Ok(ShardPlacementSpec {
            cluster: cluster.to_string(),
            cluster_uid: cluster_uid.to_string(),
            ring: serde_json::to_value(ring).map_err(|source| DocumentError {
                field: "spec.ring",
                source,
            })?,
        })
    }

    /// The desired ring (`spec.ring`).
    pub fn desired_ring(&self) -> Result<RingSpec, DocumentError> {
        serde_json::from_value(self.ring.clone()).map_err(|source| DocumentError {
            field: "spec.ring",
            source,
        })
    }
}

impl ShardPlacementStatus {
    /// The committed placement (`status.placement`), if one was committed.
    pub fn committed(&self) -> Result<Option<Placement>, DocumentError> {
        self.placement
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|source| DocumentError {
                field: "status.placement",
                source,
            })
    }

    /// Commits `p`: the placement document and the fields derived from it (epoch, transition).
    pub fn set_committed(&mut self, p: &Placement) -> Result<(), DocumentError> {
        self.placement = Some(serde_json::to_value(p).map_err(|source| DocumentError {
            field: "status.placement",
            source,
        })?);
        self.epoch = Some(p.epoch().to_string());
        self.in_transition = !p.is_balanced();
        Ok(())
    }
}

impl ShardPlacement {
    /// The committed placement, if the status holds one.
    pub fn committed(&self) -> Result<Option<Placement>, DocumentError> {
        match &self.status {
            Some(s) => s.committed(),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_ring::Member;

    fn ring() -> RingSpec {
        RingSpec::with_members(16, &[Member::new("a", 1), Member::new("b", 2)])
            .expect("a valid ring")
    }

    #[test]
    fn the_desired_ring_reads_back_as_written() {
        let spec = ShardPlacementSpec::new("demo", "uid-1", &ring()).expect("serializes");
        assert_eq!(spec.desired_ring().expect("parses"), ring());
    }

    #[test]
    fn a_committed_placement_reads_back_with_its_epoch() {
        let p = Placement::new("uid-1", ring()).expect("a placement");
        let mut status = ShardPlacementStatus::default();
        assert!(status.committed().expect("empty is fine").is_none());
        status.set_committed(&p).expect("serializes");
        assert_eq!(status.committed().expect("parses"), Some(p.clone()));
        assert_eq!(status.epoch, Some(p.epoch().to_string()));
        assert_eq!(status.in_transition, !p.is_balanced());
    }

    #[test]
    fn a_document_that_is_not_the_ring_s_type_names_its_field() {
        let spec = ShardPlacementSpec {
            cluster: "demo".into(),
            cluster_uid: "uid-1".into(),
            ring: serde_json::json!({"vnodes": "many"}),
        };
        let e = spec.desired_ring().expect_err("not a RingSpec");
        assert_eq!(e.field, "spec.ring");
        assert!(
            e.to_string().starts_with("spec.ring does not parse: "),
            "{e}"
        );
        let status = ShardPlacementStatus {
            placement: Some(serde_json::json!([1, 2])),
            ..Default::default()
        };
        assert_eq!(
            status.committed().expect_err("not a Placement").field,
            "status.placement"
        );
    }
}
