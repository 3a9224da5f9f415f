//! Modification stamps for WATCH, kept by the writer in memory.
//!
//! Every write the writer evaluates while some connection watches keys stamps its key with the
//! next value of a clock; fences and ownership changes stamp hash ranges. EXEC compares the
//! stamps with the clock value its WATCH saw, inside the critical section that applies the
//! transaction, so nothing can slip in between the check and the writes. The log is bounded:
//! an evicted entry raises a floor, and a WATCH older than the floor aborts (conservatively:
//! it cannot tell whether its key was among the evicted ones).

use std::collections::{HashMap, VecDeque};

use crate::keys;
#[cfg(test)]
use ringshift_ring::HashRange;
use ringshift_ring::RangeSet;

/// Keys remembered at most (older stamps are folded into the floor).
pub const KEY_CAP: usize = 100_000;
/// Range events (fences, ownership changes) remembered at most.
pub const RANGE_CAP: usize = 256;

pub struct TouchLog {
    clock: u64,
    keys: HashMap<Vec<u8>, u64>,
    /// Keys in stamp order (a key touched again appears again; the old entry is stale).
    order: VecDeque<(Vec<u8>, u64)>,
    key_cap: usize,
    /// Highest stamp of an evicted key.
    key_floor: u64,
    moves: VecDeque<(RangeSet, u64)>,
    range_cap: usize,
    range_floor: u64,
}

impl TouchLog {
    pub fn new(key_cap: usize, range_cap: usize) -> TouchLog {
        TouchLog {
            clock: 0,
            keys: HashMap::new(),
            order: VecDeque::new(),
            key_cap: key_cap.max(1),
            key_floor: 0,
            moves: VecDeque::new(),
            range_cap: range_cap.max(1),
            range_floor: 0,
        }
    }

    /// The clock now: a WATCH remembers it; later touches are above it.
    pub fn stamp(&self) -> u64 {
        self.clock
    }

    /// A write of `skey` (a storage key: hash ++ key).
    pub fn touch(&mut self, skey: &[u8]) {
        self.clock += 1;
        self.keys.insert(skey.to_vec(), self.clock);
        self.order.push_back((skey.to_vec(), self.clock));
        while self.keys.len() > self.key_cap || self.order.len() > 2 * self.key_cap {
            let Some((k, s)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&k) == Some(&s) {
                self.keys.remove(&k);
                self.key_floor = self.key_floor.max(s);
            }
        }
    }

    /// A write while nobody watched: not remembered, so every WATCH older than it aborts
    /// (a remote WATCH whose hold lapsed must not miss it).
    pub fn untracked(&mut self) {
        self.clock += 1;
        self.key_floor = self.clock;
    }

    /// A fence, an unfence or an ownership change of `rs`.
    pub fn touch_ranges(&mut self, rs: RangeSet) {
        if rs.is_empty() {
            return;
        }
        self.clock += 1;
        self.moves.push_back((rs, self.clock));
        while self.moves.len() > self.range_cap {
            if let Some((_, s)) = self.moves.pop_front() {
                self.range_floor = self.range_floor.max(s);
            }
        }
    }

    /// Whether `skey` was (or may have been) written, or its range fenced or moved, after
    /// `stamp`.
    pub fn modified_since(&self, skey: &[u8], stamp: u64) -> bool {
        let written = match self.keys.get(skey) {
            Some(s) => *s > stamp,
            None => self.key_floor > stamp,
        };
        if written || self.range_floor > stamp {
            return true;
        }
        let Some((hash, _)) = keys::split_storage_key(skey) else {
            return true;
        };
        self.moves
            .iter()
            .any(|(rs, s)| *s > stamp && rs.contains(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(k: &str) -> Vec<u8> {
        keys::storage_key(k.as_bytes())
    }

    #[test]
    fn a_write_after_the_stamp_is_seen_and_one_before_is_not() {
        let mut t = TouchLog::new(10, 10);
        t.touch(&sk("a"));
        let w = t.stamp();
        assert!(!t.modified_since(&sk("a"), w));
        t.touch(&sk("b"));
        assert!(!t.modified_since(&sk("a"), w));
        assert!(t.modified_since(&sk("b"), w));
    }

    #[test]
    fn an_evicted_key_makes_older_watches_abort_and_newer_ones_not() {
        let mut t = TouchLog::new(2, 10);
        let w0 = t.stamp();
        t.touch(&sk("a"));
        t.touch(&sk("b"));
        let w2 = t.stamp();
        t.touch(&sk("c"));
        // "a" was evicted: a watch from before it cannot tell, one from after it can.
        assert!(t.modified_since(&sk("x"), w0));
        assert!(!t.modified_since(&sk("x"), w2));
        assert!(t.modified_since(&sk("c"), w2));
    }

    #[test]
    fn a_write_nobody_tracked_aborts_every_older_watch() {
        let mut t = TouchLog::new(10, 10);
        let w = t.stamp();
        t.untracked();
        assert!(t.modified_since(&sk("any"), w));
        assert!(!t.modified_since(&sk("any"), t.stamp()));
    }

    #[test]
    fn retouching_one_key_does_not_grow_the_log_without_bound() {
        let mut t = TouchLog::new(3, 10);
        for _ in 0..100 {
            t.touch(&sk("hot"));
        }
        assert!(t.order.len() <= 6);
        assert_eq!(t.keys.len(), 1);
        let w = t.stamp();
        assert!(!t.modified_since(&sk("hot"), w));
    }

    #[test]
    fn a_range_event_covers_the_keys_of_its_range_only() {
        let mut t = TouchLog::new(10, 1);
        let h = keys::key_hash(b"k");
        let w = t.stamp();
        t.touch_ranges(RangeSet::single(HashRange { start: h, end: h }));
        assert!(t.modified_since(&sk("k"), w));
        let other = if h == 0 { sk_with(1) } else { sk_with(h - 1) };
        assert!(!t.modified_since(&other, w));
        // The event is evicted by the next one: every older watch aborts.
        t.touch_ranges(RangeSet::single(HashRange { start: 0, end: 0 }));
        assert!(t.modified_since(&other, w));
    }

    fn sk_with(hash: u64) -> Vec<u8> {
        keys::storage_key_with_hash(hash, b"other")
    }
}
