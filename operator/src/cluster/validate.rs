//! Validation of a ShardCluster spec: what the schema cannot say, and again
//! what the CRD's CEL rules (crd/rules.rs) enforce (objects stored before a rule
//! existed still reach the operator), with reasons a person can act on.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::desired::names;
use crate::cluster::desired::pod_settings::is_reserved_label;
use crate::cluster::desired::statefulset::same_storage;
use crate::cluster::desired::tuning::{self, Tuning, memory_quantity};
use crate::crd::{DEFAULT_WEIGHT, ShardClusterSpec, StorageSpec};
use crate::duration::parse_duration;

/// Largest vnodes the ring accepts.
pub const MAX_VNODES: i32 = 1024;
/// Largest member count.
pub const MAX_REPLICAS: i32 = 1000;
/// Largest member weight.
pub const MAX_WEIGHT: i32 = 100_000;
/// Longest write-pause budget: the budget bounds how long clients' commands hang during a
/// cutover; beyond a minute a client is better served by an error and a retry.
pub const MAX_WRITE_PAUSE: Duration = Duration::from_secs(60);
/// Longest cluster name: Kubernetes labels each StatefulSet pod with `<name>-<revision hash>`
/// (at most 63 characters), so StatefulSet names stay within 52.
pub const MAX_NAME: usize = 52;

/// One reason the operator cannot act on a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason for conditions and Events.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Invalid {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A member of the desired ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredMember {
    /// Pod name.
    pub name: String,
    /// Weight on the ring (0 when drained).
    pub weight: u32,
}

/// A spec the operator can act on, with its strings parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    /// Members of the desired ring, by ordinal.
    pub members: Vec<DesiredMember>,
    /// Vnodes of the ring.
    pub vnodes: u16,
    /// Longest client pause of a cutover.
    pub write_pause_budget: Duration,
    /// Retention of a source's copy after the commit.
    pub source_retention: Duration,
    /// Retention of unread change-log records.
    pub change_log_retention: Duration,
    /// Lag under which catch-up proceeds to cutover.
    pub lag_threshold_records: u64,
    /// Copy bandwidth per move; unlimited when None.
    pub bandwidth_bytes_per_second: Option<u64>,
    /// Node tuning with the node's defaults applied.
    pub tuning: Tuning,
}

/// What was observed that constrains the spec.
#[derive(Clone, Debug, Default)]
pub struct Existing<'a> {
    /// Storage of the StatefulSet, when it exists.
    pub storage: Option<&'a StorageSpec>,
    /// Vnodes of the ring in the ShardPlacement, when it exists.
    pub vnodes: Option<u16>,
    /// The data-port password Secret the spec names, as found (None: not looked up).
    pub password_secret: Option<SecretLookup>,
}

/// Whether `name` (a valid object name) can be a label value, as the cluster label of its
/// pods and volumes must be.
pub fn fits_label_value(name: &str) -> bool {
    name.len() <= 63
}

/// A Secret the spec refers to, as the controller found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretLookup {
    /// No Secret of that name in the cluster's namespace.
    Missing,
    /// The Secret exists with these keys.
    Keys(Vec<String>),
}

/// The value of a Kubernetes quantity (`1Gi`, `500m`, `2`, `1e3`) in base units, `None` when it
/// is not one.
pub fn quantity_value(q: &str) -> Option<f64> {
    let bytes = q.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let number = &q[..i];
    let mantissa = &q[digits_start..i];
    if mantissa.is_empty() || mantissa == "." || mantissa.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match &q[i..] {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().ok()?;
            10f64.powi(e)
        }
        _ => return None,
    };
    Some(value * scale).filter(|v| v.is_finite())
}

