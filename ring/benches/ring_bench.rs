//! Side-by-side benchmark of the ringshift ring against `hashring` 0.3 and `pingora-ketama` 0.9.
//! Run: `cargo bench -p ringshift-ring` (prints tables; `RING_BENCH_QUICK=1` for a short run).

use pingora_ketama::{Bucket, Continuum};
use ringshift_ring::{FULL_SPAN, Member, Placement, RingSpec, diff, key_hash};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const VNODES: u16 = 64;
const PEER_VNODES: usize = 160;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
}

#[derive(Hash, Clone, Copy, PartialEq, Debug)]
struct VNode {
    member: u32,
    replica: u32,
}

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("node-{i:04}"), 1))
        .collect()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7000))
}

fn ketama(ids: &[usize]) -> Continuum {
    let buckets: Vec<Bucket> = ids.iter().map(|&i| Bucket::new(addr(i), 1)).collect();
    Continuum::new(&buckets)
}

fn hashring(ids: &[usize]) -> hashring::HashRing<VNode> {
    let mut ring = hashring::HashRing::new();
    let nodes = ids
        .iter()
        .flat_map(|&i| {
            (0..PEER_VNODES as u32).map(move |replica| VNode {
                member: i as u32,
                replica,
            })
        })
        .collect();
    ring.batch_add(nodes);
    ring
}

/// Member index of a ketama owner (from the address it was built with).
fn ket_owner(c: &Continuum, key: &[u8]) -> u64 {
    match c.node(key) {
        Some(SocketAddr::V4(a)) => {
            let o = a.ip().octets();
            u64::from(o[2]) * 250 + u64::from(o[3]) - 1
        }
        _ => u64::MAX,
    }
}

fn hr_owner(r: &hashring::HashRing<VNode>, key: &[u8]) -> u64 {
    let arr: [u8; 16] = key.try_into().unwrap_or([0; 16]);
    r.get(&arr).map_or(u64::MAX, |v| u64::from(v.member))
}

/// Best of `reps` timings of `f`.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed());
    }
    best
}

/// Peak and min of per-member counts relative to the mean.
fn spread(counts: &[u64]) -> (f64, f64) {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let max = *counts.iter().max().unwrap_or(&0) as f64;
    let min = *counts.iter().min().unwrap_or(&0) as f64;
    (max / mean, min / mean)
}

struct Row {
    n: usize,
    lookup: [f64; 3],
    exact_balance: (f64, f64),
    sampled_balance: [(f64, f64); 3],
    churn_balance: (f64, f64),
    moved_add: [f64; 3],
    moved_remove: [f64; 3],
    diff_us: [f64; 3],
    tokens: (usize, usize),
    json: (usize, usize),
}

