//! The open batch: what its operations wrote so far, and how to take one operation back.

use std::collections::HashMap;

use super::Writer;
use super::pipeline::{Answer, MetaMap, Overlay, SubOverlay};
use crate::keys::Stored;

/// State of the open batch being built.
pub(super) struct Batch {
    pub(super) overlay: Overlay,
    pub(super) sub: SubOverlay,
    pub(super) log_bytes: u64,
    pub(super) now: u64,
    pub(super) routing_changed: bool,
    /// A range clear ran: the read cache must forget everything.
    pub(super) cleared: bool,
    /// This batch's change-log records, stored as one log entry.
    pub(super) entry: crate::changelog::EntryBuilder,
    /// Final metadata writes (None = delete) and expiry-index writes (false = delete) of the
    /// batch. fjall gives every item of a batch the same sequence number, so a key must appear
    /// once per batch: the overlay, these maps and the single log entry guarantee it.
    pub(super) meta: MetaMap,
    pub(super) index: HashMap<Vec<u8>, bool>,
    /// Stored-key count changes: (bucket, delta).
    pub(super) counts: Vec<(u32, i64)>,
    pub(super) start_seq: u64,
    pub(super) answers: Vec<Answer>,
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

/// How much a batch held: what the next one reserves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sizes {
    entry_bytes: usize,
    subs: usize,
}

/// Reservations are capped: one huge batch (a bulk clear, a big RENAME) must not make every
/// later batch hold that much memory.
const MAX_RESERVED_ENTRY_BYTES: usize = 8 << 20;
const MAX_RESERVED_SUBS: usize = 64 << 10;

impl Sizes {
    fn reserved(self) -> Sizes {
        Sizes {
            entry_bytes: self.entry_bytes.min(MAX_RESERVED_ENTRY_BYTES),
            subs: self.subs.min(MAX_RESERVED_SUBS),
        }
    }
}

impl Batch {
    pub(super) fn new(start_seq: u64) -> Batch {
        Batch::with_sizes(start_seq, Sizes::default())
    }

    /// A batch with room for about `sizes` (see `Writer::last_sizes`).
    pub(super) fn with_sizes(start_seq: u64, sizes: Sizes) -> Batch {
        let Sizes { entry_bytes, subs } = sizes.reserved();
        Batch {
            overlay: HashMap::with_capacity_and_hasher(64, Default::default()),
            sub: HashMap::with_capacity_and_hasher(subs, Default::default()),
            log_bytes: 0,
            now: 0,
            routing_changed: false,
            cleared: false,
            entry: crate::changelog::EntryBuilder {
                first_seq: None,
                bytes: Vec::with_capacity(entry_bytes),
            },
            meta: HashMap::new(),
            index: HashMap::new(),
            counts: Vec::new(),
            start_seq,
            answers: Vec::with_capacity(64),
            undo: None,
        }
    }

    /// What this batch holds, for the next one's reservation.
    pub(super) fn sizes(&self) -> Sizes {
        Sizes {
            entry_bytes: self.entry.bytes.len(),
            subs: self.sub.len(),
        }
    }

    pub(super) fn set_data(&mut self, skey: Vec<u8>, value: Option<Stored>) {
        if let Some(u) = &mut self.undo {
            u.data
                .push((skey.clone(), self.overlay.get(&skey).cloned()));
        }
        self.overlay.insert(skey, value);
    }

    pub(super) fn set_sub(&mut self, skey: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(u) = &mut self.undo {
            u.sub.push((skey.clone(), self.sub.get(&skey).cloned()));
        }
        self.sub.insert(skey, value);
    }

    pub(super) fn set_index(&mut self, key: Vec<u8>, live: bool) {
        if let Some(u) = &mut self.undo {
            u.index.push((key.clone(), self.index.get(&key).copied()));
        }
        self.index.insert(key, live);
    }

    pub(super) fn set_meta(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
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

impl Writer {
    /// Runs `f` on the batch; if `several` (it may write several records) and it fails, its
    /// changes are taken back.
    pub(super) fn atomically<T>(
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
}
