//! Target side of a range move: clear the ranges, copy a consistent snapshot from the source in
//! chunks (cursor persisted with the data, so a restart resumes), verify checksums at the
//! snapshot offset, then tail the source's change log from there (catch-up) until cancelled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringshift_node_api::client::{AdminClient, ClientError};
use ringshift_node_api::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use crate::changelog::LogOp;
use crate::engine::ingest::WireChunk;
use crate::engine::{Engine, Op, Outcome, WriteError};
use crate::node::Node;
use crate::wire;
use ringshift_ring::RangeSet;

mod errors;
pub use errors::{ClaimError, PullError};

const META_PULL_PREFIX: &[u8] = b"pull/";
const CHUNK_ENTRIES: usize = 32_768;
/// Bytes ingested per unit of a copy (one set of tables; the cursor is persisted after each).
pub const UNIT_BYTES: u64 = 64 << 20;
const TAIL_MAX: usize = 8192;
const TAIL_WAIT_MS: u64 = 300;

/// What a target persists about a pull (in the same batch as the data it copies).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullRecord {
    request: StartPull,
    status: PullStatus,
    /// Last storage key copied from the snapshot (hex), to resume the copy.
    #[serde(default)]
    cursor: Option<String>,
}

struct Running {
    status: Arc<Mutex<PullStatus>>,
    cancel: watch::Sender<bool>,
    /// Closed when the puller task has ended (no write of it can land afterwards).
    finished: watch::Receiver<()>,
}

impl Running {
    /// Whether this pull may still write into its ranges: its task runs or its phase says it
    /// will (a registered pull not spawned yet).
    fn active(&self) -> bool {
        let running = self.finished.has_changed().is_ok();
        running
            || self
                .status
                .lock()
                .map(|s| !terminal(s.phase))
                .unwrap_or(true)
    }

    fn ranges(&self) -> RangeSet {
        self.status
            .lock()
            .map(|s| s.ranges.iter().copied().collect())
            .unwrap_or_default()
    }
}

fn terminal(phase: PullPhase) -> bool {
    matches!(
        phase,
        PullPhase::Cancelled | PullPhase::Failed | PullPhase::Completed
    )
}

/// Pulls and drops of this node, under one lock: a drop and a pull of overlapping ranges
/// exclude each other, and each checks and registers itself in one critical section.
#[derive(Default)]
struct Claims {
    running: HashMap<String, Running>,
    /// Drops in progress: (id, ranges).
    drops: Vec<(u64, RangeSet)>,
    next_drop: u64,
}

#[derive(Default)]
pub struct Pulls {
    claims: Mutex<Claims>,
}

/// A drop's claim on its ranges; released when dropped.
pub struct DropClaim<'a> {
    pulls: &'a Pulls,
    id: u64,
}

impl Drop for DropClaim<'_> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.pulls.claims.lock() {
            c.drops.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Pulls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Claims> {
        // Every critical section leaves the claims consistent: a panic elsewhere must not
        // stop pulls and drops.
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> Vec<PullStatus> {
        self.lock()
            .running
            .values()
            .filter_map(|r| r.status.lock().ok().map(|s| s.clone()))
            .collect()
    }

    pub fn get(&self, uid: &str) -> Option<PullStatus> {
        let c = self.lock();
        let s = c.running.get(uid)?.status.lock().ok()?.clone();
        Some(s)
    }

    /// Claims `rs` for a drop, unless a pull that may still write into them, or another drop,
    /// overlaps them (checked and registered atomically).
    pub fn claim_drop(&self, rs: &RangeSet) -> Result<DropClaim<'_>, ClaimError> {
        let mut c = self.lock();
        if let Some((uid, _)) = c
            .running
            .iter()
            .find(|(_, r)| r.active() && r.ranges().overlaps(rs))
        {
            return Err(ClaimError::PullWritesInto { uid: uid.clone() });
        }
        if c.drops.iter().any(|(_, d)| d.overlaps(rs)) {
            return Err(ClaimError::DropInProgress);
        }
        c.next_drop += 1;
        let id = c.next_drop;
        c.drops.push((id, rs.clone()));
        Ok(DropClaim { pulls: self, id })
    }
}

