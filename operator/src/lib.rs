//! The ringshift operator: CRD types, the cluster controller and its runtime.

pub mod crd;
