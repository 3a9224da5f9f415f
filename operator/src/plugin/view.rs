//! Pure rendering of the plugin's views (80 columns), unit-tested without a cluster.

use ringshift_planner::eta::format_eta;
use serde::Serialize;

use super::estimate::{Basis, human_bytes};
use super::history::HistoryRow;

/// One member's line.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberRow {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    /// Share of the hash ring owned now, 0..=1.
    pub share: f64,
}

/// One migration's line.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoveRow {
    pub name: String,
    pub source: String,
    pub target: String,
    pub phase: String,
    pub percent: i64,
    pub lag: Option<String>,
    pub eta: Option<String>,
    pub pause: Option<String>,
    pub message: Option<String>,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub namespace: String,
    pub cluster: String,
    pub replicas: i64,
    pub ready: i64,
    pub epoch: Option<String>,
    pub state: Option<String>,
    /// (type, status, reason)
    pub conditions: Vec<(String, String, String)>,
    pub members: Vec<MemberRow>,
    pub moves: Vec<MoveRow>,
    pub pending_plan: Option<String>,
}

fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

/// The status view as text, every line at most 80 columns.
pub fn render_status(v: &StatusView) -> String {
    let mut out = String::new();
    out.push_str(&cut(
        &format!(
            "{}/{}  replicas {} (ready {})  epoch {}  {}",
            v.namespace,
            v.cluster,
            v.replicas,
            v.ready,
            v.epoch.as_deref().unwrap_or("-"),
            v.state.as_deref().unwrap_or("-")
        ),
        80,
    ));
    out.push('\n');
    let conds: Vec<String> = v
        .conditions
        .iter()
        .map(|(t, s, r)| format!("{t}={s}({r})"))
        .collect();
    for line in wrap(&conds, 78) {
        out.push_str(&format!("  {line}\n"));
    }
    if let Some(h) = &v.pending_plan {
        out.push_str(&format!("  plan awaiting approval: {h}\n"));
        out.push_str(&cut(
            &format!("  approve it with: kubectl ringshift approve {}", v.cluster),
            80,
        ));
        out.push('\n');
    }
    out.push_str("members (share of the ring)\n");
    for m in &v.members {
        out.push_str(&cut(
            &format!(
                "  {:<20} {} {:>5.1}%  {:<15} {}",
                cut(&m.name, 20),
                bar(m.share, 30),
                m.share * 100.0,
                m.ip.as_deref().unwrap_or("-"),
                if m.ready { "ready" } else { "not ready" }
            ),
            80,
        ));
        out.push('\n');
    }
    let active: Vec<&MoveRow> = v
        .moves
        .iter()
        .filter(|m| !matches!(m.phase.as_str(), "Completed" | "Cancelled"))
        .collect();
    out.push_str(&format!(
        "migrations: {} in flight or failed, {} finished\n",
        active.len(),
        v.moves.len() - active.len()
    ));
    for m in active {
        out.push_str(&cut(
            &format!(
                "  {:>10} -> {:<10} {:<11} {} {:>3}% lag {} eta {} pause {}",
                cut(&m.source, 10),
                cut(&m.target, 10),
                m.phase,
                bar(m.percent as f64 / 100.0, 10),
                m.percent,
                m.lag.as_deref().unwrap_or("-"),
                m.eta.as_deref().unwrap_or("-"),
                m.pause.as_deref().unwrap_or("-")
            ),
            80,
        ));
        out.push('\n');
        if let Some(msg) = &m.message {
            out.push_str(&cut(&format!("      {msg}"), 80));
            out.push('\n');
        }
    }
    out
}

fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for it in items {
        if !cur.is_empty() && cur.len() + 1 + it.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(it);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// One planned transfer of `plan`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanRow {
    pub source: String,
    pub target: String,
    pub ranges: usize,
    /// Share of the whole ring moved, 0..=1.
    pub share: f64,
    /// Bytes the copy is estimated to carry.
    pub estimated_bytes: Option<u64>,
    /// Estimated seconds to copy and commit.
    pub estimated_secs: Option<u64>,
}

/// Everything `plan` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub cluster: String,
    pub plan_hash: Option<String>,
    pub moves: Vec<PlanRow>,
    /// What the estimates rest on.
    pub basis: Basis,
    /// Moves the operator runs at once (spec.migration.maxConcurrentMoves).
    pub concurrent_moves: usize,
    /// Estimated wall time of the whole plan.
    pub estimated_secs: Option<u64>,
}

fn secs_text(s: Option<u64>) -> String {
    s.map(format_eta).unwrap_or_else(|| "-".into())
}

/// The dry-run plan as text.
pub fn render_plan(v: &PlanView) -> String {
    let cluster = &v.cluster;
    let rows = &v.moves;
    if rows.is_empty() {
        return format!("{cluster}: nothing would move\n");
    }
    let total: f64 = rows.iter().map(|r| r.share).sum();
    let mut out = format!(
        "{cluster}: {} move(s), {:.1}% of the ring would change owner (dry run, nothing written)\n",
        rows.len(),
        total * 100.0
    );
    if let Some(h) = &v.plan_hash {
        out.push_str(&format!("plan hash {h}\n"));
    }
    out.push_str(&format!(
        "  {:>14} -> {:<14} {:>6} {:>7} {:>10} {:>8}\n",
        "SOURCE", "TARGET", "RANGES", "RING", "EST.BYTES", "EST.TIME"
    ));
    for r in rows {
        out.push_str(&cut(
            &format!(
                "  {:>14} -> {:<14} {:>6} {:>6.2}% {:>10} {:>8}",
                cut(&r.source, 14),
                cut(&r.target, 14),
                r.ranges,
                r.share * 100.0,
                r.estimated_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                secs_text(r.estimated_secs),
            ),
            80,
        ));
        out.push('\n');
    }
    let bytes: Option<u64> = rows.iter().map(|r| r.estimated_bytes).sum();
    out.push_str(&cut(
        &format!(
            "total {} in about {} at {} move(s) at a time",
            bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
            secs_text(v.estimated_secs),
            v.concurrent_moves
        ),
        80,
    ));
    out.push('\n');
    out.push_str(match v.basis {
        Basis::NodeMetrics => "estimates: each source's stored bytes times the share it gives up\n",
        Basis::History => {
            "estimates: bytes per hash and copy rate of this cluster's finished moves\n"
        }
        Basis::None => {
            "estimates: none (node metrics unreachable through the API server, no finished move)\n"
        }
    });
    out
}

