//! The writer's side of collection elements (the `sub` keyspace): reads through the open and
//! committing batches, logged element writes, unlogged clears and garbage collection of stale
//! versions, and fresh versions.

use crate::engine::KvPair;
use std::collections::BTreeMap;

use super::{Batch, Writer};
use crate::engine::collection::{self, CollMeta};
use crate::engine::{CopyCursor, Outcome};
use crate::keys;
use ringshift_ring::HashRange;

impl Writer {
    /// An element's current value: this batch, the batches being committed, then the keyspace.
    pub(super) fn sub_get(&self, skey: &[u8], b: &Batch) -> Result<Option<Vec<u8>>, fjall::Error> {
        if let Some(v) = b
            .sub
            .get(skey)
            .or_else(|| self.in_flight.iter().rev().find_map(|f| f.sub.get(skey)))
        {
            return Ok(v.clone());
        }
        // New elements (most of what HSET, SADD and ZADD add) are answered by the filter.
        if !self.engine.sub_presence.may_hold(skey) {
            return Ok(None);
        }
        Ok(self.engine.sub.get(skey)?.map(|v| v.to_vec()))
    }

    /// Every element under `prefix` as of this batch, in sub-key order.
    pub(super) fn sub_scan(&self, prefix: &[u8], b: &Batch) -> Result<Vec<KvPair>, fjall::Error> {
        let mut m: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for item in self.engine.sub.prefix(prefix) {
            let (k, v) = item.into_inner()?;
            m.insert(k.to_vec(), Some(v.to_vec()));
        }
        // Oldest first: later writes win.
        let pending = self.in_flight.iter().map(|f| &*f.sub).chain([&b.sub]);
        for overlay in pending {
            for (k, v) in overlay.iter().filter(|(k, _)| k.starts_with(prefix)) {
                m.insert(k.clone(), v.clone());
            }
        }
        Ok(m.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Writes an element's post-image to the sub keyspace and the log.
    pub(super) fn write_sub(&mut self, skey: Vec<u8>, value: Option<Vec<u8>>, b: &mut Batch) {
        if value.is_some() {
            self.engine.sub_presence.note(&skey);
        }
        self.seq += 1;
        b.entry.push_sub(self.seq, b.now, &skey, value.as_deref());
        b.set_sub(skey, value);
    }

    /// Whether a batch not yet in fjall removed the element already.
    fn sub_removed_pending(&self, skey: &[u8], b: &Batch) -> bool {
        matches!(
            b.sub
                .get(skey)
                .or_else(|| self.in_flight.iter().rev().find_map(|f| f.sub.get(skey))),
            Some(None)
        )
    }

    /// Removes up to `max` stored entries of `rs` past `after` in copy-stream order (data
    /// keyspace, then elements), unlogged; returns how many.
    pub(super) fn clear_chunk(
        &mut self,
        rs: &[HashRange],
        after: Option<&CopyCursor>,
        max: usize,
        b: &mut Batch,
    ) -> Result<usize, fjall::Error> {
        use std::ops::Bound;
        let bounds = |r: HashRange, after: Option<&Vec<u8>>| {
            let (lo, hi) = keys::range_bounds(r);
            let lower = match after {
                Some(a) if *a >= lo => Bound::Excluded(a.clone()),
                _ => Bound::Included(lo),
            };
            let upper = match hi {
                Some(hi) => Bound::Excluded(hi),
                None => Bound::Unbounded,
            };
            (lower, upper)
        };
        let mut removed = 0;
        let (data_after, sub_after) = match after {
            None => (None, None),
            Some(CopyCursor::Data(k)) => (Some(k), None),
            Some(CopyCursor::Sub(k)) => (None, Some(k)),
        };
        if !matches!(after, Some(CopyCursor::Sub(_))) {
            for r in rs {
                for item in self.engine.data.range::<Vec<u8>, _>(bounds(*r, data_after)) {
                    if removed >= max {
                        return Ok(removed);
                    }
                    let k = item.key()?;
                    // (A key already removed by a write not committed yet is skipped.)
                    if self.remove_unlogged(&k, b)? {
                        removed += 1;
                    }
                }
            }
        }
        for r in rs {
            for item in self.engine.sub.range::<Vec<u8>, _>(bounds(*r, sub_after)) {
                if removed >= max {
                    return Ok(removed);
                }
                let k = item.key()?;
                if !self.sub_removed_pending(&k, b) {
                    b.set_sub(k.to_vec(), None);
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes `elements` of a stale collection version (`prefix`: its
    /// `collection::version_prefix`), unlogged: every node collects its own garbage.
    pub(super) fn collect_garbage(
        &mut self,
        prefix: &[u8],
        elements: Vec<Vec<u8>>,
        b: &mut Batch,
    ) -> Result<Outcome, fjall::Error> {
        let Some((hash, rest)) = keys::split_storage_key(prefix) else {
            return Ok(Outcome::Done);
        };
        let parsed = rest.split_first_chunk::<4>().and_then(|(len, rest)| {
            let (key, version) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
            Some((key, u64::from_be_bytes(version.try_into().ok()?)))
        });
        let Some((key, version)) = parsed else {
            return Ok(Outcome::Done);
        };
        let skey = keys::storage_key_with_hash(hash, key);
        let live = self
            .stored_value(&skey, b)?
            .and_then(|s| CollMeta::of(&s))
            .is_some_and(|m| m.version == version);
        if live {
            return Ok(Outcome::Done);
        }
        for k in elements.into_iter().filter(|k| k.starts_with(prefix)) {
            b.set_sub(k, None);
        }
        Ok(Outcome::Done)
    }

    /// A version for a new collection at `key` that no stored element carries (versions of
    /// this writer only grow; a stale element pulled from another node's past could collide).
    pub(super) fn new_version(&mut self, key: &[u8], b: &Batch) -> Result<u64, fjall::Error> {
        // A new version at a stored key (expired, or the target of RENAME/COPY) leaves the
        // old version's elements stale.
        if self.stored(&keys::storage_key(key), b)? {
            self.note_deletion();
        }
        loop {
            let v = collection::next_version(self.version, b.now);
            self.version = v;
            let prefix = collection::version_prefix(key, v);
            // (A version never used here needs no scan: the filter knows every stored one.)
            if !self.engine.sub_presence.version_may_be_used(&prefix)
                || self.engine.sub.prefix(&prefix).next().is_none()
            {
                return Ok(v);
            }
        }
    }
}
