//! Property tests: no panics, determinism, diff exactness, minimal movement, weights,
//! transition correctness.

mod common;

use common::{Rng, sample_points};
use proptest::prelude::*;
use ringshift_ring::{FULL_SPAN, Member, OwnerMap, Placement, RingOp, RingSpec, diff};

fn weight() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..5, 1 => (u32::MAX - 2)..=u32::MAX]
}

fn op() -> impl Strategy<Value = RingOp> {
    let name = prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g", ""]);
    prop_oneof![
        (name.clone(), weight()).prop_map(|(m, weight)| RingOp::Join {
            member: m.to_string(),
            weight,
        }),
        name.clone().prop_map(|m| RingOp::Leave {
            member: m.to_string()
        }),
        (name, weight()).prop_map(|(m, weight)| RingOp::Reweight {
            member: m.to_string(),
            weight,
        }),
    ]
}

fn members(max: usize) -> impl Strategy<Value = Vec<Member>> {
    prop::collection::vec(1u32..5, 1..max).prop_map(|ws| {
        ws.into_iter()
            .enumerate()
            .map(|(i, w)| Member::new(format!("m{i:02}"), w))
            .collect()
    })
}

/// What `weights_are_proportional` allows. Equal weights with at least as many vnodes as
/// members balance to 1%. Unequal weights leave algorithm 2's weighted token caps and donor
/// floor (no donor under 90% of its share) a few percent: the bound is 0.9 of the
/// weighted share for every member. Fewer vnodes than members: the token cap wins over balance.
fn proportional_bounds(ms: &[Member], vnodes: u16) -> (f64, f64) {
    let equal = ms.windows(2).all(|w| w[0].weight == w[1].weight);
    match (ms.len() <= usize::from(vnodes), equal) {
        (true, true) => (1.01, 0.99),
        (true, false) => (1.10, 0.90),
        (false, _) => (1.25, 0.75),
    }
}

/// The case proptest found (algorithm 2, 12 vnodes): peak/mean 1.05, over the 1% bound the
/// test had for every ring with at least as many vnodes as members, and within 10%.
#[test]
fn a_small_weighted_ring_stays_within_ten_percent() {
    let ms: Vec<Member> = [1, 1, 2, 3, 1, 3, 1, 2, 1, 4, 1, 1]
        .iter()
        .enumerate()
        .map(|(i, w)| Member::new(format!("m{i:02}"), *w))
        .collect();
    let b = RingSpec::with_members(12, &ms)
        .unwrap()
        .build()
        .unwrap()
        .balance();
    let (peak, min) = proportional_bounds(&ms, 12);
    assert!(
        b.peak_to_mean > 1.01,
        "the case no longer exceeds 1%: {}",
        b.peak_to_mean
    );
    assert!(b.peak_to_mean <= peak && b.min_to_mean >= min, "{b:?}");
}

