//! Drives one ShardMigration: observes, asks the pure phase machine for the next step, carries
//! it out, and persists every phase change before acting on it (rule 6).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use ringshift_node_api::{Caller, ErrorReason, PullPhase, StartPull};
use ringshift_planner::eta::{catch_up_eta_seconds, eta_seconds, format_eta, percent};
use ringshift_planner::phase::{Observed, after_abort, after_drop, next_step};
use ringshift_planner::room::{RoomCheck, RoomPolicy, check_room};
use ringshift_planner::{MoveState, Phase, Plan, Step, TransferState};

use super::convert::{
    apply_state, committed_record, cutover_of, drop_request, move_state, offset_text, pull_view,
    ranges_of, settle_progress, uid_of,
};
use super::cutover::{self, Outcome};
use super::env::Env;
use super::failpoints;
use super::follow;
use super::metrics::PhaseTimeLabels;
use super::nodes::{CALL_TIMEOUT, NodeCallError, Nodes, describe};
use super::placement_io::{RecordEdit, set_record, update};
use super::{DriverCtx, Error, sync_nodes};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cluster::conditions::{DesiredCondition, Status, find, set_condition};
use crate::crd::{CutoverState, MigrationProgress, ShardMigration};

/// Annotation that cancels a move before its commit.
pub const CANCEL_ANNOTATION: &str = "ringshift.dev/cancel";

/// How long a source may take to drop a moved copy (it deletes every key of the ranges).
const DROP_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether copies are verified (range checksums after the copy, before catch-up, rule 10); the
/// cutover then requires a verified pull (rule 16).
pub const VERIFY_COPIES: bool = true;

/// Steps one move may take in one round before yielding to the others.
const MAX_STEPS: usize = 8;

/// When to look again after a node call failed or a member has no address yet.
const RETRY_AFTER: Duration = Duration::from_secs(2);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn cancel_requested(mig: &ShardMigration) -> bool {
    mig.annotations()
        .get(CANCEL_ANNOTATION)
        .is_some_and(|v| v != "false")
}

/// Whether the move's transfer is committed, still pending, or gone from the plan.
fn transfer_state(env: &Env, mig: &ShardMigration) -> TransferState {
    let uid = uid_of(mig);
    let Some(p) = &env.placement else {
        return TransferState::Gone;
    };
    let records = env
        .placement_obj
        .status
        .as_ref()
        .map(|s| s.cutovers.as_slice())
        .unwrap_or_default();
    if committed_record(records, &uid) {
        return TransferState::Committed { epoch: p.epoch() };
    }
    let planned = p.target().is_some_and(|t| {
        ringshift_planner::moves::ring_id(t) == mig.spec.target_ring
            && p.pending_transfers().is_ok_and(|ts| {
                ts.iter()
                    .any(|t| t.source == mig.spec.source && t.target == mig.spec.target)
            })
    });
    if planned {
        TransferState::Pending
    } else {
        TransferState::Gone
    }
}

/// A ShardMigration being driven, with its latest persisted copy.
struct Driven {
    obj: ShardMigration,
    state: MoveState,
}

impl Driven {
    fn caller(&self, env: &Env, attempt: u32) -> Caller {
        Caller {
            cluster_uid: env.cluster_uid(),
            epoch: env.placement.as_ref().map(|p| p.epoch()).unwrap_or(0),
            migration_uid: uid_of(&self.obj),
            attempt: u64::from(attempt),
        }
    }
}

