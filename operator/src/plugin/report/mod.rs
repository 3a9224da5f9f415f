//! `kubectl ringshift report CLUSTER --png FILE` and the picture at the end of `make demo`: a
//! cluster's run over time from Prometheus (ops/s, latency, moves in flight, cutover pauses,
//! bytes copied), drawn as one PNG.

pub mod query;
pub mod render;

use std::time::Duration;

pub use query::{PanelQuery, panels};

/// What can go wrong making a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("query Prometheus at {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus answered: {0}")]
    Prometheus(String),
    #[error("font: {0}")]
    Font(String),
    #[error("drawing the report: {0}")]
    Render(String),
    #[error("write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One drawn line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// (unix seconds, value)
    pub points: Vec<(f64, f64)>,
}

/// One panel with its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<Series>,
}

/// A report ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub title: String,
    pub subtitle: String,
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub panels: Vec<Panel>,
}

impl Report {
    /// Panels with no point at all (a metric not scraped, a wrong selector).
    pub fn empty_panels(&self) -> Vec<&'static str> {
        self.panels
            .iter()
            .filter(|p| p.series.iter().all(|s| s.points.is_empty()))
            .map(|p| p.title)
            .collect()
    }
}

/// Range-query step: about 600 points over the window, at least 2 s (the harness's scrape
/// interval).
pub fn step_secs(start: f64, end: f64) -> f64 {
    ((end - start) / 600.0).max(2.0).ceil()
}

/// Runs every panel's queries over `[start, end]` (unix seconds) against the Prometheus at
/// `url` (e.g. `http://127.0.0.1:9090`).
pub async fn fetch(
    url: &str,
    namespace: &str,
    cluster: &str,
    start: f64,
    end: f64,
) -> Result<Report, ReportError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|source| ReportError::Http {
            url: url.to_string(),
            source,
        })?;
    let endpoint = format!("{}/api/v1/query_range", url.trim_end_matches('/'));
    let step = step_secs(start, end);
    let mut out = Vec::new();
    let span = format!("{}s", (end - start).max(1.0).ceil() as u64);
    for p in panels(namespace, cluster, &span) {
        let mut series = Vec::new();
        for s in p.series {
            let params = [
                ("query", s.promql.clone()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step}")),
            ];
            let http_err = |source| ReportError::Http {
                url: endpoint.clone(),
                source,
            };
            let target = reqwest::Url::parse_with_params(&endpoint, &params)
                .map_err(|e| ReportError::Prometheus(format!("bad URL {endpoint}: {e}")))?;
            let body: serde_json::Value = http
                .get(target)
                .send()
                .await
                .map_err(http_err)?
                .json()
                .await
                .map_err(http_err)?;
            series.push(Series {
                label: s.label.to_string(),
                points: query::parse_matrix(&body)?,
            });
        }
        out.push(Panel {
            title: p.title,
            unit: p.unit,
            series,
        });
    }
    let fmt = |t: f64| {
        k8s_openapi::jiff::Timestamp::from_second(t as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|_| format!("{t}"))
    };
    Ok(Report {
        title: format!("ringshift {namespace}/{cluster}"),
        subtitle: format!(
            "{} to {} ({}), from Prometheus at {url}",
            fmt(start),
            fmt(end),
            ringshift_planner::eta::format_eta((end - start).max(0.0) as u64)
        ),
        start,
        end,
        panels: out,
    })
}

/// Draws `report` into `path` as PNG.
pub fn write_png(report: &Report, path: &std::path::Path) -> Result<(), ReportError> {
    let bytes = render::png(report)?;
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_a_window_to_about_600_points() {
        assert_eq!(step_secs(0.0, 60.0), 2.0);
        assert_eq!(step_secs(0.0, 6000.0), 10.0);
        assert_eq!(step_secs(0.0, 6001.0), 11.0);
    }

    #[test]
    fn empty_panels_are_named() {
        let r = Report {
            title: String::new(),
            subtitle: String::new(),
            start: 0.0,
            end: 1.0,
            panels: vec![
                Panel {
                    title: "has",
                    unit: "",
                    series: vec![Series {
                        label: "a".into(),
                        points: vec![(0.0, 1.0)],
                    }],
                },
                Panel {
                    title: "lacks",
                    unit: "",
                    series: vec![Series {
                        label: "b".into(),
                        points: vec![],
                    }],
                },
            ],
        };
        assert_eq!(r.empty_panels(), ["lacks"]);
    }
}
