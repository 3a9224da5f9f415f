//! The helm binary the chart tests render with.

use std::path::PathBuf;
use std::process::Command;

use super::repo_root;

/// `$HELM`, `helm` on PATH, or the cached one (`e2e/cluster/install-helm.sh` installs it on
/// first use, so the chart tests also run on a fresh machine without root).
pub fn helm() -> PathBuf {
    if let Ok(h) = std::env::var("HELM") {
        return PathBuf::from(h);
    }
    if Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return PathBuf::from("helm");
    }
    let cache = std::env::var("RINGSHIFT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ringshift")
        });
    let cached = cache.join("helm/helm");
    if !cached.exists() {
        let out = Command::new(repo_root().join("e2e/cluster/install-helm.sh"))
            .output()
            .expect("running e2e/cluster/install-helm.sh");
        assert!(
            out.status.success(),
            "installing helm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cached
}
