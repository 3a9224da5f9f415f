//! `ringshift-load`: drives a versioned write/read load against Redis-protocol nodes and checks
//! that no acknowledged write is lost. Exits 1 when the checker finds a violation.

use clap::Parser;
use ringshift_e2e::load::{Addrs, Kind, LoadConfig, Stats, StopFlag, parse_mix, run};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Versioned write/read load with a lost-write checker")]
struct Args {
    /// Node addresses (ip:port), comma separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "addrs_file")]
    addrs: Vec<String>,
    /// File with one address per line, re-read on reconnect.
    #[arg(long)]
    addrs_file: Option<PathBuf>,
    /// Password for AUTH.
    #[arg(long, env = "RINGSHIFT_LOAD_PASSWORD")]
    password: Option<String>,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    #[arg(long, default_value_t = 500)]
    keys_per_worker: usize,
    /// How long to run, e.g. 30s, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 30)]
    read_percent: u8,
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// Total operations per second (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    op_timeout: Duration,
    #[arg(long, default_value = "load")]
    prefix: String,
    /// What to write, comma separated: string, hash (HSET, a version per field), list (RPUSH,
    /// LTRIM to the last 32), zset (ZADD, score = version); or `all`. Keys are dealt out
    /// round-robin over the kinds.
    #[arg(long, default_value = "string", value_parser = parse_kinds)]
    mix: Kinds,
    /// Print a progress line every interval (0s = never).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    progress: Duration,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The kinds `--mix` names.
#[derive(Debug, Clone)]
struct Kinds(Vec<Kind>);

fn parse_kinds(s: &str) -> Result<Kinds, String> {
    parse_mix(s).map(Kinds).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m)"))?;
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s:?} (use ms, s or m)")),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let addrs = match (&args.addrs_file, args.addrs.is_empty()) {
        (Some(f), _) => Addrs::File(f.clone()),
        (None, false) => Addrs::Static(args.addrs.clone()),
        (None, true) => {
            eprintln!("error: give --addrs or --addrs-file");
            std::process::exit(2);
        }
    };
    let cfg = LoadConfig {
        addrs,
        password: args.password.clone(),
        workers: args.workers.max(1),
        keys_per_worker: args.keys_per_worker.max(1),
        duration: args.duration,
        read_percent: args.read_percent.min(100),
        value_size: args.value_size,
        op_timeout: args.op_timeout,
        rate: (args.rate > 0).then_some(args.rate),
        prefix: args.prefix.clone(),
        kinds: args.mix.0.clone(),
    };
    let stats = Arc::new(Stats::default());
    let stop = StopFlag::default();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.stop();
            }
        });
    }
    if !args.progress.is_zero() {
        let stats = stats.clone();
        let every = args.progress;
        tokio::spawn(async move {
            let mut prev = 0;
            loop {
                tokio::time::sleep(every).await;
                let s = stats.snapshot();
                let ops = s.ops();
                println!(
                    "load: {:>7.0} ops/s  acked writes {:>8}  errors {:>5}  longest stall {:>6} ms{}",
                    (ops - prev) as f64 / every.as_secs_f64(),
                    s.writes_acked,
                    s.errors(),
                    s.longest_stall.as_millis(),
                    s.last_error
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default()
                );
                prev = ops;
            }
        });
    }
    let report = run(cfg, stats, stop).await;
    let s = &report.stats;
    println!("writes acknowledged: {} ({})", s.writes_acked, s.by_kind());
    println!("writes failed (maybe applied): {}", s.writes_failed);
    println!("reads ok/failed: {}/{}", s.reads_ok, s.reads_failed);
    println!(
        "latency p50/p99/max: {:.2} / {:.2} / {:.2} ms",
        s.latency_p50.as_secs_f64() * 1e3,
        s.latency_p99.as_secs_f64() * 1e3,
        s.latency_max.as_secs_f64() * 1e3
    );
    println!("longest stall: {} ms", s.longest_stall.as_millis());
    println!(
        "keys verified: {} (unverifiable: {})",
        report.keys_verified, report.keys_unverifiable
    );
    println!("stale reads: {}", report.stale_reads);
    println!("acknowledged writes lost: {}", report.lost_writes);
    for v in &report.violations {
        println!("  {v}");
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "writesAcked": s.writes_acked,
            "writesAckedByKind": Kind::ALL
                .iter()
                .map(|k| (k.name().to_string(), serde_json::json!(s.acked_by_kind[k.index()])))
                .collect::<serde_json::Map<_, _>>(),
            "writesFailed": s.writes_failed,
            "readsOk": s.reads_ok,
            "readsFailed": s.reads_failed,
            "latencyP50Ms": s.latency_p50.as_secs_f64() * 1e3,
            "latencyP99Ms": s.latency_p99.as_secs_f64() * 1e3,
            "longestStallMs": s.longest_stall.as_millis() as u64,
            "keysVerified": report.keys_verified,
            "keysUnverifiable": report.keys_unverifiable,
            "staleReads": report.stale_reads,
            "lostWrites": report.lost_writes,
            "phantoms": report.phantoms,
            "violations": report.violations,
        });
        if let Err(e) = std::fs::write(path, json.to_string()) {
            eprintln!("error: cannot write {}: {e}", path.display());
        }
    }
    if !report.is_clean() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
