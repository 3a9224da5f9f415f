//! Conversions between the custom resources' shapes and the pure planner's and ring's types.
//! Everything here is pure and unit-tested; the driver's I/O code only calls it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ringshift_node_api::{Caller, DropRequest, Offset, PullPhase, PullStatus};
use ringshift_planner::phase::{PullFailure, PullView};
use ringshift_planner::{CutoverState, MoveState, Phase};
use ringshift_ring::{HashRange, RangeSet};

use crate::crd::{self, CutoverRecord, MigrationPhase, ShardMigration, ShardMigrationStatus};

/// A custom resource that holds a value the driver cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{what}: {value:?} is not a decimal u64")]
    Number { what: &'static str, value: String },
    #[error("hash range {start}-{end}: {source}")]
    Range {
        start: String,
        end: String,
        #[source]
        source: ringshift_ring::Error,
    },
}

fn num(what: &'static str, value: &str) -> Result<u64, ConvertError> {
    value.parse().map_err(|_| ConvertError::Number {
        what,
        value: value.to_string(),
    })
}

/// The ranges of a ShardMigration spec as a ring range set.
pub fn ranges_of(spec_ranges: &[crd::HashRange]) -> Result<RangeSet, ConvertError> {
    let mut out = Vec::with_capacity(spec_ranges.len());
    for r in spec_ranges {
        let start = num("range start", &r.start)?;
        let end = num("range end", &r.end)?;
        out.push(
            HashRange::new(start, end).map_err(|source| ConvertError::Range {
                start: r.start.clone(),
                end: r.end.clone(),
                source,
            })?,
        );
    }
    RangeSet::new(out).map_err(|source| ConvertError::Range {
        start: String::new(),
        end: String::new(),
        source,
    })
}

/// A ring range set as the custom resource's list of ranges.
pub fn crd_ranges(set: &RangeSet) -> Vec<crd::HashRange> {
    set.iter()
        .map(|r| crd::HashRange {
            start: r.start.to_string(),
            end: r.end.to_string(),
        })
        .collect()
}

pub fn phase_of(p: MigrationPhase) -> Phase {
    match p {
        MigrationPhase::Pending => Phase::Pending,
        MigrationPhase::Copying => Phase::Copying,
        MigrationPhase::CatchingUp => Phase::CatchingUp,
        MigrationPhase::CuttingOver => Phase::CuttingOver,
        MigrationPhase::Cleanup => Phase::Cleanup,
        MigrationPhase::Completed => Phase::Completed,
        MigrationPhase::Cancelled => Phase::Cancelled,
        MigrationPhase::Failed => Phase::Failed,
    }
}

pub fn crd_phase(p: Phase) -> MigrationPhase {
    match p {
        Phase::Pending => MigrationPhase::Pending,
        Phase::Copying => MigrationPhase::Copying,
        Phase::CatchingUp => MigrationPhase::CatchingUp,
        Phase::CuttingOver => MigrationPhase::CuttingOver,
        Phase::Cleanup => MigrationPhase::Cleanup,
        Phase::Completed => MigrationPhase::Completed,
        Phase::Cancelled => MigrationPhase::Cancelled,
        Phase::Failed => MigrationPhase::Failed,
    }
}

pub fn ms_of(t: &Time) -> u64 {
    u64::try_from(t.0.as_millisecond()).unwrap_or(0)
}

pub fn time_of(ms: u64) -> Option<Time> {
    let ms = i64::try_from(ms).ok()?;
    Timestamp::from_millisecond(ms).ok().map(Time)
}

/// The planner's view of a migration's persisted status.
pub fn move_state(status: Option<&ShardMigrationStatus>) -> MoveState {
    let Some(s) = status else {
        return MoveState::default();
    };
    MoveState {
        phase: phase_of(s.phase),
        attempt: u32::try_from(s.attempt).unwrap_or(0),
        copy_attempt: u32::try_from(s.copy_attempt).unwrap_or(0),
        since_ms: s.phase_started.as_ref().map(ms_of).unwrap_or(0),
        committed_epoch: s.committed_epoch.as_deref().and_then(|e| e.parse().ok()),
        committed_at_ms: s.committed_at.as_ref().map(ms_of),
        failures: u32::try_from(s.failures).unwrap_or(0),
        reason: s.message.clone(),
    }
}