/// Cancels the target's active pulls that overlap `ranges` and belong to no unfinished
/// ShardMigration of this cluster; returns how many it cancelled.
async fn cancel_abandoned_pulls(
    env: &Env,
    target: &ringshift_node_api::client::AdminClient,
    ranges: &[ringshift_node_api::HashRange],
) -> usize {
    let live: std::collections::BTreeSet<String> = env
        .migrations
        .iter()
        .filter(|m| {
            !matches!(
                m.status.as_ref().map(|s| s.phase),
                Some(
                    crate::crd::MigrationPhase::Completed
                        | crate::crd::MigrationPhase::Cancelled
                        | crate::crd::MigrationPhase::Failed
                )
            )
        })
        .map(uid_of)
        .collect();
    let Ok(Ok(pulls)) = tokio::time::timeout(CALL_TIMEOUT, target.pulls()).await else {
        return 0;
    };
    let mut ended = 0;
    for p in pulls.iter().filter(|p| {
        !matches!(
            p.phase,
            PullPhase::Cancelled | PullPhase::Failed | PullPhase::Completed
        ) && !live.contains(&p.migration_uid)
            && p.ranges
                .iter()
                .any(|a| ranges.iter().any(|b| a.start <= b.end && b.start <= a.end))
    }) {
        let who = Caller {
            cluster_uid: env.cluster_uid(),
            epoch: env.placement.as_ref().map(|p| p.epoch()).unwrap_or(0),
            migration_uid: p.migration_uid.clone(),
            attempt: p.attempt,
        };
        if let Ok(Ok(_)) = tokio::time::timeout(CALL_TIMEOUT, target.cancel_pull(&who)).await {
            tracing::warn!(cluster = %env.name, migration_uid = %p.migration_uid, "cancelled a pull whose move no longer exists");
            ended += 1;
        }
    }
    ended
}

