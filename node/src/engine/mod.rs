//! Durable storage on fjall: data, change log, expiry index and node metadata keyspaces. All
//! writes go through one writer thread (see `writer`) that group-commits them with their change
//! log records; reads go straight to the data keyspace.

pub mod cache;
pub mod collection;
mod copy;
pub mod counts;
mod decimal;
mod elements;
pub mod hash;
pub mod ingest;
pub mod list;
mod list_reads;
pub mod list_source;
pub(crate) mod maintenance;
#[cfg(test)]
mod maintenance_tests;
mod open;
pub mod ops;
pub mod presence;
pub mod ready;
pub mod set;
mod small;
pub mod strings;
#[cfg(test)]
mod strings_tests;
pub mod sub_presence;
#[cfg(test)]
mod tests;
pub mod touched;
pub mod tx;
#[cfg(test)]
mod tx_zset_tests;
pub mod view;
mod writer;
pub mod zrange;
mod zread;
pub mod zscore;
pub mod zset;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Database, Keyspace};
use tokio::sync::{oneshot, watch};

use crate::changelog::{self, TailBatch};
use crate::keys::{self, Stored};
use crate::routing::Routing;
use ringshift_ring::{HashRange, RangeSet};

pub use copy::CopyCursor;
pub use maintenance::spawn as spawn_maintenance;
pub use open::{DecodeError, EngineConfig, META_PLACEMENT, PlacementDecoder, open};
pub use ops::{DataCmd, DataReply, Op, Outcome};
pub use writer::parse_int as writer_parse_int;
pub use writer::{attempt_key, fence_key};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("storage engine error: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("corrupt metadata {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("corrupt metadata placement: {0}")]
    CorruptPlacement(#[source] DecodeError),
    #[error("data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the writer stopped (storage failure earlier)")]
    WriterGone,
    #[error(
        "offset {incarnation}:{after} is older than the retained change log (oldest retained sequence {oldest}); re-copy the ranges"
    )]
    TooOld {
        incarnation: String,
        after: u64,
        oldest: u64,
    },
    #[error(
        "offset belongs to incarnation {asked}, this node is incarnation {mine}; re-copy the ranges"
    )]
    WrongIncarnation { asked: String, mine: String },
    #[error("offset {after} is ahead of this node's log head {head}")]
    Ahead { after: u64, head: u64 },
    #[error("ingested unit discarded: {0}")]
    Discarded(String),
    #[error("removing stale collection elements failed: {0}")]
    GcFailed(String),
}

/// Why an operation that answers `Done` did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The writer refused it (the text says why: a newer epoch, ownership, ...).
    #[error("{0}")]
    Refused(String),
    /// Its group commit failed.
    #[error("{0}")]
    Failed(String),
    #[error("unexpected writer answer")]
    Unexpected,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    #[error("{0}")]
    Owned(String),
    #[error("{0}")]
    Failed(String),
}

/// Keys removed per batch by `Engine::clear_in_chunks`.
pub const CLEAR_CHUNK: usize = 5_000;

