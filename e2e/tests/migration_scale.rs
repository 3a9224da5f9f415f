//! End-to-end: a ShardCluster under a live write/read load is scaled 3 -> 5 -> 2; every move
//! goes through copy, catch-up and cutover, the cluster ends Balanced, and the checker finds no
//! acknowledged write lost and no stale read. The operator runs as a local process watching the
//! test's namespace; node pods run under the process kubelet.

use std::time::Duration;

use kube::api::ListParams;
use ringshift_e2e::load::Kind;
use ringshift_e2e::support::report::conclude;
use ringshift_e2e::support::{
    self, CheckedLoad, LoadShape, OperatorProcess, SplitBrainWatch, TestNamespace, apply_cluster,
    install_crds, ringshift_api, scale, wait_balanced,
};
use serde_json::json;

const STEP_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn scale_out_and_in_under_load_loses_nothing() {
    let Some(env) = support::env_or_skip("scale_out_and_in_under_load_loses_nothing").await else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-scale")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");
    let name = "demo";
    apply_cluster(
        &ns.client,
        &ns.name,
        name,
        json!({
            "replicas": 3,
            "vnodes": 16,
            "migration": {"sourceRetention": "1s", "writePauseBudget": "1s", "maxConcurrentMoves": 2},
        }),
    )
    .await
    .expect("ShardCluster");
    let start_epoch = match wait_balanced(&ns.client, &ns.name, name, STEP_TIMEOUT).await {
        Ok(e) => e,
        Err(e) => panic!("{e}\noperator log:\n{}", op.log_tail(40)),
    };

    let load = CheckedLoad::start_mixed(
        &ns,
        name,
        LoadShape {
            workers: 6,
            keys: 300,
            rate: 1500,
        },
        "scale",
        &Kind::ALL,
    )
    .await
    .expect("load");
    let owners = SplitBrainWatch::start(&ns.client, &ns.name, name)
        .await
        .expect("split-brain watch");
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut epochs = vec![start_epoch];
    for replicas in [5, 2] {
        scale(&ns, name, replicas).await.expect("scale");
        // Give the cluster controller a moment to see the new generation.
        tokio::time::sleep(Duration::from_secs(1)).await;
        match wait_balanced(&ns.client, &ns.name, name, STEP_TIMEOUT).await {
            Ok(e) => epochs.push(e),
            Err(e) => panic!(
                "scaling to {replicas}: {e}\nload: {:?}\noperator log:\n{}",
                load.stats.snapshot(),
                op.log_tail(60)
            ),
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let done = conclude(
        "scale out and in",
        "scale 3->5->2 (no faults)",
        load,
        owners,
        started,
    )
    .await;
    done.assert_clean("scale out and in", &op.log_tail(40));
    let report = done.report;

    let migrations = ringshift_api(&ns.client, &ns.name, "ShardMigration")
        .list(&ListParams::default())
        .await
        .expect("listing migrations");
    let phases: Vec<String> = migrations
        .items
        .iter()
        .map(|m| {
            m.data["status"]["phase"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert!(
        epochs.windows(2).all(|w| w[1] > w[0]),
        "every scale commits new epochs: {epochs:?}"
    );
    assert!(
        phases.len() >= 4 && phases.iter().all(|p| p == "Completed" || p == "Cleanup"),
        "every move committed: {phases:?}\noperator log:\n{}",
        op.log_tail(40)
    );
    assert!(
        report.stats.writes_acked > 1000,
        "load ran: {:?}",
        report.stats
    );
    for kind in Kind::ALL {
        assert!(
            report.stats.acked_by_kind[kind.index()] > 100,
            "{} writes acknowledged: {:?}",
            kind.name(),
            report.stats
        );
    }
    println!(
        "scale 3->5->2: {} writes acknowledged ({}), {} lost, {} stale reads, {} keys verified, {} errors, longest stall {} ms, epochs {epochs:?}",
        report.stats.writes_acked,
        report.stats.by_kind(),
        report.lost_writes,
        report.stale_reads,
        report.keys_verified,
        report.stats.errors(),
        report.stats.longest_stall.as_millis()
    );
    drop(op);
    ns.cleanup().await;
}

/// The operator is killed (SIGKILL) again and again while a cluster scales out and back in under
/// load; each new process resumes from status. Nothing acknowledged is lost, nothing is read
/// stale, and the cluster ends Balanced.
// In the reliability tier (`make reliability`): one run of four on a loaded machine reported a
// key holding the version before its last acknowledged one; the checker then counted an
// unanswered (timed-out) write as superseded, which linearizability does not allow. The checker
// now treats unanswered writes as pending; this test stays in the long tier until it has run
// clean many times.
#[tokio::test]
#[ignore = "long: reliability tier"]
async fn operator_killed_mid_migration_resumes_without_loss() {
    let Some(env) =
        support::env_or_skip("operator_killed_mid_migration_resumes_without_loss").await
    else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-crash")
        .await
        .expect("namespace");
    let mut op =
        OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(4)).expect("operator");
    let name = "crash";
    apply_cluster(
        &ns.client,
        &ns.name,
        name,
        json!({
            "replicas": 2,
            "vnodes": 16,
            "migration": {"sourceRetention": "1s", "writePauseBudget": "1s", "maxConcurrentMoves": 1},
        }),
    )
    .await
    .expect("ShardCluster");
    if let Err(e) = wait_balanced(&ns.client, &ns.name, name, STEP_TIMEOUT).await {
        panic!("{e}\noperator log:\n{}", op.log_tail(40));
    }
    let load = CheckedLoad::start_mixed(
        &ns,
        name,
        LoadShape {
            workers: 4,
            keys: 200,
            rate: 800,
        },
        "crash",
        &Kind::ALL,
    )
    .await
    .expect("load");
    let owners = SplitBrainWatch::start(&ns.client, &ns.name, name)
        .await
        .expect("split-brain watch");
    let started = std::time::Instant::now();

    let mut kills = 0;
    for replicas in [4, 2] {
        scale(&ns, name, replicas).await.expect("scale");
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        // Kill the leader at uneven moments after it took over, restart it, and repeat until
        // the cluster settles: each kill lands in a different step of the moves.
        let mut pause_ms = 300u64;
        loop {
            assert!(
                op.wait_leading(Duration::from_secs(30)).await,
                "a restarted operator never became leader:\n{}",
                op.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            pause_ms = if pause_ms >= 1500 {
                300
            } else {
                pause_ms + 400
            };
            if wait_balanced(&ns.client, &ns.name, name, Duration::from_millis(200))
                .await
                .is_ok()
            {
                break;
            }
            op.kill();
            kills += 1;
            op = OperatorProcess::start(&ns.name, &format!("op-{kills}"), Duration::from_secs(4))
                .expect("operator restart");
            assert!(
                std::time::Instant::now() < deadline,
                "scaling to {replicas} did not settle; operator log:\n{}",
                op.log_tail(60)
            );
        }
        if let Err(e) = wait_balanced(&ns.client, &ns.name, name, STEP_TIMEOUT).await {
            panic!("{e}\noperator log:\n{}", op.log_tail(60));
        }
    }
    let done = conclude(
        "operator killed repeatedly",
        &format!("scale 2->4->2; SIGKILL operator {kills} times at uneven moments"),
        load,
        owners,
        started,
    )
    .await;
    done.assert_clean("operator killed repeatedly", &op.log_tail(40));
    let report = done.report;
    assert!(kills >= 2, "the operator was killed {kills} times");
    println!(
        "operator killed {kills} times during 2 -> 4 -> 2: {} writes acknowledged ({}), {} lost, {} stale reads, {} keys verified",
        report.stats.writes_acked,
        report.stats.by_kind(),
        report.lost_writes,
        report.stale_reads,
        report.keys_verified
    );
    drop(op);
    ns.cleanup().await;
}
