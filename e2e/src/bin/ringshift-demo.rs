//! `ringshift-demo`: the demo behind `make demo` (see `ringshift_e2e::demo`). Exits 1 when any
//! acknowledged write was lost, 2 when a step failed, 130 on Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ringshift_e2e::demo::{self, DemoError, DemoOptions};
use ringshift_e2e::load::StopFlag;

#[derive(Parser, Debug)]
#[command(about = "Scale a ringshift cluster out and in under live load, and check every write")]
struct Args {
    #[arg(long, default_value = "demo")]
    namespace: String,
    #[arg(long, default_value = "demo")]
    cluster: String,
    /// Member counts to go through, starting with the initial size.
    #[arg(long, value_delimiter = ',', default_value = "3,5,2")]
    steps: Vec<i32>,
    /// Operations per second of the load.
    #[arg(long, default_value_t = 2000)]
    load_rate: u64,
    /// The helm binary.
    #[arg(long, env = "HELM", default_value = "helm")]
    helm: PathBuf,
    /// Seconds each step may take.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Keep the namespace and the Helm release at the end.
    #[arg(long)]
    keep: bool,
    /// Prometheus that scrapes the cluster (make demo starts the harness's); the summary then
    /// ends with a PNG of the run.
    #[arg(long)]
    prometheus: Option<String>,
    /// Where the PNG of the run goes.
    #[arg(long, default_value = "target/demo/report.png")]
    report: PathBuf,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let opts = DemoOptions {
        namespace: a.namespace,
        cluster: a.cluster,
        steps: a.steps,
        load_rate: a.load_rate,
        helm: a.helm,
        timeout: Duration::from_secs(a.timeout_secs),
        keep: a.keep,
        prometheus: a.prometheus,
        report_png: a.report,
    };
    let interrupt = StopFlag::default();
    {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                println!("\n[demo] Ctrl-C: stopping and cleaning up");
                interrupt.stop();
            }
        });
    }
    let result = demo::run(&opts, interrupt).await;
    demo::cleanup(&opts).await;
    match result {
        Ok(s) => {
            println!();
            println!("== summary");
            println!("moves: {}", s.moves);
            println!("bytes copied: {}", s.bytes);
            match s.pause_p50_p99 {
                Some((p50, p99)) => println!("cutover pause p50/p99: {p50:.0} ms / {p99:.0} ms"),
                None => println!("cutover pause p50/p99: n/a / n/a"),
            }
            println!("writes acknowledged: {}", s.writes_acked);
            println!("acknowledged writes lost: {}", s.lost);
            println!("stale reads: {}", s.stale_reads);
            println!("client errors seen: {}", s.client_errors);
            println!("longest client stall: {} ms", s.longest_stall_ms);
            match &s.report {
                Ok(path) => {
                    println!(
                        "report (ops/s, latency, moves, cutover pauses, bytes over time): {}",
                        path.display()
                    );
                    if !s.report_gaps.is_empty() {
                        println!("  no data for: {}", s.report_gaps.join("; "));
                    }
                }
                Err(e) => println!("report: none ({e})"),
            }
            if s.lost > 0 || s.stale_reads > 0 {
                std::process::exit(1);
            }
        }
        Err(DemoError::Interrupted) => std::process::exit(130),
        Err(e) => {
            eprintln!("[demo] failed: {e}");
            std::process::exit(2);
        }
    }
}