/// Drives `mig` until it has to wait; returns when to look again.
pub async fn drive(
    dctx: &DriverCtx,
    env: &Env,
    nodes: &Nodes,
    mig: &ShardMigration,
    plan: &Plan,
) -> Result<Duration, Error> {
    let mut d = Driven {
        obj: mig.clone(),
        state: move_state(mig.status.as_ref()),
    };
    for _ in 0..MAX_STEPS {
        let obs = observe(dctx, env, nodes, &d, plan).await;
        let step = next_step(&d.state, &obs.observed);
        tracing::debug!(migration = %d.obj.name_any(), phase = ?d.state.phase, ?step, "step");
        match step {
            Step::Persist(next) => persist(dctx, env, &mut d, next, &obs).await?,
            Step::Wait { reason, after_ms } => {
                note_progress(dctx, env, &mut d, &obs, Some(reason)).await?;
                let asked = Duration::from_millis(after_ms.min(10_000));
                let looks = dctx.looks.next(&uid_of(&d.obj), d.state.phase);
                return Ok(follow::wait(d.state.phase, asked, looks));
            }
            Step::StartPull {
                attempt: _,
                copy_attempt,
            } => {
                let (Some(target), Some(source)) = (
                    nodes.client(&d.obj.spec.target),
                    nodes.endpoints.get(&d.obj.spec.source),
                ) else {
                    return Ok(RETRY_AFTER);
                };
                let body = StartPull {
                    caller: d.caller(env, copy_attempt),
                    source: source.clone(),
                    ranges: ranges_of(&d.obj.spec.ranges)?.iter().copied().collect(),
                    bytes_per_sec: env.limits.bandwidth,
                    verify: VERIFY_COPIES,
                };
                match tokio::time::timeout(CALL_TIMEOUT, target.start_pull(&body)).await {
                    Ok(Ok(_)) => failpoints::hit("pull.started"),
                    Ok(Err(e)) if e.reason() == Some(ErrorReason::Conflict) => {
                        // Another pull fills these ranges. If it belongs to no live move (its
                        // ShardMigration was deleted or has finished), nobody will ever end
                        // it: cancel it, and our pull (which clears the ranges) goes next.
                        let ended = cancel_abandoned_pulls(env, &target, &body.ranges).await;
                        let why = format!(
                            "starting the pull on the target: {}{}",
                            describe(&e),
                            if ended > 0 {
                                format!(
                                    " (cancelled {ended} pull(s) of moves that no longer exist)"
                                )
                            } else {
                                String::new()
                            }
                        );
                        note_progress(dctx, env, &mut d, &obs, Some(why)).await?;
                        return Ok(Duration::from_millis(if ended > 0 { 200 } else { 2000 }));
                    }
                    Ok(Err(e)) => {
                        let why = format!("starting the pull on the target: {}", describe(&e));
                        return retry_later(dctx, env, &mut d, &obs, why).await;
                    }
                    Err(_) => return Ok(Duration::from_secs(2)),
                }
            }
            Step::CancelPull => {
                if let Some(target) = nodes.client(&d.obj.spec.target) {
                    let who = d.caller(env, d.state.copy_attempt);
                    match tokio::time::timeout(CALL_TIMEOUT, target.cancel_pull(&who)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) if e.reason() == Some(ErrorReason::NotFound) => {}
                        _ => return Ok(Duration::from_secs(2)),
                    }
                    // Remove the partial copy (it is never served, but it takes room). The
                    // node refuses if it owns the ranges or another pull fills them; owning
                    // them means there is nothing of ours to remove.
                    let Some(body) = drop_request(&who, &ranges_of(&d.obj.spec.ranges)?) else {
                        return Ok(RETRY_AFTER);
                    };
                    match tokio::time::timeout(CALL_TIMEOUT, target.drop_ranges(&body)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) if e.reason() == Some(ErrorReason::Owned) => {}
                        Ok(Err(e)) => {
                            let why =
                                format!("removing the target's partial copy: {}", describe(&e));
                            return retry_later(dctx, env, &mut d, &obs, why).await;
                        }
                        Err(_) => return Ok(Duration::from_secs(2)),
                    }
                }
                let next = MoveState {
                    phase: Phase::Cancelled,
                    reason: Some("cancelled before the commit; nothing changed owner".into()),
                    since_ms: now_ms(),
                    ..d.state.clone()
                };
                persist(dctx, env, &mut d, next, &obs).await?;
                return Ok(Duration::from_millis(100));
            }
            Step::Cutover { attempt } => {
                let step = Instant::now();
                let outcome =
                    cutover::run(env, nodes, &d.obj, attempt, d.state.copy_attempt).await?;
                dctx.base
                    .metrics
                    .observe_step(super::CONTROLLER, "cutover", step.elapsed());
                return after_cutover(dctx, env, &mut d, &obs, outcome).await;
            }
            Step::RecordAbort { attempt } => {
                let uid = uid_of(&d.obj);
                // Only forward: a commit or a newer attempt's record stands, and the next round
                // reads it (and rolls forward, or finds this attempt stale).
                update(&env.writer(), |st| {
                    Ok(set_record(st, &uid, attempt, CutoverState::Aborted) == RecordEdit::Written)
                })
                .await?;
                failpoints::hit("abort.recorded");
                // The record changed: re-read everything next round.
                return Ok(Duration::from_millis(50));
            }
            Step::Unfence { attempt } => {
                let Some(source) = nodes.client(&d.obj.spec.source) else {
                    return Ok(RETRY_AFTER);
                };
                cutover::unfence(&source, &d.caller(env, attempt)).await?;
                failpoints::hit("abort.unfenced");
                let next = after_abort(&d.state, now_ms(), "an interrupted cutover was aborted");
                persist(dctx, env, &mut d, next, &obs).await?;
            }
            Step::EndPull => {
                let Some(target) = nodes.client(&d.obj.spec.target) else {
                    return Ok(RETRY_AFTER);
                };
                let who = d.caller(env, d.state.attempt);
                match tokio::time::timeout(CALL_TIMEOUT, target.cancel_pull(&who)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) if e.reason() == Some(ErrorReason::NotFound) => {}
                    Ok(Err(e)) => {
                        let why = format!("ending the target's pull: {}", describe(&e));
                        return retry_later(dctx, env, &mut d, &obs, why).await;
                    }
                    Err(_) => return Ok(Duration::from_secs(2)),
                }
                // Observe again: the next step sees the pull ended.
            }
            Step::PushPlacement => {
                if let Some(p) = &env.placement {
                    sync_nodes(env, nodes, p, &dctx.pushed).await?;
                }
                return Ok(Duration::from_millis(500));
            }
            Step::DropSource { ranges } => {
                let Some(source) = nodes.client(&d.obj.spec.source) else {
                    return Ok(RETRY_AFTER);
                };
                let who = d.caller(env, d.state.attempt);
                let Some(body) = drop_request(&who, &ranges) else {
                    return Ok(RETRY_AFTER);
                };
                // A large drop takes seconds: it runs on its own so that this round goes on
                // driving the other moves; later rounds collect its answer (idempotent, so a new
                // leader simply asks again).
                let uid = uid_of(&d.obj);
                let answer = {
                    let mut drops = dctx.drops.lock().unwrap_or_else(|p| p.into_inner());
                    match drops.get(&uid) {
                        Some(task) if task.is_finished() => drops.remove(&uid),
                        Some(_) => return Ok(Duration::from_millis(500)),
                        None => {
                            failpoints::hit("drop.before");
                            let task = tokio::spawn(async move {
                                match tokio::time::timeout(DROP_TIMEOUT, source.drop_ranges(&body))
                                    .await
                                {
                                    Ok(Ok(_)) => Ok(()),
                                    Ok(Err(e)) => Err(NodeCallError::Client(e)),
                                    Err(_) => Err(NodeCallError::NoAnswer(DROP_TIMEOUT)),
                                }
                            });
                            drops.insert(uid.clone(), task);
                            return Ok(Duration::from_millis(500));
                        }
                    }
                };
                let result = match answer {
                    Some(task) => task.await.unwrap_or_else(|e| Err(e.into())),
                    None => return Ok(Duration::from_millis(500)),
                };
                match result {
                    Ok(()) => {
                        failpoints::hit("drop.done");
                        let next = after_drop(&d.state, now_ms());
                        persist(dctx, env, &mut d, next, &obs).await?;
                        return Ok(Duration::from_secs(10));
                    }
                    Err(e) => {
                        let why = format!("dropping the source copy: {e}");
                        note_progress(dctx, env, &mut d, &obs, Some(why)).await?;
                        return Ok(Duration::from_secs(5));
                    }
                }
            }
        }
    }
    Ok(Duration::from_millis(50))
}

