//! Invalid ShardClusters: every field with a bad value. Those the CRD schema can refuse are
//! refused by the API server with a message naming the field; the others reach the operator,
//! which reports a clear reason (Degraded=True, state Invalid, a Warning Event), creates
//! nothing, and does not hot-loop on them, while a valid cluster in the same namespace keeps
//! being served: it is scaled during the test and reconciles.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ListParams, PostParams};
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, condition, from_json, kubectl,
    ringshift_api, wait_balanced, wait_until,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Bad values the schema refuses: (what, spec or full object patch, field named in the error).
fn schema_refused() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "negative replicas",
            json!({"replicas": -1}),
            "spec.replicas",
        ),
        (
            "too many replicas",
            json!({"replicas": 1001}),
            "spec.replicas",
        ),
        (
            "replicas not a number",
            json!({"replicas": "three"}),
            "spec.replicas",
        ),
        ("zero vnodes", json!({"vnodes": 0}), "spec.vnodes"),
        ("too many vnodes", json!({"vnodes": 5000}), "spec.vnodes"),
        (
            "zero replication factor",
            json!({"replicationFactor": 0}),
            "spec.replicationFactor",
        ),
        ("empty image", json!({"image": ""}), "spec.image"),
        (
            "unknown pull policy",
            json!({"imagePullPolicy": "Sometimes"}),
            "spec.imagePullPolicy",
        ),
        (
            "unknown delete policy",
            json!({"deletePolicy": "Shred"}),
            "spec.deletePolicy",
        ),
        (
            "unknown approval mode",
            json!({"migration": {"approval": "Maybe"}}),
            "spec.migration.approval",
        ),
        (
            "bad duration",
            json!({"migration": {"writePauseBudget": "soon"}}),
            "spec.migration.writePauseBudget",
        ),
        (
            "negative duration",
            json!({"migration": {"sourceRetention": "-5m"}}),
            "spec.migration.sourceRetention",
        ),
        (
            "duration without unit",
            json!({"migration": {"changeLogRetention": "10"}}),
            "spec.migration.changeLogRetention",
        ),
        (
            "negative lag threshold",
            json!({"migration": {"lagThresholdRecords": "-1"}}),
            "spec.migration.lagThresholdRecords",
        ),
        (
            "bandwidth not a number",
            json!({"migration": {"bandwidthBytesPerSecond": "fast"}}),
            "spec.migration.bandwidthBytesPerSecond",
        ),
        (
            "u64 too long",
            json!({"migration": {"lagThresholdRecords": "123456789012345678901"}}),
            "spec.migration.lagThresholdRecords",
        ),
        (
            "zero concurrent moves",
            json!({"migration": {"maxConcurrentMoves": 0}}),
            "spec.migration.maxConcurrentMoves",
        ),
        (
            "negative history",
            json!({"migration": {"historyLimit": -1}}),
            "spec.migration.historyLimit",
        ),
        (
            "negative weight",
            json!({"members": [{"name": "refused-0", "weight": -5}]}),
            "spec.members[0].weight",
        ),
        (
            "weight too large",
            json!({"members": [{"name": "refused-0", "weight": 200000}]}),
            "spec.members[0].weight",
        ),
        (
            "member without name",
            json!({"members": [{"weight": 5}]}),
            "spec.members",
        ),
        (
            "empty secret name",
            json!({"auth": {"passwordSecretRef": {"name": ""}}}),
            "spec.auth.passwordSecretRef.name",
        ),
        // CEL rules (x-kubernetes-validations) across fields.
        (
            "member of another cluster",
            json!({"members": [{"name": "other-0", "weight": 5}]}),
            "spec.members",
        ),
        (
            "member ordinal with a leading zero",
            json!({"members": [{"name": "refused-01"}]}),
            "spec.members",
        ),
        (
            "request over limit",
            json!({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}),
            "spec.resources",
        ),
    ]
}

