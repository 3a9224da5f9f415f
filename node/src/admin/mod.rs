//! Admin HTTP API (see `ringshift-node-api` for the endpoint table).

mod errors;
mod handlers;
mod source;
pub use errors::{ApiErr, ApiResult, api_err};

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use ringshift_node_api::{Caller, ErrorReason};
use ringshift_ring::{HashRange, RangeSet};
use serde::de::DeserializeOwned;

use crate::engine::Op;
use crate::node::Node;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/status", get(handlers::status))
        .route(
            "/v1/placement",
            get(handlers::get_placement).put(handlers::put_placement),
        )
        .route("/v1/fence", post(handlers::fence))
        .route("/v1/unfence", post(handlers::unfence))
        .route("/v1/drop", post(handlers::drop_ranges))
        .route("/v1/checksum", post(handlers::checksum))
        .route(
            "/v1/pulls",
            get(handlers::list_pulls).post(handlers::start_pull),
        )
        .route(
            "/v1/pulls/{uid}",
            get(handlers::get_pull).delete(handlers::cancel_pull),
        )
        .route("/v1/snapshots", post(source::open_snapshot))
        .route(
            "/v1/snapshots/{uid}",
            axum::routing::delete(source::close_snapshot),
        )
        .route("/v1/snapshots/{uid}/chunk", get(source::chunk))
        .route("/v1/log", get(source::log))
        .route("/v1/debug/accepted-writes", get(handlers::accepted_writes))
        .route("/v1/debug/stored-elements", get(handlers::stored_elements))
        .with_state(node)
}

/// Bearer-token check (constant-time comparison).
pub fn authorize(node: &Node, headers: &HeaderMap) -> ApiResult<()> {
    let Some(token) = node.cfg.admin_token.as_deref() else {
        return Err(api_err(
            ErrorReason::Unauthorized,
            "no admin token configured on this node (--admin-token-file)",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(api_err(
            ErrorReason::Unauthorized,
            "missing or wrong bearer token",
        ))
    }
}

/// Parses a JSON body strictly (unknown fields refused) into a 400 on error.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        api_err(
            ErrorReason::BadRequest,
            format!("invalid request body: {e}"),
        )
    })
}

/// Refuses calls from another cluster, an older epoch or an older attempt of the migration, and
/// records the attempt (durably) so older ones stay refused.
pub async fn check_caller(node: &Node, caller: &Caller) -> ApiResult<()> {
    let routing = node.engine.routing();
    if let Some(uid) = node.cfg.cluster_uid.as_deref()
        && uid != caller.cluster_uid
    {
        return Err(api_err(
            ErrorReason::OtherCluster,
            format!(
                "call from cluster {} refused: this node belongs to cluster {uid}",
                caller.cluster_uid
            ),
        ));
    }
    if let Some(p) = &routing.placement {
        if p.cluster_uid != caller.cluster_uid {
            return Err(api_err(
                ErrorReason::OtherCluster,
                format!(
                    "call from cluster {} refused: this node belongs to cluster {}",
                    caller.cluster_uid, p.cluster_uid
                ),
            ));
        }
        if caller.epoch < p.epoch {
            return Err(api_err(
                ErrorReason::StaleEpoch,
                format!(
                    "call at epoch {} refused: this node is at epoch {}",
                    caller.epoch, p.epoch
                ),
            ));
        }
    }
    let key = crate::engine::attempt_key(&caller.migration_uid);
    let seen = node
        .engine
        .meta_get(&key)
        .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?
        .and_then(|v| {
            <[u8; 8]>::try_from(v.as_slice())
                .ok()
                .map(u64::from_be_bytes)
        });
    match seen {
        Some(s) if s > caller.attempt => Err(api_err(
            ErrorReason::StaleAttempt,
            format!(
                "attempt {} of migration {} refused: attempt {s} was seen",
                caller.attempt, caller.migration_uid
            ),
        )),
        Some(s) if s == caller.attempt => Ok(()),
        _ => {
            node.engine
                .run(Op::Meta(vec![(
                    key,
                    Some(caller.attempt.to_be_bytes().to_vec()),
                )]))
                .await
                .map_err(|e| api_err(ErrorReason::Internal, e.to_string()))?;
            Ok(())
        }
    }
}

/// The requested ranges as a set (sorted, merged); refuses an empty list.
pub fn validate_ranges(ranges: &[HashRange]) -> ApiResult<RangeSet> {
    if ranges.is_empty() {
        return Err(api_err(ErrorReason::BadRequest, "ranges must not be empty"));
    }
    RangeSet::new(ranges.iter().copied())
        .map_err(|_| api_err(ErrorReason::BadRequest, "a range has start > end"))
}
