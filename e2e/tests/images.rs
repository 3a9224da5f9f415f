//! Images for real: the node and operator images are built without a container daemon
//! (`e2e/images`), pushed to the cluster's loopback registry, and pulled, unpacked and run from
//! their root filesystems by the process kubelet. The chart is installed with `image.registry`
//! pointing at that registry, exactly as a user points it at theirs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use ringshift_e2e::support::{
    self, TestNamespace, apply_cluster, from_json, images, pod_ip, wait_balanced, wait_ready,
    wait_until,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(180);

fn container_status(p: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
}

/// The pid the process kubelet reports in containerID (`ringshift-process://PID`).
fn container_pid(p: &Pod) -> u32 {
    let id = container_status(p)
        .and_then(|c| c.container_id)
        .unwrap_or_default();
    id.strip_prefix("ringshift-process://")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("containerID {id:?}"))
}

/// Real uid of a process, from /proc/PID/status.
fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The pod runs from the image's root filesystem, as the image's non-root user.
fn assert_runs_from_image(p: &Pod, repository: &str) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let image_id = container_status(p).map(|c| c.image_id).unwrap_or_default();
    let want = format!("{}/{repository}@sha256:", images::registry());
    assert!(
        image_id.starts_with(&want),
        "pod {name}: imageID {image_id:?}, want {want}..."
    );
    let pid = container_pid(p);
    assert_eq!(
        process_uid(pid),
        65532,
        "pod {name} runs as the image's user"
    );
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert!(
        root.ends_with("merged") && root.to_string_lossy().contains(".rootfs"),
        "pod {name} is chrooted into its image's overlay, not {}",
        root.display()
    );
}

