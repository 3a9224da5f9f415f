//! Benchmark: redis-benchmark against ringshift-node (durable group commit) and redis-server
//! (appendonly with appendfsync everysec, and always) in the same run; prints a table with
//! ratios. Usage (release build recommended):
//!
//!     cargo build --release -p ringshift-node
//!     target/release/ringshift-node-bench [--requests N] [--pipelined-requests N] [--only ringshift|redis]
//!
//! Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools). Uses 127.0.1.20-22.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ringshift_node_api::client::AdminClient;
use ringshift_node_api::{MemberEndpoint, Placement, PlacementInstall};
use ringshift_ring::{Member, RingSpec};

const CLIENTS: &str = "50";
const KEYSPACE: &str = "1000000";
const TOKEN: &str = "bench-token";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wait_port(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{addr} did not come up"))
}

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
    wait_port(&format!("{ip}:6379"))?;
    Ok(Proc(child))
}

fn node(bin: &Path, dir: &Path, ip: &str) -> Result<Proc, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("token"), TOKEN).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--listen",
            &format!("{ip}:6379"),
            "--admin-listen",
            &format!("{ip}:8080"),
        ])
        .args(["--member-name", "bench", "--admin-token-file"])
        .arg(dir.join("token"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    wait_port(&format!("{ip}:6379"))?;
    wait_port(&format!("{ip}:8080"))?;
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
    Ok(Proc(child))
}

/// requests/s of SET and GET at pipeline depth `p`.
fn bench(ip: &str, p: u64, n: u64) -> Result<BTreeMap<String, f64>, String> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h", ip, "-p", "6379", "-c", CLIENTS, "-r", KEYSPACE, "-t", "set,get", "--csv",
        ])
        .args(["-n", &n.to_string(), "-P", &p.to_string()])
        .output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
        if let [test, value, ..] = cols.as_slice()
            && let Ok(v) = value.parse::<f64>()
        {
            rps.insert(test.to_string(), v);
        }
    }
    if rps.is_empty() {
        return Err(format!(
            "no results from redis-benchmark against {ip}: {text}"
        ));
    }
    Ok(rps)
}

fn run() -> Result<(), String> {
    let n1 = arg("--requests", 200_000);
    let n16 = arg("--pipelined-requests", 1_000_000);
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("ringshift-node");
    let root = PathBuf::from(format!("/tmp/ringshift-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let targets = [
        ("redis everysec", "127.0.1.20"),
        ("redis always", "127.0.1.21"),
        ("ringshift durable", "127.0.1.22"),
    ];
    // results[(test, pipeline)][target] = rps
    let mut results: BTreeMap<(String, u64), BTreeMap<&str, f64>> = BTreeMap::new();
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    for (name, ip) in targets {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let dir = root.join(name.replace(' ', "-"));
        let _proc = match name {
            "redis everysec" => redis_server(&dir, ip, "everysec")?,
            "redis always" => redis_server(&dir, ip, "always")?,
            _ => node(&bin, &dir, ip)?,
        };
        for (p, n) in [(1, n1), (16, n16)] {
            eprintln!("{name}: -P {p}, {n} requests per test");
            for (test, rps) in bench(ip, p, n)? {
                results.entry((test, p)).or_default().insert(name, rps);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "| test | pipeline | redis everysec | redis always | ringshift durable | vs everysec | vs always |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((test, p), row) in &results {
        let get = |k: &str| row.get(k).copied().unwrap_or(0.0);
        let (es, al, rs) = (
            get("redis everysec"),
            get("redis always"),
            get("ringshift durable"),
        );
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            }
        };
        println!(
            "| {test} | -P {p} | {es:.0} | {al:.0} | {rs:.0} | {} | {} |",
            ratio(rs, es),
            ratio(rs, al)
        );
    }
    println!(
        "\n{CLIENTS} clients, random keys (-r {KEYSPACE}), requests/s; ringshift fsyncs every group commit before acknowledging."
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
