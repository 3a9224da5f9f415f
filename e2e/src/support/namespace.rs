//! A namespace per test, deleted afterwards (kept with RINGSHIFT_E2E_KEEP=1 for debugging).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

use super::{SupportError, TestEnv, from_json, wait_until};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    cleaned: bool,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>`, enforcing the PodSecurity `restricted` level (every
    /// pod a test, the chart or the operator creates must be admitted there, as on a hardened
    /// real cluster), and waits until its default service account exists (pods are refused
    /// until then).
    pub async fn create(env: &TestEnv, prefix: &str) -> Result<Self, SupportError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = u128::from(COUNTER.fetch_add(1, Ordering::Relaxed));
        let suffix = format!(
            "{:06x}",
            (nanos ^ (u128::from(std::process::id()) << 8) ^ (n << 16)) & 0xff_ffff
        );
        let prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let name = format!("{}-{suffix}", prefix.to_ascii_lowercase());
        let api: Api<Namespace> = Api::all(env.client.clone());
        let ns: Namespace = from_json(json!({"metadata": {"name": name, "labels": {
            "ringshift.dev/e2e": "true",
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}}));
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|source| SupportError::Api {
                what: format!("creating namespace {name}"),
                source,
            })?;
        let this = Self {
            name,
            client: env.client.clone(),
            cleaned: false,
        };
        this.wait_service_account("default").await?;
        Ok(this)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Waits until the service account exists (its tokens come from the TokenRequest API).
    pub async fn wait_service_account(&self, name: &str) -> Result<(), SupportError> {
        let api: Api<ServiceAccount> = self.api();
        wait_until(
            &format!("service account {}/{name}", self.name),
            Duration::from_secs(60),
            || async {
                match api.get_opt(name).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("not created yet".into()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await?;
        Ok(())
    }

    /// Deletes the namespace (its pods are stopped by the kubelet).
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        if keep() {
            eprintln!("keeping namespace {} (RINGSHIFT_E2E_KEEP=1)", self.name);
            return;
        }
        delete(&self.client, &self.name).await;
    }
}

fn keep() -> bool {
    std::env::var("RINGSHIFT_E2E_KEEP").is_ok_and(|v| v == "1")
}

async fn delete(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = api.delete(name, &DeleteParams::default()).await {
        eprintln!("deleting namespace {name}: {e}");
    }
}

impl Drop for TestNamespace {
    /// A test that panicked still removes its namespace (best effort, on a helper thread
    /// because Drop cannot await).
    fn drop(&mut self) {
        if self.cleaned || keep() {
            return;
        }
        // A fresh client: the test's client is driven by the test's runtime, which is blocked here.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(env) = super::connect().await {
                        delete(&env.client, &name).await;
                    }
                });
            }
        })
        .join();
    }
}

/// The pod-level securityContext the PodSecurity `restricted` level asks for (test namespaces
/// enforce it). The process kubelet runs everything as the user it runs as; the apiserver's
/// admission checks the spec.
pub fn restricted_pod_security_context() -> serde_json::Value {
    json!({"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
}

/// The container-level securityContext the PodSecurity `restricted` level asks for.
pub fn restricted_container_security_context() -> serde_json::Value {
    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
}
