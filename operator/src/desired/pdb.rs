//! PodDisruptionBudget of the members: at most one voluntary eviction at a
//! time. policy/v1 from Kubernetes 1.21, policy/v1beta1 before (same shape).

use kube::ResourceExt;
use serde_json::{Value, json};

use super::names;
use super::owner_reference;
use crate::crd::ShardCluster;

/// API version of PodDisruptionBudget the server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdbVersion {
    /// policy/v1 (1.21+).
    V1,
    /// policy/v1beta1 (up to 1.24).
    V1beta1,
}

impl PdbVersion {
    /// The apiVersion string.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "policy/v1",
            Self::V1beta1 => "policy/v1beta1",
        }
    }

    /// Picks the version from the server's `policy` group versions.
    pub fn choose(served: &[String]) -> Option<Self> {
        if served.iter().any(|v| v == "v1") {
            Some(Self::V1)
        } else if served.iter().any(|v| v == "v1beta1") {
            Some(Self::V1beta1)
        } else {
            None
        }
    }
}

/// The PodDisruptionBudget as JSON for server-side apply.
pub fn pdb(cluster: &ShardCluster, version: PdbVersion) -> Value {
    let name = cluster.name_any();
    json!({
        "apiVersion": version.api_version(),
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": names::pdb(&name),
            "namespace": cluster.namespace(),
            "labels": names::labels(&name),
            "ownerReferences": owner_reference(cluster).map(|o| vec![o]).unwrap_or_default(),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names::selector_labels(&name)},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_follows_discovery() {
        assert_eq!(
            PdbVersion::choose(&["v1beta1".into()]),
            Some(PdbVersion::V1beta1)
        );
        assert_eq!(
            PdbVersion::choose(&["v1".into(), "v1beta1".into()]),
            Some(PdbVersion::V1)
        );
        assert_eq!(PdbVersion::choose(&[]), None);
        let c = ShardCluster::new("demo", serde_json::from_str("{}").unwrap());
        let p = pdb(&c, PdbVersion::V1beta1);
        assert_eq!(p["apiVersion"], "policy/v1beta1");
        assert_eq!(p["spec"]["maxUnavailable"], 1);
    }
}
