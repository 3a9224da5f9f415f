//! Benchmark of moving ranges between two node processes on loopback (prints tables):
//!
//! - copy: a pull of N keys (16-byte keys, 100-byte values) from a source node into a target
//!   node, as a ratio to the lower of two limits measured in the same run: raw loopback TCP
//!   throughput of the same bytes, and the target engine's local bulk-ingest rate of the same
//!   keys (the ingestion path a pull uses, in this process, into a fresh data directory);
//! - catch-up: the highest sustained write rate on the source at which the target's lag still
//!   converges (binary search on the rate, short steps).
//!
//! Usage:
//!
//!     cargo build --release -p ringshift-node
//!     target/release/ringshift-copy-bench [--keys N] [--step-secs S] [--searches K]
//!
//! Uses 127.K.1.30-32 (K = RINGSHIFT_TEST_NET, default 0). Sizes are of keys and values (16 + 100 bytes a key).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use ringshift_node::engine::{self, EngineConfig, ingest};
use ringshift_node::keys;
use ringshift_node_api::client::AdminClient;
use ringshift_node_api::{
    Caller, HashRange, MemberEndpoint, Placement, PlacementInstall, PullPhase, StartPull,
};
use ringshift_ring::{Member, RingSpec};

mod common;
use common::{TOKEN, arg, start_node, test_net_ip};

// The node's allocator, so the local ingestion is measured as the node would run it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// 127.K.1.30-32 in this checkout's test block (RINGSHIFT_TEST_NET=K).
static SOURCE_IP: LazyLock<String> = LazyLock::new(|| test_net_ip(1, 30));
static TARGET_IP: LazyLock<String> = LazyLock::new(|| test_net_ip(1, 31));
static TCP_IP: LazyLock<String> = LazyLock::new(|| test_net_ip(1, 32));
const VALUE_BYTES: usize = 100;
const KEY_VALUE_BYTES: u64 = 16 + VALUE_BYTES as u64;

fn key(i: u64) -> String {
    format!("key:{i:012}")
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("{i:020}").into_bytes();
    v.resize(VALUE_BYTES, b'v');
    v
}

fn endpoint(name: &str, ip: &str) -> MemberEndpoint {
    MemberEndpoint {
        name: name.into(),
        data_addr: format!("{ip}:6379"),
        admin_addr: format!("{ip}:8080"),
    }
}

fn admin(ip: &str) -> AdminClient {
    AdminClient::new(reqwest::Client::new(), &format!("{ip}:8080"), TOKEN)
}

/// Appends a RESP command.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Sends `frames` (each answered by one `+OK` line) and reads the answers, `depth` in flight
/// (frames sent together go out in one write).
fn send_all(stream: &mut TcpStream, frames: &[Vec<u8>], depth: usize) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending_ok = 0usize;
    let mut next = 0;
    let mut carry = 0usize;
    let mut out = Vec::new();
    while next < frames.len() || pending_ok > 0 {
        out.clear();
        while next < frames.len() && pending_ok < depth {
            out.extend_from_slice(&frames[next]);
            next += 1;
            pending_ok += 1;
        }
        if !out.is_empty() {
            stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
        }
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if buf[..n].contains(&b'-') {
            return Err(format!(
                "error reply: {}",
                String::from_utf8_lossy(&buf[..n])
            ));
        }
        // Every answer is "+OK\r\n": count line ends.
        let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
        carry += lines;
        let done = carry.min(pending_ok);
        pending_ok -= done;
        carry -= done;
    }
    Ok(())
}

/// Writes keys `range` to the source with MSETs of 500 pairs, over 4 connections.
fn load(keys: std::ops::Range<u64>) -> Result<(), String> {
    let total = keys.end - keys.start;
    let parts = 4u64;
    let handles: Vec<_> = (0..parts)
        .map(|p| {
            let lo = keys.start + total * p / parts;
            let hi = keys.start + total * (p + 1) / parts;
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = TcpStream::connect(format!("{}:6379", *SOURCE_IP))
                    .map_err(|e| e.to_string())?;
                let frames: Vec<Vec<u8>> = (lo..hi)
                    .collect::<Vec<_>>()
                    .chunks(500)
                    .map(|c| {
                        let pairs: Vec<(String, Vec<u8>)> =
                            c.iter().map(|i| (key(*i), value(*i))).collect();
                        let mut args: Vec<&[u8]> = vec![b"MSET"];
                        for (k, v) in &pairs {
                            args.push(k.as_bytes());
                            args.push(v);
                        }
                        let mut f = Vec::new();
                        command(&mut f, &args);
                        f
                    })
                    .collect();
                send_all(&mut s, &frames, 8)
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "loader panicked".to_string())??;
    }
    Ok(())
}

