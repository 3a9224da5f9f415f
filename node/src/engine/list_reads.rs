//! Reads of lists outside the writer (committed data, as every read here): a position range is
//! one ordered scan of the element records, a position one point read.

use super::collection;
use super::list::{self, ListMeta};
use super::{Engine, EngineError};

impl Engine {
    /// `key`'s list: None absent, Err(WRONGTYPE) another type.
    pub fn list(&self, key: &[u8]) -> Result<Result<Option<ListMeta>, &'static str>, EngineError> {
        Ok(list::list_of(self.get(key)?.as_ref()))
    }

    /// The element at list position `pos`.
    pub fn list_at(
        &self,
        key: &[u8],
        m: &ListMeta,
        pos: u64,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let sk = collection::sub_key(key, m.coll.version, &list::field(m.index(pos)));
        Ok(self.sub.get(&sk)?.map(|v| v.to_vec()))
    }

    /// Calls `f` on the elements at positions `span`, first to last (`reverse`: last to
    /// first), while it returns true.
    pub fn list_scan(
        &self,
        key: &[u8],
        m: &ListMeta,
        span: std::ops::Range<u64>,
        reverse: bool,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), EngineError> {
        if span.is_empty() {
            return Ok(());
        }
        let at = |pos: u64| collection::sub_key(key, m.coll.version, &list::field(m.index(pos)));
        let range = self.sub.range(at(span.start)..at(span.end));
        let mut visit = |item: fjall::Guard| -> Result<bool, EngineError> {
            let (_, v) = item.into_inner()?;
            Ok(f(&v))
        };
        if reverse {
            for item in range.rev() {
                if !visit(item)? {
                    break;
                }
            }
        } else {
            for item in range {
                if !visit(item)? {
                    break;
                }
            }
        }
        Ok(())
    }
}
