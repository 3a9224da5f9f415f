//! Placement in transition: what the operator stores in ShardPlacement and pushes to nodes.

use crate::diff::{Transfer, diff};
use crate::error::{Error, Result};
use crate::owner_map::OwnerMap;
use crate::range::{HashRange, RangeSet};
use crate::spec::RingSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Ranges that `owner` holds on top of the base ring (committed moves of a replaced target).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverlayEntry {
    pub owner: String,
    /// JSON: compact `"start-end,start-end"` (decimal, inclusive).
    #[serde(with = "crate::range::compact")]
    pub ranges: RangeSet,
}

/// A committed (source, target) transfer of the current diff.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommittedTransfer {
    pub source: String,
    pub target: String,
}

/// Ownership at every moment of a multi-move change.
///
/// Effective ownership = base ring, overwritten by the overlay (the *start* of the change),
/// overwritten by every committed transfer of `diff(start, target)`. Every point has exactly
/// one owner at every step: the start owner until its transfer commits, then the target owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    cluster_uid: String,
    #[serde(with = "crate::serde_u64")]
    epoch: u64,
    base: RingSpec,
    #[serde(default)]
    overlay: Vec<OverlayEntry>,
    #[serde(default)]
    target: Option<RingSpec>,
    /// In JSON grouped per source: `[{"source": "a", "targets": ["b", "c"]}]`.
    #[serde(default, with = "committed_json")]
    committed: Vec<CommittedTransfer>,
}

/// Everything derived from a placement, computed once (building rings costs milliseconds at
/// 1000 members; nodes should resolve once per epoch and keep `current`).
#[derive(Debug, Clone)]
pub struct ResolvedPlacement {
    /// Ownership when the change started (base + overlay).
    pub start: OwnerMap,
    /// Ownership the change leads to (None when balanced).
    pub target: Option<OwnerMap>,
    /// `diff(start, target)`.
    pub transfers: Vec<Transfer>,
    /// Effective ownership now.
    pub current: OwnerMap,
}

impl ResolvedPlacement {
    /// Transfers not yet committed.
    pub fn pending<'a>(&'a self, placement: &'a Placement) -> impl Iterator<Item = &'a Transfer> {
        let done: BTreeSet<(&str, &str)> = placement
            .committed
            .iter()
            .map(|c| (c.source.as_str(), c.target.as_str()))
            .collect();
        self.transfers
            .iter()
            .filter(move |t| !done.contains(&(t.source.as_str(), t.target.as_str())))
    }
}

impl Placement {
    /// A balanced placement at epoch 1 with `base` as its ring (which must build).
    pub fn new(cluster_uid: impl Into<String>, base: RingSpec) -> Result<Placement> {
        base.build()?;
        Ok(Placement {
            cluster_uid: cluster_uid.into(),
            epoch: 1,
            base,
            overlay: Vec::new(),
            target: None,
            committed: Vec::new(),
        })
    }