/// Bytes per second of one loopback TCP stream carrying `bytes`.
fn tcp_rate(bytes: u64) -> Result<f64, String> {
    let listener = TcpListener::bind(format!("{}:7000", *TCP_IP)).map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || -> Result<u64, String> {
        let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(got);
            }
            got += n as u64;
        }
    });
    let block = vec![0x5Au8; 256 * 1024];
    let started = Instant::now();
    let mut s = TcpStream::connect(format!("{}:7000", *TCP_IP)).map_err(|e| e.to_string())?;
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(block.len() as u64) as usize;
        s.write_all(&block[..n]).map_err(|e| e.to_string())?;
        sent += n as u64;
    }
    drop(s);
    let got = reader.join().map_err(|_| "reader panicked".to_string())??;
    let secs = started.elapsed().as_secs_f64();
    if got != bytes {
        return Err(format!("tcp: sent {bytes}, received {got}"));
    }
    Ok(bytes as f64 / secs)
}

/// Keys and values per second of the engine's bulk ingestion of the same keys (sorted, in
/// the pull's units, durable), into a fresh data directory.
fn ingest_rate(dir: &Path, n: u64) -> Result<f64, String> {
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            let mut stored = 0u64.to_be_bytes().to_vec();
            stored.extend_from_slice(&value(i));
            (keys::storage_key(key(i).as_bytes()), stored)
        })
        .collect();
    entries.sort_unstable();
    let config = EngineConfig {
        member: "ingest".into(),
        durable: true,
        retention_bytes: 256 << 20,
        retention_age_ms: 3_600_000,
        pin_cap_bytes: 2 << 30,
        cache_bytes: 0,
        memtable_bytes: 16 << 20,
    };
    let (e, _) =
        engine::open(dir, config, |_| Err("no placement".into())).map_err(|e| e.to_string())?;
    // Chunks as a pull receives them (built before the clock starts).
    let mut chunks = Vec::new();
    let mut it = entries.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(32_768).collect::<Vec<_>>());
    }
    let mut chunks = chunks.into_iter();
    let started = Instant::now();
    let mut more = true;
    while more {
        let mut last = false;
        let unit = ingest::ingest(
            &e,
            || {
                let c = chunks.next();
                last = c.is_none();
                c
            },
            ringshift_node::pull::UNIT_BYTES,
            &ingest::UNGUARDED,
        )
        .map_err(|e| e.to_string())?;
        more = !last && unit.keys > 0;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((n * KEY_VALUE_BYTES) as f64 / secs)
}

fn caller(epoch: u64, uid: &str) -> Caller {
    Caller {
        cluster_uid: "bench".into(),
        epoch,
        migration_uid: uid.into(),
        attempt: 1,
    }
}

