//! Operations the writer applies, and what it answers.

use std::sync::Arc;

use crate::changelog::LogOp;
use crate::routing::{Installed, Route};
use ringshift_ring::RangeSet;

use super::SnapshotSession;
use super::hash::HashCmd;
use super::list::ListCmd;
use super::set::SetCmd;
use super::strings::StrCmd;
use super::zset::ZsetCmd;

/// How SET treats the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// No expiry (SET without options clears any previous one).
    Clear,
    /// Absolute unix ms.
    At(u64),
    /// Keep whatever expiry the key has (KEEPTTL).
    Keep,
}

/// EXPIRE's NX/XX/GT/LT options (Redis 7): when to set the new expiry. A key without an expiry
/// counts as expiring never (GT never applies to it, LT always does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireCond {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later than the current one.
    pub gt: bool,
    /// Only if the new expiry is earlier than the current one.
    pub lt: bool,
}

impl ExpireCond {
    /// Whether a new expiry `at` may replace `current` (None = no expiry).
    pub fn allows(&self, current: Option<u64>, at: u64) -> bool {
        !(self.nx && current.is_some()
            || self.xx && current.is_none()
            || self.gt && current.is_none_or(|c| at <= c)
            || self.lt && current.is_some_and(|c| at >= c))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCond {
    Always,
    IfAbsent,
    IfPresent,
}

/// A data command whose keys this node must own; applied atomically, all keys or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataCmd {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        expiry: SetExpiry,
        cond: SetCond,
        get: bool,
    },
    Del {
        keys: Vec<Vec<u8>>,
    },
    IncrBy {
        key: Vec<u8>,
        delta: i64,
    },
    /// Set the absolute expiry (None = PERSIST); an expiry in the past deletes the key.
    Expire {
        key: Vec<u8>,
        at: Option<u64>,
        cond: ExpireCond,
    },
    MSet {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// MSETNX: all pairs if no key exists, else none.
    MSetNx {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A single-key string command evaluated from the key's state (see `strings`).
    Str(StrCmd),
    /// RENAME (`nx`: RENAMENX): the value and expiry move to `dst`, `src` is deleted.
    Rename {
        src: Vec<u8>,
        dst: Vec<u8>,
        nx: bool,
    },
    /// COPY: `dst` gets `src`'s value and expiry (only if absent unless `replace`).
    Copy {
        src: Vec<u8>,
        dst: Vec<u8>,
        replace: bool,
    },
    /// A hash write (see `hash`).
    Hash(HashCmd),
    /// A set write (see `set`).
    Sets(SetCmd),
    /// A sorted-set write (see `zset`).
    ZSet(ZsetCmd),
    /// A list write (see `list`).
    List(ListCmd),
}

impl DataCmd {
    /// Calls `f` on each key while it returns true; true if it did for every key. (No
    /// allocation: the writer calls this for every command.)
    pub fn all_keys(&self, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            DataCmd::Set { key, .. }
            | DataCmd::IncrBy { key, .. }
            | DataCmd::Expire { key, .. } => f(key),
            DataCmd::Str(c) => f(c.key()),
            DataCmd::Hash(c) => f(c.key()),
            DataCmd::Sets(c) => c.all_keys(f),
            DataCmd::ZSet(c) => c.all_keys(f),
            DataCmd::List(c) => c.all_keys(f),
            DataCmd::Rename { src, dst, .. } | DataCmd::Copy { src, dst, .. } => f(src) && f(dst),
            DataCmd::Del { keys } => keys.iter().all(|k| f(k)),
            DataCmd::MSet { pairs } | DataCmd::MSetNx { pairs } => pairs.iter().all(|(k, _)| f(k)),
        }
    }

    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            DataCmd::Set { key, .. }
            | DataCmd::IncrBy { key, .. }
            | DataCmd::Expire { key, .. } => {
                vec![key]
            }
            DataCmd::Str(c) => vec![c.key()],
            DataCmd::Hash(c) => vec![c.key()],
            DataCmd::Sets(c) => c.keys(),
            DataCmd::ZSet(c) => c.keys(),
            DataCmd::List(c) => c.keys(),
            DataCmd::Rename { src, dst, .. } | DataCmd::Copy { src, dst, .. } => vec![src, dst],
            DataCmd::Del { keys } => keys.iter().map(Vec::as_slice).collect(),
            DataCmd::MSet { pairs } | DataCmd::MSetNx { pairs } => {
                pairs.iter().map(|(k, _)| k.as_slice()).collect()
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataReply {
    Ok,
    Nil,
    /// The RESP2 null array (`*-1`; `_` in RESP3).
    NullArray,
    Bulk(Vec<u8>),
    Int(i64),
    Err(String),
    Array(Vec<DataReply>),
}

/// A metadata write that goes into the same batch: key and new value (None = delete).
pub type MetaPut = (Vec<u8>, Option<Vec<u8>>);

pub enum Op {
    Data(DataCmd),
    /// A forwarded write with its coordinator's deadline (unix ms): evaluated at or after
    /// the deadline, it is refused unapplied (the coordinator has given up on it by then).
    DataBefore {
        cmd: DataCmd,
        deadline_ms: u64,
    },
    Fence {
        migration_uid: String,
        attempt: u64,
        ranges: RangeSet,
    },
    Unfence {
        migration_uid: String,
        attempt: u64,
    },
    /// Install a placement (already validated against the current one by the caller, and
    /// re-checked here in order).
    Install {
        installed: Arc<Installed>,
        raw: Vec<u8>,
        degraded: Option<String>,
    },
    /// Apply pulled records and persist the pull cursor in the same batch. Refused once this
    /// node owns any of `guard` (a pull must never overwrite ranges we serve).
    Apply {
        ops: Vec<LogOp>,
        meta: Vec<MetaPut>,
        guard: RangeSet,
    },
    /// Remove every key of the ranges (logged as range clears).
    Clear {
        ranges: RangeSet,
        meta: Vec<MetaPut>,
    },
    /// Remove up to `max` keys of the ranges (only storage keys above `after`, if given),
    /// unlogged (see `Engine::clear_in_chunks`). Refused once this node owns any of the ranges.
    ClearChunk {
        ranges: RangeSet,
        after: Option<super::CopyCursor>,
        max: usize,
    },
    /// Remove `keys` (elements of the collection version whose sub-keys start with `prefix`),
    /// unlogged, unless that version is live (answers `Done`).
    SubGc {
        prefix: Vec<u8>,
        keys: Vec<Vec<u8>>,
    },
    /// Record what a bulk ingestion unit wrote into `guard` (see `engine::ingest`): the pull's
    /// cursor (in `meta`), expiry index entries and key counts. Refused once this node owns any
    /// of `guard`.
    Ingested {
        meta: Vec<MetaPut>,
        index: Vec<Vec<u8>>,
        counts: Vec<(u32, i64)>,
        guard: RangeSet,
    },
    /// FLUSHALL/FLUSHDB: remove every key of the ranges this node serves, logged as range
    /// clears. Refused while any of them is fenced (or the node is degraded).
    Flush,
    /// A consistent snapshot of everything up to the returned offset.
    Snapshot,
    Meta(Vec<MetaPut>),
    /// Active expiry candidates: (index key, storage key, expiry they were indexed with).
    Expired(Vec<(Vec<u8>, Vec<u8>, u64)>),
}

impl Op {
    /// Pulled batches, range clears, expiry sweeps and ingestion commits: operations whose
    /// evaluation may take milliseconds.
    pub fn is_bulk(&self) -> bool {
        matches!(
            self,
            Op::Apply { .. }
                | Op::Clear { .. }
                | Op::Flush
                | Op::ClearChunk { .. }
                | Op::Expired(_)
                | Op::Ingested { .. }
                | Op::SubGc { .. }
        )
    }
}

pub enum Outcome {
    Data(DataReply),
    /// Not applied: the route says why; the command comes back for a retry elsewhere.
    NotServed(Route, DataCmd),
    Fenced {
        offset: u64,
    },
    Refused(String),
    /// Not applied: a forwarded write reached evaluation at or after its deadline.
    DeadlinePassed {
        deadline_ms: u64,
        now_ms: u64,
    },
    Done,
    /// The expiry sweep's deletes ran: the keys it deleted.
    Expired(Vec<Vec<u8>>),
    /// A clear chunk ran; `done`: the ranges held no more keys.
    Cleared {
        done: bool,
    },
    Snapshot(Arc<SnapshotSession>),
    Failed(String),
    /// A transaction applied: one reply per queued command.
    Transaction(Vec<super::tx::TxReply>),
    /// A transaction not applied: a watched key was modified (or moved) since WATCH.
    WatchAborted,
    /// A transaction not applied: a key of it is not served here (the route says why).
    TxNotServed(Route),
}