/// What one round saw, for the phase machine and for status.
struct Observation {
    observed: Observed,
    pull: Option<ringshift_node_api::PullStatus>,
    /// Bytes the move is estimated to carry (measured before Copying).
    estimate: Option<u64>,
    /// Time left in Copying or CatchingUp, e.g. `42s`.
    eta: Option<String>,
}

/// Type of the ShardMigration condition that reports the pre-flight room check.
pub const ROOM_CONDITION: &str = "TargetHasRoom";

/// The room check of a move that is about to copy (only asked when it may start).
async fn check_target_room(nodes: &Nodes, mig: &ShardMigration) -> (Option<u64>, RoomCheck) {
    let (Some(source), Some(target)) = (
        nodes.client(&mig.spec.source),
        nodes.client(&mig.spec.target),
    ) else {
        return (None, RoomCheck::Unknown);
    };
    let Ok(ranges) = ranges_of(&mig.spec.ranges) else {
        return (None, RoomCheck::Unknown);
    };
    let moving: Vec<_> = ranges.iter().copied().collect();
    let (estimate, room) = futures::join!(
        super::room::estimate_of(&source, &moving),
        super::room::room_of(&target)
    );
    (estimate, check_room(estimate, room, &RoomPolicy::default()))
}

/// ETA of a move in Copying (from the copy rate and the estimate) or CatchingUp (from the rate
/// at which the lag shrinks), measured across rounds.
fn eta_of(
    dctx: &DriverCtx,
    d: &Driven,
    pull: &ringshift_node_api::PullStatus,
    lag_threshold: u64,
    now: u64,
) -> Option<u64> {
    let uid = uid_of(&d.obj);
    match d.state.phase {
        Phase::Copying => {
            let rate = dctx.meter(&uid, "bytes", pull.bytes_copied, now)?;
            let estimate = estimate_in_status(&d.obj)?;
            (rate >= 1.0).then(|| eta_seconds(pull.bytes_copied, estimate, rate as u64))?
        }
        Phase::CatchingUp => {
            let lag = pull.lag?;
            let rate = dctx.meter(&uid, "lag", lag, now).unwrap_or(0.0);
            catch_up_eta_seconds(lag, lag_threshold, -rate)
        }
        _ => None,
    }
}

