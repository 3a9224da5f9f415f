//! Which collection elements may be stored: a Bloom filter (`presence::KeyFilter`) of every
//! sub-key put since the data directory was opened (filled from the `sub` keyspace on open, from
//! element writes and from bulk ingestion), and of each one's version prefix.
//!
//! HSET, SADD and ZADD read every element they touch to tell a new one from an update, and
//! `writer::subkeys::new_version` scans for elements of a fresh version; in a profile of HSET
//! -P16 on one key, the memtable search of that read was a quarter of the node's CPU (every
//! element of the key shares a long prefix, so each comparison runs long). "Never stored" from
//! this filter answers it for new elements and fresh versions without touching fjall; a "maybe"
//! falls back to the read, so a saturated filter only costs speed. A version prefix can never
//! equal a sub-key (the sub-key is longer by its family byte and field at the same key length).

use super::collection;
use super::presence::KeyFilter;

pub struct SubFilter(KeyFilter);

impl SubFilter {
    /// A filter for the `elements` stored now: room for twice as many entries, a version
    /// prefix for each (the worst case, one-element collections) or, for collections of many
    /// elements, about as many elements again written after open.
    pub fn with_capacity(elements: u64) -> SubFilter {
        SubFilter(KeyFilter::with_capacity(elements.saturating_mul(2)))
    }

    /// Records that the element `skey` may be stored from now on.
    pub fn note(&self, skey: &[u8]) {
        self.0.insert(skey);
        if let Some(s) = collection::split_sub_key(skey)
            && let Some(prefix) = skey.get(..s.version_prefix_len())
        {
            self.0.insert(prefix);
        }
    }

    /// Bytes of the filter's bit array.
    pub fn bytes(&self) -> usize {
        self.0.bytes()
    }

    /// False: no element `skey` was stored since the filter was built.
    pub fn may_hold(&self, skey: &[u8]) -> bool {
        self.0.may_contain(skey)
    }

    /// False: no element of this `collection::version_prefix` was stored since the filter
    /// was built.
    pub fn version_may_be_used(&self, version_prefix: &[u8]) -> bool {
        self.0.may_contain(version_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever was noted is always reported, both as an element and as a used version.
        #[test]
        fn noted_elements_and_their_versions_are_never_missed(
            elements in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..12),
                 any::<u64>(),
                 proptest::collection::vec(any::<u8>(), 0..12)),
                0..100),
        ) {
            let f = SubFilter::with_capacity(0);
            for (key, version, field) in &elements {
                f.note(&collection::sub_key(key, *version, field));
            }
            for (key, version, field) in &elements {
                prop_assert!(f.may_hold(&collection::sub_key(key, *version, field)));
                prop_assert!(f.version_may_be_used(&collection::version_prefix(key, *version)));
            }
        }
    }

    #[test]
    fn a_filter_takes_32_bits_per_stored_element_rounded_to_a_power_of_two() {
        // 16 bits for each element and for a version prefix each: 10M elements -> 320 Mbit,
        // rounded up to 512 Mbit = 64 MiB (the caller passing twice the count made it 128).
        assert_eq!(SubFilter::with_capacity(10_000_000).bytes(), 64 << 20);
        // Small data directories get the key filter's floor of 8 MiB.
        assert_eq!(SubFilter::with_capacity(1_000).bytes(), 8 << 20);
    }

    #[test]
    fn elements_and_versions_never_noted_are_mostly_absent() {
        let f = SubFilter::with_capacity(10_000);
        for i in 0..10_000u64 {
            f.note(&collection::sub_key(
                b"myhash",
                7,
                format!("field:{i}").as_bytes(),
            ));
        }
        let new_fields = (0..10_000u64)
            .filter(|i| {
                f.may_hold(&collection::sub_key(
                    b"myhash",
                    7,
                    format!("new:{i}").as_bytes(),
                ))
            })
            .count();
        assert!(new_fields < 100, "{new_fields}");
        assert!(f.version_may_be_used(&collection::version_prefix(b"myhash", 7)));
        let fresh = (8..1_008u64)
            .filter(|v| f.version_may_be_used(&collection::version_prefix(b"myhash", *v)))
            .count();
        assert!(fresh < 10, "{fresh}");
    }
}
