//! End-to-end: what a person watching `kubectl get shardmigrations -w` sees during a scale-out
//! with a bandwidth limit: every move passes the pre-flight room check (condition
//! `TargetHasRoom=True`, `progress.estimatedBytes` close to what was then copied), shows a
//! percent between 0 and 100 and an ETA while it copies, and records its cutover pause; the
//! ShardCluster sums it up in `status.rebalance` (moves done/total, bytes, percent, ETA) and
//! its Balanced and Progress printer columns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, condition, install_crds, kubectl, preload,
    ringshift_api, scale, wait_balanced, wait_ready,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);

/// What was seen of one ShardMigration over the run.
#[derive(Debug, Default)]
struct Seen {
    partial_percents: Vec<i64>,
    copying_etas: Vec<String>,
    estimated: Option<u64>,
    copied: u64,
    room: Option<(String, String, String)>,
    pause: Option<String>,
    phase: String,
    percent: i64,
}

/// What was seen of the ShardCluster's `status.rebalance` over the run.
#[derive(Debug, Default)]
struct SeenRebalance {
    totals: Vec<i64>,
    partial_percents: Vec<i64>,
    etas: Vec<String>,
    bytes_moved: Vec<u64>,
}

#[tokio::test]
async fn scale_out_shows_room_check_progress_eta_and_pause() {
    let Some(env) = support::env_or_skip("scale_out_shows_room_check_progress_eta_and_pause").await
    else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-mstatus")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(5)).expect("operator");
    let name = "st";
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
                // Slow enough that a few polls land inside each copy.
                "bandwidthBytesPerSecond": "300000",
            },
        }),
    )
    .await
    .expect("ShardCluster");
    if let Err(e) = wait_ready(&ns.client, &ns.name, name, TIMEOUT).await {
        panic!("{e}\noperator log:\n{}", op.log_tail(40));
    }
    if let Err(e) = wait_balanced(&ns.client, &ns.name, name, TIMEOUT).await {
        panic!("{e}\noperator log:\n{}", op.log_tail(40));
    }
    preload(&ns, name, "st", 3000, 1000).await.expect("preload");
    scale(&ns, name, 3).await.expect("scale");

    let api = ringshift_api(&ns.client, &ns.name, "ShardMigration");
    let clusters = ringshift_api(&ns.client, &ns.name, "ShardCluster");
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut rebalance = SeenRebalance::default();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "moves did not finish: {seen:?}\noperator log:\n{}",
            op.log_tail(40)
        );
        let list = api.list(&ListParams::default()).await.expect("listing");
        for m in &list.items {
            let s = seen
                .entry(m.metadata.name.clone().unwrap_or_default())
                .or_default();
            let st = &m.data["status"];
            s.phase = st["phase"].as_str().unwrap_or("").to_string();
            let progress = &st["progress"];
            if let Some(e) = progress["estimatedBytes"].as_str() {
                s.estimated = e.parse().ok();
            }
            if let Some(b) = progress["bytes"].as_str() {
                s.copied = b.parse().unwrap_or(0);
            }
            let pct = progress["percent"].as_i64().unwrap_or(0);
            s.percent = pct;
            if pct > 0 && pct < 100 {
                s.partial_percents.push(pct);
            }
            if s.phase == "Copying"
                && let Some(eta) = st["eta"].as_str()
            {
                s.copying_etas.push(eta.to_string());
            }
            if let Some(c) = condition(m, "TargetHasRoom") {
                s.room = Some(c);
            }
            if let Some(p) = st["cutoverPause"].as_str() {
                s.pause = Some(p.to_string());
            }
        }
        let shc = clusters.get(name).await.expect("reading the ShardCluster");
        let r = &shc.data["status"]["rebalance"];
        if let Some(total) = r["movesTotal"].as_i64() {
            rebalance.totals.push(total);
            let pct = r["percent"].as_i64().unwrap_or(0);
            if pct > 0 && pct < 100 {
                rebalance.partial_percents.push(pct);
            }
            if let Some(eta) = r["eta"].as_str() {
                rebalance.etas.push(eta.to_string());
            }
            if let Some(b) = r["bytesMoved"].as_str().and_then(|b| b.parse().ok()) {
                rebalance.bytes_moved.push(b);
            }
        }
        if !seen.is_empty() && seen.values().all(|s| s.phase == "Completed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_balanced(&ns.client, &ns.name, name, TIMEOUT)
        .await
        .expect("Balanced");

    println!("moves seen: {seen:#?}\nrebalance seen: {rebalance:?}");
    assert!(
        seen.len() >= 2,
        "a 2 -> 3 scale-out moves from both members"
    );
    for (name, s) in &seen {
        let (status, reason, _) = s.room.clone().unwrap_or_default();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Fits"),
            "{name}: room check"
        );
        let est = s.estimated.unwrap_or_else(|| panic!("{name}: no estimate"));
        assert!(
            est > 0 && s.copied > 0,
            "{name}: estimate {est}, copied {}",
            s.copied
        );
        // The estimate comes from the source's stored bytes (engine estimate) and its share of
        // the hash space; it must be the right order of magnitude.
        let ratio = est as f64 / s.copied as f64;
        assert!(
            (0.2..=5.0).contains(&ratio),
            "{name}: estimate {est} vs copied {}",
            s.copied
        );
        assert!(s.pause.is_some(), "{name}: no cutover pause recorded");
        assert_eq!(s.percent, 100, "{name}: Completed must read 100%");
    }
    // Cluster-wide progress: seen part-way with an ETA, then whole.
    assert!(
        rebalance.totals.last() == Some(&(seen.len() as i64))
            && rebalance.totals.iter().all(|t| *t <= seen.len() as i64),
        "status.rebalance.movesTotal must count this scale's moves: {rebalance:?}"
    );
    assert!(
        !rebalance.partial_percents.is_empty() && !rebalance.etas.is_empty(),
        "status.rebalance showed no percent between 0 and 100 with an ETA: {rebalance:?}"
    );
    assert!(
        rebalance.bytes_moved.windows(2).all(|w| w[0] <= w[1]),
        "bytesMoved went backwards: {rebalance:?}"
    );
    // The cluster controller follows the moves' status changes (it watches them): give it a
    // moment after the last one.
    let copied: u64 = seen.values().map(|s| s.copied).sum();
    let want = (Some(seen.len() as i64), Some(100), None, copied);
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        let shc = clusters.get(name).await.expect("reading the ShardCluster");
        let r = shc.data["status"]["rebalance"].clone();
        let got = (
            r["movesDone"].as_i64(),
            r["percent"].as_i64(),
            r["eta"].as_str().map(String::from),
            r["bytesMoved"]
                .as_str()
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(0),
        );
        if got == want || Instant::now() > settle {
            assert_eq!(got, want, "status.rebalance after the scale: {r}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The printer columns, as `kubectl get` shows them.
    let cols = kubectl(&[
        "get",
        "shardclusters",
        name,
        "-n",
        &ns.name,
        "--no-headers",
        "-o",
        "custom-columns=B:.status.conditions[?(@.type==\"Balanced\")].status,P:.status.rebalance.summary",
    ])
    .await
    .expect("kubectl get");
    let want = format!("True 100% ({n}/{n})", n = seen.len());
    assert_eq!(
        cols.split_whitespace().collect::<Vec<_>>().join(" "),
        want,
        "printer column values"
    );
    let table = kubectl(&["get", "shardclusters", name, "-n", &ns.name])
        .await
        .expect("kubectl get");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert!(
        header.contains(&"BALANCED") && header.contains(&"PROGRESS"),
        "printer columns: {table}"
    );
    assert!(
        seen.values().any(|s| !s.partial_percents.is_empty()),
        "no move showed a percent between 0 and 100: {seen:?}"
    );
    assert!(
        seen.values().any(|s| !s.copying_etas.is_empty()),
        "no move showed an ETA while copying: {seen:?}"
    );
    drop(op);
    ns.cleanup().await;
}
