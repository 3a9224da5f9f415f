//! Pure write/read checker: decides, from what clients were told, whether a store lost an
//! acknowledged write or served a stale read. Each key has exactly one writer that issues
//! versions 1, 2, 3, ... sequentially, so the history of a key is fully known here.

use std::collections::{BTreeMap, VecDeque};

/// Operations kept per key for explaining a violation (the oldest are dropped; the
/// [`KeyHistory`] summary stays complete).
pub const HISTORY_PER_KEY: usize = 64;

/// What one key's single writer knows about its writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyHistory {
    /// Highest version the store acknowledged.
    pub acked: u64,
    /// Versions that got an error after `acked`: they may or may not be applied.
    pub maybe: Vec<u64>,
    /// Versions whose outcome never reached the client (timeout, connection lost): the request
    /// may still take effect at any later moment, even after a newer acknowledged write, as a
    /// pending operation may under linearizability. They are never superseded.
    pub pending: Vec<u64>,
    /// Highest version ever sent.
    pub sent: u64,
}

impl KeyHistory {
    /// A version a read (or the final state) may legitimately return.
    pub fn admissible(&self, version: Option<u64>) -> bool {
        match version {
            None => self.acked == 0,
            Some(v) => {
                v == self.acked
                    || (v > self.acked && self.maybe.contains(&v))
                    || self.pending.contains(&v)
            }
        }
    }
}

/// How an operation ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// The store answered with success (a write acknowledged, a read answered).
    Acked,
    /// The store answered an error that says the command was not applied (fenced, moved,
    /// stale epoch, owner unreachable, deadline passed).
    FailedNotApplied,
    /// Any other error, or no answer: it may or may not have been applied, possibly later.
    Indeterminate,
}

impl std::fmt::Display for OutcomeClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutcomeClass::Acked => "acked",
            OutcomeClass::FailedNotApplied => "failed, not applied",
            OutcomeClass::Indeterminate => "indeterminate",
        })
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// SET of this version of the key's value.
    Set { version: u64 },
    /// GET, and the value it returned (None: nil, or no answer).
    Get { found: Option<String> },
    /// A collection command, as it should read in a history (`HSET f3 v7`, `LRANGE -> 12`).
    Command(String),
}

/// One operation on a key, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub op: OpKind,
    pub class: OutcomeClass,
    /// Unix ms when the request was sent and when its outcome was known.
    pub start_ms: u64,
    pub end_ms: u64,
    /// The node (`ip:port`) the client sent it to.
    pub coordinator: String,
    /// The error, if it failed.
    pub error: Option<String>,
}

impl std::fmt::Display for OpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{} ",
            time_of_day(self.start_ms),
            time_of_day(self.end_ms)
        )?;
        match &self.op {
            OpKind::Set { version } => write!(f, "SET v{version}")?,
            OpKind::Get { found } => {
                let shown = match found {
                    None if self.class == OutcomeClass::Acked => "nil".to_string(),
                    None => "?".to_string(),
                    Some(v) => match decode_version(v) {
                        Some(n) => format!("v{n}"),
                        None => format!("{:?}", v.chars().take(32).collect::<String>()),
                    },
                };
                write!(f, "GET -> {shown}")?
            }
            OpKind::Command(text) => f.write_str(text)?,
        }
        write!(f, " {} via {}", self.class, self.coordinator)?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// `HH:MM:SS.mmm` (UTC) of a unix ms time, to line up with node logs.
fn time_of_day(unix_ms: u64) -> String {
    let ms = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A violation the checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The key holds an older version than the last acknowledged one (or nothing).
    LostWrite {
        key: String,
        acked: u64,
        found: Option<u64>,
    },
    /// The key holds a version that was never written.
    Phantom { key: String, found: u64, sent: u64 },
    /// The value could not be parsed as one of ours.
    Garbled { key: String, value: String },
    /// A list lacks an acknowledged push that no trim can have removed.
    MissingElement { key: String, element: u64 },
    /// A list holds an element an acknowledged trim certainly removed.
    Resurrected { key: String, element: u64 },
    /// A list holds an answered push before one sent earlier.
    Reordered { key: String, found: u64, after: u64 },
}

impl Violation {
    pub fn key(&self) -> &str {
        match self {
            Violation::LostWrite { key, .. }
            | Violation::Phantom { key, .. }
            | Violation::Garbled { key, .. }
            | Violation::MissingElement { key, .. }
            | Violation::Resurrected { key, .. }
            | Violation::Reordered { key, .. } => key,
        }
    }

    /// An acknowledged write missing or regressed (lost at the end, stale during the run).
    pub fn is_loss(&self) -> bool {
        matches!(
            self,
            Violation::LostWrite { .. } | Violation::MissingElement { .. }
        )
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::LostWrite { key, acked, found } => write!(
                f,
                "lost write: {key} acknowledged v{acked}, store has {}",
                found.map_or("nothing".to_string(), |v| format!("v{v}"))
            ),
            Violation::Phantom { key, found, sent } => {
                write!(f, "phantom value: {key} has v{found}, highest sent v{sent}")
            }
            Violation::Garbled { key, value } => write!(f, "garbled value at {key}: {value:?}"),
            Violation::MissingElement { key, element } => {
                write!(f, "lost write: {key} lacks acknowledged push {element}")
            }
            Violation::Resurrected { key, element } => {
                write!(
                    f,
                    "resurrected element: {key} has {element}, cut by an acknowledged trim"
                )
            }
            Violation::Reordered { key, found, after } => {
                write!(f, "reordered list: {key} has {found} after {after}")
            }
        }
    }
}

