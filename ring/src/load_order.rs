//! The members owning tokens, kept sorted most loaded (per weight) first.
//!
//! A join takes from the most loaded members. Selecting them anew among all members was the
//! largest step of a join in a 1000-member ring, yet one operation changes the load of at
//! most `vnodes` donors and the joiner (a leave: the leaver and its recipients). So the order
//! is kept, and after an operation only the members it changed are taken out, sorted and
//! merged back in: a short search per changed member and block copies of the rest, from the
//! first position that changes. A join's donors were the most loaded members, so their old
//! entries sit at the head: they are dropped there (the order starts later in its vector)
//! instead of moving every entry behind them, and the entries the join changed go back in near
//! the tail, so a join touches about as many entries as it changed.

use std::cmp::Ordering;

/// A member's (positive) load and weight, to order members by load per weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Norm {
    /// The load less one (loads run from 1 to 2^64): 16-byte entries halve the memory an
    /// operation moves when it merges the changed members back in.
    load_less_one: u64,
    pub weight: u32,
    pub id: u32,
}

impl Norm {
    /// Member `id` with `load` (1 ..= 2^64) and `weight`.
    pub fn new(load: u128, weight: u32, id: u32) -> Norm {
        debug_assert!((1..=1 << 64).contains(&load));
        Norm {
            load_less_one: (load - 1) as u64,
            weight,
            id,
        }
    }

    pub fn load(&self) -> u128 {
        u128::from(self.load_less_one) + 1
    }

    /// Compare load per weight by cross-multiplying (exact; a weight of 0 with a load counts
    /// as infinitely loaded).
    pub fn cmp_norm(&self, other: &Norm) -> Ordering {
        if self.weight == other.weight && self.weight > 0 {
            // The common case, without the two 128-bit products (same order).
            return self.load_less_one.cmp(&other.load_less_one);
        }
        (self.load() * u128::from(other.weight)).cmp(&(other.load() * u128::from(self.weight)))
    }
}

/// Most loaded (per weight) first, ties by id. A total order among members with a load, so the
/// members selected and their order do not depend on how they are selected or sorted.
pub(crate) fn most_loaded_first(a: &Norm, b: &Norm) -> Ordering {
    b.cmp_norm(a).then(a.id.cmp(&b.id))
}

