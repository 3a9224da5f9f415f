//! The ringshift operator: CRD types, the cluster controller and its runtime.

pub mod apply;
pub mod cache;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod driver;
pub mod duration;
pub mod http;
pub mod leader;
pub mod log_format;
pub mod metrics;
pub mod observed;
pub mod plugin;
pub mod rebalance;
pub mod runtime;
pub mod status;
pub mod validate;
