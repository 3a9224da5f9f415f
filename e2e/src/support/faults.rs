//! Faults a test injects into the local harness: signals to a pod's process (SIGKILL a node,
//! SIGSTOP it past a deadline) and a kube-apiserver restart. These act on processes the harness
//! started, found through its pid files ("PID STARTTIME"), so a recycled pid is never signalled.
//! Also the environment of a namespace's containers (node failpoints, through the harness's
//! `ringshift-e2e-env` ConfigMap) and what the pods' logs say about them (failpoint hits, when
//! a line was logged).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{SupportError, TestEnv, kubectl::repo_root, wait_until};
use crate::kubelet::process::{proc_start, signal_group};

/// The live process recorded in a harness pid file.
fn live_pid(pid_file: &Path) -> Result<u32, SupportError> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| SupportError::Other(format!("reading {}: {e}", pid_file.display())))?;
    let mut parts = text.split_whitespace();
    let pid: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| SupportError::Other(format!("{}: no pid", pid_file.display())))?;
    let start: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    match proc_start(pid) {
        Some(s) if s == start || start == 0 => Ok(pid),
        _ => Err(SupportError::Other(format!(
            "{} names pid {pid}, which is not running",
            pid_file.display()
        ))),
    }
}

/// The pid file of a pod's container under the process kubelet.
pub fn pod_pid_file(env: &TestEnv, namespace: &str, pod: &str, container: &str) -> PathBuf {
    env.state_dir
        .join("pods")
        .join(format!("{namespace}_{pod}"))
        .join(format!("{container}.pid"))
}

/// Sends `sig` to a pod container's process group (SIGKILL: a crash the kubelet restarts;
/// SIGSTOP/SIGCONT: a node that stops answering without closing its sockets).
pub fn signal_pod(
    env: &TestEnv,
    namespace: &str,
    pod: &str,
    container: &str,
    sig: Signal,
) -> Result<u32, SupportError> {
    let pid = live_pid(&pod_pid_file(env, namespace, pod, container))?;
    signal_group(pid, sig)
        .map_err(|e| SupportError::Other(format!("{sig} to pod {namespace}/{pod}: {e}")))?;
    Ok(pid)
}

/// Stops kube-apiserver (SIGKILL: no graceful drain, watches break), keeps it down for `down`,
/// then starts it again with `e2e/cluster/up` (idempotent: it only starts what is missing) and
/// waits until it answers.
pub async fn restart_apiserver(env: &TestEnv, down: Duration) -> Result<(), SupportError> {
    let pid = live_pid(&env.state_dir.join("pids/kube-apiserver.pid"))?;
    signal_group(pid, Signal::SIGKILL)
        .map_err(|e| SupportError::Other(format!("killing kube-apiserver: {e}")))?;
    wait_until("kube-apiserver exits", Duration::from_secs(20), || async {
        if proc_start(pid).is_some() {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    })
    .await?;
    tokio::time::sleep(down).await;
    let up = repo_root().join("e2e/cluster/up");
    let out = tokio::process::Command::new(&up)
        .env("RINGSHIFT_STATE", &env.state_dir)
        .env("RINGSHIFT_SKIP_BUILD", "1")
        .output()
        .await
        .map_err(|e| SupportError::Other(format!("running {}: {e}", up.display())))?;
    if !out.status.success() {
        return Err(SupportError::Other(format!(
            "{} failed: {}",
            up.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// The ConfigMap whose entries the process kubelet adds to a container's environment when it
/// starts (key = container name, value = `NAME=value` lines; see the kubelet's `launch.rs`). A
/// harness-only hook: a real kubelet has no such thing.
pub const ENV_CONFIGMAP: &str = "ringshift-e2e-env";

/// Harness only: every container named `container` that starts in `namespace` from now on gets
/// `vars` in its environment (a container already running keeps what it had). Create it before
/// the ShardCluster so that the node pods start with it, e.g. node failpoints:
/// `set_container_env(&ns.client, &ns.name, "node", &[("RINGSHIFT_NODE_FAILPOINTS", "slow-drop-chunk=2s")])`.
/// Applied server-side, so entries for other containers stay.
pub async fn set_container_env(
    client: &kube::Client,
    namespace: &str,
    container: &str,
    vars: &[(&str, &str)],
) -> Result<(), SupportError> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let lines: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ENV_CONFIGMAP},
        "data": {container: lines},
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            ENV_CONFIGMAP,
            &PatchParams::apply(&format!("e2e-env-{container}")).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map(|_| ())
        .map_err(|source| SupportError::Api {
            what: format!("applying ConfigMap {namespace}/{ENV_CONFIGMAP}"),
            source,
        })
}

/// How often each pod of `namespace` logged a hit of the node failpoint `failpoint` (the node
/// logs `failpoint hit failpoint="<name>"`), by pod, from the kubelet's log files (kept across
/// restarts and after a pod is gone).
pub fn failpoint_hits(
    env: &TestEnv,
    namespace: &str,
    container: &str,
    failpoint: &str,
) -> std::collections::BTreeMap<String, usize> {
    let needle = format!("failpoint=\"{failpoint}\"");
    let prefix = format!("{namespace}_");
    let mut out = std::collections::BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(env.state_dir.join("pods")) else {
        return out;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some(pod) = name.strip_prefix(&prefix) else {
            continue;
        };
        let text = std::fs::read_to_string(dir.path().join(format!("{container}.log")))
            .unwrap_or_default();
        let hits = text
            .lines()
            .filter(|l| l.contains("failpoint hit") && l.contains(&needle))
            .count();
        if hits > 0 {
            out.insert(pod.to_string(), hits);
        }
    }
    out
}

/// Waits until `pod` logged at least one hit of the node failpoint `failpoint` (its log is
/// polled); returns its hit count.
pub async fn wait_failpoint_hit(
    env: &TestEnv,
    namespace: &str,
    pod: &str,
    container: &str,
    failpoint: &str,
    timeout: Duration,
) -> Result<usize, SupportError> {
    let n = wait_until(
        &format!("{namespace}/{pod} hits failpoint {failpoint}"),
        timeout,
        || async {
            match failpoint_hits(env, namespace, container, failpoint).get(pod) {
                Some(&n) => Ok(n),
                None => Err("no hit logged yet".to_string()),
            }
        },
    )
    .await?;
    Ok(n)
}

/// The time of the first line of a pod container's log that contains `needle` (the node logs
/// start each line with an RFC 3339 time), e.g. when a node finished a drop.
pub fn logged_at(
    env: &TestEnv,
    namespace: &str,
    pod: &str,
    container: &str,
    needle: &str,
) -> Option<k8s_openapi::jiff::Timestamp> {
    let text = std::fs::read_to_string(pod_log_file(env, namespace, pod, container)).ok()?;
    text.lines()
        .filter(|l| l.contains(needle))
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
}

fn pod_log_file(env: &TestEnv, namespace: &str, pod: &str, container: &str) -> PathBuf {
    env.state_dir
        .join("pods")
        .join(format!("{namespace}_{pod}"))
        .join(format!("{container}.log"))
}
