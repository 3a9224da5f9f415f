use super::*;
use proptest::prelude::*;
use ringshift_ring::Member;

fn members(n: u32) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("demo-{i}"), 1))
        .collect()
}

fn placement(n: u32) -> Placement {
    Placement::new("uid", RingSpec::with_members(16, &members(n)).unwrap()).unwrap()
}

fn views(plan: &Plan, phase: Phase) -> Vec<MoveView> {
    plan.create
        .iter()
        .map(|m| MoveView {
            name: m.name.clone(),
            source: m.source.clone(),
            target: m.target.clone(),
            phase,
            ranges: m.ranges.clone(),
        })
        .collect()
}

#[test]
fn balanced_cluster_needs_nothing() {
    let p = placement(3);
    let plan = plan("demo", p.base(), &p, &[], &Policy::default()).unwrap();
    assert!(plan.retarget.is_none());
    assert!(plan.create.is_empty());
    assert!(plan.plan_hash.is_none());
}

#[test]
fn scale_out_retargets_and_creates_one_move_per_pair() {
    let p = placement(3);
    let desired = p.base().evolve(&members(5)).unwrap();
    let plan = plan("demo", &desired, &p, &[], &Policy::default()).unwrap();
    let next = plan.retarget.clone().unwrap();
    assert_eq!(next.epoch(), p.epoch() + 1);
    assert_eq!(plan.create.len(), plan.transfers.len());
    for m in &plan.create {
        assert!(m.target == "demo-3" || m.target == "demo-4", "{m:?}");
        assert!(m.name.starts_with("demo-"));
    }
    // the same round again, with the retarget written, plans the same moves by name
    let again = plan_fn(&desired, &next, &views(&plan, Phase::Pending));
    assert!(again.retarget.is_none());
    assert!(again.create.is_empty());
    assert_eq!(again.plan_hash, plan.plan_hash);
}

fn plan_fn(desired: &RingSpec, p: &Placement, moves: &[MoveView]) -> Plan {
    plan("demo", desired, p, moves, &Policy::default()).unwrap()
}

#[test]
fn concurrency_limits_hold() {
    let p = placement(4);
    let desired = p.base().evolve(&members(8)).unwrap();
    let policy = Policy {
        max_concurrent_moves: 3,
        ..Policy::default()
    };
    let first = plan("demo", &desired, &p, &[], &policy).unwrap();
    let next = first.retarget.clone().unwrap();
    let pending = views(&first, Phase::Pending);
    let round = plan("demo", &desired, &next, &pending, &policy).unwrap();
    assert!(round.may_start.len() <= 3);
    assert!(!round.may_start.is_empty());
    let mut seen = BTreeSet::new();
    for name in &round.may_start {
        let m = pending.iter().find(|m| &m.name == name).unwrap();
        assert!(seen.insert(m.source.clone()), "two moves from {}", m.source);
        assert!(seen.insert(m.target.clone()), "two moves to {}", m.target);
    }
}

#[test]
fn manual_approval_waits_for_the_plan_hash() {
    let p = placement(3);
    let desired = p.base().evolve(&members(4)).unwrap();
    let policy = Policy {
        manual_approval: true,
        ..Policy::default()
    };
    let waiting = plan("demo", &desired, &p, &[], &policy).unwrap();
    assert!(waiting.awaiting_approval);
    assert!(waiting.create.is_empty());
    assert!(waiting.may_start.is_empty());
    let next = waiting.retarget.clone().unwrap();
    let approved = Policy {
        approved_plan: waiting.plan_hash.clone(),
        ..policy
    };
    let go = plan("demo", &desired, &next, &[], &approved).unwrap();
    assert!(!go.awaiting_approval);
    assert_eq!(go.create.len(), go.transfers.len());
}

#[test]
fn replan_mid_change_keeps_committed_moves_and_renames_the_rest() {
    let p = placement(3);
    let to5 = p.base().evolve(&members(5)).unwrap();
    let first = plan_fn(&to5, &p, &[]);
    let mid = first.retarget.clone().unwrap();
    let t = &first.transfers[0];
    let mid = mid.commit(&t.source, &t.target).unwrap();
    let owner_before: Vec<String> = (0..64u64)
        .map(|i| mid.owner(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).unwrap())
        .collect();
    let to4 = to5.evolve(&members(4)).unwrap();
    let second = plan_fn(&to4, &mid, &views(&first, Phase::Copying));
    let re = second.retarget.clone().unwrap();
    let owner_after: Vec<String> = (0..64u64)
        .map(|i| re.owner(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).unwrap())
        .collect();
    assert_eq!(
        owner_before, owner_after,
        "re-planning must not move ownership"
    );
    let old_names: BTreeSet<&str> = first.create.iter().map(|m| m.name.as_str()).collect();
    for m in &second.create {
        assert!(!old_names.contains(m.name.as_str()));
    }
}

