//! The phase machine of one move (one source -> target transfer of a ring change).
//!
//! `next_step` looks at the persisted state and at what the driver observed, and returns one
//! step. Steps that change the phase come back as `Persist` first (rule 6: a phase is persisted
//! before its side effect); node calls are idempotent per (migration, attempt), so a new leader
//! that finds a persisted phase simply redoes the phase's side effect.

use serde::{Deserialize, Serialize};

/// Phases of a move, in order. `Cancelled` and `Failed` end a move before its commit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Phase {
    /// Planned, not started.
    #[default]
    Pending,
    /// The target pulls a snapshot of the ranges.
    Copying,
    /// The target tails the source's change log.
    CatchingUp,
    /// Fence, drain, commit the new owner.
    CuttingOver,
    /// Committed; the source drops its copy after retention.
    Cleanup,
    /// Done.
    Completed,
    /// Abandoned before the commit; nothing lost, nothing half-owned.
    Cancelled,
    /// Stopped with a reason a person can act on.
    Failed,
}

impl Phase {
    /// Every phase, in order (metrics list them all, so a phase no move is in reads 0).
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Copying,
        Phase::CatchingUp,
        Phase::CuttingOver,
        Phase::Cleanup,
        Phase::Completed,
        Phase::Cancelled,
        Phase::Failed,
    ];

    /// The move will not act again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Cancelled | Phase::Failed)
    }

    /// The move holds a move slot (counts against maxConcurrentMoves).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Phase::Copying | Phase::CatchingUp | Phase::CuttingOver
        )
    }
}

/// What a move persists in its status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MoveState {
    pub phase: Phase,
    /// Attempt number carried by every node call; a new attempt makes older calls stale.
    /// It grows on every retry (a re-copy or an aborted cutover).
    pub attempt: u32,
    /// The attempt at which the current copy started: the target resumes a pull of the same
    /// copy attempt and starts over (clearing the ranges) for a newer one.
    pub copy_attempt: u32,
    /// When the current phase was entered (ms since the epoch).
    pub since_ms: u64,
    /// Placement epoch at which the transfer committed.
    pub committed_epoch: Option<u64>,
    /// When the commit happened (ms), for sourceRetention.
    pub committed_at_ms: Option<u64>,
    /// Consecutive failed attempts, for backoff; reset on progress.
    pub failures: u32,
    /// Why the move is waiting, failed or was cancelled, for people.
    pub reason: Option<String>,
}

/// Where the move's transfer stands in the committed placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// Still part of the change in flight and not committed.
    Pending,
    /// Committed at this epoch.
    Committed { epoch: u64 },
    /// No longer part of the change in flight (re-planned away) and never committed.
    Gone,
}

/// State of a move's cutover record in ShardPlacement status (rule 4). Committed only rolls
/// forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CutoverState {
    /// The fence is (being) taken; neither committed nor aborted yet.
    Committing,
    /// The new owners are committed; only rolls forward.
    Committed,
    /// Abandoned; the source may be unfenced.
    Aborted,
}

/// Whether a migration's cutover record `old` (attempt, state) may be replaced by `new` (rule 13:
/// records only move forward). A Committed record is never replaced, a higher attempt's record
/// is never replaced by a lower one's, and within one attempt only Committing may turn into a
/// decision (Committed or Aborted). Writing the record that is already there is not a change.
/// Without this a stale leader that re-read the object (so its precondition passes) could
/// write its old attempt's abort over a newer attempt's commit.
pub fn record_may_replace(old: Option<(u32, CutoverState)>, new: (u32, CutoverState)) -> bool {
    let Some((attempt, state)) = old else {
        return true;
    };
    if state == CutoverState::Committed {
        return false;
    }
    match attempt.cmp(&new.0) {
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => state == CutoverState::Committing,
    }
}

/// The target node's view of the pull for this move.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullView {
    /// The copy attempt the target is working on.
    pub copy_attempt: u32,
    /// The snapshot is fully copied; the target is tailing the source's log.
    pub copied: bool,
    /// The copy's checksums matched the source's snapshot (or verification is off): a cutover
    /// starts only from a verified copy (rule 16).
    pub verified: bool,
    /// Records of the moved ranges still to apply (source head minus applied, in records).
    pub lag: u64,
    /// Records applied per second recently (0 when unknown).
    pub apply_rate: u64,
    /// The pull failed; `recopy` says the source's log no longer covers the offset.
    pub failed: Option<PullFailure>,
    /// The target's last error, e.g. why it started its copy over.
    pub error: Option<String>,
}

