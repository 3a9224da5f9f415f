//! The desired ring (ShardPlacement spec) and what the committed placement
//! (ShardPlacement status) says, through `ringshift-ring`.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use ringshift_ring::{Member, Placement, RingSpec};

use super::names;
use super::owner_reference;
use crate::cluster::status::PlacementView;
use crate::cluster::validate::ValidSpec;
use crate::crd::{NodeAck, ShardCluster, ShardPlacement, ShardPlacementSpec};

/// Why the ShardPlacement could not be read or the ring not built.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A ring or placement document that does not parse.
    #[error("ShardPlacement {field} does not parse: {source}")]
    Parse {
        /// Which field.
        field: &'static str,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The ring library refused the ring or placement.
    #[error("ring: {0}")]
    Ring(#[from] ringshift_ring::Error),
}

/// The desired ring currently in the ShardPlacement spec.
pub fn current_ring(placement: Option<&ShardPlacement>) -> Result<Option<RingSpec>, RingError> {
    placement
        .map(|p| serde_json::from_value(p.spec.ring.clone()))
        .transpose()
        .map_err(|source| RingError::Parse {
            field: "spec.ring",
            source,
        })
}

/// The committed placement in the ShardPlacement status, if any.
pub fn committed(placement: Option<&ShardPlacement>) -> Result<Option<Placement>, RingError> {
    placement
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.placement.clone())
        .map(serde_json::from_value)
        .transpose()
        .map_err(|source| RingError::Parse {
            field: "status.placement",
            source,
        })
}

/// The desired ring: the current one evolved to the desired members, so the
/// history (and therefore every token already placed) is kept.
pub fn desired_ring(current: Option<&RingSpec>, valid: &ValidSpec) -> Result<RingSpec, RingError> {
    let members: Vec<Member> = valid
        .members
        .iter()
        .map(|m| Member::new(m.name.clone(), m.weight))
        .collect();
    let base = current
        .cloned()
        .unwrap_or_else(|| RingSpec::new(valid.vnodes));
    let next = base.evolve(&members)?;
    if Some(&next) != current {
        // Refuse a ring that nobody could replay before publishing it.
        next.build()?;
    }
    Ok(next)
}

/// The ShardPlacement with `ring` as its spec, for server-side apply.
pub fn placement_object(
    cluster: &ShardCluster,
    ring: &RingSpec,
) -> Result<ShardPlacement, RingError> {
    let name = cluster.name_any();
    let ring = serde_json::to_value(ring).map_err(|source| RingError::Parse {
        field: "spec.ring",
        source,
    })?;
    let mut p = ShardPlacement::new(
        &names::placement(&name),
        ShardPlacementSpec {
            cluster: name.clone(),
            cluster_uid: cluster.uid().unwrap_or_default(),
            ring,
        },
    );
    p.metadata = ObjectMeta {
        name: Some(names::placement(&name)),
        namespace: cluster.namespace(),
        labels: Some(names::labels(&name)),
        owner_references: owner_reference(cluster).map(|o| vec![o]),
        ..Default::default()
    };
    Ok(p)
}

