//! One member's ranges kept sorted largest first (ties by token), updated as they change.
//!
//! A join cuts each donor's largest ranges; with the ranges kept in that order they are a
//! prefix of the list instead of a selection over all of them for each of up to `vnodes` donors
//! per join (that selection was a third of a 1000-member build). A range's span is always known
//! to whoever changes it (it follows from the token list), so an entry is found by binary search
//! on (span, token).

use crate::token_list::NodeId;

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

    /// Where the range sorts, as one integer: larger spans first, ties by token. One 128-bit
    /// comparison instead of a two-field lexicographic one (sorting a joiner's new ranges and
    /// the searches that keep a donor's list in order are most of what this module costs).
    #[inline]
    fn rank(&self) -> u128 {
        (u128::from(!self.span_less_one) << 64) | u128::from(self.token)
    }
}

/// How many entries of `v` sort before `rank` (`v` sorted by rank). Branch-free: the compiler
/// turned `partition_point` here into a branch per step, mispredicted about every other step
/// (with the cache misses on the list, the searches were a sixth of a 1000-member build).
fn rank_point(v: &[Range], rank: u128) -> usize {
    let (mut base, mut size) = (0usize, v.len());
    while size > 1 {
        let half = size / 2;
        let below = usize::from(v[base + half].rank() < rank);
        base += half & below.wrapping_neg();
        size -= half;
    }
    base + usize::from(size == 1 && v[base].rank() < rank)
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
            self.by_size.sort_unstable_by_key(Range::rank);
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
        let rank = Range {
            span_less_one: key,
            token,
            node: 0,
        }
        .rank();
        let i = rank_point(&self.by_size, rank);
        match self.by_size.get(i) {
            Some(r) if r.rank() == rank => Ok(i),
            _ => Err(i),
        }
    }

    pub fn insert(&mut self, r: Range) {
        debug_assert!(self.is_settled());
        let rank = r.rank();
        let i = rank_point(&self.by_size, rank);
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
        if let Ok(i) = self.find(old, token) {
            self.resize_at(i, new);
        }
    }

    /// Change the span of the `i`-th largest range to `new`, keeping the order: for a caller
    /// that has just read it there (a join's cut), without searching for it.
    pub fn resize_at(&mut self, i: usize, new: u128) {
        debug_assert!(self.is_settled());
        let (old, token) = (self.by_size[i].span(), self.by_size[i].token);
        let r = Range::new(new, token, self.by_size[i].node);
        let rank = r.rank();
        // Shift the entries between the old and the new place by one (a block move).
        let v = &mut self.by_size;
        let j = if new < old {
            let k = rank_point(&v[i + 1..], rank);
            v.copy_within(i + 1..=i + k, i);
            i + k
        } else {
            let j = rank_point(&v[..i], rank);
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

    proptest::proptest! {
        #[test]
        fn rank_point_is_partition_point(
            mut v in proptest::collection::vec((1u128..40, 0u64..100), 0..70),
            span in 1u128..41,
            token in 0u64..101,
        ) {
            v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            v.dedup();
            let ranges: Vec<Range> = v.iter().map(|&(s, t)| r(s, t)).collect();
            let rank = r(span, token).rank();
            proptest::prop_assert_eq!(
                rank_point(&ranges, rank),
                ranges.partition_point(|e| e.rank() < rank)
            );
        }

        /// Any mix of inserts, removals and resizes (the front ones most often, as joins cut
        /// them) keeps exactly the ranges of a plain sorted model, in its order, whichever
        /// side each move shifts.
        #[test]
        fn moves_keep_the_order_of_a_sorted_model(
            ops in proptest::collection::vec((0u8..4, 0usize..40, 1u128..50, 0u64..60), 1..300),
        ) {
            let mut m = MemberRanges::default();
            let mut model: Vec<(u128, u64)> = Vec::new();
            let sort = |v: &mut Vec<(u128, u64)>| v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            for (op, at, span, token) in ops {
                match op {
                    0 if !model.iter().any(|e| e.1 == token) => {
                        m.insert(r(span, token));
                        model.push((span, token));
                    }
                    1 if !model.is_empty() => {
                        let (s, t) = model.remove(at % model.len());
                        proptest::prop_assert_eq!(m.remove(s, t), Some(r(s, t)));
                    }
                    2 | 3 if !model.is_empty() => {
                        // Op 3 resizes one of the largest, as a join's cut does.
                        let i = if op == 3 { at % model.len().min(3) } else { at % model.len() };
                        let (s, t) = model[i];
                        m.resize(s, t, span);
                        model[i].0 = span;
                    }
                    _ => {}
                }
                sort(&mut model);
                proptest::prop_assert_eq!(spans(&m), model.clone());
            }
        }
    }
}
