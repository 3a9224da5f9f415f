//! Serves cluster DNS over UDP and TCP on the kube-dns Service's address in the host's network
//! namespace (local there; pods reach it through the bridge).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::super::cluster_view::ClusterView;
use super::codec::UDP_LIMIT;
use super::respond;

const PORT: u16 = 53;
const RETRY: Duration = Duration::from_secs(5);
/// A TCP client idle this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Creates `kube-system/kube-dns` at `ip` (no selector: the kubelet serves it itself) unless it
/// exists; retried until the apiserver takes it.
pub async fn ensure_service(client: Client, ip: Ipv4Addr) {
    let api: Api<Service> = Api::namespaced(client, "kube-system");
    let svc: Service = match serde_json::from_value(json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": ip.to_string(), "ports": [
            {"name": "dns", "port": PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "port": PORT, "protocol": "TCP"}
        ]}
    })) {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "building the kube-dns Service"),
    };
    loop {
        match api.create(&PostParams::default(), &svc).await {
            Ok(_) => return tracing::info!(%ip, "created Service kube-system/kube-dns"),
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) => {
                tracing::warn!(error = %e, "creating Service kube-system/kube-dns failed; retrying")
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn answer(view: &ClusterView, buf: &[u8], limit: Option<usize>) -> Option<Vec<u8>> {
    let services = view.services();
    let pods = view.pods();
    let s: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
    let p: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    respond(buf, &s, &p, limit)
}

/// Serves until the process exits (binding is retried: the address is local once the bridge
/// setup added the Service route).
pub async fn run(view: ClusterView, ip: Ipv4Addr) {
    let addr = SocketAddr::from((ip, PORT));
    let udp = loop {
        match UdpSocket::bind(addr).await {
            Ok(s) => break s,
            Err(e) => tracing::warn!(%addr, error = %e, "cluster DNS: cannot bind UDP; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    };
    let tcp = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => tracing::warn!(%addr, error = %e, "cluster DNS: cannot bind TCP; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    };
    tracing::info!(%addr, "cluster DNS serving");
    let tcp_view = view.clone();
    tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_tcp(stream, tcp_view.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster DNS: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cluster DNS: receive failed");
                continue;
            }
        };
        if let Some(reply) = answer(&view, &buf[..n], Some(UDP_LIMIT))
            && let Err(e) = udp.send_to(&reply, peer).await
        {
            tracing::debug!(%peer, error = %e, "cluster DNS: send failed");
        }
    }
}

/// DNS over TCP: each message has a two-byte length prefix; many per connection.
async fn serve_tcp(mut stream: TcpStream, view: ClusterView) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        let Some(reply) = answer(&view, &msg, None) else {
            return;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend(reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
