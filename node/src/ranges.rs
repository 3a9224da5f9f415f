//! Hash ranges as the node uses them: inclusive on both ends, like the ring's `HashRange`.

pub use ringshift_ring::HashRange;

/// True if `hash` lies in any of `ranges`.
pub fn contains(ranges: &[HashRange], hash: u64) -> bool {
    ranges.iter().any(|r| r.start <= hash && hash <= r.end)
}

/// True if the two inclusive ranges share at least one hash.
pub fn overlaps(a: &HashRange, b: &HashRange) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// True if any range of `a` overlaps any range of `b`.
pub fn any_overlap(a: &[HashRange], b: &[HashRange]) -> bool {
    a.iter().any(|x| b.iter().any(|y| overlaps(x, y)))
}

/// True if every hash of `r` lies in `set` (a normalized, sorted list).
pub fn covered_by(r: &HashRange, set: &[HashRange]) -> bool {
    let mut next = r.start;
    for s in set {
        if s.end < next {
            continue;
        }
        if s.start > next {
            return false;
        }
        if s.end >= r.end {
            return true;
        }
        next = s.end + 1;
    }
    false
}

/// Sorted, merged copy of `ranges`; `None` if one has `start > end`.
pub fn normalize(ranges: &[HashRange]) -> Option<Vec<HashRange>> {
    if ranges.iter().any(|r| r.start > r.end) {
        return None;
    }
    let mut v: Vec<HashRange> = ranges.to_vec();
    v.sort_by_key(|r| r.start);
    let mut out: Vec<HashRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if last.end == u64::MAX || r.start <= last.end + 1 => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    Some(out)
}

/// Parses `start-end,start-end` (decimal, inclusive), the query-string form of a range list.
pub fn parse_list(s: &str) -> Option<Vec<HashRange>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let (a, b) = part.split_once('-')?;
            let (start, end) = (a.parse().ok()?, b.parse().ok()?);
            (start <= end).then_some(HashRange { start, end })
        })
        .collect()
}

/// Formats a range list in the form `parse_list` reads.
pub fn format_list(ranges: &[HashRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_ranges() -> impl Strategy<Value = Vec<HashRange>> {
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..6).prop_map(|v| {
            v.into_iter()
                .map(|(a, b)| HashRange {
                    start: a.min(b),
                    end: a.max(b),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn normalize_keeps_membership(rs in arb_ranges(), h in any::<u64>()) {
            let n = normalize(&rs).unwrap();
            prop_assert_eq!(contains(&n, h), contains(&rs, h));
            for w in n.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
        }

        #[test]
        fn list_round_trips(rs in arb_ranges()) {
            prop_assert_eq!(parse_list(&format_list(&rs)).unwrap(), rs);
        }
    }

    #[test]
    fn coverage() {
        let set = [
            HashRange { start: 0, end: 9 },
            HashRange { start: 10, end: 20 },
        ];
        assert!(covered_by(&HashRange { start: 5, end: 15 }, &set));
        assert!(!covered_by(&HashRange { start: 5, end: 25 }, &set));
        assert!(!covered_by(&HashRange { start: 21, end: 25 }, &set));
    }

    #[test]
    fn rejects_inverted_ranges() {
        assert!(parse_list("5-3").is_none());
        assert!(normalize(&[HashRange { start: 5, end: 3 }]).is_none());
    }
}
