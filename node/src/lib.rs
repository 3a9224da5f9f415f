//! The ringshift shard node.