fn check_resources(spec: &ShardClusterSpec, errors: &mut Vec<Invalid>) {
    let Some(r) = &spec.resources else { return };
    let mut bad = Vec::new();
    for (kind, map) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (name, q) in map {
            match quantity_value(&q.0) {
                Some(v) if v >= 0.0 => {}
                _ => bad.push(format!(
                    "spec.resources.{kind}.{name}: {:?} is not a non-negative quantity (e.g. \
                     500m, 1Gi)",
                    q.0
                )),
            }
        }
    }
    for (name, req) in &r.requests {
        let limit = r.limits.get(name).and_then(|l| quantity_value(&l.0));
        if let (Some(req_v), Some(lim_v)) = (quantity_value(&req.0), limit)
            && req_v > lim_v
        {
            bad.push(format!(
                "spec.resources: the {name} request {} is above its limit {}",
                req.0, r.limits[name].0
            ));
        }
    }
    if !bad.is_empty() {
        errors.push(Invalid::new("InvalidResources", bad.join("; ")));
    }
}

/// Whether `s` is a label value (or a name part of a key): at most 63 characters,
/// alphanumerics with `-`, `_` or `.` inside.
fn is_label_name(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let b = s.as_bytes();
    s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Whether `key` is a label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && part.len() <= 63
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            })
    });
    prefix_ok && is_label_name(name, false)
}

fn check_pod(spec: &ShardClusterSpec, errors: &mut Vec<Invalid>) {
    let Some(pod) = &spec.pod else { return };
    let reserved: Vec<&str> = pod
        .labels
        .keys()
        .filter(|k| is_reserved_label(k))
        .map(String::as_str)
        .collect();
    if !reserved.is_empty() {
        errors.push(Invalid::new(
            "ReservedPodLabel",
            format!(
                "spec.pod.labels sets {reserved:?}: the operator and the StatefulSet controller \
                 own those labels (they select the members); remove them"
            ),
        ));
    }
    let mut bad = Vec::new();
    for (k, v) in &pod.labels {
        if !is_qualified_name(k) {
            bad.push(format!("spec.pod.labels: {k:?} is not a label key"));
        }
        if !is_label_name(v, true) {
            bad.push(format!("spec.pod.labels.{k}: {v:?} is not a label value"));
        }
    }
    for (field, map) in [
        ("annotations", &pod.annotations),
        ("nodeSelector", &pod.node_selector),
    ] {
        for k in map.keys().filter(|k| !is_qualified_name(k)) {
            bad.push(format!("spec.pod.{field}: {k:?} is not a qualified name"));
        }
    }
    for (k, v) in pod
        .node_selector
        .iter()
        .filter(|(_, v)| !is_label_name(v, true))
    {
        bad.push(format!(
            "spec.pod.nodeSelector.{k}: {v:?} is not a label value"
        ));
    }
    if pod.priority_class_name.as_deref() == Some("") {
        bad.push("spec.pod.priorityClassName must not be empty; unset it instead".into());
    }
    if pod.image_pull_secrets.iter().any(|r| r.name.is_empty()) {
        bad.push("spec.pod.imagePullSecrets: every entry needs a name".into());
    }
    if !bad.is_empty() {
        errors.push(Invalid::new("InvalidPodTemplate", bad.join("; ")));
    }
}

fn check_service(spec: &ShardClusterSpec, errors: &mut Vec<Invalid>) {
    if let Some(svc) = &spec.service {
        let bad: Vec<String> = svc
            .annotations
            .keys()
            .filter(|k| !is_qualified_name(k))
            .map(|k| format!("spec.service.annotations: {k:?} is not a qualified name"))
            .collect();
        if !bad.is_empty() {
            errors.push(Invalid::new("InvalidService", bad.join("; ")));
        }
    }
}