/// A failed pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    pub reason: String,
    /// The snapshot offset is gone from the source's log (or the source's data directory is a new
    /// incarnation): only a fresh copy can continue.
    pub recopy: bool,
}

/// Limits the phase machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhasePolicy {
    /// Proceed to cutover when the lag is at most this many records...
    pub lag_threshold: u64,
    /// ...and the measured apply rate drains it within half of this budget.
    pub write_pause_budget_ms: u64,
    /// Keep the source's copy this long after the commit.
    pub source_retention_ms: u64,
    /// Give up a move after this many consecutive failed attempts (then Failed with a reason).
    pub max_failures: u32,
}

impl Default for PhasePolicy {
    fn default() -> Self {
        PhasePolicy {
            lag_threshold: 1000,
            write_pause_budget_ms: 2000,
            source_retention_ms: 60_000,
            max_failures: 10,
        }
    }
}

/// What the driver saw this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub now_ms: u64,
    pub policy: PhasePolicy,
    /// The user asked to cancel (annotation `ringshift.dev/cancel`).
    pub cancel_requested: bool,
    /// spec.migration.paused: start no new phase.
    pub paused: bool,
    /// The planner granted this move a slot (concurrency limits, approval).
    pub may_start: bool,
    pub source_ready: bool,
    pub target_ready: bool,
    pub transfer: TransferState,
    /// This move's cutover record in ShardPlacement status, for the current attempt.
    pub cutover: Option<CutoverState>,
    /// The target's pull, when the target answered.
    pub pull: Option<PullView>,
    /// Every node acknowledged an epoch at or above the commit epoch.
    pub all_acked_commit: bool,
    /// The source member is gone (no pod, owns nothing): there is no copy left to drop.
    pub source_gone: bool,
    /// The target still runs this move's pull. After the commit it has nothing left to apply,
    /// and a pull that lingers (tailing a source that is gone, or a log with no more records
    /// for its ranges) would block later drops of those ranges on the target.
    pub target_pulling: bool,
    /// What the planner lets this move's source drop now (`Plan::drops`): None while no drop
    /// slot is free; empty when every range came back to the source or is owned by it again.
    pub drop: Option<ringshift_ring::RangeSet>,
    /// Whether the target has room for the move's estimated bytes (checked before Copying).
    pub room: crate::room::RoomCheck,
    /// The target's name, for reasons.
    pub target: String,
}

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write this state to the move's status, then evaluate again.
    Persist(MoveState),
    /// Ask the target to start (or resume) pulling the ranges. Idempotent: the same
    /// `copy_attempt` resumes, a newer one clears the ranges and copies afresh.
    StartPull { attempt: u32, copy_attempt: u32 },
    /// Ask the target to stop the pull and remove its partial copy. Idempotent.
    CancelPull,
    /// Run the cutover sequence for `attempt`: record Committing, fence, wait for the target to
    /// apply up to the fence offset within the budget, then commit (or record the abort).
    Cutover { attempt: u32 },
    /// Record the abort of `attempt` in ShardPlacement status (before any unfence).
    RecordAbort { attempt: u32 },
    /// Lift the source's fence of `attempt` (only after the abort is recorded).
    Unfence { attempt: u32 },
    /// Stop the target's pull after the commit (it keeps everything it applied). Idempotent.
    EndPull,
    /// Push the committed placement to every node and collect acknowledgements.
    PushPlacement,
    /// Ask the source to drop its copy of these ranges (the move's, less any coming back).
    DropSource { ranges: ringshift_ring::RangeSet },
    /// Nothing to do now; look again after `after_ms`.
    Wait { reason: String, after_ms: u64 },
}

fn enter(state: &MoveState, phase: Phase, now_ms: u64) -> MoveState {
    MoveState {
        phase,
        since_ms: now_ms,
        reason: None,
        ..state.clone()
    }
}

fn wait(reason: impl Into<String>, after_ms: u64) -> Step {
    Step::Wait {
        reason: reason.into(),
        after_ms,
    }
}

/// Backoff after `failures` consecutive failures: 1s doubling up to 60s.
pub fn backoff_ms(failures: u32) -> u64 {
    1000u64.saturating_mul(1 << failures.min(6)).min(60_000)
}

