//! Accepting a placement: validation against the installed one (cluster UID, epoch), the owner
//! table derived from it and the degraded check. Pulling a newer placement from a peer is
//! `node.rs`'s `refresh_placement_from`.

use std::collections::HashMap;
use std::sync::Arc;

use ringshift_node_api::PlacementInstall;

use crate::engine::{Op, WriteError};
use crate::routing::{Installed, MemberAddrs, OwnerTable, Routing};

/// Why a placement was refused or could not be installed. `admin/` alone maps these to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// The node was started with `--cluster-uid` of another cluster.
    #[error("placement of cluster {uid} refused: this node was started for cluster {expected}")]
    NotStartedFor { uid: String, expected: String },
    #[error("placement of cluster {uid} refused: this node belongs to cluster {installed}")]
    OtherCluster { uid: String, installed: String },
    #[error("placement epoch {epoch} is lower than the installed epoch {installed}")]
    StaleEpoch { epoch: u64, installed: u64 },
    #[error("a different placement is already installed at epoch {epoch}")]
    DifferentAtEpoch { epoch: u64 },
    /// The sender's owners digest differs from this node's replay of the same placement.
    #[error(
        "placement epoch {epoch} resolves to a different ownership here (digest {mine:016x}, \
         sender {sender:016x}): this node's ring code differs from the sender's for \
         ring algorithm {algorithm}; refusing it rather than serving another ownership (run the \
         same ringshift version on operator and nodes)"
    )]
    RingDiffers {
        epoch: u64,
        mine: u64,
        sender: u64,
        algorithm: u32,
    },
    #[error("placement does not resolve: {0}")]
    Unresolvable(#[source] ringshift_ring::Error),
    /// The placement cannot be written back as JSON (kept to compare later installs).
    #[error("{0}")]
    Unencodable(#[source] serde_json::Error),
    /// A persisted placement that does not parse.
    #[error("{0}")]
    Undecodable(#[source] serde_json::Error),
    /// The accepted body cannot be encoded for storage.
    #[error("{0}")]
    Store(#[source] serde_json::Error),
    /// Not written; `WriteError::Refused`: the writer re-checked the install in order with
    /// other installs and refused it.
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Owner table and addresses of a placement install.
pub fn to_installed(body: &PlacementInstall) -> Result<Installed, PlacementError> {
    let current = body
        .placement
        .current()
        .map_err(PlacementError::Unresolvable)?;
    let entries = current
        .ranges()
        .map(|(r, owner)| (r, Arc::<str>::from(owner)))
        .collect();
    let members: HashMap<String, MemberAddrs> = body
        .members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                MemberAddrs {
                    data_addr: m.data_addr.clone(),
                    admin_addr: m.admin_addr.clone(),
                },
            )
        })
        .collect();
    Ok(Installed {
        cluster_uid: body.placement.cluster_uid().to_string(),
        epoch: body.placement.epoch(),
        owners: OwnerTable::new(entries),
        members,
        write_pause_budget_ms: body.write_pause_budget_ms,
        placement_json: serde_json::to_string(&body.placement)
            .map_err(PlacementError::Unencodable)?,
    })
}

/// Decoder for the persisted placement (the PUT body as accepted).
pub fn decode_persisted(raw: &[u8]) -> Result<Installed, crate::engine::DecodeError> {
    let body: PlacementInstall =
        serde_json::from_slice(raw).map_err(PlacementError::Undecodable)?;
    Ok(to_installed(&body)?)
}

/// What installing `body` would do, or why it is refused (pure: no I/O).
pub fn plan_install(
    routing: &Routing,
    configured_uid: Option<&str>,
    incarnation: &str,
    body: &PlacementInstall,
) -> Result<(Installed, Option<String>), PlacementError> {
    // Cheap refusals first: resolving a large placement takes seconds.
    let (uid, epoch) = (body.placement.cluster_uid(), body.placement.epoch());
    if let Some(expected) = configured_uid
        && expected != uid
    {
        return Err(PlacementError::NotStartedFor {
            uid: uid.to_string(),
            expected: expected.to_string(),
        });
    }
    if let Some(cur) = &routing.placement {
        if cur.cluster_uid != uid {
            return Err(PlacementError::OtherCluster {
                uid: uid.to_string(),
                installed: cur.cluster_uid.clone(),
            });
        }
        if epoch < cur.epoch {
            return Err(PlacementError::StaleEpoch {
                epoch,
                installed: cur.epoch,
            });
        }
        if epoch == cur.epoch
            && serde_json::to_string(&body.placement).ok().as_ref() != Some(&cur.placement_json)
        {
            return Err(PlacementError::DifferentAtEpoch { epoch: cur.epoch });
        }
    }
    if let Some(expected) = body.owners_digest {
        let mine = body
            .placement
            .current()
            .map(|c| c.digest())
            .map_err(PlacementError::Unresolvable)?;
        if mine != expected {
            return Err(PlacementError::RingDiffers {
                epoch: body.placement.epoch(),
                mine,
                sender: expected,
                algorithm: body.placement.base().algorithm,
            });
        }
    }
    let installed = to_installed(body)?;
    let owns = !installed.owners.ranges_of(&routing.me).is_empty();
    let degraded = match body.incarnations.get(&routing.me) {
        Some(seen) if seen != incarnation && owns => Some(format!(
            "data directory has incarnation {incarnation} but the operator last saw {seen}: \
             the data of ranges this member owns was lost; refusing to serve them as empty"
        )),
        Some(_) => None,
        None => routing.degraded.clone(),
    };
    Ok((installed, degraded))
}

/// Installs a placement durably; returns the degraded reason, if any.
pub async fn install(
    node: &crate::node::Node,
    body: &PlacementInstall,
) -> Result<Option<String>, PlacementError> {
    let routing = node.engine.routing();
    let (uid, incarnation, copy) = (
        node.cfg.cluster_uid.clone(),
        node.engine.incarnation.clone(),
        body.clone(),
    );
    // Off the async workers: a large ring takes seconds to resolve.
    let (installed, degraded) = tokio::task::spawn_blocking(move || {
        plan_install(&routing, uid.as_deref(), &incarnation, &copy)
    })
    .await??;
    let raw = serde_json::to_vec(body).map_err(PlacementError::Store)?;
    let epoch = installed.epoch;
    // Re-checked in the writer, in order with other installs (refused: `WriteError::Refused`).
    node.engine
        .run_done(Op::Install {
            installed: Arc::new(installed),
            raw,
            degraded: degraded.clone(),
        })
        .await?;
    node.metrics.epoch.set(epoch as i64);
    tracing::info!(
        cluster = %body.placement.cluster_uid(),
        epoch,
        degraded = ?degraded,
        "placement installed"
    );
    Ok(degraded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_node_api::MemberEndpoint;
    use ringshift_ring::{Member, Placement, RingSpec};

    fn body(uid: &str, members: &[&str]) -> PlacementInstall {
        let ms: Vec<Member> = members.iter().map(|m| Member::new(*m, 1)).collect();
        let spec = RingSpec::with_members(16, &ms).unwrap();
        PlacementInstall {
            placement: Placement::new(uid, spec).unwrap(),
            members: members
                .iter()
                .map(|m| MemberEndpoint {
                    name: m.to_string(),
                    data_addr: format!("{m}:6379"),
                    admin_addr: format!("{m}:8080"),
                })
                .collect(),
            write_pause_budget_ms: 1000,
            incarnations: Default::default(),
            owners_digest: None,
        }
    }

    fn routing_with(b: &PlacementInstall) -> Routing {
        Routing {
            me: "a".into(),
            placement: Some(Arc::new(to_installed(b).unwrap())),
            ..Routing::default()
        }
    }

    #[test]
    fn refuses_a_placement_whose_replay_differs_from_the_sender() {
        let mut b = body("c1", &["a", "b"]);
        let r = Routing::default();
        let digest = b.placement.current().unwrap().digest();
        b.owners_digest = Some(digest);
        assert!(plan_install(&r, None, "inc", &b).is_ok());
        b.owners_digest = Some(digest ^ 1);
        let e = plan_install(&r, None, "inc", &b).unwrap_err();
        assert!(matches!(e, PlacementError::RingDiffers { .. }), "{e:?}");
        assert!(e.to_string().contains("ring code differs"), "{e}");
    }

    #[test]
    fn refuses_other_cluster_and_different_same_epoch() {
        let b = body("c1", &["a", "b"]);
        let r = routing_with(&b);
        let other = body("c2", &["a", "b"]);
        assert!(matches!(
            plan_install(&r, None, "inc", &other),
            Err(PlacementError::OtherCluster { .. })
        ));
        assert!(plan_install(&r, None, "inc", &b).is_ok());
        let changed = body("c1", &["a", "b", "c"]);
        assert!(matches!(
            plan_install(&r, None, "inc", &changed),
            Err(PlacementError::DifferentAtEpoch { epoch: 1 })
        ));
        let started_for_zz = plan_install(
            &Routing {
                me: "a".into(),
                ..Routing::default()
            },
            Some("zz"),
            "inc",
            &b,
        );
        assert!(matches!(
            started_for_zz,
            Err(PlacementError::NotStartedFor { .. })
        ));
    }

    #[test]
    fn new_incarnation_owning_ranges_is_degraded() {
        let mut b = body("c1", &["a", "b"]);
        b.incarnations.insert("a".into(), "old".into());
        let r = Routing {
            me: "a".into(),
            ..Routing::default()
        };
        let (_, degraded) = plan_install(&r, None, "new", &b).unwrap();
        assert!(degraded.unwrap().contains("old"));
        b.incarnations.insert("a".into(), "new".into());
        let (_, degraded) = plan_install(&r, None, "new", &b).unwrap();
        assert!(degraded.is_none());
    }
}
