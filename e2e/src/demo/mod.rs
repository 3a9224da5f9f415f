//! `make demo`: installs the chart (the operator runs as a pod), creates a ShardCluster, puts it
//! under a live write/read load with the lost-write checker, scales it out and in while showing
//! progress, and prints a summary. Cleans up what it created, also on Ctrl-C.

pub mod view;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::load::{Addrs, LoadConfig, Stats, StopFlag, drive, finish};
use crate::support::{
    self, SupportError, apply_cluster, condition, images, repo_root, ringshift_api,
};
use view::{MoveLine, pause_percentiles, render};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub namespace: String,
    pub cluster: String,
    pub steps: Vec<i32>,
    pub load_rate: u64,
    pub helm: PathBuf,
    pub timeout: Duration,
    pub keep: bool,
    /// Prometheus scraping the cluster (the harness's); the run's report PNG is drawn from it.
    pub prometheus: Option<String>,
    /// Where the report PNG goes.
    pub report_png: PathBuf,
}

/// The numbers the demo ends with.
#[derive(Debug, Clone)]
pub struct Summary {
    pub moves: usize,
    pub bytes: u64,
    pub pause_p50_p99: Option<(f64, f64)>,
    pub writes_acked: u64,
    pub lost: usize,
    pub stale_reads: usize,
    pub client_errors: u64,
    pub longest_stall_ms: u128,
    /// The report PNG, or why there is none.
    pub report: Result<PathBuf, String>,
    /// Report panels Prometheus had no data for.
    pub report_gaps: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Support(#[from] SupportError),
    #[error("{0}")]
    Step(String),
    #[error("interrupted")]
    Interrupted,
}

const OPERATOR_NS: &str = "ringshift-system";

fn helm(opts: &DemoOptions, args: &[&str]) -> Result<(), DemoError> {
    let out = Command::new(&opts.helm)
        .env("KUBECONFIG", support::kubeconfig_path())
        .args(args)
        .output()
        .map_err(|e| DemoError::Step(format!("running {}: {e}", opts.helm.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DemoError::Step(format!(
            "helm {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

async fn wait<T, F, Fut>(
    what: &str,
    timeout: Duration,
    stop: &StopFlag,
    mut check: F,
) -> Result<T, DemoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if stop.is_stopped() {
            return Err(DemoError::Interrupted);
        }
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                return Err(DemoError::Step(format!(
                    "{what}: not after {timeout:?} ({last})"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Installs the chart and waits for an operator pod to be Ready.
async fn install_operator(
    client: &kube::Client,
    opts: &DemoOptions,
    stop: &StopFlag,
) -> Result<(), DemoError> {
    println!(
        "[demo] pushing the node and operator images to the cluster's registry {}",
        images::registry()
    );
    images::push_dev_images().await?;
    println!(
        "[demo] installing the Helm chart (operator runs as a pod, 2 replicas, leader election)"
    );
    let chart = repo_root().join("charts/ringshift");
    let registry = format!("image.registry={}", images::registry());
    let tag = format!("image.tag={}", images::DEV_TAG);
    helm(
        opts,
        &[
            "upgrade",
            "--install",
            "ringshift",
            &chart.to_string_lossy(),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            "--set",
            "logging.format=text",
            "--set",
            &registry,
            "--set",
            &tag,
            "--set",
            "image.pullPolicy=Always",
        ],
    )?;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NS);
    wait(
        "operator Deployment available",
        opts.timeout,
        stop,
        || async {
            let d = deps.get("ringshift").await.map_err(|e| e.to_string())?;
            match d.status.and_then(|s| s.ready_replicas) {
                Some(n) if n >= 1 => Ok(()),
                other => Err(format!("ready replicas {other:?}")),
            }
        },
    )
    .await
}

/// Waits until the cluster is Balanced for its current generation, printing the view.
async fn watch_until_balanced(
    client: &kube::Client,
    opts: &DemoOptions,
    step: &str,
    stats: &Stats,
    stop: &StopFlag,
) -> Result<(), DemoError> {
    let clusters = ringshift_api(client, &opts.namespace, "ShardCluster");
    let placements = ringshift_api(client, &opts.namespace, "ShardPlacement");
    let migrations = ringshift_api(client, &opts.namespace, "ShardMigration");
    let deadline = Instant::now() + opts.timeout;
    let mut last = (Instant::now(), stats.snapshot().ops());
    loop {
        if stop.is_stopped() {
            return Err(DemoError::Interrupted);
        }
        let c = clusters
            .get(&opts.cluster)
            .await
            .map_err(|e| DemoError::Step(e.to_string()))?;
        let moves: Vec<MoveLine> = migrations
            .list(&ListParams::default())
            .await
            .map(|l| l.items.iter().map(MoveLine::from_object).collect())
            .unwrap_or_default();
        let snap = stats.snapshot();
        let now = Instant::now();
        let rate =
            (snap.ops() - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(0.001);
        last = (now, snap.ops());
        print!("{}", render(step, &c, &moves, &snap, rate));
        let generation = c.metadata.generation.unwrap_or(0);
        let observed = c.data["status"]["observedGeneration"]
            .as_i64()
            .unwrap_or(-1);
        let balanced = condition(&c, "Balanced").is_some_and(|b| b.0 == "True");
        let in_transition = placements
            .get(&opts.cluster)
            .await
            .map(|p| p.data["status"]["inTransition"].as_bool().unwrap_or(true))
            .unwrap_or(true);
        if observed >= generation && balanced && !in_transition {
            println!("[demo] {step}: Balanced");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DemoError::Step(format!(
                "{step}: not Balanced after {:?}",
                opts.timeout
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the demo. `interrupt` is set on Ctrl-C.
pub async fn run(opts: &DemoOptions, interrupt: StopFlag) -> Result<Summary, DemoError> {
    let env = support::connect().await?;
    let client = env.client.clone();
    install_operator(&client, opts, &interrupt).await?;

    let nss: Api<Namespace> = Api::all(client.clone());
    // The store's pods must be admitted under the PodSecurity `restricted` level, as on a
    // hardened cluster.
    let ns: Namespace = support::from_json(json!({"metadata": {"name": opts.namespace, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}}));
    match nss.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            return Err(DemoError::Step(format!(
                "creating namespace {}: {e}",
                opts.namespace
            )));
        }
    }
    let first = opts.steps.first().copied().unwrap_or(3);
    let started = unix_now();
    println!(
        "[demo] creating ShardCluster {}/{} with {first} members",
        opts.namespace, opts.cluster
    );
    apply_cluster(
        &client,
        &opts.namespace,
        &opts.cluster,
        json!({"replicas": first, "vnodes": 32, "image": images::node_image(), "imagePullPolicy": "Always",
               "migration": {"sourceRetention": "5s", "writePauseBudget": "500ms"}}),
    )
    .await?;
    let stats = Arc::new(Stats::default());
    watch_until_balanced(
        &client,
        opts,
        &format!("start ({first} members)"),
        &stats,
        &interrupt,
    )
    .await?;

    let addrs = std::env::temp_dir().join(format!("ringshift-demo-{}-addrs", opts.namespace));
    let load_stop = StopFlag::default();
    support::follow_pods(
        &client,
        &opts.namespace,
        &opts.cluster,
        addrs.clone(),
        load_stop.clone(),
    )
    .await?;
    let cfg = LoadConfig {
        addrs: Addrs::File(addrs.clone()),
        workers: 8,
        keys_per_worker: 500,
        duration: Duration::from_secs(3600),
        rate: Some(opts.load_rate),
        op_timeout: Duration::from_secs(3),
        prefix: "demo".into(),
        ..LoadConfig::default()
    };
    println!(
        "[demo] starting the load: 8 clients, {} ops/s, 30% reads, every write versioned and checked",
        opts.load_rate
    );
    let load = {
        let (cfg, stats, stop) = (cfg.clone(), stats.clone(), load_stop.clone());
        tokio::spawn(async move { drive(&cfg, stats, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    let clusters = ringshift_api(&client, &opts.namespace, "ShardCluster");
    let mut result = Ok(());
    for replicas in opts.steps.iter().skip(1) {
        println!(
            "[demo] kubectl scale shardcluster/{} --replicas={replicas}",
            opts.cluster
        );
        if let Err(e) = clusters
            .patch(
                &opts.cluster,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
        {
            result = Err(DemoError::Step(format!("scaling: {e}")));
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = watch_until_balanced(
            &client,
            opts,
            &format!("scale to {replicas}"),
            &stats,
            &interrupt,
        )
        .await
        {
            result = Err(e);
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    load_stop.stop();
    let outcomes = load
        .await
        .map_err(|e| DemoError::Step(format!("load task: {e}")))?;
    println!("[demo] load stopped; reading every key back");
    let report = finish(&cfg, &stats, outcomes).await;
    let _ = std::fs::remove_file(&addrs);
    result?;

    let moves: Vec<MoveLine> = ringshift_api(&client, &opts.namespace, "ShardMigration")
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().map(MoveLine::from_object).collect())
        .unwrap_or_default();
    let (picture, report_gaps) = draw_report(opts, started).await;
    Ok(Summary {
        report: picture,
        report_gaps,
        moves: moves.len(),
        bytes: moves.iter().map(|m| m.bytes).sum(),
        pause_p50_p99: pause_percentiles(&moves),
        writes_acked: report.stats.writes_acked,
        lost: report.lost_writes,
        stale_reads: report.stale_reads,
        client_errors: report.stats.errors(),
        longest_stall_ms: report.stats.longest_stall.as_millis(),
    })
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The run's report from Prometheus (what `kubectl ringshift report` draws), after one more
/// scrape so that the end of the run is in it.
async fn draw_report(
    opts: &DemoOptions,
    started: f64,
) -> (Result<PathBuf, String>, Vec<&'static str>) {
    use ringshift_operator::plugin::report;
    let Some(url) = &opts.prometheus else {
        return (Err("no Prometheus given (--prometheus)".into()), vec![]);
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = match report::fetch(url, &opts.namespace, &opts.cluster, started, unix_now()).await {
        Ok(r) => r,
        Err(e) => return (Err(e.to_string()), vec![]),
    };
    if let Some(dir) = opts.report_png.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match report::write_png(&r, &opts.report_png) {
        Ok(()) => (Ok(opts.report_png.clone()), r.empty_panels()),
        Err(e) => (Err(e.to_string()), vec![]),
    }
}

/// Removes what the demo created (its namespace and the Helm release).
pub async fn cleanup(opts: &DemoOptions) {
    if opts.keep {
        println!(
            "[demo] keeping namespace {} and the Helm release (--keep)",
            opts.namespace
        );
        return;
    }
    println!(
        "[demo] cleaning up: namespace {}, Helm release ringshift",
        opts.namespace
    );
    if let Ok(env) = support::connect().await {
        let nss: Api<Namespace> = Api::all(env.client.clone());
        let _ = nss.delete(&opts.namespace, &DeleteParams::default()).await;
    }
    let _ = helm(
        opts,
        &["uninstall", "ringshift", "--namespace", OPERATOR_NS],
    );
}
