//! What the Service proxy and the DNS server read: every Service and Pod of the cluster, kept
//! current by watches (reflector stores).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

#[derive(Clone)]
pub struct ClusterView {
    services: Store<Service>,
    pods: Store<Pod>,
    service_changes: watch::Receiver<u64>,
}

impl ClusterView {
    /// Starts the watches; the stores fill as the first lists arrive.
    pub fn start(client: &Client) -> Self {
        let (services, svc_writer) = reflector::store::<Service>();
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (tx, service_changes) = watch::channel(0u64);
        let svc_api: Api<Service> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher(svc_api, watcher::Config::default())
                .default_backoff()
                .reflect(svc_writer)
                .boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(_) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                    Err(e) => tracing::warn!(error = %e, "service watch failed; retrying"),
                }
            }
        });
        let pod_api: Api<Pod> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher(pod_api, watcher::Config::default())
                .default_backoff()
                .reflect(pod_writer)
                .boxed();
            while let Some(ev) = events.next().await {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "pod watch (for services) failed; retrying");
                }
            }
        });
        Self {
            services,
            pods,
            service_changes,
        }
    }

    pub fn services(&self) -> Vec<Arc<Service>> {
        self.services.state()
    }

    pub fn services_store(&self) -> &Store<Service> {
        &self.services
    }

    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods.state()
    }

    /// Ticks on every Service change.
    pub fn service_changes(&self) -> watch::Receiver<u64> {
        self.service_changes.clone()
    }
}
