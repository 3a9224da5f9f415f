//! Starting a container: binary, environment, mounts, launch plan, spawn.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::Api;

use super::super::env::{Sources, build_env, expand_args};
use super::super::events::NORMAL;
use super::super::fs_group;
use super::super::image_config::{self, ImageConfigError};
use super::super::image_ref::{self, ImageRef};
use super::super::image_store::{PullError, Pulled};
use super::super::images;
use super::super::netns;
use super::super::pod_info;
use super::super::process::{self, log_line};
use super::super::shim::{BindMount, LaunchPlan, RootFs, RunAs};
use super::super::volumes;
use super::{CONFIG_RETRY, IMAGE_RETRY, Worker, write_private};

/// Why a container did not start: waiting reason, message, retry delay.
pub type LaunchError = (&'static str, String, Duration);

/// HOSTNAME, PATH and HOME unless the container or image set them.
fn with_defaults(
    mut env: Vec<(String, String)>,
    hostname: &str,
    home: &str,
) -> Vec<(String, String)> {
    for (k, v) in [
        ("HOSTNAME", hostname),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", home),
    ] {
        if !env.iter().any(|(n, _)| n == k) {
            env.insert(0, (k.to_string(), v.to_string()));
        }
    }
    env
}

/// The container's workingDir, else the image's, else `/`.
fn working_dir(c: &Container, image: Option<&str>) -> PathBuf {
    c.working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or(image.filter(|w| !w.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| "/".into())
}

/// See [`Worker::harness_env`].
pub const HARNESS_ENV_CONFIGMAP: &str = "ringshift-e2e-env";

/// `NAME=value` lines; blank lines, `#` comments and lines without `=` are skipped.
pub fn parse_env_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

impl Worker {
    /// Resolves the binary, environment and mounts, writes the launch plan and spawns the shim.
    pub(super) async fn launch(
        &self,
        c: &Container,
    ) -> Result<(process::Proc, LaunchPlan, String), LaunchError> {
        let config_err = |m: String| ("CreateContainerConfigError", m, CONFIG_RETRY);
        let sources = self.fetch_sources(c).await.map_err(config_err)?;
        let facts = self.facts();
        let mut env = build_env(c, &facts, &sources).map_err(|e| config_err(e.to_string()))?;
        env.extend(self.harness_env(c).await.map_err(config_err)?);
        let command = expand_args(c.command.as_deref().unwrap_or_default(), &env);
        let args = expand_args(c.args.as_deref().unwrap_or_default(), &env);
        let image = c.image.clone().unwrap_or_default();
        let empty = HashMap::new();
        let mounts =
            volumes::mounts_for(c, self.volumes.as_ref().unwrap_or(&empty)).map_err(config_err)?;
        let reference = image_ref::parse(&image).map_err(|e| {
            (
                "InvalidImageName",
                format!("Failed to apply default image tag {image:?}: {e}"),
                IMAGE_RETRY,
            )
        })?;
        let (plan, image_id) = match reference {
            Some(reference) => {
                self.plan_registry_image(c, &reference, command, args, env, mounts)
                    .await?
            }
            None => {
                // A harness image (`ringshift-testpod:dev`): a workspace binary on the host.
                let env = with_defaults(env, &self.name, "/root");
                let (program, args) = images::resolve(&image, &command, &args, &self.ctx.bin_dir)
                    .map_err(|m| ("ErrImagePull", m, IMAGE_RETRY))?;
                if program.is_absolute() && !program.exists() {
                    return Err((
                        "ErrImagePull",
                        format!(
                            "image {image:?}: no binary at {} (run `make build`)",
                            program.display()
                        ),
                        IMAGE_RETRY,
                    ));
                }
                let image_id = format!("ringshift-binary://{}", program.display());
                let plan = LaunchPlan {
                    mounts,
                    hide: vec![self.ctx.state_dir.clone()],
                    program,
                    args,
                    env,
                    working_dir: working_dir(c, None),
                    root: None,
                    run_as: None,
                    resolv_conf: Some(self.resolv_conf_path()),
                };
                (plan, image_id)
            }
        };
        let plan_path = self.dir.join(format!("{}.plan.json", c.name));
        let run_err = |m: String| ("RunContainerError", m, CONFIG_RETRY);
        let text = serde_json::to_vec_pretty(&plan).map_err(|e| run_err(e.to_string()))?;
        write_private(&plan_path, &text)
            .map_err(|e| run_err(format!("writing {}: {e}", plan_path.display())))?;
        // For the kubelet API server (port-forward dials the pod), fresh at every start.
        let info = pod_info::PodInfo {
            uid: self.uid.clone(),
            ip: self.ip.map(|i| i.to_string()).unwrap_or_default(),
        };
        pod_info::write(&self.dir, &info)
            .map_err(|e| run_err(format!("writing {}: {e}", pod_info::FILE)))?;
        let log = self.log_path(c);
        log_line(
            &log,
            &format!(
                "starting container {} of pod {} (uid {}): {} {:?}",
                c.name,
                self.key(),
                self.uid,
                plan.program.display(),
                plan.args
            ),
        );
        let pid_file = self.dir.join(format!("{}.pid", c.name));
        let stdin = c.stdin.unwrap_or(false).then(|| process::StdinSpec {
            socket: self.dir.join(format!("{}.stdin.sock", c.name)),
            once: c.stdin_once.unwrap_or(false),
            tty_file: c
                .tty
                .unwrap_or(false)
                .then(|| self.dir.join(format!("{}.tty", c.name))),
        });
        let netns = netns::path(&self.ctx.net, &self.uid);
        let proc = process::spawn(
            &self.ctx.self_exe,
            &plan_path,
            &netns,
            &log,
            &pid_file,
            stdin.as_ref(),
        )
        .map_err(|e| run_err(format!("spawning {}: {e}", plan.program.display())))?;
        Ok((proc, plan, image_id))
    }

    /// A registry image: pull it (by the container's imagePullPolicy), then plan a run of its
    /// entrypoint inside an overlay of its root filesystem as the image's or the pod's user.
    async fn plan_registry_image(
        &self,
        c: &Container,
        reference: &ImageRef,
        command: Vec<String>,
        args: Vec<String>,
        container_env: Vec<(String, String)>,
        mounts: Vec<BindMount>,
    ) -> Result<(LaunchPlan, String), LaunchError> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let pulled = self
            .ctx
            .images
            .ensure(reference, policy)
            .await
            .map_err(|e| match e {
                PullError::NeverPull => (
                    "ErrImageNeverPull",
                    format!("Container image {image:?} is not present with pull policy of Never"),
                    IMAGE_RETRY,
                ),
                e => (
                    "ErrImagePull",
                    format!("Failed to pull image {image:?}: {e}"),
                    IMAGE_RETRY,
                ),
            })?;
        let create_err = |m: String| ("CreateContainerError", m, CONFIG_RETRY);
        let line = image_config::command_line(&pulled.config, &command, &args)
            .map_err(|e| create_err(e.to_string()))?;
        let Some((program, args)) = line.split_first() else {
            return Err(create_err("empty command line".into()));
        };
        // The image's environment under the container's (the container wins), as runtimes do.
        let mut env: Vec<(String, String)> = image_config::image_env(&pulled.config)
            .into_iter()
            .filter(|(k, _)| !container_env.iter().any(|(n, _)| n == k))
            .collect();
        env.extend(container_env);
        let run_as = self
            .run_as(c, &pulled)
            .map_err(|e| create_err(e.to_string()))?;
        let passwd = std::fs::read_to_string(pulled.rootfs.join("etc/passwd")).unwrap_or_default();
        let env = with_defaults(env, &self.name, &image_config::home_of(&passwd, run_as.uid));
        if let Some(gid) = self.fs_group() {
            self.apply_fs_group(gid).map_err(create_err)?;
        }
        let base = self.dir.join(format!("{}.rootfs", c.name));
        let root = RootFs {
            lower: pulled.rootfs.clone(),
            upper: base.join("upper"),
            work: base.join("work"),
            merged: base.join("merged"),
            read_only: c
                .security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
        };
        // Every start gets a fresh writable layer, as a new container would.
        let run_err = |m: String| ("RunContainerError", m, CONFIG_RETRY);
        if base.exists() {
            std::fs::remove_dir_all(&base)
                .map_err(|e| run_err(format!("removing {}: {e}", base.display())))?;
        }
        for d in [&root.upper, &root.work, &root.merged] {
            std::fs::create_dir_all(d)
                .map_err(|e| run_err(format!("creating {}: {e}", d.display())))?;
        }
        let image_id = format!(
            "{}/{}@{}",
            reference.registry, reference.repository, pulled.digest
        );
        self.event(
            NORMAL,
            "Pulled",
            format!("Container image {image:?} ready: {image_id}"),
        );
        let plan = LaunchPlan {
            mounts,
            hide: vec![],
            program: PathBuf::from(program),
            args: args.to_vec(),
            env,
            working_dir: working_dir(c, pulled.config.working_dir.as_deref()),
            root: Some(root),
            run_as: Some(run_as),
            resolv_conf: Some(self.resolv_conf_path()),
        };
        Ok((plan, image_id))
    }

    /// runAsUser / runAsGroup (container over pod), else the image's `User`; groups: fsGroup
    /// and supplementalGroups.
    fn run_as(&self, c: &Container, pulled: &Pulled) -> Result<RunAs, ImageConfigError> {
        let pod_sc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let read = |f: &str| std::fs::read_to_string(pulled.rootfs.join(f)).unwrap_or_default();
        let (image_uid, image_gid) = image_config::resolve_user(
            pulled.config.user.as_deref().unwrap_or(""),
            &read("etc/passwd"),
            &read("etc/group"),
        )?;
        let id = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
        let uid = id(sc.run_as_user)
            .or(id(pod_sc.run_as_user))
            .unwrap_or(image_uid);
        let gid = id(sc.run_as_group)
            .or(id(pod_sc.run_as_group))
            .unwrap_or(image_gid);
        let mut groups: Vec<u32> = id(pod_sc.fs_group).into_iter().collect();
        groups.extend(
            pod_sc
                .supplemental_groups
                .iter()
                .flatten()
                .filter_map(|g| id(Some(*g))),
        );
        groups.dedup();
        Ok(RunAs { uid, gid, groups })
    }

    fn fs_group(&self) -> Option<u32> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok())
    }

    /// Gives the pod's volumes (all but hostPath) to the fsGroup (see `fs_group`).
    fn apply_fs_group(&self, gid: u32) -> Result<(), String> {
        let Some(paths) = self.volumes.as_ref() else {
            return Ok(());
        };
        for v in self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            let writable = v.persistent_volume_claim.is_some() || v.empty_dir.is_some();
            let kubelet_written = v.secret.is_some()
                || v.config_map.is_some()
                || v.projected.is_some()
                || v.downward_api.is_some();
            if !(writable || kubelet_written) {
                continue;
            }
            if let Some(path) = paths.get(&v.name) {
                fs_group::apply(path, gid, !writable).map_err(|e| {
                    format!(
                        "volume {:?}: applying fsGroup {gid} to {}: {e}",
                        v.name,
                        path.display()
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Harness-only fault injection: the `ringshift-e2e-env` ConfigMap of the pod's namespace, key =
    /// container name, value = `NAME=value` lines, is added to that container's environment
    /// (e.g. node failpoints for one test's namespace). A real kubelet has no such thing; nothing
    /// but the e2e tests creates that ConfigMap.
    async fn harness_env(&self, c: &Container) -> Result<Vec<(String, String)>, String> {
        let capi: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let Some(m) = capi
            .get_opt(HARNESS_ENV_CONFIGMAP)
            .await
            .map_err(|e| format!("reading configmap {HARNESS_ENV_CONFIGMAP:?}: {e}"))?
        else {
            return Ok(vec![]);
        };
        let text = m
            .data
            .as_ref()
            .and_then(|d| d.get(&c.name))
            .cloned()
            .unwrap_or_default();
        Ok(parse_env_lines(&text))
    }

    /// The Secrets and ConfigMaps the container's env refers to.
    async fn fetch_sources(&self, c: &Container) -> Result<Sources, String> {
        let mut secrets: Vec<String> = vec![];
        let mut maps: Vec<String> = vec![];
        for from in c.env_from.iter().flatten() {
            secrets.extend(from.secret_ref.iter().map(|r| r.name.clone()));
            maps.extend(from.config_map_ref.iter().map(|r| r.name.clone()));
        }
        for var in c.env.iter().flatten() {
            if let Some(vf) = &var.value_from {
                secrets.extend(vf.secret_key_ref.iter().map(|r| r.name.clone()));
                maps.extend(vf.config_map_key_ref.iter().map(|r| r.name.clone()));
            }
        }
        let mut out = Sources::default();
        let sapi: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for name in secrets {
            if let Some(s) = sapi
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading secret {name:?}: {e}"))?
            {
                out.secrets.insert(name, volumes::secret_data(&s));
            }
        }
        let capi: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for name in maps {
            if let Some(m) = capi
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading configmap {name:?}: {e}"))?
            {
                let data: BTreeMap<String, String> = volumes::config_map_data(&m)
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                out.config_maps.insert(name, data);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_env_lines;

    #[test]
    fn env_lines_skip_comments_blanks_and_lines_without_a_name() {
        let got = parse_env_lines("# faults\nA=1\n\n =x\nnoequals\nB=c=d\n");
        assert_eq!(
            got,
            vec![("A".into(), "1".into()), ("B".into(), "c=d".into())]
        );
    }
}