fn main() {
    let quick = std::env::var_os("RING_BENCH_QUICK").is_some();
    let lookups = if quick { 200_000 } else { 1_000_000 };
    let mut rng = Rng(42);
    let keys: Vec<[u8; 16]> = (0..lookups)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&rng.next().to_le_bytes());
            k[8..].copy_from_slice(&rng.next().to_le_bytes());
            k
        })
        .collect();
    let sample_keys = if quick { 400_000 } else { 4_000_000 };
    let load_keys: Vec<[u8; 16]> = (0..sample_keys)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&rng.next().to_le_bytes());
            k[8..].copy_from_slice(&rng.next().to_le_bytes());
            k
        })
        .collect();
    let mut rows = Vec::new();
    for n in [10usize, 100, 1000] {
        let ids: Vec<usize> = (0..n).collect();
        let ms = members(n);
        let spec = RingSpec::with_members(VNODES, &ms).unwrap();
        let reps = if n == 1000 { 3 } else { 10 };
        // Build times: `cargo bench -p ringshift-ring --bench build`.
        let ours = spec.build().unwrap();
        let ket = ketama(&ids);
        let hr = hashring(&ids);

        // Interleaved best-of-N so that noise from other processes hits all three alike.
        let per_key = |d: Duration| d.as_secs_f64() * 1e9 / keys.len() as f64;
        let mut best = [Duration::MAX; 3];
        for _ in 0..if quick { 3 } else { 9 } {
            best[0] = best[0].min(time(1, || {
                keys.iter()
                    .map(|k| ours.owner_index(key_hash(k)) as u64)
                    .sum::<u64>()
            }));
            best[1] = best[1].min(time(1, || {
                keys.iter().map(|k| ket.node_idx(k) as u64).sum::<u64>()
            }));
            best[2] = best[2].min(time(1, || {
                keys.iter()
                    .map(|k| hr.get(k).map_or(0, |v| v.member as u64))
                    .sum::<u64>()
            }));
        }
        let lookup = best.map(per_key);

        // Load: exact for ours, sampled for all three (same keys).
        let b = ours.balance();
        let mut c_ours = vec![0u64; n];
        let mut c_ket = vec![0u64; n];
        let mut c_hr = vec![0u64; n];
        for k in &load_keys {
            c_ours[ours.owner_index(key_hash(k)) as usize] += 1;
            c_ket[ket_owner(&ket, k) as usize] += 1;
            c_hr[hr.get(k).unwrap().member as usize] += 1;
        }
        let sampled_balance = [spread(&c_ours), spread(&c_ket), spread(&c_hr)];

        // Moved on add-one / remove-one: exact for ours, sampled for peers.
        let mut add_ms = ms.clone();
        add_ms.push(Member::new("node-added", 1));
        let add_spec = spec.evolve(&add_ms).unwrap();
        let mut rm_ms = ms.clone();
        rm_ms.remove(n / 2);
        let rm_spec = spec.evolve(&rm_ms).unwrap();
        let mut rep_ms = ms.clone();
        rep_ms.drain(0..n / 10);
        rep_ms.extend((0..n / 10).map(|i| Member::new(format!("node-repl-{i:04}"), 1)));
        let rep_spec = spec.evolve(&rep_ms).unwrap();
        let base_map = ours.owner_map();
        let add_map = add_spec.build().unwrap().owner_map();
        let rm_map = rm_spec.build().unwrap().owner_map();
        let rep_map = rep_spec.build().unwrap().owner_map();
        let moved = |a, b| {
            diff(a, b).iter().map(|t| t.ranges.span()).sum::<u128>() as f64 / FULL_SPAN as f64
        };
        let opt_add = 1.0 / (n as f64 + 1.0);
        let opt_rm = 1.0 / n as f64;
        let mut ids_add = ids.clone();
        ids_add.push(n);
        let mut ids_rm = ids.clone();
        ids_rm.remove(n / 2);
        let sampled_moved = |before: &dyn Fn(&[u8]) -> u64, after: &dyn Fn(&[u8]) -> u64| {
            let changed = keys
                .iter()
                .filter(|k| before(&k[..]) != after(&k[..]))
                .count();
            changed as f64 / keys.len() as f64
        };
        let (ket_add, ket_rm) = (ketama(&ids_add), ketama(&ids_rm));
        let (hr_add, hr_rm) = (hashring(&ids_add), hashring(&ids_rm));
        let moved_add = [
            moved(&base_map, &add_map) / opt_add,
            sampled_moved(&|k| ket_owner(&ket, k), &|k| ket_owner(&ket_add, k)) / opt_add,
            sampled_moved(&|k| hr_owner(&hr, k), &|k| hr_owner(&hr_add, k)) / opt_add,
        ];
        let moved_remove = [
            moved(&base_map, &rm_map) / opt_rm,
            sampled_moved(&|k| ket_owner(&ket, k), &|k| ket_owner(&ket_rm, k)) / opt_rm,
            sampled_moved(&|k| hr_owner(&hr, k), &|k| hr_owner(&hr_rm, k)) / opt_rm,
        ];
        let diff_us = [
            time(reps * 3, || diff(&base_map, &add_map)).as_secs_f64() * 1e6,
            time(reps * 3, || diff(&base_map, &rm_map)).as_secs_f64() * 1e6,
            time(reps * 3, || diff(&base_map, &rep_map)).as_secs_f64() * 1e6,
        ];

        // Balance after 100 random joins and leaves.
        let mut churned = spec.clone();
        let mut live: Vec<Member> = ms.clone();
        for j in 0..100 {
            if rng.next().is_multiple_of(2) && live.len() > 2 {
                live.remove((rng.next() % live.len() as u64) as usize);
            } else {
                live.push(Member::new(format!("node-churn-{j:03}"), 1));
            }
            churned = churned.evolve(&live).unwrap();
        }
        let cb = churned.build().unwrap();
        let churn_balance = (cb.balance().peak_to_mean, cb.balance().min_to_mean);

        // Placement JSON: balanced, and replacing 10% with half of the transfers committed.
        let balanced = Placement::new("uid", spec.clone()).unwrap();
        let mut moving = balanced.set_target(rep_spec.clone()).unwrap();
        let transfers = moving.transfers().unwrap();
        let half: Vec<(&str, &str)> = transfers
            .iter()
            .step_by(2)
            .map(|t| (t.source.as_str(), t.target.as_str()))
            .collect();
        moving = moving.commit_all(&half).unwrap();
        let json = (
            serde_json::to_vec(&balanced).unwrap().len(),
            serde_json::to_vec(&moving).unwrap().len(),
        );

        rows.push(Row {
            n,
            lookup,
            exact_balance: (b.peak_to_mean, b.min_to_mean),
            sampled_balance,
            churn_balance,
            moved_add,
            moved_remove,
            diff_us,
            tokens: (ours.tokens().len(), ours.max_tokens_per_member()),
            json,
        });
        eprintln!("measured n={n}");
    }

    println!(
        "\nringshift ring (algorithm 1, {VNODES} vnodes) vs pingora-ketama 0.9 (160 points/member) vs hashring 0.3 ({PEER_VNODES} vnodes)"
    );
    println!(
        "{} random 16-byte keys per lookup run; peers' load and movement sampled with keys\n",
        keys.len()
    );
    println!("| members | lookup ns/key ours / ketama / hashring | fastest peer ÷ ours |");
    println!("|---|---|---|");
    for r in &rows {
        let fastest = r.lookup[1].min(r.lookup[2]);
        println!(
            "| {} | {:.1} / {:.1} / {:.1} | {:.1}x |",
            r.n,
            r.lookup[0],
            r.lookup[1],
            r.lookup[2],
            fastest / r.lookup[0],
        );
    }
    println!(
        "\n| members | peak/mean (min/mean) ours exact | sampled ours / ketama / hashring | ours after 100 joins+leaves |"
    );
    println!("|---|---|---|---|");
    for r in &rows {
        let s = r.sampled_balance;
        println!(
            "| {} | {:.4} ({:.4}) | {:.3} ({:.3}) / {:.3} ({:.3}) / {:.3} ({:.3}) | {:.4} ({:.4}) |",
            r.n,
            r.exact_balance.0,
            r.exact_balance.1,
            s[0].0,
            s[0].1,
            s[1].0,
            s[1].1,
            s[2].0,
            s[2].1,
            r.churn_balance.0,
            r.churn_balance.1
        );
    }
    println!(
        "\n| members | moved on add ÷ 1/(N+1) ours / ketama / hashring | moved on remove ÷ 1/N ours / ketama / hashring | diff µs add / remove / replace 10% | tokens (max/member) | placement JSON balanced / in transition |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | {:.0} / {:.0} / {:.0} | {} ({}) | {:.1} KiB / {:.1} KiB |",
            r.n,
            r.moved_add[0],
            r.moved_add[1],
            r.moved_add[2],
            r.moved_remove[0],
            r.moved_remove[1],
            r.moved_remove[2],
            r.diff_us[0],
            r.diff_us[1],
            r.diff_us[2],
            r.tokens.0,
            r.tokens.1,
            r.json.0 as f64 / 1024.0,
            r.json.1 as f64 / 1024.0,
        );
    }
}
