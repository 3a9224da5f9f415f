//! When the shard StatefulSet may change size (rule 9): it grows to hold every member of the
//! change in flight, and shrinks only once the leaving members own nothing in the committed
//! placement and every node acknowledged that epoch.

use ringshift_ring::Placement;

/// Ordinal of a StatefulSet pod name `<sts>-<n>`.
pub fn ordinal(sts: &str, member: &str) -> Option<u32> {
    member.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

/// Replicas the StatefulSet should have: the desired count, raised to keep every member that
/// owns something now or in the target; a shrink waits until every node acknowledged the
/// placement's epoch (`min_acked_epoch` is the lowest epoch any current node acknowledged).
pub fn safe_replicas(
    sts: &str,
    desired: u32,
    current: u32,
    placement: &Placement,
    min_acked_epoch: Option<u64>,
) -> Result<u32, ringshift_ring::Error> {
    let needed = placement
        .members()?
        .iter()
        .filter_map(|m| ordinal(sts, m))
        .map(|n| n.saturating_add(1))
        .max()
        .unwrap_or(0);
    let floor = desired.max(needed);
    if floor < current && min_acked_epoch.is_none_or(|e| e < placement.epoch()) {
        return Ok(current);
    }
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_ring::{Member, RingSpec};

    fn ring(n: u32) -> RingSpec {
        let members: Vec<Member> = (0..n)
            .map(|i| Member::new(format!("demo-{i}"), 1))
            .collect();
        RingSpec::with_members(16, &members).unwrap()
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("demo", "demo-3"), Some(3));
        assert_eq!(ordinal("demo", "demox-3"), None);
        assert_eq!(ordinal("demo", "demo-"), None);
        assert_eq!(ordinal("demo", "other-1"), None);
    }

    #[test]
    fn grows_for_the_target_at_once() {
        let p = Placement::new("uid", ring(3))
            .unwrap()
            .set_target(ring(5))
            .unwrap();
        assert_eq!(safe_replicas("demo", 5, 3, &p, Some(1)).unwrap(), 5);
    }

    #[test]
    fn shrinks_only_after_data_moved_and_acked() {
        let start = Placement::new("uid", ring(5)).unwrap();
        let p = start.set_target(ring(2)).unwrap();
        // change in flight: members 2..4 still own data
        assert_eq!(safe_replicas("demo", 2, 5, &p, Some(p.epoch())).unwrap(), 5);
        let mut done = p.clone();
        for t in p.pending_transfers().unwrap() {
            done = done.commit(&t.source, &t.target).unwrap();
        }
        assert!(done.is_balanced());
        // committed, but a node has not acknowledged the final epoch yet
        assert_eq!(
            safe_replicas("demo", 2, 5, &done, Some(done.epoch() - 1)).unwrap(),
            5
        );
        assert_eq!(safe_replicas("demo", 2, 5, &done, None).unwrap(), 5);
        assert_eq!(
            safe_replicas("demo", 2, 5, &done, Some(done.epoch())).unwrap(),
            2
        );
    }
}
