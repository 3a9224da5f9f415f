//! `ringshift-operator-scale`: one operator for many clusters, measured on the local harness.
//!
//! Starts the operator (a local process, every namespace, no leader election so that no Lease
//! traffic mixes in), creates `--clusters` one-member ShardClusters across `--namespaces`
//! namespaces, waits until all are Ready, then measures from kube-apiserver's own
//! `apiserver_request_total`:
//! - idle: requests/s over `--idle-seconds`, by verb and resource, and the harness's own
//!   background (kubelet, controller-manager) over `--baseline-seconds` with the operator
//!   frozen (SIGSTOP), which is subtracted;
//! - moves: `--moves` clusters scaled 1 -> 2 members (one move each); requests per second per
//!   move in flight over the time moves are in flight (the benchmark's own polling and the
//!   background subtracted).
//!
//! Also the operator's reconcile p99 (its `ringshift_operator_reconcile_duration_seconds`
//! histogram) and its RSS (/proc/PID/status VmRSS). Prints one table; `make operator-scale`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use ringshift_e2e::exposition::{
    Sample, bucket_delta, buckets, delta, quantile_bound, samples, sum_by, vm_rss_kib,
};
use ringshift_e2e::support::{bin_dir, install_crds, kubeconfig_path};
use serde_json::json;

#[derive(Parser)]
#[command(about = "API requests, reconcile latency and memory of one operator for many clusters")]
struct Args {
    /// ShardClusters to create (one member each).
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 4)]
    namespaces: usize,
    /// Clusters scaled 1 -> 2 for the moves measurement.
    #[arg(long, default_value_t = 10)]
    moves: usize,
    /// Length of the idle measurement.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Length of the background measurement (operator frozen).
    #[arg(long, default_value_t = 30)]
    baseline_seconds: u64,
    /// How long all clusters may take to become Ready.
    #[arg(long, default_value_t = 900)]
    ready_timeout: u64,
    /// The operator binary (default: the workspace's).
    #[arg(long)]
    operator: Option<String>,
    /// Name of this run in the table (e.g. the branch).
    #[arg(long, default_value = "this checkout")]
    label: String,
    /// Leave the namespaces behind.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Exposition(#[from] ringshift_e2e::exposition::ExpositionError),
    #[error("{0}")]
    Support(#[from] ringshift_e2e::support::SupportError),
    #[error("{0}")]
    Other(String),
}

const GROUP: &str = "ringshift.dev";
const REQUESTS: &str = "apiserver_request_total";
const RECONCILE: &str = "ringshift_operator_reconcile_duration_seconds_bucket";
const DURATION: &str = "apiserver_request_duration_seconds_bucket";
const STEPS: &str = "ringshift_operator_reconcile_step_seconds_bucket";

fn shard_clusters(client: &Client, ns: Option<&str>) -> Api<DynamicObject> {
    resource(client, ns, "ShardCluster", "shardclusters")
}

fn resource(client: &Client, ns: Option<&str>, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource {
        group: GROUP.into(),
        version: "v1alpha1".into(),
        api_version: format!("{GROUP}/v1alpha1"),
        kind: kind.into(),
        plural: plural.into(),
    };
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// One reading of the API server's own metrics.
struct ApiScrape {
    /// Requests by (verb, resource, subresource), leases and non-resource URLs left out.
    requests: BTreeMap<Vec<String>, f64>,
    /// The same by (verb, resource, subresource, code): duplicate creates (409) show here.
    by_code: BTreeMap<Vec<String>, f64>,
    /// Latency buckets (the API server's `apiserver_request_duration_seconds`) of the requests
    /// to ringshift's kinds, and of every request; WATCH and CONNECT (long-running) left out.
    latency_ours: Vec<(f64, f64)>,
    latency_all: Vec<(f64, f64)>,
}

/// Reads kube-apiserver's /metrics once.
async fn scrape(client: &Client) -> Result<ApiScrape, BenchError> {
    let text = client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .map_err(|e| BenchError::Other(e.to_string()))?,
        )
        .await?;
    let all: Vec<Sample> = samples(&text, REQUESTS)?
        .into_iter()
        .filter(|s| {
            let r = s.labels.get("resource").map(String::as_str).unwrap_or("");
            // Leases (leader election, node heartbeats) and non-resource URLs (this /metrics).
            r != "leases" && !r.is_empty()
        })
        .collect();
    let timed: Vec<Sample> = samples(&text, DURATION)?
        .into_iter()
        .filter(|s| {
            let v = s.labels.get("verb").map(String::as_str).unwrap_or("");
            let r = s.labels.get("resource").map(String::as_str).unwrap_or("");
            v != "WATCH" && v != "CONNECT" && r != "leases" && !r.is_empty()
        })
        .collect();
    Ok(ApiScrape {
        requests: sum_by(&all, &["verb", "resource", "subresource"]),
        by_code: sum_by(&all, &["verb", "resource", "subresource", "code"]),
        latency_ours: buckets(&timed, &[("group", GROUP)]),
        latency_all: buckets(&timed, &[]),
    })
}

