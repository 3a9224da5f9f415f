//! Per-operation evaluation: the operations the engine submits (data commands, fences,
//! placements, pulled records, clears, expiry), each checked against ownership and fences in
//! the writer's critical section.

use super::pipeline::Pending;
use super::schema::{attempt_key, expiry_index_key, fence_key, released_key};
use super::{Batch, Writer};
use crate::changelog::LogOp;
use crate::engine::open::{META_DEGRADED, META_PLACEMENT};
use crate::engine::ops::{DataCmd, MetaPut, Op, Outcome};
use crate::keys;
use crate::ranges;
use crate::routing::{Fence, Route, Routing};
use ringshift_ring::HashRange;

impl Writer {
    /// Evaluates one operation, all or nothing: one that writes several records and fails
    /// part-way (a storage read error) leaves nothing of itself in the batch.
    pub(super) fn apply(&mut self, op: Op, b: &mut Batch) -> Result<Pending, fjall::Error> {
        if let Op::Data(cmd) = op {
            return self.apply_data(cmd, b).map(Pending::Now);
        }
        let several = op.is_bulk();
        self.atomically(several, b, |w, b| w.apply_op(op, b))
    }
    pub(super) fn apply_op(&mut self, op: Op, b: &mut Batch) -> Result<Pending, fjall::Error> {
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
    pub(super) fn apply_data(
        &mut self,
        cmd: DataCmd,
        b: &mut Batch,
    ) -> Result<Outcome, fjall::Error> {
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
    pub(super) fn serves(&self, skey: &[u8]) -> bool {
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
            b.set_index(expiry_index_key(at, &skey), false);
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
}

/// The pieces accepted writes are recorded by: owned ranges cut at the fences' edges.
pub(super) fn window_ranges(routing: &Routing, owned: Vec<HashRange>) -> Vec<HashRange> {
    crate::accepted::cut_at(&owned, routing.fences.iter().flat_map(|f| &f.ranges))
}
