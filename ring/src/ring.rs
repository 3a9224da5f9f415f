//! A built ring: sorted tokens with owners and a radix index for fast lookup.

use crate::alloc::Allocator;
use crate::error::{Error, Result};
use crate::owner_map::OwnerMap;
use crate::range::{FULL_SPAN, HashRange};
use crate::spec::Member;

/// A built ring. Build it with [`crate::RingSpec::build`].
#[derive(Debug, Clone)]
pub struct Ring {
    /// All members (weight 0 included), sorted by name; owner indices point here.
    members: Vec<Member>,
    /// Sorted tokens; token `i` ends the range `(tokens[i-1], tokens[i]]` owned by `owners[i]`.
    tokens: Vec<u64>,
    owners: Vec<u32>,
    /// Hash space owned per member index.
    loads: Vec<u128>,
    /// Radix index over the top bits of a hash: either `DIRECT | owner` when every hash of the
    /// bucket has the same owner, or the index of the first token in (or after) the bucket.
    index: Vec<u32>,
    shift: u32,
}

/// Load balance summary, relative to each member's weighted fair share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    /// max over weighted members of load / fair share.
    pub peak_to_mean: f64,
    /// min over weighted members of load / fair share.
    pub min_to_mean: f64,
}

impl Ring {
    pub(crate) fn from_allocator(alloc: &Allocator) -> Result<Ring> {
        if alloc.by_name().is_empty() {
            return Err(Error::EmptyRing);
        }
        if alloc.tokens.is_empty() {
            return Err(Error::ZeroTotalWeight);
        }
        // The active members in name order (the allocator's name index is sorted already).
        let mut slot = vec![u32::MAX; alloc.members.len()];
        let mut members = Vec::with_capacity(alloc.by_name().len());
        let mut loads = Vec::with_capacity(alloc.by_name().len());
        for (i, &id) in alloc.by_name().values().enumerate() {
            let m = &alloc.members[id as usize];
            slot[id as usize] = i as u32;
            members.push(Member::new(m.name.clone(), m.weight));
            loads.push(m.load);
        }
        let pairs = alloc.tokens.sorted_pairs();
        let tokens: Vec<u64> = pairs.iter().map(|p| p.0).collect();
        let owners: Vec<u32> = pairs
            .iter()
            .map(|p| slot.get(p.1 as usize).copied().unwrap_or(0))
            .collect();
        let (index, shift) = radix_index(&tokens, &owners);
        Ok(Ring {
            members,
            tokens,
            owners,
            loads,
            index,
            shift,
        })
    }

    /// Index of the token owning `hash`: the first token >= hash, wrapping to 0.
    fn token_index(&self, hash: u64) -> usize {
        let i = self.tokens.partition_point(|&t| t < hash);
        if i == self.tokens.len() { 0 } else { i }
    }

    /// Index (into [`Ring::members`]) of the owner of `hash`.
    #[inline]
    pub fn owner_index(&self, hash: u64) -> u32 {
        let e = self.index[(hash >> self.shift) as usize];
        if e & DIRECT != 0 {
            return e & !DIRECT;
        }
        // The bucket holds at least one token; scan from its first one.
        let mut i = e as usize;
        while i < self.tokens.len() && self.tokens[i] < hash {
            i += 1;
        }
        if i == self.tokens.len() {
            self.owners[0]
        } else {
            self.owners[i]
        }
    }

    /// Name of the owner of `hash`.
    #[inline]
    pub fn owner(&self, hash: u64) -> &str {
        &self.members[self.owner_index(hash) as usize].name
    }

    /// Owner of a key (hashed with [`crate::key_hash`]).
    pub fn owner_of_key(&self, key: &[u8]) -> &str {
        self.owner(crate::hash::key_hash(key))
    }

    /// All members, sorted by name, including members of weight 0 (which own nothing).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The sorted tokens.
    pub fn tokens(&self) -> &[u64] {
        &self.tokens
    }

