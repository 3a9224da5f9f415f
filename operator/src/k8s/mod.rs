//! The small Kubernetes toolkit both controllers share: the reconcile context and its
//! errors, and server-side apply.

pub mod apply;
mod context;

pub use context::*;
