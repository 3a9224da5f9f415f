//! ringshift end-to-end harness: the load generator and checker, the process kubelet that runs
//! pods as local processes against a real local control plane, and the support code for
//! end-to-end tests.

pub mod demo;
pub mod exposition;
pub mod kubelet;
pub mod load;
pub mod support;
