//! Running the operator as a local process against the test cluster, and reading the ringshift
//! custom resources as untyped objects (the e2e crate does not link the operator).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use super::{SupportError, kubeconfig_path, repo_root, wait_until};

/// The directory of the workspace binaries: RINGSHIFT_BIN_DIR, else next to the running test
/// binary's `deps/` directory (`target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RINGSHIFT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|d| d.parent()).map(PathBuf::from))
        .unwrap_or_else(|| repo_root().join("target/debug"))
}

/// Installs (server-side apply) the CRDs from `crds/` and waits until they are established.
pub fn install_crds() -> Result<(), SupportError> {
    let kubectl = |args: &[&str]| -> Result<(), SupportError> {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig_path())
            .args(args)
            .output()
            .map_err(|e| SupportError::Other(format!("running kubectl: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SupportError::Other(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    let crds = repo_root().join("crds");
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &crds.to_string_lossy(),
    ])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/shardclusters.ringshift.dev",
        "crd/shardplacements.ringshift.dev",
        "crd/shardmigrations.ringshift.dev",
    ])
}

/// An operator process watching one namespace (its lease lives there too); killed with SIGKILL
/// (like a crash) when dropped.
pub struct OperatorProcess {
    child: Child,
    pub identity: String,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Its metrics address, from its log line `serving /healthz, ... addr=127.0.0.1:PORT`.
    pub async fn metrics_addr(&self) -> Result<String, SupportError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let addr = log
                .lines()
                .find(|l| l.contains("serving /healthz"))
                .and_then(|l| l.find("127.0.0.1:").map(|i| &l[i..]))
                .map(|a| {
                    a.chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect::<String>()
                });
            if let Some(a) = addr {
                return Ok(a);
            }
            if std::time::Instant::now() >= deadline {
                return Err(SupportError::Other(format!(
                    "operator {} logged no metrics address in 30 s",
                    self.identity
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `ringshift-operator run` for `namespace` with a short lease.
    pub fn start(
        namespace: &str,
        identity: &str,
        lease: Duration,
    ) -> Result<OperatorProcess, SupportError> {
        Self::start_with_kubeconfig(namespace, identity, lease, &kubeconfig_path())
    }

    /// The same with another kubeconfig, e.g. one holding a service account's token, so the
    /// operator runs with exactly that account's RBAC.
    pub fn start_with_kubeconfig(
        namespace: &str,
        identity: &str,
        lease: Duration,
        kubeconfig: &str,
    ) -> Result<OperatorProcess, SupportError> {
        Self::start_with(namespace, identity, lease, kubeconfig, &[])
    }

    /// Like [`OperatorProcess::start`], with extra environment (e.g. `RINGSHIFT_FAILPOINTS`).
    pub fn start_with_env(
        namespace: &str,
        identity: &str,
        lease: Duration,
        env: &[(&str, &str)],
    ) -> Result<OperatorProcess, SupportError> {
        Self::start_with(namespace, identity, lease, &kubeconfig_path(), env)
    }

    fn start_with(
        namespace: &str,
        identity: &str,
        lease: Duration,
        kubeconfig: &str,
        env: &[(&str, &str)],
    ) -> Result<OperatorProcess, SupportError> {
        let log =
            std::env::temp_dir().join(format!("ringshift-operator-{namespace}-{identity}.log"));
        let file = std::fs::File::create(&log)
            .map_err(|e| SupportError::Other(format!("creating {}: {e}", log.display())))?;
        let child = Command::new(bin_dir().join("ringshift-operator"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
            ])
            .args(["--identity", identity, "--listen", "127.0.0.1:0"])
            .args(["--lease-duration", &format!("{}s", lease.as_secs().max(1))])
            .args(["--retry-period", "1s"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,ringshift_operator=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| {
                SupportError::Other(format!(
                    "starting {}/ringshift-operator (cargo build --workspace --bins): {e}",
                    bin_dir().display()
                ))
            })?;
        Ok(OperatorProcess {
            child,
            identity: identity.to_string(),
            log,
        })
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `sig` (SIGSTOP: a leader frozen past its lease, as after a long GC pause or a
    /// partition; SIGCONT wakes it).
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<(), SupportError> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig)
            .map_err(|e| SupportError::Other(format!("{sig} to operator {}: {e}", self.identity)))
    }

    /// Whether the process has exited (reaps it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM, then waits for it to exit (a graceful stop releases the lease at once); SIGKILL
    /// after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let _ = self.signal(nix::sys::signal::Signal::SIGTERM);
        if self.wait_exit(grace).await.is_none() {
            self.kill();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code (None while it
    /// runs, or when a signal ended it).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this process leads (its log says so), e.g. after a restart once the dead
    /// leader's lease ran out.
    pub async fn wait_leading(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("leading: starting controllers") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Untyped API of a ringshift kind (`ShardCluster`, `ShardPlacement`, `ShardMigration`).
pub fn ringshift_api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("ringshift.dev", "v1alpha1", kind));
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Server-side applies a ShardCluster with `spec`.
pub async fn apply_cluster(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: Value,
) -> Result<(), SupportError> {
    let obj = json!({
        "apiVersion": "ringshift.dev/v1alpha1",
        "kind": "ShardCluster",
        "metadata": {"name": name},
        "spec": spec,
    });
    ringshift_api(client, namespace, "ShardCluster")
        .patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .map(|_| ())
        .map_err(|source| SupportError::Api {
            what: format!("applying ShardCluster {namespace}/{name}"),
            source,
        })
}

/// `(status, reason, message)` of a condition of an untyped object.
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
}

/// Waits until the ShardCluster is Balanced=True for its current generation and its placement
/// has no target in flight; returns the committed epoch.
pub async fn wait_balanced(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<u64, SupportError> {
    let clusters = ringshift_api(client, namespace, "ShardCluster");
    let placements = ringshift_api(client, namespace, "ShardPlacement");
    let epoch = wait_until(
        &format!("ShardCluster {name} Balanced"),
        timeout,
        || async {
            let c = clusters.get(name).await.map_err(|e| e.to_string())?;
            let generation = c.metadata.generation.unwrap_or(0);
            let observed = c.data["status"]["observedGeneration"]
                .as_i64()
                .unwrap_or(-1);
            if observed < generation {
                return Err(format!("observedGeneration {observed} < {generation}"));
            }
            match condition(&c, "Balanced") {
                Some((s, _, _)) if s == "True" => {}
                other => return Err(format!("Balanced: {other:?}")),
            }
            let p = placements.get(name).await.map_err(|e| e.to_string())?;
            if p.data["status"]["inTransition"].as_bool().unwrap_or(true) {
                return Err("placement in transition".into());
            }
            p.data["status"]["epoch"]
                .as_str()
                .and_then(|e| e.parse::<u64>().ok())
                .ok_or_else(|| "no epoch".to_string())
        },
    )
    .await?;
    Ok(epoch)
}

/// Keeps `path` listing the data addresses (`ip:6379`) of the cluster's Ready pods, as a client
/// that follows the pods would, until `stop` is set. Returns once the file was first written.
pub async fn follow_pods(
    client: &Client,
    namespace: &str,
    cluster: &str,
    path: PathBuf,
    stop: crate::load::StopFlag,
) -> Result<(), SupportError> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("ringshift.dev/cluster={cluster}");
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut first = Some(first_tx);
        while !stop.is_stopped() {
            if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                let addrs: std::collections::BTreeSet<String> = list
                    .items
                    .iter()
                    .filter(|p| super::pod_ready(p) && p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| super::pod_ip(p).map(|ip| format!("{ip}:6379")))
                    .collect();
                if !addrs.is_empty() {
                    let text: Vec<String> = addrs.into_iter().collect();
                    if std::fs::write(&path, text.join("\n")).is_ok()
                        && let Some(tx) = first.take()
                    {
                        let _ = tx.send(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(60), first_rx)
        .await
        .map_err(|_| SupportError::Other("no Ready pod with an IP within 60s".into()))?
        .map_err(|_| SupportError::Other("pod follower stopped".into()))
}

/// Waits until the ShardCluster's Ready condition is True (every member Ready and serving).
pub async fn wait_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), SupportError> {
    let clusters = ringshift_api(client, namespace, "ShardCluster");
    wait_until(&format!("ShardCluster {name} Ready"), timeout, || async {
        let c = clusters.get(name).await.map_err(|e| e.to_string())?;
        match condition(&c, "Ready") {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("Ready: {other:?}")),
        }
    })
    .await?;
    Ok(())
}

/// Applies a ShardCluster and waits until it is Ready and Balanced; on failure the error carries
/// the tail of `op`'s log.
pub async fn create_cluster(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: Value,
    op: &OperatorProcess,
    timeout: Duration,
) -> Result<u64, SupportError> {
    let with_log =
        |e: SupportError| SupportError::Other(format!("{e}\noperator log:\n{}", op.log_tail(40)));
    apply_cluster(client, namespace, name, spec).await?;
    wait_ready(client, namespace, name, timeout)
        .await
        .map_err(with_log)?;
    wait_balanced(client, namespace, name, timeout)
        .await
        .map_err(with_log)
}
