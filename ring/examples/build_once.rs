//! Build one ring of N equal members (for profiling the replay, e.g. under callgrind):
//! `cargo run --release -p ringshift-ring --example build_once -- [members] [vnodes] [algorithm]
//! [repetitions]` (prints the best time of the repetitions and, on Linux, the mean CPU time per
//! build from the thread's scheduler statistics: on a shared machine the CPU time is disturbed
//! far less than the wall time).

use ringshift_ring::{Member, RingSpec};
use std::time::{Duration, Instant};

fn arg(i: usize, default: u32) -> u32 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`), if available.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
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
    let cpu_start = cpu_ns();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let ring = spec.build().expect("builds");
        best = best.min(t.elapsed());
        tokens = ring.tokens().len();
    }
    let cpu = match (cpu_start, cpu_ns()) {
        (Some(a), Some(b)) => format!(
            ", mean CPU {:.3} ms",
            b.saturating_sub(a) as f64 / 1e6 / f64::from(reps.max(1))
        ),
        _ => String::new(),
    };
    println!(
        "{tokens} tokens, best build {:.3} ms{cpu}",
        best.as_secs_f64() * 1e3
    );
}
