//! How the writer keys its metadata and expiry-index records.

use crate::engine::open::{META_ATTEMPT_PREFIX, META_FENCE_PREFIX, META_RELEASED_PREFIX};

pub fn fence_key(migration_uid: &str) -> Vec<u8> {
    [META_FENCE_PREFIX, migration_uid.as_bytes()].concat()
}

pub fn attempt_key(migration_uid: &str) -> Vec<u8> {
    [META_ATTEMPT_PREFIX, migration_uid.as_bytes()].concat()
}

pub fn released_key(migration_uid: &str) -> Vec<u8> {
    [META_RELEASED_PREFIX, migration_uid.as_bytes()].concat()
}

/// An expiry-index entry: the expiry (ms, big-endian, so the index is ordered by time), then
/// the storage key.
pub fn expiry_index_key(at: u64, skey: &[u8]) -> Vec<u8> {
    let mut ik = at.to_be_bytes().to_vec();
    ik.extend_from_slice(skey);
    ik
}
