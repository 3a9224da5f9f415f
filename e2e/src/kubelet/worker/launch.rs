//! Starting a container: binary, environment, mounts, launch plan, spawn.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::Api;

use super::super::env::{PodFacts, Sources, build_env, expand_args};
use super::super::images;
use super::super::process::{self, log_line};
use super::super::shim::LaunchPlan;
use super::super::volumes;
use super::{CONFIG_RETRY, IMAGE_RETRY, Worker, write_private};

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
    ) -> Result<(process::Proc, LaunchPlan), (&'static str, String, Duration)> {
        let config_err = |m: String| ("CreateContainerConfigError", m, CONFIG_RETRY);
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let sources = self.fetch_sources(c).await.map_err(config_err)?;
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: ip,
            host_ip: "127.0.0.1".into(),
            node_name: &self.ctx.node_name,
            api_port: self.ctx.api_port,
        };
        let mut env = build_env(c, &facts, &sources).map_err(|e| config_err(e.to_string()))?;
        env.extend(self.harness_env(c).await.map_err(config_err)?);
        for (k, v) in [
            ("HOSTNAME", self.name.as_str()),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("HOME", "/root"),
        ] {
            if !env.iter().any(|(n, _)| n == k) {
                env.insert(0, (k.to_string(), v.to_string()));
            }
        }
        let command = expand_args(c.command.as_deref().unwrap_or_default(), &env);
        let args = expand_args(c.args.as_deref().unwrap_or_default(), &env);
        let image = c.image.clone().unwrap_or_default();
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
        let empty = HashMap::new();
        let mounts =
            volumes::mounts_for(c, self.volumes.as_ref().unwrap_or(&empty)).map_err(config_err)?;
        let plan = LaunchPlan {
            mounts,
            hide: vec![self.ctx.state_dir.clone()],
            program,
            args,
            env,
            working_dir: c
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| "/".into()),
        };
        let plan_path = self.dir.join(format!("{}.plan.json", c.name));
        let run_err = |m: String| ("RunContainerError", m, CONFIG_RETRY);
        let text = serde_json::to_vec_pretty(&plan).map_err(|e| run_err(e.to_string()))?;
        write_private(&plan_path, &text)
            .map_err(|e| run_err(format!("writing {}: {e}", plan_path.display())))?;
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
        let proc = process::spawn(&self.ctx.self_exe, &plan_path, &log, &pid_file)
            .map_err(|e| run_err(format!("spawning {}: {e}", plan.program.display())))?;
        Ok((proc, plan))
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
