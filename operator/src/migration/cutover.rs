//! The cutover of one move, run start to finish within one reconcile because its duration is
//! the clients' write pause: record Committing, fence the source, wait until the target applied
//! everything up to the fence offset, then commit the new owner in ShardPlacement status (with
//! a resourceVersion precondition) and tell the target first, everyone else next. When the
//! budget runs out or anything is unclear, the abort is recorded first and only then is the
//! source unfenced (rule 4): clients saw a pause, nothing was lost, nobody owned a range twice.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use ringshift_node_api::{Caller, FenceRequest, Offset, UnfenceRequest};
use ringshift_ring::Placement;

use super::convert::{
    cutover_blocker, cutover_of, cutover_ready, pull_covers, ranges_of, same_ranges, uid_of,
};
use super::drive::VERIFY_COPIES;
use super::env::Env;
use super::failpoints;
use super::nodes::{CALL_TIMEOUT, Nodes, describe};
use super::placement_io::{
    RecordEdit, Writer, Written, placement_of, set_placement, set_record, update,
    update_known_returning, update_returning,
};
use super::{Error, record_acks};
use crate::crd::{CutoverState, ShardMigration};
use crate::k8s;
use ringshift_planner::moves::ring_id;

/// How the cutover ended.
#[derive(Debug)]
pub enum Outcome {
    /// The new owner is committed at `epoch`; `pause` is fence to target serving (None when the
    /// target could not be told at once; it is told again until it acknowledges).
    Committed {
        epoch: u64,
        pause: Option<Duration>,
        fence: Offset,
        stages: Stages,
    },
    /// The abort is recorded and the source unfenced; catch up and try again.
    Aborted { reason: String },
    /// Nothing was fenced: the transfer is no longer planned or the record could not be taken.
    NotStarted { reason: String },
}

/// Where a committed cutover's write pause went (the pause is their sum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stages {
    /// The fence call on the source.
    pub fence: Duration,
    /// Waiting until the target applied up to the fence offset.
    pub drain: Duration,
    /// Re-reading ShardPlacement and writing the commit (the API server's round trips).
    pub commit: Duration,
    /// Installing the new placement on the target.
    pub push: Duration,
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fence {} ms, drain {} ms, commit {} ms, push {} ms",
            self.fence.as_millis(),
            self.drain.as_millis(),
            self.commit.as_millis(),
            self.push.as_millis()
        )
    }
}

fn caller(env: &Env, mig: &ShardMigration, epoch: u64, attempt: u32) -> Caller {
    Caller {
        cluster_uid: env.cluster_uid(),
        epoch,
        migration_uid: uid_of(mig),
        attempt: u64::from(attempt),
    }
}

/// Whether the move's transfer is still pending in `p` (same target ring, not committed).
fn still_planned(p: &Placement, mig: &ShardMigration) -> Result<bool, Error> {
    let Some(target) = p.target() else {
        return Ok(false);
    };
    if ring_id(target) != mig.spec.target_ring {
        return Ok(false);
    }
    // The move's ranges must be its transfer's: spec.ranges can be edited, and committing a
    // transfer whose ranges were not all copied would lose their data.
    let mine = ranges_of(&mig.spec.ranges)?;
    Ok(p.pending_transfers()?.iter().any(|t| {
        t.source == mig.spec.source && t.target == mig.spec.target && same_ranges(&t.ranges, &mine)
    }))
}

