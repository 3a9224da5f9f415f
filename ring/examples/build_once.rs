//! Build one ring of N equal members (for profiling the replay, e.g. under callgrind):
//! `cargo run --release -p ringshift-ring --example build_once -- [members] [vnodes] [algorithm]
//! [repetitions]` (prints the best time of the repetitions).

use ringshift_ring::{Member, RingSpec};
use std::time::{Duration, Instant};

fn arg(i: usize, default: u32) -> u32 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (n, vnodes, algorithm, reps) = (arg(1, 1000), arg(2, 64), arg(3, 2), arg(4, 1));
    let members: Vec<Member> = (0..n)
        .map(|i| Member::new(format!("node-{i:04}"), 1))
        .collect();
    let mut spec = RingSpec::with_members(vnodes as u16, &members).expect("valid names");
    spec.algorithm = algorithm;
    let mut best = Duration::MAX;
    let mut tokens = 0;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let ring = spec.build().expect("builds");
        best = best.min(t.elapsed());
        tokens = ring.tokens().len();
    }
    println!(
        "{tokens} tokens, best build {:.3} ms",
        best.as_secs_f64() * 1e3
    );
}
