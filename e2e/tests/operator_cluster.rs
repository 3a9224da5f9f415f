//! End-to-end tests of the ShardCluster controller and the operator runtime against a real
//! API server (the local control plane of `e2e/cluster/up`, or KUBECONFIG). The operator runs
//! as a local process per test, watching only the test's namespace and electing its leader
//! through a Lease in that namespace, so tests do not interfere. Needs the workspace binaries
//! built (`cargo build --workspace --bins`, done by `make smoke` / `make e2e`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use ringshift_e2e::support::{self, TestNamespace, wait_until};
use serde_json::{Value, json};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const LEASE_SECONDS: u64 = 6;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory of the workspace binaries: next to this test binary's `deps/`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RINGSHIFT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .expect("target dir")
}

fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .env("KUBECONFIG", support::kubeconfig_path())
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn install_crds() {
    let crds = workspace_root().join("crds");
    let out = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "installing CRDs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/shardclusters.ringshift.dev",
        "crd/shardplacements.ringshift.dev",
        "crd/shardmigrations.ringshift.dev",
    ]);
    assert!(
        out.status.success(),
        "CRDs not established: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An operator process, killed (SIGKILL, like a crash) when dropped.
struct Operator {
    child: Child,
    identity: String,
    log: PathBuf,
}

impl Operator {
    fn start(ns: &str, identity: &str) -> Operator {
        let log = std::env::temp_dir().join(format!("ringshift-operator-{ns}-{identity}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin_dir().join("ringshift-operator"))
            .args([
                "run",
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
                "--identity",
                identity,
                "--listen",
                "127.0.0.1:0",
                "--lease-duration",
                &format!("{LEASE_SECONDS}s"),
                "--retry-period",
                "1s",
            ])
            .env("KUBECONFIG", support::kubeconfig_path())
            .env("RUST_LOG", "info,ringshift_operator=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("ringshift-operator binary (cargo build --workspace --bins)");
        Operator {
            child,
            identity: identity.to_string(),
            log,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn shard_clusters(ns: &TestNamespace) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "ringshift.dev",
        "v1alpha1",
        "ShardCluster",
    ));
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

async fn apply_cluster(ns: &TestNamespace, name: &str, spec: Value) {
    let obj = json!({
        "apiVersion": "ringshift.dev/v1alpha1",
        "kind": "ShardCluster",
        "metadata": {"name": name},
        "spec": spec,
    });
    shard_clusters(ns)
        .patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("applying the ShardCluster");
}

fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

async fn wait_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    op: &Operator,
) -> (String, String, String) {
    let api = shard_clusters(ns);
    let got = wait_until(
        &format!("ShardCluster {name} {type_}={status}"),
        READY_TIMEOUT,
        || async {
            let obj = api.get(name).await.map_err(|e| e.to_string())?;
            match condition(&obj, type_) {
                Some(c) if c.0 == status && reason.is_none_or(|r| r == c.1) => Ok(c),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    match got {
        Ok(c) => c,
        Err(e) => panic!("{e}\noperator log:\n{}", op.log_tail()),
    }
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_until(&format!("{name} deleted"), READY_TIMEOUT, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".into()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shardcluster_becomes_ready_and_deleting_it_removes_what_it_owns() {
    let Some(env) = support::env_or_skip("operator ready+delete").await else {
        return;
    };
    install_crds();
    let ns = TestNamespace::create(&env, "op-ready").await.unwrap();
    let op = Operator::start(&ns.name, "op-1");

    // Two clusters: the default policy keeps volumes, deletePolicy Delete removes them.
    apply_cluster(&ns, "keep", json!({"replicas": 2})).await;
    apply_cluster(
        &ns,
        "wipe",
        json!({"replicas": 1, "deletePolicy": "Delete"}),
    )
    .await;

    let pods = ns.api::<Pod>();
    support::wait_pods_ready(&pods, "ringshift.dev/cluster=keep", 2, READY_TIMEOUT)
        .await
        .unwrap();
    support::wait_pods_ready(&pods, "ringshift.dev/cluster=wipe", 1, READY_TIMEOUT)
        .await
        .unwrap();
    let (_, reason, message) = wait_condition(&ns, "keep", "Ready", "True", None, &op).await;
    assert_eq!(reason, "AllMembersReady", "{message}");

    // kubectl wait honours observedGeneration of the condition.
    let out = kubectl(&[
        "wait",
        "-n",
        &ns.name,
        "--for=condition=Ready",
        "shardcluster/keep",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let keep = shard_clusters(&ns).get("keep").await.unwrap();
    assert_eq!(keep.data["status"]["readyReplicas"], 2);
    assert_eq!(keep.data["status"]["replicas"], 2);
    assert_eq!(
        keep.data["status"]["selector"],
        "app.kubernetes.io/name=ringshift-node,ringshift.dev/cluster=keep"
    );

    // What a cluster owns.
    let sts = ns.api::<StatefulSet>().get("keep").await.unwrap();
    assert_eq!(sts.spec.pod_management_policy.as_deref(), Some("Parallel"));
    ns.api::<Service>().get("keep").await.unwrap();
    ns.api::<Service>().get("keep-nodes").await.unwrap();
    let token = ns.api::<Secret>().get("keep-admin-token").await.unwrap();
    let placement_ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "ringshift.dev",
        "v1alpha1",
        "ShardPlacement",
    ));
    let placements: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &placement_ar);
    let placement = placements.get("keep").await.unwrap();
    assert_eq!(
        placement.data["spec"]["clusterUid"],
        json!(keep.metadata.uid)
    );
    assert_eq!(
        placement.data["spec"]["ring"]["ops"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // The admin token is generated once: a resync does not replace it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = ns.api::<Secret>().get("keep-admin-token").await.unwrap();
    assert_eq!(token.data, again.data);

    // Deleting cascades to owned objects; volumes follow deletePolicy.
    let pvcs = ns.api::<PersistentVolumeClaim>();
    let claims = |c: &str| ListParams::default().labels(&format!("ringshift.dev/cluster={c}"));
    assert_eq!(pvcs.list(&claims("keep")).await.unwrap().items.len(), 2);
    assert_eq!(pvcs.list(&claims("wipe")).await.unwrap().items.len(), 1);
    for name in ["keep", "wipe"] {
        shard_clusters(&ns)
            .delete(name, &DeleteParams::background())
            .await
            .unwrap();
    }
    for name in ["keep", "wipe"] {
        gone(&shard_clusters(&ns), name).await;
        gone(&ns.api::<StatefulSet>(), name).await;
        gone(&ns.api::<Service>(), name).await;
        gone(&ns.api::<Service>(), &format!("{name}-nodes")).await;
        gone(&ns.api::<Secret>(), &format!("{name}-admin-token")).await;
        gone(&placements, name).await;
    }
    wait_until("the pods of both clusters gone", READY_TIMEOUT, || async {
        let n = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=ringshift-node"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} pods left"))
        }
    })
    .await
    .unwrap();
    wait_until("the volumes of wipe deleted", READY_TIMEOUT, || async {
        let n = pvcs
            .list(&claims("wipe"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} PVCs left"))
        }
    })
    .await
    .unwrap();
    let kept = pvcs.list(&claims("keep")).await.unwrap().items;
    assert_eq!(kept.len(), 2, "deletePolicy Retain keeps the volumes");
    assert!(kept.iter().all(|p| p.metadata.deletion_timestamp.is_none()));
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_spec_shows_its_reason_and_a_fix_is_picked_up() {
    let Some(env) = support::env_or_skip("operator invalid spec").await else {
        return;
    };
    install_crds();
    let ns = TestNamespace::create(&env, "op-invalid").await.unwrap();
    let op = Operator::start(&ns.name, "op-1");

    // A ShardCluster the schema accepts but the operator's types do not (an explicit null
    // size) is reported on its own status, and does not stop the controller serving others.
    let raw = std::env::temp_dir().join(format!("{}-undecodable.json", ns.name));
    std::fs::write(
        &raw,
        json!({"apiVersion": "ringshift.dev/v1alpha1", "kind": "ShardCluster",
               "metadata": {"name": "undecodable"},
               "spec": {"replicas": 1, "storage": {"size": null}}})
        .to_string(),
    )
    .unwrap();
    let path = format!(
        "/apis/ringshift.dev/v1alpha1/namespaces/{}/shardclusters",
        ns.name
    );
    let out = kubectl(&["create", "--raw", &path, "-f", raw.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "raw create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_condition(
        &ns,
        "undecodable",
        "Degraded",
        "True",
        Some("SpecNotDecodable"),
        &op,
    )
    .await;

    apply_cluster(&ns, "bad", json!({"replicas": 1, "replicationFactor": 3})).await;
    let (_, _, message) = wait_condition(
        &ns,
        "bad",
        "Degraded",
        "True",
        Some("ReplicationFactorUnsupported"),
        &op,
    )
    .await;
    assert!(message.contains("set it to 1"), "{message}");
    let obj = shard_clusters(&ns).get("bad").await.unwrap();
    assert_eq!(obj.data["status"]["state"], "Invalid");
    assert!(
        ns.api::<StatefulSet>()
            .get_opt("bad")
            .await
            .unwrap()
            .is_none(),
        "nothing is created for an invalid spec"
    );
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        events.iter().any(
            |e| e.reason.as_deref() == Some("ReplicationFactorUnsupported")
                && e.type_.as_deref() == Some("Warning")
        ),
        "a Warning Event names the reason: {events:?}"
    );

    // The controller is not hot-looping on it: the resourceVersion stays put.
    let rv = obj.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        shard_clusters(&ns)
            .get("bad")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );

    // Zero total weight is refused too.
    apply_cluster(&ns, "bad", json!({"replicas": 1, "replicationFactor": 1, "members": [{"name": "bad-0", "drain": true}]})).await;
    wait_condition(&ns, "bad", "Degraded", "True", Some("ZeroTotalWeight"), &op).await;

    // Fixing the spec is picked up without restarting anything.
    apply_cluster(&ns, "bad", json!({"replicas": 1})).await;
    wait_condition(&ns, "bad", "Degraded", "False", None, &op).await;
    statefulset_created(&ns, "bad").await;

    // An image that never starts is named with the member and the kubelet's reason.
    apply_cluster(
        &ns,
        "noimg",
        json!({"replicas": 1, "image": "no-such-image:1"}),
    )
    .await;
    let (_, _, message) = wait_condition(
        &ns,
        "noimg",
        "Degraded",
        "True",
        Some("MemberNotStarting"),
        &op,
    )
    .await;
    assert!(message.contains("noimg-0"), "{message}");
    drop(op);
    ns.cleanup().await;
}

async fn statefulset_created(ns: &TestNamespace, name: &str) {
    wait_until(
        &format!("StatefulSet {name} created"),
        READY_TIMEOUT,
        || async {
            match ns.api::<StatefulSet>().get_opt(name).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("not yet".into()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .unwrap();
}

async fn lease_holder(ns: &TestNamespace) -> Option<String> {
    ns.api::<Lease>()
        .get_opt("ringshift-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_leader_dies_the_other_replica_takes_over_within_the_lease() {
    let Some(env) = support::env_or_skip("operator leader failover").await else {
        return;
    };
    install_crds();
    let ns = TestNamespace::create(&env, "op-leader").await.unwrap();
    let mut first = Operator::start(&ns.name, "op-a");
    wait_until("op-a to lead", READY_TIMEOUT, || async {
        match lease_holder(&ns).await {
            Some(h) if h == "op-a" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await
    .unwrap();
    let second = Operator::start(&ns.name, "op-b");
    // op-b stands by while op-a renews.
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 2)).await;
    assert_eq!(
        lease_holder(&ns).await.as_deref(),
        Some("op-a"),
        "op-b must not steal a live lease\n{}",
        second.log_tail()
    );

    first.kill();
    let killed = Instant::now();
    wait_until(
        "op-b to take the lease",
        Duration::from_secs(LEASE_SECONDS * 3),
        || async {
            match lease_holder(&ns).await {
                Some(h) if h == second.identity => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nop-b log:\n{}", second.log_tail()));
    let took = killed.elapsed();
    // Lease duration plus one retry period and some API latency.
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 3),
        "takeover took {took:?}"
    );
    eprintln!(
        "takeover after the leader was killed: {:.1}s (lease {LEASE_SECONDS}s)",
        took.as_secs_f64()
    );

    // The new leader reconciles.
    apply_cluster(&ns, "after", json!({"replicas": 1, "replicationFactor": 2})).await;
    wait_condition(
        &ns,
        "after",
        "Degraded",
        "True",
        Some("ReplicationFactorUnsupported"),
        &second,
    )
    .await;
    drop(second);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_scale_grows_the_ring_and_template_changes_roll_one_pod_at_a_time() {
    let Some(env) = support::env_or_skip("operator scale+rollout").await else {
        return;
    };
    install_crds();
    let ns = TestNamespace::create(&env, "op-scale").await.unwrap();
    let op = Operator::start(&ns.name, "op-1");
    apply_cluster(&ns, "sc", json!({"replicas": 1})).await;
    wait_condition(&ns, "sc", "Ready", "True", None, &op).await;

    // The scale subresource drives spec.replicas.
    let out = kubectl(&["scale", "-n", &ns.name, "shardcluster/sc", "--replicas=2"]);
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods = ns.api::<Pod>();
    let before = support::wait_pods_ready(&pods, "ringshift.dev/cluster=sc", 2, READY_TIMEOUT)
        .await
        .unwrap();
    let api = shard_clusters(&ns);
    wait_until("status.readyReplicas = 2", READY_TIMEOUT, || async {
        let obj = api.get("sc").await.map_err(|e| e.to_string())?;
        if obj.data["status"]["readyReplicas"] == 2 {
            Ok(())
        } else {
            Err(obj.data["status"].to_string())
        }
    })
    .await
    .unwrap();
    let placement_ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "ringshift.dev",
        "v1alpha1",
        "ShardPlacement",
    ));
    let placements: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &placement_ar);
    let ring = placements.get("sc").await.unwrap().data["spec"]["ring"].clone();
    let members: Vec<&str> = ring["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["member"].as_str())
        .collect();
    assert_eq!(
        members,
        ["sc-0", "sc-1"],
        "the ring history gained sc-1: {ring}"
    );

    // A pod template change replaces the pods one at a time.
    apply_cluster(
        &ns,
        "sc",
        json!({"replicas": 2, "resources": {"requests": {"cpu": "10m"}}}),
    )
    .await;
    let old_uids: Vec<String> = before
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let max_not_ready = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    wait_until("both pods replaced and Ready", READY_TIMEOUT, || {
        let pods = pods.clone();
        let old_uids = old_uids.clone();
        let max = max_not_ready.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("ringshift.dev/cluster=sc"))
                .await
                .map_err(|e| e.to_string())?
                .items;
            let not_ready = 2 - list
                .iter()
                .filter(|p| support::pod_ready(p) && p.metadata.deletion_timestamp.is_none())
                .count();
            max.fetch_max(not_ready, std::sync::atomic::Ordering::Relaxed);
            let replaced = list
                .iter()
                .filter(|p| {
                    !old_uids.contains(p.metadata.uid.as_ref().unwrap()) && support::pod_ready(p)
                })
                .count();
            if replaced == 2 && list.len() == 2 {
                Ok(())
            } else {
                Err(format!("{replaced}/2 replaced, {not_ready} not ready"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail()));
    let max_not_ready = max_not_ready.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        max_not_ready <= 1,
        "at most one member is replaced at a time (saw {max_not_ready} not ready)"
    );
    let pod = pods.get("sc-0").await.unwrap();
    let requests = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(requests["cpu"].0, "10m");
    wait_condition(&ns, "sc", "Ready", "True", None, &op).await;
    drop(op);
    ns.cleanup().await;
}