/// Sort `v` by `less`: by insertion while that stays cheap, as it does on the nearly sorted
/// input an operation mostly produces (taken in id order, the donors of a join end at one level
/// and tie by id; the joiner moves to the front), else by the standard unstable sort (which
/// costs about a hundred instructions per entry at the sizes here).
fn sort_nearly_sorted<T: Copy>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let mut moves = 4 * v.len() + 16;
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && less(&x, &v[j - 1]) {
            if moves == 0 {
                v[j] = x;
                v.sort_unstable_by(|a, b| {
                    if less(a, b) {
                        Ordering::Less
                    } else if less(b, a) {
                        Ordering::Greater
                    } else {
                        Ordering::Equal
                    }
                });
                return;
            }
            moves -= 1;
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

#[derive(Debug, Default)]
pub(crate) struct LoadOrder {
    /// Members with a load, as of the last [`LoadOrder::refresh`], most loaded first, from
    /// `start` on; the entries before `start` are dropped ones not yet compacted away (see
    /// [`LoadOrder::drop_stale_head`]).
    sorted: Vec<Norm>,
    start: usize,
    /// Per member id, its index in `sorted` ([`UNLISTED`] if none): a changed member's old
    /// entry is found without a search.
    pos: Vec<u32>,
    /// Members whose load, weight or activity changed since then: one bit per member id, so
    /// they are read back in id order.
    changed: Vec<u64>,
    any_changed: bool,
    /// Buffers reused across refreshes: the part of `sorted` being rebuilt, the changed
    /// members' new entries and the positions of their old ones.
    spare: Vec<Norm>,
    fresh: Vec<Norm>,
    stale: Vec<usize>,
    /// The old entries' positions as bits, read back in ascending order.
    stale_bits: Vec<u64>,
}

/// Call `f` with the index of every set bit of `words`, ascending, clearing them.
fn for_each_bit(words: &mut [u64], mut f: impl FnMut(usize)) {
    for (w, word) in words.iter_mut().enumerate() {
        let mut bits = std::mem::take(word);
        while bits != 0 {
            f(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// `pos` of a member not in the order.
const UNLISTED: u32 = u32::MAX;

impl LoadOrder {
    /// Record that member `id`'s load, weight or activity changed.
    #[inline]
    pub fn mark(&mut self, id: u32) {
        let i = id as usize;
        if i >= self.pos.len() {
            self.pos.resize(i + 1, UNLISTED);
            self.changed.resize(i / 64 + 1, 0);
        }
        self.changed[i / 64] |= 1 << (i % 64);
        self.any_changed = true;
    }

    /// Bring the order up to date; `current(id)` is a changed member's state, `None` when it is
    /// inactive or owns nothing.
    pub fn refresh(&mut self, current: impl Fn(u32) -> Option<Norm>) {
        if !std::mem::take(&mut self.any_changed) {
            return;
        }
        self.fresh.clear();
        self.stale_bits.clear();
        self.stale_bits.resize(self.sorted.len() / 64 + 1, 0);
        for_each_bit(&mut self.changed, |i| {
            if self.pos[i] != UNLISTED {
                let at = self.pos[i] as usize;
                self.stale_bits[at / 64] |= 1 << (at % 64);
                self.pos[i] = UNLISTED;
            }
            self.fresh.extend(current(i as u32));
        });
        self.stale.clear();
        for_each_bit(&mut self.stale_bits, |at| self.stale.push(at));
        sort_nearly_sorted(&mut self.fresh, |a, b| most_loaded_first(a, b).is_lt());
        let head = self.drop_stale_head();
        // Rebuild from the first position that changes: the first remaining old entry or where
        // the first new one goes (old entries still sort among the others, so the search may
        // include them).
        let insert_at = match self.fresh.first() {
            Some(f) => {
                self.start
                    + gallop(&self.sorted[self.start..], |x| {
                        most_loaded_first(x, f).is_lt()
                    })
            }
            None => self.sorted.len(),
        };
        let first = self
            .stale
            .get(head)
            .map_or(insert_at, |&s| s.min(insert_at));
        self.spare.clear();
        self.spare.extend_from_slice(&self.sorted[first..]);
        self.sorted.truncate(first);
        for s in &mut self.stale[head..] {
            *s -= first;
        }
        merge(
            &self.spare,
            &self.stale[head..],
            &self.fresh,
            &mut self.sorted,
        );
        // Every entry from `first` on may have moved (a few hundred per join): a plain loop.
        let pos = &mut self.pos;
        for (i, n) in (first as u32..).zip(&self.sorted[first..]) {
            pos[n.id as usize] = i;
        }
        if self.start > self.sorted.len() / 2 {
            self.compact();
        }
    }

    /// Drop the old entries at the head of the order without moving what follows them: a
    /// join's donors were the most loaded members, so their old entries are (nearly) a prefix,
    /// and rebuilding the order behind them moved every entry on each join. The few current
    /// entries among them (donors a join did not cut) move to the end of that prefix, keeping
    /// their order, and the order then starts after the dropped ones. Takes the leading old
    /// positions while they make up at least half of the entries they span; returns how many.
    fn drop_stale_head(&mut self) -> usize {
        let (mut count, mut end) = (0, self.start);
        for (k, &p) in self.stale.iter().enumerate() {
            if p + 1 - self.start > 2 * (k + 1) {
                break;
            }
            (count, end) = (k + 1, p + 1);
        }
        let mut write = end;
        let mut s = count;
        for read in (self.start..end).rev() {
            if s > 0 && self.stale[s - 1] == read {
                s -= 1;
                continue;
            }
            write -= 1;
            let n = self.sorted[read];
            self.sorted[write] = n;
            self.pos[n.id as usize] = write as u32;
        }
        self.start = write;
        count
    }

    /// Remove the dropped entries before `start` once they outnumber the others (so the
    /// vector stays at most twice the members it orders).
    fn compact(&mut self) {
        self.sorted.drain(..self.start);
        self.start = 0;
        for (i, n) in self.sorted.iter().enumerate() {
            self.pos[n.id as usize] = i as u32;
        }
    }

    /// Every member with a load, most loaded first (call [`LoadOrder::refresh`] first).
    pub fn sorted(&self) -> &[Norm] {
        debug_assert!(!self.any_changed);
        &self.sorted[self.start..]
    }
}

/// Merge `few` into `many` (both sorted most loaded first), appending to `out`, leaving out the
/// entries of `many` at the (ascending) positions `stale`: block copies of `many` between a
/// search per run of `few`. The changed members of an operation tend to land next to each other
/// (a join levels its donors to one load), so each search gallops from the previous one and a
/// run of them goes in at once.
fn merge(many: &[Norm], stale: &[usize], few: &[Norm], out: &mut Vec<Norm>) {
    out.reserve(many.len() + few.len());
    let before = |a: &Norm, b: &Norm| most_loaded_first(a, b).is_lt();
    let (mut from, mut s, mut i) = (0, 0, 0);
    while i < few.len() {
        // Stale entries still sort among the others, so the search may include them.
        let at = from + gallop(&many[from..], |x| before(x, &few[i]));
        copy_live(many, stale, &mut s, from, at, out);
        from = at;
        // `few[i]` goes here (it may equal the stale entry at `at`), with those after it that
        // sort before `many[at]` too.
        let run = 1 + few[i + 1..]
            .iter()
            .take_while(|f| many.get(at).is_none_or(|x| before(f, x)))
            .count();
        out.extend_from_slice(&few[i..i + run]);
        i += run;
    }
    copy_live(many, stale, &mut s, from, many.len(), out);
}

/// Copy `many[from..to]` to `out`, skipping the positions `stale[*s..]` inside it (advancing
/// `s` past them).
fn copy_live(
    many: &[Norm],
    stale: &[usize],
    s: &mut usize,
    mut from: usize,
    to: usize,
    out: &mut Vec<Norm>,
) {
    while let Some(&at) = stale.get(*s).filter(|&&at| at < to) {
        // Stale entries often sit together: skip the empty copies between them.
        if from < at {
            out.extend_from_slice(&many[from..at]);
        }
        from = at + 1;
        *s += 1;
    }
    if from < to {
        out.extend_from_slice(&many[from..to]);
    }
}

/// `slice.partition_point(pred)`, searching from the front in doubling steps: costs the log of
/// the answer rather than of the length.
fn gallop<T>(slice: &[T], pred: impl Fn(&T) -> bool) -> usize {
    let mut lo = 0;
    let mut step = 1;
    while lo + step <= slice.len() && pred(&slice[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(slice.len());
    lo + slice[lo..hi].partition_point(pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_keeps_members_most_loaded_per_weight_first() {
        let mut state = vec![(10u128, 1u32), (30, 2), (5, 1), (0, 1), (7, 0)];
        let current = |s: &Vec<(u128, u32)>| {
            let s = s.clone();
            move |id: u32| {
                let (load, weight) = s[id as usize];
                (load > 0).then(|| Norm::new(load, weight, id))
            }
        };
        let mut order = LoadOrder::default();
        for id in 0..5 {
            order.mark(id);
        }
        order.refresh(current(&state));
        let ids = |o: &LoadOrder| o.sorted().iter().map(|n| n.id).collect::<Vec<_>>();
        // 7 / 0 is infinite; 30 / 2 = 15; 10; 5; member 3 owns nothing.
        assert_eq!(ids(&order), vec![4, 1, 0, 2]);
        state[2] = (20, 1);
        state[4] = (0, 0);
        state[3] = (15, 1); // ties with member 1 (30 / 2): lower id first
        for id in [2, 4, 3] {
            order.mark(id);
        }
        order.mark(2);
        order.refresh(current(&state));
        assert_eq!(ids(&order), vec![2, 1, 3, 0]);
    }

    proptest::proptest! {
        /// After any sequence of changes (including marks that change nothing, members that
        /// stop owning and come back, and loads tied with others), the kept order equals a
        /// fresh sort of every member with a load.
        #[test]
        fn refresh_matches_a_full_sort(
            steps in proptest::collection::vec(
                proptest::collection::vec((0u32..40, 0u128..6, 0u32..4), 0..30),
                1..12,
            ),
        ) {
            let mut state = vec![(0u128, 1u32); 40];
            let mut order = LoadOrder::default();
            for step in steps {
                for (id, load, weight) in step {
                    state[id as usize] = (load, weight);
                    order.mark(id);
                }
                let current = |id: u32| {
                    let (load, weight) = state[id as usize];
                    (load > 0).then(|| Norm::new(load, weight, id))
                };
                order.refresh(current);
                let mut expected: Vec<Norm> = (0..40).filter_map(current).collect();
                expected.sort_by(most_loaded_first);
                proptest::prop_assert_eq!(order.sorted(), &expected[..]);
            }
        }

        /// Nearly sorted input (a few entries out of place) and arbitrary input, which runs out
        /// of cheap moves and falls back to the standard sort, both come out sorted.
        #[test]
        fn sort_nearly_sorted_sorts(
            mut v in proptest::collection::vec(0u32..1000, 0..200),
            swaps in proptest::collection::vec((0usize..200, 0usize..200), 0..4),
            presort in proptest::bool::ANY,
        ) {
            if presort {
                v.sort_unstable();
                let n = v.len();
                for (a, b) in swaps {
                    if n > 0 {
                        v.swap(a % n, b % n);
                    }
                }
            }
            let mut expected = v.clone();
            expected.sort_unstable();
            sort_nearly_sorted(&mut v, |a, b| a < b);
            proptest::prop_assert_eq!(v, expected);
        }

        #[test]
        fn gallop_is_partition_point(mut v in proptest::collection::vec(0u8..50, 0..70), x in 0u8..55) {
            v.sort_unstable();
            proptest::prop_assert_eq!(gallop(&v, |&e| e < x), v.partition_point(|&e| e < x));
        }
    }
}
