//! Facts read from the cluster's pods, reduced to what status and rollout
//! decisions need. Pure.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Waiting reasons that mean a container will not start without a change.
const STUCK_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What matters about one member pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// Pod (member) name.
    pub name: String,
    /// Ready condition is True.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// StatefulSet revision the pod was created from.
    pub revision: Option<String>,
    /// Why its container does not start, when it is stuck.
    pub stuck: Option<String>,
}

/// Reduces a pod to [`PodFacts`].
pub fn pod_facts(pod: &Pod) -> PodFacts {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false);
    let stuck = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|cs| {
            let waiting = cs.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            STUCK_REASONS
                .contains(&reason)
                .then(|| match waiting.message.as_deref() {
                    Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                    _ => reason.to_string(),
                })
        })
        .or_else(|| {
            // The scheduler found no node for it (nodeSelector, affinity, taints, resources):
            // it stays Pending until the spec or the nodes change.
            let c = status?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            (c.reason.as_deref() == Some("Unschedulable")).then(|| match c.message.as_deref() {
                Some(m) if !m.is_empty() => format!("Unschedulable: {m}"),
                _ => "Unschedulable".to_string(),
            })
        })
        .or_else(|| {
            let s = status?;
            (s.phase.as_deref() == Some("Failed"))
                .then(|| format!("Failed: {}", s.message.clone().unwrap_or_default()))
        });
    PodFacts {
        name: pod.name_any(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        revision: pod.labels().get("controller-revision-hash").cloned(),
        stuck,
    }
}

/// The pod to delete next so that the StatefulSet recreates it from the
/// current template: one at a time, only when every pod is Ready, never a
/// member a migration is using. Highest ordinal first, like a rolling update.
pub fn next_pod_to_roll(
    pods: &[PodFacts],
    expected_pods: usize,
    update_revision: Option<&str>,
    busy: &std::collections::BTreeSet<String>,
) -> Option<String> {
    let update_revision = update_revision?;
    if pods.len() < expected_pods || pods.iter().any(|p| !p.ready || p.terminating) {
        return None;
    }
    let mut outdated: Vec<&PodFacts> = pods
        .iter()
        .filter(|p| p.revision.as_deref() != Some(update_revision) && !busy.contains(&p.name))
        .collect();
    outdated.sort_by_key(|p| {
        let ordinal: i64 = p
            .name
            .rsplit('-')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1);
        std::cmp::Reverse(ordinal)
    });
    outdated.first().map(|p| p.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn pod(name: &str, ready: bool, rev: &str) -> PodFacts {
        PodFacts {
            name: name.into(),
            ready,
            terminating: false,
            revision: Some(rev.into()),
            stuck: None,
        }
    }

    #[test]
    fn rolls_one_outdated_idle_pod_at_a_time() {
        let pods = vec![
            pod("demo-0", true, "old"),
            pod("demo-1", true, "old"),
            pod("demo-2", true, "new"),
        ];
        let none = BTreeSet::new();
        assert_eq!(
            next_pod_to_roll(&pods, 3, Some("new"), &none),
            Some("demo-1".into())
        );
        let busy: BTreeSet<String> = ["demo-1".to_string()].into();
        assert_eq!(
            next_pod_to_roll(&pods, 3, Some("new"), &busy),
            Some("demo-0".into())
        );
        let mut waiting = pods.clone();
        waiting[2].ready = false;
        assert_eq!(
            next_pod_to_roll(&waiting, 3, Some("new"), &none),
            None,
            "wait for Ready"
        );
        assert_eq!(
            next_pod_to_roll(&pods[..2], 3, Some("new"), &none),
            None,
            "a pod is missing"
        );
        let current = vec![pod("demo-0", true, "new")];
        assert_eq!(next_pod_to_roll(&current, 1, Some("new"), &none), None);
    }

    #[test]
    fn a_pod_that_cannot_pull_its_image_is_stuck() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0", "labels": {"controller-revision-hash": "r1"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "node", "image": "nope", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}
                }]
            }
        }))
        .unwrap();
        let f = pod_facts(&p);
        assert!(!f.ready);
        assert_eq!(f.revision.as_deref(), Some("r1"));
        assert_eq!(f.stuck.as_deref(), Some("ImagePullBackOff: no such image"));
    }

    #[test]
    fn a_pod_no_node_can_take_is_stuck_with_the_schedulers_reason() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0"},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            }]}
        }))
        .unwrap();
        let f = pod_facts(&p);
        assert_eq!(
            f.stuck.as_deref(),
            Some(
                "Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            )
        );
        // Not yet looked at by a scheduler: just not ready.
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0"}, "status": {"phase": "Pending"}
        }))
        .unwrap();
        assert_eq!(pod_facts(&p).stuck, None);
    }
}