/// The resolved tuning; a bad size, or a memory limit the node's buffers cannot fit in, is
/// reported.
fn check_tuning(spec: &ShardClusterSpec, errors: &mut Vec<Invalid>) -> Tuning {
    let t = match tuning::resolve(spec.tuning.as_ref()) {
        Ok(t) => t,
        Err(bad) => {
            errors.push(Invalid::new("InvalidTuning", bad.join("; ")));
            return Tuning::default();
        }
    };
    // Only a limit written next to written tuning is checked: a limit that predates
    // spec.tuning is the user's earlier choice and keeps working as it did.
    let limit = spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.get("memory"))
        .filter(|_| spec.tuning.is_some());
    if let Some(limit) = limit
        && let Some(v) = quantity_value(&limit.0)
        && v < t.buffer_bytes() as f64
    {
        errors.push(Invalid::new(
            "TuningExceedsMemoryLimit",
            format!(
                "spec.resources.limits.memory {} is below the node's read cache plus 4 \
                 memtables ({} of spec.tuning): the node would be killed for using what it was \
                 told to; raise the limit (about {} with the rest of the process) or shrink \
                 spec.tuning",
                limit.0,
                memory_quantity(t.buffer_bytes()).0,
                memory_quantity(t.memory_bytes()).0
            ),
        ));
    }
    t
}

fn duration(field: &str, value: &str, errors: &mut Vec<Invalid>) -> Duration {
    match parse_duration(value) {
        Ok(d) => d,
        Err(e) => {
            errors.push(Invalid::new(
                "InvalidDuration",
                format!("spec.migration.{field}: {e}"),
            ));
            Duration::ZERO
        }
    }
}

fn number(field: &str, value: &str, errors: &mut Vec<Invalid>) -> u64 {
    match value.parse::<u64>() {
        Ok(n) => n,
        Err(_) => {
            errors.push(Invalid::new(
                "InvalidNumber",
                format!("spec.migration.{field}: {value:?} is not a decimal number below 2^64"),
            ));
            0
        }
    }
}