/// Writes the planner's state into a status, keeping the fields it does not own.
pub fn apply_state(status: &mut ShardMigrationStatus, state: &MoveState) {
    status.phase = crd_phase(state.phase);
    status.attempt = i64::from(state.attempt);
    status.copy_attempt = i64::from(state.copy_attempt);
    status.phase_started = time_of(state.since_ms);
    status.committed_epoch = state.committed_epoch.map(|e| e.to_string());
    status.committed_at = state.committed_at_ms.and_then(time_of);
    status.failures = i32::try_from(state.failures).unwrap_or(i32::MAX);
    status.message = state.reason.clone();
}

/// A move past its copy (catching up, cutting over, committed) has copied everything: its
/// percent reads 100 whatever the last copy observation said (one taken mid-copy can be the
/// last one written before the phase moved on).
pub fn settle_progress(status: &mut ShardMigrationStatus) {
    use crate::crd::MigrationPhase::*;
    if matches!(status.phase, CatchingUp | CuttingOver | Cleanup | Completed)
        && let Some(p) = status.progress.as_mut()
    {
        p.percent = 100;
    }
}

/// Offsets in status: `<incarnation>:<sequence>`.
pub fn offset_text(o: &Offset) -> String {
    format!("{}:{}", o.incarnation, o.sequence)
}

/// Why the target's pull cannot carry this move's cutover at any offset (rule 16), if so: it
/// must be catching up (a pull set back to Starting by a re-copy may still show its old applied
/// offset while its ranges are cleared), for this move's copy attempt, and, with verification
/// on, with checksums that matched (a mismatch never commits).
pub fn cutover_blocker(status: &PullStatus, copy_attempt: u32, verify: bool) -> Option<String> {
    if status.phase != PullPhase::CatchingUp {
        return Some(format!(
            "the target's pull is {:?}, not CatchingUp",
            status.phase
        ));
    }
    if status.attempt != u64::from(copy_attempt) {
        return Some(format!(
            "the target's pull is of copy attempt {}, not {copy_attempt}",
            status.attempt
        ));
    }
    match (status.verified, verify) {
        (Some(false), _) => Some("the target's copy did not verify (checksums differ)".into()),
        (None, true) => Some("the target's copy is not verified".into()),
        _ => None,
    }
}

/// Whether the target's pull lets the cutover commit at `fence` (rule 16).
pub fn cutover_ready(status: &PullStatus, fence: &Offset, copy_attempt: u32, verify: bool) -> bool {
    cutover_blocker(status, copy_attempt, verify).is_none() && applied_through(status, fence)
}

/// The target applied everything up to `fence` (same incarnation of the source).
pub fn applied_through(status: &PullStatus, fence: &Offset) -> bool {
    status
        .applied_offset
        .as_ref()
        .is_some_and(|a| a.incarnation == fence.incarnation && a.sequence >= fence.sequence)
}

/// The drop of `ranges` (a cancelled move's partial copy on its target, or a committed move's
/// copy on its source). It carries the operator's current committed epoch, the one in `who`
/// (rule 14): a node that installed a lower epoch refuses it, and at that epoch the node checks
/// that it does not own the ranges. None before any placement is committed (epoch 0): a drop
/// never carries epoch 0.
pub fn drop_request(who: &Caller, ranges: &RangeSet) -> Option<DropRequest> {
    (who.epoch > 0).then(|| DropRequest {
        caller: who.clone(),
        ranges: ranges.iter().copied().collect(),
        ownership_ended_epoch: who.epoch,
    })
}

/// Whether two range sets cover exactly the same hashes.
pub fn same_ranges(a: &RangeSet, b: &RangeSet) -> bool {
    a.difference(b).is_empty() && b.difference(a).is_empty()
}

/// Whether the target's pull copies exactly `ranges` (it was started from the move's ranges;
/// a commit must hand over only what was copied).
pub fn pull_covers(status: &PullStatus, ranges: &RangeSet) -> bool {
    RangeSet::new(status.ranges.iter().copied()).is_ok_and(|s| same_ranges(&s, ranges))
}

/// The planner's view of the target's pull; `apply_rate` is measured by the caller, `verify`
/// says whether copies are verified.
pub fn pull_view(status: &PullStatus, apply_rate: u64, verify: bool) -> PullView {
    let copied = matches!(status.phase, PullPhase::CatchingUp | PullPhase::Completed);
    let failed = match status.phase {
        PullPhase::Failed | PullPhase::Cancelled => Some(PullFailure {
            reason: status
                .error
                .clone()
                .unwrap_or_else(|| format!("pull {:?}", status.phase)),
            recopy: false,
        }),
        _ => None,
    };
    PullView {
        copy_attempt: u32::try_from(status.attempt).unwrap_or(u32::MAX),
        copied,
        verified: match status.verified {
            Some(v) => v,
            None => !verify,
        },
        // Unknown lag is treated as large: never cut over blind.
        lag: if copied {
            status.lag.unwrap_or(u64::MAX)
        } else {
            u64::MAX
        },
        apply_rate,
        failed,
        error: status.error.clone(),
    }
}

