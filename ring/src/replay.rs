//! A replay kept between placements: a spec only ever grows by appended ops, so a process that
//! keeps the replayed state applies just the new ops instead of the whole history (one op on a
//! 1000-member ring is about a hundredth of replaying the history).

use crate::alloc::Allocator;
use crate::error::{Error, Result};
use crate::ring::Ring;
use crate::spec::{RingOp, RingSpec};

/// The allocator state after replaying a spec's ops. Build it with [`Replay::new`], bring it to
/// a longer spec with [`Replay::advance`], and read the ring with [`Replay::ring`].
pub struct Replay {
    algorithm: u32,
    vnodes: u16,
    /// The ops applied so far (to check that a later spec extends them).
    applied: Vec<RingOp>,
    alloc: Allocator,
}

impl Replay {
    /// Replay `spec`'s history.
    pub fn new(spec: &RingSpec) -> Result<Replay> {
        spec.validate_header()?;
        let mut replay = Replay {
            algorithm: spec.algorithm,
            vnodes: spec.vnodes,
            applied: Vec::new(),
            alloc: Allocator::new(spec.algorithm, spec.vnodes),
        };
        replay.apply_from(spec)?;
        Ok(replay)
    }

    /// Whether `spec` is this replay's history with ops appended (or the same history).
    pub fn extends_to(&self, spec: &RingSpec) -> bool {
        spec.algorithm == self.algorithm
            && spec.vnodes == self.vnodes
            && spec.ops.starts_with(&self.applied)
    }

    /// Apply the ops `spec` appends to this replay's history. A spec that does not extend it
    /// (another algorithm or vnodes, or a rewritten history) is an error and changes nothing;
    /// so does an invalid op (the ops before it stay applied).
    pub fn advance(&mut self, spec: &RingSpec) -> Result<()> {
        if !self.extends_to(spec) {
            return Err(Error::NotAnExtension);
        }
        self.apply_from(spec)
    }

    fn apply_from(&mut self, spec: &RingSpec) -> Result<()> {
        for op in &spec.ops[self.applied.len()..] {
            // An op that fails is rejected before it changes the allocator.
            self.alloc.apply(op)?;
            self.applied.push(op.clone());
        }
        Ok(())
    }

    /// How many ops have been applied.
    pub fn len(&self) -> usize {
        self.applied.len()
    }

    /// Whether no op has been applied.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }

    /// The ring as of the ops applied (the same as [`RingSpec::build`] of that history).
    pub fn ring(&self) -> Result<Ring> {
        Ring::from_allocator(&self.alloc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Member;

    fn members(n: usize, weight: u32) -> Vec<Member> {
        (0..n)
            .map(|i| Member::new(format!("m{i:02}"), weight + i as u32 % 3))
            .collect()
    }

    #[test]
    fn advancing_gives_the_tokens_of_a_full_replay() {
        for algorithm in [1, 2] {
            let mut spec = RingSpec::with_members(16, &members(20, 1)).unwrap();
            spec.algorithm = algorithm;
            let mut replay = Replay::new(&spec).unwrap();
            for step in 0..6 {
                let mut want = members(20 + step, 1);
                want.remove(step * 3);
                if let Some(m) = want.get_mut(step) {
                    m.weight += 2;
                }
                spec = spec.evolve(&want).unwrap();
                replay.advance(&spec).unwrap();
                let (a, b) = (replay.ring().unwrap(), spec.build().unwrap());
                assert_eq!(replay.len(), spec.ops.len());
                assert_eq!(a.tokens(), b.tokens());
                assert_eq!(a.token_owners(), b.token_owners());
                assert_eq!(a.members(), b.members());
            }
        }
    }

    #[test]
    fn a_history_that_does_not_extend_the_replay_is_refused() {
        let spec = RingSpec::with_members(8, &members(4, 1)).unwrap();
        let mut replay = Replay::new(&spec).unwrap();
        let before = replay.ring().unwrap();
        let other = RingSpec::with_members(8, &members(5, 2)).unwrap();
        assert_eq!(replay.advance(&other), Err(Error::NotAnExtension));
        let mut v1 = spec.clone();
        v1.algorithm = 1;
        assert_eq!(replay.advance(&v1), Err(Error::NotAnExtension));
        let mut bad = spec.clone();
        bad.push(RingOp::Leave {
            member: "nobody".into(),
        });
        assert!(matches!(
            replay.advance(&bad),
            Err(Error::UnknownMember { .. })
        ));
        assert_eq!(replay.len(), spec.ops.len());
        assert_eq!(replay.ring().unwrap().tokens(), before.tokens());
    }
}
