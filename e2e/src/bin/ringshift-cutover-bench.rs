//! `ringshift-cutover-bench`: cutover write pause and rebalance time, measured through the real
//! operator against the local cluster (or any cluster in KUBECONFIG).
//!
//! Pause mode (default): a cluster scales 2 -> 3 -> 2 ... under a steady write load until at
//! least `--cutovers` cutovers committed; each cutover's pause (fence to target serving) and its
//! parts come from the operator's "cutover committed" log lines. Rebalance mode
//! (`--rebalance-mib N`): N MiB are written to a 3-member cluster, which is then scaled to 4;
//! the time to Balanced and to every move committed is reported.
//!
//! Build the node, operator and this binary in release mode and point RINGSHIFT_BIN_DIR (and
//! the cluster's kubelet) at them for meaningful numbers; a debug build is reported as such.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kube::api::ListParams;
use ringshift_e2e::load::{Addrs, LoadConfig, Stats, StopFlag, drive, finish};
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, follow_pods, install_crds, ringshift_api,
    scale, wait_balanced, wait_ready, wait_until,
};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Cutover write pause (p50/p99) under load, and time to rebalance")]
struct Args {
    /// Committed cutovers to measure (0 skips the pause mode).
    #[arg(long, default_value_t = 20)]
    cutovers: usize,
    /// Writes per second of the load during the pause mode.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Load clients.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Also measure scaling 3 -> 4 with this many MiB stored (0 skips it).
    #[arg(long, default_value_t = 0)]
    rebalance_mib: u64,
    /// Write-pause budget of the cluster.
    #[arg(long, default_value = "1s")]
    write_pause_budget: String,
}

const TIMEOUT: Duration = Duration::from_secs(600);

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("ringshift-cutover-bench: {what}: {e}");
    std::process::exit(1)
}

/// Removes ANSI colour sequences (the operator's log may carry them).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One cutover: pause and its parts, in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Cutover {
    pause: f64,
    fence: f64,
    drain: f64,
    commit: f64,
    push: f64,
}