/// Writes random keys of `0..keyspace` to the source at about `rate` SETs per second (8
/// connections, paced every 10 ms) until `stop`; counts what was acknowledged.
fn write_load(rate: u64, keyspace: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let per_conn = rate / 8;
    let handles: Vec<_> = (0..8u64)
        .map(|c| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(format!("{}:6379", *SOURCE_IP)) else {
                    return;
                };
                let started = Instant::now();
                let mut sent = 0u64;
                let mut x = c.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                while !stop.load(Ordering::Relaxed) {
                    let due = (started.elapsed().as_secs_f64() * per_conn as f64) as u64;
                    let n = due.saturating_sub(sent).min(2000);
                    if n == 0 {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    let frames: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let i = x % keyspace;
                            let mut f = Vec::new();
                            command(&mut f, &[b"SET", key(i).as_bytes(), &value(i + 1)]);
                            f
                        })
                        .collect();
                    if send_all(&mut s, &frames, 256).is_err() {
                        return;
                    }
                    sent += n;
                    done.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// Runs writes at `rate` for `secs` while the target catches up; true if the lag converged
/// (at the end no larger than at the start of the second half, and below a quarter second of
/// writes). Returns the rate the source actually sustained.
async fn catch_up_step(rate: u64, secs: u64, keyspace: u64, uid: &str) -> (bool, f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || write_load(rate, keyspace, stop, done))
    };
    let started = Instant::now();
    let target = admin(&TARGET_IP);
    let lag = || async {
        target
            .pull(uid)
            .await
            .ok()
            .and_then(|s| s.lag)
            .unwrap_or(u64::MAX)
    };
    tokio::time::sleep(Duration::from_secs(secs) / 2).await;
    let mid = lag().await;
    tokio::time::sleep(Duration::from_secs(secs) / 2).await;
    let end = lag().await;
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();
    let achieved = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    // Let the target drain before the next step.
    for _ in 0..100 {
        if lag().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = end <= mid.max(rate / 4) && end <= rate / 4 + 1000;
    (converged, achieved, end)
}

async fn run() -> Result<(), String> {
    let n = arg("--keys", 1_000_000).max(1000);
    if std::env::args().any(|a| a == "--ingest-only") {
        let dir = PathBuf::from(format!("/tmp/ringshift-copy-bench-{}", std::process::id()));
        let rate = ingest_rate(&dir, n)?;
        let _ = std::fs::remove_dir_all(&dir);
        println!("engine bulk ingestion: {:.0} MB/s", rate / 1e6);
        return Ok(());
    }
    let step_secs = arg("--step-secs", 4).max(2);
    let searches = arg("--searches", 6);
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("ringshift-node");
    let root = PathBuf::from(format!("/tmp/ringshift-copy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let payload = n * KEY_VALUE_BYTES;

    eprintln!("raw loopback TCP of {payload} bytes");
    let tcp = tcp_rate(payload)?;
    eprintln!("engine bulk ingestion of {n} keys");
    let ingest = ingest_rate(&root.join("ingest"), n)?;
    let _ = std::fs::remove_dir_all(root.join("ingest"));

    let _source = start_node(&bin, &root.join("source"), "src", &SOURCE_IP)?;
    let _target = start_node(&bin, &root.join("target"), "dst", &TARGET_IP)?;
    let spec = RingSpec::with_members(16, &[Member::new("src", 1)]).map_err(|e| e.to_string())?;
    let p1 = Placement::new("bench", spec).map_err(|e| e.to_string())?;
    let members = vec![endpoint("src", &SOURCE_IP), endpoint("dst", &TARGET_IP)];
    let install = |p: &Placement| PlacementInstall {
        placement: p.clone(),
        members: members.clone(),
        write_pause_budget_ms: 1000,
        incarnations: Default::default(),
        owners_digest: None,
    };
    for ip in [&SOURCE_IP, &TARGET_IP] {
        admin(ip)
            .put_placement(&install(&p1))
            .await
            .map_err(|e| e.to_string())?;
    }
    eprintln!("loading {n} keys into the source");
    let loaded = Instant::now();
    tokio::task::spawn_blocking(move || load(0..n))
        .await
        .map_err(|e| e.to_string())??;
    eprintln!("loaded in {:.1} s", loaded.elapsed().as_secs_f64());

    // The whole hash space moves: every key is copied.
    let uid = "copy-bench";
    eprintln!("copying");
    let started = Instant::now();
    admin(&TARGET_IP)
        .start_pull(&StartPull {
            caller: caller(p1.epoch(), uid),
            source: endpoint("src", &SOURCE_IP),
            ranges: vec![HashRange::FULL],
            bytes_per_sec: None,
            verify: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    let copied = loop {
        let s = admin(&TARGET_IP)
            .pull(uid)
            .await
            .map_err(|e| e.to_string())?;
        match s.phase {
            PullPhase::CatchingUp => break s,
            PullPhase::Failed | PullPhase::Cancelled => {
                return Err(format!("pull ended: {s:?}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let copy_secs = started.elapsed().as_secs_f64();
    if copied.keys_copied != n {
        return Err(format!("copied {} keys of {n}", copied.keys_copied));
    }
    let copy = payload as f64 / copy_secs;
    let limit = tcp.min(ingest);
    let mb = |r: f64| r / 1e6;
    println!("| copy of {n} keys (16 B keys, 100 B values) | MB/s of keys and values |");
    println!("|---|---|");
    println!("| raw loopback TCP, same bytes | {:.0} |", mb(tcp));
    println!(
        "| target engine bulk ingestion, same keys | {:.0} |",
        mb(ingest)
    );
    println!(
        "| pull between two nodes ({copy_secs:.2} s) | {:.0} |",
        mb(copy)
    );
    println!(
        "| ratio to the lower limit | {:.2} (goal >= 0.7, and >= 200 MB/s) |",
        copy / limit
    );
    println!();

    // Catch-up: the target tails the source's log; find the highest write rate it keeps up with.
    eprintln!("catch-up search");
    let (mut lo, mut hi) = (0u64, 400_000u64);
    let mut rows = Vec::new();
    let mut rate = 20_000u64;
    for _ in 0..searches {
        let (ok, achieved, lag) = catch_up_step(rate, step_secs, n, uid).await;
        eprintln!("rate {rate}: achieved {achieved:.0}/s, lag {lag}, converged {ok}");
        rows.push((rate, achieved, lag, ok));
        // The source could not write faster: the search is bounded by the source.
        let source_bound = achieved < rate as f64 * 0.9;
        if ok {
            lo = lo.max(achieved as u64);
            if source_bound {
                break;
            }
        } else {
            hi = rate;
        }
        rate = if hi == 400_000 {
            rate * 2
        } else {
            (lo + hi) / 2
        };
        if hi.saturating_sub(lo) < hi / 10 {
            break;
        }
    }
    println!(
        "| write rate asked (SET/s) | achieved on the source | target lag at the end | converged |"
    );
    println!("|---|---|---|---|");
    for (rate, achieved, lag, ok) in &rows {
        println!("| {rate} | {achieved:.0} | {lag} | {ok} |");
    }
    println!(
        "\nhighest converging write rate: {lo} SET/s ({step_secs} s steps, random keys of the {n}, 100 B values)"
    );
    let _ = admin(&TARGET_IP)
        .cancel_pull(&caller(p1.epoch(), uid))
        .await;
    drop((_source, _target));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
