//! Pure checkers for the collection kinds the load writes besides strings (issue 14).
//!
//! Hashes and sorted sets are maps of independent registers (a field's value, a member's score):
//! each field is checked exactly like a string key by a [`Ledger`] over `key<TAB>field`
//! sub-keys, so acknowledged, maybe-applied and unanswered writes are treated the same way.
//! Lists are append-only logs bounded by `LTRIM key -N -1`: see [`ListLedger`].

use super::checker::{Ledger, OpRecord, Violation};
use std::collections::{BTreeMap, BTreeSet};

/// What a worker writes to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `SET key v<version>:...` (the original load).
    String,
    /// `HSET key f<i> v<version>:...`, a version per field.
    Hash,
    /// `RPUSH key <version>`, trimmed now and then by `LTRIM key -N -1`.
    List,
    /// `ZADD key <version> m<i>`: the score is the member's version.
    Zset,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::String, Kind::Hash, Kind::List, Kind::Zset];

    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Zset => "zset",
        }
    }

    /// The letter that marks the kind in key names (`k` keeps the string keys' old names).
    pub fn tag(self) -> char {
        match self {
            Kind::String => 'k',
            Kind::Hash => 'h',
            Kind::List => 'l',
            Kind::Zset => 'z',
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?} (string, hash, list, zset)")]
pub struct UnknownKind(pub String);

/// Parses a mix such as `string,hash,list,zset` (or `all`).
pub fn parse_mix(s: &str) -> Result<Vec<Kind>, UnknownKind> {
    if s.trim() == "all" {
        return Ok(Kind::ALL.to_vec());
    }
    let mut kinds: Vec<Kind> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    kinds.dedup();
    if kinds.is_empty() {
        return Err(UnknownKind(s.to_string()));
    }
    Ok(kinds)
}

/// Separates a key from its field in a [`FieldLedger`]'s sub-keys (never in our names).
const SEP: char = '\t';

/// The registers (hash fields, sorted-set members) of one writer's keys.
#[derive(Debug, Default)]
pub struct FieldLedger {
    ledger: Ledger,
    fields: BTreeMap<String, BTreeSet<String>>,
}

fn sub_key(key: &str, field: &str) -> String {
    format!("{key}{SEP}{field}")
}

impl FieldLedger {
    /// Next version to send for `field` of `key`; records it as sent.
    pub fn next_version(&mut self, key: &str, field: &str) -> u64 {
        self.fields
            .entry(key.to_string())
            .or_default()
            .insert(field.to_string());
        self.ledger.next_version(&sub_key(key, field))
    }
    pub fn acked(&mut self, key: &str, field: &str, version: u64) {
        self.ledger.acked(&sub_key(key, field), version);
    }
    pub fn maybe_applied(&mut self, key: &str, field: &str, version: u64) {
        self.ledger.maybe_applied(&sub_key(key, field), version);
    }
    pub fn pending(&mut self, key: &str, field: &str, version: u64) {
        self.ledger.pending(&sub_key(key, field), version);
    }
    pub fn record(&mut self, key: &str, field: &str, op: OpRecord) {
        self.ledger.record(&sub_key(key, field), op);
    }

    /// Keys written at least once.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The history of one field, for a person.
    pub fn explain(&self, key: &str, field: &str) -> String {
        self.ledger.explain(&sub_key(key, field))
    }

    /// Checks one field's version read during the run (`None`: the field is absent).
    pub fn check_field(&self, key: &str, field: &str, found: Option<u64>) -> Option<Violation> {
        self.ledger
            .check_version(&sub_key(key, field), found)
            .map(|v| name_field(v, key, field))
    }

    /// Checks the whole key as read at one moment (`HGETALL`, `ZRANGE .. WITHSCORES`): every
    /// field written must hold an admissible version, and no other field may exist.
    /// `found` is (field, version or `None` when the value did not parse).
    pub fn check_all(&self, key: &str, found: &[(String, Option<u64>)]) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (field, version) in found {
            seen.insert(field.as_str());
            let Some(version) = version else {
                out.push(Violation::Garbled {
                    key: format!("{key} {field}"),
                    value: "unparsable version".into(),
                });
                continue;
            };
            if let Some(v) = self.check_field(key, field, Some(*version)) {
                out.push(v);
            }
        }
        for field in self.fields.get(key).into_iter().flatten() {
            if !seen.contains(field.as_str())
                && let Some(v) = self.check_field(key, field, None)
            {
                out.push(v);
            }
        }
        out
    }
}

