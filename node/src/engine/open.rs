//! Opening a data directory: keyspaces, incarnation id, log head, persisted placement and fences.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use fjall::config::PinningPolicy;
use fjall::{Database, KeyspaceCreateOptions};
use tokio::sync::watch;

use super::{Engine, EngineError, writer};
use crate::routing::{Fence, Routing};

pub const META_INCARNATION: &[u8] = b"incarnation";
pub const META_HEAD: &[u8] = b"head";
pub const META_PLACEMENT: &[u8] = b"placement";
pub const META_DEGRADED: &[u8] = b"degraded";
pub const META_FENCE_PREFIX: &[u8] = b"fence/";
pub const META_ATTEMPT_PREFIX: &[u8] = b"attempt/";
/// Highest attempt of a migration that an unfence released: fences of it or older are refused.
pub const META_RELEASED_PREFIX: &[u8] = b"released/";
/// Present while a `--durability none` run is open: found at start, the last run crashed
/// without fsync, so acknowledged writes and offsets may be lost; a new incarnation keeps
/// offsets from being handed out twice.
pub const META_UNSYNCED: &[u8] = b"unsynced-run";

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub member: String,
    /// fsync every group commit before acknowledging.
    pub durable: bool,
    pub retention_bytes: u64,
    pub retention_age_ms: u64,
    /// How far registered readers may hold the log beyond retention.
    pub pin_cap_bytes: u64,
    /// Read cache budget in bytes (0 disables it).
    pub cache_bytes: usize,
    /// Memtable size of the data keyspace: smaller ones keep inserts cache-friendly.
    pub memtable_bytes: u64,
}

/// Why a persisted placement could not be turned back into routing (the placement module's
/// error, opaque to the engine so that it does not depend on that module).
pub type DecodeError = Box<dyn std::error::Error + Send + Sync>;

/// Turns a persisted placement back into routing; supplied by the placement module.
pub type PlacementDecoder = fn(&[u8]) -> Result<crate::routing::Installed, DecodeError>;

