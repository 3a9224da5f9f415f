//! Admin API of the ringshift node: request and response types (JSON, camelCase, unknown fields
//! refused, every 64-bit number a decimal string) and, with the `client` feature, an async
//! client.
//!
//! Endpoints (all under the node's `--admin-listen` address; every one except `/healthz`,
//! `/readyz` and `/metrics` needs `Authorization: Bearer <token>`, else 401):
//!
//! | method, path | body | answer |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz` | | 200 `ok` |
//! | `GET /metrics` | | Prometheus text |
//! | `GET /v1/status` | | [`NodeStatus`] |
//! | `GET /v1/placement` | | [`PlacementInstall`] (404 if none) |
//! | `PUT /v1/placement` | [`PlacementInstall`] | [`PlacementAccepted`]; 409 lower epoch / other cluster |
//! | `POST /v1/pulls` | [`StartPull`] | [`PullStatus`] (idempotent per migration + attempt); 409 `Conflict` while a drop of the ranges runs |
//! | `GET /v1/pulls`, `GET /v1/pulls/{migrationUid}` | | `[PullStatus]`, [`PullStatus`] |
//! | `DELETE /v1/pulls/{migrationUid}` | [`Caller`] | [`PullStatus`] (cancelled) |
//! | `POST /v1/fence` | [`FenceRequest`] | [`FenceResponse`] (same attempt: same offset) |
//! | `POST /v1/unfence` | [`UnfenceRequest`] | [`Done`] (same attempt only); releases attempts <= this one: a later fence of them is 409 `StaleAttempt` |
//! | `POST /v1/drop` | [`DropRequest`] | [`Done`]; 409 if the node owns a range, is below the epoch, or a pull of the ranges runs |
//! | `POST /v1/checksum` | [`ChecksumRequest`] | [`ChecksumResponse`] |
//! | `GET /v1/debug/accepted-writes` | | [`AcceptedWrites`] (split-brain evidence) |
//!
//! Node-to-node endpoints used by a pull (same token): `POST /v1/snapshots` ([`OpenSnapshot`] ->
//! [`SnapshotOpened`]), `GET /v1/snapshots/{migrationUid}/chunk?after=<hex storage key>&max=N&maxBytes=B`
//! and `GET /v1/log?incarnation=I&after=S&ranges=a-b,c-d&max=N&reader=R&waitMs=W` (binary bodies,
//! see the node crate's `wire` module), `DELETE /v1/snapshots/{migrationUid}`.
//!
//! Errors are [`ApiError`] with a machine-readable `reason` and a human `error`; 400 for
//! malformed or unknown fields (nothing applied), 409 for stale or refused calls, 410 when a
//! pull must re-copy (offset too old or source restarted with a new incarnation).

use std::collections::BTreeMap;

pub use ringshift_ring::{HashRange, Placement};
use serde::{Deserialize, Serialize};

#[cfg(feature = "client")]
pub mod client;

mod u64s {
    pub use ringshift_ring::serde_u64::*;
}

/// Identifies the operator action behind a mutating call; stale ones are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Caller {
    pub cluster_uid: String,
    #[serde(with = "u64s")]
    pub epoch: u64,
    pub migration_uid: String,
    #[serde(with = "u64s")]
    pub attempt: u64,
}

/// A change-log offset: sequences restart never within one incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Offset {
    pub incarnation: String,
    #[serde(with = "u64s")]
    pub sequence: u64,
}

/// Where a member listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberEndpoint {
    pub name: String,
    /// `ip:port` of the RESP data port.
    pub data_addr: String,
    /// `ip:port` of the admin API.
    pub admin_addr: String,
}

