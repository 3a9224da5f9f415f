//! The node: storage engine, configuration, peer connections and metrics shared by the data
//! port, the admin API and pulls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use ringshift_node_api::client::AdminClient;

use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::pull::Pulls;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub member: String,
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub password: Option<String>,
    pub admin_token: Option<String>,
    pub max_frame: usize,
    pub cluster_uid: Option<String>,
}

impl NodeConfig {
    pub fn data_port(&self) -> u16 {
        self.data_addr.port()
    }
}

pub struct Node {
    pub engine: Arc<Engine>,
    pub cfg: NodeConfig,
    pub pool: Pool,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    pub started: Instant,
    /// Unix ms of `started`.
    pub started_ms: u64,
    pub next_conn: AtomicU64,
    pub pulls: Pulls,
    /// The data port's connections (CLIENT LIST / KILL).
    pub clients: crate::command::clients::Clients,
    /// Thresholds OBJECT ENCODING reports by (CONFIG SET may change them).
    pub encodings: crate::command::encoding::Limits,
    /// This node's Pub/Sub subscriptions.
    pub pubsub: Arc<crate::pubsub::Hub>,
    /// `notify-keyspace-events` (`crate::notify` flags; 0: off).
    pub notify_flags: std::sync::atomic::AtomicU32,
}

impl Node {
    pub fn new(engine: Arc<Engine>, cfg: NodeConfig) -> Arc<Node> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let mut metrics = Metrics::new();
        metrics.register_commit_latency(engine.commit_latency.clone());
        Arc::new(Node {
            pool: Pool::new(cfg.password.clone()),
            engine,
            cfg,
            metrics,
            http,
            started: Instant::now(),
            started_ms: crate::keys::now_ms(),
            next_conn: AtomicU64::new(1),
            pulls: Pulls::default(),
            clients: Default::default(),
            encodings: Default::default(),
            pubsub: Default::default(),
            notify_flags: Default::default(),
        })
    }

    pub fn admin_client(&self, addr: &str) -> AdminClient {
        AdminClient::new(
            self.http.clone(),
            addr,
            self.cfg.admin_token.as_deref().unwrap_or(""),
        )
    }

    /// Fetches a peer's placement and installs it if it is newer (errors are logged: the caller
    /// retries its command either way within its budget).
    pub async fn refresh_placement_from(&self, admin_addr: &str) {
        let fetched = tokio::time::timeout(
            Duration::from_secs(2),
            self.admin_client(admin_addr).placement(),
        )
        .await;
        match fetched {
            Ok(Ok(body)) => {
                if body.placement.epoch() <= self.engine.routing().epoch() {
                    return;
                }
                if let Err(e) = crate::placement::install(self, &body).await {
                    tracing::warn!(peer = admin_addr, error = %e, "refusing a peer's placement");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(peer = admin_addr, error = %e, "cannot fetch a peer's placement")
            }
            Err(_) => tracing::warn!(peer = admin_addr, "timed out fetching a peer's placement"),
        }
    }
}
