//! End-to-end: the kubelet API of the process kubelet (e2e/kubelet-api) as an operator uses it
//! through kubectl against a shard node pulled from the local registry: `kubectl logs` (with
//! `--tail`), `kubectl exec` (output and exit code), `kubectl port-forward` then PING/SET/GET
//! with redis-cli through it, and `kubectl run -i --rm` with input attached to the container's
//! stdin (image `<local registry>/redis:7`, redis-cli from this machine: Docker Hub's redis:7
//! cannot be pulled here).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, cluster_local_port, images, install_crds,
    kubectl, kubectl_exec, kubectl_run_redis_cli, local_redis_cli, pod_ip, port_forward,
    wait_balanced, wait_ready,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn logs_exec_port_forward_and_run_attach_reach_a_shard_node() {
    let Some(env) = support::env_or_skip("kubectl streams").await else {
        return;
    };
    images::push_dev_images().await.unwrap();
    images::push_redis_cli_image().await.unwrap();
    install_crds().unwrap();
    let ns = TestNamespace::create(&env, "e2e-streams").await.unwrap();
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");
    apply_cluster(
        &ns.client,
        &ns.name,
        "streams",
        json!({"replicas": 1, "image": images::node_image(), "imagePullPolicy": "Always"}),
    )
    .await
    .unwrap();
    if let Err(e) = wait_ready(&ns.client, &ns.name, "streams", TIMEOUT).await {
        panic!("{e}\noperator log:\n{}", op.log_tail(40));
    }
    wait_balanced(&ns.client, &ns.name, "streams", TIMEOUT)
        .await
        .unwrap();
    let pods: Api<Pod> = ns.api();
    let listed = pods
        .list(&ListParams::default().labels("ringshift.dev/cluster=streams"))
        .await
        .unwrap();
    let node = listed.items.first().expect("a node pod");
    let pod = node.metadata.name.clone().unwrap();
    let ip = pod_ip(node).expect("pod IP");

    // kubectl logs: the node's own output, without the kubelet's start line; --tail cuts it.
    let logs = kubectl(&["logs", "-n", &ns.name, &pod]).await.unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("serving data=") && l.contains(":6379")),
        "logs show the node serving: {logs}"
    );
    assert!(
        !logs.contains("[kubelet "),
        "logs hold only container output: {logs}"
    );
    let tail = kubectl(&["logs", "-n", &ns.name, &pod, "--tail=1"])
        .await
        .unwrap();
    assert_eq!(tail.lines().count(), 1, "--tail=1 gives one line: {tail}");
    assert!(logs.ends_with(&tail), "the last line: {tail}");

    // kubectl exec: the command runs in the container (its image's binary) and its exit code
    // comes back, 0 and not.
    let out = kubectl_exec(&ns.name, &pod, &["ringshift-node", "--version"])
        .await
        .unwrap();
    assert!(out.status.success(), "exec succeeds: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ringshift-node "),
        "exec output: {out:?}"
    );
    let out = kubectl_exec(&ns.name, &pod, &["ringshift-node", "--no-such-flag"])
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap's usage exit code: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 2"),
        "{out:?}"
    );

    // kubectl port-forward: a Redis client on this machine talks to the node through it.
    let local = cluster_local_port(16000, 100).expect("a free local port");
    let pf = port_forward(&ns.name, &format!("pod/{pod}"), local, 6379)
        .await
        .unwrap();
    assert_eq!(
        local_redis_cli(pf.local_port, &["PING"]).await.unwrap(),
        "PONG"
    );
    assert_eq!(
        local_redis_cli(pf.local_port, &["SET", "pf-key", "through-the-tunnel"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(
        local_redis_cli(pf.local_port, &["GET", "pf-key"])
            .await
            .unwrap(),
        "through-the-tunnel"
    );
    drop(pf);

    // kubectl run -i --rm: input goes to the container's stdin (stdinOnce: end of input then
    // ends redis-cli), its output comes back, and the pod is removed.
    let out = kubectl_run_redis_cli(&ns.name, &ip, "GET pf-key\nPING\n")
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl run -i: {out:?}");
    assert!(
        stdout.contains("through-the-tunnel\nPONG"),
        "replies come back in order: {stdout}"
    );
    assert!(stdout.contains("pod \"cli\" deleted"), "{stdout}");

    ns.cleanup().await;
}
