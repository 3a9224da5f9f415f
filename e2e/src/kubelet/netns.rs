//! Builds and removes the pod network that `net_plan` describes, by running `ip` and `sysctl`.

use std::net::Ipv4Addr;

use tokio::process::Command;

use super::net_plan::NetPlan;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

async fn run(program: &str, args: &[String]) -> Result<String, NetError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| NetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

async fn ip(args: &[String]) -> Result<String, NetError> {
    run("ip", args).await
}

fn strs(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Creates the bridge if missing and (re)applies its address, routes and sysctl; idempotent.
pub async fn ensure_bridge(plan: &NetPlan) -> Result<(), NetError> {
    if ip(&strs(&["link", "show", &plan.bridge])).await.is_err() {
        ip(&strs(&["link", "add", &plan.bridge, "type", "bridge"])).await?;
    }
    run("sysctl", &strs(&["-qw", &plan.bridge_sysctl()])).await?;
    for a in plan.bridge_setup() {
        ip(&a).await?;
    }
    Ok(())
}

/// Network namespaces of this cluster (left by a previous kubelet run when called at start).
pub async fn list_pod_namespaces(plan: &NetPlan) -> Result<Vec<String>, NetError> {
    let out = ip(&strs(&["netns", "list"])).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&plan.netns_prefix()))
        .map(str::to_string)
        .collect())
}

/// Deletes a namespace (its veth pair goes with it); a missing one is not an error.
pub async fn delete(name: &str) -> Result<(), NetError> {
    match ip(&strs(&["netns", "del", name])).await {
        Ok(_) => Ok(()),
        Err(NetError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes every pod namespace of this cluster (their processes were killed before).
pub async fn remove_leftovers(plan: &NetPlan) {
    match list_pod_namespaces(plan).await {
        Ok(names) => {
            for n in names {
                tracing::info!(netns = %n, "removing a pod network left by a previous kubelet");
                if let Err(e) = delete(&n).await {
                    tracing::warn!(netns = %n, error = %e, "removing a leftover pod network failed");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing network namespaces failed"),
    }
}

/// Gives the pod with `uid` its namespace at `ip`; a half-built one from an earlier attempt
/// is removed first.
pub async fn create_pod(plan: &NetPlan, uid: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    let ns = plan.netns(uid);
    delete(&ns).await?;
    ip(&strs(&["netns", "add", &ns])).await?;
    let setup = plan.pod_setup(uid, addr);
    let result = async {
        for a in &setup.links {
            ip(a).await?;
        }
        let mut sysctl = strs(&["netns", "exec", &ns, "sysctl", "-qw"]);
        sysctl.extend(setup.sysctls.iter().cloned());
        ip(&sysctl).await?;
        for a in &setup.addresses {
            ip(a).await?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = delete(&ns).await;
    }
    result
}

/// The path processes enter the pod's namespace by (`nsenter --net=PATH`).
pub fn path(plan: &NetPlan, uid: &str) -> String {
    format!("/run/netns/{}", plan.netns(uid))
}