/// Renames a sub-key violation to `key field` for people.
fn name_field(v: Violation, key: &str, field: &str) -> Violation {
    let named = format!("{key} {field}");
    match v {
        Violation::LostWrite { acked, found, .. } => Violation::LostWrite {
            key: named,
            acked,
            found,
        },
        Violation::Phantom { found, sent, .. } => Violation::Phantom {
            key: named,
            found,
            sent,
        },
        Violation::Garbled { value, .. } => Violation::Garbled { key: named, value },
        other => other,
    }
}

/// How a list operation ended for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOutcome {
    Acked,
    /// Answered with an error: settled when answered, applied or not.
    Maybe,
    /// No answer: may take effect at any later moment.
    Pending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListOp {
    /// Position in the key's operation order.
    seq: u64,
    /// The pushed version; `None` for an `LTRIM`.
    push: Option<u64>,
    outcome: ListOutcome,
}

/// One list key's single writer: `RPUSH key <version>` with versions 1, 2, 3, ... and now and
/// then `LTRIM key -keep -1`.
#[derive(Debug, Clone, Default)]
pub struct ListHistory {
    ops: Vec<ListOp>,
    sent: u64,
}

impl ListHistory {
    fn seq(&self) -> u64 {
        self.ops.len() as u64
    }

    /// Whether acknowledged push `v` (at `seq`) may have been cut by some trim: a trim keeps the
    /// last `keep` elements, so `v` can go only if `keep` other pushes may sit after it when the
    /// trim runs. Those are pushes sent after `v`, and unanswered ones sent before it (they may
    /// land late); an unanswered trim may run at any later moment, after every push.
    fn may_be_trimmed(&self, seq: u64, keep: usize) -> bool {
        self.ops
            .iter()
            .filter(|t| t.push.is_none() && (t.seq > seq || t.outcome == ListOutcome::Pending))
            .any(|t| {
                let after = self
                    .ops
                    .iter()
                    .filter(|p| p.push.is_some() && p.seq != seq)
                    .filter(|p| p.seq > seq || p.outcome == ListOutcome::Pending)
                    .filter(|p| p.seq < t.seq || t.outcome == ListOutcome::Pending)
                    .count();
                after >= keep
            })
    }

    /// Whether answered push `v` (at `seq`) was certainly cut: an acknowledged trim ran after
    /// `keep` acknowledged pushes that followed it. (An unanswered push may land after any
    /// trim, so it is never certainly cut.)
    fn certainly_trimmed(&self, seq: u64, keep: usize) -> bool {
        self.ops
            .iter()
            .filter(|t| t.push.is_none() && t.seq > seq && t.outcome == ListOutcome::Acked)
            .any(|t| {
                let after = self
                    .ops
                    .iter()
                    .filter(|p| p.push.is_some() && p.outcome == ListOutcome::Acked)
                    .filter(|p| p.seq > seq && p.seq < t.seq)
                    .count();
                after >= keep
            })
    }

