//! Split-brain evidence: for the writes this node accepts as owner, aggregated windows keyed by
//! (owned range, placement epoch) with the first and last accept time and a count. A checker
//! compares the windows of all nodes: two nodes accepting writes for overlapping ranges at
//! overlapping times is only explained if the lower epoch's window ended before the higher one's
//! began.
//!
//! The writer thread records every write it evaluates as owner (one binary search and three
//! relaxed atomics, no allocation); readers take a snapshot. A placement with a new epoch gets a
//! fresh set of windows; the oldest epochs are evicted past a cap (reported as truncated).
//!
//! A fence starts a fresh set too, with the owned ranges cut at the fence's edges: the fenced
//! part takes no more writes, so its window ends at the fence even while the rest of the owned
//! range goes on accepting. Without the cut, moving a sub-range looks like two owners.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ringshift_ring::HashRange;

/// Default cap on range slots kept across all epochs (each slot is ~40 bytes).
pub const DEFAULT_CAP_SLOTS: usize = 16_384;

/// The windows of one placement epoch: one slot per range the node owns at that epoch.
pub struct EpochWindows {
    pub epoch: u64,
    /// Sorted, non-overlapping.
    ranges: Vec<HashRange>,
    first_ms: Vec<AtomicU64>,
    last_ms: Vec<AtomicU64>,
    count: Vec<AtomicU64>,
}

impl EpochWindows {
    pub fn new(epoch: u64, mut ranges: Vec<HashRange>) -> EpochWindows {
        ranges.sort_by_key(|r| r.start);
        let n = ranges.len();
        let zeros = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        EpochWindows {
            epoch,
            first_ms: zeros(),
            last_ms: zeros(),
            count: zeros(),
            ranges,
        }
    }

    /// Index of the owned range holding `hash`.
    fn slot(&self, hash: u64) -> Option<usize> {
        let idx = self.ranges.partition_point(|r| r.start <= hash);
        let i = idx.checked_sub(1)?;
        (hash <= self.ranges[i].end).then_some(i)
    }

    /// Records one accepted write of `hash` at `now_ms`. Only the writer thread calls this, so
    /// the first-time check needs no compare-and-swap; `count` is stored last (Release) so a
    /// reader that sees a count also sees the times.
    pub fn record(&self, hash: u64, now_ms: u64) {
        let Some(i) = self.slot(hash) else {
            return;
        };
        if self.first_ms[i].load(Ordering::Relaxed) == 0 {
            self.first_ms[i].store(now_ms, Ordering::Relaxed);
        }
        self.last_ms[i].fetch_max(now_ms, Ordering::Relaxed);
        self.count[i].fetch_add(1, Ordering::Release);
    }

    fn slots(&self) -> usize {
        self.ranges.len()
    }

    /// Windows with at least one accepted write.
    pub fn windows(&self) -> impl Iterator<Item = Window> + '_ {
        self.ranges.iter().enumerate().filter_map(|(i, r)| {
            let count = self.count[i].load(Ordering::Acquire);
            (count > 0).then(|| Window {
                range: *r,
                epoch: self.epoch,
                first_ms: self.first_ms[i].load(Ordering::Relaxed),
                last_ms: self.last_ms[i].load(Ordering::Relaxed),
                count,
            })
        })
    }
}

/// One aggregated window as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub range: HashRange,
    pub epoch: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub count: u64,
}

/// `owned` cut at the edges of `cuts` (the fenced ranges), so each piece is either wholly inside
/// or wholly outside every cut.
pub fn cut_at<'a>(
    owned: &[HashRange],
    cuts: impl IntoIterator<Item = &'a HashRange>,
) -> Vec<HashRange> {
    // Every point where a piece must start: a cut's start, and the hash after a cut's end.
    let mut starts: Vec<u64> = cuts
        .into_iter()
        .flat_map(|c| [Some(c.start), c.end.checked_add(1)])
        .flatten()
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut out = Vec::with_capacity(owned.len() + starts.len());
    for r in owned {
        let mut start = r.start;
        let first = starts.partition_point(|&s| s <= r.start);
        for &s in starts[first..].iter().take_while(|&&s| s <= r.end) {
            out.push(HashRange { start, end: s - 1 });
            start = s;
        }
        out.push(HashRange { start, end: r.end });
    }
    out
}