/// Encodes a versioned value: `v<version>:<writer>:<padding>`.
pub fn encode_value(version: u64, writer: usize, pad_to: usize) -> String {
    let mut s = format!("v{version}:{writer}:");
    while s.len() < pad_to {
        s.push('x');
    }
    s
}

/// Parses the version out of a value written by [`encode_value`].
pub fn decode_version(value: &str) -> Option<u64> {
    let rest = value.strip_prefix('v')?;
    let end = rest.find(':')?;
    rest[..end].parse().ok()
}

/// The history of every key of one writer.
#[derive(Debug, Default)]
pub struct Ledger {
    keys: BTreeMap<String, KeyHistory>,
    /// The last operations on each key, oldest first, and how many older ones were dropped.
    ops: BTreeMap<String, (VecDeque<OpRecord>, usize)>,
}

impl Ledger {
    /// Next version to send for `key`; records it as sent.
    pub fn next_version(&mut self, key: &str) -> u64 {
        let h = self.keys.entry(key.to_string()).or_default();
        h.sent += 1;
        h.sent
    }

    /// The store acknowledged `version` of `key`: every earlier maybe-applied write is superseded.
    pub fn acked(&mut self, key: &str, version: u64) {
        let h = self.keys.entry(key.to_string()).or_default();
        if version > h.acked {
            h.acked = version;
            h.maybe.retain(|v| *v > version);
        }
    }

    /// The write got an error or timed out: it may or may not have been applied.
    pub fn maybe_applied(&mut self, key: &str, version: u64) {
        let h = self.keys.entry(key.to_string()).or_default();
        if version > h.acked && !h.maybe.contains(&version) {
            h.maybe.push(version);
        }
    }

    /// The request got no answer (timeout or lost connection): it may take effect later.
    pub fn pending(&mut self, key: &str, version: u64) {
        let h = self.keys.entry(key.to_string()).or_default();
        if !h.pending.contains(&version) {
            h.pending.push(version);
        }
    }

    /// Adds an operation to the key's history (for [`Ledger::explain`]).
    pub fn record(&mut self, key: &str, op: OpRecord) {
        let (ops, dropped) = self.ops.entry(key.to_string()).or_default();
        if ops.len() >= HISTORY_PER_KEY {
            ops.pop_front();
            *dropped += 1;
        }
        ops.push_back(op);
    }

    /// The key's history for a person: what its writer knows (highest sent, acknowledged,
    /// maybe applied and pending versions), then each recorded operation, one per line.
    pub fn explain(&self, key: &str) -> String {
        let empty = KeyHistory::default();
        let h = self.keys.get(key).unwrap_or(&empty);
        let mut out = format!(
            "history of {key} (highest sent v{}, acknowledged v{}, maybe applied {:?}, pending {:?}; times UTC):",
            h.sent, h.acked, h.maybe, h.pending
        );
        if let Some((ops, dropped)) = self.ops.get(key) {
            if *dropped > 0 {
                out.push_str(&format!("\n  ({dropped} earlier operations not kept)"));
            }
            for op in ops {
                out.push_str(&format!("\n  {op}"));
            }
        }
        out
    }

    /// Checks a value read for `key` (or found at the end) against what clients were told.
    pub fn check(&self, key: &str, value: Option<&str>) -> Option<Violation> {
        let found = match value {
            None => None,
            Some(v) => match decode_version(v) {
                Some(n) => Some(n),
                None => {
                    return Some(Violation::Garbled {
                        key: key.to_string(),
                        value: v.chars().take(64).collect(),
                    });
                }
            },
        };
        self.check_version(key, found)
    }

    /// Checks a version read for `key` (`None`: absent) against what clients were told.
    pub fn check_version(&self, key: &str, found: Option<u64>) -> Option<Violation> {
        let empty = KeyHistory::default();
        let h = self.keys.get(key).unwrap_or(&empty);
        if h.admissible(found) {
            return None;
        }
        match found {
            Some(n) if n > h.sent => Some(Violation::Phantom {
                key: key.to_string(),
                found: n,
                sent: h.sent,
            }),
            _ => Some(Violation::LostWrite {
                key: key.to_string(),
                acked: h.acked,
                found,
            }),
        }
    }

