//! What a read sees. Reads outside a transaction see committed data (`Engine`); reads queued
//! in a transaction are evaluated by the writer, inside the transaction's critical section,
//! and see the data as of its own earlier writes (the writer's batch view). The read code is
//! written once against this trait.

use super::collection::{CollMeta, CollType, Held};
use super::zrange::RangeQuery;
use super::{Engine, EngineError, KvPair};
use crate::keys::Stored;

pub trait KeyView {
    /// A live (unexpired) value.
    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError>;
    /// One element's value.
    fn element(
        &self,
        key: &[u8],
        meta: &CollMeta,
        field: &[u8],
    ) -> Result<Option<Vec<u8>>, EngineError>;
    /// Every element of the collection, in field order.
    fn all_elements(&self, key: &[u8], meta: &CollMeta) -> Result<Vec<KvPair>, EngineError>;
    /// One scan page (see `Engine::elements_from`).
    fn elements_from(
        &self,
        key: &[u8],
        meta: &CollMeta,
        from: &[u8],
        min: usize,
        group: usize,
    ) -> Result<(Vec<KvPair>, Option<Vec<u8>>), EngineError>;
    /// The members of a sorted set that `q` selects, in its order, with their scores (an
    /// ordered scan of the score index, or of the members for lex ranges, that stops as soon as
    /// the range is complete).
    fn zset_range(
        &self,
        key: &[u8],
        meta: &CollMeta,
        q: &RangeQuery,
    ) -> Result<Vec<(Vec<u8>, f64)>, EngineError>;
    /// A sorted-set member's rank from the lowest score (0-based) and its score.
    fn zset_rank(
        &self,
        key: &[u8],
        meta: &CollMeta,
        member: &[u8],
    ) -> Result<Option<(u64, f64)>, EngineError>;
    /// The clock expiries are judged by (unix ms).
    fn now_ms(&self) -> u64;
    /// The engine itself when this view is the committed data (list reads, which have an
    /// ordered-scan form only there, use it).
    fn committed(&self) -> Option<&Engine> {
        None
    }

    /// The key's live collection of type `ty`: None if absent, Err(WRONGTYPE) if the key holds
    /// something else.
    fn collection(
        &self,
        key: &[u8],
        ty: CollType,
    ) -> Result<Result<Option<CollMeta>, &'static str>, EngineError> {
        Ok(Held::of(self.get(key)?.as_ref()).expect(ty))
    }
}

impl KeyView for Engine {
    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError> {
        Engine::get(self, key)
    }

    fn element(
        &self,
        key: &[u8],
        meta: &CollMeta,
        field: &[u8],
    ) -> Result<Option<Vec<u8>>, EngineError> {
        Engine::element(self, key, meta, field)
    }

    fn all_elements(&self, key: &[u8], meta: &CollMeta) -> Result<Vec<KvPair>, EngineError> {
        Engine::all_elements(self, key, meta)
    }

    fn elements_from(
        &self,
        key: &[u8],
        meta: &CollMeta,
        from: &[u8],
        min: usize,
        group: usize,
    ) -> Result<(Vec<KvPair>, Option<Vec<u8>>), EngineError> {
        Engine::elements_from(self, key, meta, from, min, group)
    }

    fn zset_range(
        &self,
        key: &[u8],
        meta: &CollMeta,
        q: &RangeQuery,
    ) -> Result<Vec<(Vec<u8>, f64)>, EngineError> {
        Engine::zset_range(self, key, meta, q)
    }

    fn zset_rank(
        &self,
        key: &[u8],
        meta: &CollMeta,
        member: &[u8],
    ) -> Result<Option<(u64, f64)>, EngineError> {
        Engine::zset_rank(self, key, meta, member)
    }

    fn now_ms(&self) -> u64 {
        Engine::now_ms(self)
    }

    fn committed(&self) -> Option<&Engine> {
        Some(self)
    }
}

/// A scan page out of elements in field order, all with field >= the page's start: at least
/// `min` (unless they run out), then more while the next field's first `group` bytes
/// (zero-padded) are the last one's; and that next field (None: no more). The rule of
/// `Engine::elements_from`, for views that hold the elements in memory.
pub fn page_of(
    elements: impl IntoIterator<Item = KvPair>,
    min: usize,
    group: usize,
) -> (Vec<KvPair>, Option<Vec<u8>>) {
    let head = |f: &[u8]| {
        let mut h: Vec<u8> = f.iter().copied().take(group).collect();
        h.resize(group, 0);
        h
    };
    let mut out: Vec<KvPair> = Vec::new();
    for (field, value) in elements {
        if out.len() >= min
            && out
                .last()
                .is_none_or(|(last, _)| head(last) != head(&field))
        {
            return (out, Some(field));
        }
        out.push((field, value));
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn els(fields: &[&str]) -> Vec<KvPair> {
        fields
            .iter()
            .map(|f| (f.as_bytes().to_vec(), Vec::new()))
            .collect()
    }

    #[test]
    fn a_page_keeps_fields_sharing_their_first_bytes_together() {
        let (page, next) = page_of(els(&["aa1", "aa2", "ab"]), 1, 2);
        assert_eq!(page, els(&["aa1", "aa2"]));
        assert_eq!(next, Some(b"ab".to_vec()));
        let (page, next) = page_of(els(&["x", "y"]), 5, 2);
        assert_eq!(page.len(), 2);
        assert_eq!(next, None);
    }
}
