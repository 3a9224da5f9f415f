//! End-to-end: the README's "Quick start on a real cluster", command by command, on the local
//! harness: `helm install` with `image.registry` set, `kubectl apply` of the ShardCluster `demo`
//! with its image from that registry, `kubectl wait` for Ready, `kubectl run -i --rm cli
//! --image=<registry>/redis:7 -- redis-cli` (SET then GET), `kubectl scale` to 5, `kubectl wait`
//! for Balanced, and the data still there afterwards.
//!
//! Where the harness differs from a real cluster, and how the test adapts:
//! - the namespace is the test's own (PodSecurity `restricted`), so `kubectl run` carries the
//!   overrides the README gives for such namespaces, and the chart is installed into it with
//!   `watchNamespace` set (tests run side by side, each with its own operator);
//! - images are `<local registry>/...:dev` (`image.tag=dev`), and `redis:7` is
//!   `<local registry>/redis:7`, redis-cli from this machine (e2e/images/push-redis-cli.sh):
//!   Docker Hub cannot be reached here;
//! - after the scale, the key is read back from this machine through
//!   `kubectl port-forward service/demo`.

use std::time::Instant;

use ringshift_e2e::support::{
    self, TestNamespace, cluster_local_port, images, install_crds, kubectl, kubectl_output,
    kubectl_run_redis_cli, kubectl_wait, local_redis_cli, port_forward, repo_root,
};

/// The README's quick-start block.
fn readme_quick_start() -> String {
    let text = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = text.find("<!-- quick-start").expect("quick-start marker");
    let end = text
        .find("<!-- /quick-start -->")
        .expect("quick-start end marker");
    text[start..end].to_string()
}

/// `kubectl run -i --rm` of the redis:7 stand-in with `input` as redis-cli's input; its output.
async fn redis_cli_in_cluster(ns: &str, host: &str, input: &str) -> String {
    let out = kubectl_run_redis_cli(ns, host, input).await.unwrap();
    assert!(out.status.success(), "kubectl run: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_quick_start_runs_on_the_harness() {
    let Some(env) = support::env_or_skip("README quick start").await else {
        return;
    };
    let t0 = Instant::now();
    // The commands below are the README's; a README that drifts from them fails here.
    let readme = readme_quick_start();
    for line in [
        "helm install ringshift charts/ringshift -n ringshift-system --create-namespace --set image.registry=$REGISTRY",
        "kind: ShardCluster",
        "spec: {replicas: 3, image: $REGISTRY/ringshift-node:0.1.0, storage: {size: 1Gi}}",
        "kubectl wait -n $NS --for=condition=Ready shardcluster/demo --timeout=5m",
        "kubectl run -n $NS -it --rm cli --image=redis:7 --restart=Never -- redis-cli -h demo.$NS",
        "kubectl scale -n $NS shardcluster/demo --replicas=5",
        "kubectl wait -n $NS --for=condition=Balanced shardcluster/demo --timeout=30m",
    ] {
        assert!(readme.contains(line), "README quick start lacks: {line}");
    }
    images::push_dev_images().await.unwrap();
    images::push_redis_cli_image().await.unwrap();
    install_crds().unwrap();
    let ns = TestNamespace::create(&env, "e2e-quickstart").await.unwrap();
    let registry = images::registry();

    // helm install ... --set image.registry=$REGISTRY
    images::install_chart(
        &ns.name,
        &ns.name,
        &[&format!("watchNamespace={}", ns.name), "replicaCount=1"],
    )
    .await
    .unwrap();
    // kubectl apply -n $NS -f - (the README's ShardCluster, image from the registry)
    let manifest = format!(
        "apiVersion: ringshift.dev/v1alpha1\nkind: ShardCluster\nmetadata: {{name: demo}}\n\
         spec: {{replicas: 3, image: {registry}/ringshift-node:{tag}, imagePullPolicy: Always, storage: {{size: 1Gi}}}}\n",
        tag = images::DEV_TAG
    );
    let applied = kubectl_output(&["apply", "-n", &ns.name, "-f", "-"], manifest.as_bytes())
        .await
        .unwrap();
    assert!(applied.status.success(), "kubectl apply: {applied:?}");
    // kubectl wait --for=condition=Ready
    kubectl_wait(&ns.name, "shardcluster/demo", "Ready", "5m")
        .await
        .unwrap();
    let ready_at = t0.elapsed();

    // kubectl run -it --rm cli --image=redis:7 -- redis-cli -h demo.$NS (cluster DNS, the
    // Service's clusterIP), then SET and GET.
    let service = format!("demo.{}", ns.name);
    let replies = redis_cli_in_cluster(&ns.name, &service, "SET hello world\nGET hello\n").await;
    assert!(replies.contains("OK\nworld\n"), "SET then GET: {replies}");

    // kubectl scale --replicas=5, then wait for Balanced (and Ready again).
    kubectl(&["scale", "-n", &ns.name, "shardcluster/demo", "--replicas=5"])
        .await
        .unwrap();
    kubectl_wait(&ns.name, "shardcluster/demo", "Balanced", "5m")
        .await
        .unwrap();
    kubectl_wait(&ns.name, "shardcluster/demo", "Ready", "5m")
        .await
        .unwrap();
    let members = kubectl(&[
        "get",
        "pods",
        "-n",
        &ns.name,
        "-l",
        "ringshift.dev/cluster=demo",
        "-o",
        "name",
    ])
    .await
    .unwrap();
    assert_eq!(members.lines().count(), 5, "five members: {members}");

    // The key survived the moves; through the Service `demo` from this machine.
    let local = cluster_local_port(16050, 50).expect("a free local port");
    let pf = port_forward(&ns.name, "service/demo", local, 6379)
        .await
        .unwrap();
    assert_eq!(
        local_redis_cli(pf.local_port, &["GET", "hello"])
            .await
            .unwrap(),
        "world"
    );
    drop(pf);
    eprintln!(
        "quick start: Ready after {:.0?}, scaled to 5 and Balanced after {:.0?}",
        ready_at,
        t0.elapsed()
    );
    images::uninstall_chart(&ns.name, &ns.name).await.unwrap();
    ns.cleanup().await;
}