    /// Keys whose writes were acknowledged at least once.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of keys with an acknowledged write.
    pub fn acked_keys(&self) -> usize {
        self.keys.values().filter(|h| h.acked > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trip() {
        let v = encode_value(42, 3, 32);
        assert_eq!(v.len(), 32);
        assert_eq!(decode_version(&v), Some(42));
        assert_eq!(decode_version("garbage"), None);
        assert_eq!(decode_version("vX:1:"), None);
    }

    #[test]
    fn last_acked_value_is_fine() {
        let mut l = Ledger::default();
        let v1 = l.next_version("k");
        l.acked("k", v1);
        let v2 = l.next_version("k");
        l.acked("k", v2);
        assert_eq!(l.check("k", Some(&encode_value(2, 0, 0))), None);
    }

    #[test]
    fn older_value_is_a_lost_write() {
        let mut l = Ledger::default();
        for _ in 0..3 {
            let v = l.next_version("k");
            l.acked("k", v);
        }
        assert_eq!(
            l.check("k", Some(&encode_value(2, 0, 0))),
            Some(Violation::LostWrite {
                key: "k".into(),
                acked: 3,
                found: Some(2)
            })
        );
        assert!(matches!(
            l.check("k", None),
            Some(Violation::LostWrite { found: None, .. })
        ));
    }

    #[test]
    fn errored_write_may_or_may_not_be_applied() {
        let mut l = Ledger::default();
        let v1 = l.next_version("k");
        l.acked("k", v1);
        let v2 = l.next_version("k");
        l.maybe_applied("k", v2);
        assert_eq!(l.check("k", Some(&encode_value(1, 0, 0))), None);
        assert_eq!(l.check("k", Some(&encode_value(2, 0, 0))), None);
        // a later ack supersedes the maybe-applied write: reading it back now is a lost write
        let v3 = l.next_version("k");
        l.acked("k", v3);
        assert!(l.check("k", Some(&encode_value(2, 0, 0))).is_some());
    }

    #[test]
    fn a_write_without_an_answer_may_land_after_a_newer_one() {
        let mut l = Ledger::default();
        let v1 = l.next_version("k");
        l.pending("k", v1);
        let v2 = l.next_version("k");
        l.acked("k", v2);
        // the unanswered v1 may still be applied after v2 (it was never answered)
        assert_eq!(l.check("k", Some(&encode_value(1, 0, 0))), None);
        assert_eq!(l.check("k", Some(&encode_value(2, 0, 0))), None);
        // an answered error is superseded by the later acknowledgement
        let v3 = l.next_version("k");
        l.maybe_applied("k", v3);
        let v4 = l.next_version("k");
        l.acked("k", v4);
        assert!(l.check("k", Some(&encode_value(3, 0, 0))).is_some());
    }

    #[test]
    fn never_written_version_is_a_phantom() {
        let mut l = Ledger::default();
        let v = l.next_version("k");
        l.acked("k", v);
        assert!(matches!(
            l.check("k", Some(&encode_value(9, 0, 0))),
            Some(Violation::Phantom { .. })
        ));
        assert!(matches!(
            l.check("k", Some("hello")),
            Some(Violation::Garbled { .. })
        ));
    }

    /// A planted lost write explains itself: the key's history shows the acknowledged SET
    /// (with its coordinator and times), the indeterminate one, and the stale read.
    #[test]
    fn a_violation_prints_the_key_s_history() {
        let mut l = Ledger::default();
        let at = |ms: u64| 1_700_000_000_000 + ms;
        for (ms, coordinator) in [(0, "10.0.0.1:6379"), (10, "10.0.0.2:6379")] {
            let v = l.next_version("k");
            l.acked("k", v);
            l.record(
                "k",
                OpRecord {
                    op: OpKind::Set { version: v },
                    class: OutcomeClass::Acked,
                    start_ms: at(ms),
                    end_ms: at(ms + 2),
                    coordinator: coordinator.into(),
                    error: None,
                },
            );
        }
        let v3 = l.next_version("k");
        l.pending("k", v3);
        l.record(
            "k",
            OpRecord {
                op: OpKind::Set { version: v3 },
                class: OutcomeClass::Indeterminate,
                start_ms: at(20),
                end_ms: at(5020),
                coordinator: "10.0.0.2:6379".into(),
                error: Some("timed out".into()),
            },
        );
        let stale = encode_value(1, 0, 16);
        l.record(
            "k",
            OpRecord {
                op: OpKind::Get {
                    found: Some(stale.clone()),
                },
                class: OutcomeClass::Acked,
                start_ms: at(30),
                end_ms: at(31),
                coordinator: "10.0.0.3:6379".into(),
                error: None,
            },
        );
        let v = l.check("k", Some(&stale)).expect("a stale read");
        assert_eq!(v.key(), "k");
        let text = l.explain(v.key());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("acknowledged v2"), "{text}");
        assert!(lines[0].contains("pending [3]"), "{text}");
        assert!(
            lines[2].ends_with("SET v2 acked via 10.0.0.2:6379"),
            "{text}"
        );
        assert!(lines[2].contains("22:13:20.010-22:13:20.012"), "{text}");
        assert!(
            lines[3].contains("SET v3 indeterminate via 10.0.0.2:6379: timed out"),
            "{text}"
        );
        assert!(
            lines[4].ends_with("GET -> v1 acked via 10.0.0.3:6379"),
            "{text}"
        );
    }

    #[test]
    fn unwritten_key_must_be_absent() {
        let l = Ledger::default();
        assert_eq!(l.check("k", None), None);
    }
}
