//! End-to-end: what a person watching `kubectl get shardmigrations -w` sees during a scale-out
//! with a bandwidth limit: every move passes the pre-flight room check (condition
//! `TargetHasRoom=True`, `progress.estimatedBytes` close to what was then copied), shows a
//! percent between 0 and 100 and an ETA while it copies, and records its cutover pause.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, condition, install_crds, preload,
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
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
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
        if !seen.is_empty() && seen.values().all(|s| s.phase == "Completed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_balanced(&ns.client, &ns.name, name, TIMEOUT)
        .await
        .expect("Balanced");

    println!("moves seen: {seen:#?}");
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
    }
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
