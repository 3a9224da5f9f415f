//! Images for the tests, as a user has them: built by `e2e/images/push.sh` from this
//! workspace's binaries, pushed to the cluster's registry (started by `e2e/cluster/up` on
//! 127.0.0.1:15000+N), and the chart installed with `image.registry` pointing at it.

use std::path::PathBuf;
use std::process::Command;

use tokio::sync::OnceCell;

use super::operator::bin_dir;
use super::{SupportError, kubeconfig_path, repo_root};

/// The tag the tests push and run.
pub const DEV_TAG: &str = "dev";

/// The registry of the cluster under test: $RINGSHIFT_REGISTRY, else 127.0.0.1:15000+N for
/// $RINGSHIFT_CLUSTER=N (as `e2e/cluster/lib.sh` chooses).
pub fn registry() -> String {
    if let Ok(r) = std::env::var("RINGSHIFT_REGISTRY") {
        return r;
    }
    let n: u16 = std::env::var("RINGSHIFT_CLUSTER")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n <= 9)
        .unwrap_or(0);
    format!("127.0.0.1:{}", 15000 + n)
}

/// `<registry>/ringshift-node:dev`: a ShardCluster's `spec.image` in tests that pull (with
/// `imagePullPolicy: Always`, as :dev moves with every build).
pub fn node_image() -> String {
    format!("{}/ringshift-node:{DEV_TAG}", registry())
}

static PUSHED: OnceCell<()> = OnceCell::const_new();

/// Builds and pushes the node and operator images from the test's binaries (stripped debug
/// builds) once per test process, so a test runs the code it was built with. Unchanged
/// binaries give the same digests, so a pod with IfNotPresent reuses its unpacked image.
pub async fn push_dev_images() -> Result<(), SupportError> {
    PUSHED
        .get_or_try_init(|| async {
            let script = repo_root().join("e2e/images/push.sh");
            let bins = image_bin_dir();
            let out = tokio::task::spawn_blocking(move || {
                Command::new(&script)
                    .args([registry().as_str(), DEV_TAG, "debug"])
                    .env("IMAGE_BIN_DIR", &bins)
                    .output()
            })
            .await
            .map_err(|e| SupportError::Other(format!("push.sh: {e}")))?
            .map_err(|e| SupportError::Other(format!("push.sh: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(SupportError::Other(format!(
                    "e2e/images/push.sh {} failed: {}{}",
                    registry(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )))
            }
        })
        .await
        .map(|_| ())
}

/// Where the node and operator binaries are: `bin_dir()` for tests (target/debug from
/// target/debug/deps), else the running program's own directory (ringshift-demo).
fn image_bin_dir() -> PathBuf {
    let own = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from));
    [Some(bin_dir()), own]
        .into_iter()
        .flatten()
        .find(|d| d.join("ringshift-node").exists())
        .unwrap_or_else(bin_dir)
}

/// The helm binary: $HELM, `helm` on PATH, else the cached one (e2e/cluster/install-helm.sh).
pub fn helm() -> PathBuf {
    if let Ok(h) = std::env::var("HELM") {
        return PathBuf::from(h);
    }
    if Command::new("helm").arg("version").output().is_ok() {
        return PathBuf::from("helm");
    }
    let cache = std::env::var("RINGSHIFT_CACHE").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ringshift"),
        PathBuf::from,
    );
    cache.join("helm/helm")
}

/// `helm upgrade --install RELEASE charts/ringshift -n NAMESPACE` with image.registry set to
/// the cluster's registry, image.tag=dev and image.pullPolicy=Always, plus `sets`
/// (`key=value`), as a user would.
pub async fn install_chart(
    release: &str,
    namespace: &str,
    sets: &[&str],
) -> Result<(), SupportError> {
    let mut args: Vec<String> = [
        "upgrade",
        "--install",
        release,
        &repo_root().join("charts/ringshift").to_string_lossy(),
        "--namespace",
        namespace,
        "--skip-crds",
        "--set",
        &format!("image.registry={}", registry()),
        "--set",
        &format!("image.tag={DEV_TAG}"),
        // :dev moves with every build; Always re-resolves it (and unpacks only a new digest).
        "--set",
        "image.pullPolicy=Always",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in sets {
        args.push("--set".into());
        args.push(s.to_string());
    }
    helm_run(args).await
}

/// `helm uninstall RELEASE -n NAMESPACE`.
pub async fn uninstall_chart(release: &str, namespace: &str) -> Result<(), SupportError> {
    helm_run(
        ["uninstall", release, "--namespace", namespace, "--wait"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await
}

async fn helm_run(args: Vec<String>) -> Result<(), SupportError> {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(helm())
            .args(&args)
            .env("KUBECONFIG", kubeconfig_path())
            .output()
    })
    .await
    .map_err(|e| SupportError::Other(format!("helm {shown}: {e}")))?
    .map_err(|e| SupportError::Other(format!("helm {shown}: {e} (e2e/cluster/install-helm.sh)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SupportError::Other(format!(
            "helm {shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `<registry>/redis:7`: redis-cli from this machine (`e2e/images/push-redis-cli.sh`), standing
/// in for Docker Hub's redis:7, which cannot be pulled here.
pub fn redis_cli_image() -> String {
    format!("{}/redis:7", registry())
}

static REDIS_CLI_PUSHED: OnceCell<()> = OnceCell::const_new();

/// Pushes `redis_cli_image()` once per test process.
pub async fn push_redis_cli_image() -> Result<(), SupportError> {
    REDIS_CLI_PUSHED
        .get_or_try_init(|| async {
            let script = repo_root().join("e2e/images/push-redis-cli.sh");
            let out =
                tokio::task::spawn_blocking(move || Command::new(&script).arg(registry()).output())
                    .await
                    .map_err(|e| SupportError::Other(format!("push-redis-cli.sh: {e}")))?
                    .map_err(|e| SupportError::Other(format!("push-redis-cli.sh: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(SupportError::Other(format!(
                    "e2e/images/push-redis-cli.sh {} failed: {}",
                    registry(),
                    String::from_utf8_lossy(&out.stderr)
                )))
            }
        })
        .await
        .map(|_| ())
}
