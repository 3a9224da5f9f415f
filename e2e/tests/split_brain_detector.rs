//! Negative control for the split-brain check every scenario relies on: with the operator gone,
//! one node is handed a newer placement that gives it the other node's ranges without any fence
//! (exactly what the protocol forbids). Both then accept writes for the same ranges; the check
//! built from the nodes' accepted-write windows must say so, naming both members.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use ringshift_e2e::support::{
    self, OperatorProcess, SplitBrainWatch, TestNamespace, admin_token, create_cluster,
    install_crds, pod_ip,
};
use ringshift_node_api::PlacementInstall;
use ringshift_node_api::client::AdminClient;
use ringshift_ring::{Member, key_hash};
use serde_json::json;

const NAME: &str = "sb";

async fn admin(ns: &TestNamespace, pod: &str) -> (AdminClient, String) {
    let token = admin_token(&ns.client, &ns.name, NAME)
        .await
        .expect("admin token");
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let ip = pod_ip(&pods.get(pod).await.expect("pod")).expect("pod ip");
    (
        AdminClient::new(reqwest::Client::new(), &format!("{ip}:8080"), &token),
        ip,
    )
}

/// SETs `keys` through the node at `ip` (each is owned by that node as far as it knows).
async fn write(ip: &str, keys: &[String]) {
    let client = redis::Client::open(format!("redis://{ip}:6379/")).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for k in keys {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg("v")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SET {k} via {ip}: {e}"));
    }
}

#[tokio::test]
async fn the_split_brain_check_catches_two_owners() {
    let Some(env) = support::env_or_skip("the_split_brain_check_catches_two_owners").await else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-splitbrain")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");
    let spec = json!({"replicas": 2, "vnodes": 16});
    if let Err(e) = create_cluster(
        &ns.client,
        &ns.name,
        NAME,
        spec,
        &op,
        Duration::from_secs(240),
    )
    .await
    {
        panic!("{e}");
    }
    // Nobody may repair what comes next.
    drop(op);
    let watch = SplitBrainWatch::start(&ns.client, &ns.name, NAME)
        .await
        .expect("watch");
    let (a, a_ip) = admin(&ns, "sb-0").await;
    let (_, b_ip) = admin(&ns, "sb-1").await;
    let installed = a.placement().await.expect("sb-0's placement");
    let before = installed.placement.clone();

    // Keys sb-1 owns at the installed epoch.
    let keys: Vec<String> = (0..2000)
        .map(|i| format!("k{i}"))
        .filter(|k| before.owner(key_hash(k.as_bytes())).ok().as_deref() == Some("sb-1"))
        .take(40)
        .collect();
    assert!(keys.len() >= 20, "sb-1 owns too few keys: {}", keys.len());
    write(&b_ip, &keys[..10]).await;

    // A newer placement in which sb-1 left and its ranges went to sb-0, installed on sb-0 only,
    // with no fence on sb-1.
    let weight = before
        .base()
        .members()
        .expect("members")
        .iter()
        .find(|m| m.name == "sb-0")
        .map(|m| m.weight)
        .expect("sb-0 is a member");
    let target = before
        .base()
        .evolve(&[Member::new("sb-0", weight)])
        .expect("evolve");
    let rogue = before
        .set_target(target)
        .and_then(|p| p.commit("sb-1", "sb-0"))
        .expect("rogue placement");
    assert!(rogue.epoch() > before.epoch());
    let body = PlacementInstall {
        owners_digest: rogue.current().ok().map(|c| c.digest()),
        placement: rogue,
        ..installed
    };
    a.put_placement(&body)
        .await
        .expect("sb-0 takes the rogue placement");

    // Both accept writes for the same ranges now: sb-0 at the new epoch, then sb-1 at the old.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&a_ip, &keys[10..20]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&b_ip, &keys[20..]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let evidence = watch.finish().await;
    let overlaps: Vec<String> = evidence.overlaps().iter().map(|o| o.to_string()).collect();
    assert!(
        !overlaps.is_empty(),
        "two owners accepted writes for the same ranges, yet the check found nothing ({} windows)",
        evidence.windows()
    );
    assert!(
        overlaps
            .iter()
            .any(|o| o.contains("sb-0") && o.contains("sb-1")),
        "{overlaps:#?}"
    );
    println!(
        "the check flagged {} overlapping window pair(s), e.g. {}",
        overlaps.len(),
        overlaps[0]
    );
    ns.cleanup().await;
}
