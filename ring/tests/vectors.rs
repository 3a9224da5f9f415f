//! Pinned key -> hash -> owner vectors: a change of the hash or of a ring algorithm's tokens
//! fails here. Existing specs replay with the algorithm they were written with, so every version
//! this build accepts stays pinned.

use ringshift_ring::{Member, RingSpec, key_hash};

const VECTORS: &[(&[u8], u64, &str)] = &[
    // XXH3-64 of the empty input with seed 0 is the published reference value 0x2d06800538d394c2.
    (b"", 0x2d06800538d394c2, "node-c"),
    (b"a", 0xe6c632b61e964e1f, "node-a"),
    (b"hello", 0x9555e8555c62dcfd, "node-b"),
    (b"{user42}:cart", 0x9fdc8e44c5b9267c, "node-a"),
    (b"user42", 0x9fdc8e44c5b9267c, "node-a"),
    (b"key:000001", 0x0e8bacb0c64b33f0, "node-c"),
    (b"foo{}{bar}", 0xc183e6678835189c, "node-b"),
    (b"ringshift", 0x27da3b87326b252f, "node-c"),
];

#[test]
fn key_hashes_are_pinned() {
    for &(key, hash, _) in VECTORS {
        assert_eq!(
            key_hash(key),
            hash,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[test]
fn owners_under_algorithm_1_are_pinned() {
    let spec = RingSpec::with_members(
        64,
        &[
            Member::new("node-a", 1),
            Member::new("node-b", 1),
            Member::new("node-c", 2),
        ],
    )
    .unwrap();
    let ring = at(1, spec).build().unwrap();
    for &(key, hash, owner) in VECTORS {
        assert_eq!(
            ring.owner(hash),
            owner,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(ring.owner_of_key(key), owner);
    }
}

/// A history replayed with algorithm `algorithm`.
fn at(algorithm: u32, mut spec: RingSpec) -> RingSpec {
    spec.algorithm = algorithm;
    spec
}

/// XXH3 over every (token, owner name) of a ring built from a history with joins, weights,
/// leaves and reweights.
fn layout_digest(algorithm: u32) -> u64 {
    use ringshift_ring::RingOp;
    let members: Vec<Member> = (0..150)
        .map(|i| Member::new(format!("node-{i:03}"), 1 + i % 3))
        .collect();
    let mut spec = at(algorithm, RingSpec::with_members(64, &members).unwrap());
    for i in (0..150).step_by(7) {
        spec.push(RingOp::Leave {
            member: format!("node-{i:03}"),
        });
    }
    for i in (1..150).step_by(11).filter(|i| i % 7 != 0) {
        spec.push(RingOp::Reweight {
            member: format!("node-{i:03}"),
            weight: 5,
        });
    }
    for i in 0..20 {
        spec.push(RingOp::Join {
            member: format!("late-{i:02}"),
            weight: 2,
        });
    }
    let ring = spec.build().unwrap();
    let mut bytes = Vec::new();
    for (t, &o) in ring.tokens().iter().zip(ring.token_owners()) {
        bytes.extend_from_slice(&t.to_le_bytes());
        bytes.extend_from_slice(ring.members()[o as usize].name.as_bytes());
    }
    let digest = xxhash_rust::xxh3::xxh3_64(&bytes);
    println!(
        "algorithm {algorithm}: tokens {} digest {digest:#018x}",
        ring.tokens().len()
    );
    digest
}

/// Any change of algorithm 1 changes this digest (clusters created with it would re-shard).
#[test]
fn token_layout_of_algorithm_1_is_pinned() {
    assert_eq!(
        layout_digest(1),
        0xff720fa0fad9e279,
        "ring algorithm 1 changed: keep it, add a version"
    );
}

/// Algorithm 2 (weighted token caps, no donor levelled far under its share) likewise.
#[test]
fn token_layout_of_algorithm_2_is_pinned() {
    assert_eq!(
        layout_digest(2),
        PINNED_LAYOUT_2,
        "ring algorithm 2 changed: keep it, add a version"
    );
}

const PINNED_LAYOUT_2: u64 = 0x6ec9a4793807e8be;