/// Validates `spec` of the cluster named `cluster` against what exists.
pub fn validate(
    cluster: &str,
    spec: &ShardClusterSpec,
    existing: &Existing<'_>,
) -> Result<ValidSpec, Vec<Invalid>> {
    let mut errors = Vec::new();
    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        errors.push(Invalid::new(
            "ReplicasOutOfRange",
            format!(
                "spec.replicas is {}; it must be between 1 and {MAX_REPLICAS}",
                spec.replicas
            ),
        ));
    }
    if !(1..=MAX_VNODES).contains(&spec.vnodes) {
        errors.push(Invalid::new(
            "VnodesOutOfRange",
            format!(
                "spec.vnodes is {}; it must be between 1 and {MAX_VNODES}",
                spec.vnodes
            ),
        ));
    }
    let vnodes = u16::try_from(spec.vnodes.clamp(1, MAX_VNODES)).unwrap_or(1);
    if let Some(current) = existing.vnodes
        && current != vnodes
        && (1..=MAX_VNODES).contains(&spec.vnodes)
    {
        errors.push(Invalid::new(
            "VnodesImmutable",
            format!(
                "spec.vnodes changed from {current} to {}; the ring's vnodes are fixed when the \
                 cluster is created: set it back to {current}",
                spec.vnodes
            ),
        ));
    }
    if spec.replication_factor != 1 {
        errors.push(Invalid::new(
            "ReplicationFactorUnsupported",
            format!(
                "spec.replicationFactor is {}; v1alpha1 supports only 1 (replication has not \
                 landed yet): set it to 1",
                spec.replication_factor
            ),
        ));
    }
    if let Some(live) = existing.storage
        && !same_storage(live, &spec.storage)
    {
        errors.push(Invalid::new(
            "StorageImmutable",
            format!(
                "spec.storage changed (size {} -> {}, class {:?} -> {:?}); a StatefulSet's volume \
                 claim templates are immutable: set spec.storage back",
                live.size.0,
                spec.storage.size.0,
                live.storage_class_name,
                spec.storage.storage_class_name
            ),
        ));
    }

    if cluster.len() > MAX_NAME || !cluster.starts_with(|c: char| c.is_ascii_lowercase()) {
        errors.push(Invalid::new(
            "InvalidName",
            format!(
                "the name {cluster:?} cannot name a StatefulSet and its Services: use at most \
                 {MAX_NAME} characters starting with a letter (recreate the ShardCluster)"
            ),
        ));
    }
    if !quantity_value(&spec.storage.size.0).is_some_and(|v| v > 0.0) {
        errors.push(Invalid::new(
            "InvalidStorageSize",
            format!(
                "spec.storage.size {:?} is not a positive quantity (e.g. 1Gi)",
                spec.storage.size.0
            ),
        ));
    }
    check_resources(spec, &mut errors);
    check_pod(spec, &mut errors);
    check_service(spec, &mut errors);
    let tuning = check_tuning(spec, &mut errors);
    if let Some(r) = spec
        .auth
        .as_ref()
        .and_then(|a| a.password_secret_ref.as_ref())
    {
        let missing = match &existing.password_secret {
            Some(SecretLookup::Missing) => Some(format!(
                "spec.auth.passwordSecretRef: Secret {:?} does not exist in this namespace; \
                 create it with the password under key {:?}",
                r.name, r.key
            )),
            Some(SecretLookup::Keys(keys)) if !keys.contains(&r.key) => Some(format!(
                "spec.auth.passwordSecretRef: Secret {:?} has no key {:?} (it has {keys:?})",
                r.name, r.key
            )),
            _ if r.key.is_empty() => {
                Some("spec.auth.passwordSecretRef.key must not be empty".to_string())
            }
            _ => None,
        };
        if let Some(m) = missing {
            errors.push(Invalid::new("PasswordSecretMissing", m));
        }
    }

    let policy = &spec.migration;
    let write_pause_budget = duration("writePauseBudget", &policy.write_pause_budget, &mut errors);
    if write_pause_budget.is_zero() && parse_duration(&policy.write_pause_budget).is_ok() {
        errors.push(Invalid::new(
            "InvalidDuration",
            "spec.migration.writePauseBudget must be above zero: a cutover needs a pause",
        ));
    }
    if write_pause_budget > MAX_WRITE_PAUSE {
        errors.push(Invalid::new(
            "InvalidDuration",
            format!(
                "spec.migration.writePauseBudget {} is above the maximum of {}s: clients' \
                 commands would hang that long during a cutover",
                policy.write_pause_budget,
                MAX_WRITE_PAUSE.as_secs()
            ),
        ));
    }
    let source_retention = duration("sourceRetention", &policy.source_retention, &mut errors);
    let change_log_retention = duration(
        "changeLogRetention",
        &policy.change_log_retention,
        &mut errors,
    );
    let lag_threshold_records = number(
        "lagThresholdRecords",
        &policy.lag_threshold_records,
        &mut errors,
    );
    let bandwidth_bytes_per_second = policy
        .bandwidth_bytes_per_second
        .as_deref()
        .map(|b| number("bandwidthBytesPerSecond", b, &mut errors));
    if bandwidth_bytes_per_second == Some(0) {
        errors.push(Invalid::new(
            "InvalidNumber",
            "spec.migration.bandwidthBytesPerSecond is 0, which would stop every copy; unset it \
             for no limit",
        ));
    }
    if policy.max_concurrent_moves < 1 {
        errors.push(Invalid::new(
            "InvalidMigrationPolicy",
            "spec.migration.maxConcurrentMoves must be at least 1",
        ));
    }

    let mut intent: BTreeMap<&str, (i32, bool)> = BTreeMap::new();
    for m in &spec.members {
        if names::ordinal(cluster, &m.name).is_none() {
            errors.push(Invalid::new(
                "UnknownMember",
                format!(
                    "spec.members: {:?} is not a member name of this cluster (expected \
                     {cluster}-<ordinal>)",
                    m.name
                ),
            ));
        }
        if !(0..=MAX_WEIGHT).contains(&m.weight) {
            errors.push(Invalid::new(
                "WeightOutOfRange",
                format!(
                    "spec.members: weight of {} must be between 0 and {MAX_WEIGHT}",
                    m.name
                ),
            ));
        }
        if intent.insert(&m.name, (m.weight, m.drain)).is_some() {
            errors.push(Invalid::new(
                "DuplicateMember",
                format!("spec.members lists {} more than once", m.name),
            ));
        }
    }
    let members: Vec<DesiredMember> = (0..spec.replicas.clamp(0, MAX_REPLICAS))
        .map(|o| {
            let name = names::member(cluster, o);
            let (weight, drain) = intent
                .get(name.as_str())
                .copied()
                .unwrap_or((DEFAULT_WEIGHT, false));
            let weight = if drain {
                0
            } else {
                u32::try_from(weight.clamp(0, MAX_WEIGHT)).unwrap_or(0)
            };
            DesiredMember { name, weight }
        })
        .collect();
    if !members.is_empty() && members.iter().all(|m| m.weight == 0) {
        errors.push(Invalid::new(
            "ZeroTotalWeight",
            "every member is drained or has weight 0, so no member could own the data: give at \
             least one member a weight",
        ));
    }

    if errors.is_empty() {
        Ok(ValidSpec {
            members,
            vnodes,
            write_pause_budget,
            source_retention,
            change_log_retention,
            lag_threshold_records,
            bandwidth_bytes_per_second,
            tuning,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> ShardClusterSpec {
        serde_json::from_value(v).unwrap()
    }

    fn reasons(r: Result<ValidSpec, Vec<Invalid>>) -> Vec<&'static str> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.reason)
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let v = validate("demo", &spec(json!({})), &Existing::default()).unwrap();
        assert_eq!(v.members.len(), 3);
        assert!(v.members.iter().all(|m| m.weight == 100));
        assert_eq!(v.vnodes, 64);
        assert_eq!(v.write_pause_budget, Duration::from_millis(250));
        assert_eq!(v.source_retention, Duration::from_secs(600));
        assert_eq!(v.lag_threshold_records, 1000);
        assert_eq!(v.bandwidth_bytes_per_second, None);
    }

    #[test]
    fn weights_and_drains_shape_the_desired_members() {
        let s = spec(json!({"replicas": 3, "members": [
            {"name": "demo-1", "weight": 300},
            {"name": "demo-2", "drain": true, "weight": 50},
            {"name": "demo-7", "weight": 5},
        ]}));
        let v = validate("demo", &s, &Existing::default()).unwrap();
        let w: Vec<(String, u32)> = v.members.into_iter().map(|m| (m.name, m.weight)).collect();
        assert_eq!(
            w,
            vec![
                ("demo-0".into(), 100),
                ("demo-1".into(), 300),
                ("demo-2".into(), 0)
            ]
        );
    }

    #[test]
    fn replication_factor_above_one_is_refused_with_a_reason() {
        let r = validate(
            "demo",
            &spec(json!({"replicationFactor": 3})),
            &Existing::default(),
        );
        let errs = r.unwrap_err();
        assert_eq!(errs[0].reason, "ReplicationFactorUnsupported");
        assert!(errs[0].message.contains("set it to 1"));
    }

    #[test]
    fn out_of_range_and_unparsable_values_are_reported_together() {
        let s = spec(json!({"vnodes": 5000, "replicas": 0, "migration": {
            "writePauseBudget": "soon", "lagThresholdRecords": "-1", "bandwidthBytesPerSecond": "0"
        }}));
        let r = reasons(validate("demo", &s, &Existing::default()));
        for want in [
            "VnodesOutOfRange",
            "ReplicasOutOfRange",
            "InvalidDuration",
            "InvalidNumber",
        ] {
            assert!(r.contains(&want), "{want} missing from {r:?}");
        }
    }

    #[test]
    fn a_write_pause_budget_above_a_minute_is_refused() {
        for (budget, ok) in [
            ("60s", true),
            ("1m", true),
            ("61s", false),
            ("1000000h", false),
        ] {
            let s = spec(json!({"migration": {"writePauseBudget": budget}}));
            let r = validate("demo", &s, &Existing::default());
            assert_eq!(r.is_ok(), ok, "{budget}: {r:?}");
        }
    }

    #[test]
    fn zero_total_weight_is_refused() {
        let s = spec(json!({"replicas": 2, "members": [
            {"name": "demo-0", "drain": true}, {"name": "demo-1", "weight": 0}
        ]}));
        assert_eq!(
            reasons(validate("demo", &s, &Existing::default())),
            vec!["ZeroTotalWeight"]
        );
    }

    #[test]
    fn unknown_member_names_are_refused() {
        let s = spec(json!({"members": [{"name": "dmeo-1", "weight": 10}]}));
        assert_eq!(
            reasons(validate("demo", &s, &Existing::default())),
            vec!["UnknownMember"]
        );
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(quantity_value("1Gi"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("2"), Some(2.0));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("1.5G"), Some(1.5e9));
        assert_eq!(quantity_value("-1Gi"), Some(-1024.0 * 1024.0 * 1024.0));
        for bad in [
            "", "lots", "1GB", "Gi", ".", "1..2", "1 Gi", "0x10", "1e", "1e999999",
        ] {
            assert_eq!(quantity_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_sizes_resources_and_secrets_are_checked() {
        let long = "a".repeat(MAX_NAME + 1);
        assert_eq!(
            reasons(validate(&long, &spec(json!({})), &Existing::default())),
            vec!["InvalidName"]
        );
        assert_eq!(
            reasons(validate("9lives", &spec(json!({})), &Existing::default())),
            vec!["InvalidName"]
        );
        for size in ["lots", "0", "-1Gi"] {
            let s = spec(json!({"storage": {"size": size}}));
            assert_eq!(
                reasons(validate("demo", &s, &Existing::default())),
                vec!["InvalidStorageSize"],
                "{size}"
            );
        }
        let s = spec(json!({"resources": {"requests": {"cpu": "lots"}}}));
        assert_eq!(
            reasons(validate("demo", &s, &Existing::default())),
            vec!["InvalidResources"]
        );
        let s = spec(
            json!({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}),
        );
        let e = validate("demo", &s, &Existing::default()).unwrap_err();
        assert!(e[0].message.contains("above its limit"), "{}", e[0].message);
        let s = spec(json!({"resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}));
        assert!(validate("demo", &s, &Existing::default()).is_ok());

        let s = spec(json!({"auth": {"passwordSecretRef": {"name": "pw"}}}));
        let with = |l: SecretLookup| Existing {
            password_secret: Some(l),
            ..Default::default()
        };
        assert_eq!(
            reasons(validate("demo", &s, &with(SecretLookup::Missing))),
            vec!["PasswordSecretMissing"]
        );
        assert_eq!(
            reasons(validate(
                "demo",
                &s,
                &with(SecretLookup::Keys(vec!["pass".into()]))
            )),
            vec!["PasswordSecretMissing"]
        );
        assert!(
            validate(
                "demo",
                &s,
                &with(SecretLookup::Keys(vec!["password".into()]))
            )
            .is_ok()
        );
    }

    #[test]
    fn reserved_pod_labels_are_refused_with_their_names() {
        for key in [
            "app.kubernetes.io/name",
            "ringshift.dev/cluster",
            "app.kubernetes.io/managed-by",
            "controller-revision-hash",
        ] {
            let s = spec(json!({"pod": {"labels": {key: "x", "team": "cache"}}}));
            let e = validate("demo", &s, &Existing::default()).unwrap_err();
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].reason, "ReservedPodLabel");
            assert!(e[0].message.contains(key), "{}", e[0].message);
            assert!(!e[0].message.contains("team"), "{}", e[0].message);
        }
        let s = spec(json!({"pod": {"labels": {"team": "cache", "example.com/tier": "gold"}}}));
        assert!(validate("demo", &s, &Existing::default()).is_ok());
    }

    #[test]
    fn malformed_pod_and_service_metadata_is_refused() {
        for pod in [
            json!({"labels": {"bad key!": "x"}}),
            json!({"labels": {"team": "-starts-with-dash"}}),
            json!({"labels": {"Example.com/x": "y"}}),
            json!({"annotations": {"/no-prefix": "y"}}),
            json!({"nodeSelector": {"": "y"}}),
            json!({"nodeSelector": {"disk": "fast ssd"}}),
            json!({"priorityClassName": ""}),
            json!({"imagePullSecrets": [{"name": ""}]}),
        ] {
            let s = spec(json!({"pod": pod}));
            assert_eq!(
                reasons(validate("demo", &s, &Existing::default())),
                vec!["InvalidPodTemplate"],
                "{pod}"
            );
        }
        let s = spec(json!({"service": {"annotations": {"a b": "c"}}}));
        assert_eq!(
            reasons(validate("demo", &s, &Existing::default())),
            vec!["InvalidService"]
        );
        let s = spec(json!({"pod": {
            "labels": {"team": "", "example.com/a.b_c-d": "v.1"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "anything at all: ok"},
            "nodeSelector": {"kubernetes.io/hostname": "local"}
        }, "service": {"type": "LoadBalancer"}}));
        assert!(validate("demo", &s, &Existing::default()).is_ok());
    }

    #[test]
    fn tuning_is_resolved_or_refused() {
        let v = validate("demo", &spec(json!({})), &Existing::default()).unwrap();
        assert_eq!(v.tuning, Tuning::default());
        let s = spec(json!({"tuning": {"cacheBytes": "64Mi", "durability": "None"}}));
        let v = validate("demo", &s, &Existing::default()).unwrap();
        assert_eq!(v.tuning.cache_bytes, 64 << 20);
        assert_eq!(v.tuning.memtable_bytes, tuning::DEFAULT_MEMTABLE_BYTES);
        let s = spec(json!({"tuning": {"memtableBytes": "100k", "cacheBytes": "a lot"}}));
        let e = validate("demo", &s, &Existing::default()).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].reason, "InvalidTuning");
        assert!(e[0].message.contains("memtableBytes") && e[0].message.contains("cacheBytes"));
    }

    #[test]
    fn a_memory_limit_below_the_tunings_buffers_is_refused() {
        // 1Gi cache + 4 x 64Mi = 1280Mi of buffers.
        let s = spec(json!({
            "tuning": {"cacheBytes": "1Gi", "memtableBytes": "64Mi"},
            "resources": {"limits": {"memory": "1Gi"}}
        }));
        let e = validate("demo", &s, &Existing::default()).unwrap_err();
        assert_eq!(e[0].reason, "TuningExceedsMemoryLimit");
        assert!(e[0].message.contains("1280Mi"), "{}", e[0].message);
        let s = spec(json!({
            "tuning": {"cacheBytes": "1Gi", "memtableBytes": "64Mi"},
            "resources": {"limits": {"memory": "2Gi"}}
        }));
        assert!(validate("demo", &s, &Existing::default()).is_ok());
        // A limit written before spec.tuning existed is left as it is.
        let s = spec(json!({"resources": {"limits": {"memory": "128Mi"}}}));
        assert!(validate("demo", &s, &Existing::default()).is_ok());
    }

    #[test]
    fn storage_and_vnodes_cannot_change_after_creation() {
        let live = StorageSpec {
            size: Quantity("1Gi".into()),
            storage_class_name: None,
        };
        let s = spec(json!({"vnodes": 32, "storage": {"size": "2Gi"}}));
        let r = reasons(validate(
            "demo",
            &s,
            &Existing {
                storage: Some(&live),
                vnodes: Some(64),
                ..Default::default()
            },
        ));
        assert_eq!(r, vec!["VnodesImmutable", "StorageImmutable"]);
        let same = spec(json!({"storage": {"size": "1Gi"}}));
        assert!(
            validate(
                "demo",
                &same,
                &Existing {
                    storage: Some(&live),
                    vnodes: Some(64),
                    ..Default::default()
                }
            )
            .is_ok()
        );
    }
}
