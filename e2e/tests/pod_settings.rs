//! End-to-end: production pod settings of a ShardCluster (`spec.pod`, `spec.service`,
//! `spec.tuning`) reach running members in a PodSecurity `restricted` namespace, a removed
//! setting leaves the pods again (the operator rolls them), and the process kubelet leaves a
//! pod that its node does not match Pending as a real scheduler would, which the operator
//! reports.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, condition, create_cluster, from_json,
    install_crds, pod_ip, ringshift_api, wait_until,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(180);
/// The process kubelet's Node.
const NODE: &str = "local";

/// Sends RESP commands on one connection and returns each reply's first line.
async fn resp(addr: &str, commands: &[&[&str]]) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut out = Vec::new();
    for cmd in commands {
        let mut frame = format!("*{}\r\n", cmd.len());
        for a in *cmd {
            frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        w.write_all(frame.as_bytes()).await.expect("write");
        let mut line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("reply within 10s")
            .expect("read")
            .unwrap_or_default();
        if line.starts_with('$') && line != "$-1" {
            line = lines.next_line().await.expect("read").unwrap_or_default();
        }
        out.push(line);
    }
    out
}

async fn members(ns: &TestNamespace, cluster: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("ringshift.dev/cluster={cluster}")))
        .await
        .expect("list pods")
        .items
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_settings_and_tuning_reach_running_members() {
    let Some(env) = support::env_or_skip("pod_settings_and_tuning_reach_running_members").await
    else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-podspec")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");

    // A PriorityClass of this test's own (cluster-scoped, deleted at the end).
    let priority_name = format!("{}-critical", ns.name);
    let classes: Api<PriorityClass> = Api::all(env.client.clone());
    classes
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": priority_name}, "value": 100000,
                "description": "ringshift e2e pod settings"})),
        )
        .await
        .expect("PriorityClass");

    let pod_settings = |labels: Value| {
        json!({
            "labels": labels,
            "annotations": {"example.com/owner": "sre"},
            "nodeSelector": {"kubernetes.io/hostname": NODE, "ringshift.dev/process-kubelet": "true"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "cache",
                             "effect": "NoSchedule"}],
            "priorityClassName": priority_name,
        })
    };
    let spec = |labels: Value, service: Value| {
        json!({
            "replicas": 2,
            "pod": pod_settings(labels),
            "service": service,
            "tuning": {"cacheBytes": "64Mi", "memtableBytes": "8Mi", "durability": "None"},
        })
    };
    create_cluster(
        &ns.client,
        &ns.name,
        "tuned",
        spec(
            json!({"team": "cache", "tier": "gold"}),
            json!({"type": "NodePort", "annotations": {"example.com/lb": "internal"}}),
        ),
        &op,
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let pods = members(&ns, "tuned").await;
    assert_eq!(pods.len(), 2);
    for p in &pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("cache"),
            "{name}"
        );
        assert_eq!(
            labels.get("tier").map(String::as_str),
            Some("gold"),
            "{name}"
        );
        assert_eq!(
            labels.get("app.kubernetes.io/name").map(String::as_str),
            Some("ringshift-node")
        );
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("example.com/owner").map(String::as_str),
            Some("sre")
        );
        let s = p.spec.clone().expect("pod spec");
        assert_eq!(s.node_name.as_deref(), Some(NODE));
        assert_eq!(
            s.node_selector
                .unwrap_or_default()
                .get("kubernetes.io/hostname"),
            Some(&NODE.to_string())
        );
        assert!(s.affinity.and_then(|a| a.node_affinity).is_some());
        assert!(
            s.tolerations
                .unwrap_or_default()
                .iter()
                .any(|t| t.key.as_deref() == Some("dedicated")),
            "{name}: tolerations"
        );
        // Priority admission resolved the class: the pod runs at its value.
        assert_eq!(
            s.priority_class_name.as_deref(),
            Some(priority_name.as_str())
        );
        assert_eq!(s.priority, Some(100000));
        assert_eq!(
            s.security_context
                .and_then(|c| c.seccomp_profile)
                .map(|p| p.type_)
                .as_deref(),
            Some("RuntimeDefault")
        );
        let spread = s.topology_spread_constraints.unwrap_or_default();
        assert_eq!(spread.len(), 1, "{name}: the default spread");
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
        let node = &s.containers[0];
        let args = node.args.clone().unwrap_or_default();
        assert_eq!(arg_after(&args, "--cache-bytes"), Some("67108864"));
        assert_eq!(arg_after(&args, "--memtable-bytes"), Some("8388608"));
        assert_eq!(arg_after(&args, "--durability"), Some("none"));
        // Unset resources: a memory request that holds 64Mi + 4 x 8Mi + 384Mi, no limit.
        let r = node.resources.clone().unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("480Mi"));
        assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("100m"));
        assert!(r.limits.is_none(), "{name}: no default limit");
        assert_eq!(
            p.status.as_ref().and_then(|st| st.phase.as_deref()),
            Some("Running")
        );
    }

    // The data port works: a write through one member reads back through the other.
    let ips: Vec<String> = pods.iter().filter_map(pod_ip).collect();
    assert_eq!(ips.len(), 2);
    for (i, ip) in ips.iter().enumerate() {
        let key = format!("podspec-key-{i}");
        let value = format!("value-{i}");
        let r = resp(&format!("{ip}:6379"), &[&["PING"], &["SET", &key, &value]]).await;
        assert_eq!(r, ["+PONG", "+OK"], "{ip}");
        let other = &ips[(i + 1) % ips.len()];
        let r = resp(&format!("{other}:6379"), &[&["GET", &key]]).await;
        assert_eq!(r, [value], "{other}");
    }

    let services: Api<Service> = ns.api();
    let svc = services.get("tuned").await.expect("client Service");
    let svc_spec = svc.spec.clone().unwrap_or_default();
    assert_eq!(svc_spec.type_.as_deref(), Some("NodePort"));
    assert!(svc_spec.ports.unwrap_or_default()[0].node_port.is_some());
    assert_eq!(
        svc.metadata
            .annotations
            .unwrap_or_default()
            .get("example.com/lb"),
        Some(&"internal".to_string())
    );

    // Dropping a label and the Service settings: the StatefulSet's template loses the label
    // (the operator applied it before), the members are rolled to the new template, and the
    // Service goes back to ClusterIP without the annotation.
    let sts_api: Api<StatefulSet> = ns.api();
    let revision_before = sts_api
        .get("tuned")
        .await
        .expect("StatefulSet")
        .status
        .and_then(|s| s.update_revision);
    apply_cluster(
        &ns.client,
        &ns.name,
        "tuned",
        spec(json!({"team": "cache"}), json!({"type": "ClusterIP"})),
    )
    .await
    .expect("re-apply");
    wait_until("the template drops the label", TIMEOUT, || async {
        let sts = sts_api.get("tuned").await.map_err(|e| e.to_string())?;
        let labels: BTreeMap<String, String> = sts
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let revision = sts.status.and_then(|s| s.update_revision);
        if labels.contains_key("tier") || revision == revision_before {
            Err(format!("template labels {labels:?}, revision {revision:?}"))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    wait_until("members rolled without the label", TIMEOUT, || async {
        let pods = members(&ns, "tuned").await;
        let ready = pods.iter().filter(|p| support::pod_ready(p)).count();
        let labelled: Vec<String> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("tier"))
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if ready == 2 && labelled.is_empty() && pods.len() == 2 {
            Ok(())
        } else {
            Err(format!("{ready} ready, still labelled: {labelled:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    wait_until("the Service is ClusterIP again", TIMEOUT, || async {
        let svc = services.get("tuned").await.map_err(|e| e.to_string())?;
        let t = svc.spec.as_ref().and_then(|s| s.type_.clone());
        let annotations = svc.metadata.annotations.clone().unwrap_or_default();
        if t.as_deref() == Some("ClusterIP") && !annotations.contains_key("example.com/lb") {
            Ok(())
        } else {
            Err(format!("type {t:?}, annotations {annotations:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    let ip = pod_ip(&members(&ns, "tuned").await[0]).expect("pod IP");
    let r = resp(&format!("{ip}:6379"), &[&["GET", "podspec-key-0"]]).await;
    assert_eq!(r, ["value-0"], "data kept across the roll");

    // Refused: a label the operator owns (by the CRD's rule, before the operator sees it).
    let refused = apply_cluster(
        &ns.client,
        &ns.name,
        "tuned",
        spec(
            json!({"ringshift.dev/cluster": "other"}),
            json!({"type": "ClusterIP"}),
        ),
    )
    .await
    .expect_err("a reserved label is refused");
    assert!(refused.to_string().contains("spec.pod.labels"), "{refused}");

    // The production example is accepted by the API server as it is (schema and CEL rules).
    let example = support::repo_root().join("deploy/examples/production.yaml");
    support::kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns.name,
        "-f",
        &example.to_string_lossy(),
    ])
    .await
    .unwrap_or_else(|e| panic!("deploy/examples/production.yaml: {e}"));

    drop(op);
    let _ = classes
        .delete(&priority_name, &DeleteParams::default())
        .await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_no_node_fits_stay_pending_and_the_cluster_says_why() {
    let Some(env) =
        support::env_or_skip("members_no_node_fits_stay_pending_and_the_cluster_says_why").await
    else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-nofit")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");
    // A node label of this test's own: absent at first, so no node fits.
    let label = format!("e2e.ringshift.dev/{}", ns.name);
    apply_cluster(
        &ns.client,
        &ns.name,
        "nofit",
        json!({"replicas": 1, "pod": {"nodeSelector": {label.clone(): "yes"}}}),
    )
    .await
    .expect("apply");

    let pods: Api<Pod> = ns.api();
    wait_until("nofit-0 unschedulable", TIMEOUT, || async {
        let p = pods.get("nofit-0").await.map_err(|e| e.to_string())?;
        let bound = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let scheduled = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled").cloned());
        match (&bound, &scheduled) {
            (None, Some(c))
                if c.status == "False" && c.reason.as_deref() == Some("Unschedulable") =>
            {
                Ok(())
            }
            _ => Err(format!("bound to {bound:?}, PodScheduled {scheduled:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let p = pods.get("nofit-0").await.expect("pod");
    assert_eq!(
        p.status.and_then(|s| s.phase).as_deref(),
        Some("Pending"),
        "no process runs for it"
    );
    let events: Api<Event> = ns.api();
    wait_until("FailedScheduling event", TIMEOUT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.name.as_deref() == Some("nofit-0")
            })
            .map(|_| ())
            .ok_or_else(|| "none yet".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let clusters = ringshift_api(&ns.client, &ns.name, "ShardCluster");
    wait_until("nofit Degraded: Unschedulable", TIMEOUT, || async {
        let c = clusters.get("nofit").await.map_err(|e| e.to_string())?;
        match condition(&c, "Degraded") {
            Some((s, reason, message))
                if s == "True"
                    && reason == "MemberNotStarting"
                    && message.contains("Unschedulable") =>
            {
                Ok(())
            }
            other => Err(format!("Degraded: {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));

    // The node gets the label: the waiting pod is bound and runs, as a scheduler retrying
    // would place it.
    let nodes: Api<Node> = Api::all(env.client.clone());
    let set_label = |v: Value| {
        let nodes = nodes.clone();
        let label = label.clone();
        async move {
            nodes
                .patch(
                    NODE,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {label: v}}})),
                )
                .await
        }
    };
    set_label(json!("yes")).await.expect("label the node");
    let result = support::wait_ready(&ns.client, &ns.name, "nofit", TIMEOUT).await;
    set_label(Value::Null).await.expect("unlabel the node");
    result.unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    let p = pods.get("nofit-0").await.expect("pod");
    assert_eq!(p.spec.and_then(|s| s.node_name).as_deref(), Some(NODE));

    // What only the API server checks (here an affinity operator it does not know) is reported
    // as ApplyFailed with its message; the operator keeps running.
    apply_cluster(
        &ns.client,
        &ns.name,
        "badaffinity",
        json!({"replicas": 1, "pod": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "Sometimes"}]}]}}}}}),
    )
    .await
    .expect("the CRD schema takes any operator string");
    wait_until("badaffinity Degraded: ApplyFailed", TIMEOUT, || async {
        let c = clusters
            .get("badaffinity")
            .await
            .map_err(|e| e.to_string())?;
        match condition(&c, "Degraded") {
            Some((s, reason, message))
                if s == "True" && reason == "ApplyFailed" && message.contains("Sometimes") =>
            {
                Ok(())
            }
            other => Err(format!("Degraded: {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    let mut op = op;
    assert!(!op.exited(), "the operator is still running");

    drop(op);
    ns.cleanup().await;
}
