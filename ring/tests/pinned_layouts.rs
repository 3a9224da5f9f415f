//! More pinned token layouts, at the sizes clusters run (up to 2000 members, 64 and 160 vnodes)
//! and over many small random histories: a change of either algorithm's tokens fails here.
//! `tests/vectors.rs` pins the key hash and one 150-member history; these pin the paths it
//! leaves thin (weighted joins past the vnode count, leaves and reweights in large rings,
//! weight 0, huge weights, re-seeding after a ring shrinks to one owner, rings with fewer vnodes
//! than members). The digests were recorded before the allocator was optimized for speed, so
//! they show that the faster replay yields byte-for-byte the same tokens.

mod common;

use common::Rng;
use ringshift_ring::{Member, Ring, RingOp, RingSpec};

/// XXH3 over every (token, owner name) of a ring.
fn digest(ring: &Ring) -> u64 {
    let mut bytes = Vec::with_capacity(ring.tokens().len() * 16);
    for (t, &o) in ring.tokens().iter().zip(ring.token_owners()) {
        bytes.extend_from_slice(&t.to_le_bytes());
        bytes.extend_from_slice(ring.members()[o as usize].name.as_bytes());
        bytes.push(0);
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

fn at(algorithm: u32, mut spec: RingSpec) -> RingSpec {
    spec.algorithm = algorithm;
    spec
}

fn equal(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("node-{i:04}"), 1))
        .collect()
}

fn weighted(n: usize, seed: u64) -> Vec<Member> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| Member::new(format!("node-{i:04}"), 1 + (rng.next() % 4) as u32))
        .collect()
}

/// `n` weighted members, then a tenth of them leave, a tenth are reweighted up or down (and
/// some re-stated at their weight), and a twentieth join with weights 1-3.
fn large_history(n: usize, vnodes: u16, seed: u64) -> RingSpec {
    let members = weighted(n, seed);
    let mut spec = RingSpec::with_members(vnodes, &members).unwrap();
    let mut rng = Rng(seed ^ 0xabcdef);
    let mut live: Vec<Member> = members;
    for j in 0..n / 4 {
        match j % 5 {
            0 | 1 => {
                let m = live.remove(rng.below(live.len()));
                spec.push(RingOp::Leave { member: m.name });
            }
            2 | 3 => {
                let i = rng.below(live.len());
                // Every fourth reweight re-states the current weight.
                let w = if j % 4 == 2 {
                    live[i].weight
                } else {
                    1 + (rng.next() % 5) as u32
                };
                live[i].weight = w;
                spec.push(RingOp::Reweight {
                    member: live[i].name.clone(),
                    weight: w,
                });
            }
            _ => {
                let m = Member::new(format!("late-{j:04}"), 1 + (rng.next() % 3) as u32);
                spec.push(RingOp::Join {
                    member: m.name.clone(),
                    weight: m.weight,
                });
                live.push(m);
            }
        }
    }
    spec
}

/// A random small history: joins, leaves and reweights (weights 0-4 and a few huge ones),
/// invalid ops included (they make the build fail, which is pinned too).
fn small_history(rng: &mut Rng) -> RingSpec {
    let vnodes = 1 + rng.below(80) as u16;
    let names = 2 + rng.below(30);
    let mut spec = RingSpec::new(vnodes);
    let mut live: Vec<String> = Vec::new();
    let mut next = 0usize;
    for _ in 0..rng.below(60) {
        let weight = match rng.below(20) {
            0 => u32::MAX - rng.below(3) as u32,
            1 => 0,
            _ => 1 + rng.below(4) as u32,
        };
        match rng.below(10) {
            0..=4 if live.len() < names => {
                let name = format!("m{next}");
                next += 1;
                live.push(name.clone());
                spec.push(RingOp::Join {
                    member: name,
                    weight,
                });
            }
            5..=7 if !live.is_empty() => {
                let name = live.remove(rng.below(live.len()));
                spec.push(RingOp::Leave { member: name });
            }
            _ if !live.is_empty() => {
                let name = live[rng.below(live.len())].clone();
                spec.push(RingOp::Reweight {
                    member: name,
                    weight,
                });
            }
            _ => {}
        }
    }
    spec
}

