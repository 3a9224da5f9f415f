//! Transactions in the writer (see `engine::tx`): the ownership check, the WATCH check and
//! the queued commands, in one critical section and one undo record.

use std::sync::atomic::Ordering;

use super::{Batch, Writer};
use crate::engine::collection::{self, CollMeta};
use crate::engine::ops::{DataReply, Op, Outcome};
use crate::engine::tx::{Transaction, TxItem, TxReply};
use crate::engine::view::{self, KeyView};
use crate::engine::zrange::RangeQuery;
use crate::engine::{EngineError, KvPair};
use crate::keys::{self, Stored};
use crate::routing::Route;

/// The data as the open batch sees it: the transaction's own earlier writes included.
struct BatchView<'a> {
    w: &'a Writer,
    b: &'a Batch,
}

impl KeyView for BatchView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError> {
        Ok(self.w.current(&keys::storage_key(key), self.b)?)
    }

    fn element(
        &self,
        key: &[u8],
        meta: &CollMeta,
        field: &[u8],
    ) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self
            .w
            .sub_get(&collection::sub_key(key, meta.version, field), self.b)?)
    }

    fn all_elements(&self, key: &[u8], meta: &CollMeta) -> Result<Vec<KvPair>, EngineError> {
        let prefix = collection::elements_prefix(key, meta.version);
        Ok(self
            .w
            .sub_scan(&prefix, self.b)?
            .into_iter()
            .map(|(k, v)| (k.get(prefix.len()..).unwrap_or_default().to_vec(), v))
            .collect())
    }

    fn elements_from(
        &self,
        key: &[u8],
        meta: &CollMeta,
        from: &[u8],
        min: usize,
        group: usize,
    ) -> Result<(Vec<KvPair>, Option<Vec<u8>>), EngineError> {
        let all = self.all_elements(key, meta)?;
        Ok(view::page_of(
            all.into_iter().filter(|(f, _)| f.as_slice() >= from),
            min,
            group,
        ))
    }

    fn zset_range(
        &self,
        key: &[u8],
        meta: &CollMeta,
        q: &RangeQuery,
    ) -> Result<Vec<(Vec<u8>, f64)>, EngineError> {
        Ok(self.w.zset_walk(key, meta, q.clone(), self.b)?)
    }

    fn zset_rank(
        &self,
        key: &[u8],
        meta: &CollMeta,
        member: &[u8],
    ) -> Result<Option<(u64, f64)>, EngineError> {
        Ok(self.w.zset_rank_in(key, meta, member, self.b)?)
    }

    fn now_ms(&self) -> u64 {
        self.b.now
    }
}

impl Writer {
    /// Stamps a key for WATCH (while nobody watches, only the floor moves).
    pub(super) fn touch_for_watch(&mut self, skey: &[u8]) {
        if self.engine.watchers.load(Ordering::SeqCst) > 0 {
            self.touches.touch(skey);
        } else {
            self.touches.untracked();
        }
    }

    pub(super) fn transaction(
        &mut self,
        tx: Transaction,
        b: &mut Batch,
    ) -> Result<Outcome, fjall::Error> {
        if let Some(deadline_ms) = tx.deadline_ms
            && b.now >= deadline_ms
        {
            return Ok(Outcome::DeadlinePassed {
                deadline_ms,
                now_ms: b.now,
            });
        }
        let all_keys = tx.keys.iter().chain(tx.watched.iter().map(|w| &w.key));
        for k in all_keys {
            let route = self.routing.route(keys::key_hash(k));
            if route != Route::Local {
                return Ok(Outcome::TxNotServed(route));
            }
        }
        for w in &tx.watched {
            let skey = keys::storage_key(&w.key);
            // Modified, moved, or (live when watched) gone since, expiry included.
            if self.touches.modified_since(&skey, w.stamp)
                || (w.live && self.current(&skey, b)?.is_none())
            {
                return Ok(Outcome::WatchAborted);
            }
        }
        if let Some(acc) = &self.accepted {
            for item in &tx.items {
                if let TxItem::Write(cmd) = item {
                    cmd.all_keys(|k| {
                        acc.record(keys::key_hash(k), b.now);
                        true
                    });
                }
            }
        }
        let items = tx.items;
        self.atomically(true, b, move |w, b| {
            let mut replies = Vec::with_capacity(items.len());
            for item in items {
                replies.push(match item {
                    TxItem::Write(cmd) => TxReply::Data(w.data(cmd, b)?),
                    TxItem::Read(read) => TxReply::Raw(read(&BatchView { w, b })),
                    TxItem::Flush => match w.apply_op(Op::Flush, b)? {
                        // (Its text as FLUSHALL outside a transaction answers it.)
                        super::Pending::Now(Outcome::Refused(msg)) => {
                            TxReply::Data(DataReply::Err(msg))
                        }
                        _ => TxReply::Data(DataReply::Ok),
                    },
                });
            }
            Ok(Outcome::Transaction(replies))
        })
    }
}
