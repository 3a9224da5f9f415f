//! Pods: readiness, addresses, logs written by the process kubelet, and plain HTTP to pod IPs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{SupportError, TestEnv, wait_until};

pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ip(p: &Pod) -> Option<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
}

fn describe(p: &Pod) -> String {
    let s = p.status.clone().unwrap_or_default();
    let states: Vec<String> = s
        .container_statuses
        .iter()
        .flatten()
        .map(|c| {
            let st = c.state.clone().unwrap_or_default();
            let what = if let Some(w) = st.waiting {
                format!(
                    "waiting {} {}",
                    w.reason.unwrap_or_default(),
                    w.message.unwrap_or_default()
                )
            } else if let Some(t) = st.terminated {
                format!("terminated {}", t.exit_code)
            } else {
                "running".into()
            };
            format!("{}: {what} (restarts {})", c.name, c.restart_count)
        })
        .collect();
    format!(
        "phase {:?}, ready {}, ip {:?}, {}",
        s.phase,
        pod_ready(p),
        s.pod_ip,
        states.join("; ")
    )
}

/// Waits until the pod is Ready; returns it.
pub async fn wait_pod_ready(
    api: &Api<Pod>,
    name: &str,
    timeout: Duration,
) -> Result<Pod, SupportError> {
    Ok(wait_until(&format!("pod {name} Ready"), timeout, || async {
        match api.get_opt(name).await {
            Ok(Some(p)) if pod_ready(&p) => Ok(p),
            Ok(Some(p)) => Err(describe(&p)),
            Ok(None) => Err("not created yet".into()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?)
}

/// Waits until `count` pods match `selector` and all are Ready; returns them sorted by name.
pub async fn wait_pods_ready(
    api: &Api<Pod>,
    selector: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Pod>, SupportError> {
    let lp = ListParams::default().labels(selector);
    Ok(wait_until(
        &format!("{count} Ready pods matching {selector}"),
        timeout,
        || async {
            let list = api.list(&lp).await.map_err(|e| e.to_string())?;
            let mut pods: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            if pods.len() == count && pods.iter().all(pod_ready) {
                Ok(pods)
            } else {
                Err(pods
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.metadata.name.clone().unwrap_or_default(),
                            describe(p)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" | "))
            }
        },
    )
    .await?)
}

/// Waits until pod `name` exists with a UID other than `old_uid` and is Ready (a recreated pod).
pub async fn wait_pod_uid_changed(
    api: &Api<Pod>,
    name: &str,
    old_uid: &str,
    timeout: Duration,
) -> Result<Pod, SupportError> {
    Ok(wait_until(
        &format!("pod {name} recreated and Ready"),
        timeout,
        || async {
            match api.get_opt(name).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() != Some(old_uid) && pod_ready(&p) => Ok(p),
                Ok(Some(p)) => Err(format!("uid {:?}: {}", p.metadata.uid, describe(&p))),
                Ok(None) => Err("not recreated yet".into()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?)
}

/// A container's output as the process kubelet recorded it (local harness only).
pub fn pod_log(env: &TestEnv, namespace: &str, pod: &str, container: &str) -> String {
    let path = env
        .state_dir
        .join("pods")
        .join(format!("{namespace}_{pod}"))
        .join(format!("{container}.log"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("<no log at {}: {e}>", path.display()))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// GET http://`ip`:`port``path`; returns (status, body).
pub async fn http_get(ip: &str, port: u16, path: &str) -> Result<(u16, String), SupportError> {
    let url = format!("http://{ip}:{port}{path}");
    let resp = http()
        .get(&url)
        .send()
        .await
        .map_err(|e| SupportError::Other(format!("GET {url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| SupportError::Other(format!("GET {url}: {e}")))?;
    Ok((status, body))
}

/// PUT a body; returns the status.
pub async fn http_put(ip: &str, port: u16, path: &str, body: &str) -> Result<u16, SupportError> {
    let url = format!("http://{ip}:{port}{path}");
    let resp = http()
        .put(&url)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| SupportError::Other(format!("PUT {url}: {e}")))?;
    Ok(resp.status().as_u16())
}
