//! Names and labels of a cluster's objects.

use std::collections::BTreeMap;

/// Port of the RESP data listener.
pub const DATA_PORT: i32 = 6379;
/// Port of the admin API (and /healthz, /readyz, /metrics).
pub const ADMIN_PORT: i32 = 8080;
/// Where the admin-token Secret is mounted in node pods.
pub const ADMIN_TOKEN_DIR: &str = "/etc/ringshift/admin";
/// Key of the token in the admin-token Secret.
pub const ADMIN_TOKEN_KEY: &str = "token";
/// Where the data-port password Secret is mounted.
pub const AUTH_DIR: &str = "/etc/ringshift/auth";
/// Mount path of the member's volume.
pub const DATA_DIR: &str = "/data";
/// Name of the volume claim template.
pub const DATA_VOLUME: &str = "data";
/// Field manager of every server-side apply by the operator.
pub const FIELD_MANAGER: &str = "ringshift-operator";
/// Label carrying the cluster name on every owned object and pod.
pub const CLUSTER_LABEL: &str = "ringshift.dev/cluster";
/// Finalizer that deletes the volumes when deletePolicy is Delete.
pub const VOLUME_FINALIZER: &str = "ringshift.dev/delete-volumes";

/// StatefulSet (and pod name prefix) of a cluster.
pub fn statefulset(cluster: &str) -> String {
    cluster.to_string()
}

/// Headless Service that gives members stable DNS names.
pub fn headless_service(cluster: &str) -> String {
    format!("{cluster}-nodes")
}

/// Client Service on the data port.
pub fn client_service(cluster: &str) -> String {
    cluster.to_string()
}

/// Secret holding the admin API token.
pub fn admin_secret(cluster: &str) -> String {
    format!("{cluster}-admin-token")
}

/// PodDisruptionBudget of the members.
pub fn pdb(cluster: &str) -> String {
    cluster.to_string()
}

/// ShardPlacement of a cluster.
pub fn placement(cluster: &str) -> String {
    cluster.to_string()
}

/// Member (pod) name of an ordinal.
pub fn member(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-{ordinal}")
}

/// Ordinal of a member of `cluster`, if `member` is one of its pod names.
pub fn ordinal(cluster: &str, member: &str) -> Option<i32> {
    let rest = member.strip_prefix(cluster)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok().filter(|o: &i32| *o >= 0)
}

/// Labels that select a cluster's pods (and PVCs).
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "ringshift-node".to_string(),
        ),
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
    ])
}

/// Labels on every object the operator creates for a cluster.
pub fn labels(cluster: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert("app.kubernetes.io/instance".into(), cluster.into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "ringshift-operator".into(),
    );
    l
}

/// The selector labels as a label-selector string (`a=b,c=d`).
pub fn selector_string(cluster: &str) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_only_from_this_clusters_pod_names() {
        assert_eq!(ordinal("demo", "demo-0"), Some(0));
        assert_eq!(ordinal("demo", "demo-12"), Some(12));
        assert_eq!(ordinal("demo", "demo-x"), None);
        assert_eq!(ordinal("demo", "demo-01"), None);
        assert_eq!(ordinal("demo", "demo2-1"), None);
        assert_eq!(ordinal("demo", "demo-"), None);
        assert_eq!(ordinal("demo-a", "demo-a-3"), Some(3));
    }
}
