//! Owner maps: a partition of the whole hash space into maximal ranges, each with one owner.

use crate::error::{Error, Result};
use crate::range::{HashRange, RangeSet};

/// Ownership of every hash: maximal inclusive ranges covering `[0, 2^64-1]`, one owner each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMap {
    /// Names of the owners present, sorted and unique.
    names: Vec<String>,
    /// Range starts: `starts[0] == 0`, strictly increasing.
    starts: Vec<u64>,
    /// Owner (index into `names`) of each range; neighbours differ.
    owners: Vec<u32>,
}

impl OwnerMap {
    /// Everything owned by `owner`.
    pub fn single(owner: impl Into<String>) -> OwnerMap {
        OwnerMap {
            names: vec![owner.into()],
            starts: vec![0],
            owners: vec![0],
        }
    }

    /// Build from `(range, owner)` pairs that must partition the whole space (any order).
    pub fn from_ranges(parts: impl IntoIterator<Item = (HashRange, String)>) -> Result<OwnerMap> {
        let mut parts: Vec<(HashRange, String)> = parts.into_iter().collect();
        parts.sort_by_key(|(r, _)| r.start);
        let mut expect: Option<u64> = Some(0);
        for (r, name) in &parts {
            HashRange::new(r.start, r.end)?;
            if name.is_empty() {
                return Err(Error::InvalidMemberName {
                    member: name.clone(),
                });
            }
            if expect != Some(r.start) {
                return Err(Error::MalformedOwnerMap {
                    reason: format!("range {r} does not start where the previous one ended"),
                });
            }
            expect = r.end.checked_add(1);
        }
        if parts.is_empty() {
            return Err(Error::EmptyRing);
        }
        if expect.is_some() {
            return Err(Error::MalformedOwnerMap {
                reason: "ranges do not reach the end of the hash space".into(),
            });
        }
        let mut names: Vec<String> = parts.iter().map(|(_, n)| n.clone()).collect();
        names.sort_unstable();
        names.dedup();
        let indexed = parts
            .into_iter()
            .map(|(r, n)| {
                let i = names.binary_search(&n).unwrap_or(0) as u32;
                (r, i)
            })
            .collect();
        Ok(OwnerMap::from_sorted_parts(names, indexed))
    }