fn estimate_in_status(m: &ShardMigration) -> Option<u64> {
    m.status
        .as_ref()?
        .progress
        .as_ref()?
        .estimated_bytes
        .as_deref()?
        .parse()
        .ok()
}

async fn observe(
    dctx: &DriverCtx,
    env: &Env,
    nodes: &Nodes,
    d: &Driven,
    plan: &Plan,
) -> Observation {
    let uid = uid_of(&d.obj);
    let records = env
        .placement_obj
        .status
        .as_ref()
        .map(|s| s.cutovers.as_slice())
        .unwrap_or_default();
    let wants_pull = matches!(
        d.state.phase,
        Phase::Copying | Phase::CatchingUp | Phase::Cleanup
    );
    let mut pull = None;
    if wants_pull
        && let Some(target) = nodes.client(&d.obj.spec.target)
        && let Ok(Ok(s)) = tokio::time::timeout(CALL_TIMEOUT, target.pull(&uid)).await
    {
        pull = Some(s);
    }
    let target_pulling = d.state.phase == Phase::Cleanup
        && pull.as_ref().is_some_and(|s| {
            !matches!(
                s.phase,
                PullPhase::Completed | PullPhase::Cancelled | PullPhase::Failed
            )
        });
    let view = pull
        .as_ref()
        .filter(|s| s.phase != ringshift_node_api::PullPhase::Cancelled)
        .map(|s| pull_view(s, dctx.apply_rate(&uid, s), VERIFY_COPIES));
    let now = now_ms();
    let (estimate, room) = if d.state.phase == Phase::Pending
        && plan.may_start.contains(&d.obj.name_any())
        && env.ready(&d.obj.spec.source)
        && env.ready(&d.obj.spec.target)
    {
        check_target_room(nodes, &d.obj).await
    } else {
        (None, RoomCheck::Unknown)
    };
    let eta = pull
        .as_ref()
        .and_then(|p| eta_of(dctx, d, p, env.limits.phase.lag_threshold, now))
        .map(format_eta);
    let committed_epoch = d.state.committed_epoch.unwrap_or(u64::MAX);
    let all_acked_commit =
        !env.members.is_empty() && env.members.keys().all(|m| env.acked(m) >= committed_epoch);
    Observation {
        observed: Observed {
            now_ms: now,
            policy: env.limits.phase.clone(),
            cancel_requested: cancel_requested(&d.obj),
            paused: env.limits.paused,
            may_start: plan.may_start.contains(&d.obj.name_any()),
            source_ready: env.ready(&d.obj.spec.source),
            target_ready: env.ready(&d.obj.spec.target),
            transfer: transfer_state(env, &d.obj),
            cutover: cutover_of(records, &uid, d.state.attempt),
            pull: view,
            all_acked_commit,
            source_gone: !env.members.contains_key(&d.obj.spec.source)
                && env
                    .placement
                    .as_ref()
                    .and_then(|p| p.members().ok())
                    .is_some_and(|ms| !ms.contains(&d.obj.spec.source)),
            target_pulling,
            drop: plan.drops.get(&d.obj.name_any()).cloned(),
            room,
            target: d.obj.spec.target.clone(),
        },
        pull,
        estimate,
        eta,
    }
}

