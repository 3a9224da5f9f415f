//! A Service's endpoints, computed from the pods this kubelet runs (pure). EndpointSlices cannot
//! carry the harness's loopback pod addresses (the apiserver rejects them), so the Service proxy
//! and the DNS server derive them here: selector match, readiness, named or numbered targetPort.

use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Pods that back `svc`: same namespace, labels match its (non-empty) selector, an address,
/// not being deleted, Running and Ready (or any state with publishNotReadyAddresses).
pub fn backing_pods<'a>(svc: &Service, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<&'a Pod> {
    let Some(spec) = svc.spec.as_ref() else {
        return vec![];
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return vec![];
    };
    let ns = svc.metadata.namespace.as_deref();
    let not_ready_too = spec.publish_not_ready_addresses == Some(true);
    pods.into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter(|p| pod_ip(p).is_some())
        .filter(|p| not_ready_too || is_ready(p))
        .collect()
}

/// The pod's IPv4 address from its status.
pub fn pod_ip(p: &Pod) -> Option<Ipv4Addr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Running with condition Ready=True.
pub fn is_ready(p: &Pod) -> bool {
    let Some(st) = p.status.as_ref() else {
        return false;
    };
    st.phase.as_deref() == Some("Running")
        && st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The container port `target` names (or numbers) in `pod`, for `protocol`.
fn target_port(pod: &Pod, target: Option<&IntOrString>, port: i32, protocol: &str) -> Option<u16> {
    match target {
        None => u16::try_from(port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Where connections to service port `sp` of `svc` may go, in a stable order (by address)
/// so that round robin over them is fair.
pub fn endpoints<'a>(
    svc: &Service,
    sp: &ServicePort,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<SocketAddrV4> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    let mut out: Vec<SocketAddrV4> = backing_pods(svc, pods)
        .into_iter()
        .filter_map(|p| {
            let port = target_port(p, sp.target_port.as_ref(), sp.port, protocol)?;
            Some(SocketAddrV4::new(pod_ip(p)?, port))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Round robin: the endpoint for connection number `turn`, then the others in order (a
/// failed dial tries the next one).
pub fn rotation(endpoints: &[SocketAddrV4], turn: usize) -> Vec<SocketAddrV4> {
    if endpoints.is_empty() {
        return vec![];
    }
    let start = turn % endpoints.len();
    endpoints[start..]
        .iter()
        .chain(&endpoints[..start])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    fn pod(name: &str, ns: &str, app: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app, "tier": "x"}},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
            ]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        }))
        .unwrap()
    }

    fn port(v: serde_json::Value) -> ServicePort {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selects_ready_pods_of_the_namespace_with_matching_labels() {
        let s = svc(json!({"selector": {"app": "web"}}));
        let pods = [
            pod("b", "shop", "web", "127.8.0.12", true),
            pod("a", "shop", "web", "127.8.0.11", true),
            pod("unready", "shop", "web", "127.8.0.13", false),
            pod("other-ns", "bank", "web", "127.8.0.14", true),
            pod("other-app", "shop", "db", "127.8.0.15", true),
        ];
        let p = port(json!({"port": 80, "targetPort": 8080}));
        assert_eq!(
            endpoints(&s, &p, &pods),
            vec![
                "127.8.0.11:8080".parse().unwrap(),
                "127.8.0.12:8080".parse().unwrap()
            ]
        );
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_protocol() {
        let s = svc(json!({"selector": {"app": "web"}}));
        let pods = [pod("a", "shop", "web", "127.8.0.11", true)];
        let named = port(json!({"port": 80, "targetPort": "http"}));
        assert_eq!(
            endpoints(&s, &named, &pods),
            vec!["127.8.0.11:8080".parse().unwrap()]
        );
        // "dns" is a UDP port of the container: no TCP endpoint.
        let wrong_protocol = port(json!({"port": 53, "targetPort": "dns"}));
        assert!(endpoints(&s, &wrong_protocol, &pods).is_empty());
        let unset = port(json!({"port": 9000}));
        assert_eq!(
            endpoints(&s, &unset, &pods),
            vec!["127.8.0.11:9000".parse().unwrap()]
        );
    }

    #[test]
    fn no_selector_means_no_endpoints_and_not_ready_can_be_published() {
        let pods = [pod("a", "shop", "web", "127.8.0.11", false)];
        let p = port(json!({"port": 80}));
        assert!(endpoints(&svc(json!({})), &p, &pods).is_empty());
        assert!(endpoints(&svc(json!({"selector": {"app": "web"}})), &p, &pods).is_empty());
        let publish = svc(json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true}));
        assert_eq!(endpoints(&publish, &p, &pods).len(), 1);
    }

    #[test]
    fn deleting_pods_and_pods_without_address_are_skipped() {
        let s = svc(json!({"selector": {"app": "web"}}));
        let mut deleting = pod("a", "shop", "web", "127.8.0.11", true);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let mut no_ip = pod("b", "shop", "web", "127.8.0.12", true);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        assert!(endpoints(&s, &port(json!({"port": 80})), &[deleting, no_ip]).is_empty());
    }

    #[test]
    fn rotation_starts_at_the_turn_and_wraps() {
        let e: Vec<SocketAddrV4> = ["127.8.0.1:1", "127.8.0.2:1", "127.8.0.3:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(rotation(&e, 0), e);
        assert_eq!(rotation(&e, 4), vec![e[1], e[2], e[0]]);
        assert!(rotation(&[], 3).is_empty());
    }
}
