//! Ring specs: a ring is a pure function of its membership history.

use crate::alloc::Allocator;
use crate::error::{Error, Result};
use crate::ring::Ring;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The token allocation algorithm written into new specs. Older versions stay replayable: a
/// ring's tokens are a function of its history *and* its algorithm, so a spec keeps the version
/// it was created with.
pub const CURRENT_ALGORITHM: u32 = 2;

/// Every algorithm version this build can replay (1: the first; 2: weighted token caps and no
/// donor levelled more than 5% under its share on a join or weight increase).
pub const ALGORITHMS: [u32; 2] = [1, 2];

/// Largest accepted `vnodes` (keeps replay time and token arrays bounded).
pub const MAX_VNODES: u16 = 1024;

/// A ring member and its weight (relative share of the hash space; 0 owns nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub weight: u32,
}

impl Member {
    /// A member with the given name and weight.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        Member {
            name: name.into(),
            weight,
        }
    }
}

/// One membership change. JSON: `{"op":"join","member":"a","weight":1}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum RingOp {
    Join { member: String, weight: u32 },
    Leave { member: String },
    Reweight { member: String, weight: u32 },
}

impl RingOp {
    /// The member the operation is about.
    pub fn member(&self) -> &str {
        match self {
            RingOp::Join { member, .. }
            | RingOp::Leave { member }
            | RingOp::Reweight { member, .. } => member,
        }
    }
}

/// A ring as its history: allocation algorithm version, tokens per member, and the ordered
/// membership operations. Every process replaying it gets the same tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingSpec {
    pub algorithm: u32,
    pub vnodes: u16,
    #[serde(default)]
    pub ops: Vec<RingOp>,
}

impl RingSpec {
    /// An empty history with the current algorithm.
    pub fn new(vnodes: u16) -> Self {
        RingSpec {
            algorithm: CURRENT_ALGORITHM,
            vnodes,
            ops: Vec::new(),
        }
    }

    /// A history joining `members` in name order.
    pub fn with_members(vnodes: u16, members: &[Member]) -> Result<Self> {
        RingSpec::new(vnodes).evolve(members)
    }

    /// Append an operation (validated when the spec is replayed).
    pub fn push(&mut self, op: RingOp) {
        self.ops.push(op);
    }

    /// Check the algorithm version and vnodes.
    pub fn validate_header(&self) -> Result<()> {
        if !ALGORITHMS.contains(&self.algorithm) {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: self.algorithm,
                supported: CURRENT_ALGORITHM,
            });
        }
        if self.vnodes == 0 || self.vnodes > MAX_VNODES {
            return Err(Error::InvalidVnodes {
                vnodes: self.vnodes,
                max: MAX_VNODES,
            });
        }
        Ok(())
    }

    /// The membership after replaying the history (sorted by name), without computing tokens.
    pub fn members(&self) -> Result<Vec<Member>> {
        let mut current: BTreeMap<&str, u32> = BTreeMap::new();
        for op in &self.ops {
            match op {
                RingOp::Join { member, weight } => {
                    check_name(member)?;
                    if current.insert(member, *weight).is_some() {
                        return Err(Error::DuplicateMember {
                            member: member.clone(),
                        });
                    }
                }
                RingOp::Leave { member } => {
                    if current.remove(member.as_str()).is_none() {
                        return Err(unknown(member));
                    }
                }
                RingOp::Reweight { member, weight } => match current.get_mut(member.as_str()) {
                    Some(w) => *w = *weight,
                    None => return Err(unknown(member)),
                },
            }
        }
        Ok(current
            .into_iter()
            .map(|(name, weight)| Member::new(name, weight))
            .collect())
    }

    /// A new spec with the operations appended that take this spec's membership to `desired`,
    /// in canonical order: leaves by name, then reweights by name, then joins by name.
    pub fn evolve(&self, desired: &[Member]) -> Result<RingSpec> {
        let current: BTreeMap<String, u32> = self
            .members()?
            .into_iter()
            .map(|m| (m.name, m.weight))
            .collect();
        let mut want: BTreeMap<&str, u32> = BTreeMap::new();
        for m in desired {
            check_name(&m.name)?;
            if want.insert(&m.name, m.weight).is_some() {
                return Err(Error::DuplicateMember {
                    member: m.name.clone(),
                });
            }
        }
        let mut next = self.clone();
        for name in current.keys() {
            if !want.contains_key(name.as_str()) {
                next.push(RingOp::Leave {
                    member: name.clone(),
                });
            }
        }
        for (name, &weight) in &want {
            if let Some(&old) = current.get(*name)
                && old != weight
            {
                next.push(RingOp::Reweight {
                    member: (*name).to_owned(),
                    weight,
                });
            }
        }
        for (name, &weight) in &want {
            if !current.contains_key(*name) {
                next.push(RingOp::Join {
                    member: (*name).to_owned(),
                    weight,
                });
            }
        }
        Ok(next)
    }

    /// Replay the history and build the ring.
    pub fn build(&self) -> Result<Ring> {
        self.validate_header()?;
        let mut alloc = Allocator::new(self.algorithm, self.vnodes);
        for op in &self.ops {
            alloc.apply(op)?;
        }
        Ring::from_allocator(&alloc)
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidMemberName {
            member: name.to_owned(),
        });
    }
    Ok(())
}

