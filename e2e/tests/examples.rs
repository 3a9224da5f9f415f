//! End-to-end: each example in `deploy/examples/` applies cleanly and does what its comments
//! promise — the small cluster becomes Ready and Balanced, the weighted placement gives members
//! shares proportional to their weights (and nothing to the drained one), and the manual-approval
//! cluster publishes its plan and moves nothing until the plan hash is approved.

use std::time::Duration;

use kube::api::{ListParams, Patch, PatchParams};
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, condition, install_crds, kubectl, repo_root,
    ringshift_api, wait_balanced, wait_until,
};
use ringshift_ring::{FULL_SPAN, Placement};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

async fn apply_example(ns: &TestNamespace, file: &str) {
    let path = repo_root().join("deploy/examples").join(file);
    kubectl(&["apply", "-n", &ns.name, "-f", &path.to_string_lossy()])
        .await
        .unwrap_or_else(|e| panic!("applying {file}: {e}"));
}

async fn committed_placement(ns: &TestNamespace, name: &str) -> Placement {
    let p = ringshift_api(&ns.client, &ns.name, "ShardPlacement")
        .get(name)
        .await
        .expect("ShardPlacement");
    serde_json::from_value(p.data["status"]["placement"].clone()).expect("placement document")
}

#[tokio::test]
async fn examples_do_what_they_say() {
    let Some(env) = support::env_or_skip("examples_do_what_they_say").await else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-examples")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");

    // small.yaml: Ready and Balanced.
    apply_example(&ns, "small.yaml").await;
    // weighted.yaml: proportional shares, nothing on the drained member.
    apply_example(&ns, "weighted.yaml").await;
    // manual-approval.yaml: starts Balanced (nothing to move yet).
    apply_example(&ns, "manual-approval.yaml").await;
    for name in ["demo", "weighted", "careful"] {
        if let Err(e) = wait_balanced(&ns.client, &ns.name, name, TIMEOUT).await {
            panic!("{name}: {e}\noperator log:\n{}", op.log_tail(40));
        }
    }
    let clusters = ringshift_api(&ns.client, &ns.name, "ShardCluster");
    for name in ["demo", "weighted", "careful"] {
        wait_until(&format!("{name} Ready"), TIMEOUT, || async {
            let c = clusters.get(name).await.map_err(|e| e.to_string())?;
            match condition(&c, "Ready") {
                Some(r) if r.0 == "True" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    }

    let current = committed_placement(&ns, "weighted")
        .await
        .current()
        .expect("resolves");
    let share = |m: &str| current.ranges_of(m).span() as f64 / FULL_SPAN as f64;
    let (s0, s1, s2, s3) = (
        share("weighted-0"),
        share("weighted-1"),
        share("weighted-2"),
        share("weighted-3"),
    );
    assert_eq!(s3, 0.0, "the drained member owns nothing");
    assert!((s0 + s1 + s2 - 1.0).abs() < 1e-9);
    assert!(
        (s0 / s1 - 2.0).abs() < 0.15,
        "weight 200 vs 100: {s0} / {s1}"
    );
    assert!(
        (s1 / s2 - 2.0).abs() < 0.15,
        "weight 100 vs 50: {s1} / {s2}"
    );

    // Manual approval: scaling publishes a plan and creates no migration until approved.
    clusters
        .patch(
            "careful",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scale careful");
    let hash = wait_until("careful publishes its plan", TIMEOUT, || async {
        let c = clusters.get("careful").await.map_err(|e| e.to_string())?;
        c.data["status"]["pendingPlan"]["hash"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("status: {}", c.data["status"]))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let migrations = ringshift_api(&ns.client, &ns.name, "ShardMigration");
    let careful_moves = |l: &kube::api::ObjectList<kube::api::DynamicObject>| {
        l.items
            .iter()
            .filter(|m| m.data["spec"]["cluster"] == "careful")
            .count()
    };
    let before = migrations.list(&ListParams::default()).await.expect("list");
    assert_eq!(careful_moves(&before), 0, "nothing moves before approval");
    let c = clusters.get("careful").await.expect("careful");
    assert_eq!(
        condition(&c, "Balanced").map(|b| b.0).as_deref(),
        Some("False")
    );
    // It says that it waits for a person, not that it progresses.
    wait_until("careful awaits approval", TIMEOUT, || async {
        let c = clusters.get("careful").await.map_err(|e| e.to_string())?;
        let progressing = condition(&c, "Progressing").unwrap_or_default();
        let state = c.data["status"]["state"].as_str().unwrap_or("");
        if state == "AwaitingApproval"
            && (progressing.0.as_str(), progressing.1.as_str()) == ("False", "AwaitingApproval")
        {
            Ok(())
        } else {
            Err(format!("state {state}, Progressing {progressing:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    clusters
        .patch(
            "careful",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"migration": {"approvedPlan": hash}}})),
        )
        .await
        .expect("approve");
    if let Err(e) = wait_balanced(&ns.client, &ns.name, "careful", TIMEOUT).await {
        panic!(
            "careful after approval: {e}\noperator log:\n{}",
            op.log_tail(40)
        );
    }
    let after = migrations.list(&ListParams::default()).await.expect("list");
    assert!(careful_moves(&after) > 0, "approved moves ran");
    drop(op);
    ns.cleanup().await;
}
