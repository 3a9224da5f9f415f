//! The steps of a range move as the operator drives it (plan, pull, fence, catch-up, compare),
//! shared by the tests that move ranges between two nodes.

use std::time::{Duration, Instant};

use ringshift_node_api::{
    Caller, ChecksumRequest, FenceRequest, HashRange, Offset, Placement, PullPhase, PullStatus,
    StartPull,
};

use super::{NodeProc, evolve};

/// `p1` (owned by "a" alone) with the target ring [a, b] set, and the ranges of its one
/// pending a -> b transfer.
pub fn split_to_b(p1: &Placement) -> (Placement, Vec<HashRange>) {
    let p2 = p1.set_target(evolve(p1, &["a", "b"])).unwrap();
    let transfers = p2.pending_transfers().unwrap();
    assert_eq!(transfers.len(), 1, "{transfers:?}");
    let ranges = transfers[0].ranges.iter().copied().collect();
    (p2, ranges)
}

/// Whether `key` hashes into one of `ranges`.
pub fn in_ranges(ranges: &[HashRange], key: &str) -> bool {
    let h = ringshift_ring::key_hash(key.as_bytes());
    ranges.iter().any(|r| r.start <= h && h <= r.end)
}

/// Starts `target`'s verified, unthrottled pull of `ranges` from `source`.
pub async fn start_pull(
    target: &NodeProc,
    source: &NodeProc,
    caller: &Caller,
    ranges: &[HashRange],
) -> PullStatus {
    target
        .admin()
        .start_pull(&StartPull {
            caller: caller.clone(),
            source: source.endpoint(),
            ranges: ranges.to_vec(),
            bytes_per_sec: None,
            verify: true,
        })
        .await
        .unwrap()
}

/// Fences `ranges` at `source`; the offset the target must apply up to.
pub async fn fence(source: &NodeProc, caller: &Caller, ranges: &[HashRange]) -> Offset {
    source
        .admin()
        .fence(&FenceRequest {
            caller: caller.clone(),
            ranges: ranges.to_vec(),
        })
        .await
        .unwrap()
        .fence_offset
}

/// Whether a pull has applied the source's log up to `f` (same incarnation, sequence reached).
pub fn applied_up_to(s: &PullStatus, f: &Offset) -> bool {
    s.applied_offset
        .as_ref()
        .is_some_and(|o| o.incarnation == f.incarnation && o.sequence >= f.sequence)
}

/// The node's (digest, keys) of `ranges`.
pub async fn checksum(node: &NodeProc, ranges: &[HashRange]) -> (u64, u64) {
    let s = node
        .admin()
        .checksum(&ChecksumRequest {
            ranges: ranges.to_vec(),
            snapshot_of: None,
        })
        .await
        .unwrap();
    (s.digest, s.keys)
}

/// Polls the pull `uid` on `node` every `every` until `done` holds (at most 60 s); fails if
/// the pull fails.
pub async fn wait_pull_every(
    node: &NodeProc,
    uid: &str,
    every: Duration,
    done: impl Fn(&PullStatus) -> bool,
) -> PullStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    let admin = node.admin();
    loop {
        let s = admin.pull(uid).await.unwrap();
        if done(&s) {
            return s;
        }
        assert!(s.phase != PullPhase::Failed, "pull failed: {s:?}");
        assert!(Instant::now() < deadline, "pull stuck: {s:?}");
        tokio::time::sleep(every).await;
    }
}
