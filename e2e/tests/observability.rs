//! The dashboard, the alert rules and the READMEs' metric tables against the metrics the
//! operator and the node register: every PromQL expression may only name a series one of the
//! two registries exposes (or Prometheus's own `up`), and the tables are generated from the
//! registries (`RINGSHIFT_UPDATE_DOCS=1` rewrites them). No cluster needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ringshift_e2e::support::promql::{dashboard_exprs, dashboard_path, metric_names};
use ringshift_e2e::support::repo_root;

/// Series Prometheus adds itself when it scrapes a target.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// One metric family as an exposition shows it.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    labels: BTreeSet<String>,
    series: BTreeSet<String>,
}

/// Families by name from a text exposition.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.entry(name.to_string()).or_default().kind = kind.to_string();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().help = help.to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let series = &line[..end];
            let family = out
                .iter_mut()
                .filter(|(name, _)| series.starts_with(name.as_str()))
                .max_by_key(|(name, _)| name.len());
            let Some((_, f)) = family else { continue };
            f.series.insert(series.to_string());
            if let Some(labels) = line[end..].strip_prefix('{') {
                let labels = labels.split('}').next().unwrap_or("");
                for pair in labels.split(',') {
                    if let Some((k, _)) = pair.split_once('=')
                        && k != "le"
                    {
                        f.labels.insert(k.to_string());
                    }
                }
            }
        }
    }
    out
}

fn operator_families() -> BTreeMap<String, Family> {
    let m = ringshift_operator::metrics::Metrics::new();
    m.touch_every_family();
    families(&m.encode().expect("operator exposition"))
}

fn node_families() -> BTreeMap<String, Family> {
    let mut m = ringshift_node::metrics::Metrics::new();
    m.register_commit_latency(Default::default());
    m.touch_every_family();
    families(&m.encode())
}

fn exposed_series() -> BTreeSet<String> {
    operator_families()
        .into_values()
        .chain(node_families().into_values())
        .flat_map(|f| f.series)
        .chain(PROMETHEUS_OWN.iter().map(|s| s.to_string()))
        .collect()
}

/// Every alert expression of the rule file.
fn rule_exprs(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("reading the rules");
    let rules: serde_json::Value = serde_saphyr::from_str(&text).expect("the rules are YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or("?").to_string(),
                r["expr"].as_str().expect("an alert's expr").to_string(),
            )
        })
        .collect()
}

fn unknown(exprs: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let exposed = exposed_series();
    let mut bad = Vec::new();
    for (what, expr) in exprs {
        let names = metric_names(&expr);
        if names.is_empty() {
            bad.push(format!("{what}: selects no metric: {expr}"));
        }
        for n in names.iter().filter(|n| !exposed.contains(*n)) {
            bad.push(format!(
                "{what}: {n} is exposed by neither registry ({expr})"
            ));
        }
    }
    bad
}

#[test]
fn every_dashboard_expression_uses_exposed_metrics() {
    let root = repo_root();
    for path in [
        root.join("deploy/grafana/ringshift-dashboard.json"),
        root.join("charts/ringshift/files/ringshift-dashboard.json"),
    ] {
        let exprs = dashboard_exprs(&path).expect("the dashboard");
        assert!(
            exprs.len() >= 15,
            "{}: {} expressions",
            path.display(),
            exprs.len()
        );
        let bad = unknown(exprs.into_iter().map(|e| ("dashboard".to_string(), e)));
        assert!(bad.is_empty(), "{}:\n{}", path.display(), bad.join("\n"));
    }
}

#[test]
fn every_alert_expression_uses_exposed_metrics() {
    let root = repo_root();
    for path in [
        root.join("deploy/prometheus/ringshift.rules.yaml"),
        root.join("charts/ringshift/files/ringshift.rules.yaml"),
    ] {
        let exprs = rule_exprs(&path);
        let alerts: BTreeSet<&str> = exprs.iter().map(|(a, _)| a.as_str()).collect();
        for want in [
            "RingshiftMigrationFailed",
            "RingshiftCutoverAbortsRising",
            "RingshiftLagNotDraining",
            "RingshiftWritePauseOverBudget",
            "RingshiftTargetShortOfRoom",
            "RingshiftNoOperatorLeader",
            "RingshiftMemberDegraded",
            "RingshiftNodeDown",
        ] {
            assert!(alerts.contains(want), "{}: no {want}", path.display());
        }
        let bad = unknown(exprs);
        assert!(bad.is_empty(), "{}:\n{}", path.display(), bad.join("\n"));
    }
}

