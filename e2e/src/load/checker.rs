//! Pure write/read checker: decides, from what clients were told, whether a store lost an
//! acknowledged write or served a stale read. Each key has exactly one writer that issues
//! versions 1, 2, 3, ... sequentially, so the history of a key is fully known here.

use std::collections::BTreeMap;

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

    /// Checks a value read for `key` (or found at the end) against what clients were told.
    pub fn check(&self, key: &str, value: Option<&str>) -> Option<Violation> {
        let empty = KeyHistory::default();
        let h = self.keys.get(key).unwrap_or(&empty);
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

    #[test]
    fn unwritten_key_must_be_absent() {
        let l = Ledger::default();
        assert_eq!(l.check("k", None), None);
    }
}