/// Requests counted by the API server, by (verb, resource, subresource), leases left out.
async fn api_requests(client: &Client) -> Result<BTreeMap<Vec<String>, f64>, BenchError> {
    Ok(scrape(client).await?.requests)
}

/// `p50 / p99` of the latency observed between two readings, with the request count.
fn latency_line(before: &[(f64, f64)], after: &[(f64, f64)]) -> String {
    let d = bucket_delta(before, after);
    let n = d.last().map(|b| b.1).unwrap_or(0.0);
    format!(
        "p50 {} / p99 {} ({n:.0} requests)",
        fmt_p99(quantile_bound(&d, 0.5)),
        fmt_p99(quantile_bound(&d, 0.99))
    )
}

/// The operator process under test.
struct Operator {
    child: Child,
    log: std::path::PathBuf,
}

impl Operator {
    fn start(bin: &str, lease_ns: &str) -> Result<Operator, BenchError> {
        let log = std::env::temp_dir().join(format!("ringshift-operator-scale-{lease_ns}.log"));
        let file = std::fs::File::create(&log)
            .map_err(|e| BenchError::Other(format!("creating {}: {e}", log.display())))?;
        let child = Command::new(bin)
            .args(["run", "--no-leader-election", "--listen", "127.0.0.1:0"])
            .env("KUBECONFIG", kubeconfig_path())
            // RINGSHIFT_SCALE_RUST_LOG: e.g. debug spans of one module while investigating.
            .env(
                "RUST_LOG",
                std::env::var("RINGSHIFT_SCALE_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| BenchError::Other(format!("starting {bin}: {e}")))?;
        Ok(Operator { child, log })
    }

    async fn metrics_addr(&self) -> Result<String, BenchError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(a) = log
                .lines()
                .find(|l| l.contains("serving /healthz"))
                .and_then(|l| l.find("127.0.0.1:").map(|i| &l[i..]))
            {
                return Ok(a
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Other(format!(
                    "the operator logged no metrics address (see {})",
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| vm_rss_kib(&s))
            .map(|k| k as f64 / 1024.0)
            .unwrap_or(f64::NAN)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn reconcile_buckets(
    http: &reqwest::Client,
    addr: &str,
) -> Result<BTreeMap<String, Vec<(f64, f64)>>, BenchError> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| BenchError::Other(format!("operator metrics: {e}")))?
        .text()
        .await
        .map_err(|e| BenchError::Other(format!("operator metrics: {e}")))?;
    let s = samples(&text, RECONCILE)?;
    let mut out = BTreeMap::new();
    for c in ["shardcluster", "migration"] {
        out.insert(c.to_string(), buckets(&s, &[("controller", c)]));
    }
    // Steps of a reconcile, keyed "controller step" (operators that report them).
    let steps = samples(&text, STEPS)?;
    let names: std::collections::BTreeSet<(String, String)> = steps
        .iter()
        .filter_map(|x| {
            Some((
                x.labels.get("controller")?.clone(),
                x.labels.get("step")?.clone(),
            ))
        })
        .collect();
    for (c, st) in names {
        let b = buckets(&steps, &[("controller", &c), ("step", &st)]);
        out.insert(format!("{c} {st}"), b);
    }
    Ok(out)
}

fn ready(obj: &DynamicObject) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn total(d: &BTreeMap<Vec<String>, f64>) -> f64 {
    d.values().sum()
}

/// Whether a request of (verb, resource, subresource) can be the operator's: its own kinds,
/// Events, and the kinds it reads or writes, but not the status subresources of built-in kinds
/// (the controller-manager and the kubelet write those as pods start), nor the pod and claim
/// writes of the StatefulSet and volume controllers (the operator only deletes pods and claims).
fn operator_kind(key: &[String]) -> bool {
    let (verb, resource, sub) = (key[0].as_str(), key[1].as_str(), key[2].as_str());
    match resource {
        // Events are counted from the Events themselves (`operator_events`): the
        // controller-manager writes many more of them.
        "shardclusters" | "shardplacements" | "shardmigrations" => true,
        "statefulsets" | "services" | "secrets" | "poddisruptionbudgets" => sub.is_empty(),
        "pods" | "persistentvolumeclaims" => sub.is_empty() && verb == "DELETE",
        _ => false,
    }
}

/// Event writes by the operator so far: the occurrences of every Event it reported (each is one
/// POST, or one PATCH of a repeated Event's count).
async fn operator_events(client: &Client) -> Result<f64, BenchError> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("ringshift-operator"))
        .map(|e| {
            let repeated = e.series.as_ref().map(|s| s.count).unwrap_or(0);
            f64::from(repeated.max(1))
        })
        .sum())
}

/// Requests/s of the operator's kinds in `d` over `seconds`, less the same kinds' background
/// rate and less `own` requests of this benchmark.
fn operator_rate(
    d: &BTreeMap<Vec<String>, f64>,
    seconds: f64,
    background: &BTreeMap<Vec<String>, f64>,
    background_seconds: f64,
    own: f64,
) -> f64 {
    let ours: f64 = d
        .iter()
        .filter(|(k, _)| operator_kind(k))
        .map(|(k, v)| {
            let bg = background.get(k).copied().unwrap_or(0.0) / background_seconds;
            (v / seconds - bg).max(0.0)
        })
        .sum();
    (ours - own / seconds).max(0.0)
}

/// Unfinished ShardMigrations of the clusters in `scaled` (namespace, name).
async fn moves_in_flight(
    client: &Client,
    scaled: &[(String, String)],
) -> Result<(usize, usize), BenchError> {
    let all = resource(client, None, "ShardMigration", "shardmigrations")
        .list(&ListParams::default())
        .await?;
    let (mut live, mut done) = (0, 0);
    for m in &all.items {
        let ns = m.namespace().unwrap_or_default();
        let cluster = m.data["spec"]["cluster"].as_str().unwrap_or_default();
        if !scaled.iter().any(|(n, c)| *n == ns && c == cluster) {
            continue;
        }
        match m.data["status"]["phase"].as_str() {
            Some("Completed" | "Cancelled" | "Failed") => done += 1,
            _ => live += 1,
        }
    }
    Ok((live, done))
}

fn print_rates(title: &str, d: &BTreeMap<Vec<String>, f64>, seconds: f64) {
    println!("{title} ({seconds:.0} s), requests/s by verb, resource[/subresource]:");
    let mut rows: Vec<(&Vec<String>, &f64)> = d.iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(a.1));
    for (k, v) in rows.iter().take(15) {
        let res = if k[2].is_empty() {
            k[1].clone()
        } else {
            format!("{}/{}", k[1], k[2])
        };
        println!("  {:<8} {:<32} {:>8.3}", k[0], res, *v / seconds);
    }
}

