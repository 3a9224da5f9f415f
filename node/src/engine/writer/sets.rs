//! Set commands in the writer (see `writer::collections` for how effects are applied).

use std::collections::BTreeSet;

use super::{Batch, Writer};
use crate::engine::collection::{self, CollMeta, CollType, Effect, Rng};
use crate::engine::ops::DataReply;
use crate::engine::set::{self, SetCmd};
use crate::keys;

/// Up to this many members, SPOP reads the whole set and picks uniformly; above, it takes a
/// run of members from a random point (a full read per pop would make SPOP O(set size)).
const SPOP_UNIFORM_MAX: u64 = 1_000;

impl Writer {
    /// Members of `key`'s set (None: absent) as of this batch.
    fn members(&self, key: &[u8], m: &CollMeta, b: &Batch) -> Result<Vec<Vec<u8>>, fjall::Error> {
        let prefix = collection::elements_prefix(key, m.version);
        Ok(self
            .sub_scan(&prefix, b)?
            .into_iter()
            .map(|(k, _)| k.get(prefix.len()..).unwrap_or_default().to_vec())
            .collect())
    }

    pub(super) fn set_cmd(
        &mut self,
        cmd: SetCmd,
        b: &mut Batch,
    ) -> Result<DataReply, fjall::Error> {
        macro_rules! meta_or_wrongtype {
            ($skey:expr) => {
                match self.coll_meta(&$skey, CollType::Set, b)? {
                    Ok(m) => m,
                    Err(e) => return Ok(DataReply::Err(e.into())),
                }
            };
        }
        match cmd {
            SetCmd::Add { key, members } => {
                let skey = keys::storage_key(&key);
                let meta = meta_or_wrongtype!(skey);
                let present = self.present(&key, meta.as_ref(), &members, b)?;
                let effect = set::add(members, present);
                self.apply_effect(&key, skey, CollType::Set, meta, effect, b)
            }
            SetCmd::Rem { key, members } => {
                let skey = keys::storage_key(&key);
                let meta = meta_or_wrongtype!(skey);
                let present = self.present(&key, meta.as_ref(), &members, b)?;
                let effect = set::rem(members, present);
                self.apply_effect(&key, skey, CollType::Set, meta, effect, b)
            }
            SetCmd::Pop { key, count } => {
                let skey = keys::storage_key(&key);
                let meta = meta_or_wrongtype!(skey);
                let chosen = match &meta {
                    None => Vec::new(),
                    Some(m) => self.choose(&key, m, count.unwrap_or(1), b)?,
                };
                let effect = set::pop(chosen, count);
                self.apply_effect(&key, skey, CollType::Set, meta, effect, b)
            }
            SetCmd::Move { src, dst, member } => {
                let s = keys::storage_key(&src);
                let d = keys::storage_key(&dst);
                let src_meta = meta_or_wrongtype!(s);
                let dst_meta = meta_or_wrongtype!(d);
                let one = std::slice::from_ref(&member);
                let here = self.present(&src, src_meta.as_ref(), one, b)?;
                if !here.first().copied().unwrap_or(false) {
                    return Ok(DataReply::Int(0));
                }
                if src == dst {
                    return Ok(DataReply::Int(1));
                }
                let effect = set::rem(vec![member.clone()], vec![true]);
                self.apply_effect(&src, s, CollType::Set, src_meta, effect, b)?;
                let there = self.present(&dst, dst_meta.as_ref(), one, b)?;
                let effect = set::add(vec![member], there);
                self.apply_effect(&dst, d, CollType::Set, dst_meta, effect, b)?;
                Ok(DataReply::Int(1))
            }
            SetCmd::Store {
                op,
                dst,
                keys: srcs,
            } => {
                let mut sets = Vec::with_capacity(srcs.len());
                for k in &srcs {
                    let members = match meta_or_wrongtype!(keys::storage_key(k)) {
                        None => BTreeSet::new(),
                        Some(m) => self.members(k, &m, b)?.into_iter().collect(),
                    };
                    sets.push(members);
                }
                let result = set::combine(op, sets);
                let d = keys::storage_key(&dst);
                let n = result.len() as i64;
                // The destination is replaced whatever it held.
                if self.current(&d, b)?.is_some() {
                    self.write(d.clone(), None, b)?;
                }
                let effect = Effect {
                    added: n,
                    subs: result.into_iter().map(|m| (m, Some(Vec::new()))).collect(),
                    reply: Some(DataReply::Int(n)),
                    ..Effect::default()
                };
                self.apply_effect(&dst, d, CollType::Set, None, effect, b)
            }
        }
    }

    /// Which of `members` the set holds.
    fn present(
        &self,
        key: &[u8],
        meta: Option<&CollMeta>,
        members: &[Vec<u8>],
        b: &Batch,
    ) -> Result<Vec<bool>, fjall::Error> {
        let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
        Ok(self
            .field_values(key, meta, &refs, b)?
            .into_iter()
            .map(|v| v.is_some())
            .collect())
    }

    /// `count` distinct members to pop (all of them when `count` covers the set).
    fn choose(
        &self,
        key: &[u8],
        m: &CollMeta,
        count: u64,
        b: &Batch,
    ) -> Result<Vec<Vec<u8>>, fjall::Error> {
        let mut rng = Rng::new();
        if count >= m.count || m.count <= SPOP_UNIFORM_MAX {
            let mut all = self.members(key, m, b)?;
            if count >= all.len() as u64 {
                return Ok(all);
            }
            // Partial Fisher-Yates: the first `count` places get uniform picks.
            for i in 0..count as usize {
                let j = i + rng.below(all.len() - i);
                all.swap(i, j);
            }
            all.truncate(count as usize);
            return Ok(all);
        }
        // A big set: members from a random point on, wrapping around (stored members only;
        // ones added by batches not committed yet are not candidates).
        let prefix = collection::elements_prefix(key, m.version);
        let mut start = prefix.clone();
        start.extend((0..8).map(|_| rng.below(256) as u8));
        let end = collection::prefix_end(&prefix);
        let mut out = Vec::new();
        let tail = match &end {
            Some(e) => self.engine.sub.range(start.clone()..e.clone()),
            None => self.engine.sub.range(start.clone()..),
        };
        let head = self.engine.sub.range(prefix.clone()..start);
        for item in tail.chain(head) {
            if out.len() as u64 >= count {
                break;
            }
            let k = item.key()?;
            // Still a member as of this batch?
            if self.sub_get(&k, b)?.is_some() {
                out.push(k.get(prefix.len()..).unwrap_or_default().to_vec());
            }
        }
        Ok(out)
    }
}
