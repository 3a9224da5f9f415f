//! The ringshift operator: CRD types, the cluster controller and its runtime.

pub mod cache;
pub mod cluster;
pub mod crd;
pub mod duration;
pub mod http;
pub mod k8s;
pub mod leader;
pub mod log_format;
pub mod metrics;
pub mod migration;
pub mod plugin;
pub mod runtime;
