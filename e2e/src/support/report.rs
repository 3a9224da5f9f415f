//! One line per scenario for the reliability report: each scenario test appends what it
//! injected and what the checker found to $RINGSHIFT_REPORT (JSON lines), and
//! `ringshift-reliability-report` turns the file into the README's table.

use serde::{Deserialize, Serialize};

use crate::load::Report;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioLine {
    pub scenario: String,
    pub faults: String,
    pub writes_acked: u64,
    pub write_errors: u64,
    pub lost: usize,
    pub stale_reads: usize,
    /// Overlapping accepted-write windows of two nodes that the epoch order does not explain.
    pub split_brain: usize,
    pub longest_stall_ms: u64,
    pub seconds: u64,
    pub passed: bool,
}

impl ScenarioLine {
    pub fn new(
        scenario: &str,
        faults: &str,
        report: &Report,
        split_brain: usize,
        seconds: u64,
    ) -> Self {
        ScenarioLine::with_other_lost(scenario, faults, report, 0, split_brain, seconds)
    }

    /// Like [`ScenarioLine::new`], with `other_lost` acknowledged writes lost outside the load
    /// (e.g. preloaded keys missing at the end), counted as lost.
    pub fn with_other_lost(
        scenario: &str,
        faults: &str,
        report: &Report,
        other_lost: usize,
        split_brain: usize,
        seconds: u64,
    ) -> Self {
        ScenarioLine {
            scenario: scenario.into(),
            faults: faults.into(),
            writes_acked: report.stats.writes_acked,
            write_errors: report.stats.writes_failed,
            lost: report.lost_writes + other_lost,
            stale_reads: report.stale_reads,
            split_brain,
            longest_stall_ms: report.stats.longest_stall.as_millis() as u64,
            seconds,
            passed: report.is_clean() && other_lost == 0 && split_brain == 0,
        }
    }
}

/// Appends the line to $RINGSHIFT_REPORT when set (a no-op otherwise), and prints it.
pub fn record(line: &ScenarioLine) {
    println!("scenario result: {line:?}");
    let Ok(path) = std::env::var("RINGSHIFT_REPORT") else {
        return;
    };
    let Ok(text) = serde_json::to_string(line) else {
        return;
    };
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{text}"));
    if let Err(e) = written {
        eprintln!("could not append to RINGSHIFT_REPORT {path}: {e}");
    }
}

/// The markdown table of a report file's lines (the last line per scenario wins).
pub fn table(lines: &[ScenarioLine]) -> String {
    let mut latest: Vec<&ScenarioLine> = Vec::new();
    for l in lines {
        match latest.iter_mut().find(|x| x.scenario == l.scenario) {
            Some(slot) => *slot = l,
            None => latest.push(l),
        }
    }
    let mut out = String::from(
        "| scenario | faults injected | writes acked | write errors | lost | stale reads | split-brain | longest stall | result |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for l in latest {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} ms | {} |\n",
            l.scenario,
            l.faults,
            l.writes_acked,
            l.write_errors,
            l.lost,
            l.stale_reads,
            l.split_brain,
            l.longest_stall_ms,
            if l.passed { "pass" } else { "FAIL" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, lost: usize) -> ScenarioLine {
        ScenarioLine {
            scenario: name.into(),
            faults: "none".into(),
            writes_acked: 10,
            write_errors: 1,
            lost,
            stale_reads: 0,
            split_brain: 0,
            longest_stall_ms: 5,
            seconds: 1,
            passed: lost == 0,
        }
    }

    #[test]
    fn table_keeps_the_latest_run_of_each_scenario_in_first_seen_order() {
        let t = table(&[line("a", 3), line("b", 0), line("a", 0)]);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0].starts_with("| a |") && rows[0].ends_with("| pass |"),
            "{t}"
        );
        assert!(rows[1].starts_with("| b |"), "{t}");
    }

    #[test]
    fn a_failed_scenario_says_so() {
        let t = table(&[line("a", 2)]);
        assert!(t.contains("| 2 |") && t.ends_with("| FAIL |\n"), "{t}");
    }
}

/// Ends a checked run: stops the load (every key read back) and the split-brain watch, records
/// the scenario line and returns it with the load's report and any overlaps, for the caller
/// to assert on.
pub async fn conclude(
    scenario: &str,
    faults: &str,
    load: super::CheckedLoad,
    owners: super::SplitBrainWatch,
    started: std::time::Instant,
) -> Concluded {
    conclude_with(scenario, faults, load, owners, started, Vec::new()).await
}

/// Like [`conclude`], with acknowledged writes the caller found lost outside the load
/// (`other_lost`, described one per entry, e.g. preloaded keys missing at the end): they count
/// as lost in the line and fail [`Concluded::assert_clean`].
pub async fn conclude_with(
    scenario: &str,
    faults: &str,
    load: super::CheckedLoad,
    owners: super::SplitBrainWatch,
    started: std::time::Instant,
    other_lost: Vec<String>,
) -> Concluded {
    let report = load.finish().await;
    let evidence = owners.finish().await;
    let overlaps: Vec<String> = evidence.overlaps().iter().map(|o| o.to_string()).collect();
    let line = ScenarioLine::with_other_lost(
        scenario,
        faults,
        &report,
        other_lost.len(),
        overlaps.len(),
        started.elapsed().as_secs(),
    );
    record(&line);
    Concluded {
        report,
        windows: evidence.windows(),
        overlaps,
        other_lost,
    }
}

/// What [`conclude`] found.
#[derive(Debug)]
pub struct Concluded {
    pub report: Report,
    /// Accepted-write windows the nodes reported (0 means no evidence was gathered).
    pub windows: usize,
    /// Overlapping windows the epochs do not explain, described.
    pub overlaps: Vec<String>,
    /// Acknowledged writes lost outside the load (see [`conclude_with`]), described.
    pub other_lost: Vec<String>,
}

impl Concluded {
    /// Panics with the details unless nothing was lost, nothing read stale and no two owners
    /// accepted writes at once; `context` is appended (e.g. the operator's log tail).
    pub fn assert_clean(&self, scenario: &str, context: &str) {
        let r = &self.report;
        assert!(
            r.stats.writes_acked > 200,
            "{scenario}: load ran: {:?}",
            r.stats
        );
        assert_eq!(r.keys_unverifiable, 0, "{scenario}: {r:?}");
        assert!(
            r.is_clean(),
            "{scenario}: {} lost, {} stale: {:?}\n{context}",
            r.lost_writes,
            r.stale_reads,
            r.violations
        );
        assert!(
            self.other_lost.is_empty(),
            "{scenario}: {} acknowledged writes outside the load lost, e.g. {:#?}\n{context}",
            self.other_lost.len(),
            &self.other_lost[..self.other_lost.len().min(10)]
        );
        assert!(
            self.windows > 0,
            "{scenario}: the nodes reported no accepted writes"
        );
        assert!(
            self.overlaps.is_empty(),
            "{scenario}: two owners accepted writes: {:#?}",
            &self.overlaps[..self.overlaps.len().min(5)]
        );
    }
}