fn progress_of(
    s: &ringshift_node_api::PullStatus,
    copied: bool,
    estimate: Option<u64>,
) -> MigrationProgress {
    let done = match (copied, estimate) {
        (true, _) => 100,
        // Never 100 before the copy says so: the estimate is only an estimate.
        (false, Some(e)) => i32::from(percent(s.bytes_copied, e)).min(99),
        (false, None) => 0,
    };
    MigrationProgress {
        keys: s.keys_copied.to_string(),
        bytes: s.bytes_copied.to_string(),
        percent: done,
        estimated_bytes: estimate.map(|e| e.to_string()),
    }
}

/// Fills the status fields that come from observation (not from the phase machine).
fn fill_observed(status: &mut crate::crd::ShardMigrationStatus, obs: &Observation) {
    let estimate = obs.estimate.or_else(|| {
        status
            .progress
            .as_ref()
            .and_then(|p| p.estimated_bytes.as_deref())
            .and_then(|e| e.parse().ok())
    });
    if let Some(s) = &obs.pull {
        let copied = obs.observed.pull.as_ref().is_some_and(|v| v.copied);
        status.progress = Some(progress_of(s, copied, estimate));
        status.lag = s.lag.map(|l| l.to_string());
        if let Some(o) = &s.snapshot_offset {
            status.snapshot_offset = Some(offset_text(o));
        }
    } else if let Some(e) = obs.estimate {
        let p = status.progress.get_or_insert_with(|| MigrationProgress {
            keys: "0".into(),
            bytes: "0".into(),
            percent: 0,
            estimated_bytes: None,
        });
        p.estimated_bytes = Some(e.to_string());
    }
    status.eta = obs.eta.clone();
    let room = match &obs.observed.room {
        RoomCheck::Fits => Some((
            Status::True,
            "Fits",
            "the target has room for the estimated bytes".to_string(),
        )),
        check @ RoomCheck::TooSmall { .. } => Some((
            Status::False,
            "InsufficientSpace",
            check.reason(&obs.observed.target).unwrap_or_default(),
        )),
        RoomCheck::Unknown => None,
    };
    if let Some((st, reason, message)) = room {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        set_condition(
            &mut status.conditions,
            &DesiredCondition::new(ROOM_CONDITION, st, reason, message),
            status.observed_generation,
            &now,
        );
    }
}

/// The message of the room condition when it just turned False (a Warning Event is due).
fn room_turned_false(
    before: &crate::crd::ShardMigrationStatus,
    after: &crate::crd::ShardMigrationStatus,
) -> Option<String> {
    let is_false = |s: &crate::crd::ShardMigrationStatus| {
        find(&s.conditions, ROOM_CONDITION)
            .filter(|c| c.status == "False")
            .map(|c| c.message.clone())
    };
    match (is_false(before), is_false(after)) {
        (None, Some(m)) => Some(m),
        _ => None,
    }
}

/// Writes the move's status with its resourceVersion as precondition, and remembers what was
/// written until the cache shows it (`own_writes`).
async fn write(dctx: &DriverCtx, env: &Env, d: &mut Driven) -> Result<(), Error> {
    let api: Api<ShardMigration> = Api::namespaced(env.client.clone(), &env.ns);
    let name = d.obj.name_any();
    let replaced = d.obj.resource_version();
    match api
        .replace_status(&name, &PostParams::default(), &d.obj)
        .await
    {
        Ok(o) => {
            dctx.own.record(&o, replaced.as_deref());
            d.obj = o;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            dctx.own.forget(&d.obj);
            Err(Error::conflict(format!(
                "ShardMigration {name} changed since it was read"
            )))
        }
        Err(e) => {
            dctx.own.forget(&d.obj);
            Err(Error::kube(
                format!("writing ShardMigration {name} status"),
                e,
            ))
        }
    }
}