    /// Checks the list as read at one moment (after every acknowledged operation so far).
    fn check(&self, key: &str, keep: usize, found: &[String]) -> Vec<Violation> {
        let mut out = Vec::new();
        let pending: BTreeSet<u64> = self
            .ops
            .iter()
            .filter(|o| o.outcome == ListOutcome::Pending)
            .filter_map(|o| o.push)
            .collect();
        let mut present = BTreeSet::new();
        let mut last_settled = 0u64;
        for raw in found {
            let Ok(v) = raw.parse::<u64>() else {
                out.push(Violation::Garbled {
                    key: key.to_string(),
                    value: raw.chars().take(64).collect(),
                });
                continue;
            };
            if v == 0 || v > self.sent || !present.insert(v) {
                // never sent, or pushed once and seen twice
                out.push(Violation::Phantom {
                    key: key.to_string(),
                    found: v,
                    sent: self.sent,
                });
                continue;
            }
            // Answered pushes were applied in the order they were sent; only an unanswered one
            // may land after a later push.
            if !pending.contains(&v) {
                // an element an acknowledged trim cut is back (e.g. an old copy of the list)
                if let Some(op) = self.ops.iter().find(|o| o.push == Some(v))
                    && self.certainly_trimmed(op.seq, keep)
                {
                    out.push(Violation::Resurrected {
                        key: key.to_string(),
                        element: v,
                    });
                }
                if v < last_settled {
                    out.push(Violation::Reordered {
                        key: key.to_string(),
                        found: v,
                        after: last_settled,
                    });
                }
                last_settled = last_settled.max(v);
            }
        }
        for op in &self.ops {
            if let (Some(v), ListOutcome::Acked) = (op.push, op.outcome)
                && !present.contains(&v)
                && !self.may_be_trimmed(op.seq, keep)
            {
                out.push(Violation::MissingElement {
                    key: key.to_string(),
                    element: v,
                });
            }
        }
        out
    }
}

/// The list keys of one writer, each trimmed to its last `keep` elements now and then.
#[derive(Debug)]
pub struct ListLedger {
    keep: usize,
    lists: BTreeMap<String, ListHistory>,
    records: Ledger,
}

impl ListLedger {
    pub fn new(keep: usize) -> Self {
        ListLedger {
            keep: keep.max(1),
            lists: BTreeMap::new(),
            records: Ledger::default(),
        }
    }

    /// How many elements `LTRIM key -keep -1` keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Next version to push to `key`.
    pub fn next_version(&mut self, key: &str) -> u64 {
        let h = self.lists.entry(key.to_string()).or_default();
        h.sent += 1;
        h.sent
    }

    /// The outcome of `RPUSH key version`.
    pub fn pushed(&mut self, key: &str, version: u64, outcome: ListOutcome) {
        let h = self.lists.entry(key.to_string()).or_default();
        let seq = h.seq();
        h.ops.push(ListOp {
            seq,
            push: Some(version),
            outcome,
        });
    }

    /// The outcome of `LTRIM key -keep -1`.
    pub fn trimmed(&mut self, key: &str, outcome: ListOutcome) {
        let h = self.lists.entry(key.to_string()).or_default();
        let seq = h.seq();
        h.ops.push(ListOp {
            seq,
            push: None,
            outcome,
        });
    }

    pub fn record(&mut self, key: &str, op: OpRecord) {
        self.records.record(key, op);
    }

    /// The key's history for a person: what its writer was told, then each recorded operation.
    pub fn explain(&self, key: &str) -> String {
        let empty = ListHistory::default();
        let h = self.lists.get(key).unwrap_or(&empty);
        let of = |o: ListOutcome| -> Vec<u64> {
            h.ops
                .iter()
                .filter(|op| op.outcome == o)
                .filter_map(|op| op.push)
                .collect()
        };
        let trims = h.ops.iter().filter(|op| op.push.is_none()).count();
        let header = format!(
            "history of {key} (highest pushed {}, acknowledged pushes {:?}, maybe applied {:?}, pending {:?}, {trims} trims to the last {}; times UTC):",
            h.sent,
            of(ListOutcome::Acked),
            of(ListOutcome::Maybe),
            of(ListOutcome::Pending),
            self.keep
        );
        let ops = self.records.explain(key);
        match ops.split_once('\n') {
            Some((_, rest)) => format!("{header}\n{rest}"),
            None => header,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.lists.keys().map(String::as_str)
    }

    /// Checks `LRANGE key 0 -1` as read at one moment: every acknowledged push that no trim
    /// can have cut is there, answered pushes in the order sent, nothing never pushed.
    pub fn check(&self, key: &str, found: &[String]) -> Vec<Violation> {
        let empty = ListHistory::default();
        self.lists
            .get(key)
            .unwrap_or(&empty)
            .check(key, self.keep, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, u64)]) -> Vec<(String, Option<u64>)> {
        pairs
            .iter()
            .map(|(f, v)| (f.to_string(), Some(*v)))
            .collect()
    }

