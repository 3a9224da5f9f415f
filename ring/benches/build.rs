//! Ring build time side by side, in one run: ringshift (algorithms 1 and 2, which replay the
//! membership history) against `pingora-ketama` 0.9 (160 points per member, fixed) and
//! `hashring` 0.3 (the same vnodes as ours), at 10..2000 members x 64 and 160 vnodes; then the
//! cost of one more op (a join, a leave, a reweight) on a 1000 x 64 ring, replayed in full or
//! applied to a kept [`Replay`], and of replaying a churned history. Prints markdown tables.
//! `cargo bench -p ringshift-ring --bench build` (`RING_BENCH_QUICK=1` for fewer repetitions).

use pingora_ketama::{Bucket, Continuum};
use ringshift_ring::{Member, Replay, RingOp, RingSpec};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Best of `reps` timings of `f`, in milliseconds (the least disturbed run on a shared machine).
fn best_ms<T>(reps: usize, f: impl FnMut() -> T) -> f64 {
    timed(reps, f).best
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`), if available.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// `reps` runs of `f`: the best wall time and the mean CPU time per run (ms). On a shared
/// machine the wall time of every run can include waits for a core; the CPU time cannot, so it
/// is the steadier figure when the machine is busy. The kernel brings a running thread's CPU
/// time up to date only at scheduler ticks, so it is given only for cells that ran long enough
/// (a tick is at most 4% of [`CPU_MIN`]).
struct Timing {
    best: f64,
    cpu: Option<f64>,
}

/// The least CPU time over which [`timed`] reports a mean.
const CPU_MIN: Duration = Duration::from_millis(100);

fn timed<T>(reps: usize, mut f: impl FnMut() -> T) -> Timing {
    let mut best = Duration::MAX;
    let start = cpu_ns();
    for _ in 0..reps {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed());
    }
    let cpu = start
        .zip(cpu_ns())
        .map(|(a, b)| b.saturating_sub(a))
        .filter(|&ns| u128::from(ns) >= CPU_MIN.as_nanos())
        .map(|ns| ns as f64 / 1e6 / reps.max(1) as f64);
    Timing {
        best: best.as_secs_f64() * 1e3,
        cpu,
    }
}

impl std::fmt::Display for Timing {
    /// `best (mean CPU)`, e.g. `9.81 (11.2)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.best)?;
        match self.cpu {
            Some(cpu) => write!(f, " ({cpu:.3})"),
            None => Ok(()),
        }
    }
}

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("node-{i:04}"), 1))
        .collect()
}

fn at(algorithm: u32, mut spec: RingSpec) -> RingSpec {
    spec.algorithm = algorithm;
    spec
}

fn ketama(n: usize) -> Continuum {
    let buckets: Vec<Bucket> = (0..n)
        .map(|i| {
            let ip = [127, 0, (i / 250) as u8, (i % 250) as u8 + 1];
            Bucket::new(SocketAddr::from((ip, 7000)), 1)
        })
        .collect();
    Continuum::new(&buckets)
}

fn hashring(n: usize, vnodes: u16) -> hashring::HashRing<(u32, u16)> {
    let mut ring = hashring::HashRing::new();
    ring.batch_add(
        (0..n as u32)
            .flat_map(|m| (0..vnodes).map(move |v| (m, v)))
            .collect(),
    );
    ring
}

/// Many repetitions: on a shared machine the best run is the one least disturbed.
fn reps_for(n: usize, quick: bool) -> usize {
    match (n, quick) {
        (_, true) => 3,
        (0..=100, false) => 40,
        (0..=1000, false) => 25,
        (_, false) => 12,
    }
}

