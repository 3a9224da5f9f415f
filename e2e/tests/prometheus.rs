//! End-to-end with a real Prometheus (Debian's, started by `e2e/cluster/prometheus.sh`): it
//! scrapes the operator and every shard pod while a 2 -> 3 scale runs under load. Then every
//! dashboard expression returns data, every alert rule evaluates cleanly and every series it
//! names exists, and two alerts fire for real: RingshiftNodeDown (a shard pod's process is
//! stopped with SIGSTOP) and RingshiftMemberDegraded (an invalid spec).

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use nix::sys::signal::Signal;
use ringshift_e2e::support::promql::{Prometheus, dashboard_exprs, dashboard_path, metric_names};
use ringshift_e2e::support::{
    self, CheckedLoad, LoadShape, OperatorProcess, TestNamespace, apply_cluster, faults,
    install_crds, preload, ringshift_api, scale, wait_balanced, wait_ready,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(300);

/// The dashboard's expression with Grafana's variables filled in.
fn instantiate(expr: &str, ns: &str, cluster: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$namespace", ns)
        .replace("$cluster", cluster)
}

#[tokio::test]
async fn dashboard_and_alerts_work_against_a_real_prometheus() {
    let Some(env) =
        support::env_or_skip("dashboard_and_alerts_work_against_a_real_prometheus").await
    else {
        return;
    };
    install_crds().expect("CRDs");
    let prom = Prometheus::start().expect("prometheus (apt-get install prometheus)");
    let ns = TestNamespace::create(&env, "e2e-prom")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(5)).expect("operator");
    prom.add_operator(
        &ns.name,
        &op.metrics_addr().await.expect("operator metrics address"),
        "op-0",
    )
    .expect("operator target");
    let name = "pm";
    apply_cluster(
        &ns.client,
        &ns.name,
        name,
        json!({
            "replicas": 2,
            "vnodes": 16,
            "migration": {
                "sourceRetention": "1s",
                "maxConcurrentMoves": 1,
                "writePauseBudget": "1s",
                // Slow enough that Prometheus scrapes every move in flight.
                "bandwidthBytesPerSecond": "400000",
            },
        }),
    )
    .await
    .expect("ShardCluster");
    if let Err(e) = wait_ready(&ns.client, &ns.name, name, TIMEOUT).await {
        panic!("{e}\noperator log:\n{}", op.log_tail(40));
    }
    wait_balanced(&ns.client, &ns.name, name, TIMEOUT)
        .await
        .expect("Balanced");
    preload(&ns, name, "pm", 3000, 1000).await.expect("preload");
    let load = CheckedLoad::start(
        &ns,
        name,
        LoadShape {
            workers: 4,
            keys: 200,
            rate: 400,
        },
        "prom",
    )
    .await
    .expect("load");
    scale(&ns, name, 3).await.expect("scale");
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Err(e) = wait_balanced(&ns.client, &ns.name, name, TIMEOUT).await {
        panic!("{e}\noperator log:\n{}", op.log_tail(60));
    }
    // An unknown command on each node: the errors panel has a series to show.
    let pods = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .list(&Default::default())
        .await
        .expect("pods");
    for p in &pods.items {
        let Some(ip) = support::pod_ip(p) else {
            continue;
        };
        // The cluster has no spec.auth: no password.
        let client = redis::Client::open(format!("redis://{ip}:6379/")).expect("redis url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let r: redis::RedisResult<()> = redis::cmd("NOSUCHCOMMAND").query_async(&mut c).await;
        assert!(r.is_err(), "an unknown command is an error");
    }
    // A few more scrapes under load after the last cutover.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let report = load.finish().await;
    println!("load: {report:?}");

    // Every dashboard expression returns data.
    let mut missing = Vec::new();
    for expr in dashboard_exprs(&dashboard_path()).expect("dashboard") {
        let q = instantiate(&expr, &ns.name, name);
        match prom.query(&q).await {
            Ok(r) if !r.is_empty() => {}
            Ok(_) => missing.push(format!("no data: {q}")),
            Err(e) => missing.push(format!("{e}")),
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard expressions without data:\n{}\noperator log:\n{}",
        missing.join("\n"),
        op.log_tail(20)
    );

    // Every alert rule is loaded, evaluates without error, and every series it names exists.
    let rules = prom.alert_rules().await.expect("rules");
    assert_eq!(rules.len(), 8, "rules loaded: {rules:?}");
    let mut broken = Vec::new();
    for (alert, query, health, err) in &rules {
        if health != "ok" {
            broken.push(format!("{alert}: health {health} {err}"));
        }
        for metric in metric_names(query) {
            let q = format!("group({metric})");
            match prom.query(&q).await {
                Ok(r) if !r.is_empty() => {}
                other => broken.push(format!("{alert}: no series of {metric}: {other:?}")),
            }
        }
    }
    assert!(broken.is_empty(), "alert rules:\n{}", broken.join("\n"));

    // Two alerts fire for real: a node stops answering; the spec turns invalid.
    let stopped = format!("{name}-0");
    faults::signal_pod(&env, &ns.name, &stopped, "node", Signal::SIGSTOP).expect("SIGSTOP");
    ringshift_api(&ns.client, &ns.name, "ShardCluster")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicationFactor": 3}})),
        )
        .await
        .expect("invalid spec");
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut node_down, mut degraded) = (false, false);
    let mut last = Vec::new();
    while !(node_down && degraded) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(3)).await;
        last = prom.alerts().await.expect("alerts");
        let firing = |alert: &str, key: &str, value: &str| {
            last.iter()
                .any(|(l, state)| state == "firing" && l["alertname"] == alert && l[key] == value)
        };
        node_down = firing("RingshiftNodeDown", "pod", &stopped);
        degraded = firing("RingshiftMemberDegraded", "cluster", name);
    }
    let _ = faults::signal_pod(&env, &ns.name, &stopped, "node", Signal::SIGCONT);
    assert!(
        node_down && degraded,
        "RingshiftNodeDown firing: {node_down}, RingshiftMemberDegraded firing: {degraded}; alerts: {last:?}"
    );
    prom.remove_operator(&ns.name);
    drop(op);
    ns.cleanup().await;
}
