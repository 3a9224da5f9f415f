//! The in-namespace half of starting a container. The kubelet runs
//! `unshare --mount --propagation private ringshift-kubelet shim PLAN`; the shim then either
//!
//! - (an image pulled from a registry) mounts an overlay of the image's unpacked root filesystem
//!   with a fresh writable layer, /proc, a few /dev nodes and the pod's volumes inside it,
//!   chroots into it, drops to the container's user and groups and execs the entrypoint; or
//! - (a harness image mapped to a workspace binary) bind-mounts the pod's volumes at their mount
//!   paths on the host's tree (and the pod's resolv.conf over /etc/resolv.conf), hides the harness state dir (so a pod cannot see other pods'
//!   volumes or the admin credentials), and execs the binary.

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
    /// Run inside this root filesystem (mount targets are then inside it).
    #[serde(default)]
    pub root: Option<RootFs>,
    /// Drop to this user before exec (else the kubelet's, root).
    #[serde(default)]
    pub run_as: Option<RunAs>,
    /// The pod's resolv.conf (cluster DNS), bound read-only over /etc/resolv.conf.
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
}

/// An overlay: the image's unpacked layers (read-only, shared by every container of the image)
/// under this container's own writable layer, mounted at `merged`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// securityContext.readOnlyRootFilesystem: the overlay is remounted read-only (volumes
    /// keep their own mode).
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (fsGroup, supplementalGroups).
    pub groups: Vec<u32>,
}

/// Device nodes a container gets (bound from the host), as a runtime's default set.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Host files bound read-only into a root filesystem (/etc/resolv.conf is the pod's own).
const HOST_FILES: &[&str] = &["/etc/hosts"];
const RESOLV_CONF: &str = "/etc/resolv.conf";

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
    #[error("entering root filesystem {path}: {source}")]
    Chroot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dropping to uid {uid} gid {gid}: {source}")]
    User {
        uid: u32,
        gid: u32,
        source: nix::Error,
    },
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
    let mut mounts = plan.mounts.clone();
    if let Some(resolv) = &plan.resolv_conf {
        mounts.insert(
            0,
            BindMount {
                source: resolv.clone(),
                target: RESOLV_CONF.into(),
                read_only: true,
            },
        );
    }
    if let Some(root) = &plan.root {
        ensure_private_namespace()?;
        enter_root(root, &mounts)?;
    } else {
        if !mounts.is_empty() || !plan.hide.is_empty() {
            ensure_private_namespace()?;
        }
        bind_all(&mounts, Path::new("/"))?;
        hide(&plan.hide)?;
    }
    if let Some(who) = &plan.run_as {
        drop_privileges(who)?;
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

/// Mounts the overlay root with /proc, devices, host name files and the volumes, then chroots.
fn enter_root(root: &RootFs, mounts: &[BindMount]) -> Result<(), ShimError> {
    let m = &root.merged;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        root.lower.display(),
        root.upper.display(),
        root.work.display()
    );
    mount(&[
        "-t".as_ref(),
        "overlay".as_ref(),
        "-o".as_ref(),
        opts.as_ref(),
        "overlay".as_ref(),
        m.as_os_str(),
    ])?;
    let proc_dir = m.join("proc");
    std::fs::create_dir_all(&proc_dir).map_err(|source| ShimError::MountPoint {
        path: proc_dir.clone(),
        source,
    })?;
    mount(&[
        "-t".as_ref(),
        "proc".as_ref(),
        "proc".as_ref(),
        proc_dir.as_os_str(),
    ])?;
    let mut binds: Vec<BindMount> = DEVICES
        .iter()
        .map(|d| PathBuf::from(format!("/dev/{d}")))
        .filter(|p| p.exists())
        .map(|p| BindMount {
            source: p.clone(),
            target: p,
            read_only: false,
        })
        .collect();
    binds.extend(
        HOST_FILES
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .map(|p| BindMount {
                source: p.clone(),
                target: p,
                read_only: true,
            }),
    );
    binds.extend(mounts.iter().cloned());
    bind_all(&binds, m)?;
    if root.read_only {
        mount(&["-o".as_ref(), "remount,ro".as_ref(), m.as_os_str()])?;
    }
    std::os::unix::fs::chroot(m).map_err(|source| ShimError::Chroot {
        path: m.clone(),
        source,
    })?;
    std::env::set_current_dir("/").map_err(|source| ShimError::Chroot {
        path: m.clone(),
        source,
    })
}

/// Supplementary groups, then the group, then the user (the order that still has the right to).
fn drop_privileges(who: &RunAs) -> Result<(), ShimError> {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    let err = |source| ShimError::User {
        uid: who.uid,
        gid: who.gid,
        source,
    };
    let groups: Vec<Gid> = who.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(err)?;
    setgid(Gid::from_raw(who.gid)).map_err(err)?;
    setuid(Uid::from_raw(who.uid)).map_err(err)
}

/// Bind-mounts each mount at its target under `base` (`/` for the host's tree).
fn bind_all(mounts: &[BindMount], base: &Path) -> Result<(), ShimError> {
    for m in mounts {
        let target = base.join(m.target.strip_prefix("/").unwrap_or(&m.target));
        prepare_mount_point(&m.source, &target)?;
        mount(&["--bind".as_ref(), m.source.as_os_str(), target.as_os_str()])?;
        if m.read_only {
            mount(&[
                "-o".as_ref(),
                "remount,bind,ro".as_ref(),
                target.as_os_str(),
            ])?;
        }
    }
    Ok(())
}

/// Covers each directory with an empty tmpfs.
fn hide(dirs: &[PathBuf]) -> Result<(), ShimError> {
    for dir in dirs {
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
    Ok(())
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
            root: None,
            run_as: None,
            resolv_conf: None,
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
            root: None,
            run_as: None,
            resolv_conf: None,
        };
        let path = dir.join("plan.json");
        std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
        assert!(matches!(run(&path), Err(ShimError::SharedNamespace)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
