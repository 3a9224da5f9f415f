//! The ShardCluster controller: observes a cluster's pods, validates its spec, builds the
//! objects it owns (`desired/`), applies them and writes its status.

pub mod conditions;
pub mod desired;
mod finalizer;
pub mod observed;
pub mod rebalance;
pub mod reconcile;
pub mod status;
mod undecodable;
pub mod validate;

pub use reconcile::run;
