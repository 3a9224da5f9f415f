//! Inclusive hash ranges and normalized sets of them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Size of the whole hash space, 2^64.
pub const FULL_SPAN: u128 = 1 << 64;

/// An inclusive range `[start, end]` of hashes; `start <= end`, never wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRange", into = "RawRange")]
pub struct HashRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Serialize, Deserialize)]
struct RawRange {
    #[serde(with = "crate::serde_u64")]
    start: u64,
    #[serde(with = "crate::serde_u64")]
    end: u64,
}

impl TryFrom<RawRange> for HashRange {
    type Error = Error;
    fn try_from(raw: RawRange) -> Result<Self> {
        HashRange::new(raw.start, raw.end)
    }
}

impl From<HashRange> for RawRange {
    fn from(r: HashRange) -> Self {
        RawRange {
            start: r.start,
            end: r.end,
        }
    }
}

impl HashRange {
    /// The whole hash space.
    pub const FULL: HashRange = HashRange {
        start: 0,
        end: u64::MAX,
    };

    /// A validated range (`start <= end`).
    pub fn new(start: u64, end: u64) -> Result<Self> {
        if start > end {
            return Err(Error::MalformedRange {
                start,
                end,
                reason: "start is after end (a wrapping range must be given as two ranges)".into(),
            });
        }
        Ok(HashRange { start, end })
    }

    /// Whether `hash` lies in the range.
    pub fn contains(&self, hash: u64) -> bool {
        self.start <= hash && hash <= self.end
    }

    /// Whether the two ranges share at least one hash.
    pub fn overlaps(&self, other: &HashRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Number of hashes in the range (0 for an invalid range with start > end).
    pub fn span(&self) -> u128 {
        if self.start > self.end {
            0
        } else {
            u128::from(self.end - self.start) + 1
        }
    }
}

impl std::fmt::Display for HashRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// A set of hashes as sorted, non-overlapping, non-adjacent (maximally merged) inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<HashRange>", into = "Vec<HashRange>")]
pub struct RangeSet {
    ranges: Vec<HashRange>,
}

impl TryFrom<Vec<HashRange>> for RangeSet {
    type Error = Error;
    fn try_from(ranges: Vec<HashRange>) -> Result<Self> {
        RangeSet::new(ranges)
    }
}

impl From<RangeSet> for Vec<HashRange> {
    fn from(set: RangeSet) -> Self {
        set.ranges
    }
}

impl RangeSet {
    /// The set covering the given ranges (in any order, overlapping allowed); every range must
    /// have `start <= end`.
    pub fn new(ranges: impl IntoIterator<Item = HashRange>) -> Result<Self> {
        let mut v: Vec<HashRange> = ranges.into_iter().collect();
        for r in &v {
            HashRange::new(r.start, r.end)?;
        }
        v.sort_unstable();
        let mut set = RangeSet::empty();
        for r in v {
            set.push_sorted(r);
        }
        Ok(set)
    }

    /// The empty set.
    pub const fn empty() -> Self {
        RangeSet { ranges: Vec::new() }
    }

    /// The whole hash space.
    pub fn full() -> Self {
        RangeSet::single(HashRange::FULL)
    }

    /// A set of one range (which must be valid; an invalid range gives the empty set).
    pub fn single(range: HashRange) -> Self {
        let mut set = RangeSet::empty();
        if range.start <= range.end {
            set.ranges.push(range);
        }
        set
    }

    /// Append a valid range that starts at or after the start of every range already in the set,
    /// merging it with the last range when they overlap or touch.
    pub(crate) fn push_sorted(&mut self, r: HashRange) {
        if let Some(last) = self.ranges.last_mut()
            && (r.start <= last.end || r.start - 1 == last.end)
        {
            last.end = last.end.max(r.end);
            return;
        }
        self.ranges.push(r);
    }

    /// Whether `hash` is in the set.
    pub fn contains(&self, hash: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.end < hash);
        self.ranges.get(i).is_some_and(|r| r.start <= hash)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of (maximal) ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Number of hashes in the set (up to 2^64).
    pub fn span(&self) -> u128 {
        self.ranges.iter().map(HashRange::span).sum()
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[HashRange] {
        &self.ranges
    }

    /// Iterate the ranges in order.
    pub fn iter(&self) -> std::slice::Iter<'_, HashRange> {
        self.ranges.iter()
    }

    /// Whether every hash of `range` is in the set (false for an invalid range).
    pub fn covers(&self, range: &HashRange) -> bool {
        // Maximal ranges: a covered range lies inside the one range holding its start.
        let i = self.ranges.partition_point(|r| r.end < range.start);
        range.start <= range.end
            && self
                .ranges
                .get(i)
                .is_some_and(|r| r.start <= range.start && range.end <= r.end)
    }

