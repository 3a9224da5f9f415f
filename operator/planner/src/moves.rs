//! Which moves a ring change needs and which of them may start now.
//!
//! A move is one (source, target) transfer of `diff(placement in transition, target ring)`.
//! Its name is derived from the cluster, the target ring and the pair, so the same plan always
//! yields the same names and a re-plan (new target ring) yields new ones.

use crate::approval::plan_hash;
use crate::phase::Phase;
use ringshift_ring::{OwnerMap, Placement, RangeSet, RingSpec, Transfer};
use std::collections::{BTreeMap, BTreeSet};
use xxhash_rust::xxh3::xxh3_64;

/// Errors of planning: the placement document itself is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("placement cannot be resolved: {0}")]
    Placement(#[from] ringshift_ring::Error),
}

/// Limits and approval state from the ShardCluster's migration policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// At most this many moves copy, catch up or cut over at once.
    pub max_concurrent_moves: u32,
    /// At most this many active moves per source and per target member.
    pub max_moves_per_member: u32,
    /// Manual approval: moves are created only once `approved_plan` equals the plan hash.
    pub manual_approval: bool,
    pub approved_plan: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_concurrent_moves: 2,
            max_moves_per_member: 1,
            manual_approval: false,
            approved_plan: None,
        }
    }
}

/// An existing ShardMigration, as the planner needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveView {
    pub name: String,
    pub source: String,
    pub target: String,
    pub phase: Phase,
    /// The hash ranges the move transfers (what its source drops in Cleanup).
    pub ranges: RangeSet,
}

/// A ShardMigration to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveSpec {
    pub name: String,
    pub source: String,
    pub target: String,
    pub ranges: RangeSet,
    /// Short id of the target ring this move belongs to.
    pub ring_id: String,
}

/// What the driver should do for the cluster as a whole this round.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Write this placement first (with a resourceVersion precondition): the desired ring differs
    /// from the ring in flight, so uncommitted moves are dropped and the change re-planned.
    pub retarget: Option<Placement>,
    /// Transfers of the change in flight, committed or not (what a person approves).
    pub transfers: Vec<Transfer>,
    /// Hash of `transfers`, for manual approval; None when balanced.
    pub plan_hash: Option<String>,
    /// Manual approval is on and the plan is not approved yet.
    pub awaiting_approval: bool,
    /// ShardMigrations to create.
    pub create: Vec<MoveSpec>,
    /// Pending moves that may start now, within the concurrency limits.
    pub may_start: BTreeSet<String>,
    /// Moves in Cleanup whose source may drop now, with the ranges it may drop: the move's,
    /// less those coming back to the source in the change in flight (a re-plan cancels those
    /// drops, rule 7) and less those the source owns now. Empty: nothing is left to drop. A move
    /// in Cleanup that is missing waits for a drop slot.
    pub drops: BTreeMap<String, RangeSet>,
}

/// Short stable id of a ring spec (16 hex digits of XXH3 over its canonical JSON-free form).
pub fn ring_id(spec: &RingSpec) -> String {
    let mut text = format!("{}/{}", spec.algorithm, spec.vnodes);
    for op in &spec.ops {
        text.push('|');
        text.push_str(&format!("{op:?}"));
    }
    format!("{:016x}", xxh3_64(text.as_bytes()))
}