/// Summary of the committed placement against the desired ring.
///
/// `pods` are the member pods that exist: all of them must have acknowledged
/// the committed epoch before the StatefulSet may shrink.
pub fn placement_view(
    committed: Option<&Placement>,
    desired: &RingSpec,
    acks: &[NodeAck],
    pods: &[String],
) -> Result<PlacementView, RingError> {
    let unplaced = pods
        .iter()
        .filter(|pod| {
            acks.iter()
                .find(|a| &a.member == *pod)
                .and_then(|a| a.epoch.parse::<u64>().ok())
                .is_none_or(|e| e == 0)
        })
        .cloned()
        .collect();
    let Some(p) = committed else {
        return Ok(PlacementView {
            all_acknowledged: true,
            unplaced,
            ..Default::default()
        });
    };
    let epoch = p.epoch();
    let data_holders: BTreeSet<String> = p.members()?.into_iter().collect();
    let all_acknowledged = pods.iter().all(|pod| {
        acks.iter()
            .find(|a| &a.member == pod)
            .and_then(|a| a.epoch.parse::<u64>().ok())
            .is_some_and(|e| e >= epoch)
    });
    Ok(PlacementView {
        epoch: Some(epoch),
        balanced: p.is_balanced() && p.overlay().is_empty() && p.base() == desired,
        data_holders,
        all_acknowledged,
        unplaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::validate::{Existing, validate};
    use crate::crd::ShardClusterSpec;

    fn valid(spec: serde_json::Value) -> ValidSpec {
        let spec: ShardClusterSpec = serde_json::from_value(spec).unwrap();
        validate("demo", &spec, &Existing::default()).unwrap()
    }

    fn names_of(ring: &RingSpec) -> Vec<(String, u32)> {
        ring.members()
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.weight))
            .collect()
    }

    #[test]
    fn desired_ring_follows_replicas_weights_and_drains() {
        let r = desired_ring(None, &valid(serde_json::json!({"replicas": 3}))).unwrap();
        assert_eq!(r.vnodes, 64);
        assert_eq!(names_of(&r).len(), 3);
        let r2 = desired_ring(
            Some(&r),
            &valid(serde_json::json!({"replicas": 4, "members": [
                {"name": "demo-0", "drain": true}, {"name": "demo-3", "weight": 200}
            ]})),
        )
        .unwrap();
        assert_eq!(
            names_of(&r2),
            vec![
                ("demo-0".into(), 0),
                ("demo-1".into(), 100),
                ("demo-2".into(), 100),
                ("demo-3".into(), 200)
            ]
        );
        // History is kept: the old ring's operations are a prefix of the new one's.
        assert_eq!(&r2.ops[..r.ops.len()], &r.ops[..]);
    }

    #[test]
    fn an_unchanged_spec_gives_the_same_ring() {
        let v = valid(serde_json::json!({"replicas": 3}));
        let r = desired_ring(None, &v).unwrap();
        assert_eq!(desired_ring(Some(&r), &v).unwrap(), r);
    }

    #[test]
    fn committed_placement_drives_balance_holders_and_acks() {
        let v = valid(serde_json::json!({"replicas": 3}));
        let ring = desired_ring(None, &v).unwrap();
        let p = Placement::new("uid", ring.clone()).unwrap();
        let pods: Vec<String> = (0..3).map(|o| format!("demo-{o}")).collect();
        let acks: Vec<NodeAck> = pods
            .iter()
            .map(|m| NodeAck {
                member: m.clone(),
                epoch: "1".into(),
                incarnation: None,
            })
            .collect();
        let view = placement_view(Some(&p), &ring, &acks, &pods).unwrap();
        assert_eq!(view.epoch, Some(1));
        assert!(view.balanced);
        assert!(view.all_acknowledged);
        assert!(view.unplaced.is_empty());
        assert_eq!(view.data_holders.len(), 3);

        // Scale in to 2: the desired ring differs and demo-2 still holds data.
        let smaller =
            desired_ring(Some(&ring), &valid(serde_json::json!({"replicas": 2}))).unwrap();
        let view = placement_view(Some(&p), &smaller, &acks[..2], &pods).unwrap();
        assert!(!view.balanced);
        assert!(view.data_holders.contains("demo-2"));
        assert!(!view.all_acknowledged, "demo-2 has not acknowledged");
        assert_eq!(
            view.unplaced,
            ["demo-2".to_string()].into(),
            "demo-2 has no placement at all"
        );
    }

    #[test]
    fn no_placement_yet_is_not_balanced() {
        let ring = desired_ring(None, &valid(serde_json::json!({}))).unwrap();
        let view = placement_view(None, &ring, &[], &[]).unwrap();
        assert_eq!(view.epoch, None);
        assert!(!view.balanced);
    }
}