fn unknown(member: &str) -> Error {
    Error::UnknownMember {
        member: member.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evolve_appends_canonical_ops() {
        let spec = RingSpec::with_members(8, &[Member::new("b", 1), Member::new("a", 1)]).unwrap();
        assert_eq!(
            spec.ops,
            vec![
                RingOp::Join {
                    member: "a".into(),
                    weight: 1
                },
                RingOp::Join {
                    member: "b".into(),
                    weight: 1
                },
            ]
        );
        let next = spec
            .evolve(&[
                Member::new("d", 1),
                Member::new("b", 3),
                Member::new("c", 2),
            ])
            .unwrap();
        assert_eq!(
            next.ops[2..],
            [
                RingOp::Leave { member: "a".into() },
                RingOp::Reweight {
                    member: "b".into(),
                    weight: 3
                },
                RingOp::Join {
                    member: "c".into(),
                    weight: 2
                },
                RingOp::Join {
                    member: "d".into(),
                    weight: 1
                },
            ]
        );
        assert_eq!(
            next.members().unwrap(),
            vec![
                Member::new("b", 3),
                Member::new("c", 2),
                Member::new("d", 1)
            ]
        );
        assert_eq!(next.evolve(&next.members().unwrap()).unwrap(), next);
    }

    #[test]
    fn bad_histories_are_clear_errors() {
        let dup = RingSpec::new(4).evolve(&[Member::new("a", 1), Member::new("a", 2)]);
        assert_eq!(dup, Err(Error::DuplicateMember { member: "a".into() }));
        let mut spec = RingSpec::new(4);
        spec.push(RingOp::Leave { member: "x".into() });
        assert_eq!(
            spec.members(),
            Err(Error::UnknownMember { member: "x".into() })
        );
        assert!(matches!(spec.build(), Err(Error::UnknownMember { .. })));
        let mut v3 = RingSpec::new(4);
        v3.algorithm = 3;
        assert!(matches!(
            v3.build(),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            RingSpec::new(0).build(),
            Err(Error::InvalidVnodes { .. })
        ));
        assert_eq!(RingSpec::new(4).build().err(), Some(Error::EmptyRing));
        let zero = RingSpec::with_members(4, &[Member::new("a", 0)]).unwrap();
        assert_eq!(zero.build().err(), Some(Error::ZeroTotalWeight));
        assert!(matches!(
            RingSpec::new(4).evolve(&[Member::new("", 1)]),
            Err(Error::InvalidMemberName { .. })
        ));
    }

    #[test]
    fn spec_json_is_compact_and_camel_case() {
        let mut spec = RingSpec::with_members(64, &[Member::new("a", 1)]).unwrap();
        spec.push(RingOp::Reweight {
            member: "a".into(),
            weight: 2,
        });
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"algorithm":2,"vnodes":64,"ops":[{"op":"join","member":"a","weight":1},{"op":"reweight","member":"a","weight":2}]}"#
        );
        assert_eq!(serde_json::from_str::<RingSpec>(&json).unwrap(), spec);
    }
}
