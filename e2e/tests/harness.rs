//! Tests of the local Kubernetes harness itself (the process kubelet against a real
//! kube-apiserver and kube-controller-manager). They need a cluster: `make test` brings one up;
//! by hand, `e2e/cluster/up` and `export KUBECONFIG=/tmp/ringshift-k8s/kubeconfig`.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use ringshift_e2e::support::{
    self, TestNamespace, from_json, http_get, http_put, pod_ip, pod_log, wait_until,
};
use serde_json::{Value, json};

const PORT: u16 = 8080;
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The test program's container: downward-API env, readiness on /readyz.
fn testpod(args: &[&str]) -> Value {
    let mut all = vec!["--port".to_string(), PORT.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    json!({
        "name": "app",
        "image": "ringshift-testpod:dev",
        "args": all,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": PORT}, "periodSeconds": 1}
    })
}

/// A pod spec the `restricted` PodSecurity level of the test namespaces admits.
fn restricted_spec(mut container: Value) -> Value {
    if container.get("securityContext").is_none() {
        container["securityContext"] = support::restricted_container_security_context();
    }
    json!({
        "terminationGracePeriodSeconds": 5,
        "securityContext": support::restricted_pod_security_context(),
        "containers": [container],
    })
}

fn pod(name: &str, container: Value, extra_spec: Value) -> Pod {
    let mut spec = restricted_spec(container);
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    from_json(json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": spec}))
}

#[tokio::test(flavor = "multi_thread")]
async fn statefulset_pods_get_distinct_ips_own_volumes_and_keep_data_across_recreation() {
    let Some(env) = support::env_or_skip("statefulset").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-sts").await.unwrap();
    let mut c = testpod(&[]);
    c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let sts: StatefulSet = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "replicas": 3,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": restricted_spec(c)},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }));
    ns.api::<StatefulSet>()
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let pods_api = ns.api::<Pod>();
    let pods = support::wait_pods_ready(&pods_api, "app=web", 3, READY_TIMEOUT)
        .await
        .unwrap();

    let ips: Vec<String> = pods.iter().map(|p| pod_ip(p).unwrap()).collect();
    assert_eq!(
        ips.iter().collect::<HashSet<_>>().len(),
        3,
        "pod IPs must be distinct: {ips:?}"
    );
    for (p, ip) in pods.iter().zip(&ips) {
        assert!(ip.starts_with("127."), "{ip}");
        let name = p.metadata.name.clone().unwrap();
        // The pod answers on its own address and knows its identity from the downward API.
        let (code, body) = http_get(ip, PORT, "/whoami").await.unwrap();
        assert_eq!(code, 200);
        let who: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(who["ip"], ip.as_str());
        assert_eq!(who["name"], name.as_str());
        assert_eq!(who["namespace"], ns.name.as_str());
        assert_eq!(
            http_put(ip, PORT, "/file?path=/data/owner", &name)
                .await
                .unwrap(),
            204
        );
    }
    for (p, ip) in pods.iter().zip(&ips) {
        // Each pod sees exactly its own volume at /data...
        let (_, listing) = http_get(ip, PORT, "/files?path=/data").await.unwrap();
        assert_eq!(listing, r#"["owner"]"#);
        let (_, owner) = http_get(ip, PORT, "/file?path=/data/owner").await.unwrap();
        assert_eq!(owner, p.metadata.name.clone().unwrap());
        // ...and cannot reach other pods' volumes through the harness state dir.
        let state = env.state_dir.join("volumes");
        let (code, body) = http_get(ip, PORT, &format!("/files?path={}", state.display()))
            .await
            .unwrap();
        assert!(
            code == 404 || body == "[]",
            "state dir visible inside the pod: {code} {body}"
        );
    }

    // The service-account token is mounted where in-cluster clients look for it.
    let (code, sa_ns) = http_get(
        &ips[0],
        PORT,
        "/file?path=/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    )
    .await
    .unwrap();
    assert_eq!((code, sa_ns.as_str()), (200, ns.name.as_str()));

    // Claims are Bound (to the volume the kubelet provisioned).
    let pvcs = ns.api::<PersistentVolumeClaim>();
    wait_until("claims Bound", Duration::from_secs(60), || async {
        let list = pvcs
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let phases: Vec<_> = list
            .items
            .iter()
            .map(|c| c.status.as_ref().and_then(|s| s.phase.clone()))
            .collect();
        if phases.len() == 3 && phases.iter().all(|p| p.as_deref() == Some("Bound")) {
            Ok(())
        } else {
            Err(format!("{phases:?}"))
        }
    })
    .await
    .unwrap();

    // A deleted pod comes back (new UID) with the same data directory.
    let old = &pods[1];
    let old_uid = old.metadata.uid.clone().unwrap();
    pods_api
        .delete("web-1", &DeleteParams::default())
        .await
        .unwrap();
    let new = support::wait_pod_uid_changed(&pods_api, "web-1", &old_uid, READY_TIMEOUT)
        .await
        .unwrap();
    let new_ip = pod_ip(&new).unwrap();
    let (code, owner) = http_get(&new_ip, PORT, "/file?path=/data/owner")
        .await
        .unwrap();
    assert_eq!((code, owner.as_str()), (200, "web-1"));
    // The old instance was stopped gracefully.
    let log = pod_log(&env, &ns.name, "web-1", "app");
    assert!(log.contains("got SIGTERM"), "log of web-1:\n{log}");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_readiness_probe_keeps_pod_unready() {
    let Some(env) = support::env_or_skip("readiness").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-unready")
        .await
        .unwrap();
    let api = ns.api::<Pod>();
    api.create(
        &PostParams::default(),
        &pod("unready", testpod(&["--unready"]), json!({})),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &pod("ready", testpod(&[]), json!({})),
    )
    .await
    .unwrap();
    // The control pod becomes Ready, so probes run; the unready one is serving but never Ready.
    support::wait_pod_ready(&api, "ready", READY_TIMEOUT)
        .await
        .unwrap();
    let p = wait_until(
        "unready pod running and probed",
        Duration::from_secs(60),
        || async {
            let p = api.get("unready").await.map_err(|e| e.to_string())?;
            match pod_ip(&p) {
                Some(ip)
                    if http_get(&ip, PORT, "/healthz")
                        .await
                        .is_ok_and(|(c, _)| c == 200) =>
                {
                    Ok(p)
                }
                _ => Err("not serving yet".to_string()),
            }
        },
    )
    .await
    .unwrap();
    let ip = pod_ip(&p).unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let p = api.get("unready").await.unwrap();
        assert!(
            !support::pod_ready(&p),
            "pod with failing readiness probe became Ready"
        );
        assert_eq!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
        let cs = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert!(!cs.ready && cs.state.as_ref().unwrap().running.is_some());
    }
    assert_eq!(http_get(&ip, PORT, "/readyz").await.unwrap().0, 503);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_denies_what_the_role_does_not_grant() {
    let Some(env) = support::env_or_skip("rbac").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-rbac").await.unwrap();
    let pp = PostParams::default();
    ns.api::<ServiceAccount>()
        .create(&pp, &from_json(json!({"metadata": {"name": "reader"}})))
        .await
        .unwrap();
    ns.api::<Role>()
        .create(&pp, &from_json(json!({
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
        })))
        .await
        .unwrap();
    ns.api::<RoleBinding>()
        .create(&pp, &from_json(json!({
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}]
        })))
        .await
        .unwrap();
    ns.wait_service_account("reader").await.unwrap();
    let api = ns.api::<Pod>();
    api.create(
        &pp,
        &pod(
            "client",
            testpod(&[]),
            json!({"serviceAccountName": "reader"}),
        ),
    )
    .await
    .unwrap();
    let p = support::wait_pod_ready(&api, "client", READY_TIMEOUT)
        .await
        .unwrap();
    let ip = pod_ip(&p).unwrap();
    let ask = |path: String| {
        let ip = ip.clone();
        async move {
            let (code, body) = http_get(&ip, PORT, &format!("/kube?path={path}"))
                .await
                .unwrap();
            assert_eq!(code, 200, "in-cluster request failed: {body}");
            serde_json::from_str::<Value>(&body).unwrap()["status"]
                .as_u64()
                .unwrap()
        }
    };
    // Granted by the Role: the pod's own token, CA and namespace work for real.
    assert_eq!(
        ask(format!("/api/v1/namespaces/{}/configmaps", ns.name)).await,
        200
    );
    // Not granted: secrets here, and anything in another namespace.
    assert_eq!(
        ask(format!("/api/v1/namespaces/{}/secrets", ns.name)).await,
        403
    );
    assert_eq!(
        ask("/api/v1/namespaces/default/configmaps".to_string()).await,
        403
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_container_restarts_with_backoff_and_counts_restarts() {
    let Some(env) = support::env_or_skip("restarts").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-crash").await.unwrap();
    let api = ns.api::<Pod>();
    let c = testpod(&["--exit-after-ms", "300", "--exit-code", "3"]);
    api.create(&PostParams::default(), &pod("crasher", c, json!({})))
        .await
        .unwrap();
    let p = wait_until("two restarts", Duration::from_secs(60), || async {
        let p = api.get("crasher").await.map_err(|e| e.to_string())?;
        let cs = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first().cloned());
        match cs {
            Some(cs) if cs.restart_count >= 2 => Ok(cs),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let last = p
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 3);
    let log = pod_log(&env, &ns.name, "crasher", "app");
    assert!(
        log.matches("container exited with code 3").count() >= 2,
        "{log}"
    );

    // restartPolicy Never: the pod fails instead.
    let c = testpod(&["--exit-after-ms", "200", "--exit-code", "4"]);
    api.create(
        &PostParams::default(),
        &pod("once", c, json!({"restartPolicy": "Never"})),
    )
    .await
    .unwrap();
    wait_until("pod Failed", Duration::from_secs(60), || async {
        let p = api.get("once").await.map_err(|e| e.to_string())?;
        match p.status.as_ref().and_then(|s| s.phase.clone()) {
            Some(ph) if ph == "Failed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_image_is_reported_as_err_image_pull() {
    let Some(env) = support::env_or_skip("unknown image").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-image").await.unwrap();
    let api = ns.api::<Pod>();
    let c = json!({"name": "web", "image": "nginx:1.25"});
    api.create(&PostParams::default(), &pod("nginx", c, json!({})))
        .await
        .unwrap();
    wait_until("ErrImagePull", Duration::from_secs(60), || async {
        let p = api.get("nginx").await.map_err(|e| e.to_string())?;
        let waiting = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if waiting.as_deref() == Some("ErrImagePull") && phase.as_deref() == Some("Pending") {
            Ok(())
        } else {
            Err(format!("{phase:?} {waiting:?}"))
        }
    })
    .await
    .unwrap();
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn env_from_secrets_and_config_maps_with_var_expansion() {
    let Some(env) = support::env_or_skip("env").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-env").await.unwrap();
    let pp = PostParams::default();
    ns.api::<Secret>()
        .create(
            &pp,
            &from_json(
                json!({"metadata": {"name": "auth"}, "stringData": {"password": "hunter2"}}),
            ),
        )
        .await
        .unwrap();
    ns.api::<ConfigMap>()
        .create(
            &pp,
            &from_json(
                json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast", "app.conf": "x=1"}}),
            ),
        )
        .await
        .unwrap();
    let mut c = testpod(&[]);
    c["args"] = json!(["--port", "$(HTTP_PORT)"]);
    c["envFrom"] = json!([{"configMapRef": {"name": "cfg"}}]);
    let env_list = c["env"].as_array_mut().unwrap();
    env_list.push(json!({"name": "HTTP_PORT", "value": PORT.to_string()}));
    env_list.push(json!({"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}}));
    env_list.push(json!({"name": "ADDR", "value": "$(POD_IP):$(HTTP_PORT)"}));
    c["volumeMounts"] = json!([{"name": "conf", "mountPath": "/etc/app", "readOnly": true}]);
    let spec = json!({"volumes": [{"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "app.conf"}]}}]});
    let api = ns.api::<Pod>();
    api.create(&pp, &pod("envy", c, spec)).await.unwrap();
    let p = support::wait_pod_ready(&api, "envy", READY_TIMEOUT)
        .await
        .unwrap();
    let ip = pod_ip(&p).unwrap();
    let var = |name: &'static str| {
        let ip = ip.clone();
        async move {
            http_get(&ip, PORT, &format!("/env?name={name}"))
                .await
                .unwrap()
                .1
        }
    };
    assert_eq!(var("PASSWORD").await, "hunter2");
    assert_eq!(var("MODE").await, "fast");
    assert_eq!(var("ADDR").await, format!("{ip}:{PORT}"));
    // In-cluster clients are pointed at the kubernetes Service, as on a real cluster.
    let api_ip = support::api_server_ip(&env.client).await.unwrap();
    assert_eq!(var("KUBERNETES_SERVICE_HOST").await, api_ip);
    assert_eq!(var("KUBERNETES_SERVICE_PORT").await, "443");
    assert_eq!(
        http_get(&ip, PORT, "/file?path=/etc/app/app.conf")
            .await
            .unwrap()
            .1,
        "x=1"
    );
    // The mount is read-only.
    assert_eq!(
        http_put(&ip, PORT, "/file?path=/etc/app/other", "y")
            .await
            .unwrap(),
        500
    );
    let log = pod_log(&env, &ns.name, "envy", "app");
    assert!(
        log.contains(&format!("testpod listening on {ip}:{PORT}")),
        "{log}"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_helper_uses_the_test_cluster() {
    let Some(env) = support::env_or_skip("kubectl").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-kubectl")
        .await
        .unwrap();
    let out = support::kubectl(&[
        "create",
        "configmap",
        "made-by-kubectl",
        "-n",
        &ns.name,
        "--from-literal=k=v",
    ])
    .await
    .unwrap();
    assert!(out.contains("made-by-kubectl"), "{out}");
    let cm = ns.api::<ConfigMap>().get("made-by-kubectl").await.unwrap();
    assert_eq!(cm.data.unwrap()["k"], "v");
    let err = support::kubectl(&["get", "configmap", "absent", "-n", &ns.name])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NotFound"), "{err}");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_liveness_probe_restarts_the_container() {
    let Some(env) = support::env_or_skip("liveness").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-liveness")
        .await
        .unwrap();
    let api = ns.api::<Pod>();
    let mut c = testpod(&["--unhealthy-after-ms", "1500"]);
    c["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1, "failureThreshold": 2});
    api.create(
        &PostParams::default(),
        &pod("sick", c, json!({"terminationGracePeriodSeconds": 2})),
    )
    .await
    .unwrap();
    wait_until("a liveness restart", Duration::from_secs(60), || async {
        let p = api.get("sick").await.map_err(|e| e.to_string())?;
        let restarts = p
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.first().map(|c| c.restart_count));
        if restarts.is_some_and(|r| r >= 1) {
            Ok(())
        } else {
            Err(format!("restarts {restarts:?}"))
        }
    })
    .await
    .unwrap();
    let log = pod_log(&env, &ns.name, "sick", "app");
    assert!(log.contains("liveness probe failed"), "{log}");
    // `kubectl describe pod` shows why: the kubelet records Events.
    let events = ns.api::<Event>();
    let reasons = wait_until("Unhealthy event", Duration::from_secs(30), || async {
        let lp = ListParams::default().fields("involvedObject.name=sick");
        let list = events.list(&lp).await.map_err(|e| e.to_string())?;
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        if reasons.iter().any(|r| r == "Unhealthy") {
            Ok(reasons)
        } else {
            Err(format!("{reasons:?}"))
        }
    })
    .await
    .unwrap();
    assert!(reasons.iter().any(|r| r == "Started"), "{reasons:?}");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_kills_a_container_that_ignores_sigterm_after_the_grace_period() {
    let Some(env) = support::env_or_skip("grace period").await else {
        return;
    };
    let ns = TestNamespace::create(&env, "harness-grace").await.unwrap();
    let api = ns.api::<Pod>();
    api.create(
        &PostParams::default(),
        &pod(
            "stubborn",
            testpod(&["--ignore-sigterm"]),
            json!({"terminationGracePeriodSeconds": 2}),
        ),
    )
    .await
    .unwrap();
    let p = support::wait_pod_ready(&api, "stubborn", READY_TIMEOUT)
        .await
        .unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    let started = std::time::Instant::now();
    api.delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("pod finalized", Duration::from_secs(30), || async {
        match api.get_opt("stubborn").await {
            Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid.as_str()) => {
                Err("still there".to_string())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    // It was not killed before the grace period ran out, and it was killed by SIGKILL.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "finalized after {:?}",
        started.elapsed()
    );
    let log = pod_log(&env, &ns.name, "stubborn", "app");
    assert!(log.contains("got SIGTERM, ignoring it"), "{log}");
    assert!(log.contains("container exited with code 137"), "{log}");
    ns.cleanup().await;
}