/// The next step of a move.
pub fn next_step(state: &MoveState, obs: &Observed) -> Step {
    let now = obs.now_ms;
    // A transfer that committed rolls forward whatever the move's status says (rule 4).
    if let TransferState::Committed { epoch } = obs.transfer
        && !matches!(state.phase, Phase::Cleanup | Phase::Completed)
    {
        return Step::Persist(MoveState {
            committed_epoch: Some(epoch),
            committed_at_ms: Some(state.committed_at_ms.unwrap_or(now)),
            ..enter(state, Phase::Cleanup, now)
        });
    }
    let cancel_reason = if obs.cancel_requested {
        Some("cancelled by the ringshift.dev/cancel annotation")
    } else if obs.transfer == TransferState::Gone {
        Some("the desired ring changed before this move committed")
    } else {
        None
    };
    match state.phase {
        Phase::Completed | Phase::Cancelled | Phase::Failed => wait("finished", u64::MAX),
        Phase::Pending => {
            if let Some(r) = cancel_reason {
                return Step::Persist(MoveState {
                    reason: Some(r.into()),
                    ..enter(state, Phase::Cancelled, now)
                });
            }
            if obs.paused {
                return wait("migrations are paused (spec.migration.paused)", 5000);
            }
            if !obs.may_start {
                return wait("waiting for a move slot or plan approval", 2000);
            }
            if !obs.target_ready {
                return wait("target pod is not ready", 2000);
            }
            if !obs.source_ready {
                return wait("source pod is not ready", 2000);
            }
            if let Some(why) = obs.room.reason(&obs.target) {
                return wait(why, 10_000);
            }
            let attempt = state.attempt.max(1);
            Step::Persist(MoveState {
                attempt,
                copy_attempt: attempt,
                ..enter(state, Phase::Copying, now)
            })
        }
        Phase::Copying | Phase::CatchingUp => copy_or_catch_up(state, obs, cancel_reason),
        Phase::CuttingOver => cutting_over(state, obs, cancel_reason),
        Phase::Cleanup => cleanup(state, obs),
    }
}

fn copy_or_catch_up(state: &MoveState, obs: &Observed, cancel: Option<&str>) -> Step {
    let now = obs.now_ms;
    if let Some(r) = cancel {
        // The partial copy goes first; the cancel is idempotent, so the next round (or leader)
        // that still sees this phase just repeats it, then persists Cancelled.
        return match &obs.pull {
            Some(_) => Step::CancelPull,
            None => Step::Persist(MoveState {
                reason: Some(r.into()),
                ..enter(state, Phase::Cancelled, now)
            }),
        };
    }
    let Some(pull) = obs
        .pull
        .as_ref()
        .filter(|p| p.copy_attempt == state.copy_attempt)
    else {
        if !obs.target_ready {
            return wait("target pod is not ready", 2000);
        }
        return Step::StartPull {
            attempt: state.attempt,
            copy_attempt: state.copy_attempt,
        };
    };
    if let Some(f) = &pull.failed {
        let failures = state.failures + 1;
        if failures >= obs.policy.max_failures {
            return Step::Persist(MoveState {
                failures,
                reason: Some(format!(
                    "pull failed {failures} times in a row, last: {}; check the source and target pods, then delete this ShardMigration to retry",
                    f.reason
                )),
                ..enter(state, Phase::Failed, now)
            });
        }
        if now < state.since_ms.saturating_add(backoff_ms(state.failures)) {
            return wait(format!("retrying after: {}", f.reason), 1000);
        }
        // A re-copy starts a new copy attempt (the target clears the ranges and takes a new
        // snapshot); any other failure resumes the same copy under a new attempt number.
        return Step::Persist(MoveState {
            attempt: state.attempt + 1,
            copy_attempt: if f.recopy {
                state.attempt + 1
            } else {
                state.copy_attempt
            },
            failures,
            reason: Some(if f.recopy {
                format!("re-copying: {}", f.reason)
            } else {
                format!("retrying: {}", f.reason)
            }),
            ..enter(state, Phase::Copying, now)
        });
    }
    if state.phase == Phase::CatchingUp && !pull.copied {
        // The target started its copy over on its own (the source's log no longer covered the
        // offset it tails from, or the source lost its snapshot): say so, with an Event.
        return Step::Persist(MoveState {
            reason: Some(format!(
                "re-copying: {}",
                pull.error
                    .as_deref()
                    .unwrap_or("the target started its copy over")
            )),
            ..enter(state, Phase::Copying, now)
        });
    }
    if state.phase == Phase::Copying {
        if pull.copied {
            return Step::Persist(MoveState {
                failures: 0,
                ..enter(state, Phase::CatchingUp, now)
            });
        }
        return wait("copying", 1000);
    }
    if obs.paused {
        return wait("migrations are paused (spec.migration.paused)", 5000);
    }
    if !obs.source_ready {
        return wait("source pod is not ready", 1000);
    }
    if !pull.verified {
        // Fencing now would only pause clients for an abort: the cutover refuses such a copy.
        return wait("the target's copy is not verified yet", 500);
    }
    if !drains_in_budget(pull, &obs.policy) {
        return wait(
            format!(
                "catching up: lag {} records, threshold {}",
                pull.lag, obs.policy.lag_threshold
            ),
            200,
        );
    }
    Step::Persist(enter(state, Phase::CuttingOver, now))
}