/// A connection that watches keys; dropping it ends the registration.
pub struct Watching {
    engine: Arc<Engine>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.engine.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A (key, value) pair as stored.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// A consistent view of the data at a log offset, held open for a pull.
pub struct SnapshotSession {
    pub snapshot: fjall::Snapshot,
    pub offset: u64,
}

/// A snapshot a source holds open for one migration attempt's pull.
#[derive(Clone)]
pub struct SourceSession {
    pub attempt: u64,
    pub ranges: RangeSet,
    pub session: Arc<SnapshotSession>,
    /// Unix ms of the last chunk or checksum served; idle sessions are closed (a held snapshot
    /// keeps old versions from being compacted away).
    pub last_used: Arc<AtomicU64>,
}

impl SourceSession {
    pub fn touch(&self) {
        self.last_used.store(keys::now_ms(), Ordering::Relaxed);
    }
}

pub struct Engine {
    pub(crate) db: Database,
    pub(crate) data: Keyspace,
    /// Collection elements (sub-keys, see `collection`).
    pub(crate) sub: Keyspace,
    pub(crate) log: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) expiry: Keyspace,
    pub incarnation: String,
    pub(crate) durable_head: AtomicU64,
    pub(crate) oldest_seq: AtomicU64,
    pub(crate) log_bytes: AtomicU64,
    /// Deletes and overwrites of stored keys so far (the writer counts them): stale collection
    /// versions come from these, so the garbage walk (`maintenance`) rests while it stays put.
    pub(crate) deletions: AtomicU64,
    head_tx: watch::Sender<u64>,
    routing: RwLock<Arc<Routing>>,
    routing_tx: watch::Sender<u64>,
    /// Ranges this node owns as the writer last evaluated an install. A bulk ingestion checks
    /// them (and its cancellation) and registers its tables under the read lock; an install
    /// takes the write lock, so no copy lands in ranges after the node took them over.
    pub(crate) ingest_gate: RwLock<RangeSet>,
    /// Set once the committer runs.
    writer: std::sync::OnceLock<writer::Handle>,
    /// Reader pins: reader -> (sequence it has applied, unix ms of its last read).
    pub(crate) pins: Mutex<HashMap<String, (u64, u64)>>,
    pub snapshots: Mutex<HashMap<String, SourceSession>>,
    pub(crate) cache: cache::ReadCache,
    /// Stored keys per hash bucket (DBSIZE without a full scan).
    pub(crate) counts: counts::KeyCounts,
    /// Every key stored since open (a Bloom filter): new keys need no read to be counted.
    pub(crate) presence: presence::KeyFilter,
    /// Every collection element (and version) stored since open: new elements need no read.
    pub(crate) sub_presence: sub_presence::SubFilter,
    /// Windows of writes accepted as owner, per (owned range, epoch): split-brain evidence.
    pub accepted: crate::accepted::AcceptedWrites,
    /// Time of each group commit (journal write and fdatasync), exported as a metric.
    pub commit_latency: crate::metrics::LatencyHistogram,
    /// The data directory (its filesystem's free space is exported as a metric).
    pub dir: std::path::PathBuf,
    pub config: EngineConfig,
    /// Added to the system clock for every expiry decision: always 0 in a node; tests set it
    /// to play a member whose clock is off.
    pub(crate) clock_skew_ms: std::sync::atomic::AtomicI64,
    /// Connections watching keys: while none does, the writer keeps no per-key stamps.
    pub(crate) watchers: std::sync::atomic::AtomicUsize,
    /// Wakes blocked clients once a collection key they wait on is written here.
    pub ready: Arc<ready::KeyReady>,
    /// Where the expiry sweep sends the keys it deleted (keyspace notifications' `expired`),
    /// once the node has set it. Bounded: a sweep never waits for it, and batches that find it
    /// full are dropped (their events are not sent).
    pub expired_feed: std::sync::OnceLock<tokio::sync::mpsc::Sender<Vec<Vec<u8>>>>,
}

impl Engine {
    /// This node's clock for expiry (unix ms).
    pub fn now_ms(&self) -> u64 {
        keys::now_ms().saturating_add_signed(self.clock_skew_ms.load(Ordering::Relaxed))
    }

