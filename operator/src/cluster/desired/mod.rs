//! Pure builders of the objects a ShardCluster owns. No client calls: each
//! function maps the cluster (and what was observed) to the desired object.

pub mod names;
pub mod pdb;
pub mod pod_settings;
pub mod ring;
pub mod secret;
pub mod services;
pub mod statefulset;
pub mod tuning;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::crd::ShardCluster;

/// Owner reference that makes `cluster` the controller of an object, so that
/// deleting the cluster cascades.
pub fn owner_reference(cluster: &ShardCluster) -> Option<OwnerReference> {
    cluster.controller_owner_ref(&())
}
