//! Bulk ingestion of a pulled snapshot: the snapshot arrives in storage-key order, so its
//! entries go through fjall's ingestion path (table files written directly and registered
//! atomically, with a sequence number above everything already stored) instead of the journal
//! and memtable. The caller then commits what the unit ingested (the pull cursor, expiry index
//! entries, key counts) through the writer as `Op::Ingested`, so the persisted cursor never runs
//! ahead of the data; data ahead of the cursor after a crash is removed before the copy resumes.

use super::{Engine, EngineError, collection};
use crate::keys;
use ringshift_ring::RangeSet;

/// What must still hold when a unit's tables are registered (checked under the engine's ingest
/// gate, which a placement install takes exclusively): otherwise the unit is discarded.
pub struct Guard<'a> {
    /// The pulled ranges: the node must not own any of them.
    pub ranges: &'a RangeSet,
    /// True once the pull was cancelled.
    pub cancelled: &'a dyn Fn() -> bool,
}

fn never() -> bool {
    false
}

static NO_RANGES: RangeSet = RangeSet::empty();

/// No checks (benchmarks and tests of the ingestion itself).
pub const UNGUARDED: Guard<'static> = Guard {
    ranges: &NO_RANGES,
    cancelled: &never,
};

/// What one ingestion unit wrote.
#[derive(Debug, Default)]
pub struct IngestUnit {
    /// Where the copy stream stands after this unit (the pull's next cursor).
    pub last: Option<super::CopyCursor>,
    /// Data entries (keys) written; collection elements are counted in `elements`.
    pub keys: u64,
    pub elements: u64,
    /// Bytes of storage keys and stored values.
    pub bytes: u64,
    /// Expiry index keys of entries that expire.
    pub index: Vec<Vec<u8>>,
    /// Stored-key count changes (bucket, delta): every entry is new (the ranges were cleared
    /// before the copy, and a resumed copy removes what lies past its cursor first).
    pub counts: Vec<(u32, i64)>,
}

/// Called for each entry of a chunk: (is a collection element, key, value).
pub type EntryFn<'a> = dyn FnMut(bool, &[u8], &[u8]) -> Result<(), EngineError> + 'a;

