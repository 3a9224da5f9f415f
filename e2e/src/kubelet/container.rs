//! One container of a pod: its kubelet-side record, restart policy and backoff.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ContainerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::probe::ProbeState;
use super::process::Proc;
use super::shim::LaunchPlan;
use super::status::{ContainerView, Exit, RunState};

/// First restart delay after a crash; doubles per crash up to `BACKOFF_MAX`. Shorter than the
/// real kubelet's 10s..5min so that tests of crash handling are quick.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Image pulls that fail are retried after this, doubling up to `BACKOFF_MAX`.
pub const IMAGE_PULL_BACKOFF_BASE: Duration = Duration::from_secs(5);
/// A container that ran this long before exiting starts over at `BACKOFF_BASE`.
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Ctr {
    pub spec: Container,
    pub init: bool,
    pub view: ContainerView,
    pub proc: Option<Proc>,
    pub plan: Option<LaunchPlan>,
    pub started_at: Option<Instant>,
    pub next_start: Instant,
    pub backoff: Duration,
    /// Delay before the next pull after a failed one.
    pub pull_backoff: Duration,
    /// Has run in this pod before (so the next start is a restart).
    pub ever_started: bool,
    pub readiness: ProbeState,
    pub liveness: ProbeState,
    pub startup: ProbeState,
    /// SIGKILL the container if it still runs at this time (liveness failure, deletion).
    pub kill_deadline: Option<Instant>,
}

impl Ctr {
    pub fn new(
        spec: Container,
        init: bool,
        previous: Option<&ContainerStatus>,
        now: Instant,
    ) -> Self {
        let restart_count = previous.map(|s| s.restart_count).unwrap_or(0);
        let ever_started = previous
            .and_then(|s| s.state.as_ref())
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
            || restart_count > 0;
        Self {
            view: ContainerView {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: None,
                state: RunState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                },
                last_exit: None,
                restart_count,
                ready: false,
                started: false,
                will_restart: false,
            },
            spec,
            init,
            proc: None,
            plan: None,
            started_at: None,
            next_start: now,
            backoff: BACKOFF_BASE,
            pull_backoff: IMAGE_PULL_BACKOFF_BASE,
            ever_started,
            readiness: ProbeState::default(),
            liveness: ProbeState::default(),
            startup: ProbeState::default(),
            kill_deadline: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(&self.view.state, RunState::Terminated(e) if e.exit_code == 0)
    }

    pub fn running(&self) -> bool {
        self.proc.is_some()
    }

    /// Waiting for a (re)start that is due.
    pub fn start_due(&self, now: Instant) -> bool {
        self.proc.is_none()
            && matches!(self.view.state, RunState::Waiting { .. })
            && now >= self.next_start
    }

    /// Records that the process started; `image_id` is what status reports as imageID.
    pub fn on_started(&mut self, pid: u32, image_id: &str, now: Instant) {
        if self.ever_started {
            self.view.restart_count += 1;
        }
        self.ever_started = true;
        self.started_at = Some(now);
        self.kill_deadline = None;
        self.readiness = ProbeState::default();
        self.liveness = ProbeState::default();
        self.startup = ProbeState::default();
        self.view.state = RunState::Running {
            started_at: Time(k8s_openapi::jiff::Timestamp::now()),
        };
        self.view.container_id = Some(format!("ringshift-process://{pid}"));
        self.view.image_id = image_id.to_string();
        self.pull_backoff = IMAGE_PULL_BACKOFF_BASE;
        self.view.ready = false;
        self.view.started = self.spec.startup_probe.is_none();
        self.view.will_restart = false;
    }

    /// Records an exit and decides, by restart policy, whether and when it starts again.
    pub fn on_exit(
        &mut self,
        exit_code: i32,
        signal: Option<i32>,
        policy: &str,
        deleting: bool,
        now: Instant,
    ) {
        let started_at = match &self.view.state {
            RunState::Running { started_at } => Some(started_at.clone()),
            _ => None,
        };
        let exit = Exit {
            exit_code,
            signal,
            reason: if exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            started_at,
            finished_at: Time(k8s_openapi::jiff::Timestamp::now()),
        };
        self.proc = None;
        self.view.ready = false;
        self.view.started = false;
        self.kill_deadline = None;
        let restart = !deleting && restarts(self.init, policy, exit_code);
        let ran = self
            .started_at
            .map(|t| now.duration_since(t))
            .unwrap_or_default();
        if ran >= BACKOFF_RESET {
            self.backoff = BACKOFF_BASE;
        }
        if restart {
            self.next_start = now.checked_add(self.backoff).unwrap_or(now);
            self.view.state = RunState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container={}",
                    self.backoff.as_secs(),
                    self.spec.name
                )),
            };
            self.view.last_exit = Some(exit);
            self.view.will_restart = true;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        } else {
            self.view.state = RunState::Terminated(exit);
            self.view.will_restart = false;
        }
    }

    /// Could not start: wait and retry. A pull that fails again is reported as the real
    /// kubelet does once it backs off: `ImagePullBackOff`, "Back-off pulling image ...", with the
    /// delay doubling.
    pub fn on_start_failed(
        &mut self,
        reason: &str,
        message: String,
        retry: Duration,
        now: Instant,
    ) {
        let pulling_again = reason == "ErrImagePull"
            && matches!(&self.view.state, RunState::Waiting { reason: r, .. }
                if r == "ErrImagePull" || r == "ImagePullBackOff");
        let (reason, message, retry) = if pulling_again {
            let delay = self.pull_backoff;
            self.pull_backoff = (self.pull_backoff * 2).min(BACKOFF_MAX);
            (
                "ImagePullBackOff",
                format!("Back-off pulling image {:?}: {message}", self.view.image),
                delay,
            )
        } else {
            (reason, message, retry)
        };
        self.view.state = RunState::Waiting {
            reason: reason.into(),
            message: Some(message),
        };
        self.next_start = now.checked_add(retry).unwrap_or(now);
    }
}