    fn write(l: &mut FieldLedger, key: &str, field: &str, outcome: ListOutcome) -> u64 {
        let v = l.next_version(key, field);
        match outcome {
            ListOutcome::Acked => l.acked(key, field, v),
            ListOutcome::Maybe => l.maybe_applied(key, field, v),
            ListOutcome::Pending => l.pending(key, field, v),
        }
        v
    }

    #[test]
    fn mix_parses() {
        assert_eq!(parse_mix("string"), Ok(vec![Kind::String]));
        assert_eq!(parse_mix("all"), Ok(Kind::ALL.to_vec()));
        assert_eq!(parse_mix("hash, zset"), Ok(vec![Kind::Hash, Kind::Zset]));
        assert!(parse_mix("stream").is_err());
        assert!(parse_mix("").is_err());
    }

    #[test]
    fn hash_with_every_field_at_its_last_ack_is_clean() {
        let mut l = FieldLedger::default();
        write(&mut l, "h", "f0", ListOutcome::Acked);
        write(&mut l, "h", "f0", ListOutcome::Acked);
        write(&mut l, "h", "f1", ListOutcome::Acked);
        assert_eq!(l.check_all("h", &fields(&[("f0", 2), ("f1", 1)])), vec![]);
    }

    /// Planted bug: the final HGETALL misses an acknowledged field, or shows it regressed.
    #[test]
    fn hash_missing_or_regressed_field_is_a_lost_write() {
        let mut l = FieldLedger::default();
        write(&mut l, "h", "f0", ListOutcome::Acked);
        write(&mut l, "h", "f0", ListOutcome::Acked);
        write(&mut l, "h", "f1", ListOutcome::Acked);
        let dropped = l.check_all("h", &fields(&[("f0", 2)]));
        assert_eq!(
            dropped,
            vec![Violation::LostWrite {
                key: "h f1".into(),
                acked: 1,
                found: None
            }]
        );
        let regressed = l.check_all("h", &fields(&[("f0", 1), ("f1", 1)]));
        assert!(
            matches!(
                &regressed[..],
                [Violation::LostWrite {
                    acked: 2,
                    found: Some(1),
                    ..
                }]
            ),
            "{regressed:?}"
        );
        assert!(l.check_field("h", "f0", Some(1)).is_some());
    }

    #[test]
    fn hash_indeterminate_field_writes_may_be_present_or_absent() {
        let mut l = FieldLedger::default();
        write(&mut l, "h", "f0", ListOutcome::Acked);
        write(&mut l, "h", "f0", ListOutcome::Maybe);
        write(&mut l, "h", "f1", ListOutcome::Pending);
        for found in [
            fields(&[("f0", 1)]),
            fields(&[("f0", 2)]),
            fields(&[("f0", 2), ("f1", 1)]),
        ] {
            assert_eq!(l.check_all("h", &found), vec![], "{found:?}");
        }
        // a never-written version or field is a phantom
        assert!(matches!(
            &l.check_all("h", &fields(&[("f0", 3)]))[..],
            [Violation::Phantom { .. }]
        ));
        assert!(matches!(
            &l.check_all("h", &fields(&[("f0", 1), ("f9", 1)]))[..],
            [Violation::Phantom { .. }]
        ));
    }

    /// Planted bug: a sorted-set member's score regresses below its acknowledged version.
    #[test]
    fn zset_regressed_score_is_caught() {
        let mut l = FieldLedger::default();
        for _ in 0..3 {
            write(&mut l, "z", "m0", ListOutcome::Acked);
        }
        write(&mut l, "z", "m1", ListOutcome::Acked);
        assert_eq!(l.check_all("z", &fields(&[("m0", 3), ("m1", 1)])), vec![]);
        let v = l.check_all("z", &fields(&[("m0", 2), ("m1", 1)]));
        assert!(
            matches!(
                &v[..],
                [Violation::LostWrite {
                    acked: 3,
                    found: Some(2),
                    ..
                }]
            ),
            "{v:?}"
        );
        // an unanswered ZADD of an older score may still land late, as for strings
        write(&mut l, "z", "m1", ListOutcome::Pending);
        write(&mut l, "z", "m1", ListOutcome::Acked);
        assert_eq!(l.check_all("z", &fields(&[("m0", 3), ("m1", 2)])), vec![]);
        assert_eq!(l.check_all("z", &fields(&[("m0", 3), ("m1", 3)])), vec![]);
    }