/// `history` as text: one line per move, oldest first.
pub fn render_history(cluster: &str, rows: &[HistoryRow]) -> String {
    if rows.is_empty() {
        return format!("{cluster}: no moves recorded\n");
    }
    let mut out = format!(
        "{:<16} {:<11} {:>5} {:<19} {:>7} {:>9} {:>6}\n",
        "CREATED", "PHASE", "EPOCH", "MOVE", "RING", "BYTES", "TIME"
    );
    for r in rows {
        let created = r
            .created
            .as_deref()
            .map(|c| c.get(..16).unwrap_or(c).replace('T', " "))
            .unwrap_or_else(|| "-".into());
        out.push_str(&cut(
            &format!(
                "{:<16} {:<11} {:>5} {:<19} {:>6.2}% {:>9} {:>6}",
                created,
                cut(&r.phase, 11),
                cut(&r.epoch, 5),
                cut(&format!("{}->{}", r.source, r.target), 19),
                r.share * 100.0,
                r.bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
                secs_text(r.secs),
            ),
            80,
        ));
        out.push('\n');
        let notes: Vec<String> = r
            .cutover_pause
            .iter()
            .map(|p| format!("cutover pause {p}"))
            .chain(r.message.iter().cloned())
            .collect();
        if !notes.is_empty() {
            out.push_str(&cut(&format!("    {}", notes.join("; ")), 80));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StatusView {
        StatusView {
            namespace: "ns".into(),
            cluster: "demo".into(),
            replicas: 3,
            ready: 3,
            epoch: Some("7".into()),
            state: Some("Ready".into()),
            conditions: vec![
                ("Ready".into(), "True".into(), "AllMembersReady".into()),
                ("Balanced".into(), "False".into(), "MovesInFlight".into()),
            ],
            members: vec![MemberRow {
                name: "a-very-long-member-name-that-goes-on".into(),
                ip: Some("127.0.0.10".into()),
                ready: true,
                share: 0.5,
            }],
            moves: vec![MoveRow {
                name: "m".into(),
                source: "demo-0".into(),
                target: "demo-3".into(),
                phase: "CatchingUp".into(),
                percent: 100,
                lag: Some("12".into()),
                eta: None,
                pause: None,
                message: Some("x".repeat(200)),
            }],
            pending_plan: Some("0123456789abcdef0123456789abcdef".into()),
        }
    }

    #[test]
    fn status_fits_80_columns_and_shows_what_matters() {
        let text = render_status(&view());
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        assert!(text.contains("epoch 7"));
        assert!(text.contains("50.0%"));
        assert!(text.contains("CatchingUp"));
        assert!(text.contains("approve demo"));
    }

    fn plan(basis: Basis, bytes: Option<u64>) -> PlanView {
        PlanView {
            cluster: "demo".into(),
            plan_hash: Some("abc".into()),
            moves: vec![PlanRow {
                source: "a-source-member-with-a-long-name".into(),
                target: "demo-3".into(),
                ranges: 4,
                share: 0.25,
                estimated_bytes: bytes,
                estimated_secs: bytes.map(|_| 90),
            }],
            basis,
            concurrent_moves: 2,
            estimated_secs: bytes.map(|_| 90),
        }
    }

    #[test]
    fn plan_text_shows_share_bytes_and_time_per_move() {
        let mut empty = plan(Basis::None, None);
        empty.moves.clear();
        assert!(render_plan(&empty).contains("nothing would move"));
        let text = render_plan(&plan(Basis::NodeMetrics, Some(3 << 20)));
        assert!(text.contains("25.00%"), "{text}");
        assert!(text.contains("3.0 MiB"), "{text}");
        assert!(text.contains("1m30s"), "{text}");
        assert!(text.contains("plan hash abc"));
        assert!(text.contains("stored bytes"));
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        let text = render_plan(&plan(Basis::None, None));
        assert!(text.contains("total - in about -"), "{text}");
        assert!(text.contains("estimates: none"));
    }

    #[test]
    fn history_text_fits_and_names_each_move() {
        assert!(render_history("demo", &[]).contains("no moves recorded"));
        let rows = vec![HistoryRow {
            name: "m".into(),
            source: "demo-0".into(),
            target: "demo-3".into(),
            phase: "Completed".into(),
            epoch: "12".into(),
            created: Some("2026-12-07T10:00:00Z".into()),
            secs: Some(41),
            share: 0.125,
            bytes: Some(2048),
            cutover_pause: Some("38ms".into()),
            message: Some("y".repeat(120)),
        }];
        let text = render_history("demo", &rows);
        assert!(text.contains("2026-12-07 10:00 "), "{text}");
        assert!(text.contains("demo-0->demo-3"));
        assert!(text.contains("2.0 KiB"));
        assert!(text.contains("41s"));
        assert!(text.contains("cutover pause 38ms; yyy"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0.5, 4), "[##..]");
        assert_eq!(bar(2.0, 2), "[##]");
    }
}