    /// Owner index of each token in [`Ring::tokens`].
    pub fn token_owners(&self) -> &[u32] {
        &self.owners
    }

    /// The first `r` distinct members clockwise from `hash` (fewer if the ring has fewer owners).
    pub fn preference_list(&self, hash: u64, r: usize) -> Vec<&str> {
        if r == 0 {
            return Vec::new();
        }
        let start = self.token_index(hash);
        let first = self.owners[start];
        if r == 1 {
            return vec![&self.members[first as usize].name];
        }
        let mut seen: Vec<u32> = vec![first];
        let n = self.tokens.len();
        for step in 1..n {
            if seen.len() == r {
                break;
            }
            let o = self.owners[(start + step) % n];
            if !seen.contains(&o) {
                seen.push(o);
            }
        }
        seen.iter()
            .map(|&o| self.members[o as usize].name.as_str())
            .collect()
    }

    /// Sorted tokens of `member` (empty if it owns nothing or is unknown).
    pub fn tokens_of(&self, member: &str) -> Vec<u64> {
        let Some(idx) = self.member_index(member) else {
            return Vec::new();
        };
        self.tokens
            .iter()
            .zip(&self.owners)
            .filter(|&(_, &o)| o == idx)
            .map(|(&t, _)| t)
            .collect()
    }

    /// Index of `member` in [`Ring::members`].
    pub fn member_index(&self, member: &str) -> Option<u32> {
        self.members
            .binary_search_by(|m| m.name.as_str().cmp(member))
            .ok()
            .map(|i| i as u32)
    }

    /// Hash space owned by each member (same order as [`Ring::members`]); sums to 2^64.
    pub fn loads(&self) -> &[u128] {
        &self.loads
    }

    /// Fraction of the hash space owned by each member (for reporting).
    pub fn load_shares(&self) -> Vec<(&str, f64)> {
        self.members
            .iter()
            .zip(&self.loads)
            .map(|(m, &l)| (m.name.as_str(), l as f64 / FULL_SPAN as f64))
            .collect()
    }

    /// Peak- and min-to-mean load over members of positive weight, relative to their weight.
    pub fn balance(&self) -> Balance {
        let total_w: u128 = self.members.iter().map(|m| u128::from(m.weight)).sum();
        let mut peak = 0f64;
        let mut min = f64::INFINITY;
        for (m, &l) in self.members.iter().zip(&self.loads) {
            if m.weight == 0 || total_w == 0 {
                continue;
            }
            let fair = FULL_SPAN as f64 * f64::from(m.weight) / total_w as f64;
            let ratio = l as f64 / fair;
            peak = peak.max(ratio);
            min = min.min(ratio);
        }
        Balance {
            peak_to_mean: peak,
            min_to_mean: if min.is_finite() { min } else { 0.0 },
        }
    }

    /// Largest number of tokens any member holds.
    pub fn max_tokens_per_member(&self) -> usize {
        let mut counts = vec![0usize; self.members.len()];
        for &o in &self.owners {
            counts[o as usize] += 1;
        }
        counts.into_iter().max().unwrap_or(0)
    }

    /// The ring as a partition of the hash space into maximal ranges.
    pub fn owner_map(&self) -> OwnerMap {
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        let n = self.tokens.len();
        let mut parts: Vec<(HashRange, u32)> = Vec::with_capacity(n + 1);
        let mut start = 0u64;
        for (&t, &o) in self.tokens.iter().zip(&self.owners) {
            parts.push((HashRange { start, end: t }, o));
            match t.checked_add(1) {
                Some(s) => start = s,
                None => return OwnerMap::from_sorted_parts(names, parts),
            }
        }
        parts.push((
            HashRange {
                start,
                end: u64::MAX,
            },
            self.owners[0],
        ));
        OwnerMap::from_sorted_parts(names, parts)
    }
}

/// Flag of a radix index entry that is an owner rather than a token index.
const DIRECT: u32 = 1 << 31;

