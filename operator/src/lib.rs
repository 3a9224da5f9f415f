//! The ringshift operator: CRD types, the cluster controller and its runtime.

pub mod conditions;
pub mod crd;
pub mod desired;
pub mod duration;
pub mod observed;
pub mod status;
pub mod validate;
