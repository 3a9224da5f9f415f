//! Split-brain detection from the nodes' own records: every node reports, per (owned range,
//! placement epoch), when it first and last accepted a write as owner. Ownership moves only by
//! fence -> commit -> install, so for two different members with overlapping ranges the window
//! of the older epoch must end no later than the window of the newer epoch begins, and two
//! members must never accept writes for overlapping ranges at the same epoch.

use std::collections::BTreeMap;

use ringshift_node_api::{AcceptedWindow, AcceptedWrites};

/// Everything seen of one member (all incarnations), merged across polls.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    /// (member, range start, range end, epoch) -> (first ms, last ms, count).
    windows: BTreeMap<(String, u64, u64, u64), (u64, u64, u64)>,
    /// Some node evicted windows (the check is then partial).
    pub truncated: bool,
}

/// Two members accepted writes for overlapping ranges in an order the epochs do not explain.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    pub older: (String, u64, u64, u64, u64, u64),
    pub newer: (String, u64, u64, u64, u64, u64),
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |w: &(String, u64, u64, u64, u64, u64)| {
            format!(
                "{} [{:#x},{:#x}] epoch {} accepted {}..{} ms",
                w.0, w.1, w.2, w.3, w.4, w.5
            )
        };
        write!(f, "{} overlaps {}", side(&self.older), side(&self.newer))
    }
}

impl Evidence {
    /// Merges one answer of a node (windows only grow between polls of one incarnation; a new
    /// incarnation starts afresh, so windows are merged rather than replaced).
    pub fn add(&mut self, answer: &AcceptedWrites) {
        self.truncated |= answer.truncated;
        for w in &answer.windows {
            self.add_window(&answer.member, w);
        }
    }

    fn add_window(&mut self, member: &str, w: &AcceptedWindow) {
        let key = (member.to_string(), w.range.start, w.range.end, w.epoch);
        let slot = self
            .windows
            .entry(key)
            .or_insert((w.first_ms, w.last_ms, 0));
        slot.0 = slot.0.min(w.first_ms);
        slot.1 = slot.1.max(w.last_ms);
        slot.2 = slot.2.max(w.count);
    }

    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Every pair of windows of different members that contradicts single ownership.
    pub fn overlaps(&self) -> Vec<Overlap> {
        let all: Vec<(String, u64, u64, u64, u64, u64)> = self
            .windows
            .iter()
            .map(|((m, s, e, ep), (f, l, _))| (m.clone(), *s, *e, *ep, *f, *l))
            .collect();
        let mut found = Vec::new();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.0 == b.0 || a.2 < b.1 || b.2 < a.1 {
                    continue; // same member, or disjoint ranges
                }
                let (older, newer) = if a.3 <= b.3 { (a, b) } else { (b, a) };
                // Same epoch: two owners. Older epoch still accepting after the newer began:
                // the fence did not hold. Equal milliseconds are allowed (fence, commit and
                // install can all happen within one).
                if older.3 == newer.3 || older.5 > newer.4 {
                    found.push(Overlap {
                        older: older.clone(),
                        newer: newer.clone(),
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_node_api::HashRange;

    fn answer(member: &str, windows: &[(u64, u64, u64, u64, u64)]) -> AcceptedWrites {
        AcceptedWrites {
            member: member.into(),
            incarnation: "i".into(),
            since_ms: 0,
            now_ms: 10_000,
            truncated: false,
            windows: windows
                .iter()
                .map(|&(start, end, epoch, first_ms, last_ms)| AcceptedWindow {
                    range: HashRange { start, end },
                    epoch,
                    first_ms,
                    last_ms,
                    count: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn a_clean_handover_is_explained_by_the_epochs() {
        let mut e = Evidence::default();
        e.add(&answer("a", &[(0, 100, 3, 10, 50)]));
        e.add(&answer("b", &[(50, 200, 4, 50, 90), (300, 400, 3, 0, 90)]));
        e.add(&answer("a", &[(0, 49, 4, 60, 95)]));
        assert!(e.overlaps().is_empty(), "{:?}", e.overlaps());
    }

    #[test]
    fn an_old_owner_accepting_after_the_new_one_started_is_split_brain() {
        let mut e = Evidence::default();
        e.add(&answer("a", &[(0, 100, 3, 10, 70)]));
        e.add(&answer("b", &[(100, 200, 4, 60, 90)]));
        let o = e.overlaps();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].older.0, "a");
        assert!(o[0].to_string().contains("epoch 4"), "{}", o[0]);
    }

    #[test]
    fn two_owners_at_one_epoch_is_split_brain_whatever_the_times() {
        let mut e = Evidence::default();
        e.add(&answer("a", &[(0, 100, 5, 10, 20)]));
        e.add(&answer("b", &[(90, 95, 5, 30, 40)]));
        assert_eq!(e.overlaps().len(), 1);
    }

    #[test]
    fn a_restarted_member_is_not_its_own_rival_and_polls_merge() {
        let mut e = Evidence::default();
        e.add(&answer("a", &[(0, 100, 5, 10, 20)]));
        e.add(&answer("a", &[(0, 100, 5, 10, 80)]));
        e.add(&answer("a", &[(0, 100, 6, 5, 9)]));
        assert!(e.overlaps().is_empty());
        assert_eq!(e.windows(), 2);
        e.add(&answer("b", &[(0, 10, 7, 70, 90)]));
        // a's epoch-5 window was seen to last until 80 ms, after b began at 70.
        assert_eq!(e.overlaps().len(), 1);
    }
}