fn assert_partition(map: &OwnerMap) {
    let total: u128 = map.shares().iter().map(|s| s.1).sum();
    assert_eq!(total, FULL_SPAN);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_histories_never_panic_and_replay_identically(
        ops in prop::collection::vec(op(), 0..40),
        vnodes in 0u16..20,
        algorithm in prop::sample::select(ringshift_ring::ALGORITHMS.to_vec()),
    ) {
        let spec = RingSpec { algorithm, vnodes, ops };
        // Algorithm 2 grants up to 16 x vnodes to a heavy member.
        let ratio = if algorithm == 1 { 1 } else { 16 };
        let first = spec.build();
        let second = spec.build();
        match (first, second) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.tokens(), b.tokens());
                prop_assert_eq!(a.token_owners(), b.token_owners());
                prop_assert_eq!(a.loads().iter().sum::<u128>(), FULL_SPAN);
                prop_assert!(a.max_tokens_per_member() <= usize::from(vnodes).max(1) * ratio * 2);
                assert_partition(&a.owner_map());
                for m in a.members() {
                    if m.weight == 0 {
                        prop_assert!(a.tokens_of(&m.name).is_empty());
                    }
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "non-deterministic: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn joins_move_only_to_the_joiner_and_leaves_only_from_the_leaver(
        ms in members(12),
        vnodes in 1u16..48,
        weight in 1u32..5,
        victim in any::<prop::sample::Index>(),
    ) {
        let spec = RingSpec::with_members(vnodes, &ms).unwrap();
        let before = spec.build().unwrap();
        let total_w: u32 = ms.iter().map(|m| m.weight).sum();
        let mut joined = spec.clone();
        joined.push(RingOp::Join { member: "joiner".into(), weight });
        let after = joined.build().unwrap();
        let transfers = diff(&before.owner_map(), &after.owner_map());
        let moved: u128 = transfers.iter().map(|t| t.ranges.span()).sum();
        for t in &transfers {
            prop_assert_eq!(&t.target, "joiner");
        }
        // The joiner gets exactly its weighted share (the optimum), up to rounding.
        let optimum = FULL_SPAN * u128::from(weight) / u128::from(total_w + weight);
        prop_assert!(moved.abs_diff(optimum) <= 1, "moved {} optimum {}", moved, optimum);

        let leaver = &ms[victim.index(ms.len())].name;
        let mut left = spec.clone();
        left.push(RingOp::Leave { member: leaver.clone() });
        if ms.len() > 1 {
            let after = left.build().unwrap();
            let transfers = diff(&before.owner_map(), &after.owner_map());
            for t in &transfers {
                prop_assert_eq!(&t.source, leaver);
            }
            let moved: u128 = transfers.iter().map(|t| t.ranges.span()).sum();
            prop_assert_eq!(moved, before.loads()[before.member_index(leaver).unwrap() as usize]);
        }
    }

    #[test]
    fn weights_are_proportional(ms in members(16), vnodes in 8u16..65) {
        let ring = RingSpec::with_members(vnodes, &ms).unwrap().build().unwrap();
        let b = ring.balance();
        // A join cuts at most `vnodes` pieces, so the bound is tight only while every member
        // can be a donor (with very few vnodes the token cap wins over balance).
        let (peak, min) = proportional_bounds(&ms, vnodes);
        prop_assert!(b.peak_to_mean <= peak, "peak/mean {}", b.peak_to_mean);
        prop_assert!(b.min_to_mean >= min, "min/mean {}", b.min_to_mean);
    }

    #[test]
    fn diff_is_exact(a in members(10), b in members(14), seed in any::<u64>()) {
        let ma = RingSpec::with_members(16, &a).unwrap().build().unwrap().owner_map();
        let sb = RingSpec::with_members(16, &a).unwrap().evolve(&b).unwrap();
        let mb = sb.build().unwrap().owner_map();
        let transfers = diff(&ma, &mb);
        let mut rng = Rng(seed);
        for h in sample_points(&[&ma, &mb], &mut rng, 300) {
            let (old, new) = (ma.owner(h), mb.owner(h));
            let hits: Vec<_> = transfers.iter().filter(|t| t.ranges.contains(h)).collect();
            if old == new {
                prop_assert!(hits.is_empty());
            } else {
                prop_assert_eq!(hits.len(), 1);
                prop_assert_eq!((hits[0].source.as_str(), hits[0].target.as_str()), (old, new));
            }
        }
    }

    #[test]
    fn every_point_has_one_owner_at_every_step_including_re_plans(
        a in members(8),
        b in members(10),
        c in members(10),
        seed in any::<u64>(),
        replan_after in 0usize..6,
    ) {
        let base = RingSpec::with_members(16, &a).unwrap();
        let mut rng = Rng(seed);
        let mut p = Placement::new("uid", base.clone()).unwrap();
        p = p.set_target(base.evolve(&b).unwrap()).unwrap();
        let mut step = 0;
        let mut replanned = false;
        while !p.is_balanced() {
            let r = p.resolve().unwrap();
            let target = r.target.clone().unwrap();
            for h in sample_points(&[&r.start, &target], &mut rng, 50) {
                let (s, t) = (r.start.owner(h), target.owner(h));
                let now = r.current.owner(h);
                let committed = p.committed().iter().any(|x| x.source == s && x.target == t);
                prop_assert_eq!(now, if s != t && committed { t } else { s });
            }
            if step == replan_after && !replanned {
                replanned = true;
                let before = r.current.clone();
                p = p.set_target(base.evolve(&c).unwrap()).unwrap();
                prop_assert_eq!(p.current().unwrap(), before);
                continue;
            }
            let pending = p.pending_transfers().unwrap();
            let pick = &pending[rng.below(pending.len())];
            p = p.commit(&pick.source, &pick.target).unwrap();
            step += 1;
        }
        let want = if replanned { &c } else { &b };
        let final_map = p.current().unwrap();
        let expected = if replanned {
            base.evolve(&c).unwrap().build().unwrap().owner_map()
        } else {
            base.evolve(&b).unwrap().build().unwrap().owner_map()
        };
        prop_assert_eq!(final_map.members().len(), want.len());
        prop_assert_eq!(final_map, expected);
    }
}

