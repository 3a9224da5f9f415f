//! A Bloom filter of every key stored since the data directory was opened (filled from the
//! keys on open, from writes and from bulk ingestion). DBSIZE's counters need to know whether a
//! blind write (SET without options) creates a key; "never stored" from this filter answers
//! that for new keys without a point read in fjall (a memtable search that cost as much as the
//! write itself). A "maybe" falls back to the read, so a saturated filter only costs speed.
//!
//! Blocked layout: each key's bits live in one 64-byte block (one cache miss per probe).

use std::sync::atomic::{AtomicU64, Ordering};

const WORDS_PER_BLOCK: usize = 8;
const PROBES: u32 = 6;

pub struct KeyFilter {
    words: Vec<AtomicU64>,
    block_mask: u64,
}

fn mix(h: u64) -> u64 {
    // splitmix64 finaliser: independent bits from one 64-bit hash.
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl KeyFilter {
    /// A filter for about `keys` keys at ~1% false positives (16 bits a key), at least 8 MiB.
    pub fn with_capacity(keys: u64) -> KeyFilter {
        let bits = keys.saturating_mul(16).max(8 << 23);
        let blocks = (bits / 512).next_power_of_two();
        KeyFilter {
            words: (0..blocks as usize * WORDS_PER_BLOCK)
                .map(|_| AtomicU64::new(0))
                .collect(),
            block_mask: blocks - 1,
        }
    }

    /// (first word of the block, bit positions) of a storage key.
    fn positions(&self, skey: &[u8]) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let h = xxhash_rust::xxh3::xxh3_64(skey);
        let block = (h & self.block_mask) as usize * WORDS_PER_BLOCK;
        let mut bits = mix(h);
        let probes = (0..PROBES).map(move |_| {
            let bit = bits & 511;
            bits = bits.rotate_right(9);
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, probes)
    }

    /// Bytes of the bit array.
    pub fn bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<AtomicU64>()
    }

    pub fn insert(&self, skey: &[u8]) {
        let (block, probes) = self.positions(skey);
        // One read-modify-write per word that gains bits, none for bits already set.
        let mut masks = [0u64; WORDS_PER_BLOCK];
        for (w, mask) in probes {
            masks[w] |= mask;
        }
        for (w, mask) in masks.into_iter().enumerate() {
            let word = &self.words[block + w];
            if mask != 0 && word.load(Ordering::Relaxed) & mask != mask {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    /// False: the key was never stored since the filter was built.
    pub fn may_contain(&self, skey: &[u8]) -> bool {
        let (block, mut probes) = self.positions(skey);
        probes.all(|(w, mask)| self.words[block + w].load(Ordering::Relaxed) & mask != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_others_mostly_not() {
        let f = KeyFilter::with_capacity(10_000);
        for i in 0..10_000 {
            f.insert(format!("key:{i}").as_bytes());
        }
        for i in 0..10_000 {
            assert!(f.may_contain(format!("key:{i}").as_bytes()));
        }
        let false_positives = (0..10_000)
            .filter(|i| f.may_contain(format!("other:{i}").as_bytes()))
            .count();
        assert!(false_positives < 100, "{false_positives}");
    }

    proptest::proptest! {
        #[test]
        fn no_false_negatives(keys in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..200)) {
            let f = KeyFilter::with_capacity(0);
            for k in &keys {
                f.insert(k);
            }
            for k in &keys {
                proptest::prop_assert!(f.may_contain(k));
            }
        }
    }
}
