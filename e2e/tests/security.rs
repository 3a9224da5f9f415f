//! Security: the operator's RBAC as the chart renders it (least privilege, and enough: the
//! operator runs here with exactly its service account's permissions), requests outside it
//! denied, each cluster's own admin token required by its nodes, data-port AUTH with
//! forwarding between nodes, non-root pods, and no token or password in logs, Events or status.
//!
//! What the local harness cannot show: its process kubelet runs every pod as root whatever the
//! securityContext says, so for non-root pods the test asserts the rendered and applied specs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PostParams;
use ringshift_e2e::support::{
    self, OperatorProcess, TestNamespace, apply_cluster, from_json, helm, kubectl, pod_ip, pod_log,
    repo_root, ringshift_api, wait_balanced,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(120);
const ADMIN_PORT: u16 = 8080;
const OPEN_ENDPOINTS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

// ---- the rendered chart ----

/// The chart's objects rendered by `helm template` with `args`, as JSON.
fn render(release_ns: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(helm())
        .args(["template", "ringshift"])
        .arg(repo_root().join("charts/ringshift"))
        .args(["--namespace", release_ns])
        .args(args)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("helm output is YAML");
    docs.into_iter().filter(|d| d.is_object()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `(api group, resource) -> verbs` over every rule of the given roles.
fn grants(roles: &[&Value]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for role in roles {
        for rule in role["rules"].as_array().expect("rules") {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "non-resource URLs granted: {rule}"
            );
            assert!(rule.get("resourceNames").is_none() || rule["resourceNames"].is_null());
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    out.entry((group.clone(), resource))
                        .or_default()
                        .extend(strings(&rule["verbs"]));
                }
            }
        }
    }
    out
}