async fn persist(
    dctx: &DriverCtx,
    env: &Env,
    d: &mut Driven,
    next: MoveState,
    obs: &Observation,
) -> Result<(), Error> {
    let before = d.state.phase;
    let mut status = d.obj.status.clone().unwrap_or_default();
    apply_state(&mut status, &next);
    fill_observed(&mut status, obs);
    settle_progress(&mut status);
    status.observed_generation = d.obj.metadata.generation;
    d.obj.status = Some(status);
    write(dctx, env, d).await?;
    if before != next.phase
        && let Some(point) = failpoints::after_persist(next.phase)
    {
        failpoints::hit(point);
    }
    if before != next.phase {
        let spent = now_ms().saturating_sub(d.state.since_ms) as f64 / 1000.0;
        if d.state.since_ms > 0 {
            dctx.base
                .metrics
                .migration
                .phase_seconds
                .get_or_create(&PhaseTimeLabels {
                    phase: format!("{:?}", before),
                })
                .observe(spent);
        }
        tracing::info!(
            cluster = %env.name, migration = %d.obj.name_any(),
            source = %d.obj.spec.source, target = %d.obj.spec.target,
            attempt = next.attempt, from = ?before, to = ?next.phase,
            reason = next.reason.as_deref().unwrap_or(""), "migration phase"
        );
        if let Some(type_) = super::announce::event_of(before, next.phase) {
            dctx.base
                .publish(
                    &d.obj,
                    type_,
                    &format!("{:?}", next.phase),
                    "Migrate",
                    match &next.reason {
                        Some(r) => format!("{:?} -> {:?}: {r}", before, next.phase),
                        None => format!("{:?} -> {:?}", before, next.phase),
                    },
                )
                .await;
        }
    }
    d.state = next;
    Ok(())
}

/// A node call failed: says why in the move's status and looks again in [`RETRY_AFTER`].
async fn retry_later(
    dctx: &DriverCtx,
    env: &Env,
    d: &mut Driven,
    obs: &Observation,
    why: String,
) -> Result<Duration, Error> {
    note_progress(dctx, env, d, obs, Some(why)).await?;
    Ok(RETRY_AFTER)
}

/// Updates progress and the waiting reason when they changed (no phase change).
async fn note_progress(
    dctx: &DriverCtx,
    env: &Env,
    d: &mut Driven,
    obs: &Observation,
    reason: Option<String>,
) -> Result<(), Error> {
    let mut status = d.obj.status.clone().unwrap_or_default();
    let before = status.clone();
    fill_observed(&mut status, obs);
    settle_progress(&mut status);
    if !d.state.phase.is_terminal() {
        status.message = reason;
    }
    if status == before {
        return Ok(());
    }
    let full = room_turned_false(&before, &status);
    d.obj.status = Some(status);
    write(dctx, env, d).await?;
    if let Some(note) = full {
        tracing::warn!(cluster = %env.name, migration = %d.obj.name_any(), target = %d.obj.spec.target, %note, "move waits for room on its target");
        dctx.base
            .publish(
                &d.obj,
                EventType::Warning,
                "InsufficientSpace",
                "Migrate",
                note,
            )
            .await;
    }
    Ok(())
}