/// Kubernetes name of a move: `<cluster>-<ring id, 8 hex>-<source>-<target>`, made a valid
/// DNS subdomain of at most 253 characters.
pub fn move_name(cluster: &str, ring_id: &str, source: &str, target: &str) -> String {
    let short = &ring_id[..ring_id.len().min(8)];
    let raw = format!("{cluster}-{short}-{source}-to-{target}");
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if name.len() > 253 {
        let h = format!("{:016x}", xxh3_64(raw.as_bytes()));
        name.truncate(253 - 17);
        name.push('-');
        name.push_str(&h);
    }
    name.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// Plans a round for the cluster `cluster` whose desired ring is `desired`.
pub fn plan(
    cluster: &str,
    desired: &RingSpec,
    placement: &Placement,
    moves: &[MoveView],
    policy: &Policy,
) -> Result<Plan, PlanError> {
    let in_flight = placement.target().unwrap_or(placement.base());
    let retarget = if in_flight != desired {
        Some(placement.set_target(desired.clone())?)
    } else {
        None
    };
    let p = retarget.as_ref().unwrap_or(placement);
    let resolved = p.resolve()?;
    let pending: Vec<&Transfer> = resolved.pending(p).collect();
    let drops = source_drops(moves, &pending, &resolved.current, policy);
    let Some(target) = p.target() else {
        return Ok(Plan {
            retarget,
            transfers: Vec::new(),
            plan_hash: None,
            awaiting_approval: false,
            create: Vec::new(),
            may_start: BTreeSet::new(),
            drops,
        });
    };
    let rid = ring_id(target);
    let hash = plan_hash(&resolved.transfers);
    let awaiting_approval =
        policy.manual_approval && policy.approved_plan.as_deref() != Some(hash.as_str());
    let by_name: BTreeMap<&str, &MoveView> = moves.iter().map(|m| (m.name.as_str(), m)).collect();

    let mut create = Vec::new();
    let mut wanted: Vec<(String, &Transfer)> = Vec::new();
    for t in &pending {
        let name = move_name(cluster, &rid, &t.source, &t.target);
        if !by_name.contains_key(name.as_str()) && !awaiting_approval {
            create.push(MoveSpec {
                name: name.clone(),
                source: t.source.clone(),
                target: t.target.clone(),
                ranges: t.ranges.clone(),
                ring_id: rid.clone(),
            });
        }
        wanted.push((name, t));
    }

    // Slots: count the active moves, then grant pending ones in name order.
    let mut total = 0u32;
    let mut per_member: BTreeMap<&str, u32> = BTreeMap::new();
    for m in moves.iter().filter(|m| m.phase.is_active()) {
        total += 1;
        *per_member.entry(m.source.as_str()).or_default() += 1;
        *per_member.entry(m.target.as_str()).or_default() += 1;
    }
    let mut may_start = BTreeSet::new();
    if !awaiting_approval {
        for (name, t) in &wanted {
            let pending_phase = by_name
                .get(name.as_str())
                .is_none_or(|m| m.phase == Phase::Pending);
            if !pending_phase {
                continue;
            }
            let s = per_member.get(t.source.as_str()).copied().unwrap_or(0);
            let d = per_member.get(t.target.as_str()).copied().unwrap_or(0);
            if total >= policy.max_concurrent_moves
                || s >= policy.max_moves_per_member
                || d >= policy.max_moves_per_member
            {
                continue;
            }
            total += 1;
            *per_member.entry(t.source.as_str()).or_default() += 1;
            *per_member.entry(t.target.as_str()).or_default() += 1;
            may_start.insert(name.clone());
        }
    }
    Ok(Plan {
        retarget,
        transfers: resolved.transfers,
        plan_hash: Some(hash),
        awaiting_approval,
        create,
        may_start,
        drops,
    })
}

/// The source drops that may run now (see [`Plan::drops`]). Drops have their own slots, as many
/// as moves (`max_concurrent_moves` in all, `max_moves_per_member` per source), so that they are
/// bounded like moves without ever holding up a copy or a commit: Balanced does not wait for
/// drops (rule 7).
fn source_drops(
    moves: &[MoveView],
    pending: &[&Transfer],
    current: &OwnerMap,
    policy: &Policy,
) -> BTreeMap<String, RangeSet> {
    let mut drops = BTreeMap::new();
    let mut total = 0u32;
    let mut per_source: BTreeMap<&str, u32> = BTreeMap::new();
    for m in moves.iter().filter(|m| m.phase == Phase::Cleanup) {
        let coming_back = pending
            .iter()
            .filter(|t| t.target == m.source)
            .fold(RangeSet::empty(), |acc, t| acc.union(&t.ranges));
        let keep = coming_back.union(&current.ranges_of(&m.source));
        let ranges = m.ranges.difference(&keep);
        if ranges.is_empty() {
            // Nothing left to drop: no slot needed.
            drops.insert(m.name.clone(), ranges);
            continue;
        }
        let n = per_source.get(m.source.as_str()).copied().unwrap_or(0);
        if total >= policy.max_concurrent_moves || n >= policy.max_moves_per_member {
            continue;
        }
        total += 1;
        *per_source.entry(m.source.as_str()).or_default() += 1;
        drops.insert(m.name.clone(), ranges);
    }
    drops
}

#[cfg(test)]
mod tests;