fn pull_key(uid: &str) -> Vec<u8> {
    [META_PULL_PREFIX, uid.as_bytes()].concat()
}

fn record_meta(rec: &PullRecord) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        pull_key(&rec.status.migration_uid),
        Some(serde_json::to_vec(rec).unwrap_or_default()),
    )
}

/// Starts a pull (or returns the running one for the same attempt). Refused while a drop of an
/// overlapping range runs, or another migration's pull writes into one.
pub async fn start(node: &Arc<Node>, req: StartPull) -> Result<PullStatus, PullError> {
    let uid = req.caller.migration_uid.clone();
    let wanted: RangeSet = req.ranges.iter().copied().collect();
    let status = PullStatus {
        migration_uid: uid.clone(),
        attempt: req.caller.attempt,
        source: req.source.clone(),
        ranges: req.ranges.clone(),
        phase: PullPhase::Starting,
        snapshot_offset: None,
        applied_offset: None,
        source_head: None,
        lag: None,
        keys_copied: 0,
        bytes_copied: 0,
        verified: None,
        error: None,
    };
    let (shared, cancelled, done) = loop {
        // Either registered, or an older task of this migration to wait for first.
        let older = {
            let mut c = node.pulls.lock();
            let mut older = None;
            if let Some(cur) = c.running.get(&uid) {
                let cur_status = cur
                    .status
                    .lock()
                    .map(|s| s.clone())
                    .map_err(|_| PullError::Poisoned)?;
                if cur_status.attempt == req.caller.attempt && !terminal(cur_status.phase) {
                    return Ok(cur_status);
                }
                if cur_status.attempt > req.caller.attempt {
                    return Err(PullError::StaleAttempt {
                        uid: uid.clone(),
                        attempt: cur_status.attempt,
                    });
                }
                // An older attempt (or a cancelled one) whose task still runs: stop it and
                // wait until nothing of it can land, then look again.
                if cur.finished.has_changed().is_ok() {
                    let _ = cur.cancel.send(true);
                    older = Some(cur.finished.clone());
                }
            }
            match older {
                Some(finished) => Err(finished),
                None => {
                    if c.drops.iter().any(|(_, d)| d.overlaps(&wanted)) {
                        return Err(PullError::DropInProgress);
                    }
                    if let Some((other, _)) = c.running.iter().find(|(other, r)| {
                        **other != uid && r.active() && r.ranges().overlaps(&wanted)
                    }) {
                        return Err(PullError::RangesTaken {
                            other: other.clone(),
                        });
                    }
                    // Registered before anything is awaited: a drop arriving meanwhile sees
                    // this pull.
                    Ok(register(&mut c, &status))
                }
            }
        };
        match older {
            Ok(registered) => break registered,
            Err(finished) => wait_ended(finished).await,
        }
    };
    let rec = PullRecord {
        request: req,
        status: status.clone(),
        cursor: None,
    };
    if let Err(e) = persist(&node.engine, &rec).await {
        fail_registered(node, &uid, &e);
        return Err(e.into());
    }
    tracing::info!(
        cluster = %rec.request.caller.cluster_uid,
        migration = %uid,
        attempt = rec.request.caller.attempt,
        epoch = rec.request.caller.epoch,
        source = %rec.request.source.name,
        ranges = %wanted,
        "pull started"
    );
    launch(node.clone(), rec, shared, cancelled, done);
    Ok(status)
}

/// A registered pull that could not be persisted: it never ran.
fn fail_registered(node: &Node, uid: &str, why: &WriteError) {
    if let Some(r) = node.pulls.lock().running.get(uid)
        && let Ok(mut s) = r.status.lock()
    {
        s.phase = PullPhase::Failed;
        s.error = Some(why.to_string());
    }
}

