//! kubectl against the cluster under test, for steps a user would do with kubectl (apply a
//! directory of manifests, scale, wait) and for the repo's files (crds/, deploy/).

use std::path::PathBuf;
use std::process::Command;

use super::{SupportError, kubeconfig_path};

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
