//! A ShardCluster that does not decode into the current types: report why on
//! its status (and in an Event) and keep serving the others.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::cluster::conditions::{DesiredCondition, Status, merge_conditions, types};
use crate::cluster::desired::names::FIELD_MANAGER;
use crate::crd::ShardCluster;
use crate::k8s::{Context, Error, KubeContext};

/// Conditions of a cluster whose spec does not decode.
pub fn conditions(error: &str) -> Vec<DesiredCondition> {
    vec![
        DesiredCondition::new(
            types::DEGRADED,
            Status::True,
            "SpecNotDecodable",
            format!("the ShardCluster does not match the v1alpha1 types: {error}; fix the spec"),
        ),
        DesiredCondition::new(
            types::READY,
            Status::False,
            "InvalidSpec",
            "the spec is invalid (see Degraded)",
        ),
    ]
}

/// Writes the conditions (when they changed) and an Event; waits for a change.
pub async fn report(
    obj: &DeserializeGuard<ShardCluster>,
    invalid: &InvalidObject,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    tracing::warn!(cluster = %name, namespace = %ns, error = %invalid.error, "ShardCluster does not decode");
    // Live: the cache keeps only the metadata of an object that does not decode, and the
    // conditions to merge are in its status. Only undecodable clusters get here.
    let ar = ApiResource::erase::<ShardCluster>(&());
    let dyn_api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
    let Some(live) = dyn_api
        .get_opt(&name)
        .await
        .during(|| format!("reading ShardCluster {ns}/{name}"))?
    else {
        return Ok(Action::await_change());
    };
    let existing: Vec<Condition> = live
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let generation = invalid.metadata.generation;
    let desired = conditions(&invalid.error);
    let merged = merge_conditions(&existing, &desired, generation, &Time(Timestamp::now()));
    if merged == existing {
        return Ok(Action::await_change());
    }
    let patch = json!({
        "apiVersion": ShardCluster::api_version(&()),
        "kind": ShardCluster::kind(&()),
        "status": {"observedGeneration": generation, "state": "Invalid", "conditions": merged},
    });
    dyn_api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .during(|| format!("writing status of ShardCluster {ns}/{name}"))?;
    let ev = Event {
        type_: EventType::Warning,
        reason: "SpecNotDecodable".into(),
        note: Some(desired[0].message.clone()),
        action: "Validate".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an Event failed");
    }
    Ok(Action::await_change())
}