/// Values the schema accepts but the operator must refuse: (name, spec, reason).
fn operator_refused() -> Vec<(String, Value, &'static str)> {
    vec![
        (
            "rf".into(),
            json!({"replicas": 1, "replicationFactor": 3}),
            "ReplicationFactorUnsupported",
        ),
        (
            "all-drained".into(),
            json!({"replicas": 1, "members": [{"name": "all-drained-0", "drain": true}]}),
            "ZeroTotalWeight",
        ),
        (
            "zero-budget".into(),
            json!({"replicas": 1, "migration": {"writePauseBudget": "0s"}}),
            "InvalidDuration",
        ),
        (
            "huge-budget".into(),
            json!({"replicas": 1, "migration": {"writePauseBudget": "1000000h"}}),
            "InvalidDuration",
        ),
        (
            "zero-bandwidth".into(),
            json!({"replicas": 1, "migration": {"bandwidthBytesPerSecond": "0"}}),
            "InvalidNumber",
        ),
        (
            "u64-overflow".into(),
            json!({"replicas": 1, "migration": {"lagThresholdRecords": "99999999999999999999"}}),
            "InvalidNumber",
        ),
        (
            "bad-size".into(),
            json!({"replicas": 1, "storage": {"size": "lots"}}),
            "InvalidStorageSize",
        ),
        (
            "zero-size".into(),
            json!({"replicas": 1, "storage": {"size": "0"}}),
            "InvalidStorageSize",
        ),
        (
            "bad-cpu".into(),
            json!({"replicas": 1, "resources": {"requests": {"cpu": "lots"}}}),
            "InvalidResources",
        ),
        (
            "no-secret".into(),
            json!({"replicas": 1, "auth": {"passwordSecretRef": {"name": "absent"}}}),
            "PasswordSecretMissing",
        ),
        (
            "wrong-key".into(),
            json!({"replicas": 1, "auth": {"passwordSecretRef": {"name": "pw", "key": "password"}}}),
            "PasswordSecretMissing",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_shardclusters_are_refused_clearly_while_a_valid_one_is_served() {
    let Some(env) = support::env_or_skip("invalid resources").await else {
        return;
    };
    support::install_crds().unwrap();
    let ns = TestNamespace::create(&env, "invalid").await.unwrap();
    let op = OperatorProcess::start(&ns.name, "op-inv", Duration::from_secs(6)).unwrap();
    let clusters = ringshift_api(&env.client, &ns.name, "ShardCluster");

    // The valid cluster first, so its reconciles run alongside the invalid ones.
    apply_cluster(
        &env.client,
        &ns.name,
        "good",
        json!({"replicas": 1, "vnodes": 16}),
    )
    .await
    .unwrap();

    // Refused by the API server, each with the field in the message.
    for (what, spec, field) in schema_refused() {
        let obj = from_json(json!({
            "apiVersion": "ringshift.dev/v1alpha1", "kind": "ShardCluster",
            "metadata": {"name": "refused"}, "spec": spec,
        }));
        let err = clusters
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("{what}: the API server accepted it"));
        let msg = err.to_string();
        assert!(
            msg.contains("422") || msg.contains("Invalid"),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(field),
            "{what}: the error does not name {field}: {msg}"
        );
    }
    for (what, name) in [
        ("name too long for the API server", "n".repeat(254)),
        ("name with invalid characters", "Bad_Name".to_string()),
        // CEL: longer than a label value (63), longer than a StatefulSet name may be (52), and
        // not starting with a letter.
        (
            "name too long for a label",
            format!("long-{}", "n".repeat(60)),
        ),
        (
            "name too long for a StatefulSet",
            format!("longish-{}", "n".repeat(48)),
        ),
        ("name starting with a digit", "9lives".to_string()),
    ] {
        let obj = from_json(json!({
            "apiVersion": "ringshift.dev/v1alpha1", "kind": "ShardCluster",
            "metadata": {"name": name}, "spec": {},
        }));
        let err = clusters
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(what);
        assert!(err.to_string().contains("metadata.name"), "{what}: {err}");
    }

    // Accepted by the schema, refused by the operator.
    let pw: Secret = from_json(json!({"metadata": {"name": "pw"}, "stringData": {"pass": "x"}}));
    ns.api::<Secret>()
        .create(&PostParams::default(), &pw)
        .await
        .unwrap();
    let cases = operator_refused();
    for (name, spec, _) in &cases {
        apply_cluster(&env.client, &ns.name, name, spec.clone())
            .await
            .unwrap();
    }

    // Scale the valid cluster while the operator deals with the invalid ones.
    wait_balanced(&env.client, &ns.name, "good", TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail(30)));
    // CEL transition rules: vnodes and storage are fixed once the cluster exists.
    for (what, spec, field) in [
        (
            "vnodes changed",
            json!({"replicas": 1, "vnodes": 32}),
            "spec.vnodes",
        ),
        (
            "storage changed",
            json!({"replicas": 1, "vnodes": 16, "storage": {"size": "2Gi"}}),
            "spec.storage",
        ),
    ] {
        let err = apply_cluster(&env.client, &ns.name, "good", spec)
            .await
            .expect_err(what)
            .to_string();
        assert!(err.contains(field), "{what}: {err}");
    }
    // Stray objects the operator did not write: a copy of good's placement under another name
    // (with good's UID and another ring), a placement with a garbage ring for no cluster, and a
    // migration of no cluster. None may be driven, and good must keep being served.
    let good_uid = clusters.get("good").await.unwrap().metadata.uid.unwrap();
    let placements = ringshift_api(&env.client, &ns.name, "ShardPlacement");
    for (name, spec) in [
        (
            "good-copy",
            json!({"cluster": "good", "clusterUid": good_uid,
            "ring": {"algorithm": 1, "vnodes": 16, "ops": [{"op": "join", "member": "good-0", "weight": 1}]}}),
        ),
        (
            "ghost",
            json!({"cluster": "ghost", "clusterUid": "none", "ring": {"garbage": [1, 2]}}),
        ),
    ] {
        let obj = from_json(
            json!({"apiVersion": "ringshift.dev/v1alpha1", "kind": "ShardPlacement",
            "metadata": {"name": name}, "spec": spec}),
        );
        placements
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    let stray_move = from_json(
        json!({"apiVersion": "ringshift.dev/v1alpha1", "kind": "ShardMigration",
        "metadata": {"name": "ghost-move"},
        "spec": {"cluster": "ghost", "epoch": "1", "source": "ghost-0", "target": "ghost-1", "targetRing": "x"}}),
    );
    ringshift_api(&env.client, &ns.name, "ShardMigration")
        .create(&PostParams::default(), &stray_move)
        .await
        .unwrap();

    kubectl(&["scale", "-n", &ns.name, "shardcluster/good", "--replicas=2"])
        .await
        .unwrap();

    let mut versions = BTreeMap::new();
    for (name, _, reason) in &cases {
        let (status, got, message) =
            wait_until(&format!("{name}: Degraded {reason}"), TIMEOUT, || async {
                let obj = clusters.get(name).await.map_err(|e| e.to_string())?;
                match condition(&obj, "Degraded") {
                    Some(c) if c.1 == *reason => Ok(c),
                    other => Err(format!("{other:?}")),
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail(30)));
        assert_eq!(status, "True", "{name}");
        assert!(
            message.len() > 20,
            "{name}: message too short to act on: {message}"
        );
        assert_eq!(got, *reason);
        let obj = clusters.get(name).await.unwrap();
        assert_eq!(obj.data["status"]["state"], "Invalid", "{name}");
        let (ready, _, ready_msg) = condition(&obj, "Ready").unwrap_or_default();
        assert_eq!(ready, "False", "{name}: Ready {ready_msg}");
        versions.insert(name.clone(), obj.metadata.resource_version.clone());
        assert!(
            ns.api::<StatefulSet>()
                .get_opt(name)
                .await
                .unwrap()
                .is_none(),
            "{name}: a StatefulSet was created for an invalid spec"
        );
    }

    // A Warning Event per refused cluster, with the reason.
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for (name, _, reason) in &cases {
        assert!(
            events
                .iter()
                .any(|e| e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")),
            "{name}: no Warning Event {reason}"
        );
    }

    // The valid cluster reconciled the scale-out.
    wait_balanced(&env.client, &ns.name, "good", TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail(30)));
    support::wait_pods_ready(&ns.api::<Pod>(), "ringshift.dev/cluster=good", 2, TIMEOUT)
        .await
        .unwrap();
    let good = clusters.get("good").await.unwrap();
    assert_eq!(good.data["status"]["readyReplicas"], 2);
    for name in ["good-copy", "ghost"] {
        let p = placements.get(name).await.unwrap();
        assert!(
            p.data["status"].is_null() || p.data["status"]["epoch"].is_null(),
            "the stray ShardPlacement {name} was driven: {}",
            p.data["status"]
        );
    }
    let log = std::fs::read_to_string(&op.log).unwrap();
    let copy = format!("ringshift.dev/good-copy.{}", ns.name);
    assert!(
        !log.lines().any(|l| l.contains(&copy)
            && (l.contains("placement committed") || l.contains("placement push"))),
        "the copy of good's placement was driven:\n{}",
        op.log_tail(30)
    );

    // No hot loop: while nothing changes, the refused clusters are neither reconciled again
    // (not even failing and retrying, which leaves the status alone) nor is their status
    // rewritten.
    let before = std::fs::read_to_string(&op.log).unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, rv) in &versions {
        let now = clusters.get(name).await.unwrap().metadata.resource_version;
        assert_eq!(&now, rv, "{name}: status rewritten with nothing changed");
    }
    let log = std::fs::read_to_string(&op.log).unwrap();
    assert!(
        !log.contains("panicked"),
        "operator panicked:\n{}",
        op.log_tail(40)
    );
    let window = log.get(before..).unwrap_or_default();
    for (name, _, _) in &cases {
        let object = format!("ringshift.dev/{name}.{}", ns.name);
        let lines = window.lines().filter(|l| l.contains(&object)).count();
        assert_eq!(
            lines, 0,
            "{name} reconciled again with nothing changed:\n{window}"
        );
    }
    assert!(
        !log.lines().any(|l| l.contains("reconcile failed")
            && cases.iter().any(|(n, _, _)| l.contains(&format!("/{n}")))),
        "a refused cluster's reconcile failed (retry loop):\n{}",
        op.log_tail(40)
    );

    // Refused clusters can be deleted (their finalizer does not get stuck on them).
    for (name, _, _) in &cases {
        clusters.delete(name, &Default::default()).await.unwrap();
    }
    for (name, _, _) in &cases {
        wait_until(&format!("{name} deleted"), TIMEOUT, || async {
            match clusters.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(o)) => Err(format!("finalizers {:?}", o.metadata.finalizers)),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail(30)));
    }

    drop(op);
    ns.cleanup().await;
}

/// A ShardMigration's spec is editable by anyone who may edit the resource. Narrowing its
/// ranges to one hash the source owns (so the fence succeeds) once made the move copy that
/// hash and then commit the whole transfer: the rest of the transfer's keys were lost. The
/// cutover must refuse to commit ranges the move does not cover or did not copy.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_migration_cannot_commit_ranges_it_did_not_copy() {
    let Some(env) = support::env_or_skip("edited migration").await else {
        return;
    };
    support::install_crds().unwrap();
    let ns = TestNamespace::create(&env, "edited-move").await.unwrap();
    let op = OperatorProcess::start(&ns.name, "op-edit", Duration::from_secs(6)).unwrap();
    let spec = |replicas: i32, paused: bool| {
        json!({"replicas": replicas, "vnodes": 16,
               "migration": {"sourceRetention": "1s", "paused": paused}})
    };
    apply_cluster(&env.client, &ns.name, "ed", spec(2, false))
        .await
        .unwrap();
    wait_balanced(&env.client, &ns.name, "ed", TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail(30)));
    let pods = ns.api::<Pod>();
    let ready = support::wait_pods_ready(&pods, "ringshift.dev/cluster=ed", 2, TIMEOUT)
        .await
        .unwrap();
    let url = format!("redis://{}:6379/", support::pod_ip(&ready[0]).unwrap());
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Balanced is recorded before every node has the placement: wait until it serves.
    wait_until("ed-0 serves writes", TIMEOUT, || {
        let mut c = c.clone();
        async move {
            redis::cmd("SET")
                .arg("probe")
                .arg(1)
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
    .unwrap();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    // Plan the scale-out while paused, then narrow every planned move to one hash it owns.
    apply_cluster(&env.client, &ns.name, "ed", spec(2, true))
        .await
        .unwrap();
    apply_cluster(&env.client, &ns.name, "ed", spec(3, true))
        .await
        .unwrap();
    let migrations = ringshift_api(&env.client, &ns.name, "ShardMigration");
    let planned = wait_until("two moves planned", TIMEOUT, || async {
        let list = migrations
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if list.items.len() == 2 {
            Ok(list.items)
        } else {
            Err(format!("{} moves", list.items.len()))
        }
    })
    .await
    .unwrap();
    for m in &planned {
        let first = m.data["spec"]["ranges"][0]["start"]
            .as_str()
            .unwrap()
            .to_string();
        let name = m.metadata.name.clone().unwrap();
        let patch = json!({"spec": {"ranges": [{"start": first, "end": first}]}}).to_string();
        kubectl(&[
            "patch",
            "shardmigration",
            &name,
            "-n",
            &ns.name,
            "--type",
            "merge",
            "-p",
            &patch,
        ])
        .await
        .unwrap();
    }
    apply_cluster(&env.client, &ns.name, "ed", spec(3, false))
        .await
        .unwrap();

    // The moves run up to the cutover but never commit.
    let read_all = |url: String| async move {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut missing = Vec::new();
        for i in 0..300 {
            let v: Option<i64> = redis::cmd("GET")
                .arg(format!("key{i}"))
                .query_async(&mut c)
                .await
                .unwrap();
            if v != Some(i) {
                missing.push(i);
            }
        }
        missing
    };
    tokio::time::sleep(Duration::from_secs(15)).await;
    let list = migrations.list(&ListParams::default()).await.unwrap().items;
    for m in &list {
        assert_ne!(
            m.data["status"]["phase"],
            "Completed",
            "{} committed ranges it did not copy\n{}",
            m.metadata.name.clone().unwrap_or_default(),
            op.log_tail(20)
        );
    }
    assert_eq!(read_all(url.clone()).await, Vec::<i64>::new(), "keys lost");

    drop(op);
    ns.cleanup().await;
}
