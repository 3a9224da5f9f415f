//! What the demo prints: a compact live view of the cluster and the moves, and the summary.

use kube::api::DynamicObject;

use crate::load::StatsSnapshot;

/// One ShardMigration as the demo shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveLine {
    pub source: String,
    pub target: String,
    pub phase: String,
    pub percent: i64,
    pub lag: String,
    pub bytes: u64,
    pub pause_ms: Option<f64>,
}

impl MoveLine {
    pub fn from_object(m: &DynamicObject) -> MoveLine {
        let st = &m.data["status"];
        MoveLine {
            source: m.data["spec"]["source"].as_str().unwrap_or("?").to_string(),
            target: m.data["spec"]["target"].as_str().unwrap_or("?").to_string(),
            phase: st["phase"].as_str().unwrap_or("Pending").to_string(),
            percent: st["progress"]["percent"].as_i64().unwrap_or(0),
            lag: st["lag"].as_str().unwrap_or("-").to_string(),
            bytes: st["progress"]["bytes"]
                .as_str()
                .and_then(|b| b.parse().ok())
                .unwrap_or(0),
            pause_ms: st["cutoverPause"].as_str().and_then(parse_ms),
        }
    }

    pub fn finished(&self) -> bool {
        matches!(
            self.phase.as_str(),
            "Completed" | "Cancelled" | "Failed" | "Cleanup"
        )
    }
}

/// `12ms`, `1.5s` -> milliseconds.
pub fn parse_ms(s: &str) -> Option<f64> {
    if let Some(v) = s.strip_suffix("ms") {
        return v.parse().ok();
    }
    if let Some(v) = s.strip_suffix('s') {
        return v.parse::<f64>().ok().map(|x| x * 1000.0);
    }
    None
}

fn bar(percent: i64, width: usize) -> String {
    let filled = (percent.clamp(0, 100) as usize * width) / 100;
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// The live view, at most 78 columns wide.
pub fn render(
    step: &str,
    cluster: &DynamicObject,
    moves: &[MoveLine],
    load: &StatsSnapshot,
    ops_per_s: f64,
) -> String {
    let st = &cluster.data["status"];
    let mut out = String::new();
    out.push_str(&format!(
        "== {step} | replicas {} ready {} | epoch {} | {}\n",
        cluster.data["spec"]["replicas"].as_i64().unwrap_or(0),
        st["readyReplicas"].as_i64().unwrap_or(0),
        st["epoch"].as_str().unwrap_or("-"),
        st["state"].as_str().unwrap_or("-"),
    ));
    let active: Vec<&MoveLine> = moves.iter().filter(|m| !m.finished()).collect();
    let done = moves.len() - active.len();
    out.push_str(&format!(
        "   moves: {done} committed, {} in flight\n",
        active.len()
    ));
    for m in active.iter().take(6) {
        out.push_str(&format!(
            "   {:>9} -> {:<9} {:<11} [{}] {:>3}% lag {}\n",
            m.source,
            m.target,
            m.phase,
            bar(m.percent, 16),
            m.percent,
            m.lag
        ));
    }
    out.push_str(&format!(
        "   load: {:>6.0} ops/s | acked writes {} | errors {} | longest stall {} ms\n",
        ops_per_s,
        load.writes_acked,
        load.errors(),
        load.longest_stall.as_millis()
    ));
    out
}

/// p50 and p99 of the measured cutover pauses.
pub fn pause_percentiles(moves: &[MoveLine]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = moves.iter().filter_map(|m| m.pause_ms).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[(((v.len() - 1) as f64) * q).round() as usize];
    Some((at(0.5), at(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pause: Option<f64>) -> MoveLine {
        MoveLine {
            source: "a".into(),
            target: "b".into(),
            phase: "Completed".into(),
            percent: 100,
            lag: "0".into(),
            bytes: 10,
            pause_ms: pause,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_ms("12ms"), Some(12.0));
        assert_eq!(parse_ms("1.5s"), Some(1500.0));
        assert_eq!(parse_ms("x"), None);
    }

    #[test]
    fn percentiles() {
        assert_eq!(pause_percentiles(&[line(None)]), None);
        let moves: Vec<MoveLine> = (1..=100).map(|i| line(Some(i as f64))).collect();
        assert_eq!(pause_percentiles(&moves), Some((51.0, 99.0)));
    }

    #[test]
    fn bars_fit() {
        assert_eq!(bar(50, 10), "#####.....");
        assert_eq!(bar(150, 4), "####");
        assert_eq!(bar(-3, 4), "....");
    }
}