fn fmt_p99(b: Option<f64>) -> String {
    match b {
        None => "no reconcile".into(),
        Some(x) if x.is_infinite() => "beyond the last bucket".into(),
        Some(x) => format!("<= {:.0} ms", x * 1000.0),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BenchError> {
    let client = Client::try_default().await?;
    install_crds()?;
    // Next to this binary (target/debug), unless RINGSHIFT_BIN_DIR or --operator says.
    let dir = match std::env::var_os("RINGSHIFT_BIN_DIR") {
        Some(_) => Some(bin_dir()),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(std::path::Path::to_path_buf)),
    };
    let bin = match (&args.operator, dir) {
        (Some(b), _) => b.clone(),
        (None, Some(d)) => d.join("ringshift-operator").to_string_lossy().into_owned(),
        (None, None) => bin_dir()
            .join("ringshift-operator")
            .to_string_lossy()
            .into_owned(),
    };
    let run_id = format!("{:x}", std::process::id());
    let namespaces: Vec<String> = (0..args.namespaces.max(1))
        .map(|i| format!("scale-{run_id}-{i}"))
        .collect();
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in &namespaces {
        ns_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))
                    .map_err(|e| BenchError::Other(e.to_string()))?,
            )
            .await?;
    }
    let result = measure(&args, &client, &bin, &namespaces).await;
    if !args.keep {
        for ns in &namespaces {
            let _ = ns_api.delete(ns, &Default::default()).await;
        }
    }
    result
}

