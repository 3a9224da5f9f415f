//! The process kubelet: plays scheduler and kubelet for a local control plane without a
//! container runtime. It binds every unscheduled pod to its node and runs each container as a
//! local process in the pod's own network namespace (a loopback address on the cluster's bridge,
//! see `net_plan`) and a private mount namespace with the pod's volumes bind-mounted; it also
//! proxies ClusterIP Services and answers cluster DNS (see e2e/README.md).

pub mod api_server;
mod cluster_view;
mod container;
pub mod digest;
pub mod dns;
pub mod endpoints;
pub mod env;
mod events;
pub mod expand;
mod fs_group;
pub mod image_config;
pub mod image_ref;
pub mod image_store;
pub mod images;
pub mod ip_pool;
pub mod net_plan;
pub mod netns;
mod node;
pub mod pod_info;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod scheduling;
pub mod shim;
pub mod status;
pub mod stdin_relay;
pub mod tty;
pub mod unpack;
pub mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use ip_pool::IpPool;
use worker::Update;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("building client: {0}")]
    Client(#[source] kube::Error),
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("locating own executable: {0}")]
    SelfExe(#[source] std::io::Error),
    #[error("setting up the pod network: {0}")]
    Network(#[source] netns::NetError),
    #[error("state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Settings of one kubelet run.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub state_dir: PathBuf,
    pub node_name: String,
    pub bin_dir: PathBuf,
    /// The apiserver's port on 127.0.0.1: where the kubernetes Service's proxy sends.
    pub api_port: u16,
    /// Which block of loopback addresses pods get (see `ip_pool`).
    pub ip_block: u8,
    /// The kubelet API server to run (none: `kubectl logs`/`exec`/... are not served).
    pub api_server: Option<api_server::ApiServerConfig>,
}

/// Shared by all pod workers.
pub struct Ctx {
    pub client: Client,
    pub state_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub node_name: String,
    pub self_exe: PathBuf,
    pub net: net_plan::NetPlan,
    pub ips: Mutex<IpPool>,
    pub http: reqwest::Client,
    /// Pods (by UID) a scheduling task is placing, so an event per status patch does not
    /// start another.
    pub scheduling: Mutex<HashSet<String>>,
    /// Images pulled from registries, unpacked under `$STATE/images`.
    pub images: image_store::ImageStore,
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A worker ended: `finished` when it finalized its pod (rather than crashing).
struct Done {
    uid: String,
    finished: bool,
}

/// How long a finalized pod's UID is remembered, so a late event does not restart it.
const FORGET_AFTER: Duration = Duration::from_secs(600);

pub async fn run(cfg: Config) -> Result<(), KubeletError> {
    let kc = Kubeconfig::read_from(&cfg.kubeconfig).map_err(|source| KubeletError::Kubeconfig {
        path: cfg.kubeconfig.clone(),
        source,
    })?;
    let kconf = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| KubeletError::Kubeconfig {
            path: cfg.kubeconfig.clone(),
            source,
        })?;
    let client = Client::try_from(kconf).map_err(KubeletError::Client)?;
    let pods_dir = cfg.state_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|source| KubeletError::StateDir {
        path: pods_dir.clone(),
        source,
    })?;
    process::kill_stale(&pods_dir);
    let net = net_plan::NetPlan::new(cfg.ip_block);
    netns::remove_leftovers(&net).await;
    netns::ensure_bridge(&net)
        .await
        .map_err(KubeletError::Network)?;
    let kubelet_port = cfg.api_server.as_ref().map(|a| a.port);
    node::register(&client, &cfg.node_name, kubelet_port)
        .await
        .map_err(|source| KubeletError::Register {
            node: cfg.node_name.clone(),
            source,
        })?;
    tokio::spawn(node::heartbeat_loop(
        client.clone(),
        cfg.node_name.clone(),
        kubelet_port,
    ));
    // Dropped (and its child killed) when `run` returns.
    let _api_server = cfg.api_server.clone().map(|a| {
        AbortOnDrop(tokio::spawn(api_server::supervise(
            a,
            cfg.state_dir.clone(),
        )))
    });
    let view = cluster_view::ClusterView::start(&client);
    let api = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, cfg.api_port);
    tokio::spawn(proxy::run(view.clone(), net.clone(), api));
    tokio::spawn(dns::ensure_service(client.clone(), net.dns_ip()));
    tokio::spawn(dns::run(view.clone(), net.dns_ip()));

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        state_dir: cfg.state_dir.clone(),
        bin_dir: cfg.bin_dir.clone(),
        node_name: cfg.node_name.clone(),
        self_exe: std::env::current_exe().map_err(KubeletError::SelfExe)?,
        net,
        ips: Mutex::new(IpPool::new(cfg.ip_block)),
        images: image_store::ImageStore::new(cfg.state_dir.join("images"), http.clone()),
        http,
        scheduling: Mutex::new(HashSet::new()),
    });
    tracing::info!(node = %cfg.node_name, bin_dir = %cfg.bin_dir.display(), state_dir = %cfg.state_dir.display(), "process kubelet running");

    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watcher::watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, watch::Sender<Update>> = HashMap::new();
    let mut finished: HashMap<String, Instant> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();

    loop {
        tokio::select! {
            ev = events.next() => match ev {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                Some(Ok(Event::Init)) => listed.clear(),
                Some(Ok(Event::InitApply(p))) => {
                    if let Some(uid) = &p.metadata.uid { listed.insert(uid.clone()); }
                    on_pod(&ctx, p, &mut workers, &finished, &done_tx).await;
                }
                Some(Ok(Event::InitDone)) => {
                    // Pods deleted while the watch was down.
                    for (uid, tx) in &workers {
                        if !listed.contains(uid) { let _ = tx.send(Update::Gone); }
                    }
                }
                Some(Ok(Event::Apply(p))) => on_pod(&ctx, p, &mut workers, &finished, &done_tx).await,
                Some(Ok(Event::Delete(p))) => {
                    if let Some(tx) = p.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                        let _ = tx.send(Update::Gone);
                    }
                }
            },
            Some(done) = done_rx.recv() => {
                workers.remove(&done.uid);
                if done.finished {
                    finished.insert(done.uid, Instant::now());
                }
                finished.retain(|_, t| t.elapsed() < FORGET_AFTER);
            }
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                tracing::info!("SIGTERM: exiting (pod processes keep running; `e2e/cluster/down` stops them)");
                break;
            }
        }
    }
    Ok(())
}