/// The history of epochs' windows, newest last.
pub struct AcceptedWrites {
    history: Mutex<VecDeque<Arc<EpochWindows>>>,
    truncated: AtomicBool,
    cap_slots: usize,
}

impl AcceptedWrites {
    pub fn new(cap_slots: usize) -> AcceptedWrites {
        AcceptedWrites {
            history: Mutex::new(VecDeque::new()),
            truncated: AtomicBool::new(false),
            cap_slots,
        }
    }

    /// Starts the windows of a newly installed epoch, or fresh ones of the same epoch after a
    /// fence (the writer records into the returned set). Evicts the oldest sets while over the
    /// cap; the newest is always kept.
    pub fn begin_epoch(&self, epoch: u64, owned: Vec<HashRange>) -> Arc<EpochWindows> {
        let windows = Arc::new(EpochWindows::new(epoch, owned));
        let mut h = match self.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        h.push_back(windows.clone());
        let mut total: usize = h.iter().map(|w| w.slots()).sum();
        while total > self.cap_slots && h.len() > 1 {
            if let Some(old) = h.pop_front() {
                total -= old.slots();
                if old.windows().next().is_some() {
                    self.truncated.store(true, Ordering::Relaxed);
                }
            }
        }
        windows
    }

    /// Every window with accepted writes, ordered by epoch then range start, and whether older
    /// windows were evicted.
    pub fn snapshot(&self) -> (Vec<Window>, bool) {
        let h = match self.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<Window> = h
            .iter()
            .flat_map(|w| w.windows().collect::<Vec<_>>())
            .collect();
        out.sort_by_key(|w| (w.epoch, w.range.start));
        (out, self.truncated.load(Ordering::Relaxed))
    }
}

