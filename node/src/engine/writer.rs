//! The writer: ownership and fence checks, log sequences and group commit.
//!
//! Evaluation happens on the submitting thread, under one lock: each operation is evaluated
//! in order against the data (plus the open batch's own earlier writes and the batches being
//! committed), ownership and fences are checked in the same critical section that assigns log
//! sequences, and the results gather in an open batch. The committer thread writes a sealed
//! batch (data + log + metadata) as one fjall batch with fsync (group commit). When it is done
//! it seals the open batch itself, so the next commit starts without a thread hand-off, and
//! only then does the committed batch's post-commit work (read cache, counters, log head,
//! answers). Evaluation overlaps the fsync, and each batch is as large as the load makes it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use fjall::PersistMode;
use tokio::sync::oneshot;

use super::open::{
    META_ATTEMPT_PREFIX, META_DEGRADED, META_FENCE_PREFIX, META_HEAD, META_PLACEMENT,
    META_RELEASED_PREFIX,
};
use super::ops::{DataCmd, DataReply, MetaPut, Op, Outcome, SetCond, SetExpiry};
use super::strings::{self, Change};
use super::{Engine, SnapshotSession};
use crate::accepted::EpochWindows;
use crate::changelog::{LogOp, LogRecord};
use crate::keys::{self, Stored};
use crate::ranges;
use crate::routing::{Fence, Route, Routing};
use ringshift_ring::HashRange;

mod collections;
mod lists;
mod sets;
mod subkeys;
mod tx;
mod zsets;

pub enum Request {
    One {
        op: Op,
        reply: oneshot::Sender<Outcome>,
    },
    /// One connection's pipelined writes, evaluated in order and answered together (one
    /// hand-off and one wake-up for the lot). Once one is refused as not served here, every
    /// later one is refused too, unapplied, so the connection can retry them in order.
    Pipeline {
        cmds: Vec<DataCmd>,
        reply: oneshot::Sender<Vec<Outcome>>,
    },
    /// MULTI ... EXEC: evaluated as one operation (see `engine::tx`).
    Transaction {
        tx: super::tx::Transaction,
        reply: oneshot::Sender<Outcome>,
    },
}

/// Where a request's outcome goes once its batch is durable.
enum Answer {
    One(oneshot::Sender<Outcome>, Pending),
    Pipeline(oneshot::Sender<Vec<Outcome>>, Vec<Outcome>),
}

impl Answer {
    /// Answers after a failed commit: nothing that was applied is acknowledged (a refused
    /// write stays refused: it was not applied either way).
    fn fail(self, msg: &str) {
        match self {
            Answer::One(reply, _) => {
                let _ = reply.send(Outcome::Failed(msg.to_string()));
            }
            Answer::Pipeline(reply, outcomes) => {
                let failed = outcomes
                    .into_iter()
                    .map(|o| match o {
                        o @ Outcome::NotServed(..) => o,
                        _ => Outcome::Failed(msg.to_string()),
                    })
                    .collect();
                let _ = reply.send(failed);
            }
        }
    }
}

type Overlay = HashMap<Vec<u8>, Option<Stored>, crate::keys::KeyHashBuilder>;
/// Collection elements written by a batch: sub-key -> value (None = deleted).
type SubOverlay = HashMap<Vec<u8>, Option<Vec<u8>>, crate::keys::KeyHashBuilder>;
type MetaMap = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// A sealed batch's writes, read by evaluation until fjall and the read cache have them.
struct InFlight {
    overlay: Arc<Overlay>,
    meta: Arc<MetaMap>,
    sub: Arc<SubOverlay>,
}

/// The writer's shared state; the engine holds it once the committer runs.
pub struct Handle {
    state: Mutex<State>,
    /// Wakes the committer when it is idle (a busy committer takes the next batch itself).
    commit_tx: std::sync::mpsc::Sender<Sealed>,
}

struct State {
    w: Writer,
    open: Option<Batch>,
    /// A batch is with the committer: the open one waits for it.
    committing: bool,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A panic mid-evaluation may have left the open batch half-applied: drop it
            // unanswered (its callers get an error) and stop writes, as the dead writer
            // thread of old did.
            let mut st = poisoned.into_inner();
            if st.w.stopped.is_none() {
                tracing::error!("a write panicked during evaluation; the writer stops");
                st.w.stopped = Some("the writer failed earlier: restart the node".into());
                st.open = None;
            }
            st
        })
    }

    /// The writer's modification clock and whether each key is live now (WATCH).
    pub fn watch(&self, keys: &[Vec<u8>]) -> Result<Vec<super::tx::WatchedKey>, fjall::Error> {
        let mut st = self.lock();
        let State { w, open, .. } = &mut *st;
        // (No batch is opened for this: an empty one would be committed for nothing.)
        let mut idle;
        let b = match open {
            Some(b) => b,
            None => {
                idle = Batch::new(w.seq);
                &mut idle
            }
        };
        b.now = b.now.max(w.engine.now_ms());
        let stamp = w.touches.stamp();
        keys.iter()
            .map(|k| {
                Ok(super::tx::WatchedKey {
                    key: k.clone(),
                    stamp,
                    live: w.current(&keys::storage_key(k), b)?.is_some(),
                })
            })
            .collect()
    }

    /// Evaluates a request now; its answer comes once its batch is durable.
    pub fn submit(&self, req: Request) {
        let mut st = self.lock();
        let State {
            w,
            open,
            committing,
        } = &mut *st;
        w.handle(req, open);
        if !*committing && let Some(b) = open.take() {
            *committing = true;
            // If the committer is gone the batch's answers are dropped: callers see an error.
            let _ = self.commit_tx.send(w.seal(b));
        }
    }
}

pub fn spawn(engine: Arc<Engine>, routing: Routing, head: u64) -> Result<(), std::io::Error> {
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<Sealed>();
    let accepted = routing.placement.as_ref().map(|p| {
        engine.accepted.begin_epoch(
            p.epoch,
            window_ranges(&routing, p.owners.ranges_of(&routing.me)),
        )
    });
    let w = Writer {
        engine: engine.clone(),
        routing,
        seq: head,
        accepted,
        in_flight: VecDeque::new(),
        stopped: None,
        version: 0,
        touches: super::touched::TouchLog::new(super::touched::KEY_CAP, super::touched::RANGE_CAP),
    };
    let handle = Handle {
        state: Mutex::new(State {
            w,
            open: None,
            committing: false,
        }),
        commit_tx,
    };
    if engine.writer.set(handle).is_err() {
        return Err(std::io::Error::other("the writer is already running"));
    }
    std::thread::Builder::new()
        .name("ringshift-commit".into())
        .spawn(move || commit_loop(engine, commit_rx))?;
    Ok(())
}

