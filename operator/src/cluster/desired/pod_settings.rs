//! `spec.pod` applied to the members' pod template: labels and annotations, scheduling
//! (nodeSelector, affinity, tolerations, topology spread, priority) and image pull Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::names;
use crate::crd::PodSettings;

/// Topology key of the default spread: one member more on a node than on another at most.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// Pod label keys a user may not set: the operator's (they select the members and name the
/// cluster) and the StatefulSet controller's (revision and identity of each pod).
const RESERVED_LABELS: &[&str] = &[
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];
/// Prefix of every label the operator sets or may set later.
pub const RESERVED_LABEL_PREFIX: &str = "ringshift.dev/";

/// Label keys a user may not put on the member pods, as listed in the CRD's rule.
pub fn reserved_label_keys() -> &'static [&'static str] {
    RESERVED_LABELS
}

/// Whether `key` is a label the operator or the StatefulSet controller owns.
pub fn is_reserved_label(key: &str) -> bool {
    RESERVED_LABELS.contains(&key) || key.starts_with(RESERVED_LABEL_PREFIX)
}

/// The members' labels: the user's, then the operator's over them (validation refuses a
/// reserved key; should one get here anyway, the selector still holds).
pub fn pod_labels(cluster: &str, settings: Option<&PodSettings>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = settings
        .map(|s| {
            s.labels
                .iter()
                .filter(|(k, _)| !is_reserved_label(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    labels.extend(names::labels(cluster));
    labels
}

/// The members' pod template metadata.
pub fn pod_metadata(cluster: &str, settings: Option<&PodSettings>) -> ObjectMeta {
    ObjectMeta {
        labels: Some(pod_labels(cluster, settings)),
        annotations: settings
            .filter(|s| !s.annotations.is_empty())
            .map(|s| s.annotations.clone()),
        ..Default::default()
    }
}

/// Spread when `spec.pod.topologySpreadConstraints` is unset: at most one member more on any
/// node than on another, as a preference (a single-node cluster still runs every member).
pub fn default_spread(cluster: &str) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: HOSTNAME_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(names::selector_labels(cluster)),
            ..Default::default()
        }),
        ..Default::default()
    }]
}

/// Puts the scheduling fields of `settings` on `pod`.
pub fn apply_scheduling(cluster: &str, settings: Option<&PodSettings>, pod: &mut PodSpec) {
    let spread = settings
        .and_then(|s| s.topology_spread_constraints.clone())
        .unwrap_or_else(|| default_spread(cluster));
    pod.topology_spread_constraints = (!spread.is_empty()).then_some(spread);
    let Some(s) = settings else { return };
    pod.node_selector = (!s.node_selector.is_empty()).then(|| s.node_selector.clone());
    pod.affinity = s.affinity.clone();
    pod.tolerations = (!s.tolerations.is_empty()).then(|| s.tolerations.clone());
    pod.priority_class_name = s.priority_class_name.clone();
    pod.image_pull_secrets =
        (!s.image_pull_secrets.is_empty()).then(|| s.image_pull_secrets.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: serde_json::Value) -> PodSettings {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn user_labels_join_the_operators_which_win() {
        let s = settings(serde_json::json!({"labels": {
            "team": "cache", "app.kubernetes.io/name": "mine", "ringshift.dev/cluster": "other"
        }}));
        let l = pod_labels("demo", Some(&s));
        assert_eq!(l["team"], "cache");
        assert_eq!(l["app.kubernetes.io/name"], "ringshift-node");
        assert_eq!(l["ringshift.dev/cluster"], "demo");
        for (k, v) in names::selector_labels("demo") {
            assert_eq!(l.get(&k), Some(&v));
        }
        assert_eq!(pod_labels("demo", None), names::labels("demo"));
    }

    #[test]
    fn reserved_keys_are_the_operators_and_the_statefulset_controllers() {
        for k in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "ringshift.dev/cluster",
            "ringshift.dev/anything",
            "controller-revision-hash",
            "statefulset.kubernetes.io/pod-name",
            "apps.kubernetes.io/pod-index",
        ] {
            assert!(is_reserved_label(k), "{k}");
        }
        for k in [
            "team",
            "app.kubernetes.io/part-of",
            "example.com/ringshift.dev",
        ] {
            assert!(!is_reserved_label(k), "{k}");
        }
        for (k, _) in names::labels("demo") {
            assert!(is_reserved_label(&k), "operator label {k} must be reserved");
        }
    }

    #[test]
    fn unset_spread_is_one_per_host_preferred_and_an_empty_list_is_none() {
        let mut pod = PodSpec::default();
        apply_scheduling("demo", None, &mut pod);
        let spread = pod.topology_spread_constraints.clone().unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].max_skew, 1);
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
        assert_eq!(
            spread[0].label_selector.as_ref().unwrap().match_labels,
            Some(names::selector_labels("demo"))
        );
        assert!(pod.node_selector.is_none() && pod.affinity.is_none());
        assert!(pod.tolerations.is_none() && pod.priority_class_name.is_none());

        let mut pod = PodSpec::default();
        let none = settings(serde_json::json!({"topologySpreadConstraints": []}));
        apply_scheduling("demo", Some(&none), &mut pod);
        assert!(pod.topology_spread_constraints.is_none());

        let mut pod = PodSpec::default();
        let zone = settings(serde_json::json!({"topologySpreadConstraints": [{
            "maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule"
        }]}));
        apply_scheduling("demo", Some(&zone), &mut pod);
        let spread = pod.topology_spread_constraints.unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
    }
}