impl Default for AcceptedWrites {
    fn default() -> Self {
        AcceptedWrites::new(DEFAULT_CAP_SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> HashRange {
        HashRange { start, end }
    }

    #[test]
    fn aggregates_first_last_and_count_per_owned_range() {
        let acc = AcceptedWrites::new(100);
        let w = acc.begin_epoch(3, vec![r(100, 199), r(0, 9)]);
        w.record(5, 1000);
        w.record(150, 1001);
        w.record(9, 1003);
        w.record(0, 1002);
        // Not an owned range: ignored.
        w.record(50, 1004);
        let (windows, truncated) = acc.snapshot();
        assert!(!truncated);
        assert_eq!(
            windows,
            vec![
                Window {
                    range: r(0, 9),
                    epoch: 3,
                    first_ms: 1000,
                    last_ms: 1003,
                    count: 3
                },
                Window {
                    range: r(100, 199),
                    epoch: 3,
                    first_ms: 1001,
                    last_ms: 1001,
                    count: 1
                },
            ]
        );
    }

    #[test]
    fn a_new_epoch_gets_new_windows_and_old_ones_stay() {
        let acc = AcceptedWrites::new(100);
        let e1 = acc.begin_epoch(1, vec![r(0, u64::MAX)]);
        e1.record(u64::MAX, 10);
        let e2 = acc.begin_epoch(2, vec![r(0, 99)]);
        e2.record(7, 20);
        // A late record into the old epoch (the writer switched) still lands in epoch 1.
        let (windows, _) = acc.snapshot();
        assert_eq!(windows.len(), 2);
        assert_eq!((windows[0].epoch, windows[0].range), (1, r(0, u64::MAX)));
        assert_eq!((windows[1].epoch, windows[1].first_ms), (2, 20));
    }

    #[test]
    fn evicts_oldest_epochs_past_the_cap_and_says_so() {
        let acc = AcceptedWrites::new(4);
        let e1 = acc.begin_epoch(1, vec![r(0, 1), r(2, 3)]);
        e1.record(0, 1);
        acc.begin_epoch(2, vec![r(0, 1), r(2, 3)]);
        assert!(!acc.snapshot().1);
        // Epoch 3 pushes the total to 6 slots: epoch 1 (with writes) goes.
        let e3 = acc.begin_epoch(3, vec![r(0, 1), r(2, 3)]);
        e3.record(2, 5);
        let (windows, truncated) = acc.snapshot();
        assert!(truncated);
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].epoch, 3);
        // The newest epoch is kept even if it alone exceeds the cap.
        let big = acc.begin_epoch(4, (0..10).map(|i| r(i * 10, i * 10 + 9)).collect());
        big.record(95, 9);
        let (windows, _) = acc.snapshot();
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].epoch, windows[0].range), (4, r(90, 99)));
    }

    proptest::proptest! {
        /// Against a model: every recorded hash of an owned range counts once, with the
        /// smallest and largest time seen.
        #[test]
        fn matches_a_model(writes in proptest::collection::vec((0u64..1000, 1u64..10_000), 0..200)) {
            let owned = vec![r(0, 99), r(200, 499), r(900, 999)];
            let acc = AcceptedWrites::new(100);
            let w = acc.begin_epoch(1, owned.clone());
            for (h, t) in &writes {
                w.record(*h, *t);
            }
            let (got, _) = acc.snapshot();
            let mut want = Vec::new();
            for range in owned {
                let ts: Vec<u64> = writes
                    .iter()
                    .filter(|(h, _)| range.start <= *h && *h <= range.end)
                    .map(|(_, t)| *t)
                    .collect();
                // The first record sets first_ms (the writer records in time order).
                if let (Some(first), Some(last)) = (ts.first(), ts.iter().max()) {
                    want.push(Window { range, epoch: 1, first_ms: *first, last_ms: *last, count: ts.len() as u64 });
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn cuts_split_owned_ranges_at_fence_edges_only() {
        let owned = [r(0, 99), r(200, 299), r(400, u64::MAX)];
        let fences = [r(50, 59), r(90, 250), r(500, u64::MAX)];
        assert_eq!(
            cut_at(&owned, &fences),
            vec![
                r(0, 49),
                r(50, 59),
                r(60, 89),
                r(90, 99),
                r(200, 250),
                r(251, 299),
                r(400, 499),
                r(500, u64::MAX),
            ]
        );
        assert_eq!(cut_at(&owned, &[]), owned.to_vec());
    }

    proptest::proptest! {
        /// The pieces tile the owned ranges, and none straddles a fence's edge.
        #[test]
        fn cut_pieces_tile_and_never_straddle(
            owned in proptest::collection::vec((0u64..1000, 0u64..50), 0..8),
            fences in proptest::collection::vec((0u64..1000, 0u64..300), 0..5),
        ) {
            let mut owned: Vec<HashRange> = owned.into_iter().map(|(s, l)| r(s, s + l)).collect();
            owned.sort_by_key(|x| x.start);
            let owned: Vec<HashRange> = owned.into_iter().collect::<ringshift_ring::RangeSet>().into();
            let fences: Vec<HashRange> = fences.into_iter().map(|(s, l)| r(s, s + l)).collect();
            let pieces = cut_at(&owned, &fences);
            let points = |rs: &[HashRange]| rs.iter().flat_map(|x| x.start..=x.end).collect::<Vec<u64>>();
            proptest::prop_assert_eq!(points(&pieces), points(&owned));
            for p in &pieces {
                for f in &fences {
                    let inside = f.start <= p.start && p.end <= f.end;
                    let outside = p.end < f.start || f.end < p.start;
                    proptest::prop_assert!(inside || outside, "{:?} straddles {:?}", p, f);
                }
            }
        }
    }

    #[test]
    fn evicting_empty_epochs_is_not_truncation() {
        let acc = AcceptedWrites::new(2);
        for e in 1..10 {
            acc.begin_epoch(e, vec![r(0, 1), r(2, 3)]);
        }
        assert!(!acc.snapshot().1);
    }
}
