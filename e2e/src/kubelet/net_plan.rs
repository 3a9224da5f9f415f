//! The address plan of one cluster's pod network, and the `ip` commands that build it (pure).
//!
//! Cluster N (`--ip-block N`) owns 127.(16N).0.0/12. Its upper half, 127.(16N+8).0.0/13, is the
//! pod network: a bridge `rsbr<N>` on the host owns its first address 127.(16N+8).0.1 and every
//! pod has its own network namespace with a veth into that bridge. Services take the last /16 of
//! it, 127.(16N+15).0.0/16, which stays local on the host (the kubelet's Service proxy and DNS
//! server listen there) and is routed from pods to the bridge address. Pod addresses are the rest
//! (see `ip_pool`). Everything is loopback: `route_localnet=1` lets 127/8 cross the bridge, and a
//! real NIC drops 127/8 as martian, so a missing rule fails closed instead of reaching a network.

use std::net::Ipv4Addr;

/// The second octet of the cluster's pod network (127.<this>.0.0/13).
fn pod_octet(block: u8) -> u8 {
    16 * block + 8
}

/// The second octet of the cluster's Service network (127.<this>.0.0/16).
pub fn service_octet(block: u8) -> u8 {
    16 * block + 15
}

/// Addresses and names of cluster `block`'s network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub block: u8,
    pub bridge: String,
    /// The bridge's (the host's) address: every pod's default gateway.
    pub gateway: Ipv4Addr,
    /// The pod network, prefix length 13.
    pub pod_net: Ipv4Addr,
    /// The Service network, prefix length 16; `--service-cluster-ip-range` of the apiserver.
    pub service_net: Ipv4Addr,
}

pub const POD_PREFIX: u8 = 13;
pub const SERVICE_PREFIX: u8 = 16;
/// Prefix of network namespace names of this harness (`rs<N>-<pod uid>`).
const NETNS_PREFIX: &str = "rs";

impl NetPlan {
    pub fn new(block: u8) -> Self {
        Self {
            block,
            bridge: format!("rsbr{block}"),
            gateway: Ipv4Addr::new(127, pod_octet(block), 0, 1),
            pod_net: Ipv4Addr::new(127, pod_octet(block), 0, 0),
            service_net: Ipv4Addr::new(127, service_octet(block), 0, 0),
        }
    }

    /// The `default/kubernetes` Service's address (the apiserver takes the range's first).
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, service_octet(self.block), 0, 1)
    }

    /// The `kube-system/kube-dns` Service's address, where the kubelet serves DNS.
    pub fn dns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, service_octet(self.block), 0, 10)
    }

    pub fn service_cidr(&self) -> String {
        format!("{}/{SERVICE_PREFIX}", self.service_net)
    }

    fn pod_cidr(&self) -> String {
        format!("{}/{POD_PREFIX}", self.pod_net)
    }

    /// Names of this cluster's pod namespaces start with this.
    pub fn netns_prefix(&self) -> String {
        format!("{NETNS_PREFIX}{}-", self.block)
    }

    /// The network namespace of the pod with `uid`.
    pub fn netns(&self, uid: &str) -> String {
        format!("{}{uid}", self.netns_prefix())
    }

    /// The host end of the pod's veth: interface names have at most 15 bytes, so 10 hex digits
    /// of the UID (a random v4 UUID) stand for it.
    pub fn veth(&self, uid: &str) -> String {
        let hex: String = uid
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(10)
            .collect();
        format!("rs{}v{hex}", self.block)
    }

    /// Host side, idempotent (`replace`): the bridge with the gateway address, the pod network
    /// routed to it in table `local` (more specific than `local 127.0.0.0/8 dev lo`), and the
    /// Service network kept local on the host.
    pub fn bridge_setup(&self) -> Vec<Vec<String>> {
        let br = &self.bridge;
        let gw = self.gateway.to_string();
        vec![
            args(&["link", "set", br, "up"]),
            args(&["addr", "replace", &format!("{gw}/{POD_PREFIX}"), "dev", br]),
            args(&[
                "route",
                "replace",
                "table",
                "local",
                &self.pod_cidr(),
                "dev",
                br,
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                &gw,
            ]),
            args(&[
                "route",
                "replace",
                "table",
                "local",
                "local",
                &self.service_cidr(),
                "dev",
                "lo",
            ]),
        ]
    }

    /// Sysctl of the bridge: accept and route 127/8 on it.
    pub fn bridge_sysctl(&self) -> String {
        format!("net.ipv4.conf.{}.route_localnet=1", self.bridge)
    }

    /// Everything after `ip netns add` for one pod at `ip`: the veth (peer named eth0 inside
    /// the namespace) in the bridge, loopback up, the address, the pod network on eth0 and the
    /// Service network and default route through the gateway. Every route names `src`: a 127/8
    /// address has host scope, so the kernel would otherwise send from 0.0.0.0. `sysctl` lines run inside the
    /// namespace between the link and the addresses.
    pub fn pod_setup(&self, uid: &str, ip: Ipv4Addr) -> PodSetup {
        let ns = self.netns(uid);
        let veth = self.veth(uid);
        let gw = self.gateway.to_string();
        let ipn = |rest: &[&str]| {
            let mut v = args(&["-n", &ns]);
            v.extend(args(rest));
            v
        };
        // `ip route add DEST... dev eth0 src IP`: every route leaves by eth0 from the pod's address.
        let src = ip.to_string();
        let route = |dest: &[&str]| {
            let mut v = ipn(&["route", "add"]);
            v.extend(args(dest));
            v.extend(args(&["dev", "eth0", "src", &src]));
            v
        };
        PodSetup {
            links: vec![
                args(&[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ]),
                args(&["link", "set", &veth, "master", &self.bridge, "up"]),
            ],
            sysctls: vec![
                "net.ipv4.conf.all.route_localnet=1".into(),
                "net.ipv4.conf.eth0.route_localnet=1".into(),
            ],
            addresses: vec![
                ipn(&["link", "set", "lo", "up"]),
                ipn(&["link", "set", "eth0", "up"]),
                ipn(&["addr", "add", &format!("{ip}/{POD_PREFIX}"), "dev", "eth0"]),
                route(&["table", "local", &self.pod_cidr()]),
                route(&["table", "local", &self.service_cidr(), "via", &gw]),
                route(&["default", "via", &gw]),
            ],
        }
    }
}

