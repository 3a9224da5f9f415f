//! The dashboard's PromQL, a scanner for the metric names an expression selects, and a small
//! client of Prometheus's HTTP API with the harness's Prometheus (`e2e/cluster/prometheus.sh`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{SupportError, repo_root};

/// Words that are never metric names: operators and aggregations (which may be followed by
/// `by (...)` rather than by their parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names a PromQL expression selects: identifiers outside strings, label matchers,
/// ranges and label lists that are neither functions nor keywords.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let skip_to = |from: usize, close: u8| {
        let mut j = from + 1;
        while j < b.len() && b[j] != close {
            if b[j] == b'"' || b[j] == b'\'' {
                let q = b[j];
                j += 1;
                while j < b.len() && b[j] != q {
                    j += 1 + usize::from(b[j] == b'\\');
                }
            }
            j += 1;
        }
        j + 1
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' => i = skip_to(i, c),
            b'{' => i = skip_to(i, b'}'),
            b'[' => i = skip_to(i, b']'),
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut next = i;
                while next < b.len() && b[next].is_ascii_whitespace() {
                    next += 1;
                }
                if LABEL_LISTS.contains(&word) {
                    if b.get(next) == Some(&b'(') {
                        i = skip_to(next, b')');
                    }
                } else if b.get(next) != Some(&b'(') && !KEYWORDS.contains(&word) {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The shipped dashboard (`deploy/grafana/`).
pub fn dashboard_path() -> PathBuf {
    repo_root().join("deploy/grafana/ringshift-dashboard.json")
}

/// Every PromQL expression of a dashboard: panel targets, then the selectors of its
/// `label_values(SELECTOR, LABEL)` variables.
pub fn dashboard_exprs(path: &Path) -> Result<Vec<String>, SupportError> {
    let bad = |e: String| SupportError::Other(format!("{}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let d: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"]
                .as_str()
                .ok_or_else(|| bad("a target has no expr".into()))?;
            exprs.push(e.to_string());
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str() {
            let selector = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map(|(sel, _)| sel)
                .ok_or_else(|| {
                    bad(format!(
                        "variable query {q} is not label_values(sel, label)"
                    ))
                })?;
            exprs.push(selector.to_string());
        }
    }
    Ok(exprs)
}

/// The harness's Prometheus, stopped when dropped.
pub struct Prometheus {
    pub url: String,
    http: reqwest::Client,
}

fn script() -> PathBuf {
    repo_root().join("e2e/cluster/prometheus.sh")
}

impl Prometheus {
    /// Starts it (`prometheus.sh start`, idempotent) and waits until it is ready.
    pub fn start() -> Result<Prometheus, SupportError> {
        let out = Command::new(script())
            .arg("start")
            .output()
            .map_err(|e| SupportError::Other(format!("{}: {e}", script().display())))?;
        if !out.status.success() {
            return Err(SupportError::Other(format!(
                "prometheus.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SupportError::Other(format!("http client: {e}")))?;
        Ok(Prometheus { url, http })
    }

    /// Lists an operator process's metrics address for the `ringshift-operator` job.
    pub fn add_operator(&self, id: &str, addr: &str, pod: &str) -> Result<(), SupportError> {
        let dir = super::state_dir().join("prometheus/operators");
        let path = dir.join(format!("{id}.json"));
        let body = serde_json::json!([{"targets": [addr], "labels": {"pod": pod}}]);
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, body.to_string()))
            .map_err(|e| SupportError::Other(format!("writing {}: {e}", path.display())))
    }

    /// Removes what [`Prometheus::add_operator`] listed.
    pub fn remove_operator(&self, id: &str) {
        let path = super::state_dir().join(format!("prometheus/operators/{id}.json"));
        let _ = std::fs::remove_file(path);
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, SupportError> {
        let what = format!("GET {}{path} {query:?}", self.url);
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query)
            .map_err(|e| SupportError::Other(format!("{what}: {e}")))?;
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| SupportError::Other(format!("{what}: {e}")))?;
        let body: Value = r
            .json()
            .await
            .map_err(|e| SupportError::Other(format!("{what}: {e}")))?;
        if body["status"] != "success" {
            return Err(SupportError::Other(format!("{what}: {body}")));
        }
        Ok(body["data"].clone())
    }

    /// The result vector of an instant query.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, SupportError> {
        let data = self.get("/api/v1/query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Loaded alerting rules: (name, query, health, last error).
    pub async fn alert_rules(&self) -> Result<Vec<(String, String, String, String)>, SupportError> {
        let data = self.get("/api/v1/rules", &[("type", "alert")]).await?;
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (
                    s(&r["name"]),
                    s(&r["query"]),
                    s(&r["health"]),
                    s(&r["lastError"]),
                )
            })
            .collect())
    }

    /// Active alerts: (labels, state), state `pending` or `firing`.
    pub async fn alerts(&self) -> Result<Vec<(Value, String)>, SupportError> {
        let data = self.get("/api/v1/alerts", &[]).await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"].clone(),
                    a["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_finds_metric_names_only() {
        let got = metric_names(
            r#"histogram_quantile(0.99, sum by (le, pod) (rate(a_bucket{x=~"$y", z="b} c"}[$__rate_interval])))
               / on (pod) group_left max without (q) (b_total offset 5m) > bool 1e3 and c:rule or vector(0)"#,
        );
        let want: BTreeSet<String> = ["a_bucket", "b_total", "c:rule"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }
}