/// Finding 1 of issue 13: 3 -> 4 commits, then at once 4 -> 3. The first change's moves sit in
/// Cleanup (their sources' drops pending) while the second moves the same ranges back to those
/// sources: those drops must be cancelled, whatever else the sources may still drop.
#[test]
fn a_replan_cancels_the_pending_drops_of_ranges_coming_back() {
    let p = placement(3);
    let to4 = p.base().evolve(&members(4)).unwrap();
    let out = plan_fn(&to4, &p, &[]);
    let mut mid = out.retarget.clone().unwrap();
    for t in &out.transfers {
        mid = mid.commit(&t.source, &t.target).unwrap();
    }
    let cleanup = views(&out, Phase::Cleanup);
    let policy = Policy {
        max_concurrent_moves: 8,
        max_moves_per_member: 8,
        ..Policy::default()
    };
    // Still at 4: every source may drop everything it moved.
    let settled = plan("demo", &to4, &mid, &cleanup, &policy).unwrap();
    for m in &cleanup {
        assert_eq!(settled.drops.get(&m.name), Some(&m.ranges), "{}", m.name);
    }
    // Back to 3: the ranges return to their old owners.
    let to3 = to4.evolve(&members(3)).unwrap();
    let back = plan("demo", &to3, &mid, &cleanup, &policy).unwrap();
    let next = back.retarget.clone().unwrap();
    let back = plan("demo", &to3, &next, &cleanup, &policy).unwrap();
    assert!(!back.create.is_empty());
    for m in &cleanup {
        let returning = back
            .create
            .iter()
            .filter(|c| c.target == m.source)
            .fold(RangeSet::empty(), |acc, c| acc.union(&c.ranges));
        assert!(!returning.intersection(&m.ranges).is_empty(), "{}", m.name);
        let granted = back.drops.get(&m.name).cloned().unwrap_or_default();
        assert!(
            granted.intersection(&returning).is_empty(),
            "{} would drop ranges that are coming back: {granted:?}",
            m.name
        );
    }
    // And once the way back committed, the sources own them: still nothing of them is dropped.
    let mut done = next.clone();
    for t in next.pending_transfers().unwrap() {
        done = done.commit(&t.source, &t.target).unwrap();
    }
    let after = plan("demo", &to3, &done, &cleanup, &policy).unwrap();
    for m in &cleanup {
        let owned = done.current().unwrap().ranges_of(&m.source);
        let granted = after.drops.get(&m.name).cloned().unwrap_or_default();
        assert!(granted.intersection(&owned).is_empty(), "{}", m.name);
    }
}

#[test]
fn drops_are_bounded_like_moves_but_hold_up_no_move() {
    let p = placement(3);
    let to6 = p.base().evolve(&members(6)).unwrap();
    let out = plan_fn(&to6, &p, &[]);
    let mut mid = out.retarget.clone().unwrap();
    let (done, rest) = out.transfers.split_at(out.transfers.len() / 2);
    for t in done {
        mid = mid.commit(&t.source, &t.target).unwrap();
    }
    let mut existing = views(&out, Phase::Pending);
    for m in existing.iter_mut() {
        if done
            .iter()
            .any(|t| t.source == m.source && t.target == m.target)
        {
            m.phase = Phase::Cleanup;
        }
    }
    assert!(!rest.is_empty());
    let policy = Policy {
        max_concurrent_moves: 2,
        max_moves_per_member: 1,
        ..Policy::default()
    };
    let round = plan("demo", &to6, &mid, &existing, &policy).unwrap();
    let dropping = round.drops.values().filter(|r| !r.is_empty()).count();
    assert!((1..=2).contains(&dropping), "{:?}", round.drops);
    // Moves in Cleanup take no copy slot: the rest of the change goes on (Balanced does not
    // wait for drops).
    assert!(!round.may_start.is_empty());
}

#[test]
fn move_names_are_valid_dns_names() {
    assert_eq!(
        move_name("demo", "0123456789abcdef", "demo-0", "demo-3"),
        "demo-01234567-demo-0-to-demo-3"
    );
    let long = "x".repeat(300);
    let n = move_name(&long, "0123456789abcdef", "A_b", "c");
    assert!(n.len() <= 253);
    assert!(
        n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Through any sequence of desired sizes and commits, every pending transfer has exactly one
    /// move (existing or created) named for the ring in flight, every hash point has one owner,
    /// and the concurrency limit holds.
    #[test]
    fn plans_account_for_every_transfer(
        sizes in prop::collection::vec(1u32..7, 1..5),
        commits in prop::collection::vec(0usize..8, 1..6),
    ) {
        let mut p = placement(3);
        let mut spec = p.base().clone();
        let mut existing: Vec<MoveView> = Vec::new();
        for (round, n) in sizes.iter().enumerate() {
            spec = spec.evolve(&members(*n)).unwrap();
            let plan = plan_fn(&spec, &p, &existing);
            if let Some(next) = &plan.retarget {
                p = next.clone();
            }
            existing.extend(views(&plan, Phase::Pending));
            let pending = p.pending_transfers().unwrap();
            if let Some(target) = p.target() {
                let rid = ring_id(target);
                for t in &pending {
                    let name = move_name("demo", &rid, &t.source, &t.target);
                    prop_assert_eq!(existing.iter().filter(|m| m.name == name).count(), 1);
                }
            } else {
                prop_assert!(pending.is_empty());
            }
            prop_assert!(plan.may_start.len() as u32 <= Policy::default().max_concurrent_moves);
            let k = commits.get(round).copied().unwrap_or(0);
            for t in pending.iter().take(k) {
                p = p.commit(&t.source, &t.target).unwrap();
            }
            let current = p.current().unwrap();
            for i in 0..32u64 {
                let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                prop_assert!(!current.owner(h).is_empty());
            }
        }
    }
}
