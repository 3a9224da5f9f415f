//! Benchmark: redis-benchmark against ringshift-node (durable group commit) and redis-server
//! (appendonly with appendfsync everysec, and always) in the same run; prints a table with
//! ratios. Usage (release build recommended):
//!
//!     cargo build --release -p ringshift-node
//!     target/release/ringshift-node-bench [--requests N] [--pipelined-requests N] [--rounds R]
//!         [--only ringshift|redis] [--baseline-bin path/to/older/ringshift-node]
//!         [--tests set,get]   (redis-benchmark -t names, e.g. hset,sadd,lpush,lpop,lrange_100)
//!         [--serve-secs S]   (start the servers and keep them up for S seconds, for profiling;
//!                             RINGSHIFT_BENCH_NODE_STDERR=1 passes the nodes' stderr through)
//!         [--memory-hashes N] (instead of redis-benchmark: memory and disk bytes per key after
//!                             writing N small hashes; see `memory.rs`)
//!
//! All servers run at once and take turns on each test (median of R rounds), so load from other
//! jobs on a shared machine hits them alike. `--baseline-bin` adds a second ringshift node built
//! from another version, for before/after numbers measured in the same run.
//!
//! Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools). Uses 127.0.1.20-23
//! (127.K.1.20-23 with RINGSHIFT_TEST_NET=K, as the node tests do, so checkouts sharing a
//! machine can measure at once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use ringshift_node_api::client::AdminClient;
use ringshift_node_api::{MemberEndpoint, Placement, PlacementInstall};
use ringshift_ring::{Member, RingSpec};

mod common;
#[path = "resp_bench/memory.rs"]
mod memory;
use common::{Proc, TOKEN, arg, start_node, test_net_ip, wait_child_port};

const CLIENTS: &str = "50";
const KEYSPACE: &str = "1000000";

