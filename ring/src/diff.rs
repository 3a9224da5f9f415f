//! Ring diff: the transfers that turn one owner map into another.

use crate::owner_map::OwnerMap;
use crate::range::{HashRange, RangeSet};
use serde::{Deserialize, Serialize};

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
    // Common sorted name space (both member lists are sorted: merge them), so that
    // (source, target) index order is name order.
    let (om, nm) = (old.members(), new.members());
    let mut names: Vec<&str> = Vec::with_capacity(om.len() + nm.len());
    let mut old_ids: Vec<u32> = Vec::with_capacity(om.len());
    let mut new_ids: Vec<u32> = Vec::with_capacity(nm.len());
    let (mut i, mut j) = (0usize, 0usize);
    while i < om.len() || j < nm.len() {
        let id = names.len() as u32;
        match (om.get(i), nm.get(j)) {
            (Some(a), Some(b)) if a == b => {
                names.push(a);
                old_ids.push(id);
                new_ids.push(id);
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                names.push(a);
                old_ids.push(id);
                i += 1;
            }
            (Some(a), None) => {
                names.push(a);
                old_ids.push(id);
                i += 1;
            }
            (_, Some(b)) => {
                names.push(b);
                new_ids.push(id);
                j += 1;
            }
            (None, None) => break,
        }
    }

    // Walk both partitions; collect changed segments as (pair key, range).
    let (sa, oa) = old.raw();
    let (sb, ob) = new.raw();
    let mut moved: Vec<(u64, HashRange)> = Vec::new();
    let (mut i, mut j) = (0usize, 0usize);
    let mut pos = 0u64;
    loop {
        let end_a = sa.get(i + 1).map_or(u64::MAX, |&s| s - 1);
        let end_b = sb.get(j + 1).map_or(u64::MAX, |&s| s - 1);
        let end = end_a.min(end_b);
        let (src, dst) = (old_ids[oa[i] as usize], new_ids[ob[j] as usize]);
        if src != dst {
            let key = (u64::from(src) << 32) | u64::from(dst);
            moved.push((key, HashRange { start: pos, end }));
        }
        if end == u64::MAX {
            break;
        }
        if end_a == end {
            i += 1;
        }
        if end_b == end {
            j += 1;
        }
        pos = end + 1;
    }
    // By pair, then hash order within a pair ((pair, start) is unique).
    moved.sort_unstable_by_key(|m| (m.0, m.1.start));
    let mut out: Vec<Transfer> = Vec::new();
    let mut last_key = None;
    for (key, range) in moved {
        if last_key != Some(key) {
            last_key = Some(key);
            out.push(Transfer {
                source: names[(key >> 32) as usize].to_owned(),
                target: names[(key & 0xffff_ffff) as usize].to_owned(),
                ranges: RangeSet::empty(),
            });
        }
        if let Some(t) = out.last_mut() {
            t.ranges.push_sorted(range);
        }
    }
    out
}