/// Whether a container that exited with `exit_code` is started again.
pub fn restarts(init: bool, policy: &str, exit_code: i32) -> bool {
    match (init, policy) {
        (_, "Never") => false,
        (true, _) => exit_code != 0,
        (false, "OnFailure") => exit_code != 0,
        (false, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr() -> Ctr {
        let spec: Container =
            serde_json::from_value(serde_json::json!({"name": "c", "image": "x"})).unwrap();
        Ctr::new(spec, false, None, Instant::now())
    }

    #[test]
    fn policies() {
        assert!(restarts(false, "Always", 0));
        assert!(restarts(false, "Always", 1));
        assert!(!restarts(false, "OnFailure", 0));
        assert!(restarts(false, "OnFailure", 2));
        assert!(!restarts(false, "Never", 2));
        assert!(!restarts(true, "Always", 0));
        assert!(restarts(true, "Always", 1));
        assert!(!restarts(true, "Never", 1));
    }

    #[test]
    fn crash_loop_backs_off_and_counts_restarts() {
        let mut c = ctr();
        let t0 = Instant::now();
        c.on_started(10, "p", t0);
        assert_eq!(c.view.restart_count, 0);
        c.on_exit(3, None, "Always", false, t0);
        assert!(
            matches!(&c.view.state, RunState::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
        assert_eq!(c.view.last_exit.as_ref().unwrap().exit_code, 3);
        assert_eq!(c.next_start, t0 + BACKOFF_BASE);
        c.on_started(11, "p", t0);
        assert_eq!(c.view.restart_count, 1);
        c.on_exit(3, None, "Always", false, t0);
        assert_eq!(c.next_start, t0 + BACKOFF_BASE * 2);
        for _ in 0..10 {
            c.on_started(12, "p", t0);
            c.on_exit(3, None, "Always", false, t0);
        }
        assert!(c.next_start <= t0 + BACKOFF_MAX);
    }

    #[test]
    fn a_failed_pull_is_err_image_pull_then_backs_off() {
        let mut c = ctr();
        let t0 = Instant::now();
        c.on_start_failed(
            "ErrImagePull",
            "not found".into(),
            Duration::from_secs(5),
            t0,
        );
        assert!(
            matches!(&c.view.state, RunState::Waiting { reason, .. } if reason == "ErrImagePull")
        );
        c.on_start_failed(
            "ErrImagePull",
            "not found".into(),
            Duration::from_secs(5),
            t0,
        );
        let RunState::Waiting { reason, message } = &c.view.state else {
            panic!("waiting")
        };
        assert_eq!(reason, "ImagePullBackOff");
        assert!(
            message
                .as_deref()
                .unwrap()
                .contains("Back-off pulling image \"x\": not found")
        );
        assert_eq!(c.next_start, t0 + IMAGE_PULL_BACKOFF_BASE);
        c.on_start_failed(
            "ErrImagePull",
            "not found".into(),
            Duration::from_secs(5),
            t0,
        );
        assert_eq!(c.next_start, t0 + IMAGE_PULL_BACKOFF_BASE * 2);
        // Another failure is not a pull back-off.
        c.on_start_failed(
            "CreateContainerConfigError",
            "no secret".into(),
            Duration::from_secs(2),
            t0,
        );
        assert!(
            matches!(&c.view.state, RunState::Waiting { reason, .. } if reason == "CreateContainerConfigError")
        );
    }

    #[test]
    fn long_run_resets_backoff_and_deletion_stops_restarts() {
        let mut c = ctr();
        let t0 = Instant::now();
        c.backoff = BACKOFF_MAX;
        c.on_started(10, "p", t0);
        c.on_exit(1, None, "Always", false, t0 + BACKOFF_RESET);
        assert_eq!(c.next_start, t0 + BACKOFF_RESET + BACKOFF_BASE);
        c.on_started(10, "p", t0);
        c.on_exit(0, Some(15), "Always", true, t0);
        assert!(matches!(c.view.state, RunState::Terminated(_)));
    }
}
