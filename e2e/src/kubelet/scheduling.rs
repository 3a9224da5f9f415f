//! The scheduler's node filter, for the one node this kubelet serves: `nodeSelector` and
//! required node affinity against the Node's labels and name, so a pod that a real scheduler
//! would not place stays Pending here too (PodScheduled=False, reason Unschedulable) instead
//! of running. Preferred affinity, pod (anti-)affinity, topology spread, taints and resources
//! are not judged: with one untainted node they would only matter for anti-affinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

/// The message a real scheduler gives a pod that no node's labels match.
pub const NODE_MISMATCH: &str =
    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";

/// Ok when the pod may run on the node `name` with `labels`, else the scheduler's message.
pub fn fits(pod: &PodSpec, name: &str, labels: &BTreeMap<String, String>) -> Result<(), String> {
    let selector_ok = pod
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    // Terms are ORed; an absent requirement admits every node.
    let affinity_ok = required.is_none_or(|r| {
        r.node_selector_terms
            .iter()
            .any(|t| term_matches(t, name, labels))
    });
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(NODE_MISMATCH.to_string())
    }
}

/// A term's requirements are ANDed; a term with none matches no node (as in Kubernetes).
fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name);
            value.is_some() && requirement_matches(r, value)
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    let compare = |want: std::cmp::Ordering| match (value.and_then(number), values) {
        (Some(v), [bound]) => number(bound).is_some_and(|b| v.cmp(&b) == want),
        _ => false,
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> PodSpec {
        let mut spec = json!({"containers": []});
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), v.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(spec).unwrap()
    }

    fn node_labels() -> BTreeMap<String, String> {
        [
            ("kubernetes.io/hostname", "local"),
            ("kubernetes.io/os", "linux"),
            ("ringshift.dev/process-kubelet", "true"),
            ("cores", "8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn required(terms: serde_json::Value) -> PodSpec {
        pod(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    fn ok(p: &PodSpec) -> bool {
        fits(p, "local", &node_labels()).is_ok()
    }

    #[test]
    fn a_pod_without_constraints_fits() {
        assert!(ok(&pod(json!({}))));
        // Preferred affinity is a wish, not a filter.
        assert!(ok(&pod(json!({"affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {
                "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}))));
    }

    #[test]
    fn node_selector_needs_every_label() {
        assert!(ok(&pod(
            json!({"nodeSelector": {"kubernetes.io/os": "linux"}})
        )));
        assert!(ok(&pod(json!({"nodeSelector": {
            "kubernetes.io/os": "linux", "ringshift.dev/process-kubelet": "true"}}))));
        let e = fits(
            &pod(json!({"nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"}})),
            "local",
            &node_labels(),
        )
        .unwrap_err();
        assert_eq!(e, NODE_MISMATCH);
        assert!(!ok(&pod(
            json!({"nodeSelector": {"kubernetes.io/os": "windows"}})
        )));
    }

    #[test]
    fn required_node_affinity_terms_are_ored_and_requirements_anded() {
        let expr = |k: &str, op: &str, v: serde_json::Value| json!({"key": k, "operator": op, "values": v});
        let term = |exprs: Vec<serde_json::Value>| json!({"matchExpressions": exprs});
        assert!(ok(&required(json!([term(vec![expr(
            "kubernetes.io/os",
            "In",
            json!(["linux", "darwin"])
        )])]))));
        assert!(!ok(&required(json!([term(vec![expr(
            "kubernetes.io/os",
            "In",
            json!(["windows"])
        )])]))));
        assert!(ok(&required(json!([
            term(vec![expr("kubernetes.io/os", "In", json!(["windows"]))]),
            term(vec![expr("kubernetes.io/hostname", "In", json!(["local"]))]),
        ]))));
        assert!(!ok(&required(json!([term(vec![
            expr("kubernetes.io/os", "In", json!(["linux"])),
            expr("disk", "Exists", json!(null)),
        ])]))));
        assert!(ok(&required(json!([term(vec![expr(
            "disk",
            "DoesNotExist",
            json!(null)
        )])]))));
        assert!(ok(&required(json!([term(vec![expr(
            "disk",
            "NotIn",
            json!(["hdd"])
        )])]))));
        assert!(!ok(&required(json!([term(vec![expr(
            "kubernetes.io/os",
            "NotIn",
            json!(["linux"])
        )])]))));
        assert!(ok(&required(json!([term(vec![expr(
            "cores",
            "Gt",
            json!(["4"])
        )])]))));
        assert!(!ok(&required(json!([term(vec![expr(
            "cores",
            "Lt",
            json!(["4"])
        )])]))));
        assert!(!ok(&required(json!([term(vec![expr(
            "kubernetes.io/os",
            "Gt",
            json!(["4"])
        )])]))));
        // An empty term matches nothing.
        assert!(!ok(&required(json!([{}]))));
    }

    #[test]
    fn match_fields_select_the_node_by_name() {
        let by_name = |names: serde_json::Value| {
            required(json!([{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": names}]}]))
        };
        assert!(ok(&by_name(json!(["local"]))));
        assert!(!ok(&by_name(json!(["other"]))));
    }
}
