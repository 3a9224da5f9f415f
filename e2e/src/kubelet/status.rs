//! Pod status from the kubelet's view of its containers. Pure, so that phase and readiness rules
//! are unit-tested.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What one container is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated(Exit),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub started_at: Option<Time>,
    pub finished_at: Time,
}

/// The kubelet's record of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: RunState,
    pub last_exit: Option<Exit>,
    pub restart_count: i32,
    pub ready: bool,
    /// The startup probe passed (or there is none) and the process runs.
    pub started: bool,
    /// A terminated container that the restart policy will start again.
    pub will_restart: bool,
}

#[derive(Debug, Clone)]
pub struct PodView<'a> {
    pub init: &'a [ContainerView],
    pub main: &'a [ContainerView],
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Time>,
    pub message: Option<String>,
    pub qos_class: Option<String>,
}

fn exit_state(e: &Exit) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: None,
            exit_code: e.exit_code,
            signal: e.signal,
            reason: Some(e.reason.clone()),
            message: None,
            started_at: e.started_at.clone(),
            finished_at: Some(e.finished_at.clone()),
        }),
        ..Default::default()
    }
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    let state = match &c.state {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..Default::default()
        },
        RunState::Terminated(e) => exit_state(e),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.clone(),
        state: Some(state),
        last_state: Some(c.last_exit.as_ref().map(exit_state).unwrap_or_default()),
        restart_count: c.restart_count,
        ready: c.ready,
        started: Some(c.started),
        ..Default::default()
    }
}

fn has_run(c: &ContainerView) -> bool {
    !matches!(c.state, RunState::Waiting { .. }) || c.restart_count > 0 || c.last_exit.is_some()
}

fn succeeded(c: &ContainerView) -> bool {
    matches!(&c.state, RunState::Terminated(e) if e.exit_code == 0)
}

/// Pending, Running, Succeeded or Failed, as the kubelet decides it.
pub fn phase(init: &[ContainerView], main: &[ContainerView]) -> &'static str {
    let init_failed = init.iter().any(|c| {
        matches!(&c.state, RunState::Terminated(e) if e.exit_code != 0) && !c.will_restart
    });
    if init_failed {
        return "Failed";
    }
    if !init.iter().all(succeeded) || main.is_empty() || !main.iter().any(has_run) {
        return "Pending";
    }
    let all_done = main
        .iter()
        .all(|c| matches!(c.state, RunState::Terminated(_)) && !c.will_restart);
    if !all_done {
        return "Running";
    }
    if main.iter().all(succeeded) {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// The pod status to report; `previous` keeps condition transition times stable.
pub fn pod_status(view: &PodView<'_>, previous: Option<&PodStatus>, now: &Time) -> PodStatus {
    let phase = phase(view.init, view.main);
    let initialized = view.init.iter().all(succeeded);
    let containers_ready = phase == "Running" && view.main.iter().all(|c| c.ready);
    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let prev = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind));
        let since = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        PodCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            last_transition_time: since,
            reason: if ok { None } else { reason.map(str::to_string) },
            ..Default::default()
        }
    };
    let conditions = vec![
        condition("Initialized", initialized, Some("ContainersNotInitialized")),
        condition("Ready", containers_ready, Some("ContainersNotReady")),
        condition(
            "ContainersReady",
            containers_ready,
            Some("ContainersNotReady"),
        ),
        condition("PodScheduled", true, None),
    ];
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(view.host_ip.clone()),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: view.start_time.clone(),
        message: view.message.clone(),
        qos_class: view.qos_class.clone(),
        init_container_statuses: (!view.init.is_empty())
            .then(|| view.init.iter().map(container_status).collect()),
        container_statuses: Some(view.main.iter().map(container_status).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn view(name: &str, state: RunState) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "ringshift-testpod:dev".into(),
            image_id: String::new(),
            container_id: None,
            state,
            last_exit: None,
            restart_count: 0,
            ready: false,
            started: false,
            will_restart: false,
        }
    }

    fn waiting() -> RunState {
        RunState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        }
    }

    fn exited(code: i32) -> RunState {
        RunState::Terminated(Exit {
            exit_code: code,
            signal: None,
            reason: "Completed".into(),
            started_at: None,
            finished_at: t(5),
        })
    }

    fn running() -> RunState {
        RunState::Running { started_at: t(1) }
    }

    #[test]
    fn phases() {
        assert_eq!(phase(&[], &[view("a", waiting())]), "Pending");
        assert_eq!(
            phase(&[], &[view("a", running()), view("b", waiting())]),
            "Running"
        );
        assert_eq!(phase(&[], &[view("a", exited(0))]), "Succeeded");
        assert_eq!(
            phase(&[], &[view("a", exited(0)), view("b", exited(1))]),
            "Failed"
        );
        let mut restarting = view("a", exited(1));
        restarting.will_restart = true;
        assert_eq!(phase(&[], &[restarting.clone()]), "Running");
        // Main containers wait for init containers.
        assert_eq!(
            phase(&[view("i", running())], &[view("a", waiting())]),
            "Pending"
        );
        assert_eq!(
            phase(&[view("i", exited(1))], &[view("a", waiting())]),
            "Failed"
        );
        assert_eq!(
            phase(&[view("i", exited(0))], &[view("a", running())]),
            "Running"
        );
        // A crash-looping container counts as having run.
        let mut backoff = view(
            "a",
            RunState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
        );
        backoff.restart_count = 3;
        assert_eq!(phase(&[], &[backoff]), "Running");
    }

    #[test]
    fn ready_needs_every_container_ready() {
        let mut a = view("a", running());
        a.ready = true;
        let b = view("b", running());
        let pv = |main: &[ContainerView]| {
            let v = PodView {
                init: &[],
                main,
                pod_ip: Some("127.0.0.10".into()),
                host_ip: "127.0.0.1".into(),
                start_time: Some(t(0)),
                message: None,
                qos_class: None,
            };
            pod_status(&v, None, &t(10))
        };
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(ready(&pv(&[a.clone(), b.clone()])), "False");
        let mut b2 = b.clone();
        b2.ready = true;
        let s = pv(&[a, b2]);
        assert_eq!(ready(&s), "True");
        assert_eq!(s.pod_ips.unwrap()[0].ip, "127.0.0.10");
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let a = view("a", running());
        let v = PodView {
            init: &[],
            main: std::slice::from_ref(&a),
            pod_ip: None,
            host_ip: "h".into(),
            start_time: None,
            message: None,
            qos_class: None,
        };
        let first = pod_status(&v, None, &t(10));
        let second = pod_status(&v, Some(&first), &t(20));
        let get = |s: &PodStatus| {
            s.conditions.as_ref().unwrap()[1]
                .last_transition_time
                .clone()
        };
        assert_eq!(get(&second), Some(t(10)));
    }
}
