//! Polls every pod of a cluster for its accepted-write windows during a run (a pod that restarts
//! forgets its windows, so evidence is gathered as it goes, not only at the end) and checks them
//! with [`crate::load::split_brain::Evidence`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams};
use ringshift_node_api::client::AdminClient;

use super::ownership::ADMIN_PORT;
use super::{SupportError, pod_ip};
use crate::load::StopFlag;
use crate::load::split_brain::Evidence;

/// The key of the admin token in the cluster's `<cluster>-admin-token` Secret.
const TOKEN_KEY: &str = "token";

/// The admin token of `cluster`'s nodes, from the Secret the operator created.
pub async fn admin_token(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<String, SupportError> {
    let secret_name = format!("{cluster}-admin-token");
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&secret_name)
        .await
        .map_err(|source| SupportError::Api {
            what: format!("reading Secret {secret_name}"),
            source,
        })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
        .ok_or_else(|| SupportError::Other(format!("{secret_name} has no {TOKEN_KEY}")))
}

pub struct SplitBrainWatch {
    evidence: Arc<Mutex<Evidence>>,
    stop: StopFlag,
    poller: Poller,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Poller {
    pods: Api<Pod>,
    selector: String,
    token: String,
    http: reqwest::Client,
}

impl Poller {
    /// One round: every pod with an address, concurrently (a stopped node only delays itself).
    async fn poll(&self, evidence: &Mutex<Evidence>) {
        let Ok(list) = self
            .pods
            .list(&ListParams::default().labels(&self.selector))
            .await
        else {
            return;
        };
        let asks = list.items.iter().filter_map(pod_ip).map(|ip| {
            let admin = AdminClient::new(
                self.http.clone(),
                &format!("{ip}:{ADMIN_PORT}"),
                &self.token,
            );
            async move { admin.accepted_writes().await.ok() }
        });
        for answer in futures::future::join_all(asks).await.into_iter().flatten() {
            if let Ok(mut e) = evidence.lock() {
                e.add(&answer);
            }
        }
    }
}

impl SplitBrainWatch {
    /// Starts polling the pods of `cluster` every 500 ms.
    pub async fn start(
        client: &Client,
        namespace: &str,
        cluster: &str,
    ) -> Result<SplitBrainWatch, SupportError> {
        let token = admin_token(client, namespace, cluster).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| SupportError::Other(format!("http client: {e}")))?;
        let poller = Poller {
            pods: Api::namespaced(client.clone(), namespace),
            selector: format!("ringshift.dev/cluster={cluster}"),
            token,
            http,
        };
        let evidence = Arc::new(Mutex::new(Evidence::default()));
        let stop = StopFlag::default();
        let task = {
            let (poller, evidence, stop) = (poller.clone(), evidence.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_stopped() {
                    poller.poll(&evidence).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        Ok(SplitBrainWatch {
            evidence,
            stop,
            poller,
            task,
        })
    }

    /// Stops polling after one last round and returns everything seen.
    pub async fn finish(self) -> Evidence {
        self.stop.stop();
        let _ = self.task.await;
        self.poller.poll(&self.evidence).await;
        self.evidence.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