/// A shard node container from an image (restricted, writable data in an emptyDir).
fn node_pod(name: &str, image: &str, policy: &str) -> Pod {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "securityContext": support::restricted_pod_security_context(),
            "containers": [{
                "name": "node",
                "image": image,
                "imagePullPolicy": policy,
                "args": ["--data-dir=/data", "--listen=$(POD_IP):6379",
                         "--admin-listen=$(POD_IP):8080", format!("--member-name={name}")],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "securityContext": support::restricted_container_security_context(),
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_with_image_registry_runs_operator_and_nodes_from_pulled_images() {
    let Some(env) = support::env_or_skip("chart from the local registry").await else {
        return;
    };
    images::push_dev_images().await.unwrap();
    support::install_crds().unwrap();
    let ns = TestNamespace::create(&env, "images-chart").await.unwrap();
    let release = ns.name.clone();
    images::install_chart(
        &release,
        &ns.name,
        &[
            &format!("watchNamespace={}", ns.name),
            "replicaCount=1",
            "logging.format=text",
        ],
    )
    .await
    .unwrap();
    let pods: Api<Pod> = ns.api();
    let ops = support::wait_pods_ready(
        &pods,
        &format!("app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"),
        1,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_runs_from_image(&ops[0], "ringshift-operator");

    apply_cluster(
        &ns.client,
        &ns.name,
        "pulled",
        json!({"replicas": 2, "image": images::node_image(), "imagePullPolicy": "Always"}),
    )
    .await
    .unwrap();
    wait_ready(&ns.client, &ns.name, "pulled", TIMEOUT)
        .await
        .unwrap();
    wait_balanced(&ns.client, &ns.name, "pulled", TIMEOUT)
        .await
        .unwrap();
    let nodes = pods
        .list(&ListParams::default().labels("ringshift.dev/cluster=pulled"))
        .await
        .unwrap();
    assert_eq!(nodes.items.len(), 2);
    for p in &nodes.items {
        assert_runs_from_image(p, "ringshift-node");
    }
    // The data path works end to end through pods run from the images.
    support::preload(&ns, "pulled", "img", 200, 16)
        .await
        .unwrap();
    support::verify_preload(&ns, "pulled", "img", 200, 16)
        .await
        .unwrap();

    images::uninstall_chart(&release, &ns.name).await.unwrap();
    ns.cleanup().await;
}

fn waiting(p: &Pod) -> (String, String) {
    let w = container_status(p)
        .and_then(|c| c.state)
        .and_then(|s| s.waiting)
        .unwrap_or_default();
    (w.reason.unwrap_or_default(), w.message.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_is_err_image_pull_then_image_pull_back_off_and_the_kubelet_carries_on() {
    let Some(env) = support::env_or_skip("missing image").await else {
        return;
    };
    images::push_dev_images().await.unwrap();
    let ns = TestNamespace::create(&env, "images-missing").await.unwrap();
    let pods: Api<Pod> = ns.api();
    let missing = format!("{}/ringshift-no-such-image:1", images::registry());
    pods.create(
        &PostParams::default(),
        &node_pod("missing", &missing, "IfNotPresent"),
    )
    .await
    .unwrap();
    // Reasons in the order observed (ErrImagePull holds for the 5 s before the first retry).
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    wait_until("ErrImagePull, then ImagePullBackOff", TIMEOUT, || async {
        let p = pods.get("missing").await.map_err(|e| e.to_string())?;
        let (reason, message) = waiting(&p);
        if let Ok(mut seen) = seen.lock()
            && !reason.is_empty()
            && seen.last() != Some(&reason)
        {
            seen.push(reason.clone());
        }
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if reason == "ImagePullBackOff" {
            assert!(
                message.contains("not found") && message.contains(&missing),
                "the message says what failed: {message}"
            );
            assert_eq!(phase.as_deref(), Some("Pending"));
            Ok(())
        } else {
            Err(format!("{phase:?} {reason} {message}"))
        }
    })
    .await
    .unwrap();
    let seen = seen.into_inner().unwrap();
    let first_pull_error = seen.iter().position(|r| r == "ErrImagePull");
    let back_off = seen.iter().position(|r| r == "ImagePullBackOff");
    assert!(
        matches!((first_pull_error, back_off), (Some(e), Some(b)) if e < b),
        "ErrImagePull first, then ImagePullBackOff; reasons seen: {seen:?}"
    );
    // The kubelet is unharmed: a pod of an existing image starts next to it. Its exec
    // readiness probe names a path that exists only in the image, so Ready shows the probe ran
    // inside the container's root filesystem.
    let mut present = node_pod("present", &images::node_image(), "IfNotPresent");
    if let Some(c) = present.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.readiness_probe = Some(from_json(json!({
            "exec": {"command": ["/usr/local/bin/ringshift-node", "--help"]},
            "periodSeconds": 1
        })));
    }
    pods.create(&PostParams::default(), &present).await.unwrap();
    let p = support::wait_pod_ready(&pods, "present", TIMEOUT)
        .await
        .unwrap();
    assert_runs_from_image(&p, "ringshift-node");
    assert!(pod_ip(&p).is_some());
    ns.cleanup().await;
}

/// Pushes the stripped node binary as `tag` with an extra label (a new config, so a new
/// digest each time `marker` changes); returns the manifest digest.
fn push_variant(tag: &str, marker: &str) -> String {
    let root = support::repo_root();
    let tool = std::process::Command::new(root.join("e2e/images/build-tool.sh"))
        .output()
        .unwrap();
    assert!(tool.status.success());
    let tool = String::from_utf8_lossy(&tool.stdout).trim().to_string();
    let stripped = root.join("target/images/ringshift-node.debug.stripped");
    let report = std::env::temp_dir().join(format!("ringshift-variant-{marker}.json"));
    let out = std::process::Command::new(tool)
        .args(["build", "--tag", tag, "--binary"])
        .arg(&stripped)
        .args(["--dest", "/usr/local/bin/ringshift-node", "--label"])
        .arg(format!("test.marker={marker}"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    rep["digest"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn if_not_present_reuses_the_cached_image_and_always_re_resolves_the_tag() {
    let Some(env) = support::env_or_skip("pull policies").await else {
        return;
    };
    images::push_dev_images().await.unwrap();
    let ns = TestNamespace::create(&env, "images-policy").await.unwrap();
    let tag = format!("{}/ringshift-policy:{}", images::registry(), ns.name);
    let first = push_variant(&tag, &format!("{}-1", ns.name));
    let pods: Api<Pod> = ns.api();
    let pp = PostParams::default();
    let digest_of = |p: &Pod| {
        let id = container_status(p).map(|c| c.image_id).unwrap_or_default();
        id.rsplit('@').next().unwrap_or_default().to_string()
    };
    pods.create(&pp, &node_pod("a", &tag, "IfNotPresent"))
        .await
        .unwrap();
    let a = support::wait_pod_ready(&pods, "a", TIMEOUT).await.unwrap();
    assert_eq!(digest_of(&a), first);

    // The tag moves to a new image.
    let second = push_variant(&tag, &format!("{}-2", ns.name));
    assert_ne!(first, second);
    pods.create(&pp, &node_pod("b", &tag, "IfNotPresent"))
        .await
        .unwrap();
    let b = support::wait_pod_ready(&pods, "b", TIMEOUT).await.unwrap();
    assert_eq!(
        digest_of(&b),
        first,
        "IfNotPresent keeps the image on the node"
    );
    // After an Always pull the node's tag names the new image, as on a real node: so second.
    pods.create(&pp, &node_pod("c", &tag, "Always"))
        .await
        .unwrap();
    let c = support::wait_pod_ready(&pods, "c", TIMEOUT).await.unwrap();
    assert_eq!(
        digest_of(&c),
        second,
        "Always asks the registry what the tag names"
    );
    ns.cleanup().await;
}
