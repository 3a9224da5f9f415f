//! The source side of a copy, over both keyspaces: a copy stream is every stored entry of the
//! ranges in the data keyspace (storage-key order), then every live collection element of the
//! ranges in the sub keyspace (sub-key order). Elements of stale versions (a dropped or replaced
//! collection not yet cleaned up) are neither copied nor counted in checksums, so source and
//! target agree whatever either side's cleanup has done.

use std::ops::Bound;

use fjall::{Keyspace, Readable, Snapshot};

use super::collection::{self, CollMeta};
use super::{Engine, EngineError, KvPair};
use crate::keys::{self, Stored};
use ringshift_ring::HashRange;

/// Where a copy stream stands: after a data-keyspace storage key, or after a sub-key (every
/// data entry copied already).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyCursor {
    Data(Vec<u8>),
    Sub(Vec<u8>),
}

impl CopyCursor {
    /// The form carried in the `after` parameter and the persisted pull record: hex for a
    /// storage key (the form of old), `s` + hex for a sub-key.
    pub fn to_param(&self) -> String {
        match self {
            CopyCursor::Data(k) => hex_encode(k),
            CopyCursor::Sub(k) => format!("s{}", hex_encode(k)),
        }
    }

    /// None when malformed.
    pub fn from_param(p: &str) -> Option<CopyCursor> {
        match p.strip_prefix('s') {
            Some(h) => hex_decode(h).map(CopyCursor::Sub),
            None => hex_decode(p).map(CopyCursor::Data),
        }
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// (lower, upper) bounds of `r` in a keyspace keyed by hash first, after `after` if it lies
/// in the range.
/// Lower and upper bound of a keyspace range.
type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn bounds(r: HashRange, after: Option<&[u8]>) -> Option<Bounds> {
    let (lo, hi) = keys::range_bounds(r);
    if let (Some(a), Some(hi)) = (after, &hi)
        && a >= hi.as_slice()
    {
        return None;
    }
    let lower = match after {
        Some(a) if a >= lo.as_slice() => Bound::Excluded(a.to_vec()),
        _ => Bound::Included(lo),
    };
    let upper = match hi {
        Some(hi) => Bound::Excluded(hi),
        None => Bound::Unbounded,
    };
    Some((lower, upper))
}

/// Tells live sub-keys from stale ones against the metadata in a snapshot, remembering the
/// last version prefix (elements of one collection are consecutive).
pub(crate) struct LiveFilter<'a> {
    snap: &'a Snapshot,
    data: &'a Keyspace,
    last: Option<(Vec<u8>, bool)>,
}

impl<'a> LiveFilter<'a> {
    pub(crate) fn new(snap: &'a Snapshot, data: &'a Keyspace) -> Self {
        LiveFilter {
            snap,
            data,
            last: None,
        }
    }

    pub(crate) fn live(&mut self, sub_key: &[u8]) -> Result<bool, EngineError> {
        let Some(parts) = collection::split_sub_key(sub_key) else {
            return Ok(false);
        };
        let prefix = &sub_key[..parts.version_prefix_len()];
        if let Some((p, live)) = &self.last
            && p.as_slice() == prefix
        {
            return Ok(*live);
        }
        let skey = keys::storage_key_with_hash(parts.hash, parts.key);
        let live = self
            .snap
            .get(self.data, &skey)?
            .and_then(|raw| Stored::decode(&raw))
            .and_then(|s| CollMeta::of(&s))
            .is_some_and(|m| m.version == parts.version);
        self.last = Some((prefix.to_vec(), live));
        Ok(live)
    }
}

impl Engine {
    /// Every stored entry (including not-yet-collected expired ones) of `ranges` in a snapshot,
    /// then their live collection elements, after `after`, up to `max` entries or `max_bytes`.
    /// Returns (data entries, element entries, done).
    pub fn read_chunk(
        &self,
        snap: &Snapshot,
        ranges: &[HashRange],
        after: Option<&CopyCursor>,
        max: usize,
        max_bytes: usize,
    ) -> Result<(Vec<KvPair>, Vec<KvPair>, bool), EngineError> {
        let (mut data, mut sub) = (Vec::new(), Vec::new());
        let done = self.each_in_chunk(snap, ranges, after, max, max_bytes, |is_sub, k, v| {
            let to = if is_sub { &mut sub } else { &mut data };
            to.push((k.to_vec(), v.to_vec()))
        })?;
        Ok((data, sub, done))
    }

