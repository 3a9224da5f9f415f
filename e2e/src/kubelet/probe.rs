//! Readiness, liveness and startup probes: the schedule and thresholds (pure) and the HTTP GET
//! and TCP checks against the pod's address.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Consecutive results of one probe of one container.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    last_run: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The probe's verdict once a threshold was reached.
    pub passed: Option<bool>,
    pub last_message: Option<String>,
}

impl ProbeState {
    /// Whether the probe should run now, given when the container started.
    pub fn due(&self, probe: &Probe, started: Instant, now: Instant) -> bool {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        now.duration_since(started) >= delay
            && self
                .last_run
                .is_none_or(|t| now.duration_since(t) >= period)
    }

    /// Records one result; returns the verdict (Some when a threshold was reached).
    pub fn record(
        &mut self,
        probe: &Probe,
        ok: bool,
        message: Option<String>,
        now: Instant,
    ) -> Option<bool> {
        self.last_run = Some(now);
        self.last_message = message;
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.passed = Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.passed = Some(false);
            }
        }
        self.passed
    }
}

pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64)
}

/// Resolves a probe port (number or container port name).
pub fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("bad port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("container has no port named {name:?}"))
        }
    }
}

/// HTTP GET: success is a status in 200..400.
pub async fn http_get(
    http: &reqwest::Client,
    action: &HTTPGetAction,
    pod_ip: &str,
    container: &Container,
    timeout: Duration,
) -> Result<(), String> {
    if action
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        return Err("HTTPS probes are not supported by the process kubelet".into());
    }
    let port = port(&action.port, container)?;
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_ip);
    let path = action.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut req = http
        .get(format!("http://{host}:{port}{path}"))
        .timeout(timeout);
    for h in action.http_headers.iter().flatten() {
        req = req.header(&h.name, &h.value);
    }
    let resp = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
    let code = resp.status().as_u16();
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {path}: HTTP {code}"))
    }
}

/// TCP: success is an accepted connection.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {host}:{port}: {e}")),
        Err(_) => Err(format!("connect {host}:{port}: timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds() {
        let p = probe(json!({"failureThreshold": 2, "successThreshold": 2}));
        let mut s = ProbeState::default();
        let now = Instant::now();
        assert_eq!(s.record(&p, true, None, now), None);
        assert_eq!(s.record(&p, true, None, now), Some(true));
        assert_eq!(s.record(&p, false, None, now), Some(true));
        assert_eq!(s.record(&p, false, None, now), Some(false));
        assert_eq!(s.record(&p, true, None, now), Some(false));
        assert_eq!(s.record(&p, true, None, now), Some(true));
    }

    #[test]
    fn schedule() {
        let p = probe(json!({"initialDelaySeconds": 2, "periodSeconds": 3}));
        let t0 = Instant::now();
        let mut s = ProbeState::default();
        assert!(!s.due(&p, t0, t0 + Duration::from_secs(1)));
        assert!(s.due(&p, t0, t0 + Duration::from_secs(2)));
        s.record(&p, true, None, t0 + Duration::from_secs(2));
        assert!(!s.due(&p, t0, t0 + Duration::from_secs(4)));
        assert!(s.due(&p, t0, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(
            json!({"name": "c", "ports": [{"name": "admin", "containerPort": 9090}]}),
        )
        .unwrap();
        assert_eq!(port(&IntOrString::String("admin".into()), &c), Ok(9090));
        assert_eq!(port(&IntOrString::Int(80), &c), Ok(80));
        assert!(port(&IntOrString::String("nope".into()), &c).is_err());
        assert!(port(&IntOrString::Int(70000), &c).is_err());
    }
}
