//! PodDisruptionBudget of the members (policy/v1): at most one voluntary eviction at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names;
use super::owner_reference;
use crate::crd::ShardCluster;

/// The PodDisruptionBudget for server-side apply.
pub fn pdb(cluster: &ShardCluster) -> PodDisruptionBudget {
    let name = cluster.name_any();
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(names::pdb(&name)),
            namespace: cluster.namespace(),
            labels: Some(names::labels(&name)),
            owner_references: owner_reference(cluster).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector_labels(&name)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_member_is_evicted_at_a_time() {
        let c = ShardCluster::new("demo", serde_json::from_str("{}").unwrap());
        let p = serde_json::to_value(pdb(&c)).unwrap();
        assert_eq!(p["apiVersion"], "policy/v1");
        assert_eq!(p["kind"], "PodDisruptionBudget");
        assert_eq!(p["spec"]["maxUnavailable"], 1);
        assert!(p["spec"]["selector"]["matchLabels"].is_object());
    }
}