    pub fn cluster_uid(&self) -> &str {
        &self.cluster_uid
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn base(&self) -> &RingSpec {
        &self.base
    }

    pub fn overlay(&self) -> &[OverlayEntry] {
        &self.overlay
    }

    /// The target ring in flight, if any.
    pub fn target(&self) -> Option<&RingSpec> {
        self.target.as_ref()
    }

    pub fn committed(&self) -> &[CommittedTransfer] {
        &self.committed
    }

    /// No target ring in flight.
    pub fn is_balanced(&self) -> bool {
        self.target.is_none()
    }

    /// Compute start, target, transfers and current ownership; errors if the document is
    /// inconsistent (a spec that does not build, overlapping overlay, unknown committed pair).
    pub fn resolve(&self) -> Result<ResolvedPlacement> {
        let base = self.base.build()?.owner_map();
        let parts: Vec<(HashRange, String)> = self
            .overlay
            .iter()
            .flat_map(|e| e.ranges.iter().map(|r| (*r, e.owner.clone())))
            .collect();
        let start = base.assign(&parts)?;
        let Some(spec) = &self.target else {
            if let Some(c) = self.committed.first() {
                return Err(Error::UnknownTransfer {
                    from: c.source.clone(),
                    to: c.target.clone(),
                });
            }
            return Ok(ResolvedPlacement {
                current: start.clone(),
                start,
                target: None,
                transfers: Vec::new(),
            });
        };
        let target = spec.build()?.owner_map();
        let transfers = diff(&start, &target);
        let pairs: BTreeSet<(&str, &str)> = transfers
            .iter()
            .map(|t| (t.source.as_str(), t.target.as_str()))
            .collect();
        let committed: BTreeSet<(&str, &str)> = self
            .committed
            .iter()
            .map(|c| (c.source.as_str(), c.target.as_str()))
            .collect();
        for c in &self.committed {
            if !pairs.contains(&(c.source.as_str(), c.target.as_str())) {
                return Err(Error::UnknownTransfer {
                    from: c.source.clone(),
                    to: c.target.clone(),
                });
            }
        }
        let moved: Vec<(HashRange, String)> = transfers
            .iter()
            .filter(|t| committed.contains(&(t.source.as_str(), t.target.as_str())))
            .flat_map(|t| t.ranges.iter().map(|r| (*r, t.target.clone())))
            .collect();
        let current = start.assign(&moved)?;
        Ok(ResolvedPlacement {
            start,
            target: Some(target),
            transfers,
            current,
        })
    }

    /// Effective ownership now.
    pub fn current(&self) -> Result<OwnerMap> {
        Ok(self.resolve()?.current)
    }

    /// Owner of `hash` now (resolves the whole placement: cache [`Placement::current`] instead
    /// when looking up many hashes).
    pub fn owner(&self, hash: u64) -> Result<String> {
        Ok(self.current()?.owner(hash).to_owned())
    }

    /// All transfers of the change in flight (`diff(base + overlay, target)`), committed or not.
    pub fn transfers(&self) -> Result<Vec<Transfer>> {
        Ok(self.resolve()?.transfers)
    }

    /// Transfers of the change in flight not yet committed.
    pub fn pending_transfers(&self) -> Result<Vec<Transfer>> {
        let resolved = self.resolve()?;
        Ok(resolved.pending(self).cloned().collect())
    }

    /// Everyone who owns something now or in the target, sorted.
    pub fn members(&self) -> Result<Vec<String>> {
        let resolved = self.resolve()?;
        let mut names: Vec<String> = resolved.current.members().to_vec();
        if let Some(t) = &resolved.target {
            names.extend(t.members().iter().cloned());
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Start a change to `spec` (epoch + 1). If a change is in flight, its committed transfers
    /// are kept (folded into the overlay) and its uncommitted ones are dropped; the new diff starts
    /// from the placement in transition, so ownership does not change by re-planning.
    pub fn set_target(&self, spec: RingSpec) -> Result<Placement> {
        spec.build()?;
        let resolved = self.resolve()?;
        let base = self.base.build()?.owner_map();
        let overlay = diff(&base, &resolved.current);
        let mut next = Placement {
            cluster_uid: self.cluster_uid.clone(),
            epoch: self.epoch + 1,
            base: self.base.clone(),
            overlay: overlay_entries(overlay),
            target: Some(spec),
            committed: Vec::new(),
        };
        if next.transfers()?.is_empty() {
            next.settle();
        }
        Ok(next)
    }

    /// Record the transfer `source -> target` as committed (epoch + 1); when it was the last one,
    /// the target becomes the base.
    pub fn commit(&self, source: &str, target: &str) -> Result<Placement> {
        self.commit_all(&[(source, target)])
    }

    /// Record several transfers as committed in one step (epoch + 1). Each must be pending.
    pub fn commit_all(&self, pairs: &[(&str, &str)]) -> Result<Placement> {
        let resolved = self.resolve()?;
        let known: BTreeSet<(&str, &str)> = resolved
            .transfers
            .iter()
            .map(|t| (t.source.as_str(), t.target.as_str()))
            .collect();
        let mut done: BTreeSet<(String, String)> = self
            .committed
            .iter()
            .map(|c| (c.source.clone(), c.target.clone()))
            .collect();
        let mut next = self.clone();
        for &(source, target) in pairs {
            let pending = known.contains(&(source, target))
                && done.insert((source.to_owned(), target.to_owned()));
            if !pending {
                return Err(Error::UnknownTransfer {
                    from: source.to_owned(),
                    to: target.to_owned(),
                });
            }
            next.committed.push(CommittedTransfer {
                source: source.to_owned(),
                target: target.to_owned(),
            });
        }
        next.epoch += 1;
        next.committed.sort_unstable();
        if next.committed.len() == resolved.transfers.len() {
            next.settle();
        }
        Ok(next)
    }

    /// Make the target the base once every transfer is committed (epoch + 1). A balanced
    /// placement is returned unchanged.
    pub fn finish(&self) -> Result<Placement> {
        if self.target.is_none() {
            return Ok(self.clone());
        }
        let pending = self.pending_transfers()?.len();
        if pending > 0 {
            return Err(Error::TransfersPending { pending });
        }
        let mut next = self.clone();
        next.epoch += 1;
        next.settle();
        Ok(next)
    }

    /// Target becomes base. Ownership is unchanged because every transfer is committed.
    fn settle(&mut self) {
        if let Some(target) = self.target.take() {
            self.base = target;
            self.overlay.clear();
            self.committed.clear();
        }
    }
}

/// Overlay entries from `diff(base, current)`: per new owner, the ranges it holds.
fn overlay_entries(transfers: Vec<Transfer>) -> Vec<OverlayEntry> {
    let mut entries: Vec<OverlayEntry> = Vec::new();
    let mut by_owner: std::collections::BTreeMap<String, RangeSet> = Default::default();
    for t in transfers {
        let e = by_owner.entry(t.target).or_default();
        *e = e.union(&t.ranges);
    }
    for (owner, ranges) in by_owner {
        entries.push(OverlayEntry { owner, ranges });
    }
    entries
}

/// Committed transfers grouped per source in JSON, which about halves their size.
mod committed_json {
    use super::CommittedTransfer;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Group {
        source: String,
        targets: Vec<String>,
    }

    pub fn serialize<S: Serializer>(v: &[CommittedTransfer], s: S) -> Result<S::Ok, S::Error> {
        let mut groups: Vec<Group> = Vec::new();
        for c in v {
            match groups.last_mut() {
                Some(g) if g.source == c.source => g.targets.push(c.target.clone()),
                _ => groups.push(Group {
                    source: c.source.clone(),
                    targets: vec![c.target.clone()],
                }),
            }
        }
        groups.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<CommittedTransfer>, D::Error> {
        let groups = Vec::<Group>::deserialize(d)?;
        let mut out: Vec<CommittedTransfer> = groups
            .into_iter()
            .flat_map(|g| {
                let source = g.source;
                g.targets.into_iter().map(move |target| CommittedTransfer {
                    source: source.clone(),
                    target,
                })
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}
