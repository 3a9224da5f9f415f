//! Pod Events (what `kubectl describe pod` and `kubectl get events` show), sent in the
//! background: an Event that cannot be written is logged, never retried.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

pub fn emit(client: &Client, pod: &Pod, node: &str, kind: &str, reason: &str, message: String) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name, "uid": pod.metadata.uid},
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "ringshift-kubelet", "host": node},
        "reportingComponent": "ringshift-kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1
    });
    let event: Event = match serde_json::from_value(event) {
        Ok(e) => e,
        Err(e) => return tracing::warn!(error = %e, "building event"),
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    tokio::spawn(async move {
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(error = %e, reason = ?event.reason, "writing event failed");
        }
    });
}