async fn on_pod(
    ctx: &Arc<Ctx>,
    pod: Pod,
    workers: &mut HashMap<String, watch::Sender<Update>>,
    finished: &HashMap<String, Instant>,
    done_tx: &mpsc::UnboundedSender<Done>,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if finished.contains_key(&uid) {
        return;
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if node.is_empty() {
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if pod.metadata.deletion_timestamp.is_none() && !terminal {
            let first = ctx
                .scheduling
                .lock()
                .map(|mut s| s.insert(uid.clone()))
                .unwrap_or(false);
            if first {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    schedule(&ctx, pod).await;
                    if let Ok(mut s) = ctx.scheduling.lock() {
                        s.remove(&uid);
                    }
                });
            }
        }
        return;
    }
    if node != ctx.node_name {
        return;
    }
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(Update::Pod(Box::new(pod)));
        return;
    }
    let (tx, rx) = watch::channel(Update::Pod(Box::new(pod.clone())));
    workers.insert(uid.clone(), tx);
    let ctx = ctx.clone();
    let done = done_tx.clone();
    tokio::spawn(async move {
        // A panic in a worker must not take the kubelet down: log it and let the next event for
        // the pod start a fresh worker.
        let outcome = tokio::spawn(worker::run(ctx, pod, rx)).await;
        let finished = match outcome {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(%uid, error = %e, "pod worker crashed");
                false
            }
        };
        let _ = done.send(Done { uid, finished });
    });
}

/// How often a pod no node fits is looked at again (a real scheduler retries on cluster events
/// and at least every 5 minutes; here the Node's labels are simply read again).
const RESCHEDULE: Duration = Duration::from_secs(3);

/// Plays the scheduler for one pod: binds it when the Node's labels satisfy its nodeSelector
/// and required node affinity; else marks it PodScheduled=False (Unschedulable), emits
/// FailedScheduling and tries again until it fits, is bound elsewhere or is gone.
async fn schedule(ctx: &Ctx, mut pod: Pod) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone()) else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut reported: Option<String> = None;
    loop {
        let labels = match nodes.get_opt(&ctx.node_name).await {
            Ok(Some(n)) => n.metadata.labels.unwrap_or_default(),
            Ok(None) => Default::default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the node for scheduling failed; retrying");
                tokio::time::sleep(RESCHEDULE).await;
                continue;
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        match scheduling::fits(&spec, &ctx.node_name, &labels) {
            Ok(()) => return bind(ctx.client.clone(), pod, ctx.node_name.clone()).await,
            Err(message) => {
                if reported.as_deref() != Some(message.as_str()) {
                    mark_unschedulable(&pods, &name, &message).await;
                    events::emit(
                        &ctx.client,
                        &pod,
                        &ctx.node_name,
                        events::WARNING,
                        "FailedScheduling",
                        message.clone(),
                    );
                    tracing::info!(pod = %format!("{ns}/{name}"), %message, "pod does not fit the node");
                    reported = Some(message);
                }
            }
        }
        tokio::time::sleep(RESCHEDULE).await;
        pod = match pods.get_opt(&name).await {
            Ok(Some(p)) if p.metadata.uid == pod.metadata.uid => p,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "re-reading an unscheduled pod failed; retrying");
                continue;
            }
        };
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if bound || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
    }
}

/// PodScheduled=False with the scheduler's reason and message, as a real scheduler sets it.
async fn mark_unschedulable(pods: &Api<Pod>, name: &str, message: &str) {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": now
    }]}});
    if let Err(e) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        tracing::warn!(pod = name, error = %e, "marking the pod unschedulable failed");
    }
}

/// Binds the pod to this node (what the scheduler would do), retrying transient failures.
async fn bind(client: Client, pod: Pod, node: String) {
    let (Some(ns), Some(name)) = (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref(),
    ) else {
        return;
    };
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    });
    let api: Api<Pod> = Api::namespaced(client, ns);
    for _ in 0..BIND_ATTEMPTS {
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => return tracing::info!(pod = %format!("{ns}/{name}"), %node, "bound pod"),
            // Already bound (a duplicate event) or gone.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => return,
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

const BIND_ATTEMPTS: usize = 30;
