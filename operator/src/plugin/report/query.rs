//! The report's panels as PromQL over the metrics the chart's PodMonitor and ServiceMonitor
//! (or the harness's file_sd) scrape, and the parsing of Prometheus's range-query answer.

use serde_json::Value;

use super::ReportError;

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    pub label: &'static str,
    pub promql: String,
}

/// One panel: a y axis with its unit and the lines drawn on it.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<SeriesQuery>,
}

/// The panels of a cluster's report, top to bottom: load, latency, moves, pauses, bytes.
/// `span` is a PromQL duration covering the whole report (e.g. `1800s`), the lookback of the
/// cumulative panel.
pub fn panels(namespace: &str, cluster: &str, span: &str) -> Vec<PanelQuery> {
    let sel = format!("namespace=\"{namespace}\",cluster=\"{cluster}\"");
    let win = "[10s]";
    let q = |label, promql: String| SeriesQuery { label, promql };
    vec![
        PanelQuery {
            title: "Client commands per second",
            unit: "ops/s",
            series: vec![
                q(
                    "all",
                    format!("sum(rate(ringshift_node_ops_total{{{sel}}}{win}))"),
                ),
                q(
                    "forwarded",
                    format!("sum(rate(ringshift_node_forwarded_ops_total{{{sel}}}{win}))"),
                ),
            ],
        },
        PanelQuery {
            title: "Command latency",
            unit: "ms",
            series: vec![
                q(
                    "p99",
                    format!(
                        "1000 * histogram_quantile(0.99, sum by (le) \
                         (rate(ringshift_node_command_duration_seconds_bucket{{{sel}}}{win})))"
                    ),
                ),
                q(
                    "p50",
                    format!(
                        "1000 * histogram_quantile(0.5, sum by (le) \
                         (rate(ringshift_node_command_duration_seconds_bucket{{{sel}}}{win})))"
                    ),
                ),
            ],
        },
        PanelQuery {
            title: "Moves in flight",
            unit: "moves",
            series: vec![
                q(
                    "copying + catching up",
                    format!(
                        "sum(ringshift_operator_migrations{{{sel},phase=~\"Copying|CatchingUp\"}})"
                    ),
                ),
                q(
                    "cutting over",
                    format!("sum(ringshift_operator_migrations{{{sel},phase=\"CuttingOver\"}})"),
                ),
                q(
                    "pending",
                    format!("sum(ringshift_operator_migrations{{{sel},phase=\"Pending\"}})"),
                ),
            ],
        },
        PanelQuery {
            title: "Cutover write pause, p99 of the committed cutovers of the last 30 s",
            unit: "ms",
            series: vec![q(
                "pause p99",
                "1000 * histogram_quantile(0.99, sum by (le) \
                 (increase(ringshift_operator_cutover_pause_seconds_bucket[30s])))"
                    .to_string(),
            )],
        },
        // Cumulative, not a rate: a move often copies in less than two scrapes, which a rate
        // never sees; each pull's counter keeps its last value for the lookback.
        PanelQuery {
            title: "Bytes copied into targets, cumulative over the report",
            unit: "MiB",
            series: vec![q(
                "copied",
                format!(
                    "sum(max_over_time(ringshift_node_pull_bytes_copied_total{{{sel}}}[{span}])) \
                     / 1048576"
                ),
            )],
        },
    ]
}

/// Points `(unix seconds, value)` of a range query's answer, all series summed per timestamp
/// (the queries aggregate to one series; a NaN from an empty histogram is a gap).
pub fn parse_matrix(body: &Value) -> Result<Vec<(f64, f64)>, ReportError> {
    if body["status"] != "success" {
        return Err(ReportError::Prometheus(format!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("no error text")
        )));
    }
    let result = body["data"]["result"]
        .as_array()
        .ok_or_else(|| ReportError::Prometheus("answer without data.result".into()))?;
    let mut points: Vec<(f64, f64)> = Vec::new();
    for series in result {
        let values = series["values"]
            .as_array()
            .ok_or_else(|| ReportError::Prometheus("a series without values".into()))?;
        for v in values {
            let t = v[0].as_f64();
            let y = v[1].as_str().and_then(|s| s.parse::<f64>().ok());
            if let (Some(t), Some(y)) = (t, y)
                && y.is_finite()
            {
                match points.iter_mut().find(|(pt, _)| *pt == t) {
                    Some(p) => p.1 += y,
                    None => points.push((t, y)),
                }
            }
        }
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_query_selects_the_cluster_or_is_cluster_free() {
        for p in panels("ns", "demo", "60s") {
            assert!(!p.series.is_empty());
            for s in p.series {
                assert!(
                    s.promql.contains("namespace=\"ns\",cluster=\"demo\"")
                        || s.promql.contains("cutover_pause"),
                    "{}",
                    s.promql
                );
                assert_eq!(
                    s.promql.matches('(').count(),
                    s.promql.matches(')').count(),
                    "{}",
                    s.promql
                );
            }
        }
    }

    #[test]
    fn a_matrix_becomes_sorted_points_without_gaps() {
        let body = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[20, "2"], [10, "1"], [30, "NaN"]]},
            {"metric": {}, "values": [[10, "5"]]}
        ]}});
        assert_eq!(parse_matrix(&body).unwrap(), vec![(10.0, 6.0), (20.0, 2.0)]);
    }

    #[test]
    fn an_error_answer_says_what_prometheus_said() {
        let body = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        let e = parse_matrix(&body).unwrap_err();
        assert!(e.to_string().contains("bad_data: parse error"), "{e}");
        assert!(parse_matrix(&json!({"status": "success", "data": {}})).is_err());
    }
}
