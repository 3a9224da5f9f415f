//! The commit pipeline: the writer's lock, sealing batches, group commit with fsync, the
//! post-commit work (read cache, counters, log head, routing) and the answers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use fjall::PersistMode;
use tokio::sync::oneshot;

use super::apply::window_ranges;
use super::{Batch, Request, Writer};
use crate::engine::open::META_HEAD;
use crate::engine::ops::Outcome;
use crate::engine::{Engine, SnapshotSession};
use crate::keys::{self, Stored};
use crate::routing::{Route, Routing};

/// Where a request's outcome goes once its batch is durable.
pub(super) enum Answer {
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

pub(super) type Overlay = HashMap<Vec<u8>, Option<Stored>, crate::keys::KeyHashBuilder>;
/// Collection elements written by a batch: sub-key -> value (None = deleted).
pub(super) type SubOverlay = HashMap<Vec<u8>, Option<Vec<u8>>, crate::keys::KeyHashBuilder>;
pub(super) type MetaMap = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// A sealed batch's writes, read by evaluation until fjall and the read cache have them.
pub(super) struct InFlight {
    pub(super) overlay: Arc<Overlay>,
    pub(super) meta: Arc<MetaMap>,
    pub(super) sub: Arc<SubOverlay>,
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
    pub fn watch(
        &self,
        keys: &[Vec<u8>],
    ) -> Result<Vec<crate::engine::tx::WatchedKey>, fjall::Error> {
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
                Ok(crate::engine::tx::WatchedKey {
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
        last_sizes: Default::default(),
        touches: crate::engine::touched::TouchLog::new(
            crate::engine::touched::KEY_CAP,
            crate::engine::touched::RANGE_CAP,
        ),
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

/// A batch handed to the committer.
struct Sealed {
    meta: Arc<MetaMap>,
    index: HashMap<Vec<u8>, bool>,
    /// First sequence and bytes of the batch's log entry.
    entry: Option<(u64, Vec<u8>)>,
    /// The batch's data and what to do once it is durable.
    after: Committed,
}

pub(super) enum Pending {
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
        let b = open.get_or_insert_with(|| Batch::with_sizes(self.seq, self.last_sizes));
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
        self.last_sizes = b.sizes();
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
}