    /// `read_chunk` encoded straight into the wire format (`wire::encode_chunk`), without an
    /// intermediate copy of each entry (the source side of a copy).
    pub fn read_chunk_wire(
        &self,
        snap: &Snapshot,
        ranges: &[HashRange],
        after: Option<&CopyCursor>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<u8>, EngineError> {
        let mut out = Vec::with_capacity(max_bytes.min(8 << 20) + 64);
        out.extend_from_slice(&[0; 5]);
        let mut n: u32 = 0;
        let done = self.each_in_chunk(snap, ranges, after, max, max_bytes, |sub, k, v| {
            crate::wire::put_entry(&mut out, sub, k, v);
            n += 1;
        })?;
        out[0] = u8::from(done);
        out[1..5].copy_from_slice(&n.to_be_bytes());
        Ok(out)
    }

    /// Calls `f(sub, key, value)` on every entry of the copy stream of `ranges` in `snap` after
    /// `after`, up to `max` entries or `max_bytes`; true when the stream is exhausted.
    fn each_in_chunk(
        &self,
        snap: &Snapshot,
        ranges: &[HashRange],
        after: Option<&CopyCursor>,
        max: usize,
        max_bytes: usize,
        mut f: impl FnMut(bool, &[u8], &[u8]),
    ) -> Result<bool, EngineError> {
        let mut count = 0;
        let mut bytes = 0;
        let (data_after, sub_after) = match after {
            None => (None, None),
            Some(CopyCursor::Data(k)) => (Some(k.as_slice()), None),
            Some(CopyCursor::Sub(k)) => (None, Some(k.as_slice())),
        };
        if !matches!(after, Some(CopyCursor::Sub(_))) {
            for r in ranges {
                let Some(b) = bounds(*r, data_after) else {
                    continue;
                };
                for item in snap.range(&self.data, b) {
                    let (k, v) = item.into_inner()?;
                    if count >= max || bytes >= max_bytes {
                        return Ok(false);
                    }
                    bytes += k.len() + v.len();
                    count += 1;
                    f(false, &k, &v);
                }
            }
        }
        let mut live = LiveFilter::new(snap, &self.data);
        for r in ranges {
            let Some(b) = bounds(*r, sub_after) else {
                continue;
            };
            for item in snap.range(&self.sub, b) {
                let (k, v) = item.into_inner()?;
                if !live.live(&k)? {
                    continue;
                }
                if count >= max || bytes >= max_bytes {
                    return Ok(false);
                }
                bytes += k.len() + v.len();
                count += 1;
                f(true, &k, &v);
            }
        }
        Ok(true)
    }

    /// Order-independent digest over (key, value, expiry) of every entry in `ranges` and over
    /// their live collection elements; and the number of entries digested.
    pub fn checksum(
        &self,
        snap: &Snapshot,
        ranges: &[HashRange],
    ) -> Result<(u64, u64), EngineError> {
        let mut digest = 0u64;
        let mut n = 0u64;
        let mut live = LiveFilter::new(snap, &self.data);
        for (space, tag) in [(&self.data, 0u8), (&self.sub, 1u8)] {
            for r in ranges {
                let (lo, hi) = keys::range_bounds(*r);
                let iter = match hi {
                    Some(hi) => snap.range(space, lo..hi),
                    None => snap.range(space, lo..),
                };
                for item in iter {
                    let (k, v) = item.into_inner()?;
                    if tag == 1 && !live.live(&k)? {
                        continue;
                    }
                    let mut h = xxhash_rust::xxh3::Xxh3::new();
                    if tag == 1 {
                        // Elements and data entries never digest alike.
                        h.update(b"sub");
                    }
                    h.update(&(k.len() as u64).to_be_bytes());
                    h.update(&k);
                    h.update(&v);
                    digest = digest.wrapping_add(h.digest());
                    n += 1;
                }
            }
        }
        Ok((digest, n))
    }
}

#[cfg(test)]
mod tests {
    use super::CopyCursor;

    #[test]
    fn cursors_round_trip_through_their_parameter() {
        for c in [
            CopyCursor::Data(vec![0, 0x7f, 0xff]),
            CopyCursor::Sub(vec![0xab, 0x01]),
            CopyCursor::Data(Vec::new()),
        ] {
            assert_eq!(CopyCursor::from_param(&c.to_param()), Some(c));
        }
        assert_eq!(CopyCursor::Sub(vec![0xab]).to_param(), "sab");
    }

    #[test]
    fn malformed_cursors_are_refused() {
        assert_eq!(CopyCursor::from_param("abc"), None);
        assert_eq!(CopyCursor::from_param("zz"), None);
        assert_eq!(CopyCursor::from_param("s0g"), None);
    }
}
