//! End-to-end: the user's controls over moves (issue #6 item 4) under a checked load.
//! `spec.migration.paused` starts no phase; the `ringshift.dev/cancel` annotation cancels a move
//! before its commit and removes the target's partial copy; the operator then re-plans the
//! transfer; finished ShardMigrations beyond `historyLimit` are garbage collected; a move
//! deleted mid-copy is planned again and its orphaned pull ended.

use std::time::Duration;

use kube::api::{Api, ListParams, Patch, PatchParams};
use ringshift_e2e::support::phases::wait_move_phase;
use ringshift_e2e::support::{
    self, CheckedLoad, LoadShape, OperatorProcess, TestNamespace, admin_token, condition,
    create_cluster, install_crds, pod_ip, preload, ringshift_api, scale, wait_balanced, wait_until,
};
use ringshift_node_api::client::AdminClient;
use ringshift_node_api::{ChecksumRequest, HashRange};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);
const NAME: &str = "ctl";

fn phases_of(list: &kube::api::ObjectList<kube::api::DynamicObject>) -> Vec<String> {
    list.items
        .iter()
        .map(|m| m.data["status"]["phase"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Keys the node at `ip` holds in `ranges` (its local data, owned or not).
async fn keys_held(ns: &TestNamespace, ip: &str, ranges: &[HashRange]) -> u64 {
    let token = admin_token(&ns.client, &ns.name, NAME)
        .await
        .expect("admin token");
    let admin = AdminClient::new(reqwest::Client::new(), &format!("{ip}:8080"), &token);
    admin
        .checksum(&ChecksumRequest {
            ranges: ranges.to_vec(),
            snapshot_of: None,
        })
        .await
        .expect("checksum")
        .keys
}

#[tokio::test]
async fn pause_cancel_and_history_limit() {
    let Some(env) = support::env_or_skip("pause_cancel_and_history_limit").await else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-control")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");
    let spec = json!({
        "replicas": 3,
        "vnodes": 16,
        "migration": {
            "sourceRetention": "1s",
            "writePauseBudget": "1s",
            "maxConcurrentMoves": 1,
            "bandwidthBytesPerSecond": "262144",
            "historyLimit": 2,
            "paused": true,
        },
    });
    if let Err(e) = create_cluster(&ns.client, &ns.name, NAME, spec, &op, TIMEOUT).await {
        panic!("{e}");
    }
    preload(&ns, NAME, "bulk", 20_000, 200)
        .await
        .expect("preload");
    let load = CheckedLoad::start(
        &ns,
        NAME,
        LoadShape {
            workers: 3,
            keys: 200,
            rate: 300,
        },
        "ctl",
    )
    .await
    .expect("load");
    let clusters = ringshift_api(&ns.client, &ns.name, "ShardCluster");
    let moves = ringshift_api(&ns.client, &ns.name, "ShardMigration");

    // Paused: the moves are planned but none starts.
    scale(&ns, NAME, 4).await.expect("scale");
    wait_until("moves planned", TIMEOUT, || async {
        let l = moves
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if l.items.is_empty() {
            Err("no ShardMigration yet".to_string())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let l = moves.list(&ListParams::default()).await.expect("list");
    assert!(
        phases_of(&l).iter().all(|p| p == "Pending"),
        "paused, yet moves started: {:?}",
        phases_of(&l)
    );
    let c = clusters.get(NAME).await.expect("cluster");
    assert_eq!(
        condition(&c, "Balanced").map(|b| b.0).as_deref(),
        Some("False")
    );
    // It says that it is paused, not that it progresses.
    wait_until("the cluster shows Paused", TIMEOUT, || async {
        let c = clusters.get(NAME).await.map_err(|e| e.to_string())?;
        let progressing = condition(&c, "Progressing").unwrap_or_default();
        let state = c.data["status"]["state"].as_str().unwrap_or("");
        if state == "Paused"
            && (progressing.0.as_str(), progressing.1.as_str()) == ("False", "Paused")
        {
            Ok(())
        } else {
            Err(format!("state {state}, Progressing {progressing:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));

    // Unpaused: a move starts copying; cancel it mid-copy.
    clusters
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"migration": {"paused": false}}})),
        )
        .await
        .expect("unpause");
    let m = wait_move_phase(&ns.client, &ns.name, NAME, "Copying", TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Paused again first, so that the re-planned move cannot start before we look.
    let set_paused = |paused: bool| {
        let clusters = clusters.clone();
        async move {
            clusters
                .patch(
                    NAME,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"migration": {"paused": paused}}})),
                )
                .await
                .expect("pause/unpause");
        }
    };
    set_paused(true).await;
    moves
        .patch(
            &m.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"ringshift.dev/cancel": "true"}}})),
        )
        .await
        .expect("annotate");
    let cancelled = wait_until("the move is cancelled", TIMEOUT, || async {
        let o = moves.get(&m.name).await.map_err(|e| e.to_string())?;
        match o.data["status"]["phase"].as_str() {
            Some("Cancelled") => Ok(o),
            other => Err(format!("phase {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    let ranges: Vec<HashRange> =
        serde_json::from_value(cancelled.data["spec"]["ranges"].clone()).expect("ranges");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let target_ip = pod_ip(&pods.get(&m.target).await.expect("target pod")).expect("target ip");
    // The target's partial copy is removed.
    wait_until(
        "the partial copy is removed",
        Duration::from_secs(60),
        || async {
            match keys_held(&ns, &target_ip, &ranges).await {
                0 => Ok(()),
                n => Err(format!(
                    "{n} keys of the cancelled ranges still on {}",
                    m.target
                )),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    set_paused(false).await;

    // The operator re-plans the cancelled transfer and the cluster settles.
    if let Err(e) = wait_balanced(&ns.client, &ns.name, NAME, TIMEOUT).await {
        panic!("after the cancel: {e}\noperator log:\n{}", op.log_tail(60));
    }
    scale(&ns, NAME, 3).await.expect("scale in");
    if let Err(e) = wait_balanced(&ns.client, &ns.name, NAME, TIMEOUT).await {
        panic!("scale in: {e}\noperator log:\n{}", op.log_tail(60));
    }
    let report = load.finish().await;
    assert!(report.is_clean(), "{:?}", report.violations);

    // History: at most historyLimit finished moves are kept.
    wait_until("finished moves are garbage collected", TIMEOUT, || async {
        let l = moves
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let finished = phases_of(&l)
            .iter()
            .filter(|p| matches!(p.as_str(), "Completed" | "Cancelled" | "Failed"))
            .count();
        if finished <= 2 {
            Ok(())
        } else {
            Err(format!(
                "{finished} finished moves kept: {:?}",
                phases_of(&l)
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));

    // A ShardMigration deleted mid-copy: the transfer is planned again, and the deleted move's
    // pull on the target (which nobody would end) is cancelled so the new one can start.
    scale(&ns, NAME, 4).await.expect("scale out again");
    let m = wait_move_phase(&ns.client, &ns.name, NAME, "Copying", TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    moves
        .delete(&m.name, &Default::default())
        .await
        .expect("delete the move");
    if let Err(e) = wait_balanced(&ns.client, &ns.name, NAME, TIMEOUT).await {
        panic!(
            "after deleting a move mid-copy: {e}\noperator log:\n{}",
            op.log_tail(60)
        );
    }
    drop(op);
    ns.cleanup().await;
}