/// Stops a pull and records it as cancelled. Data already copied stays (a later copy clears it;
/// a drop removes it).
pub async fn cancel(node: &Arc<Node>, caller: &Caller) -> Result<PullStatus, PullError> {
    let uid = &caller.migration_uid;
    let finished = {
        let c = node.pulls.lock();
        let Some(cur) = c.running.get(uid) else {
            return Err(PullError::NoPull { uid: uid.clone() });
        };
        let attempt = cur
            .status
            .lock()
            .map(|s| s.attempt)
            .map_err(|_| PullError::Poisoned)?;
        if attempt > caller.attempt {
            return Err(PullError::StaleAttempt {
                uid: uid.clone(),
                attempt,
            });
        }
        let _ = cur.cancel.send(true);
        cur.finished.clone()
    };
    // Cancelled means nothing of this pull lands afterwards: wait for its task to end.
    wait_ended(finished).await;
    let raw = node.engine.meta_get(&pull_key(uid))?;
    let mut rec: PullRecord = match raw.and_then(|r| serde_json::from_slice(&r).ok()) {
        Some(r) => r,
        None => {
            return Err(PullError::NoRecord { uid: uid.clone() });
        }
    };
    rec.status.phase = PullPhase::Cancelled;
    persist(&node.engine, &rec).await?;
    set_status(node, &rec.status);
    let client = node.admin_client(&rec.request.source.admin_addr);
    let caller = current_caller(node, &rec.request.caller);
    tokio::spawn(async move {
        let _ = client.delete_snapshot(&caller).await;
    });
    tracing::info!(migration = %uid, "pull cancelled");
    Ok(rec.status)
}

/// `started` (the StartPull's caller) at this node's current epoch, if that is newer.
fn current_caller(node: &Node, started: &Caller) -> Caller {
    Caller {
        epoch: started.epoch.max(node.engine.routing().epoch()),
        ..started.clone()
    }
}

/// Returns once the pull is cancelled (or its registration is gone).
async fn until_cancelled(mut c: watch::Receiver<bool>) {
    loop {
        if *c.borrow_and_update() {
            return;
        }
        if c.changed().await.is_err() {
            return;
        }
    }
}

/// Returns once a puller task has ended (its `done` sender dropped).
async fn wait_ended(mut finished: watch::Receiver<()>) {
    while finished.changed().await.is_ok() {}
}

fn set_status(node: &Node, status: &PullStatus) {
    if let Some(r) = node.pulls.lock().running.get(&status.migration_uid)
        && let Ok(mut s) = r.status.lock()
    {
        *s = status.clone();
    }
}

async fn persist(engine: &Engine, rec: &PullRecord) -> Result<(), WriteError> {
    engine.run_done(Op::Meta(vec![record_meta(rec)])).await
}

/// Resumes the pulls persisted in the data directory.
pub fn resume_all(node: &Arc<Node>) {
    let records = match node.engine.meta_prefix(META_PULL_PREFIX) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read persisted pulls");
            return;
        }
    };
    for (_, raw) in records {
        match serde_json::from_slice::<PullRecord>(&raw) {
            Ok(rec) => {
                tracing::info!(migration = %rec.status.migration_uid, phase = ?rec.status.phase, "resuming pull");
                spawn(node.clone(), rec);
            }
            Err(e) => tracing::error!(error = %e, "unreadable pull record"),
        }
    }
}

/// The puller's handles: shared status, cancel signal, and the sender whose drop says the task
/// ended.
type Registered = (
    Arc<Mutex<PullStatus>>,
    watch::Receiver<bool>,
    watch::Sender<()>,
);

/// Registers a pull (replacing an older entry of the migration) under the claims lock.
fn register(c: &mut Claims, status: &PullStatus) -> Registered {
    let (cancel, cancelled) = watch::channel(false);
    let (done, finished) = watch::channel(());
    let shared = Arc::new(Mutex::new(status.clone()));
    c.running.insert(
        status.migration_uid.clone(),
        Running {
            status: shared.clone(),
            cancel,
            finished,
        },
    );
    (shared, cancelled, done)
}

fn spawn(node: Arc<Node>, rec: PullRecord) {
    let (shared, cancelled, done) = register(&mut node.pulls.lock(), &rec.status);
    launch(node, rec, shared, cancelled, done);
}

