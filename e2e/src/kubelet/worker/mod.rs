//! The life of one pod instance (one UID) on this node: prepare its address and volumes, start
//! its containers, probe them, restart crashed ones, report status, and on deletion stop them
//! gracefully and finalize the pod.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::watch;

mod launch;
mod probing;

use super::Ctx;
use super::container::Ctr;
use super::env::PodFacts;
use super::events::{self, NORMAL, WARNING};
use super::net_plan::resolv_conf;
use super::netns;
use super::process::{log_line, signal_group};
use super::status::{PodView, RunState, pod_status};
use super::volumes;

/// The port of the `default/kubernetes` Service (the apiserver creates it with 443).
const KUBERNETES_SERVICE_PORT: u16 = 443;
const TICK: Duration = Duration::from_millis(250);
const PREPARE_RETRY: Duration = Duration::from_secs(2);
const CONFIG_RETRY: Duration = Duration::from_secs(2);
const IMAGE_RETRY: Duration = Duration::from_secs(5);

/// What the watch loop tells a worker.
#[derive(Debug, Clone)]
pub enum Update {
    Pod(Box<Pod>),
    /// The pod object is gone (force-deleted): stop at once.
    Gone,
}

enum Flow {
    Continue,
    Done,
}

pub async fn run(ctx: Arc<Ctx>, pod: Pod, mut rx: watch::Receiver<Update>) {
    let mut w = Worker::new(ctx, pod);
    tracing::info!(pod = %w.key(), uid = %w.uid, "pod assigned to this node");
    loop {
        if let Flow::Done = w.step().await {
            break;
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return; // The kubelet is shutting down; leave the processes.
                }
                let update = rx.borrow_and_update().clone();
                match update {
                    Update::Pod(p) => w.pod = *p,
                    Update::Gone => w.gone = true,
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    tracing::info!(pod = %w.key(), uid = %w.uid, "pod finished on this node");
}

struct Worker {
    ctx: Arc<Ctx>,
    pod: Pod,
    gone: bool,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    /// The pod's network namespace exists (with `ip` on its eth0).
    net_ready: bool,
    volumes: Option<HashMap<String, PathBuf>>,
    next_prepare: Instant,
    message: Option<String>,
    start_time: Option<Time>,
    init: Vec<Ctr>,
    main: Vec<Ctr>,
    /// Set when the pod was already Succeeded or Failed when this kubelet first saw it.
    finished_before: bool,
    term_deadline: Option<Instant>,
    reported: Option<PodStatus>,
}

impl Worker {
    fn new(ctx: Arc<Ctx>, pod: Pod) -> Self {
        let now = Instant::now();
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let previous = |list: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                        n: &str| {
            list.iter().flatten().find(|s| s.name == n).cloned()
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                Ctr::new(
                    c.clone(),
                    true,
                    previous(&status.init_container_statuses, &c.name).as_ref(),
                    now,
                )
            })
            .collect();
        let main = spec
            .containers
            .iter()
            .map(|c| {
                Ctr::new(
                    c.clone(),
                    false,
                    previous(&status.container_statuses, &c.name).as_ref(),
                    now,
                )
            })
            .collect();
        let finished_before = matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed"));
        let dir = ctx.state_dir.join("pods").join(format!("{ns}_{name}"));
        Self {
            ctx,
            pod,
            gone: false,
            uid,
            ns,
            name,
            dir,
            ip: None,
            net_ready: false,
            volumes: None,
            next_prepare: now,
            message: None,
            start_time: status.start_time.clone(),
            init,
            main,
            finished_before,
            term_deadline: None,
            reported: None,
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn log_path(&self, c: &Container) -> PathBuf {
        self.dir.join(format!("{}.log", c.name))
    }

    async fn step(&mut self) -> Flow {
        let now = Instant::now();
        if self.gone {
            self.kill_all(Signal::SIGKILL);
            self.wait_all().await;
            self.cleanup().await;
            return Flow::Done;
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(now).await;
        }
        if self.finished_before {
            return Flow::Continue;
        }
        if self.volumes.is_none() {
            if now >= self.next_prepare {
                self.prepare(now).await;
            }
            if self.volumes.is_none() {
                self.report().await;
                return Flow::Continue;
            }
        }
        self.reap(now);
        self.escalate_kills(now);
        self.start_due(now).await;
        self.run_probes(now).await;
        self.report().await;
        Flow::Continue
    }

    /// The pod's resolv.conf (bind-mounted at /etc/resolv.conf in every container).
    pub(super) fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// Address, network namespace, directories and volumes; retried until they succeed.
    async fn prepare(&mut self, now: Instant) {
        if self.ip.is_none() {
            let preferred = self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .and_then(|s| s.parse().ok());
            let allocated = match self.ctx.ips.lock() {
                Ok(mut pool) => pool.allocate(preferred),
                Err(_) => None,
            };
            match allocated {
                Some(ip) => self.ip = Some(ip),
                None => {
                    self.message = Some("no free pod address".into());
                    self.next_prepare = now + PREPARE_RETRY;
                    return;
                }
            }
        }
        if self.start_time.is_none() {
            self.start_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            self.message = Some(format!("creating {}: {e}", self.dir.display()));
            self.next_prepare = now + PREPARE_RETRY;
            return;
        }
        let resolv = resolv_conf(self.ctx.net.dns_ip(), &self.ns);
        if let Err(e) = std::fs::write(self.resolv_conf_path(), resolv) {
            self.message = Some(format!("writing resolv.conf: {e}"));
            self.next_prepare = now + PREPARE_RETRY;
            return;
        }
        if let (false, Some(ip)) = (self.net_ready, self.ip) {
            match netns::create_pod(&self.ctx.net, &self.uid, ip).await {
                Ok(()) => self.net_ready = true,
                Err(e) => {
                    tracing::warn!(pod = %self.key(), error = %e, "pod network not ready");
                    self.message = Some(format!("setting up the pod network: {e}"));
                    self.next_prepare = now + PREPARE_RETRY;
                    return;
                }
            }
        }
        let facts = self.facts();
        match volumes::prepare(&self.ctx.client, &self.ctx.state_dir, &self.dir, &facts).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.message = None;
            }
            Err(e) => {
                tracing::warn!(pod = %self.key(), error = %e, "volumes not ready");
                if self.message.as_deref() != Some(&e.to_string()) {
                    self.event(WARNING, "FailedMount", e.to_string());
                }
                self.message = Some(e.to_string());
                self.next_prepare = now + PREPARE_RETRY;
            }
        }
    }

    fn all_ctrs(&mut self) -> impl Iterator<Item = &mut Ctr> {
        self.init.iter_mut().chain(self.main.iter_mut())
    }

    fn reap(&mut self, now: Instant) {
        let policy = self.policy();
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        let key = self.key();
        let dir = self.dir.clone();
        let mut backoffs = vec![];
        for c in self.all_ctrs() {
            let Some(p) = c.proc.as_mut() else { continue };
            match p.child.try_wait() {
                Ok(None) => {}
                Ok(Some(st)) => {
                    let signal = st.signal();
                    let code = st.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
                    let _ = std::fs::remove_file(&p.pid_file);
                    log_line(
                        &dir.join(format!("{}.log", c.spec.name)),
                        &format!("container exited with code {code}"),
                    );
                    tracing::info!(pod = %key, container = %c.spec.name, code, "container exited");
                    c.on_exit(code, signal, &policy, deleting, now);
                    if c.view.will_restart {
                        backoffs.push(format!(
                            "Back-off restarting failed container {} (exit code {code})",
                            c.spec.name
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(pod = %key, container = %c.spec.name, error = %e, "waiting for container failed")
                }
            }
        }
        for message in backoffs {
            self.event(WARNING, "BackOff", message);
        }
    }

    fn escalate_kills(&mut self, now: Instant) {
        for c in self.all_ctrs() {
            if let (Some(p), Some(deadline)) = (&c.proc, c.kill_deadline)
                && now >= deadline
            {
                let _ = signal_group(p.pid, Signal::SIGKILL);
            }
        }
    }

    fn kill_all(&mut self, sig: Signal) {
        for c in self.all_ctrs() {
            if let Some(p) = &c.proc {
                let _ = signal_group(p.pid, sig);
            }
        }
    }

    async fn wait_all(&mut self) {
        for c in self.all_ctrs() {
            if let Some(p) = c.proc.as_mut() {
                let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
                let _ = std::fs::remove_file(&p.pid_file);
                c.proc = None;
            }
        }
    }

    /// Stops a running container: SIGTERM now, SIGKILL after the pod's grace period.
    fn stop(c: &mut Ctr, grace: Duration, why: &str, log: &Path, now: Instant) {
        if let Some(p) = &c.proc {
            log_line(log, &format!("stopping container: {why}"));
            let _ = signal_group(p.pid, Signal::SIGTERM);
            c.kill_deadline = Some(later(now, grace));
        }
    }

    fn event(&self, kind: &str, reason: &str, message: String) {
        events::emit(
            &self.ctx.client,
            &self.pod,
            &self.ctx.node_name,
            kind,
            reason,
            message,
        );
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    async fn start_due(&mut self, now: Instant) {
        let init_done = self.init.iter().all(Ctr::succeeded);
        let picks: Vec<(bool, usize)> = if !init_done {
            // Init containers run one at a time, in order.
            match self.init.iter().position(|c| !c.succeeded()) {
                Some(i) if self.init[i].start_due(now) => vec![(true, i)],
                _ => vec![],
            }
        } else {
            (0..self.main.len())
                .filter(|&i| self.main[i].start_due(now))
                .map(|i| (false, i))
                .collect()
        };
        for (init, i) in picks {
            let spec = if init {
                self.init[i].spec.clone()
            } else {
                self.main[i].spec.clone()
            };
            let attempt = self.launch(&spec).await;
            let log = self.log_path(&spec);
            match &attempt {
                Ok((proc, _, _)) => self.event(
                    NORMAL,
                    "Started",
                    format!("Started container {} (pid {})", spec.name, proc.pid),
                ),
                Err((reason, message, _)) => {
                    let prev = if init {
                        &self.init[i].view.state
                    } else {
                        &self.main[i].view.state
                    };
                    let repeated = matches!(prev, RunState::Waiting { reason: r, message: Some(m) } if r == reason && m == message);
                    if !repeated {
                        self.event(WARNING, "Failed", format!("Error: {reason}: {message}"));
                    }
                }
            }
            let c = if init {
                &mut self.init[i]
            } else {
                &mut self.main[i]
            };
            match attempt {
                Ok((proc, plan, image_id)) => {
                    tracing::info!(pod = %format!("{}/{}", self.ns, self.name), container = %spec.name, pid = proc.pid, %image_id, "container started");
                    c.on_started(proc.pid, &image_id, now);
                    c.proc = Some(proc);
                    c.plan = Some(plan);
                }
                Err((reason, message, retry)) => {
                    tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), container = %spec.name, reason, %message, "container not started");
                    log_line(&log, &format!("{reason}: {message}"));
                    c.on_start_failed(reason, message, retry, now);
                }
            }
        }
    }

    /// Deletion: SIGTERM, SIGKILL after the grace period, then clean up and remove the object.
    async fn terminate(&mut self, now: Instant) -> Flow {
        if self.term_deadline.is_none() {
            let secs = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30)
                .max(0);
            let grace = Duration::from_secs(secs as u64);
            self.term_deadline = Some(later(now, grace));
            tracing::info!(pod = %self.key(), grace_secs = secs, "pod deleted; stopping containers");
            let dir = self.dir.clone();
            let mut stopped = vec![];
            for c in self.all_ctrs() {
                let log = dir.join(format!("{}.log", c.spec.name));
                if c.running() {
                    stopped.push(c.spec.name.clone());
                }
                Self::stop(c, grace, "pod deleted", &log, now);
            }
            for name in stopped {
                self.event(
                    NORMAL,
                    "Killing",
                    format!("Stopping container {name} (grace period {secs}s)"),
                );
            }
        }
        self.reap(now);
        self.escalate_kills(now);
        if self.all_ctrs().any(|c| c.running()) {
            self.report().await;
            return Flow::Continue;
        }
        self.cleanup().await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.name, &dp).await {
            Ok(_) => Flow::Done,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Flow::Done,
            Err(e) => {
                tracing::warn!(pod = %self.key(), error = %e, "finalizing pod failed; retrying");
                Flow::Continue
            }
        }
    }

    /// What the downward API and the Service environment tell this pod's containers.
    pub(super) fn facts(&self) -> PodFacts<'_> {
        PodFacts {
            pod: &self.pod,
            pod_ip: self.ip.map(|i| i.to_string()).unwrap_or_default(),
            host_ip: "127.0.0.1".into(),
            node_name: &self.ctx.node_name,
            api_host: self.ctx.net.kubernetes_service_ip().to_string(),
            api_port: KUBERNETES_SERVICE_PORT,
        }
    }

    /// Removes what belongs to this pod instance (not its logs, not PVC data): its network
    /// namespace, its files, and frees its address.
    async fn cleanup(&mut self) {
        if self.net_ready {
            match netns::delete(&self.ctx.net.netns(&self.uid)).await {
                Ok(()) => self.net_ready = false,
                Err(e) => {
                    tracing::warn!(pod = %self.key(), error = %e, "removing the pod network failed")
                }
            }
        }
        let _ = std::fs::remove_file(self.resolv_conf_path());
        for c in self.init.iter().chain(self.main.iter()) {
            for suffix in ["pid", "plan.json", "probe.json"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{}.{suffix}", c.spec.name)));
            }
            // The container's writable layer over its image (the image stays cached).
            let _ = std::fs::remove_dir_all(self.dir.join(format!("{}.rootfs", c.spec.name)));
        }
        let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
        if let (Some(ip), Ok(mut pool)) = (self.ip.take(), self.ctx.ips.lock()) {
            pool.release(ip);
        }
    }

    async fn report(&mut self) {
        let init: Vec<_> = self.init.iter().map(|c| c.view.clone()).collect();
        let main: Vec<_> = self.main.iter().map(|c| c.view.clone()).collect();
        let view = PodView {
            init: &init,
            main: &main,
            pod_ip: self.ip.map(|i| i.to_string()),
            host_ip: "127.0.0.1".into(),
            start_time: self.start_time.clone(),
            message: self.message.clone(),
            qos_class: None,
        };
        let previous = self.reported.as_ref().or(self.pod.status.as_ref());
        let status = pod_status(&view, previous, &Time(k8s_openapi::jiff::Timestamp::now()));
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({ "status": status });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.reported = Some(status),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %self.key(), error = %e, "status update failed; retrying")
            }
        }
    }
}

/// `now + d`, saturating (a huge grace period from the API must not overflow).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 86400))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
