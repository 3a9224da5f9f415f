//! A checked load through a ShardCluster's Ready pods, for tests that change the cluster while
//! clients write (addresses follow the pods as they come and go).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{SupportError, TestNamespace, follow_pods, ringshift_api};
use crate::load::{Addrs, Kind, LoadConfig, Outcomes, Report, Stats, StopFlag, drive, finish};

/// A running load; [`CheckedLoad::finish`] stops it and checks every key.
pub struct CheckedLoad {
    pub cfg: LoadConfig,
    pub stats: Arc<Stats>,
    stop: StopFlag,
    addrs: PathBuf,
    task: tokio::task::JoinHandle<Outcomes>,
}

/// How hard to push: `workers` clients over `keys` keys each, `rate` operations/s in total.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub workers: usize,
    pub keys: usize,
    pub rate: u64,
}

impl CheckedLoad {
    pub async fn start(
        ns: &TestNamespace,
        cluster: &str,
        shape: LoadShape,
        prefix: &str,
    ) -> Result<Self, SupportError> {
        Self::start_mixed(ns, cluster, shape, prefix, &[Kind::String]).await
    }

    /// Like [`CheckedLoad::start`], writing the given kinds (a worker's keys dealt out
    /// round-robin over them).
    pub async fn start_mixed(
        ns: &TestNamespace,
        cluster: &str,
        shape: LoadShape,
        prefix: &str,
        kinds: &[Kind],
    ) -> Result<Self, SupportError> {
        let addrs = std::env::temp_dir().join(format!("ringshift-{}-{prefix}-addrs", ns.name));
        let stop = StopFlag::default();
        follow_pods(&ns.client, &ns.name, cluster, addrs.clone(), stop.clone()).await?;
        let password = cluster_password(&ns.client, &ns.name, cluster).await?;
        let cfg = LoadConfig {
            addrs: Addrs::File(addrs.clone()),
            password,
            workers: shape.workers,
            keys_per_worker: shape.keys,
            duration: Duration::from_secs(3600),
            rate: Some(shape.rate),
            op_timeout: Duration::from_secs(3),
            prefix: prefix.into(),
            kinds: kinds.to_vec(),
            ..LoadConfig::default()
        };
        let stats = Arc::new(Stats::default());
        let task = {
            let (cfg, stats, stop) = (cfg.clone(), stats.clone(), stop.clone());
            tokio::spawn(async move { drive(&cfg, stats, stop).await })
        };
        Ok(CheckedLoad {
            cfg,
            stats,
            stop,
            addrs,
            task,
        })
    }

    /// Stops the clients, reads every key back and reports.
    pub async fn finish(self) -> Report {
        self.stop.stop();
        let outcomes = match self.task.await {
            Ok(o) => o,
            Err(e) => panic!("load task failed: {e}"),
        };
        let report = finish(&self.cfg, &self.stats, outcomes).await;
        let _ = std::fs::remove_file(&self.addrs);
        report
    }
}

/// The data-port password of a cluster whose spec names one (`spec.auth.passwordSecretRef`).
async fn cluster_password(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Option<String>, SupportError> {
    use k8s_openapi::api::core::v1::Secret;
    let c = ringshift_api(client, namespace, "ShardCluster")
        .get(cluster)
        .await
        .map_err(|source| SupportError::Api {
            what: format!("reading ShardCluster {cluster}"),
            source,
        })?;
    let reference = &c.data["spec"]["auth"]["passwordSecretRef"];
    let Some(secret) = reference["name"].as_str() else {
        return Ok(None);
    };
    let key = reference["key"].as_str().unwrap_or("password");
    let s: Secret = kube::Api::<Secret>::namespaced(client.clone(), namespace)
        .get(secret)
        .await
        .map_err(|source| SupportError::Api {
            what: format!("reading Secret {secret}"),
            source,
        })?;
    let value = s.data.and_then(|d| {
        d.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    });
    Ok(value)
}

/// `kubectl scale`-like: sets spec.replicas.
pub async fn scale(ns: &TestNamespace, name: &str, replicas: i32) -> Result<(), SupportError> {
    ringshift_api(&ns.client, &ns.name, "ShardCluster")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(|_| ())
        .map_err(|source| SupportError::Api {
            what: format!("scaling ShardCluster {name} to {replicas}"),
            source,
        })
}

/// A redis connection through one Ready pod of `cluster` (it forwards what it does not own),
/// with a generous answer timeout; returns it with the pod's address.
async fn connect_any(
    ns: &TestNamespace,
    cluster: &str,
) -> Result<(redis::aio::MultiplexedConnection, String), SupportError> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let pods: kube::Api<Pod> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default().labels(&format!("ringshift.dev/cluster={cluster}")))
        .await
        .map_err(|source| SupportError::Api {
            what: "listing pods".into(),
            source,
        })?;
    let ip = list
        .items
        .iter()
        .filter(|p| super::pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .find_map(super::pod_ip)
        .ok_or_else(|| SupportError::Other(format!("no Ready pod of {cluster}")))?;
    let password = cluster_password(&ns.client, &ns.name, cluster).await?;
    let url = match password {
        Some(p) => format!("redis://:{p}@{ip}:6379/"),
        None => format!("redis://{ip}:6379/"),
    };
    let fail = |e: redis::RedisError| SupportError::Other(format!("connecting to {ip}: {e}"));
    let client = redis::Client::open(url).map_err(fail)?;
    // A debug build under load answers slowly; the default 500 ms is too short.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(fail)?;
    Ok((conn, ip))
}