/// Body of `PUT /v1/placement` and answer of `GET /v1/placement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementInstall {
    pub placement: Placement,
    pub members: Vec<MemberEndpoint>,
    /// How long a coordinator holds a command for a fenced range before answering TRYAGAIN.
    #[serde(with = "u64s")]
    pub write_pause_budget_ms: u64,
    /// Incarnation the operator last saw for each member. A member whose own entry differs from
    /// its data directory's incarnation, while the placement gives it ranges, is Degraded.
    #[serde(default)]
    pub incarnations: BTreeMap<String, String>,
    /// `OwnerMap::digest` of the placement's current ownership as the operator resolved it. A
    /// node whose own replay differs (different ring code) refuses the install (409) instead of
    /// serving a different ownership.
    #[serde(
        default,
        with = "u64s::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub owners_digest: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementAccepted {
    #[serde(with = "u64s")]
    pub epoch: u64,
    pub incarnation: String,
    #[serde(default)]
    pub degraded: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FenceView {
    pub migration_uid: String,
    #[serde(with = "u64s")]
    pub attempt: u64,
    pub ranges: Vec<HashRange>,
    pub fence_offset: Offset,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    pub member: String,
    pub incarnation: String,
    #[serde(default)]
    pub cluster_uid: Option<String>,
    /// Epoch of the installed placement (0: none).
    #[serde(with = "u64s")]
    pub epoch: u64,
    pub log_head: Offset,
    /// Oldest sequence still in the change log.
    #[serde(with = "u64s")]
    pub log_oldest: u64,
    /// Approximate number of stored keys.
    #[serde(with = "u64s")]
    pub keys: u64,
    /// Bytes on disk.
    #[serde(with = "u64s")]
    pub bytes: u64,
    #[serde(default)]
    pub degraded: Option<String>,
    pub fences: Vec<FenceView>,
    pub owned_ranges: Vec<HashRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartPull {
    pub caller: Caller,
    pub source: MemberEndpoint,
    pub ranges: Vec<HashRange>,
    /// Copy rate limit (snapshot and catch-up), bytes per second.
    #[serde(
        default,
        with = "u64s::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes_per_sec: Option<u64>,
    /// Compare range checksums of source snapshot and target after the copy, before catch-up.
    #[serde(default = "yes")]
    pub verify: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPhase {
    /// Clearing the ranges on the target, opening the source snapshot.
    Starting,
    /// Copying the snapshot in chunks.
    Copying,
    /// Comparing checksums at the snapshot offset.
    Verifying,
    /// Tailing the source's change log from the snapshot offset.
    CatchingUp,
    /// This node owns the ranges now (the move committed); the pull stopped.
    Completed,
    Cancelled,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// A cutover may start only from a pull with `phase` CatchingUp, `attempt` equal to the move's
/// copy attempt and `verified` Some(true); then `applied_offset >= F` means the target holds
/// every record of the ranges up to the fence offset F.
pub struct PullStatus {
    pub migration_uid: String,
    /// The copy attempt this pull runs (the `caller.attempt` of the StartPull that began it).
    #[serde(with = "u64s")]
    pub attempt: u64,
    pub source: MemberEndpoint,
    pub ranges: Vec<HashRange>,
    pub phase: PullPhase,
    /// Source offset of the snapshot being copied; None until it is open and after a re-copy
    /// starts over.
    #[serde(default)]
    pub snapshot_offset: Option<Offset>,
    /// Source offset applied on this node (copy + catch-up); filtered records count as applied.
    /// Advanced only once the records up to it are durable here; None until the copy is done
    /// and again when a re-copy starts over (phase Starting).
    #[serde(default)]
    pub applied_offset: Option<Offset>,
    #[serde(default, with = "u64s::option")]
    pub source_head: Option<u64>,
    #[serde(default, with = "u64s::option")]
    pub lag: Option<u64>,
    #[serde(with = "u64s")]
    pub keys_copied: u64,
    #[serde(with = "u64s")]
    pub bytes_copied: u64,
    /// Checksums of source snapshot and target matched (Some(true)) for the current copy; None
    /// until verified and again after a re-copy starts over.
    #[serde(default)]
    pub verified: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FenceRequest {
    pub caller: Caller,
    pub ranges: Vec<HashRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FenceResponse {
    /// No record of a fenced range has a sequence above this.
    pub fence_offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnfenceRequest {
    pub caller: Caller,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DropRequest {
    pub caller: Caller,
    pub ranges: Vec<HashRange>,
    /// The operator's current committed epoch (not the older epoch at which ownership ended):
    /// a node whose installed epoch is lower refuses the drop (`StaleEpoch`), so a drop retried
    /// after the ranges came back waits for the placement that gives them back (then `Owned`).
    /// 0 is refused (`BadRequest`).
    #[serde(with = "u64s")]
    pub ownership_ended_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChecksumRequest {
    pub ranges: Vec<HashRange>,
    /// Checksum the snapshot this node (as a source) holds open for that migration, at its
    /// offset; without it, the current data.
    #[serde(default)]
    pub snapshot_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChecksumResponse {
    /// Order-independent digest (wrapping sum of XXH3 over key, value and expiry).
    #[serde(with = "u64s")]
    pub digest: u64,
    #[serde(with = "u64s")]
    pub keys: u64,
    /// Log offset of this node the digest corresponds to.
    pub offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenSnapshot {
    pub caller: Caller,
    pub ranges: Vec<HashRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotOpened {
    pub offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Done {
    pub ok: bool,
}

/// `GET /v1/debug/accepted-writes`: the writes this node accepted as owner (applied locally, not
/// forwarded), aggregated per (owned range, placement epoch). Kept in memory since the process
/// started (`sinceMs`); the oldest epochs are evicted past a cap (`truncated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptedWrites {
    pub member: String,
    pub incarnation: String,
    /// Unix ms when recording started (process start): no evidence before it.
    #[serde(with = "u64s")]
    pub since_ms: u64,
    /// Unix ms of this answer (same clock as the windows).
    #[serde(with = "u64s")]
    pub now_ms: u64,
    /// Windows of older epochs were evicted.
    pub truncated: bool,
    /// Ordered by epoch, then range start; only windows with at least one write.
    pub windows: Vec<AcceptedWindow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptedWindow {
    /// A range this node owned at `epoch`, as in that placement.
    pub range: HashRange,
    #[serde(with = "u64s")]
    pub epoch: u64,
    /// Unix ms of the first and last write accepted for the range at that epoch (the time the
    /// writer checked ownership and evaluated the write).
    #[serde(with = "u64s")]
    pub first_ms: u64,
    #[serde(with = "u64s")]
    pub last_ms: u64,
    /// Keys written (a multi-key command counts each key).
    #[serde(with = "u64s")]
    pub count: u64,
}

/// Machine-readable error reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorReason {
    BadRequest,
    Unauthorized,
    NotFound,
    OtherCluster,
    StaleEpoch,
    StaleAttempt,
    Owned,
    /// The reader must re-copy (offset too old, or the source's incarnation changed).
    Recopy,
    Conflict,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiError {
    pub reason: ErrorReason,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64s_are_strings_and_unknown_fields_refused() {
        let c = Caller {
            cluster_uid: "c".into(),
            epoch: u64::MAX,
            migration_uid: "m".into(),
            attempt: 1,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"18446744073709551615\""));
        assert_eq!(serde_json::from_str::<Caller>(&json).unwrap(), c);
        let extra = json.replace('}', ",\"x\":1}");
        assert!(serde_json::from_str::<Caller>(&extra).is_err());
    }

    #[test]
    fn accepted_writes_json_uses_strings_for_64_bit_numbers() {
        let json = r#"{"member":"a","incarnation":"i","sinceMs":"1","nowMs":"2","truncated":false,
            "windows":[{"range":{"start":"0","end":"18446744073709551615"},"epoch":"3",
            "firstMs":"10","lastMs":"20","count":"5"}]}"#;
        let w: AcceptedWrites = serde_json::from_str(json).unwrap();
        assert_eq!(w.windows[0].range.end, u64::MAX);
        assert_eq!((w.windows[0].epoch, w.windows[0].count), (3, 5));
        let back = serde_json::to_string(&w).unwrap();
        assert!(back.contains("\"lastMs\":\"20\""), "{back}");
    }

    #[test]
    fn pull_defaults_to_verifying() {
        let json = r#"{"caller":{"clusterUid":"c","epoch":"1","migrationUid":"m","attempt":"1"},
            "source":{"name":"a","dataAddr":"127.0.0.1:6379","adminAddr":"127.0.0.1:8080"},
            "ranges":[{"start":"0","end":"10"}]}"#;
        let p: StartPull = serde_json::from_str(json).unwrap();
        assert!(p.verify);
        assert_eq!(p.bytes_per_sec, None);
    }
}
