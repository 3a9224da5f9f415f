//! The volume finalizer: with deletePolicy Delete, deleting a ShardCluster
//! deletes its PersistentVolumeClaims (and so its data).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::reconcile::publish;
use crate::cluster::desired::names::{self, VOLUME_FINALIZER};
use crate::cluster::validate::fits_label_value;
use crate::crd::{DeletePolicy, ShardCluster};
use crate::k8s::{Context, Error, KubeContext};

/// Finalizers the cluster should carry for its policy, if they differ from the current ones.
pub fn wanted_finalizers(current: &[String], policy: DeletePolicy) -> Option<Vec<String>> {
    let has = current.iter().any(|f| f == VOLUME_FINALIZER);
    match (policy, has) {
        (DeletePolicy::Delete, false) => {
            let mut next = current.to_vec();
            next.push(VOLUME_FINALIZER.to_string());
            Some(next)
        }
        (DeletePolicy::Retain, true) => Some(without(current)),
        _ => None,
    }
}

fn without(current: &[String]) -> Vec<String> {
    current
        .iter()
        .filter(|f| *f != VOLUME_FINALIZER)
        .cloned()
        .collect()
}

async fn set_finalizers(
    cluster: &ShardCluster,
    ctx: &Context,
    ns: &str,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let name = cluster.name_any();
    // resourceVersion makes the merge patch a compare-and-swap of the list.
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": cluster.resource_version()}});
    Api::<ShardCluster>::namespaced(ctx.client.clone(), ns)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .during(|| format!("updating finalizers of ShardCluster {ns}/{name}"))?;
    Ok(())
}

/// Adds or removes the volume finalizer to follow deletePolicy. Returns whether it patched.
pub async fn ensure(cluster: &ShardCluster, ctx: &Context, ns: &str) -> Result<bool, Error> {
    match wanted_finalizers(cluster.finalizers(), cluster.spec.delete_policy) {
        Some(next) => {
            set_finalizers(cluster, ctx, ns, next).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Handles a ShardCluster being deleted: with deletePolicy Delete, deletes the
/// StatefulSet and the PVCs, then lets the deletion proceed.
pub async fn finalize(cluster: &ShardCluster, ctx: &Context, ns: &str) -> Result<Action, Error> {
    if !cluster.finalizers().iter().any(|f| f == VOLUME_FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = cluster.name_any();
    // A name that cannot be a label value never got a StatefulSet or volumes.
    if cluster.spec.delete_policy == DeletePolicy::Delete && fits_label_value(&name) {
        let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
        match sts_api
            .delete(&names::statefulset(&name), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Kube {
                    action: format!("deleting StatefulSet {ns}/{name}"),
                    source,
                });
            }
        }
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        let pvcs = pvc_api
            .list(&ListParams::default().labels(&names::selector_string(&name)))
            .await
            .during(|| format!("listing PVCs of {ns}/{name}"))?;
        for pvc in pvcs.items {
            let pvc_name = pvc.name_any();
            match pvc_api.delete(&pvc_name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(cluster = %name, namespace = %ns, pvc = %pvc_name, "deleted volume (deletePolicy Delete)")
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Kube {
                        action: format!("deleting PVC {ns}/{pvc_name}"),
                        source,
                    });
                }
            }
        }
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "VolumesDeleted",
            "Delete",
            format!("deleted the volumes of {name} (deletePolicy Delete)"),
        )
        .await;
    }
    set_finalizers(cluster, ctx, ns, without(cluster.finalizers())).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_follows_the_delete_policy() {
        let none: Vec<String> = vec!["other".into()];
        assert_eq!(
            wanted_finalizers(&none, DeletePolicy::Delete),
            Some(vec!["other".to_string(), VOLUME_FINALIZER.to_string()])
        );
        assert_eq!(wanted_finalizers(&none, DeletePolicy::Retain), None);
        let with = vec!["other".to_string(), VOLUME_FINALIZER.to_string()];
        assert_eq!(wanted_finalizers(&with, DeletePolicy::Delete), None);
        assert_eq!(
            wanted_finalizers(&with, DeletePolicy::Retain),
            Some(vec!["other".to_string()])
        );
    }
}