struct Writer {
    engine: Arc<Engine>,
    /// Working copy: changes made by a batch are visible to its later operations.
    routing: Routing,
    seq: u64,
    /// Where writes accepted as owner are recorded (the installed epoch's windows).
    accepted: Option<Arc<EpochWindows>>,
    /// Data and metadata of the sealed batches, oldest first, until their commit is readable
    /// from fjall and the read cache (at most two: one committing, one finishing).
    in_flight: VecDeque<InFlight>,
    /// Set after a failed commit: later batches were evaluated on top of it, so the writer
    /// refuses everything until the node restarts (fjall refuses writes after a journal
    /// failure anyway).
    stopped: Option<String>,
    /// The last collection version handed out (`collection::next_version`).
    version: u64,
    /// Modification stamps for WATCH.
    touches: super::touched::TouchLog,
}

/// State of the open batch being built.
struct Batch {
    overlay: Overlay,
    sub: SubOverlay,
    log_bytes: u64,
    now: u64,
    routing_changed: bool,
    /// A range clear ran: the read cache must forget everything.
    cleared: bool,
    /// This batch's change-log records, stored as one log entry.
    entry: crate::changelog::EntryBuilder,
    /// Final metadata writes (None = delete) and expiry-index writes (false = delete) of the
    /// batch. fjall gives every item of a batch the same sequence number, so a key must appear
    /// once per batch: the overlay, these maps and the single log entry guarantee it.
    meta: MetaMap,
    index: HashMap<Vec<u8>, bool>,
    /// Stored-key count changes: (bucket, delta).
    counts: Vec<(u32, i64)>,
    start_seq: u64,
    answers: Vec<Answer>,
    /// While an operation that writes several records is evaluated: how to take it back if it
    /// fails part-way (every operation is all or nothing).
    undo: Option<Undo>,
}

/// A key of the batch and its value before an operation changed it (None = not in the batch).
type Prior<V> = (Vec<u8>, Option<V>);

/// Prior values of what an operation changed in the open batch (None = absent before), and
/// where its log records and count changes began.
struct Undo {
    data: Vec<Prior<Option<Stored>>>,
    sub: Vec<Prior<Option<Vec<u8>>>>,
    index: Vec<Prior<bool>>,
    meta: Vec<Prior<Option<Vec<u8>>>>,
    seq: u64,
    entry_len: usize,
    entry_first: Option<u64>,
    counts: usize,
    cleared: bool,
}

impl Batch {
    fn new(start_seq: u64) -> Batch {
        Batch {
            overlay: HashMap::with_capacity_and_hasher(64, Default::default()),
            sub: HashMap::default(),
            log_bytes: 0,
            now: 0,
            routing_changed: false,
            cleared: false,
            entry: Default::default(),
            meta: HashMap::new(),
            index: HashMap::new(),
            counts: Vec::new(),
            start_seq,
            answers: Vec::with_capacity(64),
            undo: None,
        }
    }

    fn set_data(&mut self, skey: Vec<u8>, value: Option<Stored>) {
        if let Some(u) = &mut self.undo {
            u.data
                .push((skey.clone(), self.overlay.get(&skey).cloned()));
        }
        self.overlay.insert(skey, value);
    }

    fn set_sub(&mut self, skey: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(u) = &mut self.undo {
            u.sub.push((skey.clone(), self.sub.get(&skey).cloned()));
        }
        self.sub.insert(skey, value);
    }

    fn set_index(&mut self, key: Vec<u8>, live: bool) {
        if let Some(u) = &mut self.undo {
            u.index.push((key.clone(), self.index.get(&key).copied()));
        }
        self.index.insert(key, live);
    }

    fn set_meta(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(u) = &mut self.undo {
            u.meta.push((key.clone(), self.meta.get(&key).cloned()));
        }
        self.meta.insert(key, value);
    }

    /// Starts recording how to take back the next operation.
    fn begin_undo(&mut self, seq: u64) {
        self.undo = Some(Undo {
            data: Vec::new(),
            sub: Vec::new(),
            index: Vec::new(),
            meta: Vec::new(),
            seq,
            entry_len: self.entry.bytes.len(),
            entry_first: self.entry.first_seq,
            counts: self.counts.len(),
            cleared: self.cleared,
        });
    }

    /// Takes back everything since `begin_undo`; returns the sequence to go back to.
    fn roll_back(&mut self) -> Option<u64> {
        let u = self.undo.take()?;
        for (k, prev) in u.data.into_iter().rev() {
            match prev {
                Some(v) => self.overlay.insert(k, v),
                None => self.overlay.remove(&k),
            };
        }
        for (k, prev) in u.sub.into_iter().rev() {
            match prev {
                Some(v) => self.sub.insert(k, v),
                None => self.sub.remove(&k),
            };
        }
        for (k, prev) in u.index.into_iter().rev() {
            match prev {
                Some(v) => self.index.insert(k, v),
                None => self.index.remove(&k),
            };
        }
        for (k, prev) in u.meta.into_iter().rev() {
            match prev {
                Some(v) => self.meta.insert(k, v),
                None => self.meta.remove(&k),
            };
        }
        self.entry.bytes.truncate(u.entry_len);
        self.entry.first_seq = u.entry_first;
        self.counts.truncate(u.counts);
        self.cleared = u.cleared;
        Some(u.seq)
    }
}

/// A batch handed to the committer.
struct Sealed {
    meta: Arc<MetaMap>,
    index: HashMap<Vec<u8>, bool>,
    /// First sequence and bytes of the batch's log entry.
    entry: Option<(u64, Vec<u8>)>,
    /// The batch's data and what to do once it is durable.
    after: Committed,
}

enum Pending {
    Now(Outcome),
    Snapshot,
}

/// A batch back from the committer: durable (or failed, then answered already), with the
/// post-commit work still to do.
struct Committed {
    failed: bool,
    overlay: Arc<Overlay>,
    sub: Arc<SubOverlay>,
    /// Log head after this batch, if it changed.
    head: Option<u64>,
    log_bytes: u64,
    cleared: bool,
    counts: Vec<(u32, i64)>,
    routing: Option<Arc<Routing>>,
    answers: Vec<Answer>,
}

