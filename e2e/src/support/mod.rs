//! Support for end-to-end tests against a real cluster (the local control plane that
//! `e2e/cluster/up` starts, or any cluster in KUBECONFIG).
//!
//! ```ignore
//! use ringshift_e2e::support::{self, TestNamespace};
//!
//! #[tokio::test]
//! async fn my_test() {
//!     let Some(env) = support::env_or_skip("my_test").await else { return };
//!     let ns = TestNamespace::create(&env, "my-test").await.unwrap();
//!     // ... create objects with ns.api::<K>(), wait with support::wait_until / pods helpers ...
//!     ns.cleanup().await;
//! }
//! ```
//!
//! `RINGSHIFT_E2E` chooses what a test does about the cluster:
//! - `require` (set by `make test`'s smoke tier, `make e2e`, `make reliability`): a missing or
//!   broken cluster fails the test, so it can never pass silently;
//! - `off` (set by `make unit`): the test prints a SKIPPED line and returns, because the e2e
//!   tier runs separately;
//! - unset: run when a cluster answers, else print SKIPPED and return.

pub mod faults;
mod helm;
pub mod images;
mod kubectl;
mod load;
mod namespace;
mod operator;
pub mod ownership;
pub mod phases;
mod pods;
pub mod promql;
pub mod report;
mod services;
mod split_brain;
mod wait;

use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use helm::helm;
pub use kubectl::{
    PortForward, cluster_local_port, free_local_port, kubectl, kubectl_exec, kubectl_output,
    kubectl_run_redis_cli, kubectl_wait, local_redis_cli, port_forward, repo_root,
};
pub use load::{CheckedLoad, LoadShape, preload, scale, verify_preload};
pub use namespace::{
    TestNamespace, restricted_container_security_context, restricted_pod_security_context,
};
pub use operator::{
    OperatorProcess, apply_cluster, bin_dir, condition, create_cluster, follow_pods, install_crds,
    ringshift_api, wait_balanced, wait_ready,
};
pub use ownership::{OwnershipMonitor, OwnershipReport};
pub use pods::{
    http_get, http_put, pod_ip, pod_log, pod_ready, wait_pod_ready, wait_pod_uid_changed,
    wait_pods_ready,
};
pub use services::{api_server_ip, cluster_ip};
pub use split_brain::{SplitBrainWatch, admin_token};
pub use wait::{WaitError, wait_until};

/// A connection to the cluster under test.
#[derive(Clone)]
pub struct TestEnv {
    pub client: Client,
    /// The harness state dir (pod logs live under `pods/`), from RINGSHIFT_STATE.
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("KUBECONFIG {path}: {detail}")]
    Kubeconfig { path: String, detail: String },
    #[error("cluster not reachable: {0}")]
    Unreachable(String),
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error("{0}")]
    Other(String),
}

pub const DEFAULT_STATE: &str = "/tmp/ringshift-k8s";

/// The kubeconfig the tests use: $KUBECONFIG, else the local harness's.
pub fn kubeconfig_path() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| format!("{}/kubeconfig", state_dir().display()))
}

/// The harness state dir: $RINGSHIFT_STATE, else that of cluster $RINGSHIFT_CLUSTER (N > 0:
/// `/tmp/ringshift-k8s-N`, as `e2e/cluster/lib.sh` chooses), else [`DEFAULT_STATE`]. Faults and
/// log readers find pid files and pod logs there, so it must be the cluster under test.
pub fn state_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RINGSHIFT_STATE") {
        return PathBuf::from(dir);
    }
    match std::env::var("RINGSHIFT_CLUSTER").ok().as_deref() {
        Some(n) if n.len() == 1 && n != "0" && n.as_bytes()[0].is_ascii_digit() => {
            PathBuf::from(format!("{DEFAULT_STATE}-{n}"))
        }
        _ => PathBuf::from(DEFAULT_STATE),
    }
}

/// Connects to the cluster and checks that it answers.
pub async fn connect() -> Result<TestEnv, SupportError> {
    let path = kubeconfig_path();
    let kc = Kubeconfig::read_from(&path).map_err(|e| SupportError::Kubeconfig {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| SupportError::Kubeconfig {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    let client = Client::try_from(cfg).map_err(|e| SupportError::Unreachable(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(TestEnv {
            client,
            state_dir: state_dir(),
        }),
        Ok(Err(e)) => Err(SupportError::Unreachable(e.to_string())),
        Err(_) => Err(SupportError::Unreachable("no answer within 5s".into())),
    }
}

/// The value of RINGSHIFT_E2E ("require", "off" or empty).
pub fn e2e_mode() -> String {
    std::env::var("RINGSHIFT_E2E").unwrap_or_default()
}

/// The cluster, or None after printing why the test is skipped. Panics instead of skipping when
/// RINGSHIFT_E2E=require.
pub async fn env_or_skip(test: &str) -> Option<TestEnv> {
    if e2e_mode() == "off" {
        eprintln!(
            "SKIPPED {test}: RINGSHIFT_E2E=off (end-to-end tests run in `make test`'s smoke tier and `make e2e`)"
        );
        return None;
    }
    match connect().await {
        Ok(env) => Some(env),
        Err(e) if e2e_mode() == "require" => {
            panic!("{test}: RINGSHIFT_E2E=require but no cluster is usable: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: no Kubernetes cluster reachable ({e}). Start one with `e2e/cluster/up` \
                 and export KUBECONFIG={}/kubeconfig, or run `make test`.",
                state_dir().display()
            );
            None
        }
    }
}

/// Builds a typed object from JSON (tests write manifests with `serde_json::json!`).
pub fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    match serde_json::from_value(v) {
        Ok(k) => k,
        Err(e) => panic!("test manifest does not parse: {e}"),
    }
}
