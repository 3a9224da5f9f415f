//! The ClusterIP Service proxy: for every TCP port of every Service with a cluster IP, a
//! listener on clusterIP:port in the host's network namespace (the Service network is local
//! there, and pods route it to the bridge). Each connection goes to a ready endpoint, round
//! robin, and bytes are copied both ways. `default/kubernetes` goes to the apiserver.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use kube::runtime::reflector::ObjectRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::cluster_view::ClusterView;
use super::endpoints;
use super::net_plan::{NetPlan, in_service_net};

const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Listeners that failed to bind are tried again this often (and on every Service change).
const RESYNC: Duration = Duration::from_secs(5);

/// Where a listener's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Service's endpoints for this port.
    Service { ns: String, name: String, port: i32 },
    /// The apiserver (for `default/kubernetes`, whose endpoints the harness does not publish).
    Fixed(SocketAddrV4),
}

/// The listeners `svc` needs: its cluster IP (in this cluster's Service network) with each TCP
/// port. Services without a selector get none (their endpoints would be written by hand as
/// EndpointSlices, which cannot hold loopback addresses), except `default/kubernetes`.
pub fn listeners_for(
    svc: &Service,
    plan: &NetPlan,
    api: SocketAddrV4,
) -> Vec<(SocketAddrV4, Target)> {
    let (Some(ns), Some(name), Some(spec)) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
        svc.spec.as_ref(),
    ) else {
        return vec![];
    };
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .filter(|ip| in_service_net(plan, *ip))
    else {
        return vec![];
    };
    let is_api = ns == "default" && name == "kubernetes";
    let has_selector = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
    if !is_api && !has_selector {
        return vec![];
    }
    spec.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p: &ServicePort| {
            let port = u16::try_from(p.port).ok()?;
            let target = if is_api {
                Target::Fixed(api)
            } else {
                Target::Service {
                    ns: ns.to_string(),
                    name: name.to_string(),
                    port: p.port,
                }
            };
            Some((SocketAddrV4::new(ip, port), target))
        })
        .collect()
}

struct Listener {
    target: Target,
    task: JoinHandle<()>,
}

/// Keeps one listener per wanted address, following Service changes, until the process exits.
pub async fn run(view: ClusterView, plan: NetPlan, api: SocketAddrV4) {
    let mut running: HashMap<SocketAddrV4, Listener> = HashMap::new();
    let mut changes = view.service_changes();
    loop {
        let wanted: HashMap<SocketAddrV4, Target> = view
            .services()
            .iter()
            .flat_map(|s| listeners_for(s, &plan, api))
            .collect();
        running.retain(|addr, l| {
            let keep = wanted.get(addr) == Some(&l.target) && !l.task.is_finished();
            if !keep {
                l.task.abort();
                tracing::info!(%addr, "service proxy: listener removed");
            }
            keep
        });
        for (addr, target) in wanted {
            if running.contains_key(&addr) {
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, ?target, "service proxy: listening");
                    let task = tokio::spawn(serve(l, target.clone(), view.clone()));
                    running.insert(addr, Listener { target, task });
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "service proxy: cannot listen; retrying")
                }
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

async fn serve(listener: TcpListener, target: Target, view: ClusterView) {
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "service proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let candidates = match &target {
            Target::Fixed(a) => vec![*a],
            Target::Service { ns, name, port } => {
                let all = view.services_store().get(&ObjectRef::new(name).within(ns));
                let pods = view.pods();
                let eps = all
                    .as_deref()
                    .and_then(|svc| {
                        let sp = svc
                            .spec
                            .as_ref()?
                            .ports
                            .iter()
                            .flatten()
                            .find(|p| p.port == *port)?
                            .clone();
                        Some(endpoints::endpoints(
                            svc,
                            &sp,
                            pods.iter().map(|p| p.as_ref()),
                        ))
                    })
                    .unwrap_or_default();
                endpoints::rotation(&eps, turn.fetch_add(1, Ordering::Relaxed))
            }
        };
        tokio::spawn(splice(client, peer, candidates));
    }
}

/// Dials the candidates in order and copies bytes both ways with the first that answers; with
/// none, the client's connection is closed (as a Service without endpoints rejects it).
async fn splice(mut client: TcpStream, peer: std::net::SocketAddr, candidates: Vec<SocketAddrV4>) {
    for addr in &candidates {
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(mut upstream)) => {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, %addr, error = %e, "service proxy: endpoint refused")
            }
            Err(_) => tracing::debug!(%peer, %addr, "service proxy: endpoint timed out"),
        }
    }
    tracing::debug!(%peer, tried = candidates.len(), "service proxy: no endpoint answered");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
            .unwrap()
    }

    const API: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6443);

    #[test]
    fn one_listener_per_tcp_port_of_a_selecting_service() {
        let s = svc(
            "shop",
            "web",
            json!({"clusterIP": "127.15.3.4", "selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "admin", "port": 8080}
            ]}),
        );
        let got = listeners_for(&s, &NetPlan::new(0), API);
        let addrs: Vec<String> = got.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(addrs, ["127.15.3.4:80", "127.15.3.4:8080"]);
        assert_eq!(
            got[0].1,
            Target::Service {
                ns: "shop".into(),
                name: "web".into(),
                port: 80
            }
        );
    }

    #[test]
    fn headless_selectorless_and_foreign_addresses_get_no_listener() {
        let plan = NetPlan::new(0);
        let ports = json!([{"port": 80}]);
        for s in [
            svc(
                "a",
                "headless",
                json!({"clusterIP": "None", "selector": {"a": "b"}, "ports": ports}),
            ),
            svc(
                "kube-system",
                "kube-dns",
                json!({"clusterIP": "127.15.0.10", "ports": ports}),
            ),
            // Another cluster's Service network is not ours to bind.
            svc(
                "a",
                "other",
                json!({"clusterIP": "127.31.0.5", "selector": {"a": "b"}, "ports": ports}),
            ),
        ] {
            assert!(listeners_for(&s, &plan, API).is_empty(), "{s:?}");
        }
    }

    #[test]
    fn the_kubernetes_service_goes_to_the_apiserver() {
        let s = svc(
            "default",
            "kubernetes",
            json!({"clusterIP": "127.15.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}),
        );
        assert_eq!(
            listeners_for(&s, &NetPlan::new(0), API),
            vec![("127.15.0.1:443".parse().unwrap(), Target::Fixed(API))]
        );
    }
}
