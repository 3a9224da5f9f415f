//! The pod network of the process kubelet: every pod has its own network namespace, so a server
//! binds 0.0.0.0; it is reached at its pod IP from the host, and from another pod through its
//! Service's clusterIP and cluster DNS names; in-cluster API clients go through the kubernetes
//! Service. Needs a cluster (`make test`, or `e2e/cluster/up`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use ringshift_e2e::support::{self, from_json, http_get, pod_ip, pod_log};
use serde_json::{Value, json};

const PORT: u16 = 8080;
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A restricted-level testpod; `spec_extra` is merged into the pod spec.
fn testpod(name: &str, args: &[&str], spec_extra: Value) -> Pod {
    let mut all = vec!["--port".to_string(), PORT.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let mut spec = json!({
        "terminationGracePeriodSeconds": 5,
        "securityContext": support::restricted_pod_security_context(),
        "containers": [{
            "name": "app",
            "image": "ringshift-testpod:dev",
            "args": all,
            "ports": [{"name": "http", "containerPort": PORT}],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
            "securityContext": support::restricted_container_security_context()
        }]
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    from_json(json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": spec}))
}

/// What the client pod got for GET http://host:port/whoami: the answering pod's IP, or the
/// error text (DNS failure, refused connection).
async fn fetch_from(client_ip: &str, host: &str, port: u16) -> Result<String, String> {
    let (code, body) = http_get(
        client_ip,
        PORT,
        &format!("/fetch?host={host}&port={port}&path=/whoami"),
    )
    .await
    .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("{code}: {body}"));
    }
    let outer: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let who: Value = serde_json::from_str(outer["body"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    Ok(who["ip"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_have_their_own_network_with_services_and_cluster_dns() {
    let Some(env) = support::env_or_skip("pod network").await else {
        return;
    };
    let ns = support::TestNamespace::create(&env, "podnet")
        .await
        .unwrap();
    let pods: Api<Pod> = ns.api();
    let services: Api<Service> = ns.api();
    // The server binds every interface of its namespace and has a stable DNS name through the
    // headless Service `srv-h` (hostname + subdomain, as StatefulSet pods have).
    let server = testpod(
        "srv",
        &["--listen-all"],
        json!({"hostname": "srv-0", "subdomain": "srv-h"}),
    );
    let client = testpod("cli", &[], json!({}));
    for p in [&server, &client] {
        pods.create(&PostParams::default(), p).await.unwrap();
    }
    for (name, spec) in [
        (
            "srv",
            json!({"selector": {"app": "srv"}, "ports": [{"port": 80, "targetPort": "http"}]}),
        ),
        (
            "srv-h",
            json!({"clusterIP": "None", "selector": {"app": "srv"}, "ports": [{"port": PORT}]}),
        ),
    ] {
        let svc: Service = from_json(json!({"metadata": {"name": name}, "spec": spec}));
        services.create(&PostParams::default(), &svc).await.unwrap();
    }
    let srv = &support::wait_pods_ready(&pods, "app=srv", 1, READY_TIMEOUT)
        .await
        .unwrap()[0];
    let cli = &support::wait_pods_ready(&pods, "app=cli", 1, READY_TIMEOUT)
        .await
        .unwrap()[0];
    let srv_ip = pod_ip(srv).unwrap();
    let cli_ip = pod_ip(cli).unwrap();

    // Bound to 0.0.0.0, reached from the host at the pod IP (over the cluster bridge).
    let log = pod_log(&env, &ns.name, "srv", "app");
    assert!(
        log.contains("listening on 0.0.0.0:8080"),
        "log of srv:\n{log}"
    );
    let (code, body) = http_get(&srv_ip, PORT, "/whoami").await.unwrap();
    assert_eq!(code, 200, "{body}");

    // Pod to pod directly, then through the Service's clusterIP (the kubelet's proxy).
    assert_eq!(fetch_from(&cli_ip, &srv_ip, PORT).await, Ok(srv_ip.clone()));
    let cluster_ip = support::cluster_ip(&services, "srv").await.unwrap();
    assert!(cluster_ip.starts_with("127."), "{cluster_ip}");
    support::wait_until("service reachable", Duration::from_secs(20), || async {
        fetch_from(&cli_ip, &cluster_ip, 80).await.map(|_| ())
    })
    .await
    .unwrap();
    assert_eq!(
        fetch_from(&cli_ip, &cluster_ip, 80).await,
        Ok(srv_ip.clone())
    );

    // Cluster DNS: the short name (search path), `svc.ns`, the full name, and the pod's
    // stable name under the headless Service.
    let short_names = [
        "srv".to_string(),
        format!("srv.{}", ns.name),
        format!("srv.{}.svc.cluster.local", ns.name),
    ];
    for host in &short_names {
        assert_eq!(
            fetch_from(&cli_ip, host, 80).await,
            Ok(srv_ip.clone()),
            "{host}"
        );
    }
    assert_eq!(
        fetch_from(&cli_ip, &format!("srv-0.srv-h.{}", ns.name), PORT).await,
        Ok(srv_ip.clone())
    );
    assert_eq!(
        fetch_from(&cli_ip, "srv-h", PORT).await,
        Ok(srv_ip.clone()),
        "headless Service name: its ready pods"
    );
    // Names that do not exist fail to resolve (nothing is forwarded off the machine).
    let missing = fetch_from(&cli_ip, &format!("nope.{}", ns.name), 80).await;
    assert!(missing.is_err(), "{missing:?}");

    // In-cluster API access goes through the kubernetes Service (its clusterIP is what pods see).
    let api_ip = support::api_server_ip(&env.client).await.unwrap();
    let (_, host_env) = http_get(&cli_ip, PORT, "/env?name=KUBERNETES_SERVICE_HOST")
        .await
        .unwrap();
    assert_eq!(host_env, api_ip);
    let (code, body) = http_get(&cli_ip, PORT, "/kube?path=/api").await.unwrap();
    assert_eq!((code, body.as_str()), (200, r#"{"status":200}"#));

    // Deleting a pod removes its network namespace (named after its UID) with it.
    let cluster = std::env::var("RINGSHIFT_CLUSTER").unwrap_or_else(|_| "0".into());
    let netns = std::path::PathBuf::from(format!(
        "/run/netns/rs{cluster}-{}",
        cli.metadata.uid.clone().unwrap()
    ));
    assert!(netns.exists(), "{} missing", netns.display());
    pods.delete("cli", &Default::default()).await.unwrap();
    support::wait_until("client pod gone", Duration::from_secs(30), || async {
        match pods.get_opt("cli").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    assert!(!netns.exists(), "{} left behind", netns.display());

    ns.cleanup().await;
}