    fn list(found: &[u64]) -> Vec<String> {
        found.iter().map(u64::to_string).collect()
    }

    fn push(l: &mut ListLedger, key: &str, outcome: ListOutcome) -> u64 {
        let v = l.next_version(key);
        l.pushed(key, v, outcome);
        v
    }

    #[test]
    fn list_with_every_acked_push_in_order_is_clean() {
        let mut l = ListLedger::new(3);
        for _ in 0..3 {
            push(&mut l, "l", ListOutcome::Acked);
        }
        assert_eq!(l.check("l", &list(&[1, 2, 3])), vec![]);
    }

    /// Planted bug: an acknowledged push is missing from the final LRANGE.
    #[test]
    fn list_missing_acked_push_is_caught() {
        let mut l = ListLedger::new(3);
        for _ in 0..3 {
            push(&mut l, "l", ListOutcome::Acked);
        }
        assert_eq!(
            l.check("l", &list(&[1, 3])),
            vec![Violation::MissingElement {
                key: "l".into(),
                element: 2
            }]
        );
        assert!(matches!(
            &l.check("l", &list(&[2, 1, 3]))[..],
            [Violation::Reordered { .. }]
        ));
        assert!(matches!(
            &l.check("l", &list(&[1, 2, 3, 4]))[..],
            [Violation::Phantom { found: 4, .. }]
        ));
        assert!(matches!(
            &l.check("l", &list(&[1, 2, 2, 3]))[..],
            [Violation::Phantom { found: 2, .. }]
        ));
    }

    #[test]
    fn trimmed_pushes_may_go_but_kept_ones_must_stay() {
        let mut l = ListLedger::new(2);
        for _ in 0..4 {
            push(&mut l, "l", ListOutcome::Acked);
        }
        l.trimmed("l", ListOutcome::Acked);
        push(&mut l, "l", ListOutcome::Acked);
        assert_eq!(l.check("l", &list(&[3, 4, 5])), vec![]);
        // Planted bug: 1 and 2 were certainly cut by the acknowledged trim, yet they are back
        assert_eq!(
            l.check("l", &list(&[2, 3, 4, 5])),
            vec![Violation::Resurrected {
                key: "l".into(),
                element: 2
            }]
        );
        // 3 and 4 were the last two when the trim ran: they must survive it
        assert_eq!(
            l.check("l", &list(&[4, 5])),
            vec![Violation::MissingElement {
                key: "l".into(),
                element: 3
            }]
        );
    }

    #[test]
    fn list_indeterminate_pushes_and_trims_never_count_as_lost() {
        let mut l = ListLedger::new(2);
        push(&mut l, "l", ListOutcome::Acked); // 1
        push(&mut l, "l", ListOutcome::Pending); // 2: may land any time later
        push(&mut l, "l", ListOutcome::Acked); // 3
        push(&mut l, "l", ListOutcome::Maybe); // 4
        // without a trim, acked 1 and 3 must be there; 2 and 4 may or may not
        assert_eq!(l.check("l", &list(&[1, 3])), vec![]);
        assert_eq!(l.check("l", &list(&[1, 3, 4, 2])), vec![]);
        assert!(matches!(
            &l.check("l", &list(&[3, 1]))[..],
            [Violation::Reordered { .. }]
        ));
        // an unanswered trim may run later and cut 1 and 3 (2 and 4 may sit after them)
        l.trimmed("l", ListOutcome::Pending);
        assert_eq!(l.check("l", &list(&[4, 2])), vec![]);
        assert_eq!(l.check("l", &list(&[1, 3])), vec![]);
        push(&mut l, "l", ListOutcome::Acked); // 5: after every trim sent so far... but the
        // unanswered trim may still run after it, keeping 5 as one of the last two
        assert_eq!(
            l.check("l", &list(&[4])),
            vec![Violation::MissingElement {
                key: "l".into(),
                element: 5
            }]
        );
    }
}