pub fn open(
    dir: &Path,
    config: EngineConfig,
    decode_placement: PlacementDecoder,
) -> Result<(Arc<Engine>, bool), EngineError> {
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    // One background worker: with two, fjall's worker 0 hands every compaction request to
    // worker 1 by re-queueing it, and spins doing so while worker 1 compacts. The journal is
    // not compressed: each group commit's log entry is large, and compressing it would cost
    // the committer CPU before the batch is acknowledged.
    let db = Database::builder(dir.join("fjall"))
        .worker_threads(1)
        .journal_compression(fjall::CompressionType::None)
        .open()?;
    let memtable = config.memtable_bytes;
    // Point reads (every element a pop or HGET reads) consult each table's filter and index.
    // Unpinned, those blocks live in the block cache, and scans (LRANGE, the maintenance
    // walks, copies) evict them: each read then reloads and re-checksums a whole filter
    // block (megabytes for a big table), which slowed LPOP from a 3M-element list to about
    // 2,500 a second. Pinned in every level they cost ~1.25 bytes per key of memory.
    let point_read_keyspace = || {
        KeyspaceCreateOptions::default()
            .max_memtable_size(memtable)
            .filter_block_pinning_policy(PinningPolicy::all(true))
            .index_block_pinning_policy(PinningPolicy::all(true))
    };
    let data = db.keyspace("data", point_read_keyspace)?;
    let sub = db.keyspace("sub", point_read_keyspace)?;
    // The log is only ever scanned by sequence range: bloom filters would be wasted work.
    let log = db.keyspace("log", || {
        KeyspaceCreateOptions::default().filter_policy(fjall::config::FilterPolicy::disabled())
    })?;
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
    let expiry = db.keyspace("expiry", KeyspaceCreateOptions::default)?;

    let crashed_unsynced = meta.get(META_UNSYNCED)?.is_some();
    let (incarnation, fresh) = match meta.get(META_INCARNATION)? {
        Some(v) if !crashed_unsynced => (String::from_utf8_lossy(&v).into_owned(), false),
        _ => {
            let id = new_incarnation_id(dir)?;
            meta.insert(META_INCARNATION, id.as_bytes())?;
            db.persist(fjall::PersistMode::SyncAll)?;
            if crashed_unsynced {
                tracing::warn!(incarnation = %id, "the last run without fsync crashed: new incarnation");
            }
            (id, true)
        }
    };
    if config.durable {
        meta.remove(META_UNSYNCED)?;
    } else {
        meta.insert(META_UNSYNCED, b"1")?;
    }
    db.persist(fjall::PersistMode::SyncAll)?;
    let head = match meta.get(META_HEAD)? {
        Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| EngineError::Corrupt {
            what: "log head",
            detail: format!("{} bytes", v.len()),
        })?),
        None => 0,
    };
    let oldest = match log.first_key_value() {
        Some(g) => {
            let k = g.key()?;
            u64::from_be_bytes(k.as_ref().try_into().map_err(|_| EngineError::Corrupt {
                what: "log key",
                detail: format!("{} bytes", k.len()),
            })?)
        }
        None => head + 1,
    };
    let mut log_bytes = 0u64;
    for item in log.iter() {
        // One entry per group commit: a linear pass is cheap.
        log_bytes += u64::from(item.size()?) + 8;
    }

    let mut routing = Routing {
        me: config.member.clone(),
        ..Routing::default()
    };
    if let Some(raw) = meta.get(META_PLACEMENT)? {
        let installed = decode_placement(&raw).map_err(EngineError::CorruptPlacement)?;
        routing.placement = Some(Arc::new(installed));
    }
    if let Some(raw) = meta.get(META_DEGRADED)? {
        routing.degraded = Some(String::from_utf8_lossy(&raw).into_owned());
    }
    for item in meta.prefix(META_FENCE_PREFIX) {
        let v = item.value()?;
        let fence: Fence = serde_json::from_slice(&v).map_err(|e| EngineError::Corrupt {
            what: "fence",
            detail: e.to_string(),
        })?;
        routing.fences.push(fence);
    }

    // Stored keys per bucket: one pass over the keys (values are not read).
    let counts = super::counts::KeyCounts::new();
    let presence = super::presence::KeyFilter::with_capacity(data.approximate_len() as u64 * 2);
    for item in data.iter() {
        let k = item.key()?;
        presence.insert(&k);
        if let Some((hash, _)) = crate::keys::split_storage_key(&k) {
            counts.add(super::counts::bucket(hash), 1);
        }
    }

    // Every element's sub-key and version: one pass over the element keys. (The filter's
    // own sizing leaves room for the version prefixes and for writes after open.)
    let sub_presence = super::sub_presence::SubFilter::with_capacity(sub.approximate_len() as u64);
    for item in sub.iter() {
        sub_presence.note(&item.key()?);
    }

    let engine = Arc::new(Engine {
        db,
        data,
        sub,
        log,
        meta,
        expiry,
        incarnation,
        durable_head: AtomicU64::new(head),
        oldest_seq: AtomicU64::new(oldest),
        log_bytes: AtomicU64::new(log_bytes),
        deletions: AtomicU64::new(0),
        head_tx: watch::channel(head).0,
        routing: RwLock::new(Arc::new(routing.clone())),
        routing_tx: watch::channel(0).0,
        ingest_gate: RwLock::new(routing.owned_set()),
        writer: Default::default(),
        pins: Mutex::new(HashMap::new()),
        snapshots: Mutex::new(HashMap::new()),
        cache: super::cache::ReadCache::new(config.cache_bytes),
        accepted: Default::default(),
        commit_latency: Default::default(),
        counts,
        presence,
        sub_presence,
        dir: dir.to_path_buf(),
        config,
        clock_skew_ms: Default::default(),
        watchers: Default::default(),
        ready: Default::default(),
        expired_feed: Default::default(),
    });
    writer::spawn(engine.clone(), routing, head).map_err(|source| EngineError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok((engine, fresh))
}

/// 128 random bits from the OS, hex encoded.
fn new_incarnation_id(dir: &Path) -> Result<String, EngineError> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| EngineError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
