//! End-to-end: `kubectl ringshift` as a person on call uses it, run as the binary against the
//! local cluster with `--kubeconfig`/`--context`: every command (status, watch, plan with
//! estimates, approve of a reviewed plan with a changed plan refused, history, report from a
//! real Prometheus, pause/resume, cancel, drain/undrain/reweight) and bad input, in text, JSON
//! and YAML.

use std::process::Command;
use std::time::Duration;

use ringshift_e2e::support::promql::Prometheus;
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, bin_dir, create_cluster, install_crds, kubeconfig_path,
    preload, ringshift_api, scale, wait_balanced, wait_until,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(240);
const NAME: &str = "plug";

/// Runs the plugin; (exit success, stdout, stderr).
fn plugin(ns: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin_dir().join("kubectl-ringshift"))
        .args(["--kubeconfig"])
        .arg(kubeconfig_path())
        .args(["--context", "ringshift-local", "-n", ns])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl-ringshift");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the plugin and expects success; stdout.
fn ok(ns: &str, args: &[&str]) -> String {
    let (success, out, err) = plugin(ns, args);
    assert!(success, "kubectl ringshift {args:?} failed: {err}\n{out}");
    out
}

fn json_of(ns: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = ok(ns, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

async fn members_of(ns: &TestNamespace) -> Value {
    let c = ringshift_api(&ns.client, &ns.name, "ShardCluster")
        .get(NAME)
        .await
        .expect("cluster");
    c.data["spec"]["members"].clone()
}

#[tokio::test]
async fn the_plugin_answers_and_steers_as_documented() {
    let Some(env) = support::env_or_skip("the_plugin_answers_and_steers_as_documented").await
    else {
        return;
    };
    install_crds().expect("CRDs");
    let ns = TestNamespace::create(&env, "e2e-plugin")
        .await
        .expect("namespace");
    let op = OperatorProcess::start(&ns.name, "op-0", Duration::from_secs(6)).expect("operator");
    let prom = Prometheus::start().expect("prometheus (apt-get install prometheus)");
    prom.add_operator(&ns.name, &op.metrics_addr().await.expect("metrics"), "op-0")
        .expect("operator target");
    let spec = json!({
        "replicas": 3,
        "vnodes": 8,
        "migration": {"sourceRetention": "1s", "maxConcurrentMoves": 2},
    });
    if let Err(e) = create_cluster(&ns.client, &ns.name, NAME, spec, &op, TIMEOUT).await {
        panic!("{e}");
    }
    preload(&ns, NAME, "p", 4_000, 200).await.expect("preload");
    let n = ns.name.as_str();

    // status: text and JSON agree on the members.
    let text = ok(n, &["status", NAME]);
    assert!(text.contains(&format!("{n}/{NAME}")), "{text}");
    let status = json_of(n, &["status", NAME]);
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );

    // plan: a dry run writes nothing and gives a row per move.
    let plan = json_of(n, &["plan", NAME, "--replicas", "4"]);
    let moves = plan["moves"].as_array().expect("moves").clone();
    assert!(!moves.is_empty(), "{plan}");
    assert!(moves.iter().all(|m| m["target"] == "plug-3"), "{plan}");
    let text = ok(n, &["plan", NAME, "--replicas", "4"]);
    assert!(
        text.contains("EST.BYTES") && text.contains("estimates:"),
        "{text}"
    );
    let c = ringshift_api(&ns.client, &ns.name, "ShardCluster")
        .get(NAME)
        .await
        .expect("cluster");
    assert_eq!(c.data["spec"]["replicas"], 3, "plan wrote something");

    // approve: Manual mode publishes the plan; a plan other than the reviewed one is refused.
    ringshift_api(&ns.client, &ns.name, "ShardCluster")
        .patch(
            NAME,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"migration": {"approval": "Manual"}}})),
        )
        .await
        .expect("manual approval");
    scale(&ns, NAME, 4).await.expect("scale");
    let clusters = ringshift_api(&ns.client, &ns.name, "ShardCluster");
    let pending = wait_until("a plan awaits approval", TIMEOUT, || async {
        let c = clusters.get(NAME).await.map_err(|e| e.to_string())?;
        c.data["status"]["pendingPlan"]["hash"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no pending plan".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));
    let (success, _, err) = plugin(n, &["approve", NAME, "--plan", "0000"]);
    assert!(!success, "a plan that is not the reviewed one was approved");
    assert!(err.contains("changed since it was reviewed"), "{err}");
    let c = clusters.get(NAME).await.expect("cluster");
    assert!(
        c.data["spec"]["migration"]["approvedPlan"].is_null(),
        "refused, yet written: {}",
        c.data["spec"]["migration"]
    );
    let out = ok(n, &["approve", NAME, "--plan", &pending]);
    assert!(out.contains(&pending), "{out}");
    wait_balanced(&ns.client, &ns.name, NAME, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(40)));

    // history: the committed moves with their bytes, in YAML as well.
    let yaml = ok(n, &["history", NAME, "-o", "yaml"]);
    let rows: Vec<Value> =
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("not YAML ({e}): {yaml}"));
    let done: Vec<&Value> = rows
        .iter()
        .filter(|r| r["phase"] == "Completed" || r["phase"] == "Cleanup")
        .collect();
    assert!(!done.is_empty(), "{yaml}");
    assert!(
        done.iter()
            .all(|r| r["target"] == "plug-3" && r["secs"].is_u64()),
        "{yaml}"
    );
    assert!(
        done.iter().any(|r| r["bytes"].as_u64().unwrap_or(0) > 0),
        "{yaml}"
    );
    let text = ok(n, &["history", NAME]);
    assert!(text.contains("->plug-3"), "{text}");

    // watch returns once the cluster is Balanced, as it is now.
    let text = ok(n, &["watch", NAME]);
    assert!(text.contains("plug is Balanced"), "{text}");

    // report: one PNG of the run from the Prometheus that scraped it.
    let png = std::env::temp_dir().join(format!("{n}-report.png"));
    let text = ok(
        n,
        &[
            "report",
            NAME,
            "--png",
            png.to_str().expect("path"),
            "--prometheus",
            &prom.url,
            "--since",
            "10m",
        ],
    );
    assert!(text.contains("written to"), "{text}");
    for panel in ["Client commands per second", "Moves in flight"] {
        assert!(!text.contains(panel), "no data for {panel}: {text}");
    }
    let bytes = std::fs::read(&png).expect("png");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let _ = std::fs::remove_file(&png);
    let (success, _, err) = plugin(
        n,
        &[
            "report",
            NAME,
            "--png",
            "/nonexistent/dir/r.png",
            "--prometheus",
            &prom.url,
        ],
    );
    assert!(!success && err.contains("/nonexistent/dir/r.png"), "{err}");

    // cancel: a finished move takes the annotation (the operator honours it only before the
    // commit); an unknown one is an error.
    let done_name = done[0]["name"].as_str().expect("name").to_string();
    let out = ok(n, &["cancel", &done_name]);
    assert!(out.contains("cancel requested"), "{out}");
    let m = ringshift_api(&ns.client, &ns.name, "ShardMigration")
        .get(&done_name)
        .await
        .expect("migration");
    assert_eq!(
        m.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("ringshift.dev/cancel"))
            .map(String::as_str),
        Some("true")
    );
    let (success, _, err) = plugin(n, &["cancel", "nosuch"]);
    assert!(
        !success && err.contains("no ShardMigration nosuch"),
        "{err}"
    );

    // With a finished move to measure, every planned move has an estimate.
    let plan = json_of(n, &["plan", NAME, "--drain", "1"]);
    assert_ne!(plan["basis"], "none", "{plan}");
    let moves = plan["moves"].as_array().expect("moves");
    assert!(!moves.is_empty(), "{plan}");
    assert!(
        moves
            .iter()
            .all(|m| m["source"] == "plug-1" && m["estimatedBytes"].as_u64().unwrap_or(0) > 0),
        "{plan}"
    );

    // drain / undrain / reweight edit spec.members; repeating one changes nothing.
    // pause / resume set spec.migration.paused (paused here so the edits below start nothing).
    ok(n, &["resume", NAME]);
    let paused = || async {
        ringshift_api(&ns.client, &ns.name, "ShardCluster")
            .get(NAME)
            .await
            .expect("cluster")
            .data["spec"]["migration"]["paused"]
            .clone()
    };
    assert_eq!(paused().await, json!(false));
    let out = ok(n, &["pause", NAME]);
    assert!(out.contains("paused"), "{out}");
    assert_eq!(paused().await, json!(true));
    let out = ok(n, &["drain", NAME, "1"]);
    assert!(out.contains("plug-1 draining"), "{out}");
    assert_eq!(
        members_of(&ns).await,
        json!([{"name": "plug-1", "weight": 100, "drain": true}])
    );
    let out = ok(n, &["drain", NAME, "plug-1"]);
    assert!(out.contains("already draining"), "{out}");
    let edit = json_of(n, &["reweight", NAME, "0", "300"]);
    assert_eq!(edit, json!({"member": "plug-0", "changed": true}));
    ok(n, &["undrain", NAME, "1"]);
    assert_eq!(
        members_of(&ns).await,
        json!([{"name": "plug-0", "weight": 300, "drain": false}])
    );

    // Bad input: a clear error, a failing exit, nothing written.
    let (success, _, err) = plugin(n, &["reweight", NAME, "7", "2"]);
    assert!(!success && err.contains("not a member of plug"), "{err}");
    let (success, _, err) = plugin(n, &["reweight", NAME, "0", "-5"]);
    assert!(!success && err.contains("out of range"), "{err}");
    let (success, _, err) = plugin(n, &["status", "nosuch"]);
    assert!(!success && err.contains("no ShardCluster nosuch"), "{err}");
    let out = Command::new(bin_dir().join("kubectl-ringshift"))
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(["--context", "nosuch", "status", NAME])
        .output()
        .expect("run kubectl-ringshift");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("kubeconfig"), "{err}");
    assert_eq!(
        members_of(&ns).await,
        json!([{"name": "plug-0", "weight": 300, "drain": false}])
    );
}
