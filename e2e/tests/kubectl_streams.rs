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
    self, OperatorProcess, TestNamespace, apply_cluster, free_local_port, images, install_crds,
    kubectl, kubectl_output, pod_ip, port_forward, wait_balanced, wait_ready,
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

/// The security settings a `restricted` namespace asks of `kubectl run`'s pod named `name`.
fn restricted_overrides(name: &str) -> String {
    json!({"spec": {
        "securityContext": support::restricted_pod_security_context(),
        "containers": [{"name": name, "securityContext": support::restricted_container_security_context()}]
    }})
    .to_string()
}

async fn redis_cli(port: u16, args: &[&str]) -> String {
    let mut all = vec![
        "-h".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new("redis-cli")
        .args(&all)
        .output()
        .await
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

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
    let out = kubectl_output(
        &[
            "exec",
            "-n",
            &ns.name,
            &pod,
            "--",
            "ringshift-node",
            "--version",
        ],
        b"",
    )
    .await
    .unwrap();
    assert!(out.status.success(), "exec succeeds: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ringshift-node "),
        "exec output: {out:?}"
    );
    let out = kubectl_output(
        &[
            "exec",
            "-n",
            &ns.name,
            &pod,
            "--",
            "ringshift-node",
            "--no-such-flag",
        ],
        b"",
    )
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
    let cluster: u16 = std::env::var("RINGSHIFT_CLUSTER")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let base = 16000 + 100 * cluster;
    let local = free_local_port(base..base + 100).expect("a free local port");
    let pf = port_forward(&ns.name, &format!("pod/{pod}"), local, 6379)
        .await
        .unwrap();
    assert_eq!(redis_cli(pf.local_port, &["PING"]).await, "PONG");
    assert_eq!(
        redis_cli(pf.local_port, &["SET", "pf-key", "through-the-tunnel"]).await,
        "OK"
    );
    assert_eq!(
        redis_cli(pf.local_port, &["GET", "pf-key"]).await,
        "through-the-tunnel"
    );
    drop(pf);

    // kubectl run -i --rm: input goes to the container's stdin (stdinOnce: end of input then
    // ends redis-cli), its output comes back, and the pod is removed.
    let overrides = restricted_overrides("cli");
    let image = format!("--image={}", images::redis_cli_image());
    let out = kubectl_output(
        &[
            "run",
            "-i",
            "--rm",
            "cli",
            "-n",
            &ns.name,
            &image,
            "--restart=Never",
            "--override-type=strategic",
            "--overrides",
            &overrides,
            "--",
            "redis-cli",
            "-h",
            &ip,
        ],
        b"GET pf-key\nPING\n",
    )
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