/// Cut over only when the lag is under the threshold and the measured apply rate drains it
/// within half the write-pause budget (the other half covers commit and placement push).
pub fn drains_in_budget(pull: &PullView, policy: &PhasePolicy) -> bool {
    if pull.lag > policy.lag_threshold {
        return false;
    }
    if pull.lag == 0 {
        return true;
    }
    if pull.apply_rate == 0 {
        return false;
    }
    let drain_ms = pull.lag.saturating_mul(1000) / pull.apply_rate;
    drain_ms <= policy.write_pause_budget_ms / 2
}

fn cutting_over(state: &MoveState, obs: &Observed, cancel: Option<&str>) -> Step {
    let now = obs.now_ms;
    match obs.cutover {
        // Not started for this attempt: unless cancelled, run it.
        None => match cancel {
            Some(r) => Step::Persist(MoveState {
                reason: Some(r.into()),
                ..enter(state, Phase::CatchingUp, now)
            }),
            None => Step::Cutover {
                attempt: state.attempt,
            },
        },
        // Found half-done (the leader that started it is gone, or it is a stale attempt):
        // nobody is waiting on this fence any more, so abort it; a new attempt follows.
        Some(CutoverState::Committing) => Step::RecordAbort {
            attempt: state.attempt,
        },
        // The abort is on record: only now may the source's fence be lifted.
        Some(CutoverState::Aborted) => Step::Unfence {
            attempt: state.attempt,
        },
        // Committed but the transfer does not show it: the record is ahead of this view; roll
        // forward as soon as the placement is re-read.
        Some(CutoverState::Committed) => wait("commit recorded, re-reading placement", 100),
    }
}

/// After an unfence of an aborted attempt: back to catching up with a new attempt.
pub fn after_abort(state: &MoveState, now_ms: u64, reason: &str) -> MoveState {
    MoveState {
        attempt: state.attempt + 1,
        failures: state.failures + 1,
        reason: Some(reason.to_string()),
        ..enter(state, Phase::CatchingUp, now_ms)
    }
}

fn cleanup(state: &MoveState, obs: &Observed) -> Step {
    let now = obs.now_ms;
    if !obs.all_acked_commit {
        // Before the target's pull ends: while it runs no drop of those ranges passes on the
        // target, and once the target runs the commit epoch it owns them (rule 14).
        return Step::PushPlacement;
    }
    if obs.target_pulling {
        return Step::EndPull;
    }
    if obs.source_gone {
        // Scale-in removed the source after its ranges moved: its volume keeps a stale copy that
        // is never served (it owns nothing) and that a future copy to it clears first.
        return Step::Persist(MoveState {
            reason: Some("the source member was removed; nothing left to drop".into()),
            ..enter(state, Phase::Completed, now)
        });
    }
    let committed_at = state.committed_at_ms.unwrap_or(state.since_ms);
    let drop_at = committed_at.saturating_add(obs.policy.source_retention_ms);
    if now < drop_at {
        return wait("keeping the source copy for sourceRetention", drop_at - now);
    }
    match &obs.drop {
        None => wait(
            "waiting for a drop slot (maxConcurrentMoves drops at a time)",
            2000,
        ),
        Some(r) if r.is_empty() => Step::Persist(MoveState {
            reason: Some(
                "the moved ranges came back to the source (or it owns them again); nothing to drop"
                    .into(),
            ),
            ..enter(state, Phase::Completed, now)
        }),
        Some(r) => Step::DropSource { ranges: r.clone() },
    }
}

/// After the source dropped its copy.
pub fn after_drop(state: &MoveState, now_ms: u64) -> MoveState {
    enter(state, Phase::Completed, now_ms)
}

#[cfg(test)]
mod tests;
