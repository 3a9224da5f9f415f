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
//!
//! Layout: `pipeline` (the lock, group commit, fsync, answers), `batch` (the open batch and
//! how an operation is taken back), `apply` (per-operation evaluation: the placement, fence
//! and pull operations), `commands` (Redis semantics of the string and whole-key commands;
//! `collections`, `lists`, `sets`, `zsets` and `tx` the rest), `records` (a key's state as of
//! the batch, and writes as data + log records), `subkeys` (collection elements) and
//! `schema` (how metadata and index records are keyed).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::Engine;
use super::ops::{DataCmd, Op, Outcome};
use crate::accepted::EpochWindows;
use crate::routing::Routing;

mod apply;
mod batch;
mod collections;
mod commands;
mod lists;
mod pipeline;
mod records;
mod schema;
mod sets;
mod subkeys;
mod tx;
mod zsets;

use batch::Batch;
pub use commands::parse_int;
pub use pipeline::{Handle, spawn};
use pipeline::{InFlight, Pending};
pub use schema::{attempt_key, expiry_index_key, fence_key};

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
    /// Log-entry bytes and element writes of the last sealed batch: the next batch reserves
    /// that much up front instead of growing by doubling (a profile of ZADD -P16 spent a tenth
    /// of the node's CPU in the kernel zeroing pages for the entry's reallocations).
    last_sizes: batch::Sizes,
}