/// This migration's cutover record for its current attempt.
pub fn cutover_of(records: &[CutoverRecord], uid: &str, attempt: u32) -> Option<CutoverState> {
    records
        .iter()
        .find(|r| r.migration_uid == uid && r.attempt == i64::from(attempt))
        .map(|r| planner_state(r.state))
}

/// A record's state as the planner's.
pub fn planner_state(s: crd::CutoverState) -> CutoverState {
    match s {
        crd::CutoverState::Committing => CutoverState::Committing,
        crd::CutoverState::Committed => CutoverState::Committed,
        crd::CutoverState::Aborted => CutoverState::Aborted,
    }
}

/// Whether any record says this migration committed (whatever the attempt).
pub fn committed_record(records: &[CutoverRecord], uid: &str) -> bool {
    records
        .iter()
        .any(|r| r.migration_uid == uid && r.state == crd::CutoverState::Committed)
}

/// What to do with the cutover records of moves that no longer need them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Orphans {
    /// Half-done cutovers (Committing) of deleted moves: record the abort, then unfence.
    pub abort: Vec<CutoverRecord>,
    /// Aborted cutovers of deleted moves: unfence their attempt on every node (again: an earlier
    /// unfence may not have arrived), and forget the record only once every node answered.
    pub release: Vec<CutoverRecord>,
    /// Records to forget now (their moves are past the cutover and took care of their fences).
    pub forget: BTreeSet<String>,
}

/// Sorts the cutover records by what their moves (`phases`, by UID; a UID that is missing is
/// a deleted move) still need.
pub fn orphans(records: &[CutoverRecord], phases: &BTreeMap<String, MigrationPhase>) -> Orphans {
    let mut out = Orphans::default();
    for r in records {
        match phases.get(&r.migration_uid) {
            Some(phase) => {
                if matches!(
                    phase,
                    MigrationPhase::Cleanup
                        | MigrationPhase::Completed
                        | MigrationPhase::Cancelled
                        | MigrationPhase::Failed
                ) && r.state != crd::CutoverState::Committing
                {
                    out.forget.insert(r.migration_uid.clone());
                }
            }
            None if r.state == crd::CutoverState::Committing => out.abort.push(r.clone()),
            None if r.state == crd::CutoverState::Aborted => out.release.push(r.clone()),
            None => {
                out.forget.insert(r.migration_uid.clone());
            }
        }
    }
    out
}