fn field(line: &str, name: &str) -> Option<f64> {
    let key = format!(" {name}=");
    let at = line.find(&key)? + key.len();
    line[at..]
        .split(|c: char| c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

/// The "cutover committed" lines of an operator log.
fn cutovers_in(log: &str) -> Vec<Cutover> {
    log.lines()
        .map(strip_ansi)
        .filter(|l| l.contains("cutover committed"))
        .filter_map(|l| {
            Some(Cutover {
                pause: field(&l, "pause_ms")?,
                fence: field(&l, "fence_ms")?,
                drain: field(&l, "drain_ms")?,
                commit: field(&l, "commit_ms")?,
                push: field(&l, "push_ms")?,
            })
        })
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "| {name:<22} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} |",
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build of the bench"
    } else {
        "release build of the bench"
    }
}

fn logs_of(ops: &[OperatorProcess]) -> String {
    ops.iter()
        .map(|o| std::fs::read_to_string(&o.log).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every ShardMigration has committed (Cleanup or Completed).
async fn wait_committed(ns: &TestNamespace) -> Result<(), String> {
    let api = ringshift_api(&ns.client, &ns.name, "ShardMigration");
    wait_until("every move committed", TIMEOUT, || async {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let open: Vec<String> = list
            .items
            .iter()
            .filter(|m| {
                !matches!(
                    m.data["status"]["phase"].as_str(),
                    Some("Cleanup" | "Completed")
                )
            })
            .filter_map(|m| m.metadata.name.clone())
            .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("open: {open:?}"))
        }
    })
    .await
    .map_err(|e| e.to_string())
}

async fn new_cluster(
    env: &support::TestEnv,
    prefix: &str,
    name: &str,
    replicas: i32,
    budget: &str,
) -> (TestNamespace, OperatorProcess) {
    let ns = TestNamespace::create(env, prefix)
        .await
        .unwrap_or_else(|e| fail("namespace", e));
    // Info logs only: debug logging would slow the operator being measured.
    let op = OperatorProcess::start_with_env(
        &ns.name,
        "bench-op",
        Duration::from_secs(15),
        &[(
            "RUST_LOG",
            &std::env::var("RINGSHIFT_BENCH_OPERATOR_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )],
    )
    .unwrap_or_else(|e| fail("operator", e));
    apply_cluster(
        &ns.client,
        &ns.name,
        name,
        json!({
            "replicas": replicas,
            "vnodes": 16,
            "migration": {
                "sourceRetention": "1s",
                "writePauseBudget": budget,
                "maxConcurrentMoves": 2,
            },
        }),
    )
    .await
    .unwrap_or_else(|e| fail("ShardCluster", e));
    wait_ready(&ns.client, &ns.name, name, TIMEOUT)
        .await
        .unwrap_or_else(|e| fail("Ready", e));
    wait_balanced(&ns.client, &ns.name, name, TIMEOUT)
        .await
        .unwrap_or_else(|e| fail("Balanced", e));
    (ns, op)
}

async fn pause_mode(env: &support::TestEnv, args: &Args) {
    let name = "cutbench";
    let (ns, op) = new_cluster(env, "bench-cut", name, 2, &args.write_pause_budget).await;
    let addrs: PathBuf = std::env::temp_dir().join(format!("ringshift-{}-addrs", ns.name));
    let stop = StopFlag::default();
    follow_pods(&ns.client, &ns.name, name, addrs.clone(), stop.clone())
        .await
        .unwrap_or_else(|e| fail("pods", e));
    let cfg = LoadConfig {
        addrs: Addrs::File(addrs.clone()),
        workers: args.workers,
        keys_per_worker: 200,
        duration: Duration::from_secs(3600),
        read_percent: 0,
        value_size: 32,
        op_timeout: Duration::from_secs(3),
        rate: Some(args.rate),
        prefix: "cut".into(),
        ..LoadConfig::default()
    };
    let stats = Arc::new(Stats::default());
    let task = {
        let (cfg, stats, stop) = (cfg.clone(), stats.clone(), stop.clone());
        tokio::spawn(async move { drive(&cfg, stats, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let acked_at_start = stats.snapshot().writes_acked;
    let ops = [op];
    let mut replicas = 2;
    let mut scales = 0;
    while cutovers_in(&logs_of(&ops)).len() < args.cutovers {
        replicas = if replicas == 2 { 3 } else { 2 };
        scales += 1;
        scale(&ns, name, replicas)
            .await
            .unwrap_or_else(|e| fail("scale", e));
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = wait_balanced(&ns.client, &ns.name, name, TIMEOUT).await {
            fail("Balanced", format!("{e}\n{}", ops[0].log_tail(30)));
        }
        if let Err(e) = wait_committed(&ns).await {
            fail("moves", e);
        }
        eprintln!(
            "scale {scales} to {replicas}: {} cutovers so far",
            cutovers_in(&logs_of(&ops)).len()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let snap = stats.snapshot();
    stop.stop();
    let outcomes = task.await.unwrap_or_else(|e| fail("load", e));
    let report = finish(&cfg, &stats, outcomes).await;
    let _ = std::fs::remove_file(&addrs);
    let cuts = cutovers_in(&logs_of(&ops));
    let col = |f: fn(&Cutover) -> f64| cuts.iter().map(f).collect::<Vec<f64>>();

    println!(
        "\ncutover write pause: {} cutovers in {scales} scale steps (2 <-> 3 members), {} writes/s asked, {:.0} writes/s acknowledged, {} ({})",
        cuts.len(),
        args.rate,
        (snap.writes_acked - acked_at_start) as f64 / secs,
        build_kind(),
        support::bin_dir().display()
    );
    println!("| ms                     |     p50 |     p90 |     p99 |     max |");
    println!("|---|---:|---:|---:|---:|");
    println!("{}", row("pause (fence -> serving)", col(|c| c.pause)));
    println!("{}", row("  fence call", col(|c| c.fence)));
    println!("{}", row("  drain to fence offset", col(|c| c.drain)));
    println!("{}", row("  commit (API server)", col(|c| c.commit)));
    println!("{}", row("  push to target", col(|c| c.push)));
    println!(
        "clients: {} writes acknowledged, {} errors, longest stall {} ms; checker: {} lost, {} stale reads",
        report.stats.writes_acked,
        report.stats.errors(),
        report.stats.longest_stall.as_millis(),
        report.lost_writes,
        report.stale_reads
    );
    drop(ops);
    ns.cleanup().await;
}

/// Writes `keys` keys of `value` bytes (`r:{i}`) through every Ready pod, `tasks` pipelines at
/// a time (each pod forwards what it does not own).
async fn parallel_preload(
    ns: &TestNamespace,
    cluster: &str,
    keys: usize,
    value: usize,
    tasks: usize,
) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default().labels(&format!("ringshift.dev/cluster={cluster}")))
        .await
        .unwrap_or_else(|e| fail("pods", e));
    let ips: Vec<String> = list
        .items
        .iter()
        .filter(|p| support::pod_ready(p))
        .filter_map(support::pod_ip)
        .collect();
    if ips.is_empty() {
        fail("preload", "no Ready pod");
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let batch = 1000;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let ip = ips[t % ips.len()].clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let client = redis::Client::open(format!("redis://{ip}:6379/"))
                .unwrap_or_else(|e| fail("redis client", e));
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(60)));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap_or_else(|e| fail("connecting", e));
            let v = "v".repeat(value);
            loop {
                let start = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                if start >= keys {
                    return;
                }
                let mut pipe = redis::pipe();
                for i in start..(start + batch).min(keys) {
                    pipe.cmd("SET").arg(format!("r:{i}")).arg(&v).ignore();
                }
                let mut tries = 0;
                while let Err(e) = pipe.query_async::<()>(&mut conn).await {
                    tries += 1;
                    if tries >= 30 {
                        fail("preload", e);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

async fn rebalance_mode(env: &support::TestEnv, args: &Args) {
    let name = "rebal";
    let (ns, op) = new_cluster(env, "bench-rebal", name, 3, &args.write_pause_budget).await;
    let value = 1024;
    let keys = (args.rebalance_mib * 1024 * 1024 / value as u64) as usize;
    let t0 = Instant::now();
    parallel_preload(&ns, name, keys, value, 12).await;
    let load_secs = t0.elapsed().as_secs_f64();
    let migrations = ringshift_api(&ns.client, &ns.name, "ShardMigration");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(ns.client.clone(), &ns.name);
    let started = Instant::now();
    scale(&ns, name, 4)
        .await
        .unwrap_or_else(|e| fail("scale", e));
    // Timeline: the new pod Ready, the first copy, the last commit.
    let (mut pod_ready, mut first_copy, mut all_committed) = (None, None, None);
    while all_committed.is_none() {
        if started.elapsed() > TIMEOUT {
            fail(
                "rebalance",
                format!("not done in {TIMEOUT:?}\n{}", op.log_tail(30)),
            );
        }
        let now = started.elapsed().as_secs_f64();
        if pod_ready.is_none()
            && let Ok(p) = pods.get_opt(&format!("{name}-3")).await
            && p.as_ref().is_some_and(support::pod_ready)
        {
            pod_ready = Some(now);
        }
        if let Ok(list) = migrations.list(&ListParams::default()).await {
            let phases: Vec<&str> = list
                .items
                .iter()
                .map(|m| m.data["status"]["phase"].as_str().unwrap_or("Pending"))
                .collect();
            if first_copy.is_none() && phases.iter().any(|p| *p != "Pending") {
                first_copy = Some(now);
            }
            if !phases.is_empty() && phases.iter().all(|p| matches!(*p, "Cleanup" | "Completed")) {
                all_committed = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Err(e) = wait_balanced(&ns.client, &ns.name, name, TIMEOUT).await {
        fail("Balanced", format!("{e}\n{}", op.log_tail(30)));
    }
    let balanced = started.elapsed().as_secs_f64();
    let list = migrations
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| fail("migrations", e));
    let moved: u64 = list
        .items
        .iter()
        .filter_map(|m| m.data["status"]["progress"]["bytes"].as_str())
        .filter_map(|b| b.parse::<u64>().ok())
        .sum();
    let first = first_copy.unwrap_or(0.0);
    let done = all_committed.unwrap_or(balanced);
    let mib = moved as f64 / 1048576.0;
    println!(
        "\nrebalance 3 -> 4 members with {} MiB stored ({keys} keys of {value} B, written in {load_secs:.1} s), {}",
        args.rebalance_mib,
        build_kind()
    );
    println!(
        "| stored | moved | moves | new pod Ready | moving (first copy -> last commit) | scale -> Balanced | copy rate while moving |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} MiB | {mib:.1} MiB | {} | {:.1} s | {:.1} s | {balanced:.1} s | {:.1} MiB/s |",
        args.rebalance_mib,
        list.items.len(),
        pod_ready.unwrap_or(f64::NAN),
        done - first,
        mib / (done - first).max(0.001)
    );
    drop(op);
    ns.cleanup().await;
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let env = support::connect()
        .await
        .unwrap_or_else(|e| fail("cluster", e));
    install_crds().unwrap_or_else(|e| fail("CRDs", e));
    if args.cutovers > 0 {
        pause_mode(&env, &args).await;
    }
    if args.rebalance_mib > 0 {
        rebalance_mode(&env, &args).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cutover_lines_with_or_without_colour() {
        let log = "2026 INFO x: cutover committed cluster=a migration=m epoch=3 pause_ms=35.5 fence_ms=1.2 drain_ms=10 commit_ms=20.25 push_ms=4\n\
                   \u{1b}[2m2026\u{1b}[0m INFO cutover committed \u{1b}[3mpause_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m12 \u{1b}[3mfence_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m1 drain_ms=2 commit_ms=3 push_ms=4\n\
                   other line pause_ms=1";
        let c = cutovers_in(log);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].pause, c[0].commit), (35.5, 20.25));
        assert_eq!((c[1].pause, c[1].fence, c[1].push), (12.0, 1.0, 4.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 99.0), 20.0);
        assert_eq!(percentile(&v, 90.0), 18.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