fn commit_loop(e: Arc<Engine>, rx: std::sync::mpsc::Receiver<Sealed>) {
    let Some(h) = e.writer.get() else { return };
    // fdatasync: the journal's data and size reach the disk, which is what recovery needs.
    let mode = e.config.durable.then_some(PersistMode::SyncData);
    let mut failed: Option<String> = None;
    let mut head = e.head();
    let mut next: Option<Sealed> = None;
    loop {
        let s = match next.take() {
            Some(s) => s,
            None => match rx.recv() {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let c = commit(&e, s, mode, &mut failed, &mut head);
        {
            let mut st = h.lock();
            if c.failed {
                st.w.stopped = Some("storage failure earlier: restart the node".into());
            }
            // Take the next batch now: its commit follows this one's post-commit work
            // without waking anyone.
            let State {
                w,
                open,
                committing,
            } = &mut *st;
            *committing = match open.take() {
                Some(b) => {
                    next = Some(w.seal(b));
                    true
                }
                None => false,
            };
        }
        finish(&e, c);
        // The batch is in fjall and the cache now: evaluation no longer needs its copy.
        h.lock().w.in_flight.pop_front();
    }
}

/// Commits one sealed batch (or fails its answers after an earlier failure).
fn commit(
    e: &Engine,
    s: Sealed,
    mode: Option<PersistMode>,
    failed: &mut Option<String>,
    head: &mut u64,
) -> Committed {
    let mut back = s.after;
    if let Some(msg) = failed {
        for a in std::mem::take(&mut back.answers) {
            a.fail(msg);
        }
        return back;
    }
    let mut batch = e.db.batch().durability(mode);
    // Sorted inserts keep the memtable's skiplist walks cache-friendly.
    let mut data: Vec<(&Vec<u8>, &Option<Stored>)> = back.overlay.iter().collect();
    data.sort_unstable_by(|x, y| x.0.cmp(y.0));
    for (skey, value) in data {
        match value {
            Some(v) => batch.insert(&e.data, skey.as_slice(), v.encode()),
            None => batch.remove(&e.data, skey.as_slice()),
        }
    }
    let mut sub: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = back.sub.iter().collect();
    sub.sort_unstable_by(|x, y| x.0.cmp(y.0));
    for (skey, value) in sub {
        match value {
            Some(v) => batch.insert(&e.sub, skey.as_slice(), v.as_slice()),
            None => batch.remove(&e.sub, skey.as_slice()),
        }
    }
    for (k, v) in s.meta.iter() {
        match v {
            Some(v) => batch.insert(&e.meta, k.as_slice(), v.as_slice()),
            None => batch.remove(&e.meta, k.as_slice()),
        }
    }
    for (k, live) in s.index {
        if live {
            batch.insert(&e.expiry, k, Vec::new());
        } else {
            batch.remove(&e.expiry, k);
        }
    }
    if let Some((first, bytes)) = s.entry {
        batch.insert(&e.log, first.to_be_bytes().to_vec(), bytes);
    }
    if let Some(h) = back.head {
        batch.insert(&e.meta, META_HEAD, h.to_be_bytes().to_vec());
    }
    let started = std::time::Instant::now();
    let committed = batch.commit();
    e.commit_latency.observe(started.elapsed());
    if let Err(err) = committed {
        // Nothing of this batch is acknowledged, nor of any later one.
        tracing::error!(
            error = %err,
            failed_writes = back.answers.len(),
            "group commit failed; the writer stops"
        );
        let msg = format!("storage failure: {err}");
        for a in std::mem::take(&mut back.answers) {
            a.fail(&msg);
        }
        *failed = Some(msg);
        return back;
    }
    back.failed = false;
    *head = back.head.unwrap_or(*head);
    // A snapshot is the data at exactly this batch's log head: take it before the next
    // batch is committed.
    let mut snapshot = None;
    for a in back.answers.iter_mut() {
        if let Answer::One(_, p @ Pending::Snapshot) = a {
            let session = snapshot
                .get_or_insert_with(|| {
                    Arc::new(SnapshotSession {
                        snapshot: e.db.snapshot(),
                        offset: *head,
                    })
                })
                .clone();
            *p = Pending::Now(Outcome::Snapshot(session));
        }
    }
    back
}

/// Post-commit work of a durable batch, in order: the read cache (before any answer, so a
/// client that saw its write acknowledged reads it), counters, the durable log head, routing,
/// and then the answers.
fn finish(e: &Engine, c: Committed) {
    if c.failed {
        return;
    }
    if c.cleared {
        e.cache.clear();
    }
    // (Copied: evaluation reads the in-flight overlay until the cache has its entries.)
    for (skey, value) in c.overlay.iter() {
        e.cache.put(skey, value.as_ref());
    }
    // Blocked clients retry once what they wait for is readable.
    if e.ready.watched() {
        for (skey, value) in c.overlay.iter() {
            if value.as_ref().is_some_and(|s| s.typed) {
                e.ready.signal(skey);
            }
        }
    }
    for (bucket, delta) in &c.counts {
        e.counts.add(*bucket, *delta);
    }
    e.log_bytes.fetch_add(c.log_bytes, Ordering::AcqRel);
    if let Some(head) = c.head {
        e.durable_head.store(head, Ordering::Release);
        e.head_tx.send_replace(head);
    }
    if let Some(r) = c.routing {
        e.publish_routing(r);
    }
    for answer in c.answers {
        match answer {
            Answer::One(reply, Pending::Now(o)) => {
                let _ = reply.send(o);
            }
            // (`commit` resolves snapshots; not reached.)
            Answer::One(reply, Pending::Snapshot) => {
                let _ = reply.send(Outcome::Failed("snapshot was not taken".into()));
            }
            Answer::Pipeline(reply, outcomes) => {
                let _ = reply.send(outcomes);
            }
        }
    }
}

impl Writer {
    fn handle(&mut self, req: Request, open: &mut Option<Batch>) {
        if let Some(msg) = &self.stopped {
            match req {
                Request::One { reply, .. } => {
                    let _ = reply.send(Outcome::Failed(msg.clone()));
                }
                Request::Pipeline { cmds, reply } => {
                    let _ = reply.send(cmds.iter().map(|_| Outcome::Failed(msg.clone())).collect());
                }
                Request::Transaction { reply, .. } => {
                    let _ = reply.send(Outcome::Failed(msg.clone()));
                }
            }
            return;
        }
        let b = open.get_or_insert_with(|| Batch::new(self.seq));
        // A batch may stay open while the previous one commits: keep its clock current.
        b.now = b.now.max(self.engine.now_ms());
        let answer = match req {
            Request::One { op, reply } => {
                let p = match self.apply(op, b) {
                    Ok(p) => p,
                    Err(err) => Pending::Now(Outcome::Failed(err.to_string())),
                };
                Answer::One(reply, p)
            }
            Request::Pipeline { cmds, reply } => {
                let mut refused = false;
                let outcomes = cmds
                    .into_iter()
                    .map(|cmd| {
                        if refused {
                            // Not applied: an earlier write of this pipeline was refused.
                            let mut route = Route::Local;
                            cmd.all_keys(|k| {
                                route = self.routing.route(keys::key_hash(k));
                                false
                            });
                            return Outcome::NotServed(route, cmd);
                        }
                        let o = self
                            .apply_data(cmd, b)
                            .unwrap_or_else(|err| Outcome::Failed(err.to_string()));
                        refused = matches!(o, Outcome::NotServed(..));
                        o
                    })
                    .collect();
                Answer::Pipeline(reply, outcomes)
            }
            Request::Transaction { tx, reply } => {
                let o = self
                    .transaction(tx, b)
                    .unwrap_or_else(|err| Outcome::Failed(err.to_string()));
                Answer::One(reply, Pending::Now(o))
            }
        };
        b.answers.push(answer);
    }

    fn seal(&mut self, mut b: Batch) -> Sealed {
        let entry = b.entry.first_seq.map(|first| {
            let bytes = std::mem::take(&mut b.entry.bytes);
            b.log_bytes += bytes.len() as u64 + 8;
            (first, bytes)
        });
        let overlay = Arc::new(b.overlay);
        let meta = Arc::new(b.meta);
        let sub = Arc::new(b.sub);
        self.in_flight.push_back(InFlight {
            overlay: overlay.clone(),
            meta: meta.clone(),
            sub: sub.clone(),
        });
        Sealed {
            meta,
            index: b.index,
            entry,
            after: Committed {
                // Until the commit succeeds.
                failed: true,
                overlay,
                sub,
                head: (self.seq != b.start_seq).then_some(self.seq),
                log_bytes: b.log_bytes,
                cleared: b.cleared,
                counts: b.counts,
                routing: b.routing_changed.then(|| Arc::new(self.routing.clone())),
                answers: b.answers,
            },
        }
    }

    /// Evaluates one operation, all or nothing: one that writes several records and fails
    /// part-way (a storage read error) leaves nothing of itself in the batch.
    fn apply(&mut self, op: Op, b: &mut Batch) -> Result<Pending, fjall::Error> {
        if let Op::Data(cmd) = op {
            return self.apply_data(cmd, b).map(Pending::Now);
        }
        let several = op.is_bulk();
        self.atomically(several, b, |w, b| w.apply_op(op, b))
    }

    /// Runs `f` on the batch; if `several` (it may write several records) and it fails, its
    /// changes are taken back.
    fn atomically<T>(
        &mut self,
        several: bool,
        b: &mut Batch,
        f: impl FnOnce(&mut Self, &mut Batch) -> Result<T, fjall::Error>,
    ) -> Result<T, fjall::Error> {
        if !several {
            return f(self, b);
        }
        b.begin_undo(self.seq);
        let r = f(self, b);
        if r.is_err() {
            if let Some(seq) = b.roll_back() {
                self.seq = seq;
            }
        } else {
            b.undo = None;
        }
        r
    }

    fn apply_op(&mut self, op: Op, b: &mut Batch) -> Result<Pending, fjall::Error> {
        Ok(Pending::Now(match op {
            Op::Data(cmd) => return self.apply_data(cmd, b).map(Pending::Now),
            Op::DataBefore { cmd, deadline_ms } => {
                // Checked here, in order with every other write: queueing cannot carry a
                // write past its deadline into the log.
                if b.now >= deadline_ms {
                    return Ok(Pending::Now(Outcome::DeadlinePassed {
                        deadline_ms,
                        now_ms: b.now,
                    }));
                }
                return self.apply_data(cmd, b).map(Pending::Now);
            }
            Op::Fence {
                migration_uid,
                attempt,
                ranges: fence_ranges,
            } => {
                if let Some(existing) = self
                    .routing
                    .fences
                    .iter()
                    .find(|f| f.migration_uid == migration_uid)
                {
                    if existing.attempt == attempt {
                        return Ok(Pending::Now(Outcome::Fenced {
                            offset: existing.offset,
                        }));
                    }
                    if existing.attempt > attempt {
                        return Ok(Pending::Now(Outcome::Refused(format!(
                            "stale attempt {attempt}: migration {migration_uid} is fenced for attempt {}",
                            existing.attempt
                        ))));
                    }
                }
                if let Some(seen) = self.attempt_seen(&migration_uid, b)?
                    && seen > attempt
                {
                    return Ok(Pending::Now(Outcome::Refused(format!(
                        "stale attempt {attempt}: migration {migration_uid} already saw attempt {seen}"
                    ))));
                }
                // A delayed fence of an attempt that was already released (aborted) would
                // never be lifted.
                if let Some(released) = self.meta_u64(&released_key(&migration_uid), b)?
                    && released >= attempt
                {
                    return Ok(Pending::Now(Outcome::Refused(format!(
                        "stale attempt {attempt}: migration {migration_uid} was unfenced up to attempt {released}"
                    ))));
                }
                self.expire_due(&fence_ranges, b)?;
                let fence = Fence {
                    migration_uid: migration_uid.clone(),
                    attempt,
                    ranges: fence_ranges,
                    offset: self.seq,
                };
                self.routing
                    .fences
                    .retain(|f| f.migration_uid != migration_uid);
                let raw = serde_json::to_vec(&fence).unwrap_or_default();
                b.meta.insert(fence_key(&migration_uid).to_vec(), Some(raw));
                b.meta.insert(
                    attempt_key(&migration_uid),
                    Some(attempt.to_be_bytes().to_vec()),
                );
                self.touches.touch_ranges(fence.ranges.clone());
                self.routing.fences.push(fence);
                // The fenced part's window ends here; the rest keeps accepting in new windows.
                if let Some(epoch) = self.accepted.as_ref().map(|w| w.epoch) {
                    let pieces = window_ranges(&self.routing, self.routing.owned_ranges());
                    self.accepted = Some(self.engine.accepted.begin_epoch(epoch, pieces));
                }
                b.routing_changed = true;
                Outcome::Fenced { offset: self.seq }
            }
            Op::Unfence {
                migration_uid,
                attempt,
            } => {
                // Recorded even when there is no fence to lift: a fence of this attempt that
                // arrives later is refused.
                let key = released_key(&migration_uid);
                if self.meta_u64(&key, b)?.is_none_or(|r| r < attempt) {
                    b.set_meta(key, Some(attempt.to_be_bytes().to_vec()));
                }
                self.unfence(migration_uid, attempt, b)
            }
            Op::Install {
                installed,
                raw,
                degraded,
            } => {
                if let Some(cur) = &self.routing.placement {
                    if cur.cluster_uid != installed.cluster_uid {
                        return Ok(Pending::Now(Outcome::Refused(format!(
                            "placement of cluster {} refused: this node belongs to cluster {}",
                            installed.cluster_uid, cur.cluster_uid
                        ))));
                    }
                    if installed.epoch < cur.epoch {
                        return Ok(Pending::Now(Outcome::Refused(format!(
                            "placement epoch {} is lower than the installed epoch {}",
                            installed.epoch, cur.epoch
                        ))));
                    }
                }
                let owned = installed.owners.ranges_of(&self.routing.me);
                let was = self.routing.owned_ranges();
                // Ranges that came or went: a WATCH of a key there aborts.
                let changed: Vec<HashRange> = was
                    .iter()
                    .filter(|r| !ranges::covered_by(r, &owned))
                    .chain(owned.iter().filter(|r| !ranges::covered_by(r, &was)))
                    .copied()
                    .collect();
                self.touches.touch_ranges(changed);
                // A fence is lifted by a placement that moves its range away.
                let (keep, lift): (Vec<Fence>, Vec<Fence>) =
                    std::mem::take(&mut self.routing.fences)
                        .into_iter()
                        .partition(|f| ranges::any_overlap(&f.ranges, &owned));
                for f in lift {
                    b.meta.insert(fence_key(&f.migration_uid).to_vec(), None);
                }
                self.routing.fences = keep;
                // Waits for an ingestion registering its tables; later ones see the new ranges.
                *self
                    .engine
                    .ingest_gate
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = owned.clone();
                b.meta.insert(META_PLACEMENT.to_vec(), Some(raw));
                b.meta.insert(
                    META_DEGRADED.to_vec(),
                    degraded.as_ref().map(|r| r.as_bytes().to_vec()),
                );
                self.routing.degraded = degraded;
                if self.accepted.as_ref().map(|w| w.epoch) != Some(installed.epoch) {
                    let pieces = window_ranges(&self.routing, owned);
                    self.accepted = Some(self.engine.accepted.begin_epoch(installed.epoch, pieces));
                }
                self.routing.placement = Some(installed);
                b.routing_changed = true;
                Outcome::Done
            }
            Op::Apply { ops, meta, guard } => {
                if ranges::any_overlap(&guard, &self.routing.owned_ranges()) {
                    return Ok(Pending::Now(Outcome::Refused(
                        "this node owns the pulled ranges now".into(),
                    )));
                }
                for (i, op) in ops.into_iter().enumerate() {
                    self.apply_log_op(op, b)?;
                    if i == 0 && crate::failpoints::fail(crate::failpoints::FAIL_APPLY) {
                        return Err(std::io::Error::other("failpoint fail-apply").into());
                    }
                }
                self.meta(meta, b);
                Outcome::Done
            }
            Op::Clear { ranges: rs, meta } => {
                if ranges::any_overlap(&rs, &self.routing.owned_ranges()) {
                    return Ok(Pending::Now(Outcome::Refused(
                        "refusing to clear ranges this node owns".into(),
                    )));
                }
                for r in rs {
                    self.apply_log_op(LogOp::ClearRange { range: r }, b)?;
                }
                self.meta(meta, b);
                Outcome::Done
            }
            Op::Ingested {
                meta,
                index,
                counts,
                guard,
            } => {
                if ranges::any_overlap(&guard, &self.routing.owned_ranges()) {
                    return Ok(Pending::Now(Outcome::Refused(
                        "this node owns the pulled ranges now".into(),
                    )));
                }
                for k in index {
                    b.index.insert(k, true);
                }
                b.counts.extend(counts);
                self.meta(meta, b);
                // The read cache may remember ingested keys as absent (range clears write
                // through); the ingested tables are newer than anything it holds.
                b.cleared = true;
                Outcome::Done
            }
            Op::ClearChunk {
                ranges: rs,
                after,
                max,
            } => {
                if ranges::any_overlap(&rs, &self.routing.owned_ranges()) {
                    return Ok(Pending::Now(Outcome::Refused(
                        "refusing to clear ranges this node owns".into(),
                    )));
                }
                let removed = self.clear_chunk(&rs, after.as_ref(), max, b)?;
                b.cleared = true;
                Outcome::Cleared {
                    done: removed < max,
                }
            }
            Op::Flush => {
                let owned = self.routing.owned_ranges();
                if let Some(reason) = &self.routing.degraded {
                    return Ok(Pending::Now(Outcome::Refused(format!("DEGRADED {reason}"))));
                }
                if let Some(f) = self
                    .routing
                    .fences
                    .iter()
                    .find(|f| ranges::any_overlap(&f.ranges, &owned))
                {
                    let epoch = self.routing.epoch();
                    return Ok(Pending::Now(Outcome::Refused(format!(
                        "TRYAGAIN range fenced for a cutover (epoch {epoch}, migration {})",
                        f.migration_uid
                    ))));
                }
                for r in owned {
                    self.apply_log_op(LogOp::ClearRange { range: r }, b)?;
                }
                Outcome::Done
            }
            Op::SubGc { prefix, keys } => self.collect_garbage(&prefix, keys, b)?,
            Op::Snapshot => return Ok(Pending::Snapshot),
            Op::Meta(meta) => {
                self.meta(meta, b);
                Outcome::Done
            }
            Op::Expired(candidates) => {
                let mut deleted = Vec::new();
                for (index_key, skey, at) in candidates {
                    // The stored state, expired or not (`current` hides expired keys, which
                    // are exactly the ones to delete here).
                    let indexed = self
                        .stored_value(&skey, b)?
                        .is_some_and(|cur| cur.expires_at == Some(at));
                    if !indexed {
                        b.set_index(index_key, false);
                        continue;
                    }
                    // Only the owner expires, and never inside a fence (no record above F):
                    // elsewhere the key stays, hidden by reads, and its index entry stays for
                    // whoever owns it next.
                    if at > b.now || !self.serves(&skey) {
                        continue;
                    }
                    b.set_index(index_key, false);
                    if let Some((_, key)) = keys::split_storage_key(&skey) {
                        deleted.push(key.to_vec());
                    }
                    self.write(skey, None, b)?;
                }
                Outcome::Expired(deleted)
            }
        }))
    }

    /// A data command: applied if this node serves all its keys, else refused unapplied.
    fn apply_data(&mut self, cmd: DataCmd, b: &mut Batch) -> Result<Outcome, fjall::Error> {
        let mut refused = None;
        cmd.all_keys(|key| {
            let route = self.routing.route(keys::key_hash(key));
            let local = route == Route::Local;
            if !local {
                refused = Some(route);
            }
            local
        });
        if let Some(route) = refused {
            return Ok(Outcome::NotServed(route, cmd));
        }
        if let Some(w) = &self.accepted {
            cmd.all_keys(|key| {
                w.record(keys::key_hash(key), b.now);
                true
            });
        }
        // Single-key commands read before they write anything; multi-key ones may fail after
        // their first key.
        let several = match &cmd {
            DataCmd::Del { keys } => keys.len() > 1,
            DataCmd::MSet { pairs } | DataCmd::MSetNx { pairs } => pairs.len() > 1,
            DataCmd::Rename { .. }
            | DataCmd::Copy { .. }
            | DataCmd::Hash(_)
            | DataCmd::Sets(_)
            | DataCmd::ZSet(_)
            | DataCmd::List(_) => true,
            _ => false,
        };
        Ok(Outcome::Data(
            self.atomically(several, b, |w, b| w.data(cmd, b))?,
        ))
    }

    /// Whether this node may write the key now as its owner (owned, unfenced, not degraded).
    fn serves(&self, skey: &[u8]) -> bool {
        keys::split_storage_key(skey).is_some_and(|(h, _)| self.routing.route(h) == Route::Local)
    }

    /// Logs the deletes of the keys of `rs` this node serves and its clock has expired. Run
    /// by a fence before it takes its offset F: every key a read here could have hidden as
    /// expired then has its delete at or below F, so a new owner whose clock runs behind ours
    /// does not serve it again. (Keys that expire later, inside the fence, are left to the new
    /// owner's clock: reads of a fenced range are held, so nobody saw them expire here.)
    fn expire_due(&mut self, rs: &[ranges::HashRange], b: &mut Batch) -> Result<(), fjall::Error> {
        let wanted = |skey: &[u8]| {
            keys::split_storage_key(skey).is_some_and(|(h, _)| ranges::contains(rs, h))
        };
        let mut due: Vec<Vec<u8>> = Vec::new();
        let below = b.now.saturating_add(1).to_be_bytes().to_vec();
        for item in self.engine.expiry.range(..below) {
            let k = item.key()?;
            if let Some((_, skey)) = k.split_at_checked(8)
                && wanted(skey)
            {
                due.push(skey.to_vec());
            }
        }
        // Keys written by batches not committed yet are not in the index keyspace.
        let uncommitted = self.in_flight.iter().flat_map(|f| f.overlay.iter());
        for (skey, v) in b.overlay.iter().chain(uncommitted) {
            if v.as_ref().is_some_and(|s| s.is_expired(b.now)) && wanted(skey) {
                due.push(skey.clone());
            }
        }
        due.sort_unstable();
        due.dedup();
        for skey in due {
            let Some(at) = self.stored_value(&skey, b)?.and_then(|s| s.expires_at) else {
                continue;
            };
            if at > b.now || !self.serves(&skey) {
                continue;
            }
            let mut index_key = at.to_be_bytes().to_vec();
            index_key.extend_from_slice(&skey);
            b.set_index(index_key, false);
            self.write(skey, None, b)?;
        }
        Ok(())
    }

    fn meta(&self, meta: Vec<MetaPut>, b: &mut Batch) {
        for (k, v) in meta {
            b.set_meta(k, v);
        }
    }

    /// Lifts the migration's fence if it belongs to `attempt`.
    fn unfence(&mut self, migration_uid: String, attempt: u64, b: &mut Batch) -> Outcome {
        match self
            .routing
            .fences
            .iter()
            .position(|f| f.migration_uid == migration_uid)
        {
            None => Outcome::Done,
            Some(i) if self.routing.fences[i].attempt != attempt => Outcome::Refused(format!(
                "fence of migration {migration_uid} belongs to attempt {}, not {attempt}",
                self.routing.fences[i].attempt
            )),
            Some(i) => {
                let lifted = self.routing.fences.remove(i);
                self.touches.touch_ranges(lifted.ranges);
                b.meta.insert(fence_key(&migration_uid).to_vec(), None);
                b.routing_changed = true;
                Outcome::Done
            }
        }
    }

    fn attempt_seen(&self, migration_uid: &str, b: &Batch) -> Result<Option<u64>, fjall::Error> {
        self.meta_u64(&attempt_key(migration_uid), b)
    }

    /// A u64 metadata value as of this batch (its own writes, the batches being committed,
    /// then the keyspace).
    fn meta_u64(&self, key: &[u8], b: &Batch) -> Result<Option<u64>, fjall::Error> {
        let raw = match b
            .meta
            .get(key)
            .or_else(|| self.in_flight.iter().rev().find_map(|f| f.meta.get(key)))
        {
            Some(v) => v.clone(),
            None => self.engine.meta.get(key)?.map(|v| v.to_vec()),
        };
        Ok(raw.and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes)))
    }

    /// The key's current state including this batch's and the committing batch's writes
    /// (expired = absent).
    fn current(&self, skey: &[u8], b: &Batch) -> Result<Option<Stored>, fjall::Error> {
        Ok(self.stored_value(skey, b)?.filter(|s| !s.is_expired(b.now)))
    }

    /// The key's stored state, expired or not.
    fn stored_value(&self, skey: &[u8], b: &Batch) -> Result<Option<Stored>, fjall::Error> {
        Ok(
            match b.overlay.get(skey).or_else(|| {
                self.in_flight
                    .iter()
                    .rev()
                    .find_map(|f| f.overlay.get(skey))
            }) {
                Some(v) => v.clone(),
                None => self
                    .engine
                    .data
                    .get(skey)?
                    .and_then(|raw| Stored::decode(&raw)),
            },
        )
    }

    /// Whether a key is stored (expired or not), counting this batch's and the committing
    /// batch's writes. The presence filter (new keys) and the read cache answer most of these
    /// without touching fjall.
    fn stored(&self, skey: &[u8], b: &Batch) -> Result<bool, fjall::Error> {
        if let Some(v) = b.overlay.get(skey).or_else(|| {
            self.in_flight
                .iter()
                .rev()
                .find_map(|f| f.overlay.get(skey))
        }) {
            return Ok(v.is_some());
        }
        // Updates (the common case) are answered by the cache, new keys by the filter.
        if let Some(known) = self.engine.cache.stored(skey) {
            return Ok(known);
        }
        if !self.engine.presence.may_contain(skey) {
            return Ok(false);
        }
        self.engine.data.contains_key(skey)
    }

    /// Removes a stored key without a log record of its own (range clears log one record for
    /// the range); false if it was not stored.
    fn remove_unlogged(&mut self, skey: &[u8], b: &mut Batch) -> Result<bool, fjall::Error> {
        if !self.stored(skey, b)? {
            return Ok(false);
        }
        Self::count(skey, -1, b);
        b.set_data(skey.to_vec(), None);
        Ok(true)
    }

    /// Records that a stored key appears (+1) or goes (-1).
    fn count(skey: &[u8], delta: i64, b: &mut Batch) {
        if let Some((hash, _)) = keys::split_storage_key(skey) {
            b.counts.push((super::counts::bucket(hash), delta));
        }
    }

    /// Writes a key's post-image to data and log.
    fn write(
        &mut self,
        skey: Vec<u8>,
        value: Option<Stored>,
        b: &mut Batch,
    ) -> Result<(), fjall::Error> {
        // A delete of a key that is already logically gone (expired) changes nothing a
        // WATCH can see (Redis: a watched stale key's expiry does not fail EXEC).
        if self.engine.watchers.load(Ordering::SeqCst) == 0 {
            self.touches.untracked();
        } else if value.is_some() || self.current(&skey, b)?.is_some() {
            self.touches.touch(&skey);
        }
        let was = self.stored(&skey, b)?;
        let delta = i64::from(value.is_some()) - i64::from(was);
        if delta != 0 {
            Self::count(&skey, delta, b);
        }
        // (A stored key is in the presence filter already.)
        if value.is_some() && !was {
            self.engine.presence.insert(&skey);
        }
        match &value {
            Some(s) => {
                if let Some(at) = s.expires_at {
                    let mut ik = at.to_be_bytes().to_vec();
                    ik.extend_from_slice(&skey);
                    b.set_index(ik, true);
                }
                self.seq += 1;
                b.entry
                    .push_put(self.seq, b.now, &skey, &s.value, s.expiry_word());
            }
            None => self.append_raw(crate::changelog::encode_del(b.now, &skey), b),
        }
        b.set_data(skey, value);
        Ok(())
    }

    fn append(&mut self, op: LogOp, b: &mut Batch) {
        let raw = LogRecord { ts_ms: b.now, op }.encode();
        self.append_raw(raw, b);
    }

    fn append_raw(&mut self, raw: Vec<u8>, b: &mut Batch) {
        self.seq += 1;
        b.entry.push(self.seq, &raw);
    }

    /// Applies a pulled record (a post-image) as-is, logging it like any other write.
    fn apply_log_op(&mut self, op: LogOp, b: &mut Batch) -> Result<(), fjall::Error> {
        match op {
            LogOp::Put {
                skey,
                value,
                expires_at,
                typed,
            } => self.write(
                skey,
                Some(Stored {
                    value,
                    expires_at,
                    typed,
                }),
                b,
            )?,
            LogOp::Del { skey } => self.write(skey, None, b)?,
            LogOp::SubPut { skey, value } => self.write_sub(skey, Some(value), b),
            LogOp::SubDel { skey } => self.write_sub(skey, None, b),
            LogOp::ClearRange { range } => {
                b.cleared = true;
                let (lo, hi) = keys::range_bounds(range);
                let iter = match &hi {
                    Some(hi) => self.engine.data.range(lo.clone()..hi.clone()),
                    None => self.engine.data.range(lo.clone()..),
                };
                for item in iter {
                    let k = item.key()?;
                    self.remove_unlogged(&k, b)?;
                }
                let iter = match hi {
                    Some(hi) => self.engine.sub.range(lo..hi),
                    None => self.engine.sub.range(lo..),
                };
                for item in iter {
                    let k = item.key()?;
                    b.set_sub(k.to_vec(), None);
                }
                // Keys written earlier in this batch or the committing one are not in the
                // keyspaces yet.
                let in_range = |k: &Vec<u8>| {
                    keys::split_storage_key(k)
                        .is_some_and(|(h, _)| range.start <= h && h <= range.end)
                };
                let committing = self.in_flight.iter().flat_map(|f| f.overlay.keys());
                let pending: Vec<Vec<u8>> = b
                    .overlay
                    .keys()
                    .chain(committing)
                    .filter(|k| in_range(k))
                    .cloned()
                    .collect();
                for k in pending {
                    self.remove_unlogged(&k, b)?;
                }
                let committing = self.in_flight.iter().flat_map(|f| f.sub.keys());
                let pending: Vec<Vec<u8>> = b
                    .sub
                    .keys()
                    .chain(committing)
                    .filter(|k| in_range(k))
                    .cloned()
                    .collect();
                for k in pending {
                    b.set_sub(k, None);
                }
                self.append(LogOp::ClearRange { range }, b);
            }
        }
        Ok(())
    }

    fn data(&mut self, cmd: DataCmd, b: &mut Batch) -> Result<DataReply, fjall::Error> {
        Ok(match cmd {
            DataCmd::Set {
                key,
                value,
                expiry,
                cond,
                get,
            } => {
                let skey = keys::storage_key(&key);
                let needs_old = get || cond != SetCond::Always || expiry == SetExpiry::Keep;
                let old = if needs_old {
                    self.current(&skey, b)?
                } else {
                    None
                };
                let exists = old.is_some();
                let old_reply = match &old {
                    Some(s) if s.typed && get => {
                        return Ok(DataReply::Err(super::collection::WRONGTYPE.into()));
                    }
                    Some(s) => DataReply::Bulk(s.value.clone()),
                    None => DataReply::Nil,
                };
                let proceed = match cond {
                    SetCond::Always => true,
                    SetCond::IfAbsent => !exists,
                    SetCond::IfPresent => exists,
                };
                if proceed {
                    let expires_at = match expiry {
                        SetExpiry::Clear => None,
                        SetExpiry::At(at) => Some(at),
                        SetExpiry::Keep => old.as_ref().and_then(|s| s.expires_at),
                    };
                    if expires_at.is_some_and(|at| at <= b.now) {
                        self.write(skey, None, b)?;
                    } else {
                        self.write(skey, Some(Stored::string(value, expires_at)), b)?;
                    }
                }
                match (get, proceed) {
                    (true, _) => old_reply,
                    (false, true) => DataReply::Ok,
                    (false, false) => DataReply::Nil,
                }
            }
            DataCmd::Del { keys: ks } => {
                let mut n = 0;
                for key in ks {
                    let skey = keys::storage_key(&key);
                    if self.current(&skey, b)?.is_some() {
                        self.write(skey, None, b)?;
                        n += 1;
                    }
                }
                DataReply::Int(n)
            }
            DataCmd::IncrBy { key, delta } => {
                let skey = keys::storage_key(&key);
                let old = self.current(&skey, b)?;
                let (cur, expires_at) = match &old {
                    None => (0i64, None),
                    Some(s) if s.typed => {
                        return Ok(DataReply::Err(super::collection::WRONGTYPE.into()));
                    }
                    Some(s) => match parse_int(&s.value) {
                        Some(v) => (v, s.expires_at),
                        None => {
                            return Ok(DataReply::Err(
                                "ERR value is not an integer or out of range".into(),
                            ));
                        }
                    },
                };
                match cur.checked_add(delta) {
                    None => DataReply::Err("ERR increment or decrement would overflow".into()),
                    Some(v) => {
                        let value = v.to_string().into_bytes();
                        self.write(skey, Some(Stored::string(value, expires_at)), b)?;
                        DataReply::Int(v)
                    }
                }
            }
            DataCmd::Expire { key, at, cond } => {
                let skey = keys::storage_key(&key);
                match self.current(&skey, b)? {
                    None => DataReply::Int(0),
                    Some(s) if at.is_some_and(|at| !cond.allows(s.expires_at, at)) => {
                        DataReply::Int(0)
                    }
                    Some(s) => match at {
                        None if s.expires_at.is_none() => DataReply::Int(0),
                        Some(at) if at <= b.now => {
                            self.write(skey, None, b)?;
                            DataReply::Int(1)
                        }
                        at => {
                            // (A collection's metadata keeps its kind: only the expiry changes.)
                            let s = Stored {
                                expires_at: at,
                                ..s
                            };
                            self.write(skey, Some(s), b)?;
                            DataReply::Int(1)
                        }
                    },
                }
            }
            DataCmd::Str(c) => {
                let skey = keys::storage_key(c.key());
                let old = self.current(&skey, b)?;
                let setnx = matches!(c, strings::StrCmd::SetNx { .. });
                if old.as_ref().is_some_and(|s| s.typed) && !setnx {
                    return Ok(DataReply::Err(super::collection::WRONGTYPE.into()));
                }
                let (change, reply) = strings::eval(c, old, b.now);
                match change {
                    Change::Keep => {}
                    Change::Put(s) => self.write(skey, Some(s), b)?,
                    Change::Del => self.write(skey, None, b)?,
                }
                reply
            }
            DataCmd::Rename { src, dst, nx } => {
                let s = keys::storage_key(&src);
                let Some(value) = self.current(&s, b)? else {
                    return Ok(DataReply::Err("ERR no such key".into()));
                };
                if src == dst {
                    return Ok(if nx { DataReply::Int(0) } else { DataReply::Ok });
                }
                let d = keys::storage_key(&dst);
                if nx && self.current(&d, b)?.is_some() {
                    return Ok(DataReply::Int(0));
                }
                // Post-images: the destination's whole value and expiry (a collection's
                // elements under a new version), then the delete.
                self.write_copy(&src, value, &dst, b)?;
                self.write(s, None, b)?;
                if nx { DataReply::Int(1) } else { DataReply::Ok }
            }
            DataCmd::Copy { src, dst, replace } => {
                if src == dst {
                    return Ok(DataReply::Err(
                        "ERR source and destination objects are the same".into(),
                    ));
                }
                let Some(value) = self.current(&keys::storage_key(&src), b)? else {
                    return Ok(DataReply::Int(0));
                };
                let d = keys::storage_key(&dst);
                if !replace && self.current(&d, b)?.is_some() {
                    return Ok(DataReply::Int(0));
                }
                self.write_copy(&src, value, &dst, b)?;
                DataReply::Int(1)
            }
            DataCmd::MSetNx { pairs } => {
                for (key, _) in &pairs {
                    if self.current(&keys::storage_key(key), b)?.is_some() {
                        return Ok(DataReply::Int(0));
                    }
                }
                for (key, value) in pairs {
                    let skey = keys::storage_key(&key);
                    self.write(skey, Some(Stored::string(value, None)), b)?;
                }
                DataReply::Int(1)
            }
            DataCmd::Hash(c) => self.hash_cmd(c, b)?,
            DataCmd::Sets(c) => self.set_cmd(c, b)?,
            DataCmd::ZSet(c) => self.zset_cmd(c, b)?,
            DataCmd::List(c) => self.list_cmd(c, b)?,
            DataCmd::MSet { pairs } => {
                for (key, value) in pairs {
                    let skey = keys::storage_key(&key);
                    self.write(skey, Some(Stored::string(value, None)), b)?;
                }
                DataReply::Ok
            }
        })
    }
}