/// Digest of every prefix of `count` random small histories, under both algorithms.
fn small_histories_digest(count: usize, seed: u64) -> [u64; 2] {
    let mut out = [0u64; 2];
    for (slot, algorithm) in [1u32, 2].into_iter().enumerate() {
        let mut rng = Rng(seed);
        let mut all = Vec::new();
        for _ in 0..count {
            let spec = at(algorithm, small_history(&mut rng));
            for len in 0..=spec.ops.len() {
                let prefix = RingSpec {
                    algorithm,
                    vnodes: spec.vnodes,
                    ops: spec.ops[..len].to_vec(),
                };
                match prefix.build() {
                    Ok(ring) => all.extend_from_slice(&digest(&ring).to_le_bytes()),
                    Err(e) => all.extend_from_slice(e.to_string().as_bytes()),
                }
            }
        }
        out[slot] = xxhash_rust::xxh3::xxh3_64(&all);
    }
    out
}

/// Builds `spec` and records a mismatch with `pinned` (all cases run, so that one failure
/// shows every changed layout).
fn check(label: &str, spec: &RingSpec, pinned: u64, failures: &mut Vec<String>) {
    let ring = spec.build().unwrap();
    let got = digest(&ring);
    if got != pinned {
        failures.push(format!(
            "{label} algorithm {}: {} tokens, digest {got:#018x}",
            spec.algorithm,
            ring.tokens().len()
        ));
    }
}

fn assert_none_changed(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "ring layouts changed (keep the algorithm, add a version):\n{}",
        failures.join("\n")
    );
}

#[test]
fn equal_members_at_large_sizes_are_pinned() {
    let cases: [(usize, u16, [u64; 2]); 4] = [
        (1000, 64, [0x5eb093c15c00f33b, 0x5eb093c15c00f33b]),
        (1000, 160, [0x063b5cd157ddb7da, 0x063b5cd157ddb7da]),
        (2000, 64, [0x309bc06f2063af92, 0x309bc06f2063af92]),
        (100, 160, [0xcfc4b8d58e5d226c, 0xcfc4b8d58e5d226c]),
    ];
    let mut failures = Vec::new();
    for (n, vnodes, pins) in cases {
        let spec = RingSpec::with_members(vnodes, &equal(n)).unwrap();
        for (algorithm, pin) in [1, 2].into_iter().zip(pins) {
            check(
                &format!("{n} x {vnodes}"),
                &at(algorithm, spec.clone()),
                pin,
                &mut failures,
            );
        }
    }
    assert_none_changed(&failures);
}

#[test]
fn weighted_members_at_large_sizes_are_pinned() {
    let cases: [(usize, u16, [u64; 2]); 3] = [
        (1000, 64, [0x563c8656b1f8d509, 0x2e0d2fd267ce485f]),
        (2000, 64, [0x284d386da0fcae4a, 0xe2a541146f30b6e7]),
        (500, 160, [0x757d279cae5577d6, 0x21a92363977545bb]),
    ];
    let mut failures = Vec::new();
    for (n, vnodes, pins) in cases {
        let spec = RingSpec::with_members(vnodes, &weighted(n, n as u64)).unwrap();
        for (algorithm, pin) in [1, 2].into_iter().zip(pins) {
            check(
                &format!("{n} x {vnodes} weighted"),
                &at(algorithm, spec.clone()),
                pin,
                &mut failures,
            );
        }
    }
    assert_none_changed(&failures);
}

#[test]
fn leaves_reweights_and_joins_at_large_sizes_are_pinned() {
    let cases: [(usize, u16, [u64; 2]); 3] = [
        (1000, 64, [0xb5296df809676306, 0xbfa3e4adbcf77974]),
        (300, 160, [0x2c4dc27a14ffff33, 0x5bcf0a6dc20f674b]),
        (200, 16, [0x7829b296b4cd35ae, 0xc865d293c5899ef6]),
    ];
    let mut failures = Vec::new();
    for (n, vnodes, pins) in cases {
        let spec = large_history(n, vnodes, 7 + n as u64);
        for (algorithm, pin) in [1, 2].into_iter().zip(pins) {
            check(
                &format!("{n} x {vnodes} churned"),
                &at(algorithm, spec.clone()),
                pin,
                &mut failures,
            );
        }
    }
    assert_none_changed(&failures);
}

#[test]
fn every_step_of_random_small_histories_is_pinned() {
    assert_eq!(
        small_histories_digest(300, 0x5eed),
        [0xb221577d5c8595d1, 0xb02c12e55f1021fd]
    );
}