/// What the operator may do, and nothing more (charts/ringshift/README.md documents each).
fn expected_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    let rs = "ringshift.dev";
    let table: &[(&str, &str, &[&str])] = &[
        (rs, "shardclusters", &["get", "list", "watch", "patch"]),
        (
            rs,
            "shardplacements",
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            rs,
            "shardmigrations",
            &["get", "list", "watch", "create", "delete"],
        ),
        (rs, "shardclusters/status", &["get", "update", "patch"]),
        (rs, "shardplacements/status", &["get", "update", "patch"]),
        (rs, "shardmigrations/status", &["get", "update", "patch"]),
        (rs, "shardclusters/finalizers", &["update"]),
        (
            "apps",
            "statefulsets",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        ("", "services", &["get", "list", "watch", "create", "patch"]),
        ("", "secrets", &["get", "list", "watch", "create"]),
        ("", "pods", &["get", "list", "watch", "delete"]),
        (
            "",
            "persistentvolumeclaims",
            &["get", "list", "watch", "delete"],
        ),
        (
            "policy",
            "poddisruptionbudgets",
            &["get", "list", "watch", "create", "patch"],
        ),
        ("", "events", &["create", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    table
        .iter()
        .map(|(g, r, v)| {
            (
                (g.to_string(), r.to_string()),
                v.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

fn assert_least_privilege(docs: &[Value], what: &str) {
    let mut roles = of_kind(docs, "ClusterRole");
    roles.extend(of_kind(docs, "Role"));
    assert!(!roles.is_empty(), "{what}: no roles rendered");
    for role in &roles {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{what}: wildcard in {field}: {rule}"
                );
            }
        }
    }
    let leader: Vec<&Value> = roles
        .iter()
        .copied()
        .filter(|r| {
            r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-leader-election"))
        })
        .collect();
    assert_eq!(leader.len(), 1, "{what}: one leader-election Role");
    assert_eq!(leader[0]["kind"], "Role");
    let mut want_leader = BTreeMap::new();
    want_leader.insert(
        ("coordination.k8s.io".to_string(), "leases".to_string()),
        ["get", "create", "update"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
    );
    assert_eq!(grants(&leader), want_leader, "{what}: leader election");
    let main: Vec<&Value> = roles
        .iter()
        .copied()
        .filter(|r| {
            !r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-leader-election"))
        })
        .collect();
    assert_eq!(grants(&main), expected_grants(), "{what}: operator role");
}

#[test]
fn rendered_rbac_is_least_privilege_and_documented() {
    // Cluster-wide: a ClusterRole, but still only the managed kinds.
    let all = render("ringshift-system", &[]);
    assert_least_privilege(&all, "watching every namespace");
    assert_eq!(of_kind(&all, "ClusterRole").len(), 1);

    // One namespace: nothing cluster-scoped at all.
    let one = render("apps", &["--set", "watchNamespace=apps"]);
    assert_least_privilege(&one, "watchNamespace=apps");
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(
            of_kind(&one, kind).is_empty(),
            "{kind} rendered with watchNamespace set"
        );
    }
    for role in of_kind(&one, "Role")
        .iter()
        .chain(of_kind(&one, "RoleBinding").iter())
    {
        assert_eq!(role["metadata"]["namespace"], "apps", "{role}");
    }

    // The Secret access is documented with its reason.
    let readme = std::fs::read_to_string(repo_root().join("charts/ringshift/README.md")).unwrap();
    assert!(
        readme.contains("| `secrets` | get, list, watch, create |"),
        "chart README: secrets row"
    );
    assert!(
        readme.contains("### Secrets"),
        "chart README: Secrets section"
    );
    let rbac =
        std::fs::read_to_string(repo_root().join("charts/ringshift/templates/rbac.yaml")).unwrap();
    assert!(
        rbac.contains("Secrets:"),
        "rbac.yaml says why it needs Secrets"
    );
}

#[test]
fn rendered_operator_pods_run_as_non_root() {
    let docs = render("ringshift-system", &[]);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let pod = &deployments[0]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_i64()
            .is_some_and(|u| u > 0)
    );
    for c in pod["containers"].as_array().unwrap() {
        assert_container_locked_down(c);
    }
}

fn assert_container_locked_down(c: &Value) {
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{c}");
    assert!(
        sc["privileged"].is_null() || sc["privileged"] == false,
        "{c}"
    );
    assert!(
        strings(&sc["capabilities"]["drop"]).contains(&"ALL".to_string()),
        "{c}"
    );
    assert!(sc["capabilities"]["add"].is_null(), "{c}");
}

// ---- the admin API's endpoints, from its router ----

/// Every `(method, path)` the node's admin router serves, read from node/src/admin/mod.rs so a
/// new endpoint is covered without editing this test.
fn admin_endpoints() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(repo_root().join("node/src/admin/mod.rs")).unwrap();
    let mut out = Vec::new();
    for part in src.split(".route(").skip(1) {
        let Some(path) = part.split('"').nth(1) else {
            continue;
        };
        let body = part.split(".route(").next().unwrap_or(part);
        for (needle, method) in [
            ("get(", "GET"),
            ("post(", "POST"),
            ("put(", "PUT"),
            ("delete(", "DELETE"),
        ] {
            if body.contains(needle) {
                out.push((method.to_string(), path.replace("{uid}", "m1")));
            }
        }
    }
    assert!(out.len() >= 15, "router parse found only {out:?}");
    out
}

async fn admin_call(ip: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client
        .request(
            method.parse().unwrap(),
            format!("http://{ip}:{ADMIN_PORT}{path}"),
        )
        .header("content-type", "application/json")
        .body("{}");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        .status()
        .as_u16()
}

// ---- the cluster test ----

fn secret_value(s: &Secret, key: &str) -> String {
    let raw = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("no {key} in Secret"));
    String::from_utf8(raw.0.clone()).unwrap().trim().to_string()
}

/// A kubeconfig that authenticates as `ns/sa` with a short-lived token from the TokenRequest
/// API (service accounts have no token Secrets any more).
async fn service_account_kubeconfig(ns: &TestNamespace, sa: &str) -> PathBuf {
    ns.wait_service_account(sa).await.unwrap();
    let out = Command::new("kubectl")
        .env("KUBECONFIG", support::kubeconfig_path())
        .args(["create", "token", sa, "-n", &ns.name, "--duration", "1h"])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl create token {sa}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let admin: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(support::kubeconfig_path()).unwrap())
            .unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let path = std::env::temp_dir().join(format!("{}-{sa}.kubeconfig", ns.name));
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": ns.name}}],
        "current-context": "sa",
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// `kubectl auth can-i` as `subject` (it prints yes or no; exit status 1 means no).
fn can_i(subject: &str, args: &[&str]) -> bool {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", support::kubeconfig_path())
        .args(["auth", "can-i", "--as", subject])
        .args(args)
        .output()
        .expect("kubectl runs");
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {args:?}: {other} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Sends RESP commands on one connection and returns each reply line.
async fn resp(addr: &str, commands: &[&[&str]]) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut out = Vec::new();
    for cmd in commands {
        let mut frame = format!("*{}\r\n", cmd.len());
        for a in *cmd {
            frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        w.write_all(frame.as_bytes()).await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("reply within 10s")
            .unwrap()
            .unwrap_or_default();
        out.push(line);
    }
    out
}

/// Applies the chart's service account and RBAC for `ns` (watchNamespace = release namespace),
/// exactly as `helm template` renders them.
async fn apply_chart_rbac(ns: &TestNamespace) {
    let rendered = render(&ns.name, &["--set", &format!("watchNamespace={}", ns.name)]);
    let items: Vec<Value> = rendered
        .into_iter()
        .filter(|d| {
            ["ServiceAccount", "Role", "RoleBinding"].contains(&d["kind"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(items.len(), 5, "service account, two roles, two bindings");
    let list = std::env::temp_dir().join(format!("{}-rbac.json", ns.name));
    std::fs::write(
        &list,
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .unwrap();
    kubectl(&["apply", "-n", &ns.name, "-f", &list.to_string_lossy()])
        .await
        .unwrap();
}

/// Fails if any of `secrets` appears in any of `places` (what, text).
fn assert_nothing_leaks(places: &[(String, String)], secrets: &[&str]) {
    for (where_, text) in places {
        for s in secrets {
            assert!(!text.contains(s), "a token or password appears in {where_}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_with_chart_rbac_per_cluster_tokens_auth_and_no_leaks() {
    let Some(env) = support::env_or_skip("security").await else {
        return;
    };
    support::install_crds().unwrap();
    let ns = TestNamespace::create(&env, "sec").await.unwrap();
    let other = TestNamespace::create(&env, "sec-other").await.unwrap();

    // The chart's RBAC for one namespace, applied as rendered.
    apply_chart_rbac(&ns).await;
    let subject = format!("system:serviceaccount:{}:ringshift", ns.name);

    // Requests outside the RBAC are denied (and what it needs is allowed).
    let me = ns.name.as_str();
    let them = other.name.as_str();
    for (allowed, args) in [
        (true, vec!["create", "statefulsets.apps", "-n", me]),
        (true, vec!["get", "secrets", "-n", me]),
        (true, vec!["create", "secrets", "-n", me]),
        (false, vec!["update", "secrets", "-n", me]),
        (false, vec!["delete", "secrets", "-n", me]),
        (false, vec!["get", "secrets", "-n", them]),
        (
            false,
            vec!["list", "shardclusters.ringshift.dev", "-n", them],
        ),
        (false, vec!["create", "deployments.apps", "-n", me]),
        (false, vec!["create", "pods/exec", "-n", me]),
        (false, vec!["create", "serviceaccounts/token", "-n", me]),
        (
            false,
            vec!["create", "rolebindings.rbac.authorization.k8s.io", "-n", me],
        ),
        (false, vec!["delete", "nodes"]),
        (
            false,
            vec!["create", "clusterroles.rbac.authorization.k8s.io"],
        ),
        (
            false,
            vec!["get", "customresourcedefinitions.apiextensions.k8s.io"],
        ),
        (false, vec!["delete", "namespaces"]),
    ] {
        assert_eq!(can_i(&subject, &args), allowed, "can-i {args:?}");
    }
    // Real requests as the account, refused by the API server.
    for args in [
        vec!["get", "secrets", "-n", them],
        vec!["delete", "node", "no-such-node"],
        vec![
            "create",
            "clusterrole",
            "ringshift-escalate",
            "--verb=get",
            "--resource=pods",
        ],
    ] {
        let mut all = vec!["--as", subject.as_str()];
        all.extend_from_slice(&args);
        let err = kubectl(&all)
            .await
            .expect_err(&format!("{args:?} must be denied"));
        assert!(err.to_string().contains("forbidden"), "{args:?}: {err}");
    }

    // The operator runs with exactly that account's permissions.
    let kubeconfig = service_account_kubeconfig(&ns, "ringshift").await;
    let op = OperatorProcess::start_with_kubeconfig(
        &ns.name,
        "op-sec",
        Duration::from_secs(6),
        &kubeconfig.to_string_lossy(),
    )
    .unwrap();

    let password = format!("pw-{:016x}", rand_u64());
    let secret: Secret = from_json(json!({
        "metadata": {"name": "alpha-auth"},
        "stringData": {"password": password},
    }));
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    apply_cluster(
        &env.client,
        &ns.name,
        "alpha",
        json!({"replicas": 2, "vnodes": 16, "auth": {"passwordSecretRef": {"name": "alpha-auth"}}}),
    )
    .await
    .unwrap();
    apply_cluster(
        &env.client,
        &ns.name,
        "beta",
        json!({"replicas": 1, "vnodes": 16}),
    )
    .await
    .unwrap();
    for name in ["alpha", "beta"] {
        wait_balanced(&env.client, &ns.name, name, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(30)));
    }

    // Each cluster has its own token.
    let secrets = ns.api::<Secret>();
    let alpha_token = secret_value(&secrets.get("alpha-admin-token").await.unwrap(), "token");
    let beta_token = secret_value(&secrets.get("beta-admin-token").await.unwrap(), "token");
    assert_eq!(alpha_token.len(), 64, "256-bit hex token");
    assert_ne!(alpha_token, beta_token, "two clusters share a token");

    let pods = ns.api::<Pod>();
    let alpha_pods = support::wait_pods_ready(&pods, "ringshift.dev/cluster=alpha", 2, TIMEOUT)
        .await
        .unwrap();
    let beta_pods = support::wait_pods_ready(&pods, "ringshift.dev/cluster=beta", 1, TIMEOUT)
        .await
        .unwrap();
    let alpha_ip = pod_ip(&alpha_pods[0]).unwrap();
    let beta_ip = pod_ip(&beta_pods[0]).unwrap();

    // The admin API: 401 without a token and with the other cluster's token on every endpoint
    // but the open ones, which answer anyone.
    for (method, path) in admin_endpoints() {
        if OPEN_ENDPOINTS.contains(&path.as_str()) {
            assert_eq!(
                admin_call(&alpha_ip, &method, &path, None).await,
                200,
                "{path}"
            );
            continue;
        }
        assert_eq!(
            admin_call(&alpha_ip, &method, &path, None).await,
            401,
            "{method} {path}"
        );
        assert_eq!(
            admin_call(&alpha_ip, &method, &path, Some(&beta_token)).await,
            401,
            "{method} {path} with beta's token on alpha"
        );
        assert_eq!(
            admin_call(&beta_ip, &method, &path, Some(&alpha_token)).await,
            401,
            "{method} {path} with alpha's token on beta"
        );
    }
    assert_eq!(
        admin_call(&alpha_ip, "GET", "/v1/status", Some(&alpha_token)).await,
        200
    );
    assert_eq!(
        admin_call(&beta_ip, "GET", "/v1/status", Some(&beta_token)).await,
        200
    );

    // The data port of alpha requires AUTH; beta has no password.
    let addr0 = format!("{alpha_ip}:6379");
    let addr1 = format!("{}:6379", pod_ip(&alpha_pods[1]).unwrap());
    let got = resp(
        &addr0,
        &[
            &["GET", "k"],
            // A forwarded command is no way around AUTH either.
            &["RSFWD", "uid", "99", "alpha-1", "SET", "k", "v"],
            &["AUTH", "wrong"],
            &["GET", "k"],
            &["AUTH", &password],
            &["PING"],
        ],
    )
    .await;
    assert_eq!(got[0], "-NOAUTH Authentication required.");
    assert_eq!(got[1], "-NOAUTH Authentication required.");
    assert!(got[2].starts_with("-WRONGPASS"), "{}", got[2]);
    assert_eq!(got[3], "-NOAUTH Authentication required.");
    assert_eq!(got[4], "+OK");
    assert_eq!(got[5], "+PONG");
    assert_eq!(
        resp(&format!("{beta_ip}:6379"), &[&["PING"]]).await,
        ["+PONG"]
    );
    // Forwarding between alpha's nodes works with AUTH on: keys of both owners written through
    // one node, read through the other.
    let url = |a: &str| format!("redis://:{password}@{a}/");
    let mut c0 = redis::Client::open(url(&addr0))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut c1 = redis::Client::open(url(&addr1))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query_async(&mut c0)
            .await
            .unwrap();
    }
    for i in 0..100 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("key{i}"))
            .query_async(&mut c1)
            .await
            .unwrap();
        assert_eq!(v, i);
    }

    // Non-root node pods, and the token is a mounted file, not in the spec.
    let sts = ns.api::<StatefulSet>().get("alpha").await.unwrap();
    let sts_json = serde_json::to_value(&sts).unwrap();
    let pod_spec = &sts_json["spec"]["template"]["spec"];
    assert_eq!(
        pod_spec["securityContext"]["runAsNonRoot"], true,
        "{pod_spec}"
    );
    assert!(
        pod_spec["securityContext"]["runAsUser"]
            .as_i64()
            .is_some_and(|u| u > 0)
    );
    for c in pod_spec["containers"].as_array().unwrap() {
        assert_container_locked_down(c);
    }
    for v in pod_spec["volumes"].as_array().unwrap() {
        if let Some(secret) = v.get("secret") {
            assert_eq!(
                secret["defaultMode"], 0o400,
                "Secret volume readable by owner only: {v}"
            );
        }
    }

    // No token or password anywhere they should not be. Moves make the nodes call each other
    // with the token: scale alpha and wait for the moves to finish first.
    kubectl(&[
        "scale",
        "-n",
        &ns.name,
        "shardcluster/alpha",
        "--replicas=3",
    ])
    .await
    .unwrap();
    wait_balanced(&env.client, &ns.name, "alpha", TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail(30)));
    let secrets_to_hide = [alpha_token.as_str(), beta_token.as_str(), password.as_str()];
    let mut places: Vec<(String, String)> = Vec::new();
    let op_log = std::fs::read_to_string(&op.log).unwrap();
    assert!(
        op_log.contains("leading"),
        "the operator log is the one it writes"
    );
    places.push(("operator log".into(), op_log));
    for pod in ["alpha-0", "alpha-1", "alpha-2", "beta-0"] {
        let log = pod_log(&env, &ns.name, pod, "node");
        assert!(log.contains("placement installed"), "{pod} log:\n{log}");
        places.push((format!("{pod} log"), log));
    }
    for what in [
        "events",
        "events.events.k8s.io",
        "shardclusters,shardplacements,shardmigrations",
        "statefulsets,pods,services,configmaps",
    ] {
        let text = kubectl(&["get", what, "-n", &ns.name, "-o", "json"])
            .await
            .unwrap();
        places.push((what.to_string(), text));
    }
    let events = &places.iter().find(|(w, _)| w == "events").unwrap().1;
    assert!(
        events.contains("ShardCluster"),
        "Events of the clusters were recorded"
    );
    assert_nothing_leaks(&places, &secrets_to_hide);
    drop(op);
    other.cleanup().await;
    ns.cleanup().await;
}

/// The long variant: with the operator on the chart's RBAC, a cluster with AUTH is scaled out
/// and in (copies, catch-ups, cutovers, drops), its operator is killed and replaced, a node pod
/// is deleted, and the cluster is deleted with deletePolicy Delete (the finalizer's deletes are
/// allowed too). No write is lost, and no token or password shows up in any log, Event or
/// status, including those of the error paths.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: reliability tier"]
async fn tokens_stay_secret_through_scaling_failover_and_deletion() {
    let Some(env) = support::env_or_skip("security long").await else {
        return;
    };
    support::install_crds().unwrap();
    let ns = TestNamespace::create(&env, "sec-long").await.unwrap();
    apply_chart_rbac(&ns).await;
    let kubeconfig = service_account_kubeconfig(&ns, "ringshift").await;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let lease = Duration::from_secs(4);
    let mut first =
        OperatorProcess::start_with_kubeconfig(&ns.name, "op-a", lease, &kubeconfig).unwrap();

    let password = format!("pw-{:016x}", rand_u64());
    let secret: Secret = from_json(json!({
        "metadata": {"name": "gamma-auth"},
        "stringData": {"password": password},
    }));
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let spec = |replicas: i32| {
        json!({"replicas": replicas, "vnodes": 16, "deletePolicy": "Delete",
               "auth": {"passwordSecretRef": {"name": "gamma-auth"}},
               "migration": {"sourceRetention": "1s", "writePauseBudget": "2s"}})
    };
    apply_cluster(&env.client, &ns.name, "gamma", spec(3))
        .await
        .unwrap();
    let balanced = |op: &OperatorProcess| {
        let (client, ns, tail) = (env.client.clone(), ns.name.clone(), op.log_tail(30));
        async move {
            wait_balanced(&client, &ns, "gamma", Duration::from_secs(240))
                .await
                .unwrap_or_else(|e| panic!("{e}\n{tail}"));
        }
    };
    balanced(&first).await;
    let token = secret_value(
        &ns.api::<Secret>().get("gamma-admin-token").await.unwrap(),
        "token",
    );

    let pods = ns.api::<Pod>();
    let addr = |p: &Pod| format!("redis://:{password}@{}:6379/", pod_ip(p).unwrap());
    let ready = support::wait_pods_ready(&pods, "ringshift.dev/cluster=gamma", 3, TIMEOUT)
        .await
        .unwrap();
    let mut c = redis::Client::open(addr(&ready[0]))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    kubectl(&[
        "scale",
        "-n",
        &ns.name,
        "shardcluster/gamma",
        "--replicas=5",
    ])
    .await
    .unwrap();
    balanced(&first).await;
    // Failover: the leader dies, a new operator takes over and shrinks the cluster.
    let first_log = std::fs::read_to_string(&first.log).unwrap_or_default();
    first.kill();
    let second =
        OperatorProcess::start_with_kubeconfig(&ns.name, "op-b", lease, &kubeconfig).unwrap();
    assert!(
        second.wait_leading(Duration::from_secs(30)).await,
        "{}",
        second.log_tail(20)
    );
    kubectl(&[
        "scale",
        "-n",
        &ns.name,
        "shardcluster/gamma",
        "--replicas=2",
    ])
    .await
    .unwrap();
    balanced(&second).await;
    let ready = support::wait_pods_ready(&pods, "ringshift.dev/cluster=gamma", 2, TIMEOUT)
        .await
        .unwrap();
    // A node pod replaced: it gets its placement (with the token) again.
    pods.delete("gamma-1", &Default::default()).await.unwrap();
    let uid = ready[1].metadata.uid.clone().unwrap_or_default();
    support::wait_pod_uid_changed(&pods, "gamma-1", &uid, TIMEOUT)
        .await
        .unwrap();
    balanced(&second).await;
    let ready = support::wait_pods_ready(&pods, "ringshift.dev/cluster=gamma", 2, TIMEOUT)
        .await
        .unwrap();
    let mut c = redis::Client::open(addr(&ready[1]))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for i in 0..500 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(v, i, "k{i} after scaling and failover");
    }

    let mut places: Vec<(String, String)> = vec![("first operator log".into(), first_log)];
    for what in [
        "events",
        "shardclusters,shardplacements,shardmigrations",
        "statefulsets,pods",
    ] {
        let text = kubectl(&["get", what, "-n", &ns.name, "-o", "json"])
            .await
            .unwrap();
        places.push((what.to_string(), text));
    }
    // Deletion with deletePolicy Delete runs the finalizer under the same RBAC.
    ringshift_api(&env.client, &ns.name, "ShardCluster")
        .delete("gamma", &Default::default())
        .await
        .unwrap();
    support::wait_until("gamma and its volumes deleted", TIMEOUT, || async {
        let c = ringshift_api(&env.client, &ns.name, "ShardCluster")
            .get_opt("gamma")
            .await
            .map_err(|e| e.to_string())?;
        let pvcs = kubectl(&["get", "pvc", "-n", &ns.name, "-o", "name"])
            .await
            .map_err(|e| e.to_string())?;
        if c.is_none() && pvcs.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("cluster there: {}, pvcs: {pvcs}", c.is_some()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", second.log_tail(30)));

    places.push((
        "second operator log".into(),
        std::fs::read_to_string(&second.log).unwrap(),
    ));
    places.push((
        "events after deletion".into(),
        kubectl(&["get", "events", "-n", &ns.name, "-o", "json"])
            .await
            .unwrap(),
    ));
    for pod in (0..5).map(|i| format!("gamma-{i}")) {
        places.push((format!("{pod} log"), pod_log(&env, &ns.name, &pod, "node")));
    }
    assert_nothing_leaks(&places, &[token.as_str(), password.as_str()]);
    drop(second);
    ns.cleanup().await;
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
