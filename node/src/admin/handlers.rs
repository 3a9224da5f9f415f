//! Operator-facing admin endpoints.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use ringshift_node_api::*;
use ringshift_ring::RangeSet;

use super::{ApiResult, api_err, authorize, check_caller, parse_body, validate_ranges};
use crate::engine::{Op, Outcome};
use crate::node::Node;

pub async fn metrics(State(node): State<Arc<Node>>) -> String {
    let routing = node.engine.routing();
    node.metrics.log_head.set(node.engine.head() as i64);
    node.metrics
        .fenced_ranges
        .set(routing.fences.iter().map(|f| f.ranges.len() as i64).sum());
    node.metrics.epoch.set(routing.epoch() as i64);
    match crate::disk::room(&node.engine.dir) {
        Ok(room) => {
            node.metrics.data_free_bytes.set(clamp(room.free));
            node.metrics.data_total_bytes.set(clamp(room.total));
        }
        Err(e) => tracing::warn!(error = %e, "cannot stat the data directory's filesystem"),
    }
    node.metrics.data_bytes.set(clamp(node.engine.data_bytes()));
    node.metrics
        .connected_clients
        .set(clamp(node.clients.count() as u64));
    node.metrics.encode()
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub async fn accepted_writes(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> ApiResult<Json<AcceptedWrites>> {
    authorize(&node, &headers)?;
    let (windows, truncated) = node.engine.accepted.snapshot();
    Ok(Json(AcceptedWrites {
        member: node.cfg.member.clone(),
        incarnation: node.engine.incarnation.clone(),
        since_ms: node.started_ms,
        now_ms: crate::keys::now_ms(),
        truncated,
        windows: windows
            .into_iter()
            .map(|w| AcceptedWindow {
                range: w.range,
                epoch: w.epoch,
                first_ms: w.first_ms,
                last_ms: w.last_ms,
                count: w.count,
            })
            .collect(),
    }))
}

/// `GET /v1/debug/stored-elements[?ranges=...]`: `{"elements": n}`, the collection elements
/// physically stored in the ranges (all by default), stale versions not yet collected
/// included: tests see drops and cleanup leave nothing behind.
pub async fn stored_elements(
    State(node): State<Arc<Node>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&node, &headers)?;
    let ranges = match q.get("ranges") {
        None => RangeSet::full(),
        Some(r) => r
            .parse::<RangeSet>()
            .map_err(|_| api_err(ErrorReason::BadRequest, "malformed ranges"))?,
    };
    let engine = node.engine.clone();
    let n = tokio::task::spawn_blocking(move || engine.stored_elements(ranges.ranges()))
        .await
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    Ok(Json(serde_json::json!({ "elements": n })))
}

fn offset(node: &Node, sequence: u64) -> Offset {
    Offset {
        incarnation: node.engine.incarnation.clone(),
        sequence,
    }
}

pub async fn status(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> ApiResult<Json<NodeStatus>> {
    authorize(&node, &headers)?;
    let routing = node.engine.routing();
    let e = &node.engine;
    Ok(Json(NodeStatus {
        member: routing.me.clone(),
        incarnation: e.incarnation.clone(),
        cluster_uid: routing.placement.as_ref().map(|p| p.cluster_uid.clone()),
        epoch: routing.epoch(),
        log_head: offset(&node, e.head()),
        log_oldest: e.oldest_retained(),
        keys: e.approximate_keys(),
        bytes: e.disk_bytes(),
        degraded: routing.degraded.clone(),
        fences: routing
            .fences
            .iter()
            .map(|f| FenceView {
                migration_uid: f.migration_uid.clone(),
                attempt: f.attempt,
                ranges: f.ranges.ranges().to_vec(),
                fence_offset: offset(&node, f.offset),
            })
            .collect(),
        owned_ranges: routing.owned_ranges(),
    }))
}

pub async fn get_placement(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> ApiResult<Json<PlacementInstall>> {
    authorize(&node, &headers)?;
    let raw = node
        .engine
        .meta_get(crate::engine::META_PLACEMENT)
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?
        .ok_or_else(|| api_err(ErrorReason::NotFound, "no placement installed"))?;
    let body: PlacementInstall =
        serde_json::from_slice(&raw).map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    Ok(Json(body))
}

pub async fn put_placement(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PlacementAccepted>> {
    authorize(&node, &headers)?;
    let body: PlacementInstall = parse_body(&body)?;
    let degraded = crate::placement::install(&node, &body).await?;
    Ok(Json(PlacementAccepted {
        epoch: body.placement.epoch(),
        incarnation: node.engine.incarnation.clone(),
        degraded,
    }))
}

pub async fn fence(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<FenceResponse>> {
    authorize(&node, &headers)?;
    let req: FenceRequest = parse_body(&body)?;
    let rs = validate_ranges(&req.ranges)?;
    check_caller(&node, &req.caller).await?;
    let owned = node.engine.routing().owned_set();
    if let Some(r) = rs.iter().find(|r| !owned.covers(r)) {
        return Err(api_err(
            ErrorReason::Conflict,
            format!(
                "range {}-{} is not owned by this node; nothing to fence",
                r.start, r.end
            ),
        ));
    }
    let outcome = node
        .engine
        .run(Op::Fence {
            migration_uid: req.caller.migration_uid.clone(),
            attempt: req.caller.attempt,
            ranges: rs,
        })
        .await
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    match outcome {
        Outcome::Fenced { offset: f } => {
            tracing::info!(
                cluster = %req.caller.cluster_uid,
                migration = %req.caller.migration_uid,
                attempt = req.caller.attempt,
                epoch = req.caller.epoch,
                ranges = %RangeSet::from_iter(req.ranges.iter().copied()),
                fence_offset = f,
                "fenced"
            );
            Ok(Json(FenceResponse {
                fence_offset: offset(&node, f),
            }))
        }
        Outcome::Refused(m) => Err(api_err(ErrorReason::StaleAttempt, m)),
        Outcome::Failed(m) => Err(api_err(ErrorReason::Internal, m)),
        _ => Err(api_err(ErrorReason::Internal, "unexpected writer answer")),
    }
}

pub async fn unfence(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Done>> {
    authorize(&node, &headers)?;
    let req: UnfenceRequest = parse_body(&body)?;
    check_caller(&node, &req.caller).await?;
    let outcome = node
        .engine
        .run(Op::Unfence {
            migration_uid: req.caller.migration_uid.clone(),
            attempt: req.caller.attempt,
        })
        .await
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    match outcome {
        Outcome::Done => {
            tracing::info!(
                cluster = %req.caller.cluster_uid,
                migration = %req.caller.migration_uid,
                attempt = req.caller.attempt,
                epoch = req.caller.epoch,
                "unfenced"
            );
            Ok(Json(Done { ok: true }))
        }
        Outcome::Refused(m) => Err(api_err(ErrorReason::StaleAttempt, m)),
        Outcome::Failed(m) => Err(api_err(ErrorReason::Internal, m)),
        _ => Err(api_err(ErrorReason::Internal, "unexpected writer answer")),
    }
}

pub async fn drop_ranges(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Done>> {
    authorize(&node, &headers)?;
    let req: DropRequest = parse_body(&body)?;
    let rs = validate_ranges(&req.ranges)?;
    // Epoch 0 would pass every installed-epoch check: a drop must say which committed epoch it
    // acts on.
    if req.ownership_ended_epoch == 0 {
        return Err(api_err(
            ErrorReason::BadRequest,
            "ownershipEndedEpoch must be the operator's current committed epoch, not 0",
        ));
    }
    check_caller(&node, &req.caller).await?;
    let routing = node.engine.routing();
    if routing.epoch() < req.ownership_ended_epoch {
        return Err(api_err(
            ErrorReason::StaleEpoch,
            format!(
                "this node is at epoch {}, below the committed epoch {} of the drop; install it first",
                routing.epoch(),
                req.ownership_ended_epoch
            ),
        ));
    }
    if rs.overlaps(&routing.owned_set()) {
        return Err(api_err(
            ErrorReason::Owned,
            "refusing to drop ranges this node owns",
        ));
    }
    // Held until the drop ends: no pull of these ranges starts meanwhile (and none runs).
    let _claim = node.pulls.claim_drop(&rs)?;
    let slow = Some(crate::failpoints::SLOW_DROP_CHUNK);
    match node.engine.clear_after_in_chunks(&rs, None, slow).await {
        Ok(()) => {}
        Err(crate::engine::ClearError::Owned(m)) => return Err(api_err(ErrorReason::Owned, m)),
        Err(crate::engine::ClearError::Failed(m)) => {
            return Err(api_err(ErrorReason::Internal, m));
        }
    }
    crate::failpoints::sleep(crate::failpoints::SLOW_DROP_CHUNK).await;
    // The writer re-checks ownership when it evaluates the clear.
    let outcome = node
        .engine
        .run(Op::Clear {
            ranges: rs,
            meta: vec![],
        })
        .await
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    match outcome {
        Outcome::Done => {
            tracing::info!(
                cluster = %req.caller.cluster_uid,
                migration = %req.caller.migration_uid,
                epoch = req.ownership_ended_epoch,
                ranges = %RangeSet::from_iter(req.ranges.iter().copied()),
                "dropped ranges"
            );
            Ok(Json(Done { ok: true }))
        }
        Outcome::Refused(m) => Err(api_err(ErrorReason::Owned, m)),
        Outcome::Failed(m) => Err(api_err(ErrorReason::Internal, m)),
        _ => Err(api_err(ErrorReason::Internal, "unexpected writer answer")),
    }
}

pub async fn checksum(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ChecksumResponse>> {
    authorize(&node, &headers)?;
    let req: ChecksumRequest = parse_body(&body)?;
    let rs = validate_ranges(&req.ranges)?;
    let session = match &req.snapshot_of {
        Some(uid) => node
            .engine
            .snapshots
            .lock()
            .ok()
            .and_then(|m| {
                m.get(uid).map(|s| {
                    s.touch();
                    s.session.clone()
                })
            })
            .ok_or_else(|| {
                api_err(
                    ErrorReason::NotFound,
                    format!("no snapshot open for migration {uid}"),
                )
            })?,
        None => match node.engine.run(Op::Snapshot).await {
            Ok(Outcome::Snapshot(s)) => s,
            Ok(_) => return Err(api_err(ErrorReason::Internal, "unexpected writer answer")),
            Err(e) => return Err(api_err(ErrorReason::Internal, e.to_string())),
        },
    };
    let engine = node.engine.clone();
    let at = session.offset;
    let (digest, keys) =
        tokio::task::spawn_blocking(move || engine.checksum(&session.snapshot, rs.ranges()))
            .await
            .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?
            .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    Ok(Json(ChecksumResponse {
        digest,
        keys,
        offset: offset(&node, at),
    }))
}

pub async fn start_pull(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PullStatus>> {
    authorize(&node, &headers)?;
    let mut req: StartPull = parse_body(&body)?;
    let rs = validate_ranges(&req.ranges)?;
    req.ranges = rs.ranges().to_vec();
    check_caller(&node, &req.caller).await?;
    if rs.overlaps(&node.engine.routing().owned_set()) {
        return Err(api_err(
            ErrorReason::Owned,
            "refusing to pull into ranges this node owns",
        ));
    }
    Ok(Json(crate::pull::start(&node, req).await?))
}

pub async fn list_pulls(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<PullStatus>>> {
    authorize(&node, &headers)?;
    Ok(Json(node.pulls.list()))
}

pub async fn get_pull(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<PullStatus>> {
    authorize(&node, &headers)?;
    node.pulls.get(&uid).map(Json).ok_or_else(|| {
        api_err(
            ErrorReason::NotFound,
            format!("no pull for migration {uid}"),
        )
    })
}

pub async fn cancel_pull(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PullStatus>> {
    authorize(&node, &headers)?;
    let caller: Caller = parse_body(&body)?;
    if caller.migration_uid != uid {
        return Err(api_err(
            ErrorReason::BadRequest,
            "migrationUid in the body differs from the path",
        ));
    }
    check_caller(&node, &caller).await?;
    Ok(Json(crate::pull::cancel(&node, &caller).await?))
}