/// UID of a migration (empty when the object has none, which the API server never returns).
pub fn uid_of(m: &ShardMigration) -> String {
    m.metadata.uid.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_past_its_copy_reads_100_percent() {
        use crate::crd::{MigrationPhase, MigrationProgress};
        let at = |phase, percent| {
            let mut s = ShardMigrationStatus {
                phase,
                progress: Some(MigrationProgress {
                    keys: "10".into(),
                    bytes: "480".into(),
                    percent,
                    estimated_bytes: Some("1000".into()),
                }),
                ..Default::default()
            };
            settle_progress(&mut s);
            s.progress.map(|p| p.percent)
        };
        assert_eq!(at(MigrationPhase::Completed, 48), Some(100));
        assert_eq!(at(MigrationPhase::Cleanup, 48), Some(100));
        assert_eq!(at(MigrationPhase::CatchingUp, 99), Some(100));
        assert_eq!(at(MigrationPhase::Copying, 48), Some(48));
        assert_eq!(at(MigrationPhase::Cancelled, 48), Some(48));
        assert_eq!(at(MigrationPhase::Failed, 48), Some(48));
    }

    fn pull(phase: PullPhase, applied: Option<(&str, u64)>, lag: Option<u64>) -> PullStatus {
        PullStatus {
            migration_uid: "m".into(),
            attempt: 2,
            source: ringshift_node_api::MemberEndpoint {
                name: "a".into(),
                data_addr: "127.0.0.1:1".into(),
                admin_addr: "127.0.0.1:2".into(),
            },
            ranges: vec![],
            phase,
            snapshot_offset: None,
            applied_offset: applied.map(|(i, s)| Offset {
                incarnation: i.into(),
                sequence: s,
            }),
            source_head: None,
            lag,
            keys_copied: 0,
            bytes_copied: 0,
            verified: None,
            error: Some("boom".into()),
        }
    }

    #[test]
    fn ranges_round_trip_and_bad_ones_are_errors() {
        let set = RangeSet::new([
            HashRange::new(1, 5).unwrap(),
            HashRange::new(9, u64::MAX).unwrap(),
        ])
        .unwrap();
        let crd = crd_ranges(&set);
        assert_eq!(crd[1].end, u64::MAX.to_string());
        assert_eq!(ranges_of(&crd).unwrap(), set);
        let bad = vec![crd::HashRange {
            start: "5".into(),
            end: "1".into(),
        }];
        assert!(ranges_of(&bad).is_err());
        let nan = vec![crd::HashRange {
            start: "x".into(),
            end: "1".into(),
        }];
        assert!(matches!(ranges_of(&nan), Err(ConvertError::Number { .. })));
    }

    #[test]
    fn state_round_trips_through_status() {
        let state = MoveState {
            phase: Phase::Cleanup,
            attempt: 3,
            copy_attempt: 2,
            since_ms: 1_700_000_000_123,
            committed_epoch: Some(42),
            committed_at_ms: Some(1_700_000_000_000),
            failures: 1,
            reason: Some("why".into()),
        };
        let mut status = ShardMigrationStatus::default();
        apply_state(&mut status, &state);
        assert_eq!(status.phase, MigrationPhase::Cleanup);
        assert_eq!(move_state(Some(&status)), state);
        assert_eq!(move_state(None), MoveState::default());
    }

    #[test]
    fn pull_views() {
        let v = pull_view(&pull(PullPhase::Copying, None, Some(3)), 10, true);
        assert!(!v.copied);
        assert_eq!(v.lag, u64::MAX);
        assert_eq!(v.copy_attempt, 2);
        let v = pull_view(&pull(PullPhase::CatchingUp, None, Some(3)), 10, true);
        assert!(v.copied && v.lag == 3 && v.failed.is_none());
        assert!(!v.verified, "not verified yet");
        assert!(pull_view(&pull(PullPhase::CatchingUp, None, Some(3)), 10, false).verified);
        let checked = PullStatus {
            verified: Some(true),
            ..pull(PullPhase::CatchingUp, None, Some(3))
        };
        assert!(pull_view(&checked, 10, true).verified);
        let v = pull_view(&pull(PullPhase::CatchingUp, None, None), 10, true);
        assert_eq!(v.lag, u64::MAX, "unknown lag never allows a cutover");
        let v = pull_view(&pull(PullPhase::Failed, None, None), 0, true);
        assert_eq!(v.failed.unwrap().reason, "boom");
    }

    #[test]
    fn same_ranges_compares_coverage() {
        let r = |a, b| HashRange::new(a, b).unwrap();
        let one = RangeSet::new([r(0, 9), r(10, 19)]).unwrap();
        let other = RangeSet::new([r(0, 19)]).unwrap();
        assert!(same_ranges(&one, &other));
        assert!(!same_ranges(&one, &RangeSet::new([r(0, 18)]).unwrap()));
        assert!(!same_ranges(&one, &RangeSet::new([r(0, 0)]).unwrap()));
    }

    #[test]
    fn applied_through_needs_the_same_incarnation() {
        let fence = Offset {
            incarnation: "i1".into(),
            sequence: 10,
        };
        assert!(applied_through(
            &pull(PullPhase::CatchingUp, Some(("i1", 10)), None),
            &fence
        ));
        assert!(applied_through(
            &pull(PullPhase::CatchingUp, Some(("i1", 11)), None),
            &fence
        ));
        assert!(!applied_through(
            &pull(PullPhase::CatchingUp, Some(("i1", 9)), None),
            &fence
        ));
        assert!(!applied_through(
            &pull(PullPhase::CatchingUp, Some(("i2", 99)), None),
            &fence
        ));
        assert!(!applied_through(
            &pull(PullPhase::CatchingUp, None, None),
            &fence
        ));
    }

    #[test]
    fn every_drop_carries_the_current_committed_epoch() {
        let ranges = RangeSet::new([HashRange::new(10, 20).unwrap()]).unwrap();
        let who = Caller {
            cluster_uid: "c".into(),
            epoch: 9,
            migration_uid: "m".into(),
            attempt: 2,
        };
        let body = drop_request(&who, &ranges).unwrap();
        assert_eq!(
            body.ownership_ended_epoch, 9,
            "never 0, never an older epoch"
        );
        assert_eq!(body.caller, who);
        assert_eq!(body.ranges, vec![HashRange::new(10, 20).unwrap()]);
        let nothing_committed = Caller { epoch: 0, ..who };
        assert!(drop_request(&nothing_committed, &ranges).is_none());
    }

    /// Finding 5 of issue 13: applied >= F alone is not enough. A pull that a re-copy set back to
    /// Starting (keeping its old applied offset while the range is cleared), one of an older copy
    /// attempt, or one whose checksum did not verify must not let the cutover commit.
    #[test]
    fn the_cutover_needs_a_verified_catching_up_pull_of_this_copy_attempt() {
        let fence = Offset {
            incarnation: "i1".into(),
            sequence: 10,
        };
        let ready = PullStatus {
            verified: Some(true),
            ..pull(PullPhase::CatchingUp, Some(("i1", 10)), Some(0))
        };
        assert!(cutover_ready(&ready, &fence, 2, true));
        for phase in [
            PullPhase::Starting,
            PullPhase::Copying,
            PullPhase::Verifying,
            PullPhase::Completed,
            PullPhase::Cancelled,
            PullPhase::Failed,
        ] {
            let s = PullStatus {
                phase,
                ..ready.clone()
            };
            assert!(!cutover_ready(&s, &fence, 2, true), "{phase:?}");
        }
        assert!(
            !cutover_ready(&ready, &fence, 3, true),
            "another copy attempt"
        );
        for verified in [None, Some(false)] {
            let s = PullStatus {
                verified,
                ..ready.clone()
            };
            assert!(!cutover_ready(&s, &fence, 2, true), "{verified:?}");
        }
        let unverified = PullStatus {
            verified: None,
            ..ready.clone()
        };
        assert!(
            cutover_ready(&unverified, &fence, 2, false),
            "verification off"
        );
        let mismatch = PullStatus {
            verified: Some(false),
            ..ready.clone()
        };
        assert!(
            !cutover_ready(&mismatch, &fence, 2, false),
            "a mismatch never commits"
        );
        let behind = PullStatus {
            applied_offset: Some(Offset {
                incarnation: "i1".into(),
                sequence: 9,
            }),
            ..ready
        };
        assert!(!cutover_ready(&behind, &fence, 2, true));
    }

    /// An aborted cutover of a deleted move may have left a fence (the unfence did not arrive,
    /// or the old leader's fence arrives late): its attempt is released on every node again
    /// before the record is forgotten, never forgotten on the cached word alone.
    #[test]
    fn an_aborted_record_of_a_deleted_move_is_released_before_it_is_forgotten() {
        let rec = |uid: &str, attempt, state| CutoverRecord {
            migration_uid: uid.into(),
            attempt,
            state,
        };
        let records = vec![
            rec("gone-aborted", 3, crd::CutoverState::Aborted),
            rec("gone-committing", 2, crd::CutoverState::Committing),
            rec("gone-committed", 1, crd::CutoverState::Committed),
            rec("done", 1, crd::CutoverState::Committed),
            rec("cutting", 4, crd::CutoverState::Committing),
        ];
        let phases = BTreeMap::from([
            ("done".to_string(), MigrationPhase::Completed),
            ("cutting".to_string(), MigrationPhase::CuttingOver),
        ]);
        let o = orphans(&records, &phases);
        assert_eq!(o.abort, vec![records[1].clone()]);
        assert_eq!(o.release, vec![records[0].clone()]);
        assert_eq!(
            o.forget,
            BTreeSet::from(["done".to_string(), "gone-committed".to_string()])
        );
    }

    #[test]
    fn cutover_records() {
        let recs = vec![
            CutoverRecord {
                migration_uid: "m".into(),
                attempt: 1,
                state: crd::CutoverState::Aborted,
            },
            CutoverRecord {
                migration_uid: "m".into(),
                attempt: 2,
                state: crd::CutoverState::Committing,
            },
        ];
        assert_eq!(cutover_of(&recs, "m", 1), Some(CutoverState::Aborted));
        assert_eq!(cutover_of(&recs, "m", 2), Some(CutoverState::Committing));
        assert_eq!(cutover_of(&recs, "m", 3), None);
        assert_eq!(cutover_of(&recs, "x", 2), None);
        assert!(!committed_record(&recs, "m"));
    }
}
