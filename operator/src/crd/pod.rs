//! `spec.pod`, `spec.service` and `spec.tuning` of a ShardCluster: how the member pods are
//! scheduled and labelled, how the client Service is exposed, and the node's storage settings.
//!
//! `spec.pod` is a curated part of a pod template, not a whole `PodTemplateSpec`: the operator
//! owns the containers, volumes and security context (they carry the protocol and the
//! PodSecurity `restricted` settings), so only what a cluster administrator places and labels
//! pods with is open. The scheduling fields are Kubernetes' own types, so the CRD schema is the
//! real one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::common::quantity_schema;

/// Most labels `spec.pod.labels` may hold: bounds the cost of its CEL rule.
pub const MAX_POD_LABELS: u32 = 64;

/// Labels: keys to values of at most 63 characters.
pub fn label_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
        },
        "maxProperties": MAX_POD_LABELS,
    })
}

fn string_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string"},
    })
}

/// Placement and metadata of the member pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Labels added to every member pod. The operator's own labels
    /// (`app.kubernetes.io/name`, `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`,
    /// any `ringshift.dev/` key) and the StatefulSet controller's (`controller-revision-hash`,
    /// `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`) are refused: they
    /// select the members.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "label_map_schema")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every member pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "string_map_schema")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels a member's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "string_map_schema")]
    pub node_selector: BTreeMap<String, String>,
    /// Node affinity, pod affinity and pod anti-affinity of the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the members tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How members spread over topology domains. Unset: at most one member more on any node
    /// than on another, preferred (`maxSkew: 1`, `topologyKey: kubernetes.io/hostname`,
    /// `whenUnsatisfiable: ScheduleAnyway`, selecting this cluster's members). `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// PriorityClass of the members (it must exist, or the StatefulSet cannot create pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Secrets (same namespace) used to pull the node image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// The client Service (`<cluster>`, data port 6379).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations of the client Service (e.g. a cloud load balancer's settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "string_map_schema")]
    pub annotations: BTreeMap<String, String>,
}

/// How the client Service is exposed: ClusterIP (default), NodePort or LoadBalancer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// A cluster-internal virtual IP.
    #[default]
    ClusterIP,
    /// The cluster IP plus a port on every node.
    NodePort,
    /// A NodePort Service plus an external load balancer (where the cluster provides one).
    LoadBalancer,
}

impl ServiceType {
    /// The string the Kubernetes API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Storage settings of every node (`ringshift-node` flags). Unset fields keep the node's
/// defaults; the operator passes all three, so the memory it reserves matches what runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeTuning {
    /// Read cache of each node in bytes, as a quantity (default `256Mi`; `0` turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    pub cache_bytes: Option<Quantity>,
    /// Memtable size of the data and collection keyspaces, as a quantity (default `16Mi`, at
    /// least `1Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    pub memtable_bytes: Option<Quantity>,
    /// Whether nodes fsync before acknowledging a write (`--durability`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<Durability>,
}

/// Durable (default): a write is acknowledged after fsync and survives a crash. None: no
/// fsync; a crash may lose acknowledged writes (the node then starts a new incarnation).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Durability {
    /// Group commit with fsync before the acknowledgement.
    #[default]
    Durable,
    /// No fsync: faster, but a crash may lose acknowledged writes.
    None,
}

impl Durability {
    /// The node's `--durability` value.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Durable => "durable",
            Self::None => "none",
        }
    }
}
