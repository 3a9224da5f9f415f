//! What a list read needs, from committed data (`Engine`: ordered scans of the element
//! records) or from any `KeyView` (a transaction's view inside the writer: one point read per
//! position, as a transaction's reads are few and its view has no ordered scan).

use std::ops::Range;

use super::list::{self, ListMeta};
use super::view::KeyView;
use super::{Engine, EngineError};

pub trait ListSource {
    /// `key`'s list: None absent, Err(WRONGTYPE) another type.
    fn meta(&self, key: &[u8]) -> Result<Result<Option<ListMeta>, &'static str>, EngineError>;
    /// The element at list position `pos`.
    fn at(&self, key: &[u8], m: &ListMeta, pos: u64) -> Result<Option<Vec<u8>>, EngineError>;
    /// Calls `f` on the elements at positions `span`, first to last (`reverse`: last to first),
    /// while it returns true.
    fn scan(
        &self,
        key: &[u8],
        m: &ListMeta,
        span: Range<u64>,
        reverse: bool,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), EngineError>;
}

impl ListSource for Engine {
    fn meta(&self, key: &[u8]) -> Result<Result<Option<ListMeta>, &'static str>, EngineError> {
        self.list(key)
    }

    fn at(&self, key: &[u8], m: &ListMeta, pos: u64) -> Result<Option<Vec<u8>>, EngineError> {
        self.list_at(key, m, pos)
    }

    fn scan(
        &self,
        key: &[u8],
        m: &ListMeta,
        span: Range<u64>,
        reverse: bool,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), EngineError> {
        self.list_scan(key, m, span, reverse, f)
    }
}

/// A list read through a `KeyView`.
pub struct ViewList<'a>(pub &'a dyn KeyView);

impl ListSource for ViewList<'_> {
    fn meta(&self, key: &[u8]) -> Result<Result<Option<ListMeta>, &'static str>, EngineError> {
        Ok(list::list_of(self.0.get(key)?.as_ref()))
    }

    fn at(&self, key: &[u8], m: &ListMeta, pos: u64) -> Result<Option<Vec<u8>>, EngineError> {
        if pos >= m.len() {
            return Ok(None);
        }
        self.0.element(key, &m.coll, &list::field(m.index(pos)))
    }

    fn scan(
        &self,
        key: &[u8],
        m: &ListMeta,
        span: Range<u64>,
        reverse: bool,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), EngineError> {
        let span = span.start..span.end.min(m.len());
        let positions: Box<dyn Iterator<Item = u64>> = if reverse {
            Box::new(span.rev())
        } else {
            Box::new(span)
        };
        for pos in positions {
            if let Some(v) = self.at(key, m, pos)?
                && !f(&v)
            {
                break;
            }
        }
        Ok(())
    }
}
