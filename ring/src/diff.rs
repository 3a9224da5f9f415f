//! Ring diff: the transfers that turn one owner map into another.

use crate::owner_map::OwnerMap;
use crate::range::{HashRange, RangeSet};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Hash ranges that move from `source` to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub source: String,
    pub target: String,
    pub ranges: RangeSet,
}

/// The transfers from `old` to `new`: one per (source, target) pair, sorted by source then
/// target, ranges merged. A hash changes owner exactly when it lies in a transfer from its old
/// owner to its new owner; nothing else moves.
pub fn diff(old: &OwnerMap, new: &OwnerMap) -> Vec<Transfer> {
    // Common sorted name space so that (source, target) index order is name order.
    let mut names: Vec<&str> = old
        .members()
        .iter()
        .chain(new.members())
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    let global = |n: &String| names.binary_search(&n.as_str()).unwrap_or(0) as u32;
    let old_ids: Vec<u32> = old.members().iter().map(global).collect();
    let new_ids: Vec<u32> = new.members().iter().map(global).collect();

    let mut slot: HashMap<(u32, u32), usize> = HashMap::new();
    let mut groups: Vec<((u32, u32), RangeSet)> = Vec::new();
    let mut a = old.indexed().peekable();
    let mut b = new.indexed().peekable();
    let mut pos = 0u64;
    while let (Some(&(ra, oa)), Some(&(rb, ob))) = (a.peek(), b.peek()) {
        let end = ra.end.min(rb.end);
        let (src, dst) = (old_ids[oa as usize], new_ids[ob as usize]);
        if src != dst {
            let i = *slot.entry((src, dst)).or_insert_with(|| {
                groups.push(((src, dst), RangeSet::empty()));
                groups.len() - 1
            });
            groups[i].1.push_sorted(HashRange { start: pos, end });
        }
        if end == u64::MAX {
            break;
        }
        if ra.end == end {
            a.next();
        }
        if rb.end == end {
            b.next();
        }
        pos = end + 1;
    }
    groups.sort_unstable_by_key(|(k, _)| *k);
    groups
        .into_iter()
        .map(|((s, t), ranges)| Transfer {
            source: names[s as usize].to_owned(),
            target: names[t as usize].to_owned(),
            ranges,
        })
        .collect()
}