/// Runs the cutover of `mig` for `attempt`, on the target's copy of `copy_attempt`.
pub async fn run(
    env: &Env,
    nodes: &Nodes,
    mig: &ShardMigration,
    attempt: u32,
    copy_attempt: u32,
) -> Result<Outcome, Error> {
    let w = env.writer();
    let uid = uid_of(mig);
    let moving = ranges_of(&mig.spec.ranges)?;
    let ranges: Vec<_> = moving.iter().copied().collect();
    let (Some(source), Some(target)) = (
        nodes.client(&mig.spec.source),
        nodes.client(&mig.spec.target),
    ) else {
        return Ok(Outcome::NotStarted {
            reason: "source or target has no address".into(),
        });
    };

    // 1. Record the attempt as Committing: from here on, only a recorded abort lifts the fence.
    let mut planned = true;
    let mut epoch = 0;
    let written = update_returning(&w, |st| {
        let Some(p) = placement_of(st)? else {
            planned = false;
            return Ok(false);
        };
        if !still_planned(&p, mig)? {
            planned = false;
            return Ok(false);
        }
        epoch = p.epoch();
        match set_record(st, &uid, attempt, CutoverState::Committing) {
            RecordEdit::Written => Ok(true),
            RecordEdit::Unchanged => Ok(false),
            // A newer attempt or a decision is on record: this attempt must not fence.
            RecordEdit::Refused { .. } => {
                planned = false;
                Ok(false)
            }
        }
    })
    .await;
    let recorded = match written {
        Ok(_) if !planned => {
            return Ok(Outcome::NotStarted {
                reason: "the transfer is no longer part of the change in flight, the \
                         move's ranges differ from it (spec.ranges edited?), or a newer \
                         cutover record of the move stands"
                    .into(),
            });
        }
        Ok((_, obj)) => {
            failpoints::hit("cutover.recorded");
            obj
        }
        Err(Error::Api(k8s::Error::Conflict(m))) => return Ok(Outcome::NotStarted { reason: m }),
        Err(e) => return Err(e),
    };
    let who = caller(env, mig, epoch, attempt);
    let budget = env.limits.write_pause_budget;

    // 2. Fence the source. An error here is ambiguous (the fence may be in place): abort.
    let mut stages = Stages::default();
    let fenced_at = Instant::now();
    let fence = match tokio::time::timeout(
        CALL_TIMEOUT,
        source.fence(&FenceRequest {
            caller: who.clone(),
            ranges: ranges.clone(),
        }),
    )
    .await
    {
        Ok(Ok(f)) => {
            stages.fence = fenced_at.elapsed();
            failpoints::hit("cutover.fenced");
            f.fence_offset
        }
        Ok(Err(e)) => {
            return abort(
                &w,
                &uid,
                attempt,
                &source,
                &who,
                format!("fence failed: {}", describe(&e)),
            )
            .await;
        }
        Err(_) => {
            return abort(&w, &uid, attempt, &source, &who, "fence timed out".into()).await;
        }
    };

    // 3. Wait until the target applied everything up to the fence offset, within the budget,
    // on a verified pull of this copy that is catching up (rule 16; else abort at once).
    loop {
        if let Ok(Ok(s)) = tokio::time::timeout(budget, target.pull(&uid)).await {
            if let Some(reason) = cutover_blocker(&s, copy_attempt, VERIFY_COPIES) {
                return abort(&w, &uid, attempt, &source, &who, reason).await;
            }
            if cutover_ready(&s, &fence, copy_attempt, VERIFY_COPIES) {
                if !pull_covers(&s, &moving) {
                    let reason = "the target's copy covers other ranges than the move (its \
                                  spec.ranges changed after the copy started); not committing"
                        .to_string();
                    return abort(&w, &uid, attempt, &source, &who, reason).await;
                }
                break;
            }
        }
        if fenced_at.elapsed() >= budget {
            let reason = format!(
                "the target did not apply up to the fence offset within the write-pause budget ({} ms)",
                budget.as_millis()
            );
            return abort(&w, &uid, attempt, &source, &who, reason).await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stages.drain = fenced_at.elapsed().saturating_sub(stages.fence);
    let commit_at = Instant::now();
    failpoints::hit("cutover.drained");

    // 4. Commit: check our record still stands and flip the owner, on the object our record
    // write returned (its resourceVersion is the precondition; re-read when it moved on).
    let mut lost = false;
    let mut committed: Option<Placement> = None;
    let written = update_known_returning(&w, recorded, |st| {
        lost = false;
        committed = None;
        let Some(p) = placement_of(st)? else {
            lost = true;
            return Ok(false);
        };
        if cutover_of(&st.cutovers, &uid, attempt)
            != Some(ringshift_planner::CutoverState::Committing)
            || !still_planned(&p, mig)?
        {
            lost = true;
            return Ok(false);
        }
        if set_record(st, &uid, attempt, CutoverState::Committed) != RecordEdit::Written {
            lost = true;
            return Ok(false);
        }
        let next = p.commit(&mig.spec.source, &mig.spec.target)?;
        set_placement(st, &next)?;
        committed = Some(next);
        Ok(true)
    })
    .await;
    let (next, written_obj) = match (written, committed) {
        (Ok((Written::Done, obj)), Some(next)) => {
            failpoints::hit("cutover.committed");
            (next, obj)
        }
        (Ok(_), _) | (Err(Error::Api(k8s::Error::Conflict(_))), _) => {
            let reason = if lost {
                "the cutover record changed under this leader".to_string()
            } else {
                "the placement changed during the cutover".to_string()
            };
            return abort(&w, &uid, attempt, &source, &who, reason).await;
        }
        (Err(e), _) => {
            // Unknown whether the write landed: leave the fence; the next round reads the
            // record and either rolls forward (Committed) or aborts (Committing).
            return Err(e);
        }
    };

    stages.commit = commit_at.elapsed();

    // 5. Tell the target first (that ends the pause), then everyone else.
    let body = nodes.install(&next, env, env.incarnations());
    let push_at = Instant::now();
    let pause = match nodes.push_one(&mig.spec.target, &body).await {
        Ok(_) => {
            let pause = fenced_at.elapsed();
            stages.push = push_at.elapsed();
            failpoints::hit("cutover.target-serving");
            Some(pause)
        }
        Err(e) => {
            tracing::warn!(migration = %mig.name_any(), error = %e, "committed, but the target did not take the placement yet");
            None
        }
    };
    // Members whose pod is not Ready would only hold this round for CALL_TIMEOUT; the rounds
    // after push them once they are Ready (nodes::due_for_push).
    let others: Vec<String> = nodes
        .endpoints
        .keys()
        .filter(|m| **m != mig.spec.target && env.ready(m))
        .cloned()
        .collect();
    let mut answers = nodes.push_many(&others, &body).await;
    failpoints::hit("cutover.pushed");
    if pause.is_some() {
        answers.insert(
            mig.spec.target.clone(),
            Ok(ringshift_node_api::PlacementAccepted {
                epoch: next.epoch(),
                incarnation: String::new(),
                degraded: None,
            }),
        );
    }
    // On the object the commit returned: one request, no read (a conflict reads afresh).
    match record_acks(&w, Some(written_obj), &answers).await {
        Ok(()) => failpoints::hit("cutover.acked"),
        Err(e) => tracing::debug!(error = %e, "acks not recorded yet"),
    }
    Ok(Outcome::Committed {
        epoch: next.epoch(),
        pause,
        fence,
        stages,
    })
}

/// Records the abort, then (only then) lifts the source's fence.
pub(super) async fn abort(
    w: &Writer,
    uid: &str,
    attempt: u32,
    source: &ringshift_node_api::client::AdminClient,
    who: &Caller,
    reason: String,
) -> Result<Outcome, Error> {
    let mut refused = None;
    update(w, |st| {
        refused = None;
        match set_record(st, uid, attempt, CutoverState::Aborted) {
            RecordEdit::Written => Ok(true),
            RecordEdit::Unchanged => Ok(false),
            RecordEdit::Refused { attempt, state } => {
                refused = Some((attempt, state));
                Ok(false)
            }
        }
    })
    .await?;
    if let Some((newer, state)) = refused {
        // A commit (of any attempt) rolls forward; a newer attempt's record means this attempt
        // was aborted and released already. Either way this replica is behind: no unfence.
        tracing::warn!(migration_uid = %uid, attempt, recorded_attempt = newer, recorded = ?state, "not recording the abort: a record that only moves forward stands");
        return Err(Error::conflict(format!(
            "attempt {newer} of the move is recorded {state:?}; not aborting attempt {attempt}"
        )));
    }
    failpoints::hit("abort.recorded");
    unfence(source, who).await?;
    failpoints::hit("abort.unfenced");
    Ok(Outcome::Aborted { reason })
}

/// Lifts the fence of `who.attempt` (idempotent on the node).
pub async fn unfence(
    source: &ringshift_node_api::client::AdminClient,
    who: &Caller,
) -> Result<(), Error> {
    match tokio::time::timeout(
        CALL_TIMEOUT,
        source.unfence(&UnfenceRequest {
            caller: who.clone(),
        }),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Node(format!("unfence: {}", describe(&e)))),
        Err(_) => Err(Error::Node("unfence timed out".into())),
    }
}
