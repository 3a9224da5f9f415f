//! Sorted-set reads outside the writer (committed records only, as every read here): ranges
//! as ordered scans of the score index or the members, ranks as counts of the index below a
//! member.

use super::collection::{self, CollMeta};
use super::zrange::{self, RangeQuery, Step, Walk};
use super::zscore;
use super::zset::{self, FAMILY_SCORES};
use super::{Engine, EngineError};

impl Engine {
    /// The members `q` selects, in its order, with their scores.
    pub fn zset_range(
        &self,
        key: &[u8],
        m: &CollMeta,
        q: &RangeQuery,
    ) -> Result<Vec<(Vec<u8>, f64)>, EngineError> {
        let mut walk = Walk::new(q.clone(), m.count);
        if walk.done() {
            return Ok(Vec::new());
        }
        let by_member = zrange::walks_members(q);
        let (prefix, lo, hi) = zset::scan_bounds(key, m.version, q);
        let iter = match hi {
            Some(h) => self.sub.range(lo..h),
            None => self.sub.range(lo..),
        };
        let mut visit = |item: fjall::Guard| -> Result<Step, EngineError> {
            let (k, v) = item.into_inner()?;
            let field = k.get(prefix.len()..).unwrap_or_default();
            Ok(zset::offer(&mut walk, by_member, field, &v))
        };
        if q.rev {
            for item in iter.rev() {
                if visit(item)? == Step::Stop {
                    break;
                }
            }
        } else {
            for item in iter {
                if visit(item)? == Step::Stop {
                    break;
                }
            }
        }
        Ok(walk.finish())
    }

    /// A member's score.
    pub fn zset_score(
        &self,
        key: &[u8],
        m: &CollMeta,
        member: &[u8],
    ) -> Result<Option<f64>, EngineError> {
        Ok(self
            .element(key, m, member)?
            .map(|v| zset::stored_score(&v)))
    }

    /// A member's rank from the lowest score (0-based) and its score.
    pub fn zset_rank(
        &self,
        key: &[u8],
        m: &CollMeta,
        member: &[u8],
    ) -> Result<Option<(u64, f64)>, EngineError> {
        let Some(score) = self.zset_score(key, m, member)? else {
            return Ok(None);
        };
        let prefix = collection::family_prefix(key, m.version, FAMILY_SCORES);
        let at = [prefix.as_slice(), &zscore::index_field(score, member)].concat();
        let mut rank = 0;
        for item in self.sub.range(prefix..at) {
            item.key()?;
            rank += 1;
        }
        Ok(Some((rank, score)))
    }
}