async fn measure(
    args: &Args,
    client: &Client,
    bin: &str,
    namespaces: &[String],
) -> Result<(), BenchError> {
    let op = Operator::start(bin, &namespaces[0])?;
    let addr = op.metrics_addr().await?;
    let http = reqwest::Client::new();
    let started = Instant::now();

    // Clusters, round robin over the namespaces.
    let mut clusters: Vec<(String, String)> = Vec::new();
    for i in 0..args.clusters {
        let ns = namespaces[i % namespaces.len()].clone();
        let name = format!("c{i:03}");
        let obj = json!({"apiVersion": format!("{GROUP}/v1alpha1"), "kind": "ShardCluster",
                         "metadata": {"name": name},
                         // Moves end as soon as the copy is committed (no retention of the
                         // moved source copy): the measurement follows whole moves.
                         "spec": {"replicas": 1, "migration": {"sourceRetention": "0s"}}});
        shard_clusters(client, Some(&ns))
            .patch(
                &name,
                &PatchParams::apply("scale-bench"),
                &Patch::Apply(&obj),
            )
            .await?;
        clusters.push((ns, name));
    }
    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    let mut last = 0;
    loop {
        let list = shard_clusters(client, None)
            .list(&ListParams::default())
            .await?;
        let n = list
            .items
            .iter()
            .filter(|c| namespaces.contains(&c.namespace().unwrap_or_default()) && ready(c))
            .count();
        if n != last {
            eprintln!(
                "[scale] {n}/{} clusters Ready after {:.0} s; operator RSS {:.1} MiB",
                args.clusters,
                started.elapsed().as_secs_f64(),
                op.rss_mib()
            );
            last = n;
        }
        if n == args.clusters {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Other(format!(
                "only {n}/{} clusters Ready after {} s",
                args.clusters, args.ready_timeout
            )));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let ready_after = started.elapsed().as_secs_f64();
    // Let the last status writes and Events land.
    tokio::time::sleep(Duration::from_secs(20)).await;

    // Idle, with the operator running.
    let r0 = reconcile_buckets(&http, &addr).await?;
    let e0 = operator_events(client).await?;
    let a0 = api_requests(client).await?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let a1 = api_requests(client).await?;
    let e1 = operator_events(client).await?;
    let r1 = reconcile_buckets(&http, &addr).await?;
    let idle = delta(&a0, &a1);
    let idle_rss = op.rss_mib();

    // The harness's own background, with the operator frozen.
    op.signal(nix::sys::signal::Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b0 = api_requests(client).await?;
    tokio::time::sleep(Duration::from_secs(args.baseline_seconds)).await;
    let b1 = api_requests(client).await?;
    op.signal(nix::sys::signal::Signal::SIGCONT);
    let background = delta(&b0, &b1);
    let idle_s = args.idle_seconds as f64;
    let base_s = args.baseline_seconds as f64;
    let background_rate = total(&background) / base_s;
    let idle_rate = (total(&idle) / idle_s - background_rate).max(0.0);
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Moves: scale `moves` clusters to two members, follow until every move finished.
    let scaled: Vec<(String, String)> = clusters.iter().take(args.moves).cloned().collect();
    let em0 = operator_events(client).await?;
    let s0 = scrape(client).await?;
    let m0 = s0.requests.clone();
    let rm0 = reconcile_buckets(&http, &addr).await?;
    for (ns, name) in &scaled {
        shard_clusters(client, Some(ns))
            .patch(
                name,
                &PatchParams::apply("scale-bench"),
                &Patch::Apply(&json!({"apiVersion": format!("{GROUP}/v1alpha1"),
                    "kind": "ShardCluster", "metadata": {"name": name}, "spec": {"replicas": 2, "migration": {"sourceRetention": "0s"}}})),
            )
            .await?;
    }
    let mut own = scaled.len() as f64;
    let mut move_seconds = 0.0;
    let mut peak_rss: f64 = op.rss_mib();
    let mut peak_live = 0;
    let mut tick = Instant::now();
    // Time is summed per poll, each step capped: this machine's clock can jump when the VM is
    // paused, and a jump is no time the moves were in flight.
    let mut window = 0.0;
    for polls in 0.. {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (live, done) = moves_in_flight(client, &scaled).await?;
        own += 1.0;
        let now = Instant::now();
        let dt = now.duration_since(tick).as_secs_f64().min(5.0);
        window += dt;
        move_seconds += live as f64 * dt;
        tick = now;
        peak_live = peak_live.max(live);
        peak_rss = peak_rss.max(op.rss_mib());
        if live == 0 && done >= scaled.len() {
            break;
        }
        if polls > 600 {
            return Err(BenchError::Other(format!(
                "moves still in flight after 600 polls ({live} live, {done} done)"
            )));
        }
    }
    let s1 = scrape(client).await?;
    let m1 = s1.requests.clone();
    let em1 = operator_events(client).await?;
    let rm1 = reconcile_buckets(&http, &addr).await?;
    let moving = delta(&m0, &m1);
    let all_moving = (total(&moving) - own - background_rate * window).max(0.0);
    let ours_moving =
        operator_rate(&moving, window, &background, base_s, own) * window + (em1 - em0).max(0.0);
    let (per_move_all, per_move) = if move_seconds > 0.0 {
        (all_moving / move_seconds, ours_moving / move_seconds)
    } else {
        (f64::NAN, f64::NAN)
    };
    let idle_ours =
        operator_rate(&idle, idle_s, &background, base_s, 0.0) + (e1 - e0).max(0.0) / idle_s;

    println!();
    print_rates("idle, everything but leases", &idle, idle_s);
    print_rates("background (operator frozen)", &background, base_s);
    print_rates("moves in flight, everything but leases", &moving, window);
    let codes = delta(&s0.by_code, &s1.by_code);
    let created = |code: &str| {
        codes
            .get(&vec![
                "POST".to_string(),
                "shardmigrations".to_string(),
                String::new(),
                code.to_string(),
            ])
            .copied()
            .unwrap_or(0.0)
    };
    let conflicts: f64 = codes
        .iter()
        .filter(|(k, _)| k[3] == "409" && operator_kind(k))
        .map(|(_, v)| v)
        .sum();
    println!(
        "while moving: ShardMigration POSTs {:.0} created / {:.0} refused (409); 409 conflicts on the operator's kinds {conflicts:.0}",
        created("201"),
        created("409")
    );
    for (k, after) in rm1.iter().filter(|(k, _)| k.contains(' ')) {
        let before = rm0.get(k).map(Vec::as_slice).unwrap_or(&[]);
        println!(
            "reconcile step while moving: {k:<22} {}",
            latency_line(before, after).replace("requests", "steps")
        );
    }
    println!(
        "operator requests per move: {:.1} (requests of the operator's kinds and its Events over the window, less background and own)",
        ours_moving / scaled.len().max(1) as f64
    );
    println!(
        "API server latency while moving (its apiserver_request_duration_seconds, WATCH left out): ringshift.dev kinds {}; all kinds {}",
        latency_line(&s0.latency_ours, &s1.latency_ours),
        latency_line(&s0.latency_all, &s1.latency_all)
    );
    println!();
    println!(
        "| {} | clusters | idle req/s per cluster (goal <= 0.05): operator's kinds / all | req/s per move in flight (goal <= 5): operator's kinds / all | reconcile p99 shardcluster / migration, idle (goal <= 100 ms) | same, moving | RSS idle / peak MiB (goal <= 150) |",
        args.label
    );
    println!("|---|---|---|---|---|---|---|");
    let p99 =
        |a: &BTreeMap<String, Vec<(f64, f64)>>, b: &BTreeMap<String, Vec<(f64, f64)>>, c: &str| {
            fmt_p99(quantile_bound(
                &bucket_delta(
                    a.get(c).map(Vec::as_slice).unwrap_or(&[]),
                    b.get(c).map(Vec::as_slice).unwrap_or(&[]),
                ),
                0.99,
            ))
        };
    println!(
        "| {} | {} (Ready in {:.0} s) | {:.4} / {:.4} (background {:.2} req/s subtracted) | {:.2} / {:.2} ({} moves, peak {} in flight, {:.0} move-s over {:.0} s) | {} / {} | {} / {} | {:.1} / {:.1} |",
        args.label,
        args.clusters,
        ready_after,
        idle_ours / args.clusters as f64,
        idle_rate / args.clusters as f64,
        background_rate,
        per_move,
        per_move_all,
        scaled.len(),
        peak_live,
        move_seconds,
        window,
        p99(&r0, &r1, "shardcluster"),
        p99(&r0, &r1, "migration"),
        p99(&rm0, &rm1, "shardcluster"),
        p99(&rm0, &rm1, "migration"),
        idle_rss,
        peak_rss,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verb: &str, resource: &str, sub: &str) -> Vec<String> {
        vec![verb.into(), resource.into(), sub.into()]
    }

    #[test]
    fn built_in_status_writes_are_not_the_operators() {
        assert!(operator_kind(&key("PUT", "shardmigrations", "status")));
        assert!(!operator_kind(&key("PATCH", "events", "")));
        assert!(operator_kind(&key("APPLY", "statefulsets", "")));
        assert!(!operator_kind(&key("PUT", "statefulsets", "status")));
        assert!(!operator_kind(&key("PATCH", "pods", "status")));
        assert!(!operator_kind(&key("PUT", "endpoints", "")));
        // The StatefulSet controller creates pods and claims; the operator only deletes them.
        assert!(!operator_kind(&key("POST", "pods", "")));
        assert!(!operator_kind(&key("PUT", "persistentvolumeclaims", "")));
        assert!(operator_kind(&key("DELETE", "pods", "")));
    }

    #[test]
    fn the_operator_rate_leaves_out_background_and_own_requests() {
        let d = BTreeMap::from([
            (key("PUT", "shardmigrations", "status"), 20.0),
            (key("PATCH", "events", ""), 30.0),
            (key("GET", "shardclusters", ""), 25.0),
            (key("LIST", "shardmigrations", ""), 10.0),
            (key("PUT", "endpoints", ""), 100.0),
        ]);
        let background = BTreeMap::from([(key("GET", "shardclusters", ""), 5.0)]);
        // 10 s: migrations 2/s + reads (2.5 - 0.5)/s + lists 1/s - own lists 1/s = 4/s; the
        // Events and Endpoints are not counted here.
        let r = operator_rate(&d, 10.0, &background, 10.0, 10.0);
        assert!((r - 4.0).abs() < 1e-9, "{r}");
        assert_eq!(
            operator_rate(&BTreeMap::new(), 10.0, &background, 10.0, 5.0),
            0.0
        );
    }
}