/// Every member of positive weight holds at least `min_share` of its weighted share, and no
/// member more tokens than algorithm 2's cap: `vnodes` per multiple of the lightest weight, at
/// the highest weight the member had (a weight decrease moves boundaries only, so a member
/// keeps the tokens it had; data moves no more than needed).
fn check_weighted_fairness(spec: &RingSpec, min_share: f64) -> Result<(), String> {
    let ring = spec.build().map_err(|e| e.to_string())?;
    let members = ring.members();
    let total: f64 = members.iter().map(|m| f64::from(m.weight)).sum();
    let mut highest: std::collections::BTreeMap<&str, u32> = Default::default();
    for op in &spec.ops {
        if let RingOp::Join { member, weight } | RingOp::Reweight { member, weight } = op {
            let h = highest.entry(member.as_str()).or_default();
            *h = (*h).max(*weight);
        }
    }
    let lightest = spec
        .ops
        .iter()
        .filter_map(|op| match op {
            RingOp::Join { weight, .. } | RingOp::Reweight { weight, .. } => Some(*weight),
            RingOp::Leave { .. } => None,
        })
        .filter(|&w| w > 0)
        .min()
        .unwrap_or(1);
    for (m, &load) in members.iter().zip(ring.loads()) {
        if m.weight == 0 {
            continue;
        }
        let share = load as f64 / (FULL_SPAN as f64 * f64::from(m.weight) / total);
        if share < min_share {
            return Err(format!(
                "{} (weight {}) holds {share:.3} of its share",
                m.name, m.weight
            ));
        }
        let weight = highest.get(m.name.as_str()).copied().unwrap_or(m.weight);
        let cap = usize::from(spec.vnodes) * weight.div_ceil(lightest).clamp(1, 16) as usize;
        let tokens = ring.tokens_of(&m.name).len();
        if tokens > cap {
            return Err(format!(
                "{} (weight {}) holds {tokens} tokens, cap {cap}",
                m.name, m.weight
            ));
        }
    }
    Ok(())
}

/// `n` members joining with weights 1..=4 from `seed`, then weighted joins and reweights.
fn weighted_history(n: usize, vnodes: u16, seed: u64) -> RingSpec {
    let mut rng = Rng(seed);
    let members: Vec<Member> = (0..n)
        .map(|i| Member::new(format!("m{i:04}"), 1 + (rng.next() % 4) as u32))
        .collect();
    let mut spec = RingSpec::with_members(vnodes, &members).unwrap();
    for i in 0..3 {
        let target = format!("m{:04}", rng.next() as usize % n);
        spec.push(RingOp::Reweight {
            member: target,
            weight: 1 + (rng.next() % 4) as u32,
        });
        spec.push(RingOp::Join {
            member: format!("late{i}"),
            weight: 1 + (rng.next() % 4) as u32,
        });
    }
    spec
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Algorithm 2 at sizes past the vnode count (where algorithm 1 starved members). With
    /// fewer than 16 vnodes pieces are coarse and the cap can give way to keep the shares.
    #[test]
    fn weighted_joins_and_reweights_keep_every_share(
        n in 10usize..160,
        vnodes in prop::sample::select(vec![16u16, 32, 64]),
        seed in any::<u64>(),
    ) {
        let spec = weighted_history(n, vnodes, seed);
        prop_assert_eq!(spec.algorithm, 2);
        if let Err(e) = check_weighted_fairness(&spec, 0.9) {
            prop_assert!(false, "n={} vnodes={}: {}", n, vnodes, e);
        }
    }
}

/// The same check at N = 10..2000 (minutes in a debug build: `make reliability`).
#[test]
#[ignore = "long: make reliability runs it"]
fn weighted_fairness_at_large_sizes() {
    for (i, &n) in [10usize, 100, 500, 1000, 2000].iter().enumerate() {
        let spec = weighted_history(n, 64, 0x5eed + i as u64);
        if let Err(e) = check_weighted_fairness(&spec, 0.9) {
            panic!("n={n}: {e}");
        }
    }
}

/// The check is able to fail: algorithm 1 (kept for existing rings) starves donors when one
/// member of weight 2 joins 200 equal ones (the historical bug).
#[test]
fn the_fairness_check_catches_algorithm_1_starving_donors() {
    let members: Vec<Member> = (0..200)
        .map(|i| Member::new(format!("m{i:04}"), 1))
        .collect();
    let mut spec = RingSpec::with_members(64, &members).unwrap();
    spec.push(RingOp::Join {
        member: "heavy".into(),
        weight: 2,
    });
    assert!(check_weighted_fairness(&spec, 0.9).is_ok(), "algorithm 2");
    spec.algorithm = 1;
    let err = check_weighted_fairness(&spec, 0.9).unwrap_err();
    assert!(err.contains("of its share"), "{err}");
}
