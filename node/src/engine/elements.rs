//! Reads of collections outside the writer: a key's metadata through the read cache, its
//! elements straight from the sub keyspace (committed batches only, as every read here).

use super::KvPair;
use super::collection::{self, CollMeta, CollType, Held};
use super::{Engine, EngineError};

impl Engine {
    /// What a live key holds.
    pub fn held(&self, key: &[u8]) -> Result<Held, EngineError> {
        Ok(Held::of(self.get(key)?.as_ref()))
    }

    /// The key's live collection of type `ty`: None if absent, Err(WRONGTYPE) if the key holds
    /// something else.
    pub fn collection(
        &self,
        key: &[u8],
        ty: CollType,
    ) -> Result<Result<Option<CollMeta>, &'static str>, EngineError> {
        Ok(self.held(key)?.expect(ty))
    }

    /// One element's value.
    pub fn element(
        &self,
        key: &[u8],
        meta: &CollMeta,
        field: &[u8],
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let skey = collection::sub_key(key, meta.version, field);
        Ok(self.sub.get(&skey)?.map(|v| v.to_vec()))
    }

    /// Up to `limit` elements (field, value) in field order, after the first `skip`.
    pub fn elements(
        &self,
        key: &[u8],
        meta: &CollMeta,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<KvPair>, EngineError> {
        let prefix = collection::elements_prefix(key, meta.version);
        let mut out = Vec::new();
        let iter = self.sub.prefix(&prefix);
        for item in iter.skip(skip) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.into_inner()?;
            let field = k.get(prefix.len()..).unwrap_or_default().to_vec();
            out.push((field, v.to_vec()));
        }
        Ok(out)
    }

    /// Elements with field >= `from`, in field order: at least `min` (unless they run out),
    /// then more while the next field starts with the same `group` bytes (zero-padded) as the
    /// last one; and
    /// that next field (None: no more). (HSCAN/SSCAN pages: a cursor made of a field's first
    /// bytes always moves forward.)
    pub fn elements_from(
        &self,
        key: &[u8],
        meta: &CollMeta,
        from: &[u8],
        min: usize,
        group: usize,
    ) -> Result<(Vec<KvPair>, Option<Vec<u8>>), EngineError> {
        let prefix = collection::elements_prefix(key, meta.version);
        let start = [prefix.as_slice(), from].concat();
        // The first `group` bytes, zero-padded ("ab" and "ab\0" are one group).
        let head = |f: &[u8]| {
            let mut h: Vec<u8> = f.iter().copied().take(group).collect();
            h.resize(group, 0);
            h
        };
        let mut out: Vec<KvPair> = Vec::new();
        let iter = match collection::prefix_end(&prefix) {
            Some(end) => self.sub.range(start..end),
            None => self.sub.range(start..),
        };
        for item in iter {
            let (k, v) = item.into_inner()?;
            let field = k.get(prefix.len()..).unwrap_or_default().to_vec();
            if out.len() >= min
                && out
                    .last()
                    .is_none_or(|(last, _)| head(last) != head(&field))
            {
                return Ok((out, Some(field)));
            }
            out.push((field, v.to_vec()));
        }
        Ok((out, None))
    }

    /// Elements physically stored in `ranges`, stale versions included.
    pub fn stored_elements(
        &self,
        ranges: &[ringshift_ring::HashRange],
    ) -> Result<u64, EngineError> {
        let mut n = 0;
        for r in ranges {
            let (lo, hi) = crate::keys::range_bounds(*r);
            let iter = match hi {
                Some(hi) => self.sub.range(lo..hi),
                None => self.sub.range(lo..),
            };
            for item in iter {
                item.key()?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every element of the collection.
    pub fn all_elements(&self, key: &[u8], meta: &CollMeta) -> Result<Vec<KvPair>, EngineError> {
        self.elements(key, meta, 0, usize::MAX)
    }
}