    /// Whether the two sets share at least one hash (a merge walk, nothing allocated).
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.ranges.get(i), other.ranges.get(j)) {
            if a.overlaps(b) {
                return true;
            }
            if a.end < b.end {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }

    /// Hashes in either set.
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let mut out = RangeSet::empty();
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() || j < other.ranges.len() {
            let take_self = match (self.ranges.get(i), other.ranges.get(j)) {
                (Some(a), Some(b)) => a.start <= b.start,
                (Some(_), None) => true,
                _ => false,
            };
            if take_self {
                out.push_sorted(self.ranges[i]);
                i += 1;
            } else {
                out.push_sorted(other.ranges[j]);
                j += 1;
            }
        }
        out
    }

    /// Hashes in both sets.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let mut out = RangeSet::empty();
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.ranges.get(i), other.ranges.get(j)) {
            let start = a.start.max(b.start);
            let end = a.end.min(b.end);
            if start <= end {
                out.push_sorted(HashRange { start, end });
            }
            if a.end < b.end {
                i += 1;
            } else {
                j += 1;
            }
        }
        out
    }

    /// Hashes not in the set.
    pub fn complement(&self) -> RangeSet {
        let mut out = RangeSet::empty();
        let mut next: Option<u64> = Some(0);
        for r in &self.ranges {
            if let Some(n) = next
                && r.start > n
            {
                out.ranges.push(HashRange {
                    start: n,
                    end: r.start - 1,
                });
            }
            next = r.end.checked_add(1);
        }
        if let Some(n) = next {
            out.ranges.push(HashRange {
                start: n,
                end: u64::MAX,
            });
        }
        out
    }

    /// Hashes in `self` but not in `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        self.intersection(&other.complement())
    }
}

/// The set covering the ranges (any order, overlapping allowed). Like [`RangeSet::single`], an
/// invalid range (start > end) contributes nothing; [`RangeSet::new`] refuses it instead.
impl FromIterator<HashRange> for RangeSet {
    fn from_iter<I: IntoIterator<Item = HashRange>>(ranges: I) -> Self {
        let mut v: Vec<HashRange> = ranges.into_iter().filter(|r| r.start <= r.end).collect();
        v.sort_unstable();
        let mut set = RangeSet::empty();
        for r in v {
            set.push_sorted(r);
        }
        set
    }
}

impl<'a> IntoIterator for &'a RangeSet {
    type Item = &'a HashRange;
    type IntoIter = std::slice::Iter<'a, HashRange>;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.iter()
    }
}

impl std::fmt::Display for RangeSet {
    /// Compact form `start-end,start-end` (decimal, inclusive), `""` for the empty set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}", r.start, r.end)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for RangeSet {
    type Err = Error;

    /// Parse the compact form written by `Display`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |part: &str| Error::MalformedRange {
            start: 0,
            end: 0,
            reason: format!("cannot parse {part:?} as start-end"),
        };
        let mut ranges = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').ok_or_else(|| bad(part))?;
            let start = a.trim().parse::<u64>().map_err(|_| bad(part))?;
            let end = b.trim().parse::<u64>().map_err(|_| bad(part))?;
            ranges.push(HashRange::new(start, end)?);
        }
        RangeSet::new(ranges)
    }
}

/// Serde helper writing a [`RangeSet`] as its compact string `start-end,start-end` (about
/// two thirds of the size of the default list of objects). Use with
/// `#[serde(with = "ringshift_ring::range_set_compact")]`.
pub mod compact {
    use super::RangeSet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &RangeSet, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<RangeSet, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> HashRange {
        HashRange::new(start, end).unwrap()
    }

    #[test]
    fn new_sorts_merges_and_validates() {
        let s = RangeSet::new([r(10, 20), r(0, 5), r(6, 8), r(15, 30), r(40, 40)]).unwrap();
        assert_eq!(s.ranges(), &[r(0, 8), r(10, 30), r(40, 40)]);
        assert_eq!(s.span(), 9 + 21 + 1);
        assert!(s.contains(0) && s.contains(8) && s.contains(40));
        assert!(!s.contains(9) && !s.contains(31) && !s.contains(41));
        let bad = RangeSet::new([HashRange { start: 5, end: 4 }]);
        assert!(matches!(
            bad,
            Err(Error::MalformedRange {
                start: 5,
                end: 4,
                ..
            })
        ));
    }

