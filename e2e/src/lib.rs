//! ringshift end-to-end harness: the load generator and checker, the process kubelet and the
//! test support for end-to-end tests against a local Kubernetes control plane.

pub mod load;
