//! A key's state as evaluation sees it (the open batch, the batches being committed, then
//! the keyspaces), and writes as data, index and change-log records.

use std::sync::atomic::Ordering;

use super::schema::{attempt_key, expiry_index_key};
use super::{Batch, Writer};
use crate::changelog::{LogOp, LogRecord};
use crate::keys::{self, Stored};

impl Writer {
    pub(super) fn attempt_seen(
        &self,
        migration_uid: &str,
        b: &Batch,
    ) -> Result<Option<u64>, fjall::Error> {
        self.meta_u64(&attempt_key(migration_uid), b)
    }

    /// A u64 metadata value as of this batch (its own writes, the batches being committed,
    /// then the keyspace).
    pub(super) fn meta_u64(&self, key: &[u8], b: &Batch) -> Result<Option<u64>, fjall::Error> {
        let raw = match b
            .meta
            .get(key)
            .or_else(|| self.in_flight.iter().rev().find_map(|f| f.meta.get(key)))
        {
            Some(v) => v.clone(),
            None => self.engine.meta.get(key)?.map(|v| v.to_vec()),
        };
        Ok(raw.and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes)))
    }

    /// The key's current state including this batch's and the committing batch's writes
    /// (expired = absent).
    pub(super) fn current(&self, skey: &[u8], b: &Batch) -> Result<Option<Stored>, fjall::Error> {
        Ok(self.stored_value(skey, b)?.filter(|s| !s.is_expired(b.now)))
    }

    /// The key's stored state, expired or not.
    pub(super) fn stored_value(
        &self,
        skey: &[u8],
        b: &Batch,
    ) -> Result<Option<Stored>, fjall::Error> {
        Ok(
            match b.overlay.get(skey).or_else(|| {
                self.in_flight
                    .iter()
                    .rev()
                    .find_map(|f| f.overlay.get(skey))
            }) {
                Some(v) => v.clone(),
                None => self
                    .engine
                    .data
                    .get(skey)?
                    .and_then(|raw| Stored::decode(&raw)),
            },
        )
    }

    /// Whether a key is stored (expired or not), counting this batch's and the committing
    /// batch's writes. The presence filter (new keys) and the read cache answer most of these
    /// without touching fjall.
    pub(super) fn stored(&self, skey: &[u8], b: &Batch) -> Result<bool, fjall::Error> {
        if let Some(v) = b.overlay.get(skey).or_else(|| {
            self.in_flight
                .iter()
                .rev()
                .find_map(|f| f.overlay.get(skey))
        }) {
            return Ok(v.is_some());
        }
        // Updates (the common case) are answered by the cache, new keys by the filter.
        if let Some(known) = self.engine.cache.stored(skey) {
            return Ok(known);
        }
        if !self.engine.presence.may_contain(skey) {
            return Ok(false);
        }
        self.engine.data.contains_key(skey)
    }

    /// Removes a stored key without a log record of its own (range clears log one record for
    /// the range); false if it was not stored.
    pub(super) fn remove_unlogged(
        &mut self,
        skey: &[u8],
        b: &mut Batch,
    ) -> Result<bool, fjall::Error> {
        if !self.stored(skey, b)? {
            return Ok(false);
        }
        Self::count(skey, -1, b);
        self.note_deletion();
        b.set_data(skey.to_vec(), None);
        Ok(true)
    }

    /// Counts a delete or overwrite that may have left a collection version's elements stale
    /// (`Engine::deletions`: the garbage walk resumes when it moves).
    pub(super) fn note_deletion(&self) {
        self.engine.deletions.fetch_add(1, Ordering::Release);
    }

    /// Records that a stored key appears (+1) or goes (-1).
    pub(super) fn count(skey: &[u8], delta: i64, b: &mut Batch) {
        if let Some((hash, _)) = keys::split_storage_key(skey) {
            b.counts.push((crate::engine::counts::bucket(hash), delta));
        }
    }

    /// Writes a key's post-image to data and log.
    pub(super) fn write(
        &mut self,
        skey: Vec<u8>,
        value: Option<Stored>,
        b: &mut Batch,
    ) -> Result<(), fjall::Error> {
        // A delete of a key that is already logically gone (expired) changes nothing a
        // WATCH can see (Redis: a watched stale key's expiry does not fail EXEC).
        if self.engine.watchers.load(Ordering::SeqCst) == 0 {
            self.touches.untracked();
        } else if value.is_some() || self.current(&skey, b)?.is_some() {
            self.touches.touch(&skey);
        }
        let was = self.stored(&skey, b)?;
        // A delete, or a string over what was there: a collection's elements may be stale
        // now. (A collection over a collection changes its version only in `new_version`.)
        if was && value.as_ref().is_none_or(|s| !s.typed) {
            self.note_deletion();
        }
        let delta = i64::from(value.is_some()) - i64::from(was);
        if delta != 0 {
            Self::count(&skey, delta, b);
        }
        // (A stored key is in the presence filter already.)
        if value.is_some() && !was {
            self.engine.presence.insert(&skey);
        }
        match &value {
            Some(s) => {
                if let Some(at) = s.expires_at {
                    b.set_index(expiry_index_key(at, &skey), true);
                }
                self.seq += 1;
                b.entry
                    .push_put(self.seq, b.now, &skey, &s.value, s.expiry_word());
            }
            None => self.append_raw(crate::changelog::encode_del(b.now, &skey), b),
        }
        b.set_data(skey, value);
        Ok(())
    }

    pub(super) fn append(&mut self, op: LogOp, b: &mut Batch) {
        let raw = LogRecord { ts_ms: b.now, op }.encode();
        self.append_raw(raw, b);
    }

    pub(super) fn append_raw(&mut self, raw: Vec<u8>, b: &mut Batch) {
        self.seq += 1;
        b.entry.push(self.seq, &raw);
    }

    /// Applies a pulled record (a post-image) as-is, logging it like any other write.
    pub(super) fn apply_log_op(&mut self, op: LogOp, b: &mut Batch) -> Result<(), fjall::Error> {
        match op {
            LogOp::Put {
                skey,
                value,
                expires_at,
                typed,
            } => {
                // A pulled collection may replace a local one of another version.
                if typed {
                    self.note_deletion();
                }
                self.write(
                    skey,
                    Some(Stored {
                        value,
                        expires_at,
                        typed,
                    }),
                    b,
                )?
            }
            LogOp::Del { skey } => self.write(skey, None, b)?,
            LogOp::SubPut { skey, value } => self.write_sub(skey, Some(value), b),
            LogOp::SubDel { skey } => self.write_sub(skey, None, b),
            LogOp::ClearRange { range } => {
                b.cleared = true;
                let (lo, hi) = keys::range_bounds(range);
                let iter = match &hi {
                    Some(hi) => self.engine.data.range(lo.clone()..hi.clone()),
                    None => self.engine.data.range(lo.clone()..),
                };
                for item in iter {
                    let k = item.key()?;
                    self.remove_unlogged(&k, b)?;
                }
                let iter = match hi {
                    Some(hi) => self.engine.sub.range(lo..hi),
                    None => self.engine.sub.range(lo..),
                };
                for item in iter {
                    let k = item.key()?;
                    b.set_sub(k.to_vec(), None);
                }
                // Keys written earlier in this batch or the committing one are not in the
                // keyspaces yet.
                let in_range = |k: &Vec<u8>| {
                    keys::split_storage_key(k)
                        .is_some_and(|(h, _)| range.start <= h && h <= range.end)
                };
                let committing = self.in_flight.iter().flat_map(|f| f.overlay.keys());
                let pending: Vec<Vec<u8>> = b
                    .overlay
                    .keys()
                    .chain(committing)
                    .filter(|k| in_range(k))
                    .cloned()
                    .collect();
                for k in pending {
                    self.remove_unlogged(&k, b)?;
                }
                let committing = self.in_flight.iter().flat_map(|f| f.sub.keys());
                let pending: Vec<Vec<u8>> = b
                    .sub
                    .keys()
                    .chain(committing)
                    .filter(|k| in_range(k))
                    .cloned()
                    .collect();
                for k in pending {
                    b.set_sub(k, None);
                }
                self.append(LogOp::ClearRange { range }, b);
            }
        }
        Ok(())
    }
}