/// Redis' integer parsing for INCR: optional '-', digits, no spaces, no leading '+', fits i64.
pub fn parse_int(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 20 || v.first() == Some(&b'+') {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    if s.starts_with('0') && s.len() > 1 || s.starts_with("-0") {
        return None;
    }
    s.parse().ok()
}

/// The pieces accepted writes are recorded by: owned ranges cut at the fences' edges.
fn window_ranges(routing: &Routing, owned: Vec<HashRange>) -> Vec<HashRange> {
    crate::accepted::cut_at(&owned, routing.fences.iter().flat_map(|f| &f.ranges))
}

pub fn fence_key(migration_uid: &str) -> Vec<u8> {
    [META_FENCE_PREFIX, migration_uid.as_bytes()].concat()
}

pub fn attempt_key(migration_uid: &str) -> Vec<u8> {
    [META_ATTEMPT_PREFIX, migration_uid.as_bytes()].concat()
}

pub fn released_key(migration_uid: &str) -> Vec<u8> {
    [META_RELEASED_PREFIX, migration_uid.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_int(b"42"), Some(42));
        assert_eq!(parse_int(b"-7"), Some(-7));
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"007"), None);
        assert_eq!(parse_int(b" 1"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
        assert_eq!(parse_int(b""), None);
    }
}
