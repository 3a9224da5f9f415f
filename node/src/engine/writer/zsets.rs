//! Sorted-set commands in the writer (see `writer::collections` for how effects are applied):
//! member lookups through the pending batches, and ordered scans of the score index that merge
//! the stored records with the pending batches' and stop as soon as a range is complete (a
//! ZPOPMIN of a million-member set reads one record).

use std::collections::{BTreeMap, HashMap};

use super::{Batch, Writer};
use crate::engine::collection::{self, CollMeta, CollType, Effect, Held};
use crate::engine::ops::DataReply;
use crate::engine::zrange::{self, RangeBy, RangeQuery, Step, Walk};
use crate::engine::zscore;
use crate::engine::zset::{self, Input, ZsetCmd};
use crate::keys;

type Members = Vec<crate::engine::zset::Scored>;
/// Pending writes in walk order.
type PendingIter<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

impl Writer {
    /// Walks the records of `[lo, hi)` (stored, overlaid by the pending batches) upwards, or
    /// downwards when `rev`, calling `f(key, value)` until it says stop.
    fn sub_walk(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
        rev: bool,
        b: &Batch,
        mut f: impl FnMut(&[u8], &[u8]) -> Step,
    ) -> Result<(), fjall::Error> {
        let inside = |k: &[u8]| k >= lo && hi.is_none_or(|h| k < h);
        // Pending writes, oldest first so later ones win.
        let mut pending: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for overlay in self.in_flight.iter().map(|f| &*f.sub).chain([&b.sub]) {
            for (k, v) in overlay.iter().filter(|(k, _)| inside(k)) {
                pending.insert(k.clone(), v.clone());
            }
        }
        let stored = match hi {
            Some(h) => self.engine.sub.range(lo.to_vec()..h.to_vec()),
            None => self.engine.sub.range(lo.to_vec()..),
        };
        let mut stored: Box<dyn Iterator<Item = _>> = if rev {
            Box::new(stored.rev())
        } else {
            Box::new(stored)
        };
        let mut pend: PendingIter<'_> = if rev {
            Box::new(pending.iter().rev())
        } else {
            Box::new(pending.iter())
        };
        let mut s = stored.next().map(|g| g.into_inner()).transpose()?;
        let mut p = pend.next();
        // `a` comes before `b` in the walk's direction.
        let first = |a: &[u8], b: &[u8]| if rev { a > b } else { a < b };
        loop {
            let take_stored = match (&s, p) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((sk, _)), Some((pk, _))) => first(sk, pk),
            };
            let step = if take_stored {
                let Some((k, v)) = s.take() else {
                    return Ok(());
                };
                s = stored.next().map(|g| g.into_inner()).transpose()?;
                f(&k, &v)
            } else {
                let Some((pk, pv)) = p else {
                    return Ok(());
                };
                // A pending write hides the stored record of the same key.
                if s.as_ref()
                    .is_some_and(|(sk, _)| sk.as_ref() == pk.as_slice())
                {
                    s = stored.next().map(|g| g.into_inner()).transpose()?;
                }
                p = pend.next();
                match pv {
                    Some(v) => f(pk, v),
                    None => Step::Continue,
                }
            };
            if step == Step::Stop {
                return Ok(());
            }
        }
    }

    /// The members `q` selects in `key`'s set (`m`), as of this batch.
    pub(super) fn zset_walk(
        &self,
        key: &[u8],
        m: &CollMeta,
        q: RangeQuery,
        b: &Batch,
    ) -> Result<Members, fjall::Error> {
        let mut walk = Walk::new(q.clone(), m.count);
        if walk.done() {
            return Ok(Vec::new());
        }
        let by_member = zrange::walks_members(&q);
        let (prefix, lo, hi) = zset::scan_bounds(key, m.version, &q);
        self.sub_walk(&lo, hi.as_deref(), q.rev, b, |k, v| {
            let field = k.get(prefix.len()..).unwrap_or_default();
            zset::offer(&mut walk, by_member, field, v)
        })?;
        Ok(walk.finish())
    }

    /// A member's rank from the lowest score (0-based) and its score, as of this batch: the
    /// score index records below the member's own, counted.
    pub(super) fn zset_rank_in(
        &self,
        key: &[u8],
        m: &CollMeta,
        member: &[u8],
        b: &Batch,
    ) -> Result<Option<(u64, f64)>, fjall::Error> {
        let Some(score) = self.scores(key, Some(m), &[member], b)?.pop().flatten() else {
            return Ok(None);
        };
        let prefix = collection::family_prefix(key, m.version, zset::FAMILY_SCORES);
        let at = [prefix.as_slice(), &zscore::index_field(score, member)].concat();
        let mut rank = 0;
        self.sub_walk(&prefix, Some(&at), false, b, |_, _| {
            rank += 1;
            Step::Continue
        })?;
        Ok(Some((rank, score)))
    }

    /// Current scores of `members` (None: absent).
    fn scores(
        &self,
        key: &[u8],
        meta: Option<&CollMeta>,
        members: &[&[u8]],
        b: &Batch,
    ) -> Result<Vec<Option<f64>>, fjall::Error> {
        Ok(self
            .field_values(key, meta, members, b)?
            .into_iter()
            .map(|v| v.map(|v| zset::stored_score(&v)))
            .collect())
    }

    /// A ZUNION/ZINTER/ZDIFF input: a sorted set's members, a set's (score 1), or none.
    fn zset_input(
        &self,
        key: &[u8],
        b: &Batch,
    ) -> Result<Result<HashMap<Vec<u8>, f64>, &'static str>, fjall::Error> {
        let meta = match Held::of(self.current(&keys::storage_key(key), b)?.as_ref()) {
            Held::Nothing => return Ok(Ok(HashMap::new())),
            Held::Coll(m) if matches!(m.ty, CollType::ZSet | CollType::Set) => m,
            _ => return Ok(Err(collection::WRONGTYPE)),
        };
        let prefix = collection::elements_prefix(key, meta.version);
        let is_set = meta.ty == CollType::Set;
        Ok(Ok(self
            .sub_scan(&prefix, b)?
            .into_iter()
            .map(|(k, v)| {
                let member = k.get(prefix.len()..).unwrap_or_default().to_vec();
                let score = if is_set { 1.0 } else { zset::stored_score(&v) };
                (member, score)
            })
            .collect()))
    }

    /// Replaces `dst` (whatever it holds) with a sorted set of `members`; answers their count.
    fn zset_store(
        &mut self,
        dst: &[u8],
        members: Members,
        b: &mut Batch,
    ) -> Result<DataReply, fjall::Error> {
        let d = keys::storage_key(dst);
        if self.current(&d, b)?.is_some() {
            self.write(d.clone(), None, b)?;
        }
        let n = members.len() as i64;
        let mut effect = zset::fill(&members);
        effect.reply = Some(DataReply::Int(n));
        self.apply_effect(dst, d, CollType::ZSet, None, effect, b)
    }

    pub(super) fn zset_cmd(
        &mut self,
        cmd: ZsetCmd,
        b: &mut Batch,
    ) -> Result<DataReply, fjall::Error> {
        macro_rules! meta_or_wrongtype {
            ($key:expr) => {
                match self.coll_meta(&keys::storage_key($key), CollType::ZSet, b)? {
                    Ok(m) => m,
                    Err(e) => return Ok(DataReply::Err(e.into())),
                }
            };
        }
        match cmd {
            ZsetCmd::Add { key, flags, pairs } => {
                let meta = meta_or_wrongtype!(&key);
                let members: Vec<&[u8]> = pairs.iter().map(|(_, m)| m.as_slice()).collect();
                let current = self.scores(&key, meta.as_ref(), &members, b)?;
                let effect = zset::add(flags, pairs, current);
                let skey = keys::storage_key(&key);
                self.apply_effect(&key, skey, CollType::ZSet, meta, effect, b)
            }
            ZsetCmd::Rem { key, members } => {
                let meta = meta_or_wrongtype!(&key);
                let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
                let current = self.scores(&key, meta.as_ref(), &refs, b)?;
                let effect = zset::rem(members, current);
                let skey = keys::storage_key(&key);
                self.apply_effect(&key, skey, CollType::ZSet, meta, effect, b)
            }
            ZsetCmd::RemRange { key, by } => {
                let Some(m) = meta_or_wrongtype!(&key) else {
                    return Ok(DataReply::Int(0));
                };
                let gone = self.zset_walk(&key, &m, RangeQuery::new(by, false), b)?;
                let mut effect = zset::remove(&gone);
                effect.reply = Some(DataReply::Int(gone.len() as i64));
                let skey = keys::storage_key(&key);
                self.apply_effect(&key, skey, CollType::ZSet, Some(m), effect, b)
            }
            ZsetCmd::Pop {
                keys: ks,
                max,
                count,
                reply,
            } => {
                for key in &ks {
                    let Some(m) = meta_or_wrongtype!(key) else {
                        continue;
                    };
                    let n = count.unwrap_or(1);
                    let got = if n == 0 {
                        Vec::new()
                    } else {
                        let end = i64::try_from(n - 1).unwrap_or(i64::MAX);
                        let q = RangeQuery::new(RangeBy::Rank { start: 0, end }, max);
                        self.zset_walk(key, &m, q, b)?
                    };
                    let mut effect: Effect = zset::remove(&got);
                    effect.reply = Some(zset::pop_reply(reply, Some((key, &got))));
                    let skey = keys::storage_key(key);
                    return self.apply_effect(key, skey, CollType::ZSet, Some(m), effect, b);
                }
                Ok(zset::pop_reply(reply, None))
            }
            ZsetCmd::Store {
                dst,
                op,
                keys: srcs,
                weights,
                agg,
            } => {
                let mut inputs = Vec::with_capacity(srcs.len());
                for (i, k) in srcs.iter().enumerate() {
                    match self.zset_input(k, b)? {
                        Ok(members) => inputs.push(Input {
                            members,
                            weight: weights.get(i).copied().unwrap_or(1.0),
                        }),
                        Err(e) => return Ok(DataReply::Err(e.into())),
                    }
                }
                let result = zset::combine(op, inputs, agg);
                self.zset_store(&dst, result, b)
            }
            ZsetCmd::RangeStore { dst, src, query } => {
                let got = match meta_or_wrongtype!(&src) {
                    None => Vec::new(),
                    Some(m) => self.zset_walk(&src, &m, query, b)?,
                };
                self.zset_store(&dst, got, b)
            }
        }
    }
}