/// Radix index over the top `bits` bits of the hash, about four buckets per token, so that most
/// lookups are one load from the index. Built one run of buckets per token group (most buckets
/// hold no token and are filled as a block) rather than bucket by bucket.
fn radix_index(tokens: &[u64], owners: &[u32]) -> (Vec<u32>, u32) {
    let bits = (usize::BITS - tokens.len().leading_zeros() + 2).clamp(1, 20);
    let shift = 64 - bits;
    let buckets = 1usize << bits;
    let n = tokens.len();
    let owner_at = |i: usize| if i >= n { owners[0] } else { owners[i] };
    // The entry of a bucket whose first token (or the first after it) is `lo`; `uniform` when
    // every hash of the bucket belongs to that token's owner.
    let entry = |uniform: bool, lo: usize| {
        let first = owner_at(lo);
        if uniform && first < DIRECT {
            DIRECT | first
        } else {
            lo as u32
        }
    };
    let mut index = vec![0u32; buckets];
    // The first bucket not filled yet, and the first token not placed yet.
    let (mut b, mut lo) = (0usize, 0usize);
    while lo < n {
        let tb = (tokens[lo] >> shift) as usize;
        // Buckets before token `lo`'s hold no token: all their hashes are its owner's.
        index[b..tb].fill(entry(true, lo));
        // Bucket `tb` holds tokens `lo..hi`; its hashes past the last of them belong to the
        // token after it (wrapping), unless that last token ends the bucket exactly.
        let end = tokens[lo] | ((1u64 << shift) - 1);
        let mut hi = lo + 1;
        while hi < n && tokens[hi] <= end {
            hi += 1;
        }
        let last = if tokens[hi - 1] == end { hi - 1 } else { hi };
        let first = owner_at(lo);
        let uniform = (lo + 1..=last).all(|j| owner_at(j) == first);
        index[tb] = entry(uniform, lo);
        b = tb + 1;
        lo = hi;
    }
    index[b..].fill(entry(true, n));
    (index, shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The index entry of every bucket by its definition: the bucket's hashes are owned by the
    /// first token at or after its start through the first token at or after its end.
    fn reference_index(tokens: &[u64], owners: &[u32], shift: u32) -> Vec<u32> {
        let n = tokens.len();
        let owner_at = |i: usize| if i >= n { owners[0] } else { owners[i] };
        let mask = (1u64 << shift) - 1;
        (0..=(u64::MAX >> shift))
            .map(|b| {
                let (start, end) = (b << shift, (b << shift) | mask);
                let lo = tokens.partition_point(|&t| t < start);
                let hi = tokens.partition_point(|&t| t < end);
                let first = owner_at(lo);
                if (lo..=hi).all(|i| owner_at(i) == first) && first < DIRECT {
                    DIRECT | first
                } else {
                    lo as u32
                }
            })
            .collect()
    }

    proptest! {
        /// Tokens anywhere, at bucket starts and at bucket ends, few or many owners: each
        /// bucket is direct exactly when one member owns all of it.
        #[test]
        fn radix_index_matches_its_definition(
            raw in proptest::collection::vec((any::<u64>(), 0u8..4, 0u32..3), 1..200),
        ) {
            let bits = (usize::BITS - raw.len().leading_zeros() + 2).clamp(1, 20);
            let mask = (1u64 << (64 - bits)) - 1;
            let mut parts: Vec<(u64, u32)> = raw
                .iter()
                .map(|&(t, edge, o)| match edge {
                    0 => (t & !mask, o),
                    1 => (t | mask, o),
                    _ => (t, o),
                })
                .collect();
            parts.sort_unstable();
            parts.dedup_by_key(|p| p.0);
            let (tokens, owners): (Vec<u64>, Vec<u32>) = parts.into_iter().unzip();
            let (index, shift) = radix_index(&tokens, &owners);
            prop_assert_eq!(index, reference_index(&tokens, &owners, shift));
        }
    }
}