fn main() {
    let quick = std::env::var_os("RING_BENCH_QUICK").is_some();
    println!(
        "\nring build, best wall time of several runs (mean CPU time per run), ms; ketama has 160 points per member at every row"
    );
    println!(
        "\n| members x vnodes | ringshift alg 1 | ringshift alg 2 | pingora-ketama | hashring | alg 2 ÷ fastest peer, wall (CPU) |"
    );
    println!("|---|---|---|---|---|---|");
    for vnodes in [64u16, 160] {
        for n in [10usize, 100, 1000, 2000] {
            let reps = reps_for(n, quick);
            let spec = RingSpec::with_members(vnodes, &members(n)).expect("valid names");
            let (s1, s2) = (at(1, spec.clone()), at(2, spec));
            let ours = [
                timed(reps, || s1.build().expect("builds")),
                timed(reps, || s2.build().expect("builds")),
            ];
            let peers = [
                timed(reps, || ketama(n)),
                timed(reps, || hashring(n, vnodes)),
            ];
            let fastest = peers[0].best.min(peers[1].best);
            let cpu_ratio = match (ours[1].cpu, peers[0].cpu, peers[1].cpu) {
                (Some(o), Some(a), Some(b)) => format!(" ({:.1}x)", o / a.min(b)),
                _ => String::new(),
            };
            println!(
                "| {n} x {vnodes} | {} | {} | {} | {} | {:.1}x{cpu_ratio} |",
                ours[0],
                ours[1],
                peers[0],
                peers[1],
                ours[1].best / fastest
            );
        }
    }

    // One more op on a built 1000 x 64 ring: replaying the whole longer history (what
    // `RingSpec::build` does on each placement change), or advancing a kept `Replay` by the op
    // (and building the `Ring` from it).
    let n = 1000;
    let reps = reps_for(n, quick);
    let base = RingSpec::with_members(64, &members(n)).expect("valid names");
    let ops = [
        (
            "join (weight 1)",
            RingOp::Join {
                member: "node-new".into(),
                weight: 1,
            },
        ),
        (
            "join (weight 3)",
            RingOp::Join {
                member: "node-new".into(),
                weight: 3,
            },
        ),
        (
            "leave",
            RingOp::Leave {
                member: "node-0500".into(),
            },
        ),
        (
            "reweight 1 -> 2",
            RingOp::Reweight {
                member: "node-0500".into(),
                weight: 2,
            },
        ),
        (
            "reweight 1 -> 0",
            RingOp::Reweight {
                member: "node-0500".into(),
                weight: 0,
            },
        ),
    ];
    println!(
        "\none more op on 1000 members x 64 vnodes (ms): build of the history without it / with it / Replay::advance by it / advance + ring()"
    );
    println!("\n| op | alg 1 | alg 2 |");
    println!("|---|---|---|");
    for (label, op) in ops {
        let mut cols = Vec::new();
        for algorithm in [1u32, 2] {
            let without = at(algorithm, base.clone());
            let mut with = without.clone();
            with.push(op.clone());
            let a = best_ms(reps, || without.build().expect("builds"));
            let b = best_ms(reps, || with.build().expect("builds"));
            let (mut advance, mut advance_ring) = (f64::MAX, f64::MAX);
            for _ in 0..reps {
                let mut replay = Replay::new(&without).expect("replays");
                let t = Instant::now();
                replay.advance(&with).expect("extends");
                advance = advance.min(t.elapsed().as_secs_f64() * 1e3);
                black_box(replay.ring().expect("builds"));
                advance_ring = advance_ring.min(t.elapsed().as_secs_f64() * 1e3);
            }
            cols.push(format!(
                "{a:.2} / {b:.2} / {advance:.3} / {advance_ring:.3}"
            ));
        }
        println!("| {label} | {} | {} |", cols[0], cols[1]);
    }

    // A long history: 1000 joins, then 500 random joins, leaves and reweights.
    let mut churned = base.clone();
    let mut live = members(n);
    let mut x = 0x5eedu64;
    for j in 0..500 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (x >> 33) as usize % live.len();
        match j % 3 {
            0 => live.push(Member::new(
                format!("late-{j:04}"),
                1 + (x >> 60) as u32 % 3,
            )),
            1 => {
                live.remove(pick);
            }
            _ => live[pick].weight = 1 + (x >> 61) as u32 % 4,
        }
        churned = churned.evolve(&live).expect("valid names");
    }
    println!(
        "\nreplaying a churned history (1000 joins + 500 joins/leaves/reweights = {} ops, ms)",
        churned.ops.len()
    );
    println!("\n| history | alg 1 | alg 2 |");
    println!("|---|---|---|");
    for (label, spec) in [("1000 joins", &base), ("churned", &churned)] {
        let t: Vec<f64> = [1u32, 2]
            .iter()
            .map(|&a| {
                let s = at(a, spec.clone());
                best_ms(reps, || s.build().expect("builds"))
            })
            .collect();
        println!("| {label} | {:.3} | {:.3} |", t[0], t[1]);
    }
}
