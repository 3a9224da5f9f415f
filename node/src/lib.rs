//! The ringshift shard node: durable storage (fjall) with a change log, fences, the RESP data
//! port with a coordinator that forwards to owners, and the admin API.

pub mod accepted;
pub mod admin;
pub mod arrival;
pub mod changelog;
pub mod command;
pub mod config;
pub mod disk;
pub mod engine;
pub mod failpoints;
pub mod glob;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod placement;
pub mod pool;
pub mod pubsub;
pub mod pull;
pub mod resp;
pub mod routing;
pub mod server;
pub mod wire;
