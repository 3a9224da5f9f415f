//! Stored-key counts per hash bucket (the top 16 bits of the hash), so that DBSIZE over the
//! ranges a node owns is a sum of counters plus short scans of the buckets cut by a range's
//! ends, not a scan of every key. Counters live in memory: the writer keeps them with every
//! committed write, expiry, clear and pull; opening a data directory rebuilds them with one pass
//! over the keys. They count stored entries, including expired ones not yet collected (as
//! Redis' DBSIZE does).

use std::sync::atomic::{AtomicI64, Ordering};

use ringshift_ring::HashRange;

const BITS: u32 = 16;
const BUCKETS: usize = 1 << BITS;

pub struct KeyCounts {
    buckets: Vec<AtomicI64>,
}

/// Bucket of a hash.
pub fn bucket(hash: u64) -> u32 {
    (hash >> (64 - BITS)) as u32
}

/// The hash range a bucket covers.
fn bucket_range(b: u32) -> HashRange {
    let start = u64::from(b) << (64 - BITS);
    HashRange {
        start,
        end: start | (u64::MAX >> BITS),
    }
}

impl KeyCounts {
    pub fn new() -> KeyCounts {
        KeyCounts {
            buckets: (0..BUCKETS).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn add(&self, bucket: u32, delta: i64) {
        if let Some(c) = self.buckets.get(bucket as usize) {
            c.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Keys in `ranges`: whole buckets from the counters, the parts of buckets cut by a range's
    /// ends through `scan` (which counts stored keys of a sub-range).
    pub fn count<E>(
        &self,
        ranges: &[HashRange],
        mut scan: impl FnMut(HashRange) -> Result<u64, E>,
    ) -> Result<u64, E> {
        let mut total: i64 = 0;
        for r in ranges {
            let (first, last) = (bucket(r.start), bucket(r.end));
            for b in first..=last {
                let br = bucket_range(b);
                let part = HashRange {
                    start: br.start.max(r.start),
                    end: br.end.min(r.end),
                };
                if part == br {
                    total += self.buckets[b as usize].load(Ordering::Relaxed);
                } else {
                    total += scan(part)? as i64;
                }
            }
        }
        Ok(total.max(0) as u64)
    }
}

impl Default for KeyCounts {
    fn default() -> Self {
        KeyCounts::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters filled from a list of hashes; partial buckets scanned from the same list.
    fn check(hashes: &[u64], ranges: &[HashRange]) {
        let c = KeyCounts::new();
        for h in hashes {
            c.add(bucket(*h), 1);
        }
        let mut scanned = 0u64;
        let got = c
            .count::<()>(ranges, |part| {
                let n = hashes
                    .iter()
                    .filter(|h| part.start <= **h && **h <= part.end)
                    .count() as u64;
                scanned += n;
                Ok(n)
            })
            .unwrap();
        let want = hashes
            .iter()
            .filter(|h| ranges.iter().any(|r| r.start <= **h && **h <= r.end))
            .count() as u64;
        assert_eq!(got, want, "{ranges:?}");
        // Only the buckets at the ranges' ends are scanned.
        assert!(scanned <= want);
    }

    #[test]
    fn whole_and_cut_buckets() {
        let step = 1u64 << 48;
        let hashes: Vec<u64> = (0..2000u64)
            .map(|i| i.wrapping_mul(step / 7 + 13))
            .collect();
        check(&hashes, &[HashRange::FULL]);
        check(&hashes, &[HashRange { start: 5, end: 5 }]);
        check(
            &hashes,
            &[
                HashRange {
                    start: step + 17,
                    end: 9 * step - 3,
                },
                HashRange {
                    start: 40 * step,
                    end: u64::MAX,
                },
            ],
        );
    }

    proptest::proptest! {
        #[test]
        fn counts_match_a_scan(
            hashes in proptest::collection::vec(proptest::num::u64::ANY, 0..300),
            a in proptest::num::u64::ANY,
            b in proptest::num::u64::ANY,
        ) {
            let r = HashRange { start: a.min(b), end: a.max(b) };
            check(&hashes, &[r]);
        }
    }
}