fn redis_server(dir: &Path, ip: &str, fsync: &str) -> Result<Proc, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let child = Command::new("redis-server")
        .args([
            "--bind",
            ip,
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", fsync, "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let mut child = Proc(child);
    wait_child_port(&mut child, &format!("{ip}:6379"))?;
    Ok(child)
}

fn node(bin: &Path, dir: &Path, ip: &str) -> Result<Proc, String> {
    let child = start_node(bin, dir, "bench", ip)?;
    let spec = RingSpec::with_members(16, &[Member::new("bench", 1)]).map_err(|e| e.to_string())?;
    let body = PlacementInstall {
        placement: Placement::new("bench", spec).map_err(|e| e.to_string())?,
        members: vec![MemberEndpoint {
            name: "bench".into(),
            data_addr: format!("{ip}:6379"),
            admin_addr: format!("{ip}:8080"),
        }],
        write_pause_budget_ms: 1000,
        incarnations: Default::default(),
        owners_digest: None,
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(
        AdminClient::new(reqwest::Client::new(), &format!("{ip}:8080"), TOKEN).put_placement(&body),
    )
    .map_err(|e| e.to_string())?;
    Ok(child)
}

/// `lrange_N`'s N: redis-benchmark's LRANGE tests read the first N elements of `mylist`.
fn lrange_len(test: &str) -> Option<u64> {
    test.strip_prefix("lrange_")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
}

/// What a test needs stored before it is measured: redis-benchmark's own LRANGE tests push
/// their list first in the same run (as many LPUSHes as LRANGEs), which would count the
/// pushes' server CPU as the reads'; the list is pushed here instead, unmeasured.
fn prepare(ip: &str, test: &str) -> Result<(), String> {
    let Some(len) = lrange_len(test) else {
        return Ok(());
    };
    let out = Command::new("redis-benchmark")
        .args(["-h", ip, "-p", "6379", "-c", CLIENTS, "-P", "16", "-q"])
        .args(["-n", &len.to_string(), "LPUSH", "mylist", "xxx"])
        .output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    if !out.status.success() {
        return Err(format!("filling mylist on {ip} failed"));
    }
    Ok(())
}

/// requests/s of one redis-benchmark test at pipeline depth `p`.
fn bench(ip: &str, test: &str, p: u64, n: u64) -> Result<f64, String> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args([
        "-h", ip, "-p", "6379", "-c", CLIENTS, "-r", KEYSPACE, "--csv",
    ])
    .args(["-n", &n.to_string(), "-P", &p.to_string()]);
    match lrange_len(test) {
        // (The same command redis-benchmark's test sends, without its fill.)
        Some(len) => cmd.args(["LRANGE", "mylist", "0", &(len - 1).to_string()]),
        None => cmd.args(["-t", test]),
    };
    let out = cmd.output().map_err(|e| format!("redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last result: a test that needs data first (redis-benchmark's lrange tests fill a list)
    // reports that step on an earlier line.
    for line in text.lines().rev() {
        let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
        if let [_, value, ..] = cols.as_slice()
            && let Ok(v) = value.parse::<f64>()
        {
            return Ok(v);
        }
    }
    Err(format!(
        "no {test} result from redis-benchmark against {ip}: {text}"
    ))
}

/// User + system CPU seconds a process has used so far (0 if unreadable).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn opt(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn run() -> Result<(), String> {
    let n1 = arg("--requests", 200_000);
    let n16 = arg("--pipelined-requests", 1_000_000);
    let rounds = arg("--rounds", 3).max(1);
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("ringshift-node");
    let baseline = opt("--baseline-bin").map(PathBuf::from);
    let only = opt("--only");
    let root = PathBuf::from(format!("/tmp/ringshift-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ip = |last: u8| -> &'static str { Box::leak(test_net_ip(1, last).into_boxed_str()) };
    let mut targets = vec![
        ("redis everysec", ip(20)),
        ("redis always", ip(21)),
        ("ringshift durable", ip(22)),
    ];
    if baseline.is_some() {
        targets.push(("ringshift baseline", ip(23)));
    }
    targets.retain(|(name, _)| only.as_deref().is_none_or(|o| name.contains(o)));
    let memory_hashes = opt("--memory-hashes").and_then(|s| s.parse::<u64>().ok());
    if memory_hashes.is_some() {
        // appendfsync always would write the same files as everysec.
        targets.retain(|(name, _)| *name != "redis always");
    }
    // Every server runs for the whole benchmark and the targets take turns on each test, so a
    // burst of load from other jobs on the machine hits all of them alike.
    let mut procs = Vec::new();
    for (name, ip) in &targets {
        let dir = root.join(name.replace(' ', "-"));
        procs.push(match *name {
            "redis everysec" => redis_server(&dir, ip, "everysec")?,
            "redis always" => redis_server(&dir, ip, "always")?,
            "ringshift baseline" => node(baseline.as_deref().unwrap_or(&bin), &dir, ip)?,
            _ => node(&bin, &dir, ip)?,
        });
    }
    if let Some(secs) = opt("--serve-secs").and_then(|s| s.parse::<u64>().ok()) {
        // For profiling: keep the servers up without running the benchmark.
        for (name, ip) in &targets {
            eprintln!("{name}: {ip}:6379");
        }
        std::thread::sleep(Duration::from_secs(secs));
        drop(procs);
        let _ = std::fs::remove_dir_all(&root);
        return Ok(());
    }
    if let Some(n) = memory_hashes {
        let measured: Vec<memory::Target> = targets
            .iter()
            .zip(&procs)
            .map(|((name, ip), proc)| memory::Target {
                name,
                addr: format!("{ip}:6379"),
                pid: proc.0.id(),
                dir: root.join(name.replace(' ', "-")),
                kind: if name.starts_with("redis") {
                    memory::Kind::Redis
                } else {
                    memory::Kind::Node
                },
            })
            .collect();
        let result = memory::run(&measured, n).map_err(|e| e.to_string());
        drop(procs);
        let _ = std::fs::remove_dir_all(&root);
        return result;
    }
    // results[(test, pipeline)][target] = rps per round; cpu: server CPU µs per request.
    let mut results: BTreeMap<(String, u64), BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    let mut cpu: BTreeMap<(String, u64), BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    let tests = opt("--tests").unwrap_or_else(|| "set,get".to_string());
    for (p, n) in [(1, n1), (16, n16)] {
        for test in tests.split(',') {
            for round in 0..rounds {
                for ((name, ip), proc) in targets.iter().zip(&procs) {
                    eprintln!("{test} -P {p} round {}: {name}", round + 1);
                    prepare(ip, test)?;
                    let before = cpu_secs(proc.0.id());
                    let rps = bench(ip, test, p, n)?;
                    let used = cpu_secs(proc.0.id()) - before;
                    let key = (test.to_uppercase(), p);
                    results
                        .entry(key.clone())
                        .or_default()
                        .entry(*name)
                        .or_default()
                        .push(rps);
                    cpu.entry(key)
                        .or_default()
                        .entry(*name)
                        .or_default()
                        .push(used * 1e6 / n as f64);
                }
            }
        }
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&root);
    let with_baseline = baseline.is_some();
    print!(
        "| test | pipeline | redis everysec | redis always | ringshift durable | vs everysec | vs always |"
    );
    println!(
        "{}",
        if with_baseline {
            " ringshift baseline | vs baseline |"
        } else {
            ""
        }
    );
    print!("|---|---|---|---|---|---|---|");
    println!("{}", if with_baseline { "---|---|" } else { "" });
    for ((test, p), row) in &results {
        let get = |k: &str| row.get(k).cloned().map(median).unwrap_or(0.0);
        let (es, al, rs, bl) = (
            get("redis everysec"),
            get("redis always"),
            get("ringshift durable"),
            get("ringshift baseline"),
        );
        let ratio = |a: f64, b: f64| {
            if b > 0.0 && a > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            }
        };
        print!(
            "| {test} | -P {p} | {es:.0} | {al:.0} | {rs:.0} | {} | {} |",
            ratio(rs, es),
            ratio(rs, al)
        );
        if with_baseline {
            print!(" {bl:.0} | {} |", ratio(rs, bl));
        }
        println!();
    }
    // CPU time per request is much less sensitive than throughput to other jobs on the machine.
    println!(
        "\n| server CPU µs per request | pipeline | redis everysec | redis always | ringshift durable |{}",
        if with_baseline {
            " ringshift baseline |"
        } else {
            ""
        }
    );
    println!(
        "|---|---|---|---|---|{}",
        if with_baseline { "---|" } else { "" }
    );
    for ((test, p), row) in &cpu {
        let get = |k: &str| row.get(k).cloned().map(median).unwrap_or(0.0);
        print!(
            "| {test} | -P {p} | {:.2} | {:.2} | {:.2} |",
            get("redis everysec"),
            get("redis always"),
            get("ringshift durable")
        );
        if with_baseline {
            print!(" {:.2} |", get("ringshift baseline"));
        }
        println!();
    }
    println!(
        "\n{CLIENTS} clients, random keys (-r {KEYSPACE}), requests/s, median of {rounds} rounds \
         (targets take turns); ringshift fsyncs every group commit before acknowledging."
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