/// A chunk of entries to ingest in copy-stream order: data entries (storage key, stored value
/// as the source keeps it: expiry + bytes) in storage-key order, then collection elements
/// (sub-key, value) in sub-key order.
pub trait Entries {
    fn each(&self, f: &mut EntryFn<'_>) -> Result<(), EngineError>;
}

impl Entries for Vec<super::KvPair> {
    fn each(&self, f: &mut EntryFn<'_>) -> Result<(), EngineError> {
        self.iter().try_for_each(|(k, v)| f(false, k, v))
    }
}

/// Data entries then collection elements.
impl Entries for (Vec<super::KvPair>, Vec<super::KvPair>) {
    fn each(&self, f: &mut EntryFn<'_>) -> Result<(), EngineError> {
        self.0.iter().try_for_each(|(k, v)| f(false, k, v))?;
        self.1.iter().try_for_each(|(k, v)| f(true, k, v))
    }
}

/// A snapshot chunk as received (`wire::encode_chunk`), read in place.
pub struct WireChunk(pub Vec<u8>);

impl Entries for WireChunk {
    fn each(&self, f: &mut EntryFn<'_>) -> Result<(), EngineError> {
        let (_, entries) =
            crate::wire::chunk_entries(&self.0).map_err(|e| EngineError::Corrupt {
                what: "snapshot chunk",
                detail: e.to_string(),
            })?;
        entries
            .into_iter()
            .try_for_each(|e| f(e.sub, e.key, e.value))
    }
}

/// Ingests chunks from `next` until it returns None or the unit holds `max_bytes`; then
/// writes and registers the unit's tables (durably). (fjall's ingestion type is not exported,
/// hence one function around its whole life.)
pub fn ingest<C: Entries>(
    engine: &Engine,
    mut next: impl FnMut() -> Option<C>,
    max_bytes: u64,
    guard: &Guard<'_>,
) -> Result<IngestUnit, EngineError> {
    let corrupt = |detail: &str| EngineError::Corrupt {
        what: "pulled entry",
        detail: detail.to_string(),
    };
    let mut ingestion = engine.data.start_ingestion()?;
    // Started at the first element: the stream's elements follow all its data entries.
    let mut sub_ingestion = None;
    let mut unit = IngestUnit::default();
    let mut last: Vec<u8> = Vec::new();
    let mut last_sub: Vec<u8> = Vec::new();
    while unit.bytes < max_bytes {
        let Some(chunk) = next() else {
            break;
        };
        chunk.each(&mut |is_sub, skey, stored| {
            if is_sub {
                if collection::split_sub_key(skey).is_none() {
                    return Err(corrupt("malformed sub-key"));
                }
                if unit.elements > 0 && skey <= last_sub.as_slice() {
                    return Err(corrupt("elements out of sub-key order"));
                }
                let ing = match &mut sub_ingestion {
                    Some(i) => i,
                    None => sub_ingestion.insert(engine.sub.start_ingestion()?),
                };
                engine.sub_presence.note(skey);
                ing.write(skey, stored)?;
                unit.elements += 1;
                unit.bytes += (skey.len() + stored.len()) as u64;
                last_sub.clear();
                last_sub.extend_from_slice(skey);
                return Ok(());
            }
            if sub_ingestion.is_some() {
                return Err(corrupt("a data entry after collection elements"));
            }
            let Some((hash, _)) = keys::split_storage_key(skey) else {
                return Err(corrupt("storage key shorter than its hash"));
            };
            let Some((expiry, _)) = stored.split_first_chunk::<8>() else {
                return Err(corrupt("stored value shorter than its expiry"));
            };
            // (The top bit of the expiry word marks a collection's metadata, not a time.)
            let (at, _) = keys::split_expiry_word(u64::from_be_bytes(*expiry));
            // fjall asserts the order; refuse out-of-order input here rather than panic there.
            if unit.keys > 0 && skey <= last.as_slice() {
                return Err(corrupt("entries out of storage-key order"));
            }
            if let Some(at) = at {
                unit.index.push(super::writer::expiry_index_key(at, skey));
            }
            // Sorted input: consecutive keys share a bucket, so count runs.
            let b = super::counts::bucket(hash);
            match unit.counts.last_mut() {
                Some((prev, n)) if *prev == b => *n += 1,
                _ => unit.counts.push((b, 1)),
            }
            unit.keys += 1;
            unit.bytes += (skey.len() + stored.len()) as u64;
            engine.presence.insert(skey);
            ingestion.write(skey, stored)?;
            last.clear();
            last.extend_from_slice(skey);
            Ok(())
        })?;
    }
    if let Some(d) = crate::failpoints::delay(crate::failpoints::PAUSE_INGEST_FINISH) {
        std::thread::sleep(d);
    }
    // Registered tables sit above every sequence stored: they must never land after the pull
    // was cancelled or once this node owns the ranges (and serves newer writes there). An
    // install waits for a registration in progress; one that happened before is seen here.
    // (A discarded unit's table files stay unregistered; fjall removes them when it reopens.)
    let gate = engine
        .ingest_gate
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if (guard.cancelled)() {
        return Err(EngineError::Discarded("the pull was cancelled".into()));
    }
    if guard.ranges.overlaps(&gate) {
        return Err(EngineError::Discarded(
            "this node owns the pulled ranges now".into(),
        ));
    }
    ingestion.finish()?;
    if let Some(i) = sub_ingestion {
        i.finish()?;
    }
    drop(gate);
    if unit.elements > 0 {
        unit.last = Some(super::CopyCursor::Sub(last_sub));
    } else if unit.keys > 0 {
        unit.last = Some(super::CopyCursor::Data(last));
    }
    Ok(unit)
}