/// Runs a registered pull's task (none for a finished one); `done` drops when it ends.
fn launch(
    node: Arc<Node>,
    rec: PullRecord,
    status: Arc<Mutex<PullStatus>>,
    cancelled: watch::Receiver<bool>,
    done: watch::Sender<()>,
) {
    if terminal(rec.status.phase) {
        return;
    }
    // Every event of the task (progress, retries, completion, failure) carries the pull's
    // identity, also after a restart resumed it. Its ranges (a list as long as the ring's
    // tokens) are logged once, by "pull started".
    let req = &rec.request;
    let span = tracing::info_span!(
        "pull",
        cluster = %req.caller.cluster_uid,
        migration = %req.caller.migration_uid,
        attempt = req.caller.attempt,
        epoch = req.caller.epoch,
        source = %req.source.name,
    );
    tokio::spawn(
        async move {
            let _done = done;
            let mut p = Puller {
                client: node.admin_client(&rec.request.source.admin_addr),
                node,
                rec,
                status,
                cancelled,
            };
            p.run().await;
        }
        .instrument(span),
    );
}

/// Why a step stopped.
enum Stop {
    Cancelled,
    /// Start over: clear and copy again.
    Recopy(String),
    Fail(String),
    /// Transient: retry the step after a pause.
    Retry(String),
    /// This node owns the ranges now (the move committed): the pull is complete.
    Owned(String),
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Stop {
        match e.reason() {
            Some(ErrorReason::Recopy) => Stop::Recopy(e.to_string()),
            Some(
                ErrorReason::StaleAttempt | ErrorReason::OtherCluster | ErrorReason::BadRequest,
            ) => Stop::Fail(e.to_string()),
            _ => Stop::Retry(e.to_string()),
        }
    }
}

struct Puller {
    node: Arc<Node>,
    client: AdminClient,
    rec: PullRecord,
    status: Arc<Mutex<PullStatus>>,
    cancelled: watch::Receiver<bool>,
}

impl Puller {
    fn uid(&self) -> &str {
        &self.rec.status.migration_uid
    }

    fn publish(&self) {
        if let Ok(mut s) = self.status.lock() {
            *s = self.rec.status.clone();
        }
        let label = crate::metrics::MigrationLabel {
            migration: self.rec.status.migration_uid.clone(),
        };
        if let Some(lag) = self.rec.status.lag {
            self.node.metrics.lag.get_or_create(&label).set(lag as i64);
        }
    }