    /// Sends an operation to the writer; the answer arrives once it is durable.
    pub fn submit(&self, op: Op) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        // Without a writer the dropped `reply` makes `rx` fail, which the caller reports.
        let Some(w) = self.writer.get() else {
            return rx;
        };
        // Writes are evaluated on the calling thread. A bulk operation can take milliseconds:
        // on the server's runtime, tell it this worker blocks so its other connections move to
        // another thread meanwhile.
        let bulk = op.is_bulk();
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let req = writer::Request::One { op, reply };
        if bulk && multi_thread {
            tokio::task::block_in_place(|| w.submit(req));
        } else {
            w.submit(req);
        }
        rx
    }

    /// One connection's pipelined writes, answered together once durable, in order. Once the
    /// writer refuses one as not served here, it refuses (does not apply) every later one, so
    /// the connection can retry them in order.
    pub fn submit_pipeline(&self, cmds: Vec<DataCmd>) -> oneshot::Receiver<Vec<Outcome>> {
        let (reply, rx) = oneshot::channel();
        if let Some(w) = self.writer.get() {
            w.submit(writer::Request::Pipeline { cmds, reply });
        }
        rx
    }

    /// Evaluates a transaction under the writer lock (see `tx`); answered once durable.
    pub async fn transaction(&self, tx: tx::Transaction) -> Result<Outcome, EngineError> {
        let (reply, rx) = oneshot::channel();
        if let Some(w) = self.writer.get() {
            w.submit(writer::Request::Transaction { tx, reply });
        }
        rx.await.map_err(|_| EngineError::WriterGone)
    }

    /// Registers a watching connection (the writer stamps modifications while one exists).
    pub fn start_watching(self: &Arc<Self>) -> Watching {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        Watching {
            engine: self.clone(),
        }
    }

    /// The writer's clock and each key's liveness now (a WATCH). Call with a `Watching` held.
    pub fn watch(&self, keys: &[Vec<u8>]) -> Result<Vec<tx::WatchedKey>, EngineError> {
        match self.writer.get() {
            Some(w) => Ok(w.watch(keys)?),
            None => Err(EngineError::WriterGone),
        }
    }

    /// Removes every key of `ranges` in bounded batches (`CLEAR_CHUNK` keys each) without
    /// logging them, so that the logged clear that follows (`Op::Clear`, or a pulled range
    /// clear in `Op::Apply`) finds at most a chunk left and its batch stays small. Only for
    /// ranges this node does not serve (refused otherwise); if interrupted, the caller's logged
    /// clear has not happened and is simply run again.
    pub async fn clear_in_chunks(&self, ranges: &RangeSet) -> Result<(), ClearError> {
        self.clear_after_in_chunks(ranges, None, None).await
    }

    /// `clear_in_chunks` of what a copy stream holds past `after` only (a resumed copy removes
    /// what was ingested past its persisted cursor); `failpoint` (a delay) runs before each chunk.
    pub async fn clear_after_in_chunks(
        &self,
        ranges: &RangeSet,
        after: Option<&CopyCursor>,
        failpoint: Option<&'static str>,
    ) -> Result<(), ClearError> {
        loop {
            if let Some(name) = failpoint {
                crate::failpoints::sleep(name).await;
            }
            match self
                .run(Op::ClearChunk {
                    ranges: ranges.clone(),
                    after: after.cloned(),
                    max: CLEAR_CHUNK,
                })
                .await
                .map_err(|e| ClearError::Failed(e.to_string()))?
            {
                Outcome::Cleared { done: true } => return Ok(()),
                Outcome::Cleared { done: false } => {}
                Outcome::Refused(m) => return Err(ClearError::Owned(m)),
                Outcome::Failed(m) => return Err(ClearError::Failed(m)),
                _ => return Err(ClearError::Failed("unexpected writer answer".into())),
            }
        }
    }

    /// Submits and waits.
    pub async fn run(&self, op: Op) -> Result<Outcome, EngineError> {
        self.submit(op).await.map_err(|_| EngineError::WriterGone)
    }

    /// Runs an operation whose success is `Outcome::Done`.
    pub async fn run_done(&self, op: Op) -> Result<(), WriteError> {
        match self.run(op).await? {
            Outcome::Done => Ok(()),
            Outcome::Refused(m) => Err(WriteError::Refused(m)),
            Outcome::Failed(m) => Err(WriteError::Failed(m)),
            _ => Err(WriteError::Unexpected),
        }
    }

    pub fn routing(&self) -> Arc<Routing> {
        match self.routing.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn publish_routing(&self, r: Arc<Routing>) {
        match self.routing.write() {
            Ok(mut g) => *g = r,
            Err(poisoned) => *poisoned.into_inner() = r,
        }
        self.routing_tx.send_modify(|v| *v += 1);
    }

    /// Wakes whenever routing (placement, fences) changes.
    pub fn routing_changes(&self) -> watch::Receiver<u64> {
        self.routing_tx.subscribe()
    }

    /// Wakes whenever the durable log head advances.
    pub fn head_changes(&self) -> watch::Receiver<u64> {
        self.head_tx.subscribe()
    }

    pub fn head(&self) -> u64 {
        self.durable_head.load(Ordering::Acquire)
    }

    pub fn oldest_retained(&self) -> u64 {
        self.oldest_seq.load(Ordering::Acquire)
    }

    /// Reads a live (unexpired) value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError> {
        let skey = keys::storage_key(key);
        let stored = match self.cache.get(&skey) {
            Ok(hit) => hit,
            Err(ticket) => {
                let stored = self.data.get(&skey)?.and_then(|r| Stored::decode(&r));
                self.cache.fill(ticket, &skey, stored.as_ref());
                stored
            }
        };
        let now = self.now_ms();
        Ok(stored.filter(|s| !s.is_expired(now)))
    }

    /// Live keys of `ranges` (sorted) with hash `>= from_hash`: at least `count` keys unless the
    /// ranges run out, never splitting a group of keys that share a hash. Returns the keys and the
    /// hash to resume from (None when done).
    pub fn scan(
        &self,
        ranges: &[HashRange],
        from_hash: u64,
        count: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>), EngineError> {
        let now = self.now_ms();
        let mut out = Vec::new();
        let mut last_hash = None;
        for r in ranges {
            if r.end < from_hash {
                continue;
            }
            let start = HashRange {
                start: r.start.max(from_hash),
                end: r.end,
            };
            let (lo, hi) = keys::range_bounds(start);
            let iter = match hi {
                Some(hi) => self.data.range(lo..hi),
                None => self.data.range(lo..),
            };
            for item in iter {
                let (k, v) = item.into_inner()?;
                let Some((hash, user)) = keys::split_storage_key(&k) else {
                    continue;
                };
                if out.len() >= count && last_hash != Some(hash) && hash != u64::MAX {
                    return Ok((out, Some(hash)));
                }
                last_hash = Some(hash);
                if Stored::decode(&v).is_some_and(|s| !s.is_expired(now)) {
                    out.push(user.to_vec());
                }
            }
        }
        Ok((out, None))
    }

    /// Number of live keys in `ranges`.
    pub fn count(&self, ranges: &[HashRange]) -> Result<u64, EngineError> {
        let now = self.now_ms();
        let mut n = 0;
        for r in ranges {
            let (lo, hi) = keys::range_bounds(*r);
            let iter = match hi {
                Some(hi) => self.data.range(lo..hi),
                None => self.data.range(lo..),
            };
            for item in iter {
                let v = item.value()?;
                if Stored::decode(&v).is_some_and(|s| !s.is_expired(now)) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Stored keys of `ranges` (including expired ones not yet collected, as Redis counts):
    /// bucket counters plus scans of the buckets the ranges' ends cut.
    pub fn dbsize(&self, ranges: &[HashRange]) -> Result<u64, EngineError> {
        self.counts.count(ranges, |part| {
            let (lo, hi) = keys::range_bounds(part);
            let iter = match hi {
                Some(hi) => self.data.range(lo..hi),
                None => self.data.range(lo..),
            };
            let mut n = 0;
            for item in iter {
                item.key()?;
                n += 1;
            }
            Ok(n)
        })
    }

    pub fn approximate_keys(&self) -> u64 {
        self.data.approximate_len() as u64
    }

    /// Approximate bytes of keys and values in the data keyspace: its tables on disk plus its
    /// active memtable.
    pub fn data_bytes(&self) -> u64 {
        use fjall::AbstractTree;
        self.data.disk_space() + self.data.tree.active_memtable().size()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Change-log records after `after` touching `filter`, only durable ones, up to `max`.
    pub fn tail(
        &self,
        incarnation: &str,
        after: u64,
        filter: &RangeSet,
        max: usize,
    ) -> Result<TailBatch, EngineError> {
        if incarnation != self.incarnation {
            return Err(EngineError::WrongIncarnation {
                asked: incarnation.to_string(),
                mine: self.incarnation.clone(),
            });
        }
        let head = self.head();
        if after > head {
            return Err(EngineError::Ahead { after, head });
        }
        let oldest = self.oldest_retained();
        if after + 1 < oldest {
            return Err(EngineError::TooOld {
                incarnation: self.incarnation.clone(),
                after,
                oldest,
            });
        }
        // The entry holding `after + 1` starts at or before it.
        let start = match self
            .log
            .range(..=(after + 1).to_be_bytes().to_vec())
            .next_back()
        {
            Some(item) => item.key()?.to_vec(),
            None => (after + 1).to_be_bytes().to_vec(),
        };
        let mut decode_error = None;
        let iter = self
            .log
            .range(start..)
            .map_while(|item| match item.into_inner() {
                Ok((_, v)) => match changelog::decode_entry(&v) {
                    Ok(records) => Some(records),
                    Err(e) => {
                        decode_error = Some(e.to_string());
                        None
                    }
                },
                Err(e) => {
                    decode_error = Some(e.to_string());
                    None
                }
            })
            .flatten();
        let batch = changelog::tail(iter, after, head, filter, max);
        if let Some(detail) = decode_error {
            return Err(EngineError::Corrupt {
                what: "change log",
                detail,
            });
        }
        // Retention may have removed records while we read: re-check.
        if after + 1 < self.oldest_retained() {
            return Err(EngineError::TooOld {
                incarnation: self.incarnation.clone(),
                after,
                oldest: self.oldest_retained(),
            });
        }
        Ok(batch)
    }

    /// Registers (or moves) a reader pin: retention keeps records after `seq` up to the cap.
    pub fn pin(&self, reader: &str, seq: u64) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.insert(reader.to_string(), (seq, keys::now_ms()));
        }
    }

    pub fn unpin(&self, reader: &str) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.remove(reader);
        }
    }

    /// Makes everything durable; a run without fsync is marked as ended cleanly.
    pub fn shutdown(&self) -> Result<(), EngineError> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        self.meta.remove(open::META_UNSYNCED)?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    pub fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    pub fn meta_prefix(&self, prefix: &[u8]) -> Result<Vec<KvPair>, EngineError> {
        let mut out = Vec::new();
        for item in self.meta.prefix(prefix) {
            let (k, v) = item.into_inner()?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    pub fn data_keyspace(&self) -> &Keyspace {
        &self.data
    }

    pub fn sub_keyspace(&self) -> &Keyspace {
        &self.sub
    }
}
