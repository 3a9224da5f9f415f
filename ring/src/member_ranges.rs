//! One member's ranges kept sorted largest first (ties by token), updated as they change.
//!
//! A join cuts each donor's largest ranges; with the ranges kept in that order they are a
//! prefix of the list instead of a selection over all of them for each of up to `vnodes` donors
//! per join (that selection was a third of a 1000-member build). A range's span is always known
//! to whoever changes it (it follows from the token list), so an entry is found by binary search
//! on (span, token).

use crate::token_list::NodeId;
use std::cmp::Ordering;

/// A range `(pred(token), token]` ended by token list node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    /// The span less one: spans run from 1 to 2^64, and a u64 keeps entries at 24 bytes and
    /// comparisons cheap (a join moves entries around in these lists about 60 000 times).
    span_less_one: u64,
    pub token: u64,
    pub node: NodeId,
}

impl Range {
    /// A range of `span` hashes (1 ..= 2^64).
    pub fn new(span: u128, token: u64, node: NodeId) -> Range {
        debug_assert!((1..=1 << 64).contains(&span));
        Range {
            span_less_one: (span - 1) as u64,
            token,
            node,
        }
    }

    pub fn span(&self) -> u128 {
        u128::from(self.span_less_one) + 1
    }
}

/// How many entries `find` checks in order before searching.
const FRONT: usize = 4;

#[derive(Debug, Default, Clone)]
pub(crate) struct MemberRanges {
    /// Sorted by span descending, then token ascending, up to `sorted`; entries after it were
    /// appended by [`MemberRanges::push`] and are not sorted yet.
    by_size: Vec<Range>,
    sorted: usize,
}

/// Where an entry of (span - 1, token) sorts relative to `r`.
fn order(r: &Range, span_less_one: u64, token: u64) -> Ordering {
    (span_less_one, r.token).cmp(&(r.span_less_one, token))
}

impl MemberRanges {
    pub fn len(&self) -> usize {
        self.by_size.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_size.is_empty()
    }

    pub fn clear(&mut self) {
        self.by_size.clear();
        self.sorted = 0;
    }

    /// Largest first, ties by token.
    pub fn by_size(&self) -> &[Range] {
        debug_assert!(self.is_settled());
        &self.by_size
    }

    /// Append `r` without keeping the order: a joiner receives its pieces one by one, and
    /// inserting each into its sorted place moved half the list every time. Call
    /// [`MemberRanges::settle`] before anything else reads or changes the list.
    pub fn push(&mut self, r: Range) {
        self.by_size.push(r);
    }

    /// Sort the ranges appended by [`MemberRanges::push`] into place.
    pub fn settle(&mut self) {
        if !self.is_settled() {
            self.by_size
                .sort_unstable_by(|a, b| order(a, b.span_less_one, b.token));
            self.sorted = self.by_size.len();
        }
    }

    fn is_settled(&self) -> bool {
        self.sorted == self.by_size.len()
    }

    /// Room for `extra` more ranges.
    pub fn reserve(&mut self, extra: usize) {
        self.by_size.reserve(extra);
    }

    fn find(&self, span: u128, token: u64) -> Result<usize, usize> {
        debug_assert!(self.is_settled());
        let key = (span - 1) as u64;
        // A join cuts a donor's largest ranges, which sit at the front and were just read.
        let mut front = self.by_size.iter().take(FRONT);
        if let Some(i) = front.position(|r| r.token == token && r.span_less_one == key) {
            return Ok(i);
        }
        self.by_size.binary_search_by(|r| order(r, key, token))
    }

    pub fn insert(&mut self, r: Range) {
        debug_assert!(self.is_settled());
        let (Ok(i) | Err(i)) = self
            .by_size
            .binary_search_by(|e| order(e, r.span_less_one, r.token));
        self.by_size.insert(i, r);
        self.sorted += 1;
    }

    /// Remove the range of `span` ended by `token`, if held.
    pub fn remove(&mut self, span: u128, token: u64) -> Option<Range> {
        let i = self.find(span, token).ok()?;
        self.sorted -= 1;
        Some(self.by_size.remove(i))
    }

    /// Change the span of the range ended by `token` from `old` to `new`, keeping the order.
    pub fn resize(&mut self, old: u128, token: u64, new: u128) {
        let Ok(i) = self.find(old, token) else {
            return;
        };
        let r = Range::new(new, token, self.by_size[i].node);
        let key = |e: &Range| order(e, r.span_less_one, token);
        // Shift the entries between the old and the new place by one (a block move).
        let v = &mut self.by_size;
        let j = if new < old {
            let (Ok(k) | Err(k)) = v[i + 1..].binary_search_by(key);
            v.copy_within(i + 1..=i + k, i);
            i + k
        } else {
            let (Ok(j) | Err(j)) = v[..i].binary_search_by(key);
            v.copy_within(j..i, j + 1);
            j
        };
        v[j] = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(span: u128, token: u64) -> Range {
        Range::new(span, token, token as NodeId)
    }

    fn spans(m: &MemberRanges) -> Vec<(u128, u64)> {
        m.by_size().iter().map(|r| (r.span(), r.token)).collect()
    }

    #[test]
    fn stays_sorted_largest_first_ties_by_token() {
        let mut m = MemberRanges::default();
        for (s, t) in [(5, 9), (7, 1), (5, 3), (1, 4), (9, 2)] {
            m.insert(r(s, t));
        }
        assert_eq!(spans(&m), vec![(9, 2), (7, 1), (5, 3), (5, 9), (1, 4)]);
        m.resize(9, 2, 5); // shrinks past (7,1) and ties with (5,3) (5,9): token 2 first
        assert_eq!(spans(&m), vec![(7, 1), (5, 2), (5, 3), (5, 9), (1, 4)]);
        m.resize(1, 4, 8); // grows to the front
        assert_eq!(spans(&m), vec![(8, 4), (7, 1), (5, 2), (5, 3), (5, 9)]);
        m.resize(5, 3, 5); // unchanged
        assert_eq!(spans(&m), vec![(8, 4), (7, 1), (5, 2), (5, 3), (5, 9)]);
        assert_eq!(m.remove(5, 9), Some(r(5, 9)));
        assert_eq!(m.remove(5, 9), None);
        assert_eq!(m.len(), 4);
        m.insert(r(1 << 64, 0)); // the whole ring
        m.resize(1 << 64, 0, 1);
        assert_eq!(spans(&m)[3..], [(5, 3), (1, 0)]);
    }

    #[test]
    fn pushed_ranges_settle_into_the_same_order_as_inserted_ones() {
        let ranges = [(5, 9), (7, 1), (5, 3), (1, 4), (9, 2), (7, 0)];
        let mut inserted = MemberRanges::default();
        let mut pushed = MemberRanges::default();
        inserted.insert(r(3, 8));
        pushed.insert(r(3, 8));
        for (s, t) in ranges {
            inserted.insert(r(s, t));
            pushed.push(r(s, t));
        }
        pushed.settle();
        assert_eq!(spans(&pushed), spans(&inserted));
        assert_eq!(pushed.remove(5, 3), Some(r(5, 3)));
        pushed.insert(r(2, 3));
        assert_eq!(spans(&pushed)[4..], [(3, 8), (2, 3), (1, 4)]);
    }
}