    async fn run(&mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *self.cancelled.borrow() {
                return;
            }
            let step = match self.rec.status.phase {
                PullPhase::Starting => self.begin().await,
                PullPhase::Copying => self.copy().await,
                PullPhase::Verifying => self.verify().await,
                PullPhase::CatchingUp => self.catch_up().await,
                PullPhase::Cancelled | PullPhase::Failed | PullPhase::Completed => return,
            };
            match step {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if self.rec.status.error.take().is_some() {
                        self.publish();
                    }
                }
                Err(Stop::Cancelled) => return,
                Err(Stop::Owned(why)) => {
                    tracing::info!(migration = %self.uid(), reason = %why, "pull completed");
                    self.rec.status.phase = PullPhase::Completed;
                    self.save().await;
                    return;
                }
                Err(Stop::Recopy(why)) => {
                    tracing::warn!(migration = %self.uid(), reason = %why, "pull restarts its copy");
                    // The abandoned copy's offsets and verification say nothing about the
                    // next one (begin() clears the ranges): never report them with it.
                    let s = &mut self.rec.status;
                    s.phase = PullPhase::Starting;
                    s.error = Some(why);
                    s.applied_offset = None;
                    s.snapshot_offset = None;
                    s.verified = None;
                    s.source_head = None;
                    s.lag = None;
                    s.keys_copied = 0;
                    s.bytes_copied = 0;
                    self.rec.cursor = None;
                    self.save().await;
                }
                Err(Stop::Fail(why)) => {
                    tracing::error!(migration = %self.uid(), reason = %why, "pull failed");
                    self.rec.status.phase = PullPhase::Failed;
                    self.rec.status.error = Some(why);
                    self.save().await;
                    return;
                }
                Err(Stop::Retry(why)) => {
                    tracing::warn!(migration = %self.uid(), reason = %why, "pull step failed; retrying");
                    self.rec.status.error = Some(why);
                    self.publish();
                    let mut c = self.cancelled.clone();
                    let _ = tokio::time::timeout(backoff, c.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Who this pull is when it calls the source: its migration and attempt, at this node's
    /// current epoch (another move's commit must not leave it refused as stale).
    fn caller(&self) -> Caller {
        current_caller(&self.node, &self.rec.request.caller)
    }

    /// A call to the source that a cancel interrupts (a stopped source must not hold a cancel
    /// up for the HTTP timeout).
    async fn source<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, Stop> {
        let r = tokio::select! {
            r = call => r,
            _ = until_cancelled(self.cancelled.clone()) => return Err(Stop::Cancelled),
        };
        if let Err(e) = &r
            && e.reason() == Some(ErrorReason::StaleEpoch)
        {
            // The source knows a newer placement: learn it, so the retry carries its epoch.
            self.node
                .refresh_placement_from(&self.rec.request.source.admin_addr)
                .await;
        }
        Ok(r?)
    }

    async fn save(&mut self) {
        if let Err(e) = persist(&self.node.engine, &self.rec).await {
            tracing::error!(migration = %self.uid(), error = %e, "cannot persist pull state");
        }
        self.publish();
    }

    async fn write(&mut self, op: Op) -> Result<(), Stop> {
        if *self.cancelled.borrow() {
            return Err(Stop::Cancelled);
        }
        match self.node.engine.run(op).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::Refused(m)) => Err(Stop::Owned(m)),
            Ok(Outcome::Failed(m)) => Err(Stop::Retry(m)),
            Ok(_) => Err(Stop::Retry("unexpected writer answer".into())),
            Err(e) => Err(Stop::Retry(e.to_string())),
        }
    }

    async fn clear_in_chunks(&mut self, rs: &RangeSet) -> Result<(), Stop> {
        if *self.cancelled.borrow() {
            return Err(Stop::Cancelled);
        }
        match self.node.engine.clear_in_chunks(rs).await {
            Ok(()) => Ok(()),
            Err(crate::engine::ClearError::Owned(m)) => Err(Stop::Owned(m)),
            Err(crate::engine::ClearError::Failed(m)) => Err(Stop::Retry(m)),
        }
    }

    /// The pulled ranges as a set.
    fn range_set(&self) -> RangeSet {
        self.rec.status.ranges.iter().copied().collect()
    }

    /// Clear the ranges, then open the source snapshot; both recorded before copying.
    async fn begin(&mut self) -> Result<(), Stop> {
        self.rec.status.keys_copied = 0;
        self.rec.status.bytes_copied = 0;
        self.rec.status.verified = None;
        self.rec.status.snapshot_offset = None;
        self.rec.status.applied_offset = None;
        self.rec.cursor = None;
        let meta = vec![record_meta(&self.rec)];
        let rs = self.range_set();
        if rs.overlaps(&self.node.engine.routing().owned_set()) {
            // The move committed and this node was told: what it holds is the owner's data.
            return Err(Stop::Owned(
                "this node owns the ranges; nothing to copy, nothing to clear".into(),
            ));
        }
        // The snapshot first: the source refuses it once the ranges are fenced or no longer its
        // own, i.e. once the move may have committed. Only then may this node clear them; a
        // re-copy after the commit must never clear the new owner before it learns it owns.
        let opened = self
            .source(self.client.open_snapshot(&OpenSnapshot {
                caller: self.caller(),
                ranges: self.rec.status.ranges.clone(),
            }))
            .await?;
        if *self.cancelled.borrow() {
            return Err(Stop::Cancelled);
        }
        let slow = Some(crate::failpoints::SLOW_PULL_CLEAR);
        match self
            .node
            .engine
            .clear_after_in_chunks(&rs, None, slow)
            .await
        {
            Ok(()) => {}
            Err(crate::engine::ClearError::Owned(m)) => return Err(Stop::Owned(m)),
            Err(crate::engine::ClearError::Failed(m)) => return Err(Stop::Retry(m)),
        }
        self.write(Op::Clear { ranges: rs, meta }).await?;
        tracing::info!(migration = %self.uid(), offset = opened.offset.sequence, "copying snapshot");
        self.rec.status.snapshot_offset = Some(opened.offset);
        self.rec.status.phase = PullPhase::Copying;
        self.save().await;
        Ok(())
    }

    async fn copy(&mut self) -> Result<(), Stop> {
        // Re-opening is idempotent at the source; a different offset means the session was lost.
        let opened = self
            .source(self.client.open_snapshot(&OpenSnapshot {
                caller: self.caller(),
                ranges: self.rec.status.ranges.clone(),
            }))
            .await?;
        if Some(&opened.offset) != self.rec.status.snapshot_offset.as_ref() {
            return Err(Stop::Recopy("the source's snapshot changed".into()));
        }
        let ranges = self.range_set();
        // A unit ingested before a crash but not recorded lies past the persisted cursor:
        // remove it, so the copy resumes on exactly what the cursor says.
        let cursor = match self.rec.cursor.as_deref() {
            Some(h) => Some(
                crate::engine::CopyCursor::from_param(h)
                    .ok_or_else(|| Stop::Fail("corrupt pull cursor".into()))?,
            ),
            None => None,
        };
        match self
            .node
            .engine
            .clear_after_in_chunks(&ranges, cursor.as_ref(), None)
            .await
        {
            Ok(()) => {}
            Err(crate::engine::ClearError::Owned(m)) => return Err(Stop::Owned(m)),
            Err(crate::engine::ClearError::Failed(m)) => return Err(Stop::Retry(m)),
        }
        // The next chunk is fetched while this one is ingested.
        let limit = self.rec.request.bytes_per_sec.filter(|l| *l > 0);
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let fetcher = tokio::spawn(fetch_chunks(
            self.client.clone(),
            self.uid().to_string(),
            self.rec.cursor.clone(),
            limit,
            self.cancelled.clone(),
            tx,
        ));
        let _stop_fetcher = AbortOnDrop(fetcher);
        // A unit's tables are registered and its cursor persisted (and progress published) at
        // once: every 64 MiB, or every chunk (a quarter second's worth) of a throttled copy.
        let unit_bytes = limit.map_or(UNIT_BYTES, |l| (l / 4).max(4096));
        loop {
            if *self.cancelled.borrow() {
                return Err(Stop::Cancelled);
            }
            if ranges.overlaps(&self.node.engine.routing().owned_set()) {
                return Err(Stop::Owned("this node owns the pulled ranges now".into()));
            }
            let engine = self.node.engine.clone();
            let (cancelled, guard_ranges) = (self.cancelled.clone(), ranges.clone());
            let (unit, back, done, failed) = tokio::task::spawn_blocking(move || {
                let mut done = false;
                let mut failed = None;
                let is_cancelled = || *cancelled.borrow();
                let guard = crate::engine::ingest::Guard {
                    ranges: &guard_ranges,
                    cancelled: &is_cancelled,
                };
                let unit = crate::engine::ingest::ingest(
                    &engine,
                    || {
                        if done || failed.is_some() {
                            return None;
                        }
                        match rx.blocking_recv() {
                            Some(Ok((chunk, last))) => {
                                done = last;
                                Some(chunk)
                            }
                            Some(Err(e)) => {
                                failed = Some(e);
                                None
                            }
                            None => {
                                failed = Some(Stop::Retry("the chunk fetcher stopped".into()));
                                None
                            }
                        }
                    },
                    unit_bytes,
                    &guard,
                );
                (unit, rx, done, failed)
            })
            .await
            .map_err(|e| Stop::Retry(format!("ingestion task failed: {e}")))?;
            rx = back;
            let unit = unit.map_err(|e| match e {
                crate::engine::EngineError::Corrupt { .. } => Stop::Fail(e.to_string()),
                crate::engine::EngineError::Discarded(_) if *self.cancelled.borrow() => {
                    Stop::Cancelled
                }
                crate::engine::EngineError::Discarded(m) => Stop::Owned(m),
                e => Stop::Retry(e.to_string()),
            })?;
            if let Some(last) = &unit.last {
                self.rec.cursor = Some(last.to_param());
            }
            self.rec.status.keys_copied += unit.keys;
            self.rec.status.bytes_copied += unit.bytes;
            if done {
                self.rec.status.phase = if self.rec.request.verify {
                    PullPhase::Verifying
                } else {
                    PullPhase::CatchingUp
                };
                self.rec.status.applied_offset = self.rec.status.snapshot_offset.clone();
            }
            let meta = vec![record_meta(&self.rec)];
            self.write(Op::Ingested {
                meta,
                index: unit.index,
                counts: unit.counts,
                guard: ranges.clone(),
            })
            .await?;
            self.node
                .metrics
                .bytes_copied
                .get_or_create(&crate::metrics::MigrationLabel {
                    migration: self.uid().to_string(),
                })
                .inc_by(unit.bytes);
            self.publish();
            if let Some(e) = failed {
                return Err(e);
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn throttle(&mut self, bytes: u64, started: Instant) -> Result<(), Stop> {
        let Some(limit) = self.rec.request.bytes_per_sec.filter(|l| *l > 0) else {
            return Ok(());
        };
        let due = Duration::from_secs_f64(bytes as f64 / limit as f64);
        let spent = started.elapsed();
        if due > spent {
            let mut c = self.cancelled.clone();
            if tokio::time::timeout(due - spent, c.changed()).await.is_ok() && *c.borrow() {
                return Err(Stop::Cancelled);
            }
        }
        Ok(())
    }

    /// Compares the source snapshot's checksum with ours, at the snapshot offset (we have
    /// applied nothing past it yet), outside any fence.
    async fn verify(&mut self) -> Result<(), Stop> {
        // The snapshot session lives in the source's memory: after a source restart it is gone
        // and re-opening yields a new offset, so the copy cannot be verified and starts over.
        let opened = self
            .source(self.client.open_snapshot(&OpenSnapshot {
                caller: self.caller(),
                ranges: self.rec.status.ranges.clone(),
            }))
            .await?;
        if Some(&opened.offset) != self.rec.status.snapshot_offset.as_ref() {
            return Err(Stop::Recopy(
                "the source lost the snapshot being verified (restarted?)".into(),
            ));
        }
        let ranges = self.rec.status.ranges.clone();
        let theirs = self
            .source(self.client.checksum(&ChecksumRequest {
                ranges: ranges.clone(),
                snapshot_of: Some(self.uid().to_string()),
            }))
            .await?;
        let session = match self.node.engine.run(Op::Snapshot).await {
            Ok(Outcome::Snapshot(s)) => s,
            _ => return Err(Stop::Retry("cannot snapshot the target".into())),
        };
        let engine = self.node.engine.clone();
        let (digest, keys) =
            tokio::task::spawn_blocking(move || engine.checksum(&session.snapshot, &ranges))
                .await
                .map_err(|e| Stop::Retry(e.to_string()))?
                .map_err(|e| Stop::Retry(e.to_string()))?;
        if Some(&theirs.offset) != self.rec.status.snapshot_offset.as_ref() {
            return Err(Stop::Recopy("the source's snapshot changed".into()));
        }
        if (digest, keys) != (theirs.digest, theirs.keys) {
            self.rec.status.verified = Some(false);
            return Err(Stop::Fail(format!(
                "checksum mismatch at the snapshot offset: source {} keys digest {}, target {keys} keys digest {digest}",
                theirs.keys, theirs.digest
            )));
        }
        self.rec.status.verified = Some(true);
        self.rec.status.phase = PullPhase::CatchingUp;
        self.save().await;
        let _ = self.client.delete_snapshot(&self.caller()).await;
        tracing::info!(migration = %self.uid(), keys, "copy verified; catching up");
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), Stop> {
        let Some(applied) = self.rec.status.applied_offset.clone() else {
            return Err(Stop::Recopy("no applied offset recorded".into()));
        };
        let path = format!(
            "/v1/log?incarnation={}&after={}&ranges={}&max={TAIL_MAX}&reader={}&waitMs={TAIL_WAIT_MS}",
            applied.incarnation,
            applied.sequence,
            self.range_set(),
            self.uid(),
        );
        let started = Instant::now();
        let raw = tokio::select! {
            r = self.client.get_raw(&path) => r?,
            _ = self.cancelled.changed() => return Err(Stop::Cancelled),
        };
        let (batch, head) = wire::decode_tail(&raw).map_err(|e| Stop::Retry(e.to_string()))?;
        let mut ops = Vec::with_capacity(batch.records.len());
        let mut bytes = 0u64;
        for (_, rec) in batch.records {
            match rec.op {
                LogOp::ClearRange { range } => {
                    let mine = self.range_set().intersection(&RangeSet::single(range));
                    ops.extend(mine.iter().map(|&r| LogOp::ClearRange { range: r }));
                }
                op => {
                    if let LogOp::Put { skey, value, .. } | LogOp::SubPut { skey, value } = &op {
                        bytes += (skey.len() + value.len()) as u64;
                    }
                    ops.push(op);
                }
            }
        }
        let advanced = batch.watermark != applied.sequence;
        self.rec.status.source_head = Some(head);
        self.rec.status.lag = Some(head.saturating_sub(batch.watermark));
        if advanced || !ops.is_empty() {
            // The new offset is persisted in the batch that applies the records, and taken as
            // ours only once that batch is durable: a failed write is retried from `applied`.
            let mut next = self.rec.clone();
            next.status.applied_offset = Some(Offset {
                incarnation: applied.incarnation.clone(),
                sequence: batch.watermark,
            });
            next.status.bytes_copied += bytes;
            let meta = vec![record_meta(&next)];
            // A pulled range clear removes the bulk of its keys in bounded batches first.
            let clears: RangeSet = ops
                .iter()
                .filter_map(|op| match op {
                    LogOp::ClearRange { range } => Some(*range),
                    _ => None,
                })
                .collect();
            if !clears.is_empty() {
                self.clear_in_chunks(&clears).await?;
            }
            self.write(Op::Apply {
                ops,
                meta,
                guard: self.range_set(),
            })
            .await?;
            self.rec = next;
        }
        self.publish();
        self.throttle(bytes, started).await
    }
}

/// Aborts a task when dropped (the copy's chunk fetcher ends with the copy).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches snapshot chunks after `after` in order, ahead of the ingestion, honouring the copy's
/// bytes/s limit and cancellation.
async fn fetch_chunks(
    client: AdminClient,
    uid: String,
    mut after: Option<String>,
    limit: Option<u64>,
    mut cancelled: watch::Receiver<bool>,
    tx: tokio::sync::mpsc::Sender<Result<(WireChunk, bool), Stop>>,
) {
    // A throttled copy asks for chunks of about a quarter second's worth.
    let max_bytes = limit.map_or(4 * 1024 * 1024, |l| (l / 4).max(4096));
    loop {
        if *cancelled.borrow() {
            let _ = tx.send(Err(Stop::Cancelled)).await;
            return;
        }
        let started = Instant::now();
        let path = format!(
            "/v1/snapshots/{uid}/chunk?after={}&max={CHUNK_ENTRIES}&maxBytes={max_bytes}",
            after.as_deref().unwrap_or("")
        );
        let fetched = tokio::select! {
            r = client.get_raw(&path) => r,
            _ = until_cancelled(cancelled.clone()) => {
                let _ = tx.send(Err(Stop::Cancelled)).await;
                return;
            }
        };
        let raw = match fetched {
            Ok(raw) => raw,
            Err(e) => {
                let _ = tx.send(Err(Stop::from(e))).await;
                return;
            }
        };
        // Read in place: the entries are copied once, into the ingestion.
        let (done, bytes) = match wire::chunk_entries(&raw) {
            Ok((done, entries)) => {
                if let Some(last) = entries.last() {
                    let c = if last.sub {
                        crate::engine::CopyCursor::Sub(last.key.to_vec())
                    } else {
                        crate::engine::CopyCursor::Data(last.key.to_vec())
                    };
                    after = Some(c.to_param());
                }
                (
                    done,
                    entries
                        .iter()
                        .map(|e| e.key.len() + e.value.len())
                        .sum::<usize>(),
                )
            }
            Err(e) => {
                let _ = tx.send(Err(Stop::Retry(e.to_string()))).await;
                return;
            }
        };
        if tx.send(Ok((WireChunk(raw), done))).await.is_err() || done {
            return;
        }
        if let Some(limit) = limit {
            let due = Duration::from_secs_f64(bytes as f64 / limit as f64);
            let spent = started.elapsed();
            if due > spent
                && tokio::time::timeout(due - spent, cancelled.changed())
                    .await
                    .is_ok()
                && *cancelled.borrow()
            {
                let _ = tx.send(Err(Stop::Cancelled)).await;
                return;
            }
        }
    }
}
