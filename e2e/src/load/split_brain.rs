//! Split-brain detection from the nodes' own records: every node reports, per (owned range,
//! placement epoch), when it first and last accepted a write as owner. Ownership moves only by
//! fence -> commit -> install, so for two different members with overlapping ranges the window
//! of the older epoch must end no later than the window of the newer epoch begins, and two
//! members must never accept writes for overlapping ranges at the same epoch.

use std::collections::BTreeMap;

use ringshift_node_api::{AcceptedWindow, AcceptedWrites};

/// One member's window for one range at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub member: String,
    pub start: u64,
    pub end: u64,
    pub epoch: u64,
}

/// When writes were accepted in a [`Window`] (unix ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub first_ms: u64,
    pub last_ms: u64,
}

/// Everything seen of the members (all incarnations), merged across polls.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    windows: BTreeMap<Window, Span>,
    /// Some node evicted windows (the check is then partial).
    pub truncated: bool,
}

/// Two members accepted writes for overlapping ranges in an order the epochs do not explain.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    pub older: (Window, Span),
    pub newer: (Window, Span),
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |(w, s): &(Window, Span)| {
            format!(
                "{} [{:#x},{:#x}] epoch {} accepted {}..{} ms",
                w.member, w.start, w.end, w.epoch, s.first_ms, s.last_ms
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
        let key = Window {
            member: member.to_string(),
            start: w.range.start,
            end: w.range.end,
            epoch: w.epoch,
        };
        let slot = self.windows.entry(key).or_insert(Span {
            first_ms: w.first_ms,
            last_ms: w.last_ms,
        });
        slot.first_ms = slot.first_ms.min(w.first_ms);
        slot.last_ms = slot.last_ms.max(w.last_ms);
    }

    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Every pair of windows of different members that contradicts single ownership.
    pub fn overlaps(&self) -> Vec<Overlap> {
        let all: Vec<(&Window, &Span)> = self.windows.iter().collect();
        let mut found = Vec::new();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.0.member == b.0.member || a.0.end < b.0.start || b.0.end < a.0.start {
                    continue; // same member, or disjoint ranges
                }
                let (older, newer) = if a.0.epoch <= b.0.epoch {
                    (a, b)
                } else {
                    (b, a)
                };
                // Same epoch: two owners. Older epoch still accepting after the newer began:
                // the fence did not hold. Equal milliseconds are allowed (fence, commit and
                // install can all happen within one).
                if older.0.epoch == newer.0.epoch || older.1.last_ms > newer.1.first_ms {
                    found.push(Overlap {
                        older: (older.0.clone(), *older.1),
                        newer: (newer.0.clone(), *newer.1),
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
        assert_eq!(o[0].older.0.member, "a");
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