/// The /etc/resolv.conf of a pod in namespace `ns`: the cluster DNS server and the search path
/// a real kubelet writes (ClusterFirst).
pub fn resolv_conf(dns: Ipv4Addr, ns: &str) -> String {
    format!(
        "nameserver {dns}\nsearch {ns}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    )
}

/// `ip` argument lists that make one pod's network (see [`NetPlan::pod_setup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSetup {
    pub links: Vec<Vec<String>>,
    pub sysctls: Vec<String>,
    pub addresses: Vec<Vec<String>>,
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Whether `ip` is in the cluster's Service network.
pub fn in_service_net(plan: &NetPlan, ip: Ipv4Addr) -> bool {
    ip.octets()[..2] == plan.service_net.octets()[..2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_zero_stays_clear_of_node_test_blocks() {
        let p = NetPlan::new(0);
        assert_eq!(p.gateway, Ipv4Addr::new(127, 8, 0, 1));
        assert_eq!(p.service_cidr(), "127.15.0.0/16");
        assert_eq!(p.kubernetes_service_ip(), Ipv4Addr::new(127, 15, 0, 1));
        assert_eq!(p.dns_ip(), Ipv4Addr::new(127, 15, 0, 10));
        // RINGSHIFT_TEST_NET=K binds 127.K.x.y for K in 0..8: none of it is routed to the bridge.
        for k in 0..8u8 {
            assert!(!in_service_net(&p, Ipv4Addr::new(127, k, 1, 1)));
            assert!(u32::from(Ipv4Addr::new(127, k, 255, 255)) < u32::from(p.pod_net));
        }
    }

    #[test]
    fn clusters_side_by_side_do_not_share_addresses_or_names() {
        let a = NetPlan::new(1);
        let b = NetPlan::new(2);
        assert_eq!(a.pod_net, Ipv4Addr::new(127, 24, 0, 0));
        assert_eq!(a.service_cidr(), "127.31.0.0/16");
        assert_eq!(b.pod_net, Ipv4Addr::new(127, 40, 0, 0));
        assert_ne!(a.bridge, b.bridge);
        assert_ne!(a.netns("u"), b.netns("u"));
        assert!(a.netns("abc").starts_with(&a.netns_prefix()));
        assert!(!b.netns("abc").starts_with(&a.netns_prefix()));
    }

    #[test]
    fn resolv_conf_points_at_cluster_dns_with_the_namespace_first() {
        assert_eq!(
            resolv_conf(Ipv4Addr::new(127, 15, 0, 10), "shop"),
            "nameserver 127.15.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn veth_names_fit_the_kernel_limit() {
        let p = NetPlan::new(9);
        let v = p.veth("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(v, "rs9v0f1e2d3c4b");
        assert!(v.len() <= 15);
        assert_eq!(p.veth("x"), "rs9v");
    }

    #[test]
    fn pod_routes_send_services_and_the_rest_through_the_gateway() {
        let p = NetPlan::new(0);
        let s = p.pod_setup("uid-1", Ipv4Addr::new(127, 8, 0, 10));
        assert_eq!(
            s.links[0],
            args(&[
                "link",
                "add",
                "rs0vd1",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                "rs0-uid-1"
            ])
        );
        let joined: Vec<String> = s.addresses.iter().map(|a| a.join(" ")).collect();
        assert!(joined.contains(&"-n rs0-uid-1 addr add 127.8.0.10/13 dev eth0".to_string()));
        assert!(joined.contains(
            &"-n rs0-uid-1 route add table local 127.8.0.0/13 dev eth0 src 127.8.0.10".to_string()
        ));
        assert!(joined.contains(
            &"-n rs0-uid-1 route add table local 127.15.0.0/16 via 127.8.0.1 dev eth0 src 127.8.0.10"
                .to_string()
        ));
        assert_eq!(
            joined.last().map(String::as_str),
            Some("-n rs0-uid-1 route add default via 127.8.0.1 dev eth0 src 127.8.0.10")
        );
    }

    #[test]
    fn host_keeps_services_local_and_routes_pods_to_the_bridge() {
        let joined: Vec<String> = NetPlan::new(0)
            .bridge_setup()
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert!(joined.contains(&"addr replace 127.8.0.1/13 dev rsbr0".to_string()));
        assert!(joined.contains(
            &"route replace table local 127.8.0.0/13 dev rsbr0 proto kernel scope link src 127.8.0.1"
                .to_string()
        ));
        assert!(
            joined.contains(&"route replace table local local 127.15.0.0/16 dev lo".to_string())
        );
    }
}
