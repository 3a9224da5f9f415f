//! Reading Prometheus text exposition: counters by label (the API server's
//! `apiserver_request_total`) and quantiles of a histogram (the operator's reconcile durations).
//! Used by the operator scale benchmark (src/bin/ringshift-operator-scale.rs).

use std::collections::BTreeMap;

/// One sample: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Why a line of exposition text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpositionError {
    #[error("line {line}: unterminated label set")]
    Labels { line: usize },
    #[error("line {line}: value {value:?} is not a number")]
    Value { line: usize, value: String },
}

/// Every sample of metric `name` in `text` (comments and other metrics are skipped).
pub fn samples(text: &str, name: &str) -> Result<Vec<Sample>, ExpositionError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, rest) = match rest.chars().next() {
            Some('{') => {
                let (labels, used) =
                    parse_labels(&rest[1..]).ok_or(ExpositionError::Labels { line: line_no })?;
                (labels, &rest[1 + used..])
            }
            Some(' ') => (BTreeMap::new(), rest),
            // Another metric whose name starts with `name`.
            _ => continue,
        };
        let value = rest.split_whitespace().next().unwrap_or_default();
        let value = parse_value(value).ok_or_else(|| ExpositionError::Value {
            line: line_no,
            value: value.to_string(),
        })?;
        out.push(Sample { labels, value });
    }
    Ok(out)
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok(),
    }
}

/// Parses `a="x",b="y"}` (after the opening brace); returns the labels and the bytes used
/// including the closing brace.
fn parse_labels(s: &str) -> Option<(BTreeMap<String, String>, usize)> {
    let mut labels = BTreeMap::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'}' {
            return Some((labels, i + 1));
        }
        let eq = i + s[i..].find('=')?;
        let key = s[i..eq].trim().to_string();
        if bytes.get(eq + 1) != Some(&b'"') {
            return None;
        }
        let mut value = String::new();
        let mut j = eq + 2;
        loop {
            match *bytes.get(j)? {
                b'\\' => {
                    match *bytes.get(j + 1)? {
                        b'n' => value.push('\n'),
                        c => value.push(char::from(c)),
                    }
                    j += 2;
                }
                b'"' => break,
                _ => {
                    let c = s[j..].chars().next()?;
                    value.push(c);
                    j += c.len_utf8();
                }
            }
        }
        labels.insert(key, value);
        i = j + 1;
    }
}

/// Sums of `samples` grouped by the values of `keys` (missing labels count as "").
pub fn sum_by(samples: &[Sample], keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for s in samples {
        let k = keys
            .iter()
            .map(|k| s.labels.get(*k).cloned().unwrap_or_default())
            .collect();
        *out.entry(k).or_default() += s.value;
    }
    out
}

/// `after - before` per group (counters only grow; a group missing before counts from zero).
pub fn delta(
    before: &BTreeMap<Vec<String>, f64>,
    after: &BTreeMap<Vec<String>, f64>,
) -> BTreeMap<Vec<String>, f64> {
    after
        .iter()
        .map(|(k, a)| (k.clone(), a - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// Cumulative histogram buckets `(le, count)` of the samples of a `_bucket` metric whose labels
/// match `filter`, summed over the other labels, sorted by `le`.
pub fn buckets(samples: &[Sample], filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples {
        if !filter
            .iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        {
            continue;
        }
        let Some(le) = s.labels.get("le").and_then(|l| parse_value(l)) else {
            continue;
        };
        // f64 keys: order by the bits of non-negative floats (bucket bounds are >= 0).
        let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
        e.1 += s.value;
    }
    let mut v: Vec<(f64, f64)> = by_le.into_values().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Bucket counts of `after` minus those of `before` (the observations in between).
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, a)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (*le, a - b)
        })
        .collect()
}

/// Upper bound of the bucket holding quantile `q` of cumulative `buckets` (None without
/// observations; infinite when it falls in the +Inf bucket).
pub fn quantile_bound(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    buckets.iter().find(|(_, c)| *c >= rank).map(|(le, _)| *le)
}

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40
apiserver_request_total{code="409",component="apiserver",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 3
apiserver_request_total_other{code="200"} 99
apiserver_request_duration_seconds_bucket{le="0.1"} 5
"#;

    #[test]
    fn counters_are_summed_by_the_labels_asked() {
        let s = samples(API, "apiserver_request_total").unwrap();
        assert_eq!(s.len(), 3, "the _other metric is a different one");
        let by = sum_by(&s, &["verb", "resource"]);
        assert_eq!(by[&vec!["LIST".to_string(), "pods".to_string()]], 15.0);
        assert_eq!(by[&vec!["PUT".to_string(), "leases".to_string()]], 40.0);
    }

    #[test]
    fn deltas_keep_only_what_grew() {
        let before = sum_by(
            &samples(API, "apiserver_request_total").unwrap(),
            &["resource"],
        );
        let later = API.replace("} 12", "} 20");
        let after = sum_by(
            &samples(&later, "apiserver_request_total").unwrap(),
            &["resource"],
        );
        let d = delta(&before, &after);
        assert_eq!(d.len(), 1);
        assert_eq!(d[&vec!["pods".to_string()]], 8.0);
    }

    #[test]
    fn escaped_label_values_and_bad_lines() {
        let s = samples(r#"m{a="x\"y,z}",b="2"} 1.5"#, "m").unwrap();
        assert_eq!(s[0].labels["a"], "x\"y,z}");
        assert_eq!(s[0].labels["b"], "2");
        assert_eq!(s[0].value, 1.5);
        assert_eq!(
            samples("m{a=\"x\" 1", "m"),
            Err(ExpositionError::Labels { line: 1 })
        );
        assert_eq!(
            samples("m{a=\"x\"} NaNa", "m"),
            Err(ExpositionError::Value {
                line: 1,
                value: "NaNa".into()
            })
        );
    }

    #[test]
    fn p99_is_the_bound_of_the_bucket_that_holds_it() {
        let text = r#"d_bucket{controller="a",le="0.001"} 50
d_bucket{controller="a",le="0.01"} 98
d_bucket{controller="a",le="0.1"} 100
d_bucket{controller="a",le="+Inf"} 100
d_bucket{controller="b",le="0.001"} 0
d_bucket{controller="b",le="0.01"} 0
d_bucket{controller="b",le="0.1"} 0
d_bucket{controller="b",le="+Inf"} 10
"#;
        let s = samples(text, "d_bucket").unwrap();
        let a = buckets(&s, &[("controller", "a")]);
        assert_eq!(quantile_bound(&a, 0.99), Some(0.1));
        assert_eq!(quantile_bound(&a, 0.5), Some(0.001));
        let b = buckets(&s, &[("controller", "b")]);
        assert_eq!(quantile_bound(&b, 0.99), Some(f64::INFINITY));
        let none = bucket_delta(&a, &a);
        assert_eq!(
            quantile_bound(&none, 0.99),
            None,
            "no observations in between"
        );
        let both = buckets(&s, &[]);
        assert_eq!(both.last(), Some(&(f64::INFINITY, 110.0)));
    }

    #[test]
    fn rss_comes_from_proc_status() {
        let status = "Name:\tringshift-operator\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\n";
        assert_eq!(vm_rss_kib(status), Some(51234));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
    }
}
