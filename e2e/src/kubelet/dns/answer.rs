//! What cluster DNS answers for a name (pure): the zone `cluster.local` holds
//! `<svc>.<ns>.svc.cluster.local` (the clusterIP; for a headless Service every ready backing pod)
//! and `<hostname>.<subdomain>.<ns>.svc.cluster.local` for pods with hostname and subdomain (as
//! StatefulSet pods of a headless governing Service have). Nothing outside the zone is answered:
//! there is no forwarding, nothing leaves the machine.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::super::endpoints::{backing_pods, is_ready, pod_ip};

pub const ZONE: &str = "cluster.local";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists; A records (empty when it has none of the asked type).
    Found(Vec<Ipv4Addr>),
    NxDomain,
    /// Not in the zone.
    Refused,
}

fn is_headless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| ip == "None")
}

fn find_service<'a>(services: &'a [&'a Service], ns: &str, name: &str) -> Option<&'a Service> {
    services.iter().copied().find(|s| {
        s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name)
    })
}

/// Answers `name` (lower case, no trailing dot) for record type `want_a` (A or ANY: records;
/// any other type: the name's existence only).
pub fn lookup(name: &str, want_a: bool, services: &[&Service], pods: &[&Pod]) -> Lookup {
    let Some(rest) = name
        .strip_suffix(ZONE)
        .filter(|r| r.is_empty() || r.ends_with('.'))
    else {
        return Lookup::Refused;
    };
    let labels: Vec<&str> = rest.trim_end_matches('.').split('.').collect();
    let found = |ips: Vec<Ipv4Addr>| Lookup::Found(if want_a { ips } else { vec![] });
    match labels.as_slice() {
        // The zone itself, `svc.cluster.local` and `<ns>.svc.cluster.local` exist (no records).
        [""] | ["svc"] | [_, "svc"] => Lookup::Found(vec![]),
        [svc, ns, "svc"] => match find_service(services, ns, svc) {
            Some(s) if is_headless(s) => found(
                backing_pods(s, pods.iter().copied())
                    .into_iter()
                    .filter_map(pod_ip)
                    .collect(),
            ),
            Some(s) => match s
                .spec
                .as_ref()
                .and_then(|sp| sp.cluster_ip.as_deref())
                .and_then(|ip| ip.parse().ok())
            {
                Some(ip) => found(vec![ip]),
                None => Lookup::Found(vec![]),
            },
            None => Lookup::NxDomain,
        },
        [host, subdomain, ns, "svc"] => {
            let Some(governing) = find_service(services, ns, subdomain).filter(|s| is_headless(s))
            else {
                return Lookup::NxDomain;
            };
            let publish = governing
                .spec
                .as_ref()
                .and_then(|s| s.publish_not_ready_addresses)
                == Some(true);
            let ips: Vec<Ipv4Addr> = pods
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(*ns))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.spec.as_ref().is_some_and(|s| {
                        s.hostname.as_deref() == Some(*host)
                            && s.subdomain.as_deref() == Some(*subdomain)
                    })
                })
                .filter(|p| publish || is_ready(p))
                .filter_map(|p| pod_ip(p))
                .collect();
            if ips.is_empty() {
                Lookup::NxDomain
            } else {
                found(ips)
            }
        }
        _ => Lookup::NxDomain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
            .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, extra_spec: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "db"}},
            "spec": spec,
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn world() -> (Vec<Service>, Vec<Pod>) {
        let services = vec![
            svc(
                "shop",
                "web",
                json!({"clusterIP": "127.15.3.4", "selector": {"app": "web"}}),
            ),
            svc(
                "shop",
                "db",
                json!({"clusterIP": "None", "selector": {"app": "db"}}),
            ),
        ];
        let pods = vec![
            pod(
                "db-0",
                "127.8.0.20",
                true,
                json!({"hostname": "db-0", "subdomain": "db"}),
            ),
            pod(
                "db-1",
                "127.8.0.21",
                true,
                json!({"hostname": "db-1", "subdomain": "db"}),
            ),
            pod(
                "db-2",
                "127.8.0.22",
                false,
                json!({"hostname": "db-2", "subdomain": "db"}),
            ),
        ];
        (services, pods)
    }

    fn ask(name: &str, want_a: bool) -> Lookup {
        let (services, pods) = world();
        let s: Vec<&Service> = services.iter().collect();
        let p: Vec<&Pod> = pods.iter().collect();
        lookup(name, want_a, &s, &p)
    }

    #[test]
    fn a_service_name_is_its_cluster_ip() {
        assert_eq!(
            ask("web.shop.svc.cluster.local", true),
            Lookup::Found(vec![Ipv4Addr::new(127, 15, 3, 4)])
        );
        // AAAA and other types: the name exists, no records (NODATA, not NXDOMAIN).
        assert_eq!(
            ask("web.shop.svc.cluster.local", false),
            Lookup::Found(vec![])
        );
    }

    #[test]
    fn a_headless_service_is_its_ready_pods() {
        assert_eq!(
            ask("db.shop.svc.cluster.local", true),
            Lookup::Found(vec![
                Ipv4Addr::new(127, 8, 0, 20),
                Ipv4Addr::new(127, 8, 0, 21)
            ])
        );
    }

    #[test]
    fn statefulset_pods_have_stable_names() {
        assert_eq!(
            ask("db-1.db.shop.svc.cluster.local", true),
            Lookup::Found(vec![Ipv4Addr::new(127, 8, 0, 21)])
        );
        // Not ready, or no such pod, or the subdomain is not a headless Service.
        assert_eq!(
            ask("db-2.db.shop.svc.cluster.local", true),
            Lookup::NxDomain
        );
        assert_eq!(
            ask("db-9.db.shop.svc.cluster.local", true),
            Lookup::NxDomain
        );
        assert_eq!(
            ask("db-0.web.shop.svc.cluster.local", true),
            Lookup::NxDomain
        );
    }

    #[test]
    fn other_names_in_the_zone_do_not_exist_and_outside_is_refused() {
        assert_eq!(ask("nope.shop.svc.cluster.local", true), Lookup::NxDomain);
        assert_eq!(ask("web.other.svc.cluster.local", true), Lookup::NxDomain);
        // The search path tries `web.shop.shop.svc.cluster.local` first for "web.shop".
        assert_eq!(
            ask("web.shop.shop.svc.cluster.local", true),
            Lookup::NxDomain
        );
        assert_eq!(ask("x.pod.cluster.local", true), Lookup::NxDomain);
        assert_eq!(ask("shop.svc.cluster.local", true), Lookup::Found(vec![]));
        assert_eq!(ask("cluster.local", true), Lookup::Found(vec![]));
        assert_eq!(ask("example.com", true), Lookup::Refused);
        assert_eq!(ask("notcluster.local", true), Lookup::Refused);
    }
}
