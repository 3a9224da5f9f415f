//! Manual approval: a plan is identified by a hash over its moves only (source, target and
//! ranges), not over estimates that change while the user reads them.

use ringshift_ring::Transfer;
use xxhash_rust::xxh3::Xxh3;

/// Hash of the moves of a plan, as 32 hex digits. Order-independent over transfers.
pub fn plan_hash(transfers: &[Transfer]) -> String {
    let mut items: Vec<String> = transfers
        .iter()
        .map(|t| {
            let ranges: Vec<String> = t
                .ranges
                .iter()
                .map(|r| format!("{}-{}", r.start, r.end))
                .collect();
            format!("{}>{}:{}", t.source, t.target, ranges.join(","))
        })
        .collect();
    items.sort_unstable();
    let mut h = Xxh3::new();
    for item in &items {
        h.update(item.as_bytes());
        h.update(b";");
    }
    format!("{:032x}", h.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_ring::{HashRange, RangeSet};

    fn t(s: &str, d: &str, a: u64, b: u64) -> Transfer {
        Transfer {
            source: s.into(),
            target: d.into(),
            ranges: RangeSet::new([HashRange::new(a, b).unwrap()]).unwrap(),
        }
    }

    #[test]
    fn same_moves_same_hash_in_any_order() {
        let a = [t("x", "y", 1, 5), t("y", "z", 10, 20)];
        let b = [t("y", "z", 10, 20), t("x", "y", 1, 5)];
        assert_eq!(plan_hash(&a), plan_hash(&b));
        assert_eq!(plan_hash(&a).len(), 32);
    }

    #[test]
    fn different_moves_different_hash() {
        let a = [t("x", "y", 1, 5)];
        assert_ne!(plan_hash(&a), plan_hash(&[t("x", "y", 1, 6)]));
        assert_ne!(plan_hash(&a), plan_hash(&[t("x", "z", 1, 5)]));
        assert_ne!(plan_hash(&a), plan_hash(&[]));
    }
}
