//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ringshift_ring::{Member, OwnerMap, RingOp, RingSpec};

pub fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("node-{i:04}"), 1))
        .collect()
}

pub fn spec(n: usize, vnodes: u16) -> RingSpec {
    RingSpec::with_members(vnodes, &members(n)).unwrap()
}

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` random joins and leaves (never fewer than 2 members).
pub fn churn(spec: &mut RingSpec, count: usize, rng: &mut Rng) {
    for j in 0..count {
        let live = spec.members().unwrap();
        if rng.next().is_multiple_of(2) && live.len() > 2 {
            let name = live[rng.below(live.len())].name.clone();
            spec.push(RingOp::Leave { member: name });
        } else {
            spec.push(RingOp::Join {
                member: format!("churn-{j}-{}", rng.next() % 1000),
                weight: 1,
            });
        }
    }
}

/// Sample points: range ends and random hashes.
pub fn sample_points(maps: &[&OwnerMap], rng: &mut Rng, random: usize) -> Vec<u64> {
    let mut points = vec![0, 1, u64::MAX - 1, u64::MAX];
    for m in maps {
        for (r, _) in m.ranges() {
            points.push(r.start);
            points.push(r.end);
        }
    }
    for _ in 0..random {
        points.push(rng.next());
    }
    points
}
