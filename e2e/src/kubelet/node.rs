//! The Node object this kubelet serves: created when missing, its Ready condition and capacity
//! refreshed periodically (nothing in this control plane marks it NotReady, but tools read it).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::env::{NODE_CPU, NODE_MEMORY};

const HEARTBEAT: Duration = Duration::from_secs(20);

/// `kubelet_port`: where the kubelet API listens (announced in daemonEndpoints, which the
/// apiserver dials for logs, exec, attach and port-forward).
pub async fn register(
    client: &Client,
    name: &str,
    kubelet_port: Option<u16>,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "ringshift.dev/process-kubelet": "true"
            }}
        }))
        .map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => tracing::info!(node = name, "registered node"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    heartbeat(&api, name, &kubelet_version(client).await, kubelet_port).await
}

/// The control plane's version with a `-ringshift` suffix: this kubelet follows whichever
/// Kubernetes release the harness runs.
async fn kubelet_version(client: &Client) -> String {
    match client.apiserver_version().await {
        Ok(v) => format!("{}-ringshift", v.git_version),
        Err(e) => {
            tracing::warn!(error = %e, "reading the apiserver version failed");
            "v0.0.0-ringshift".to_string()
        }
    }
}

async fn heartbeat(
    api: &Api<Node>,
    name: &str,
    version: &str,
    kubelet_port: Option<u16>,
) -> Result<(), kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let capacity = json!({
        "cpu": format!("{NODE_CPU}"),
        "memory": format!("{}", NODE_MEMORY as u64),
        "pods": "250",
        "ephemeral-storage": "100Gi"
    });
    let status = json!({"status": {
        "conditions": [
            cond("Ready", "True", "KubeletReady", "ringshift process kubelet is posting ready status"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure")
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "capacity": capacity,
        "allocatable": capacity,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port.unwrap_or(0)}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "ringshift local",
            "containerRuntimeVersion": "ringshift-process://0.1.0", "kubeletVersion": version,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH
        }
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Keeps the Node's heartbeat fresh; errors are logged and retried.
pub async fn heartbeat_loop(client: Client, name: String, kubelet_port: Option<u16>) {
    let api: Api<Node> = Api::all(client.clone());
    let version = kubelet_version(&client).await;
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = heartbeat(&api, &name, &version, kubelet_port).await {
            tracing::warn!(node = %name, error = %e, "node heartbeat failed");
            if let Err(e) = register(&client, &name, kubelet_port).await {
                tracing::warn!(node = %name, error = %e, "re-registering node failed");
            }
        }
    }
}
