//! Background upkeep: active expiry (sweeps the expiry index and asks the writer to delete keys
//! that are still expired), removal of stale collection elements (dropped or replaced
//! collections' sub-keys) and change-log retention (by size and age, honouring reader pins up
//! to a cap).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Engine, Op};
use crate::keys;

const SWEEP_BATCH: usize = 512;
/// A pull's snapshot unused this long is closed; the pull then re-copies if it comes back.
const SNAPSHOT_IDLE_MS: u64 = 10 * 60 * 1000;

pub fn spawn(engine: Arc<Engine>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut expiry_cursor = None;
        let mut garbage = GcWalk::default();
        let mut log_cursor = None;
        loop {
            tick.tick().await;
            close_idle_snapshots(&engine);
            if let Err(err) = sweep_expired(&engine, &mut expiry_cursor).await {
                tracing::warn!(error = %err, "active expiry sweep failed");
            }
            if let Err(err) = collect_garbage(&engine, &mut garbage).await {
                tracing::warn!(error = %err, "stale collection element cleanup failed");
            }
            let e = engine.clone();
            let mut cursor = log_cursor.take();
            match tokio::task::spawn_blocking(move || {
                let r = enforce_retention(&e, &mut cursor);
                (r, cursor)
            })
            .await
            {
                Ok((r, cursor)) => {
                    log_cursor = cursor;
                    if let Err(err) = r {
                        tracing::warn!(error = %err, "change log retention failed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "change log retention task failed"),
            }
        }
    });
}

fn close_idle_snapshots(engine: &Engine) {
    let now = keys::now_ms();
    if let Ok(mut m) = engine.snapshots.lock() {
        m.retain(|uid, s| {
            let idle = now.saturating_sub(s.last_used.load(Ordering::Relaxed)) > SNAPSHOT_IDLE_MS;
            if idle {
                tracing::info!(migration = %uid, "closing an idle pull snapshot");
            }
            !idle
        });
    }
}

/// Index entries examined per tick at most.
pub(crate) const SWEEP_PER_TICK: usize = 8 * SWEEP_BATCH;

/// One pass of active expiry over index entries that are due, resuming after `cursor`. The
/// writer deletes only keys this node serves (owned, unfenced) and keeps the entries of the
/// others, so the sweep resumes where it stopped instead of re-reading those every tick ahead
/// of the keys it can expire; at the end of the due entries it starts over.
pub(crate) async fn sweep_expired(
    engine: &Engine,
    cursor: &mut Option<Vec<u8>>,
) -> Result<(), super::EngineError> {
    use std::ops::Bound;
    let mut examined = 0;
    loop {
        let now = engine.now_ms();
        // Index keys are `expiry (8 bytes BE) ++ storage key`: the ones due sort below this.
        let end = Bound::Excluded(now.saturating_add(1).to_be_bytes().to_vec());
        let start = match cursor.take() {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut candidates = Vec::new();
        for item in engine.expiry.range((start, end)) {
            let k = item.key()?;
            let Some((at, skey)) = k.split_at_checked(8) else {
                continue;
            };
            let at = u64::from_be_bytes(at.try_into().unwrap_or([0xFF; 8]));
            candidates.push((k.to_vec(), skey.to_vec(), at));
            if candidates.len() >= SWEEP_BATCH {
                break;
            }
        }
        let full = candidates.len() >= SWEEP_BATCH;
        if full {
            *cursor = candidates.last().map(|(k, _, _)| k.clone());
        }
        if candidates.is_empty() {
            return Ok(());
        }
        examined += candidates.len();
        if let super::Outcome::Expired(keys) = engine.run(Op::Expired(candidates)).await?
            && !keys.is_empty()
            && let Some(feed) = engine.expired_feed.get()
        {
            let _ = feed.try_send(keys);
        }
        if !full || examined >= SWEEP_PER_TICK {
            return Ok(());
        }
    }
}

/// Collections examined per tick at most (a live one costs one seek and one metadata read).
const GC_GROUPS_PER_TICK: usize = 2_000;
/// Stale elements removed per writer operation.
pub(crate) const GC_CHUNK: usize = 5_000;
/// Stale elements removed per tick at most (the writer stays free for commands in between).
const GC_PER_TICK: usize = 50_000;

/// Longest pause between two passes of the garbage walk while passes find nothing and no
/// key was deleted meanwhile (a stale version left some other way, e.g. a collection
/// overwritten after it expired, waits for this at most).
const GC_IDLE_MAX: Duration = Duration::from_secs(30);

/// Where the garbage walk stands between ticks.
#[derive(Default)]
pub(crate) struct GcWalk {
    /// Resume point within a pass (None: between passes).
    cursor: Option<Vec<u8>>,
    /// Elements removed in the current pass.
    removed: usize,
    /// Passes in a row that removed nothing.
    idle_passes: u32,
    /// No new pass before this, unless a key was deleted since the last one began.
    next_pass: Option<std::time::Instant>,
    /// `Engine::deletions` when the last pass began.
    deletions_seen: u64,
}

impl GcWalk {
    /// Whether a pass is under way (it resumes on the next call).
    pub(crate) fn in_pass(&self) -> bool {
        self.cursor.is_some()
    }
}

/// What one step of the walk did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct GcStep {
    /// Collection versions looked at (live or stale).
    pub groups: usize,
    /// Stale elements removed.
    pub removed: usize,
}

/// One step of the walk over the sub keyspace: each collection version whose metadata no
/// longer carries it (dropped, replaced, emptied) has its elements removed through the writer
/// in bounded chunks; live versions are skipped with one seek each. At the end of the keyspace
/// the walk starts over, but a pass costs a seek per collection plus whatever deleted elements
/// (pops) the seeks step over, so an idle node does not repeat passes that found nothing:
/// after such a pass the next one waits, 200 ms doubling to `GC_IDLE_MAX`, unless a key was
/// deleted since (stale versions come from deletes, so those restart the walk at once).
pub(crate) async fn collect_garbage(
    engine: &Engine,
    walk: &mut GcWalk,
) -> Result<GcStep, super::EngineError> {
    let deletions = engine.deletions.load(Ordering::Acquire);
    if !walk.in_pass() {
        let rested = walk
            .next_pass
            .is_none_or(|at| std::time::Instant::now() >= at);
        if !rested && deletions == walk.deletions_seen {
            return Ok(GcStep::default());
        }
        walk.deletions_seen = deletions;
        walk.removed = 0;
    }
    let step = walk_step(engine, &mut walk.cursor).await?;
    walk.removed += step.removed;
    if !walk.in_pass() {
        // A pass ended.
        if walk.removed > 0 {
            walk.idle_passes = 0;
        } else {
            walk.idle_passes = walk.idle_passes.saturating_add(1);
        }
        let pause = Duration::from_millis(200)
            .saturating_mul(1 << walk.idle_passes.min(8))
            .min(GC_IDLE_MAX);
        walk.next_pass = (walk.idle_passes > 0).then(|| std::time::Instant::now() + pause);
    }
    Ok(step)
}

/// One bounded step of a pass, resuming at `cursor` (None at the end of the keyspace).
async fn walk_step(
    engine: &Engine,
    cursor: &mut Option<Vec<u8>>,
) -> Result<GcStep, super::EngineError> {
    use super::collection::{self, CollMeta};
    let mut groups = 0;
    let mut removed = 0;
    let step = |groups, removed| GcStep { groups, removed };
    while groups < GC_GROUPS_PER_TICK && removed < GC_PER_TICK {
        let next = match cursor.as_ref() {
            Some(c) => engine.sub.range(c.clone()..).next(),
            None => engine.sub.iter().next(),
        };
        let Some(item) = next else {
            *cursor = None;
            return Ok(step(groups, removed));
        };
        let k = item.key()?;
        groups += 1;
        let Some(parts) = collection::split_sub_key(&k) else {
            // Not ours to interpret: step over it.
            *cursor = Some([k.as_ref(), &[0]].concat());
            continue;
        };
        let prefix = k[..parts.version_prefix_len()].to_vec();
        let skey = keys::storage_key_with_hash(parts.hash, parts.key);
        let live = engine
            .data
            .get(&skey)?
            .and_then(|raw| keys::Stored::decode(&raw))
            .and_then(|s| CollMeta::of(&s))
            .is_some_and(|m| m.version == parts.version);
        *cursor = collection::prefix_end(&prefix);
        if live {
            if cursor.is_none() {
                return Ok(step(groups, removed));
            }
            continue;
        }
        // The stale version's elements, a chunk at a time, each chunk read past the last.
        let mut from = k.to_vec();
        loop {
            let mut chunk: Vec<Vec<u8>> = Vec::new();
            for item in engine.sub.range(from.clone()..).take(GC_CHUNK) {
                let k = item.key()?;
                if !k.starts_with(&prefix) {
                    break;
                }
                chunk.push(k.to_vec());
            }
            let Some(last) = chunk.last().cloned() else {
                break;
            };
            let full = chunk.len() == GC_CHUNK;
            removed += chunk.len();
            let op = Op::SubGc {
                prefix: prefix.clone(),
                keys: chunk,
            };
            if let super::Outcome::Failed(m) = engine.run(op).await? {
                return Err(super::EngineError::GcFailed(m));
            }
            if !full {
                break;
            }
            from = [last.as_slice(), &[0]].concat();
            if removed >= GC_PER_TICK {
                // Resume with this version next tick.
                *cursor = Some(from);
                return Ok(step(groups, removed));
            }
        }
        if cursor.is_none() {
            return Ok(step(groups, removed));
        }
    }
    Ok(step(groups, removed))
}

/// Drops the oldest log records while the log is over its size or age budget, keeping records
/// a registered reader still needs unless the log has grown past the pin cap.
/// The walk resumes after `cursor`, the last record it removed: the removed records stay
/// behind as tombstones until compaction drops them, and a walk from the start would step over
/// all of them on every tick.
pub(crate) fn enforce_retention(
    engine: &Engine,
    cursor: &mut Option<Vec<u8>>,
) -> Result<(), super::EngineError> {
    let cfg = &engine.config;
    let now = keys::now_ms();
    // Readers that stopped reading (a pull that went away) stop pinning after a while.
    let min_pin = engine.pins.lock().ok().and_then(|mut p| {
        p.retain(|_, (_, last)| now.saturating_sub(*last) <= SNAPSHOT_IDLE_MS);
        p.values().map(|(seq, _)| *seq).min()
    });
    let mut batch = engine.db.batch();
    let mut freed = 0u64;
    let mut new_oldest = None;
    let bytes = engine.log_bytes.load(Ordering::Acquire);
    let start = match cursor.clone() {
        Some(c) => std::ops::Bound::Excluded(c),
        None => std::ops::Bound::Unbounded,
    };
    let mut last_removed = None;
    for item in engine.log.range((start, std::ops::Bound::Unbounded)) {
        let (k, v) = item.into_inner()?;
        let (last_seq, ts) = match crate::changelog::entry_bounds(&v) {
            Ok(b) => b,
            Err(e) => {
                return Err(super::EngineError::Corrupt {
                    what: "change log entry",
                    detail: e.to_string(),
                });
            }
        };
        let remaining = bytes.saturating_sub(freed);
        let over_size = remaining > cfg.retention_bytes;
        let over_age = now.saturating_sub(ts) > cfg.retention_age_ms;
        if !(over_size || over_age) {
            break;
        }
        let pinned = min_pin.is_some_and(|p| last_seq > p);
        if pinned && remaining <= cfg.pin_cap_bytes {
            break;
        }
        batch.remove(&engine.log, k.to_vec());
        last_removed = Some(k.to_vec());
        freed += v.len() as u64 + 8;
        new_oldest = Some(last_seq + 1);
        if freed > 64 * 1024 * 1024 {
            break;
        }
    }
    if freed == 0 {
        return Ok(());
    }
    // Raise the floor first so no reader is served from a range being removed.
    if let Some(o) = new_oldest {
        engine.oldest_seq.fetch_max(o, Ordering::AcqRel);
    }
    batch.commit()?;
    *cursor = last_removed;
    engine
        .log_bytes
        .fetch_sub(freed.min(bytes), Ordering::AcqRel);
    Ok(())
}
