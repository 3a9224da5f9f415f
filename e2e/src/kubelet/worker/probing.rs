//! Running a pod's startup, liveness and readiness probes.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Probe;

use super::super::container::Ctr;
use super::super::images;
use super::super::netns;
use super::super::probe;
use super::super::shim::LaunchPlan;
use super::{WARNING, Worker, write_private};

impl Worker {
    pub(super) async fn run_probes(&mut self, now: Instant) {
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let grace = self.grace();
        for i in 0..self.main.len() {
            let (Some(started), None) = (self.main[i].started_at, self.main[i].kill_deadline)
            else {
                continue;
            };
            if !self.main[i].running() {
                continue;
            }
            let spec = self.main[i].spec.clone();
            let log = self.log_path(&spec);
            if let Some(p) = &spec.startup_probe
                && self.main[i].startup.passed != Some(true)
            {
                if self.main[i].startup.due(p, started, now) {
                    let r = self.probe(p, i, &ip).await;
                    let c = &mut self.main[i];
                    if c.startup.record(p, r.is_ok(), r.err(), now) == Some(false) {
                        let why = format!(
                            "startup probe failed: {}",
                            c.startup.last_message.clone().unwrap_or_default()
                        );
                        Self::stop(c, grace, &why, &log, now);
                        self.event(WARNING, "Unhealthy", why);
                    }
                }
                self.main[i].view.started = self.main[i].startup.passed == Some(true);
                if !self.main[i].view.started {
                    continue;
                }
            }
            if let Some(p) = &spec.liveness_probe
                && self.main[i].liveness.due(p, started, now)
            {
                let r = self.probe(p, i, &ip).await;
                let c = &mut self.main[i];
                if c.liveness.record(p, r.is_ok(), r.err(), now) == Some(false) {
                    let why = format!(
                        "liveness probe failed: {}",
                        c.liveness.last_message.clone().unwrap_or_default()
                    );
                    Self::stop(c, grace, &why, &log, now);
                    self.event(WARNING, "Unhealthy", why);
                    continue;
                }
            }
            match &spec.readiness_probe {
                Some(p) => {
                    if self.main[i].readiness.due(p, started, now) {
                        let r = self.probe(p, i, &ip).await;
                        let before = self.main[i].readiness.passed;
                        let verdict = self.main[i].readiness.record(p, r.is_ok(), r.err(), now);
                        if verdict == Some(false) && before != Some(false) {
                            let why = self.main[i]
                                .readiness
                                .last_message
                                .clone()
                                .unwrap_or_default();
                            self.event(
                                WARNING,
                                "Unhealthy",
                                format!("Readiness probe failed: {why}"),
                            );
                        }
                    }
                    self.main[i].view.ready = self.main[i].readiness.passed == Some(true);
                }
                None => self.main[i].view.ready = true,
            }
        }
    }

    async fn probe(&self, p: &Probe, i: usize, ip: &str) -> Result<(), String> {
        let c = &self.main[i];
        let timeout = probe::timeout(p);
        if let Some(h) = &p.http_get {
            probe::http_get(&self.ctx.http, h, ip, &c.spec, timeout).await
        } else if let Some(t) = &p.tcp_socket {
            let port = probe::port(&t.port, &c.spec)?;
            probe::tcp(
                t.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(ip),
                port,
                timeout,
            )
            .await
        } else if let Some(e) = &p.exec {
            self.exec_probe(c, e.command.as_deref().unwrap_or_default(), timeout)
                .await
        } else {
            Err("probe has no httpGet, tcpSocket or exec handler".into())
        }
    }

    /// Runs an exec probe's command with the container's environment, network and mounts.
    async fn exec_probe(
        &self,
        c: &Ctr,
        command: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
        let base = c.plan.clone().ok_or("container has no launch plan")?;
        if let (Some(_), Some(who)) = (&base.root, &base.run_as) {
            // A container run from an image: the command runs inside its mount namespace and
            // root, as its user, like `kubectl exec`. nsenter drops supplementary groups.
            let pid = c
                .proc
                .as_ref()
                .map(|p| p.pid)
                .ok_or("container is not running")?;
            let (program, args) = command.split_first().ok_or("exec probe without command")?;
            let mut child = tokio::process::Command::new("nsenter")
                .arg(format!("--target={pid}"))
                .args(["--net", "--mount", "--root", "--wd"])
                .arg(format!("--setuid={}", who.uid))
                .arg(format!("--setgid={}", who.gid))
                .arg("--")
                .arg(program)
                .args(args)
                .env_clear()
                .envs(base.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("exec probe: {e}"))?;
            return match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(st)) if st.success() => Ok(()),
                Ok(Ok(st)) => Err(format!("exec probe exited with {st}")),
                Ok(Err(e)) => Err(format!("exec probe: {e}")),
                Err(_) => Err("exec probe timed out".into()),
            };
        }
        let image = c.spec.image.clone().unwrap_or_default();
        let (program, args) = images::resolve(&image, command, &[], &self.ctx.bin_dir)?;
        let plan = LaunchPlan {
            program,
            args,
            ..base
        };
        let path = self.dir.join(format!("{}.probe.json", c.spec.name));
        let text = serde_json::to_vec(&plan).map_err(|e| e.to_string())?;
        write_private(&path, &text).map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new("nsenter")
            .arg(format!("--net={}", netns::path(&self.ctx.net, &self.uid)))
            .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
            .arg(&self.ctx.self_exe)
            .arg("shim")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("exec probe: {e}"))?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(st)) if st.success() => Ok(()),
            Ok(Ok(st)) => Err(format!("exec probe exited with {st}")),
            Ok(Err(e)) => Err(format!("exec probe: {e}")),
            Err(_) => Err("exec probe timed out".into()),
        }
    }
}