    #[test]
    fn set_algebra_at_the_edges_of_the_space() {
        let a = RangeSet::new([r(0, 10), r(u64::MAX - 5, u64::MAX)]).unwrap();
        let b = RangeSet::new([r(5, u64::MAX - 3)]).unwrap();
        assert_eq!(a.union(&b), RangeSet::full());
        assert_eq!(
            a.intersection(&b).ranges(),
            &[r(5, 10), r(u64::MAX - 5, u64::MAX - 3)]
        );
        assert_eq!(
            a.difference(&b).ranges(),
            &[r(0, 4), r(u64::MAX - 2, u64::MAX)]
        );
        assert_eq!(RangeSet::full().complement(), RangeSet::empty());
        assert_eq!(RangeSet::empty().complement(), RangeSet::full());
        assert_eq!(RangeSet::full().span(), FULL_SPAN);
    }

    #[test]
    fn coverage_and_overlap_at_the_edges() {
        let s = RangeSet::new([r(0, 9), r(10, 20), r(30, u64::MAX)]).unwrap();
        // Adjacent ranges merge, so a range across their seam is covered.
        assert!(s.covers(&r(5, 15)));
        assert!(!s.covers(&r(5, 25)));
        assert!(!s.covers(&r(21, 29)));
        assert!(s.covers(&r(u64::MAX, u64::MAX)));
        assert!(!s.covers(&HashRange { start: 7, end: 3 }));
        assert!(!RangeSet::empty().covers(&r(0, 0)));

        let gap = RangeSet::new([r(21, 29)]).unwrap();
        assert!(!s.overlaps(&gap));
        assert!(s.overlaps(&RangeSet::new([r(21, 30)]).unwrap()));
        assert!(s.overlaps(&RangeSet::new([r(25, 26), r(20, 20)]).unwrap()));
        assert!(!s.overlaps(&RangeSet::empty()));
        assert!(RangeSet::full().overlaps(&RangeSet::single(r(u64::MAX, u64::MAX))));
        assert!(r(0, 5).overlaps(&r(5, 9)) && !r(0, 5).overlaps(&r(6, 9)));
    }

    /// Up to five ranges in a small space, so that they often touch and overlap.
    fn small_ranges() -> impl proptest::strategy::Strategy<Value = Vec<HashRange>> {
        use proptest::prelude::*;
        proptest::collection::vec((0u64..48, 0u64..12), 0..5)
            .prop_map(|v| v.into_iter().map(|(s, l)| r(s, s + l)).collect())
    }

    proptest::proptest! {
        #[test]
        fn covers_and_overlaps_agree_with_membership(
            a in small_ranges(),
            b in small_ranges(),
            probe in (0u64..60, 0u64..8),
        ) {
            let (sa, sb): (RangeSet, RangeSet) = (a.iter().copied().collect(), b.iter().copied().collect());
            let hashes = 0u64..64;
            for h in hashes.clone() {
                proptest::prop_assert_eq!(sa.contains(h), a.iter().any(|x| x.contains(h)));
            }
            let shared = hashes.clone().any(|h| sa.contains(h) && sb.contains(h));
            proptest::prop_assert_eq!(sa.overlaps(&sb), shared);
            let p = r(probe.0, probe.0 + probe.1);
            proptest::prop_assert_eq!(sa.covers(&p), (p.start..=p.end).all(|h| sa.contains(h)));
        }
    }

    #[test]
    fn collecting_merges_and_skips_invalid_ranges() {
        let s: RangeSet = [
            r(10, 20),
            HashRange { start: 9, end: 1 },
            r(0, 9),
            r(40, 41),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.ranges(), &[r(0, 20), r(40, 41)]);
    }

    #[test]
    fn json_uses_decimal_strings_and_validates() {
        let s = RangeSet::new([r(1, u64::MAX)]).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"[{"start":"1","end":"18446744073709551615"}]"#);
        assert_eq!(serde_json::from_str::<RangeSet>(&json).unwrap(), s);
        assert!(serde_json::from_str::<RangeSet>(r#"[{"start":"9","end":"1"}]"#).is_err());
        let text = RangeSet::new([r(0, 9), r(20, u64::MAX)]).unwrap();
        assert_eq!(text.to_string(), "0-9,20-18446744073709551615");
        assert_eq!(text.to_string().parse::<RangeSet>().unwrap(), text);
        assert_eq!("".parse::<RangeSet>().unwrap(), RangeSet::empty());
        assert!("5-1".parse::<RangeSet>().is_err());
        assert!("x-1".parse::<RangeSet>().is_err());
        let merged: RangeSet =
            serde_json::from_str(r#"[{"start":"5","end":"9"},{"start":"0","end":"4"}]"#).unwrap();
        assert_eq!(merged.ranges(), &[r(0, 9)]);
    }
}
