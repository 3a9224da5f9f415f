//! Ring behaviour: ownership, balance, weights, minimal movement, preference lists.

mod common;

use common::{Rng, churn, members, sample_points, spec};
use ringshift_ring::{FULL_SPAN, Member, RingOp, RingSpec, diff};

#[test]
fn owner_is_member_of_first_token_at_or_after_hash() {
    let ring = spec(5, 16).build().unwrap();
    let tokens = ring.tokens();
    let owners = ring.token_owners();
    for (i, &t) in tokens.iter().enumerate() {
        let name = &ring.members()[owners[i] as usize].name;
        assert_eq!(ring.owner(t), name, "token itself");
        if t < u64::MAX {
            let next = (i + 1) % tokens.len();
            let next_name = &ring.members()[owners[next] as usize].name;
            assert_eq!(ring.owner(t + 1), next_name, "just after token");
        }
    }
    let last = *tokens.last().unwrap();
    if last < u64::MAX {
        assert_eq!(ring.owner(u64::MAX), ring.owner(0), "wraps to first token");
    }
}

#[test]
fn single_member_owns_everything_with_vnodes_tokens() {
    let ring = spec(1, 64).build().unwrap();
    assert_eq!(ring.tokens().len(), 64);
    assert_eq!(ring.owner(0), "node-0000");
    assert_eq!(ring.owner(u64::MAX), "node-0000");
    assert_eq!(ring.loads(), &[FULL_SPAN]);
}

#[test]
fn balance_is_tight_with_64_tokens() {
    for n in [2, 3, 10, 100] {
        let ring = spec(n, 64).build().unwrap();
        let b = ring.balance();
        assert!(
            b.peak_to_mean <= 1.05,
            "n={n}: peak/mean {}",
            b.peak_to_mean
        );
        assert!(ring.max_tokens_per_member() <= 80, "n={n}");
        assert_eq!(ring.loads().iter().sum::<u128>(), FULL_SPAN);
    }
}

#[test]
fn balance_survives_churn() {
    let mut rng = Rng(7);
    let mut s = spec(100, 64);
    churn(&mut s, 100, &mut rng);
    let b = s.build().unwrap().balance();
    assert!(b.peak_to_mean <= 1.10, "peak/mean {}", b.peak_to_mean);
    let mut small = spec(4, 64);
    churn(&mut small, 60, &mut rng);
    let b = small.build().unwrap().balance();
    assert!(
        b.peak_to_mean <= 1.10,
        "small ring peak/mean {}",
        b.peak_to_mean
    );
}

#[test]
fn weights_are_honoured_proportionally() {
    let ms = vec![
        Member::new("a", 1),
        Member::new("b", 2),
        Member::new("c", 3),
        Member::new("d", 10),
        Member::new("z", 0),
    ];
    let ring = RingSpec::with_members(64, &ms).unwrap().build().unwrap();
    let shares = ring.load_shares();
    let total: f64 = 16.0;
    for (m, (name, share)) in ms.iter().zip(shares) {
        assert_eq!(m.name, name);
        let want = f64::from(m.weight) / total;
        assert!((share - want).abs() < 0.002, "{name}: {share} vs {want}");
    }
    assert!(ring.tokens_of("z").is_empty());
    // Reweighting moves data only between the reweighted member and the others.
    let mut up = RingSpec::with_members(64, &ms).unwrap();
    up.push(RingOp::Reweight {
        member: "a".into(),
        weight: 6,
    });
    let after = up.build().unwrap();
    for t in diff(&ring.owner_map(), &after.owner_map()) {
        assert_eq!(t.target, "a", "{t:?}");
    }
    let a_share = after.load_shares()[0].1;
    assert!((a_share - 6.0 / 21.0).abs() < 0.002, "{a_share}");
}