async fn after_cutover(
    dctx: &DriverCtx,
    env: &Env,
    d: &mut Driven,
    obs: &Observation,
    outcome: Outcome,
) -> Result<Duration, Error> {
    let m = &dctx.base.metrics.migration;
    match outcome {
        Outcome::Committed {
            epoch,
            pause,
            fence,
            stages,
        } => {
            m.cutovers
                .get_or_create(&super::metrics::OutcomeLabels {
                    outcome: "committed".into(),
                })
                .inc();
            if let Some(p) = pause {
                m.cutover_pause.observe(p.as_secs_f64());
                if p > env.limits.write_pause_budget {
                    m.cutovers_over_budget
                        .get_or_create(&super::metrics::ClusterLabels {
                            namespace: env.ns.clone(),
                            cluster: env.name.clone(),
                        })
                        .inc();
                    tracing::warn!(
                        cluster = %env.name, migration = %d.obj.name_any(),
                        pause_ms = p.as_millis() as u64,
                        budget_ms = env.limits.write_pause_budget.as_millis() as u64,
                        "cutover write pause over budget"
                    );
                }
                for (stage, t) in [
                    ("fence", stages.fence),
                    ("drain", stages.drain),
                    ("commit", stages.commit),
                    ("push", stages.push),
                ] {
                    m.cutover_stage
                        .get_or_create(&super::metrics::StageLabels {
                            stage: stage.into(),
                        })
                        .observe(t.as_secs_f64());
                }
                // One line per cutover; ringshift-cutover-bench reads these.
                tracing::info!(
                    cluster = %env.name, migration = %d.obj.name_any(), epoch,
                    pause_ms = p.as_secs_f64() * 1000.0,
                    fence_ms = stages.fence.as_secs_f64() * 1000.0,
                    drain_ms = stages.drain.as_secs_f64() * 1000.0,
                    commit_ms = stages.commit.as_secs_f64() * 1000.0,
                    push_ms = stages.push.as_secs_f64() * 1000.0,
                    "cutover committed"
                );
            }
            let mut status = d.obj.status.clone().unwrap_or_default();
            status.fence_offset = Some(offset_text(&fence));
            status.cutover_pause = pause.map(|p| format!("{}ms", p.as_millis()));
            d.obj.status = Some(status);
            let next = MoveState {
                committed_epoch: Some(epoch),
                committed_at_ms: Some(now_ms()),
                failures: 0,
                reason: Some(match pause {
                    Some(p) => format!(
                        "committed at epoch {epoch}; write pause {} ms ({stages})",
                        p.as_millis()
                    ),
                    None => format!("committed at epoch {epoch}; write pause unknown"),
                }),
                phase: Phase::Cleanup,
                since_ms: now_ms(),
                ..d.state.clone()
            };
            persist(dctx, env, d, next, obs).await?;
            Ok(Duration::from_millis(100))
        }
        Outcome::Aborted { reason } => {
            m.cutovers
                .get_or_create(&super::metrics::OutcomeLabels {
                    outcome: "aborted".into(),
                })
                .inc();
            tracing::warn!(cluster = %env.name, migration = %d.obj.name_any(), %reason, "cutover aborted");
            let next = after_abort(&d.state, now_ms(), &format!("cutover aborted: {reason}"));
            persist(dctx, env, d, next, obs).await?;
            Ok(Duration::from_millis(200))
        }
        Outcome::NotStarted { reason } => {
            note_progress(
                dctx,
                env,
                d,
                obs,
                Some(format!("cutover not started: {reason}")),
            )
            .await?;
            Ok(Duration::from_millis(200))
        }
    }
}

/// Measures apply rate between two observations of a pull (records per second).
pub struct RateMeter {
    last: std::sync::Mutex<std::collections::HashMap<String, (u64, Instant, u64)>>,
}

impl RateMeter {
    pub fn new() -> Self {
        RateMeter {
            last: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Rate of `applied` growth for `uid`, smoothed with the previous estimate.
    pub fn rate(&self, uid: &str, applied: u64) -> u64 {
        let now = Instant::now();
        let mut m = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (rate, entry) = match m.get(uid) {
            Some((prev, at, prev_rate)) if applied >= *prev => {
                let dt = now.duration_since(*at).as_secs_f64();
                if dt < 0.05 {
                    return *prev_rate;
                }
                let r = ((applied - prev) as f64 / dt) as u64;
                let smoothed = if *prev_rate == 0 {
                    r
                } else {
                    (r + prev_rate) / 2
                };
                (smoothed, (applied, now, smoothed))
            }
            _ => (0, (applied, now, 0)),
        };
        m.insert(uid.to_string(), entry);
        rate
    }
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_starts_at_zero_then_measures() {
        let m = RateMeter::new();
        assert_eq!(m.rate("a", 100), 0);
        std::thread::sleep(Duration::from_millis(100));
        let r = m.rate("a", 1100);
        assert!(r > 1000 && r <= 10_000, "{r}");
        // a restarted counter (lower value) resets the measurement
        assert_eq!(m.rate("a", 5), 0);
    }
}