/// Reads back the keys [`preload`] wrote (`{prefix}:0` .. `{prefix}:{keys - 1}`, each
/// `value_size` bytes of `v`) through one Ready pod; returns those missing or changed, as
/// `key: what was read`. Nothing rewrites them, so a missing one is an acknowledged write lost
/// (e.g. a drop that wiped a range a node owned again). A batch that fails is retried for up to
/// a minute (a pod may be going away); an error after that is returned.
pub async fn verify_preload(
    ns: &TestNamespace,
    cluster: &str,
    prefix: &str,
    keys: usize,
    value_size: usize,
) -> Result<Vec<String>, SupportError> {
    let expected = "v".repeat(value_size);
    let mut wrong = Vec::new();
    let (mut conn, mut ip) = connect_any(ns, cluster).await?;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        let names: Vec<String> = chunk.iter().map(|i| format!("{prefix}:{i}")).collect();
        let mut tries = 0;
        let values: Vec<Option<String>> = loop {
            match redis::cmd("MGET")
                .arg(&names)
                .query_async::<Vec<Option<String>>>(&mut conn)
                .await
            {
                Ok(v) => break v,
                Err(e) => {
                    tries += 1;
                    if tries >= 60 {
                        return Err(SupportError::Other(format!(
                            "reading preloaded keys via {ip}: {e}"
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if let Ok(c) = connect_any(ns, cluster).await {
                        (conn, ip) = c;
                    }
                }
            }
        };
        for (name, value) in names.iter().zip(values) {
            match value {
                Some(v) if v == expected => {}
                Some(v) => wrong.push(format!(
                    "{name}: {} bytes, not the preloaded value",
                    v.len()
                )),
                None => wrong.push(format!("{name}: missing")),
            }
        }
    }
    Ok(wrong)
}

/// Writes `keys` keys of `value_size` bytes through one Ready pod (it forwards what it does not
/// own), so that moves have data to copy. Keys are `{prefix}:{i}`.
pub async fn preload(
    ns: &TestNamespace,
    cluster: &str,
    prefix: &str,
    keys: usize,
    value_size: usize,
) -> Result<(), SupportError> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let pods: kube::Api<Pod> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default().labels(&format!("ringshift.dev/cluster={cluster}")))
        .await
        .map_err(|source| SupportError::Api {
            what: "listing pods".into(),
            source,
        })?;
    let ip = list
        .items
        .iter()
        .filter(|p| super::pod_ready(p))
        .find_map(super::pod_ip)
        .ok_or_else(|| SupportError::Other(format!("no Ready pod of {cluster}")))?;
    let password = cluster_password(&ns.client, &ns.name, cluster).await?;
    let url = match password {
        Some(p) => format!("redis://:{p}@{ip}:6379/"),
        None => format!("redis://{ip}:6379/"),
    };
    let fail = |e: redis::RedisError| SupportError::Other(format!("preloading via {ip}: {e}"));
    let client = redis::Client::open(url).map_err(fail)?;
    // Batches go through the coordinator to every owner; the default 500 ms answer timeout is
    // too short for a debug build under load.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(fail)?;
    let value = "v".repeat(value_size);
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("{prefix}:{i}"))
                .arg(&value)
                .ignore();
        }
        // Right after Ready a node may not know every peer's address yet (CLUSTERDOWN): retry.
        let mut tries = 0;
        while let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tries += 1;
            if tries >= 30 {
                return Err(fail(e));
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    Ok(())
}
