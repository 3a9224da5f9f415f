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
    ) {
        let spec = RingSpec { algorithm: 1, vnodes, ops };
        let first = spec.build();
        let second = spec.build();
        match (first, second) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.tokens(), b.tokens());
                prop_assert_eq!(a.token_owners(), b.token_owners());
                prop_assert_eq!(a.loads().iter().sum::<u128>(), FULL_SPAN);
                prop_assert!(a.max_tokens_per_member() <= usize::from(vnodes).max(1) * 2);
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
        let (peak, min) = if ms.len() <= usize::from(vnodes) { (1.01, 0.99) } else { (1.25, 0.75) };
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