#[test]
fn join_moves_only_to_joiner_and_leave_only_from_leaver() {
    let mut rng = Rng(11);
    for n in [1, 2, 5, 50] {
        let before_spec = spec(n, 64);
        let before = before_spec.build().unwrap().owner_map();
        let mut ms = members(n);
        ms.push(Member::new("joiner", 1));
        let joined = before_spec
            .evolve(&ms)
            .unwrap()
            .build()
            .unwrap()
            .owner_map();
        let transfers = diff(&before, &joined);
        let moved: u128 = transfers.iter().map(|t| t.ranges.span()).sum();
        for t in &transfers {
            assert_eq!(t.target, "joiner");
        }
        let optimum = FULL_SPAN / (n as u128 + 1);
        assert!(
            moved <= optimum + 64,
            "n={n}: moved {moved} optimum {optimum}"
        );

        let victim = members(n + 1)[rng.below(n)].name.clone();
        let mut left_spec = before_spec.clone();
        left_spec.push(RingOp::Leave {
            member: victim.clone(),
        });
        if n == 1 {
            assert!(left_spec.build().is_err());
            continue;
        }
        let left = left_spec.build().unwrap().owner_map();
        for t in diff(&before, &left) {
            assert_eq!(t.source, victim);
        }
        assert!(left.ranges_of(&victim).is_empty());
    }
}

#[test]
fn diff_is_exact_on_sampled_points() {
    let mut rng = Rng(3);
    let a = spec(30, 32);
    let mut b = a.clone();
    churn(&mut b, 12, &mut rng);
    let (ma, mb) = (
        a.build().unwrap().owner_map(),
        b.build().unwrap().owner_map(),
    );
    let transfers = diff(&ma, &mb);
    let mut pairs: Vec<(&str, &str)> = transfers
        .iter()
        .map(|t| (t.source.as_str(), t.target.as_str()))
        .collect();
    let sorted = {
        let mut p = pairs.clone();
        p.sort();
        p.dedup();
        p
    };
    assert_eq!(pairs, sorted, "sorted by (source, target), one per pair");
    pairs.clear();
    for h in sample_points(&[&ma, &mb], &mut rng, 20_000) {
        let (old, new) = (ma.owner(h), mb.owner(h));
        let hits: Vec<_> = transfers.iter().filter(|t| t.ranges.contains(h)).collect();
        if old == new {
            assert!(hits.is_empty(), "{h} moved without owner change");
        } else {
            assert_eq!(hits.len(), 1, "{h}");
            assert_eq!(
                (hits[0].source.as_str(), hits[0].target.as_str()),
                (old, new)
            );
        }
    }
}

#[test]
fn preference_lists_are_distinct_and_start_with_owner() {
    let ring = spec(6, 16).build().unwrap();
    let mut rng = Rng(5);
    for _ in 0..1000 {
        let h = rng.next();
        let one = ring.preference_list(h, 1);
        assert_eq!(one, vec![ring.owner(h)]);
        let three = ring.preference_list(h, 3);
        assert_eq!(three.len(), 3);
        assert_eq!(three[0], ring.owner(h));
        let mut d = three.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 3);
        assert_eq!(ring.preference_list(h, 10).len(), 6);
    }
    assert!(ring.preference_list(0, 0).is_empty());
}

#[test]
fn replay_is_deterministic_and_survives_json() {
    let mut rng = Rng(9);
    let mut s = spec(20, 64);
    churn(&mut s, 20, &mut rng);
    let json = serde_json::to_string(&s).unwrap();
    let back: RingSpec = serde_json::from_str(&json).unwrap();
    let (r1, r2) = (s.build().unwrap(), back.build().unwrap());
    assert_eq!(r1.tokens(), r2.tokens());
    assert_eq!(r1.token_owners(), r2.token_owners());
    assert_eq!(r1.owner_map(), r2.owner_map());
}

#[test]
fn fast_lookup_agrees_with_binary_search() {
    let mut rng = Rng(21);
    for n in [1, 2, 7, 300] {
        let ring = spec(n, 64).build().unwrap();
        let (tokens, owners) = (ring.tokens(), ring.token_owners());
        let reference = |h: u64| {
            let i = tokens.partition_point(|&t| t < h);
            owners[if i == tokens.len() { 0 } else { i }]
        };
        let mut points: Vec<u64> = (0..20_000).map(|_| rng.next()).collect();
        for &t in tokens {
            points.extend([t.wrapping_sub(1), t, t.wrapping_add(1)]);
        }
        for shift in [40u32, 48, 52, 56, 60] {
            for b in 0..64u64 {
                let edge = (rng.next() >> shift << shift) | (b & 1);
                points.extend([edge, edge.wrapping_sub(1), edge | ((1u64 << shift) - 1)]);
            }
        }
        points.extend([0, u64::MAX]);
        for h in points {
            assert_eq!(ring.owner_index(h), reference(h), "n={n} hash={h}");
        }
    }
}
