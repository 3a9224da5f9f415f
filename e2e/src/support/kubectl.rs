//! kubectl against the cluster under test, for steps a user would do with kubectl (apply a
//! directory of manifests, scale, wait) and for the repo's files (crds/, deploy/).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::images::redis_cli_image;
use super::{
    SupportError, kubeconfig_path, restricted_container_security_context,
    restricted_pod_security_context,
};

/// The workspace root (the parent of the e2e crate).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Runs `kubectl ARGS` with the tests' kubeconfig in the repo root; returns stdout, or an error
/// with stderr when it fails.
pub async fn kubectl(args: &[&str]) -> Result<String, SupportError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", kubeconfig_path())
            .current_dir(repo_root())
            .output()
    })
    .await
    .map_err(|e| SupportError::Other(format!("kubectl {shown}: {e}")))?
    .map_err(|e| SupportError::Other(format!("kubectl {shown}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SupportError::Other(format!(
            "kubectl {shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `kubectl ARGS` with `stdin` as its input and returns its whole output and exit status,
/// for tests that check what kubectl prints and exits with (`kubectl exec`, `kubectl run -i`).
pub async fn kubectl_output(args: &[&str], stdin: &[u8]) -> Result<Output, SupportError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let shown = args.join(" ");
    let input = stdin.to_vec();
    tokio::task::spawn_blocking(move || -> std::io::Result<Output> {
        let mut child = Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", kubeconfig_path())
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut sink) = child.stdin.take() {
            sink.write_all(&input)?;
        }
        child.wait_with_output()
    })
    .await
    .map_err(|e| SupportError::Other(format!("kubectl {shown}: {e}")))?
    .map_err(|e| SupportError::Other(format!("kubectl {shown}: {e}")))
}

/// A running `kubectl port-forward`; stopped when dropped.
pub struct PortForward {
    _child: tokio::process::Child,
    pub local_port: u16,
}

/// Starts `kubectl port-forward -n NS TARGET LOCAL:REMOTE` and waits until it listens.
pub async fn port_forward(
    namespace: &str,
    target: &str,
    local_port: u16,
    remote_port: u16,
) -> Result<PortForward, SupportError> {
    let ports = format!("{local_port}:{remote_port}");
    let mut child = tokio::process::Command::new("kubectl")
        .args(["port-forward", "-n", namespace, target, &ports])
        .env("KUBECONFIG", kubeconfig_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SupportError::Other(format!("kubectl port-forward: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SupportError::Other("kubectl port-forward: no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("Forwarding from 127.0.0.1:") {
                return true;
            }
        }
        false
    })
    .await;
    if listening != Ok(true) {
        let _ = child.start_kill();
        let out = child.wait_with_output().await;
        let err = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        return Err(SupportError::Other(format!(
            "kubectl port-forward {target} {ports} did not start listening: {}",
            err.trim()
        )));
    }
    // Keep draining its output ("Handling connection for ...") so it never blocks on a pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(PortForward {
        _child: child,
        local_port,
    })
}

/// The first port of `range` free on 127.0.0.1 (for a port-forward's local end).
pub fn free_local_port(range: std::ops::Range<u16>) -> Option<u16> {
    range
        .into_iter()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// `kubectl wait -n NS --for=condition=CONDITION OBJECT --timeout=TIMEOUT`, as the README
/// writes it (`timeout` in kubectl's form, e.g. `5m`).
pub async fn kubectl_wait(
    namespace: &str,
    object: &str,
    condition: &str,
    timeout: &str,
) -> Result<String, SupportError> {
    let condition = format!("--for=condition={condition}");
    let timeout = format!("--timeout={timeout}");
    kubectl(&["wait", "-n", namespace, &condition, object, &timeout]).await
}

/// `kubectl exec -n NS POD -- COMMAND...`: its whole output and exit status.
pub async fn kubectl_exec(
    namespace: &str,
    pod: &str,
    command: &[&str],
) -> Result<Output, SupportError> {
    let mut args = vec!["exec", "-n", namespace, pod, "--"];
    args.extend_from_slice(command);
    kubectl_output(&args, b"").await
}

/// The `--overrides` a `restricted` namespace asks of `kubectl run`'s container `container`.
pub fn restricted_run_overrides(container: &str) -> String {
    serde_json::json!({"spec": {
        "securityContext": restricted_pod_security_context(),
        "containers": [{"name": container, "securityContext": restricted_container_security_context()}]
    }})
    .to_string()
}

/// `kubectl run -n NS -i --rm cli --image=<redis:7 stand-in> --restart=Never -- redis-cli -h
/// HOST` with `input` on redis-cli's stdin: kubectl's whole output and exit status.
pub async fn kubectl_run_redis_cli(
    namespace: &str,
    host: &str,
    input: &str,
) -> Result<Output, SupportError> {
    let image = format!("--image={}", redis_cli_image());
    let overrides = restricted_run_overrides("cli");
    kubectl_output(
        &[
            "run",
            "-n",
            namespace,
            "-i",
            "--rm",
            "cli",
            &image,
            "--restart=Never",
            "--override-type=strategic",
            "--overrides",
            &overrides,
            "--",
            "redis-cli",
            "-h",
            host,
        ],
        input.as_bytes(),
    )
    .await
}

/// A free local port in `base + 100 * $RINGSHIFT_CLUSTER ..` (`span` ports), so that the
/// port-forwards of tests against different clusters on one machine never collide.
pub fn cluster_local_port(base: u16, span: u16) -> Option<u16> {
    let cluster: u16 = std::env::var("RINGSHIFT_CLUSTER")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let start = base + 100 * cluster;
    free_local_port(start..start + span)
}

/// redis-cli on this machine against 127.0.0.1:`port` (a port-forward's local end): its
/// trimmed stdout.
pub async fn local_redis_cli(port: u16, args: &[&str]) -> Result<String, SupportError> {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .await
        .map_err(|e| SupportError::Other(format!("redis-cli: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
