//! Weighted fairness of the token allocation, algorithm 1 (kept for existing rings) against 2:
//! the lowest member's share of its weighted fair share, the highest, and the most tokens one
//! member holds, after weighted joins and reweights at sizes 10..2000. Prints a table.
//! `cargo bench -p ringshift-ring --bench weights`

use ringshift_ring::{Member, RingOp, RingSpec};

const VNODES: u16 = 64;

/// (min share, peak share, most tokens of one member).
fn measure(spec: &RingSpec) -> (f64, f64, usize) {
    let ring = spec.build().expect("valid history");
    let b = ring.balance();
    let most = ring
        .members()
        .iter()
        .map(|m| ring.tokens_of(&m.name).len())
        .max()
        .unwrap_or(0);
    (b.min_to_mean, b.peak_to_mean, most)
}

fn main() {
    println!(
        "\nring token allocation under weights ({VNODES} vnodes): min / peak of each member's"
    );
    println!("load over its weighted fair share, and the most tokens one member holds\n");
    println!(
        "| members | change | algorithm 1 min / peak (tokens) | algorithm 2 min / peak (tokens) |"
    );
    println!("|---|---|---|---|");
    for n in [10usize, 60, 200, 1000, 2000] {
        let equal: Vec<Member> = (0..n).map(|i| Member::new(format!("m{i:05}"), 1)).collect();
        let base = RingSpec::with_members(VNODES, &equal).expect("names are valid");
        let mut cases: Vec<(String, RingSpec)> = Vec::new();
        for w in [2u32, 3, 4] {
            let mut s = base.clone();
            s.push(RingOp::Join {
                member: "heavy".into(),
                weight: w,
            });
            cases.push((format!("+1 of weight {w}"), s));
        }
        let mut s = base.clone();
        s.push(RingOp::Reweight {
            member: "m00003".into(),
            weight: 3,
        });
        cases.push(("one reweighted 1 -> 3".into(), s));
        let mut x = 12345u64;
        let random: Vec<Member> = (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Member::new(format!("m{i:05}"), 1 + ((x >> 33) % 3) as u32)
            })
            .collect();
        cases.push((
            "all joined with weights 1-3".into(),
            RingSpec::with_members(VNODES, &random).expect("names are valid"),
        ));
        for (label, spec) in cases {
            let mut cols = Vec::new();
            for algorithm in [1u32, 2] {
                let mut s = spec.clone();
                s.algorithm = algorithm;
                let (min, peak, most) = measure(&s);
                cols.push(format!("{min:.3} / {peak:.3} ({most})"));
            }
            println!("| {n} | {label} | {} | {} |", cols[0], cols[1]);
        }
    }
}