    /// From contiguous sorted parts covering the space, owners indexing `names` (sorted, unique).
    /// Merges neighbours with equal owners and drops names that own nothing.
    pub(crate) fn from_sorted_parts(names: Vec<String>, parts: Vec<(HashRange, u32)>) -> OwnerMap {
        let mut starts = Vec::with_capacity(parts.len());
        let mut owners: Vec<u32> = Vec::with_capacity(parts.len());
        for (r, o) in parts {
            if owners.last() != Some(&o) {
                starts.push(r.start);
                owners.push(o);
            }
        }
        let mut used = vec![false; names.len()];
        for &o in &owners {
            used[o as usize] = true;
        }
        let mut remap = vec![0u32; names.len()];
        let mut kept = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            if used[i] {
                remap[i] = kept.len() as u32;
                kept.push(name);
            }
        }
        for o in &mut owners {
            *o = remap[*o as usize];
        }
        OwnerMap {
            names: kept,
            starts,
            owners,
        }
    }

    /// Owner of `hash`.
    pub fn owner(&self, hash: u64) -> &str {
        let i = self
            .starts
            .partition_point(|&s| s <= hash)
            .saturating_sub(1);
        &self.names[self.owners[i] as usize]
    }

    /// Members owning something, sorted.
    pub fn members(&self) -> &[String] {
        &self.names
    }

    /// Number of maximal ranges.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Always false: an owner map covers the whole space.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    fn end_of(&self, i: usize) -> u64 {
        self.starts.get(i + 1).map_or(u64::MAX, |&s| s - 1)
    }

    /// Range starts and owner indices (parallel arrays).
    pub(crate) fn raw(&self) -> (&[u64], &[u32]) {
        (&self.starts, &self.owners)
    }

    /// The maximal ranges in order, with owner index (into [`OwnerMap::members`]).
    pub(crate) fn indexed(&self) -> impl Iterator<Item = (HashRange, u32)> + '_ {
        (0..self.starts.len()).map(|i| {
            (
                HashRange {
                    start: self.starts[i],
                    end: self.end_of(i),
                },
                self.owners[i],
            )
        })
    }

    /// The maximal ranges in order, with their owners.
    pub fn ranges(&self) -> impl Iterator<Item = (HashRange, &str)> + '_ {
        self.indexed()
            .map(|(r, o)| (r, self.names[o as usize].as_str()))
    }

    /// A digest of the whole ownership (XXH3-64 over every range and its owner, in order).
    /// Processes that replay the same placement must agree on it; a mismatch means their ring
    /// code differs (an algorithm change without a version bump) and the placement must not be
    /// installed.
    pub fn digest(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (r, owner) in self.ranges() {
            h.update(&r.start.to_be_bytes());
            h.update(&r.end.to_be_bytes());
            h.update(owner.as_bytes());
            h.update(&[0]);
        }
        h.digest()
    }

    /// Everything `member` owns.
    pub fn ranges_of(&self, member: &str) -> RangeSet {
        let mut set = RangeSet::empty();
        if let Ok(idx) = self.names.binary_search_by(|n| n.as_str().cmp(member)) {
            for (r, o) in self.indexed() {
                if o == idx as u32 {
                    set.push_sorted(r);
                }
            }
        }
        set
    }

    /// Hash space owned per member, in [`OwnerMap::members`] order (sums to 2^64).
    pub fn shares(&self) -> Vec<(&str, u128)> {
        let mut spans = vec![0u128; self.names.len()];
        for (r, o) in self.indexed() {
            spans[o as usize] += r.span();
        }
        self.names.iter().map(String::as_str).zip(spans).collect()
    }

    /// This map with every hash in `ranges` owned by `new_owner`.
    pub fn apply(&self, ranges: &RangeSet, new_owner: &str) -> OwnerMap {
        if ranges.is_empty() {
            return self.clone();
        }
        let mut names = self.names.clone();
        if let Err(pos) = names.binary_search_by(|n| n.as_str().cmp(new_owner)) {
            names.insert(pos, new_owner.to_owned());
        }
        let idx = names
            .binary_search_by(|n| n.as_str().cmp(new_owner))
            .unwrap_or(0) as u32;
        let remap: Vec<u32> = self
            .names
            .iter()
            .map(|n| names.binary_search(n).unwrap_or(0) as u32)
            .collect();
        let assignments: Vec<(HashRange, u32)> = ranges.iter().map(|&r| (r, idx)).collect();
        self.overwrite(names, &remap, &assignments)
    }

    /// This map with each `(range, owner)` applied; the ranges must not overlap.
    pub fn assign(&self, parts: &[(HashRange, String)]) -> Result<OwnerMap> {
        let mut sorted: Vec<&(HashRange, String)> = parts.iter().collect();
        sorted.sort_by_key(|(r, _)| r.start);
        let mut prev_end: Option<u64> = None;
        for (r, name) in &sorted {
            HashRange::new(r.start, r.end)?;
            if name.is_empty() {
                return Err(Error::InvalidMemberName {
                    member: name.clone(),
                });
            }
            if prev_end.is_some_and(|e| r.start <= e) {
                return Err(Error::MalformedRange {
                    start: r.start,
                    end: r.end,
                    reason: "overlaps another assigned range".into(),
                });
            }
            prev_end = Some(r.end);
        }
        let mut names = self.names.clone();
        names.extend(sorted.iter().map(|(_, n)| n.clone()));
        names.sort_unstable();
        names.dedup();
        let index_of = |n: &str| names.binary_search_by(|x| x.as_str().cmp(n)).unwrap_or(0) as u32;
        let remap: Vec<u32> = self.names.iter().map(|n| index_of(n)).collect();
        let assignments: Vec<(HashRange, u32)> =
            sorted.iter().map(|(r, n)| (*r, index_of(n))).collect();
        Ok(self.overwrite(names, &remap, &assignments))
    }

    /// Overlay sorted, disjoint `assignments` (owners indexing `names`); `remap` maps this map's
    /// owner indices into `names`.
    fn overwrite(
        &self,
        names: Vec<String>,
        remap: &[u32],
        assignments: &[(HashRange, u32)],
    ) -> OwnerMap {
        let mut parts: Vec<(HashRange, u32)> =
            Vec::with_capacity(self.starts.len() + 2 * assignments.len());
        let mut j = 0usize;
        'segments: for (seg, o) in self.indexed() {
            let owner = remap[o as usize];
            let mut pos = seg.start;
            loop {
                while j < assignments.len() && assignments[j].0.end < pos {
                    j += 1;
                }
                let (end, who) = match assignments.get(j) {
                    Some(&(a, new)) if a.start <= pos => (a.end.min(seg.end), new),
                    Some(&(a, _)) => ((a.start - 1).min(seg.end), owner),
                    None => (seg.end, owner),
                };
                parts.push((HashRange { start: pos, end }, who));
                if end == u64::MAX {
                    break 'segments;
                }
                if end == seg.end {
                    break;
                }
                pos = end + 1;
            }
        }
        OwnerMap::from_sorted_parts(names, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> HashRange {
        HashRange::new(start, end).unwrap()
    }

    #[test]
    fn digest_changes_with_any_owner_or_bound() {
        let map = OwnerMap::single("a");
        let set = RangeSet::new([r(10, 19)]).unwrap();
        let b = map.apply(&set, "b");
        assert_eq!(map.digest(), OwnerMap::single("a").digest());
        assert_ne!(map.digest(), b.digest());
        assert_ne!(
            b.digest(),
            map.apply(&RangeSet::new([r(10, 20)]).unwrap(), "b")
                .digest()
        );
        assert_ne!(b.digest(), map.apply(&set, "c").digest());
        // ranges equal after a round trip through another owner
        assert_eq!(b.apply(&set, "a").digest(), map.digest());
    }

    #[test]
    fn apply_and_assign_overwrite_exactly() {
        let map = OwnerMap::single("a");
        let set = RangeSet::new([r(10, 19), r(u64::MAX - 1, u64::MAX)]).unwrap();
        let m = map.apply(&set, "b");
        assert_eq!(m.owner(9), "a");
        assert_eq!(m.owner(10), "b");
        assert_eq!(m.owner(19), "b");
        assert_eq!(m.owner(20), "a");
        assert_eq!(m.owner(u64::MAX), "b");
        assert_eq!(m.ranges_of("b"), set);
        assert_eq!(m.members(), &["a".to_string(), "b".to_string()]);
        let back = m.apply(&set, "a");
        assert_eq!(back, map);
        let both = map
            .assign(&[(r(0, 4), "c".into()), (r(5, 9), "b".into())])
            .unwrap();
        assert_eq!(both.owner(0), "c");
        assert_eq!(both.owner(7), "b");
        assert_eq!(both.owner(10), "a");
        assert!(
            map.assign(&[(r(0, 4), "c".into()), (r(4, 9), "b".into())])
                .is_err()
        );
        let total: u128 = both.shares().iter().map(|(_, s)| s).sum();
        assert_eq!(total, crate::range::FULL_SPAN);
    }

    #[test]
    fn from_ranges_requires_a_partition() {
        let ok = OwnerMap::from_ranges([
            (r(0, 99), "a".to_string()),
            (r(100, u64::MAX), "a".to_string()),
        ])
        .unwrap();
        assert_eq!(ok, OwnerMap::single("a"));
        let gap = OwnerMap::from_ranges([
            (r(0, 99), "a".to_string()),
            (r(101, u64::MAX), "b".to_string()),
        ]);
        assert!(matches!(gap, Err(Error::MalformedOwnerMap { .. })));
        let short = OwnerMap::from_ranges([(r(0, 99), "a".to_string())]);
        assert!(matches!(short, Err(Error::MalformedOwnerMap { .. })));
        assert_eq!(OwnerMap::from_ranges([]), Err(Error::EmptyRing));
    }
}
