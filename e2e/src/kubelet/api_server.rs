//! The kubelet API (`kubectl logs`, `exec`, `attach`, `port-forward`): served over HTTPS by
//! `ringshift-kubelet-api` (the Go program in e2e/kubelet-api, built on the upstream streaming
//! library), which this kubelet starts, restarts when it dies, and stops by exiting.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How the API server is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServerConfig {
    pub bin: PathBuf,
    /// Port on 127.0.0.1; the Node's status announces it (daemonEndpoints.kubeletEndpoint).
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA of the apiserver's client certificate (`--kubelet-client-certificate`).
    pub client_ca: PathBuf,
}

/// The command line of the API server.
pub fn args(cfg: &ApiServerConfig, state_dir: &Path) -> Vec<OsString> {
    vec![
        "--listen".into(),
        format!("127.0.0.1:{}", cfg.port).into(),
        "--state-dir".into(),
        state_dir.into(),
        "--cert".into(),
        cfg.cert.clone().into(),
        "--key".into(),
        cfg.key.clone().into(),
        "--client-ca".into(),
        cfg.client_ca.clone().into(),
    ]
}

/// Restart delay after the n-th consecutive quick exit: 1 s doubling to 30 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

/// A run at least this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);

/// Runs the API server for as long as the kubelet runs (the child is killed when this task is
/// dropped), output appended to `$STATE/logs/kubelet-api.log`.
pub async fn supervise(cfg: ApiServerConfig, state_dir: PathBuf) {
    let log = state_dir.join("logs").join("kubelet-api.log");
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        match spawn(&cfg, &state_dir, &log) {
            Ok(mut child) => {
                tracing::info!(port = cfg.port, log = %log.display(), "kubelet API server started");
                let status = child.wait().await;
                tracing::warn!(?status, log = %log.display(), "kubelet API server exited; restarting");
            }
            Err(e) => {
                tracing::error!(bin = %cfg.bin.display(), error = %e, "starting the kubelet API server failed")
            }
        }
        failures = if started.elapsed() >= STABLE {
            0
        } else {
            failures + 1
        };
        tokio::time::sleep(backoff(failures)).await;
    }
}

fn spawn(
    cfg: &ApiServerConfig,
    state_dir: &Path,
    log: &Path,
) -> std::io::Result<tokio::process::Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    Command::new(&cfg.bin)
        .args(args(cfg, state_dir))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_loopback_and_reads_this_state_dir() {
        let cfg = ApiServerConfig {
            bin: "/x/ringshift-kubelet-api".into(),
            port: 10242,
            cert: "/s/pki/kubelet.crt".into(),
            key: "/s/pki/kubelet.key".into(),
            client_ca: "/s/pki/kubelet-ca.crt".into(),
        };
        let a: Vec<String> = args(&cfg, Path::new("/s"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            [
                "--listen",
                "127.0.0.1:10242",
                "--state-dir",
                "/s",
                "--cert",
                "/s/pki/kubelet.crt",
                "--key",
                "/s/pki/kubelet.key",
                "--client-ca",
                "/s/pki/kubelet-ca.crt"
            ]
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(16));
        assert_eq!(backoff(5), Duration::from_secs(30));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
