//! The in-namespace half of starting a container. The kubelet runs
//! `unshare --mount --propagation private ringshift-kubelet shim PLAN`; the shim bind-mounts the
//! pod's volumes at their mount paths, hides the harness state dir (so a pod cannot see other
//! pods' volumes or the admin credentials), and then execs the container's program.

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Everything the shim needs, written by the kubelet as JSON next to the pod's logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaunchPlan {
    pub mounts: Vec<BindMount>,
    /// Directories covered with an empty tmpfs after the binds are in place.
    pub hide: Vec<PathBuf>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("reading launch plan {path}: {source}")]
    ReadPlan {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing launch plan {path}: {source}")]
    ParsePlan {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("refusing to mount: not in a private mount namespace (run through `unshare -m`)")]
    SharedNamespace,
    #[error("preparing mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount {args:?} failed: {detail}")]
    Mount { args: Vec<String>, detail: String },
    #[error("exec {program}: {source}")]
    Exec {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// Sets up the mounts and execs the program; returns only on failure.
pub fn run(plan_path: &Path) -> Result<Infallible, ShimError> {
    let text = std::fs::read(plan_path).map_err(|source| ShimError::ReadPlan {
        path: plan_path.to_path_buf(),
        source,
    })?;
    let plan: LaunchPlan =
        serde_json::from_slice(&text).map_err(|source| ShimError::ParsePlan {
            path: plan_path.to_path_buf(),
            source,
        })?;
    if !plan.mounts.is_empty() || !plan.hide.is_empty() {
        ensure_private_namespace()?;
    }
    for m in &plan.mounts {
        prepare_mount_point(&m.source, &m.target)?;
        mount(&[
            "--bind".as_ref(),
            m.source.as_os_str(),
            m.target.as_os_str(),
        ])?;
        if m.read_only {
            mount(&[
                "-o".as_ref(),
                "remount,bind,ro".as_ref(),
                m.target.as_os_str(),
            ])?;
        }
    }
    for dir in &plan.hide {
        if dir.is_dir() {
            mount(&[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                "size=64k,mode=0755".as_ref(),
                "tmpfs".as_ref(),
                dir.as_os_str(),
            ])?;
        }
    }
    let err = Command::new(&plan.program)
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.working_dir)
        .exec();
    Err(ShimError::Exec {
        program: plan.program,
        source: err,
    })
}

/// Bind mounts in the host's namespace would leak into every process; refuse unless this
/// process's mount namespace differs from its parent's (the kubelet's).
fn ensure_private_namespace() -> Result<(), ShimError> {
    let own = std::fs::read_link("/proc/self/ns/mnt").ok();
    let parent = std::fs::read_link(format!(
        "/proc/{}/ns/mnt",
        std::os::unix::process::parent_id()
    ))
    .ok();
    match (own, parent) {
        (Some(a), Some(b)) if a != b => Ok(()),
        _ => Err(ShimError::SharedNamespace),
    }
}

fn prepare_mount_point(source: &Path, target: &Path) -> Result<(), ShimError> {
    let err = |source| ShimError::MountPoint {
        path: target.to_path_buf(),
        source,
    };
    if source.is_dir() {
        std::fs::create_dir_all(target).map_err(err)?;
    } else if !target.exists() {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::File::create(target).map_err(err)?;
    }
    Ok(())
}

fn mount(args: &[&std::ffi::OsStr]) -> Result<(), ShimError> {
    let shown = || {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| ShimError::Mount {
            args: shown(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ShimError::Mount {
            args: shown(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_as_json() {
        let plan = LaunchPlan {
            mounts: vec![BindMount {
                source: "/s/a".into(),
                target: "/data".into(),
                read_only: true,
            }],
            hide: vec!["/tmp/state".into()],
            program: "/bin/echo".into(),
            args: vec!["hi".into()],
            env: vec![("A".into(), "b".into())],
            working_dir: "/".into(),
        };
        let text = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<LaunchPlan>(&text).unwrap(), plan);
    }

    #[test]
    fn refuses_to_mount_in_the_parents_namespace() {
        let dir = std::env::temp_dir().join(format!("shim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = LaunchPlan {
            mounts: vec![BindMount {
                source: dir.clone(),
                target: dir.join("t"),
                read_only: false,
            }],
            hide: vec![],
            program: "/bin/true".into(),
            args: vec![],
            env: vec![],
            working_dir: "/".into(),
        };
        let path = dir.join("plan.json");
        std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
        assert!(matches!(run(&path), Err(ShimError::SharedNamespace)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
