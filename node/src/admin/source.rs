//! Source-side endpoints a target's pull calls: open/close a snapshot, read snapshot chunks,
//! tail the change log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use ringshift_node_api::*;
use ringshift_ring::RangeSet;

use super::{ApiResult, api_err, authorize, check_caller, parse_body, validate_ranges};
use crate::engine::{EngineError, Op, Outcome, SourceSession};
use crate::node::Node;
use crate::wire;

const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;

pub async fn open_snapshot(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<SnapshotOpened>> {
    authorize(&node, &headers)?;
    let req: OpenSnapshot = parse_body(&body)?;
    let rs = validate_ranges(&req.ranges)?;
    check_caller(&node, &req.caller).await?;
    // A snapshot is a promise that this node's copy of the ranges is the live one: refused
    // once they are fenced (a cutover is under way) or no longer owned (it committed), so a
    // pull starting over then never clears its target, which may be the owner by now.
    let routing = node.engine.routing();
    let owned = routing.owned_set();
    if let Some(r) = rs.iter().find(|r| !owned.covers(r)) {
        return Err(api_err(
            ErrorReason::Conflict,
            format!(
                "range {}-{} is not owned by this node at epoch {}; no snapshot",
                r.start,
                r.end,
                routing.epoch()
            ),
        ));
    }
    if let Some(f) = routing.fences.iter().find(|f| f.ranges.overlaps(&rs)) {
        return Err(api_err(
            ErrorReason::Conflict,
            format!(
                "the ranges are fenced for the cutover of migration {} (attempt {}); no snapshot",
                f.migration_uid, f.attempt
            ),
        ));
    }
    let uid = req.caller.migration_uid.clone();
    let existing = node
        .engine
        .snapshots
        .lock()
        .ok()
        .and_then(|m| m.get(&uid).cloned());
    if let Some(s) = existing
        && s.attempt == req.caller.attempt
        && s.ranges == rs
    {
        return Ok(Json(SnapshotOpened {
            offset: Offset {
                incarnation: node.engine.incarnation.clone(),
                sequence: s.session.offset,
            },
        }));
    }
    let session = match node.engine.run(Op::Snapshot).await {
        Ok(Outcome::Snapshot(s)) => s,
        Ok(_) => return Err(api_err(ErrorReason::Internal, "unexpected writer answer")),
        Err(e) => return Err(api_err(ErrorReason::Internal, e.to_string())),
    };
    let offset = session.offset;
    node.engine.pin(&uid, offset);
    if let Ok(mut m) = node.engine.snapshots.lock() {
        m.insert(
            uid.clone(),
            SourceSession {
                attempt: req.caller.attempt,
                ranges: rs,
                session,
                last_used: Arc::new(std::sync::atomic::AtomicU64::new(crate::keys::now_ms())),
            },
        );
    }
    tracing::info!(migration = %uid, offset, "snapshot opened for a pull");
    Ok(Json(SnapshotOpened {
        offset: Offset {
            incarnation: node.engine.incarnation.clone(),
            sequence: offset,
        },
    }))
}

pub async fn close_snapshot(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Done>> {
    authorize(&node, &headers)?;
    let caller: Caller = parse_body(&body)?;
    check_caller(&node, &caller).await?;
    if let Ok(mut m) = node.engine.snapshots.lock() {
        m.remove(&uid);
    }
    // The pull re-pins with its next log read if it goes on tailing.
    node.engine.unpin(&uid);
    Ok(Json(Done { ok: true }))
}

pub async fn chunk(
    State(node): State<Arc<Node>>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Vec<u8>> {
    authorize(&node, &headers)?;
    let after = match q.get("after").map(String::as_str) {
        None | Some("") => None,
        Some(h) => Some(crate::engine::CopyCursor::from_param(h).ok_or_else(|| {
            api_err(
                ErrorReason::BadRequest,
                "after must be hex (a storage key) or s + hex (a sub-key)",
            )
        })?),
    };
    let max: usize = q
        .get("max")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 100_000);
    let max_bytes: usize = q
        .get("maxBytes")
        .and_then(|m| m.parse().ok())
        .unwrap_or(MAX_CHUNK_BYTES)
        .clamp(1, MAX_CHUNK_BYTES);
    let session = node
        .engine
        .snapshots
        .lock()
        .ok()
        .and_then(|m| m.get(&uid).cloned())
        .ok_or_else(|| {
            api_err(
                ErrorReason::Recopy,
                format!("no snapshot open for migration {uid} (source restarted?); re-copy"),
            )
        })?;
    session.touch();
    let engine = node.engine.clone();
    let body = tokio::task::spawn_blocking(move || {
        engine.read_chunk_wire(
            &session.session.snapshot,
            session.ranges.ranges(),
            after.as_ref(),
            max,
            max_bytes,
        )
    })
    .await
    .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?
    .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
    Ok(body)
}

pub async fn log(
    State(node): State<Arc<Node>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Vec<u8>> {
    authorize(&node, &headers)?;
    let bad = |m: &str| api_err(ErrorReason::BadRequest, m.to_string());
    let incarnation = q
        .get("incarnation")
        .ok_or_else(|| bad("incarnation is required"))?
        .clone();
    let after: u64 = q
        .get("after")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| bad("after must be a decimal u64"))?;
    let filter = q
        .get("ranges")
        .and_then(|r| r.parse::<RangeSet>().ok())
        .ok_or_else(|| bad("ranges must be start-end[,start-end...]"))?;
    let max: usize = q
        .get("max")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 100_000);
    let wait_ms: u64 = q
        .get("waitMs")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
        .min(5000);
    if let Some(reader) = q.get("reader") {
        node.engine.pin(reader, after);
    }
    let mut changes = node.engine.head_changes();
    let mut batch = tail(&node, &incarnation, after, &filter, max)?;
    if batch.records.is_empty() && batch.watermark == after && wait_ms > 0 {
        let _ = tokio::time::timeout(Duration::from_millis(wait_ms), changes.changed()).await;
        batch = tail(&node, &incarnation, after, &filter, max)?;
    }
    Ok(wire::encode_tail(&batch, node.engine.head()))
}

fn tail(
    node: &Node,
    incarnation: &str,
    after: u64,
    filter: &RangeSet,
    max: usize,
) -> ApiResult<crate::changelog::TailBatch> {
    node.engine
        .tail(incarnation, after, filter, max)
        .map_err(|e| match e {
            EngineError::TooOld { .. }
            | EngineError::WrongIncarnation { .. }
            | EngineError::Ahead { .. } => api_err(ErrorReason::Recopy, e.to_string()),
            other => api_err(ErrorReason::Internal, other.to_string()),
        })
}
