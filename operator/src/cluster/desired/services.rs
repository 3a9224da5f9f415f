//! The headless Service (stable member DNS) and the client Service (data port).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names::{self, ADMIN_PORT, DATA_PORT};
use super::owner_reference;
use crate::crd::ShardCluster;

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn meta(cluster: &ShardCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.namespace(),
        labels: Some(names::labels(&cluster.name_any())),
        owner_references: owner_reference(cluster).map(|o| vec![o]),
        ..Default::default()
    }
}

/// Headless Service: members resolve each other before they are Ready.
pub fn headless(cluster: &ShardCluster) -> Service {
    let name = cluster.name_any();
    Service {
        metadata: meta(cluster, names::headless_service(&name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::selector_labels(&name)),
            ports: Some(vec![port("redis", DATA_PORT), port("admin", ADMIN_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Client Service on the RESP port: any member coordinates any key. Its type and
/// annotations come from `spec.service`.
pub fn client(cluster: &ShardCluster) -> Service {
    let name = cluster.name_any();
    let settings = cluster.spec.service.clone().unwrap_or_default();
    let mut metadata = meta(cluster, names::client_service(&name));
    metadata.annotations = (!settings.annotations.is_empty()).then_some(settings.annotations);
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(settings.type_.as_str().into()),
            selector: Some(names::selector_labels(&name)),
            ports: Some(vec![port("redis", DATA_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_select_the_members_and_expose_the_data_port() {
        let mut c = ShardCluster::new("demo", serde_json::from_str("{}").unwrap());
        c.metadata.uid = Some("u".into());
        let h = headless(&c);
        assert_eq!(h.metadata.name.as_deref(), Some("demo-nodes"));
        let hs = h.spec.unwrap();
        assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
        assert_eq!(hs.selector, Some(names::selector_labels("demo")));
        let cs = client(&c).spec.unwrap();
        assert_eq!(cs.ports.unwrap()[0].port, 6379);
        assert!(
            cs.cluster_ip.is_none(),
            "the server assigns the client Service's IP"
        );
        assert_eq!(cs.type_.as_deref(), Some("ClusterIP"));
        assert!(client(&c).metadata.annotations.is_none());
    }

    #[test]
    fn the_client_service_takes_type_and_annotations_from_the_spec() {
        for (t, want) in [
            ("NodePort", "NodePort"),
            ("LoadBalancer", "LoadBalancer"),
            ("ClusterIP", "ClusterIP"),
        ] {
            let mut c = ShardCluster::new(
                "demo",
                serde_json::from_value(serde_json::json!({"service": {
                    "type": t,
                    "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
                }}))
                .unwrap(),
            );
            c.metadata.uid = Some("u".into());
            let svc = client(&c);
            assert_eq!(svc.spec.as_ref().unwrap().type_.as_deref(), Some(want));
            assert_eq!(
                svc.metadata.annotations.unwrap()["service.beta.kubernetes.io/aws-load-balancer-internal"],
                "true"
            );
            assert_eq!(
                svc.spec.unwrap().selector,
                Some(names::selector_labels("demo"))
            );
            // The headless Service is the members' own: spec.service leaves it alone.
            let h = headless(&c);
            assert!(h.metadata.annotations.is_none());
            assert_eq!(h.spec.unwrap().cluster_ip.as_deref(), Some("None"));
        }
    }
}
