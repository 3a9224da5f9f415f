//! The small Kubernetes toolkit both controllers share: the reconcile context (client, Event
//! publishing, metrics, caches), object keys and namespaced APIs, the reconcile wrapper with
//! metrics and backoff, the base error, server-side apply, and resource quantities.

pub mod apply;
mod context;
pub mod error;
pub mod key;
pub mod quantity;
pub mod reconcile;

pub use context::Context;
pub use error::{Error, KubeContext, Reason};
pub use key::ObjectKey;