/// The metric table of a registry, as the READMEs carry it.
fn table(families: &BTreeMap<String, Family>) -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for (name, f) in families {
        let shown = match f.kind.as_str() {
            "counter" => format!("{name}_total"),
            _ => name.clone(),
        };
        let labels: Vec<&str> = f.labels.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "| `{shown}` | {} | {} | {} |\n",
            f.kind,
            labels.join(", "),
            f.help.trim_end_matches('.')
        ));
    }
    out
}

const BEGIN: &str =
    "<!-- metrics table: generated from the registry by e2e/tests/observability.rs -->\n";
const END: &str = "<!-- end of metrics table -->";

fn check_table(readme: &str, families: &BTreeMap<String, Family>) {
    let path = repo_root().join(readme);
    let text = std::fs::read_to_string(&path).expect("reading the README");
    let want = table(families);
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{readme} has no metrics table markers");
    };
    let current = &text[b + BEGIN.len()..e];
    if current == want {
        return;
    }
    if std::env::var("RINGSHIFT_UPDATE_DOCS").as_deref() == Ok("1") {
        let updated = format!("{}{BEGIN}{want}{}", &text[..b], &text[e..]);
        std::fs::write(&path, updated).expect("writing the README");
        return;
    }
    panic!(
        "{readme}'s metrics table differs from the registry; rerun with RINGSHIFT_UPDATE_DOCS=1.\n\
         want:\n{want}\nhave:\n{current}"
    );
}

#[test]
fn operator_readme_lists_the_operator_registry() {
    check_table("operator/README.md", &operator_families());
}

#[test]
fn node_readme_lists_the_node_registry() {
    check_table("node/README.md", &node_families());
}

/// The chart rendered by `helm template` (helm as deploy/render.sh finds it) with `args`.
fn render_chart(args: &[&str]) -> Vec<serde_json::Value> {
    let helm = ringshift_e2e::support::helm();
    let out = std::process::Command::new(&helm)
        .args(["template", "ringshift"])
        .arg(repo_root().join("charts/ringshift"))
        .args(["--namespace", "ringshift-system"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", helm.display()));
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("helm output is YAML");
    docs.into_iter().filter(|d| d.is_object()).collect()
}

#[test]
fn the_chart_ships_the_rules_dashboard_and_pod_monitor_behind_values() {
    let kinds = |docs: &[serde_json::Value]| -> Vec<String> {
        docs.iter()
            .filter_map(|d| d["kind"].as_str().map(String::from))
            .collect()
    };
    let plain = render_chart(&[]);
    for kind in ["PrometheusRule", "PodMonitor"] {
        assert!(
            !kinds(&plain).iter().any(|k| k == kind),
            "{kind} rendered by default"
        );
    }
    let on = render_chart(&[
        "--set",
        "prometheusRule.enabled=true,podMonitor.enabled=true,grafanaDashboard.enabled=true",
    ]);
    let one = |kind: &str| {
        let found: Vec<&serde_json::Value> = on.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "{kind}: {:?}", kinds(&on));
        found[0].clone()
    };
    // The PrometheusRule carries the rule file as is.
    let rules_text =
        std::fs::read_to_string(repo_root().join("deploy/prometheus/ringshift.rules.yaml"))
            .expect("rules");
    let rules: serde_json::Value = serde_saphyr::from_str(&rules_text).expect("rules YAML");
    assert_eq!(one("PrometheusRule")["spec"], rules);
    // The dashboard ConfigMap is labelled for Grafana's sidecar and holds the dashboard.
    let dashboard = on
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("a ConfigMap labelled grafana_dashboard: \"1\"");
    let shipped: serde_json::Value = serde_json::from_str(
        dashboard["data"]["ringshift-dashboard.json"]
            .as_str()
            .expect("dashboard data"),
    )
    .expect("the ConfigMap's dashboard is JSON");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).expect("dashboard"))
            .expect("dashboard JSON");
    assert_eq!(shipped, file);
    // The PodMonitor labels targets as the dashboard and the rules expect.
    let monitor = one("PodMonitor");
    let targets: BTreeSet<String> = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
        .as_array()
        .expect("relabelings")
        .iter()
        .filter_map(|r| r["targetLabel"].as_str().map(String::from))
        .collect();
    for label in ["cluster", "member", "ringshift_role"] {
        assert!(
            targets.contains(label),
            "PodMonitor sets no {label}: {targets:?}"
        );
    }
}
