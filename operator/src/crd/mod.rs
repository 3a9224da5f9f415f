//! Custom resource types of `ringshift.dev/v1alpha1` and their CRD generation.
//!
//! The Rust types are the source of truth: `crds/*.yaml` is generated from them
//! (`ringshift-operator crd`), and a test fails when the two drift apart.

// kube's `printcolumn(...)` repeats `type_ = "string"` and the like, which
// clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
mod cluster;
mod common;
mod generate;
#[allow(clippy::duplicated_attributes)]
mod migration;
#[allow(clippy::duplicated_attributes)]
mod placement;
mod pod;
mod rules;

pub use cluster::*;
pub use common::*;
pub use generate::{CrdError, all_crds, crd_file_name, crd_yaml, crds_yaml};
pub use migration::*;
pub use placement::*;
pub use pod::*;
pub use rules::add_shard_cluster_rules;

/// API group of every ringshift resource.
pub const GROUP: &str = "ringshift.dev";
/// The only served (and stored) version.
pub const VERSION: &str = "v1alpha1";
