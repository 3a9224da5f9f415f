//! Collection commands in the writer: read what a command needs (metadata and the touched
//! elements), evaluate the pure function of its type, and apply the effect as logged
//! post-images: the metadata record first, then the elements. A tail may cut a command's
//! records between two applied batches; metadata first means a target never holds elements of
//! a version its metadata does not know yet, which its garbage collection would take as stale.

use super::{Batch, Writer};
use crate::engine::collection::{self, CollMeta, CollType, Effect, Held};
use crate::engine::hash::{self, HashCmd};
use crate::engine::ops::DataReply;
use crate::keys::{self, Stored};

impl Writer {
    /// The key's live collection of type `ty` as of this batch: None if absent, Err(WRONGTYPE)
    /// if it holds something else.
    pub(super) fn coll_meta(
        &self,
        skey: &[u8],
        ty: CollType,
        b: &Batch,
    ) -> Result<Result<Option<CollMeta>, &'static str>, fjall::Error> {
        Ok(Held::of(self.current(skey, b)?.as_ref()).expect(ty))
    }

    /// Current values of `fields` of `key`'s collection (all None when absent).
    pub(super) fn field_values(
        &self,
        key: &[u8],
        meta: Option<&CollMeta>,
        fields: &[&[u8]],
        b: &Batch,
    ) -> Result<Vec<Option<Vec<u8>>>, fjall::Error> {
        match meta {
            None => Ok(vec![None; fields.len()]),
            Some(m) => fields
                .iter()
                .map(|f| self.sub_get(&collection::sub_key(key, m.version, f), b))
                .collect(),
        }
    }

    pub(super) fn hash_cmd(
        &mut self,
        cmd: HashCmd,
        b: &mut Batch,
    ) -> Result<DataReply, fjall::Error> {
        let key = cmd.key().to_vec();
        let skey = keys::storage_key(&key);
        let meta = match self.coll_meta(&skey, CollType::Hash, b)? {
            Ok(m) => m,
            Err(e) => return Ok(DataReply::Err(e.into())),
        };
        let current = self.field_values(&key, meta.as_ref(), &cmd.fields(), b)?;
        let effect = hash::eval(cmd, current);
        self.apply_effect(&key, skey, CollType::Hash, meta, effect, b)
    }

    /// Applies a collection command's effect to `key` (whose live collection is `meta`).
    pub(super) fn apply_effect(
        &mut self,
        key: &[u8],
        skey: Vec<u8>,
        ty: CollType,
        meta: Option<CollMeta>,
        effect: Effect,
        b: &mut Batch,
    ) -> Result<DataReply, fjall::Error> {
        let reply = effect.reply.unwrap_or(DataReply::Ok);
        if effect.subs.is_empty() {
            return Ok(reply);
        }
        let (mut m, fresh) = match meta {
            Some(m) => (m, false),
            None => {
                let version = self.new_version(key, b)?;
                let m = CollMeta {
                    ty,
                    version,
                    count: 0,
                    expires_at: None,
                };
                (m, true)
            }
        };
        let count = u64::try_from(m.count as i64 + effect.added).unwrap_or(0);
        if count == 0 {
            // Emptied: the key goes; its elements are garbage for the maintenance task.
            if !fresh {
                self.write(skey, None, b)?;
            }
            return Ok(reply);
        }
        if !fresh && count == m.count {
            // Only elements change: the metadata write below (which stamps the key) is skipped.
            self.touch_for_watch(&skey);
        }
        if fresh || count != m.count {
            m.count = count;
            self.write(skey, Some(m.to_stored()), b)?;
        }
        for (field, value) in effect.subs {
            self.write_sub(collection::sub_key(key, m.version, &field), value, b);
        }
        if !effect.index.is_empty() {
            let prefix =
                collection::family_prefix(key, m.version, crate::engine::zset::FAMILY_SCORES);
            for (field, value) in effect.index {
                self.write_sub([prefix.as_slice(), &field].concat(), value, b);
            }
        }
        Ok(reply)
    }

    /// Writes `value` (the live value of another key) at `dst`: a string as is, a collection
    /// as a new version with a copy of every element (RENAME/COPY; one batch, O(elements)).
    pub(super) fn write_copy(
        &mut self,
        src: &[u8],
        value: Stored,
        dst: &[u8],
        b: &mut Batch,
    ) -> Result<(), fjall::Error> {
        let d = keys::storage_key(dst);
        let Some(mut m) = CollMeta::of(&value) else {
            return self.write(d, Some(value), b);
        };
        let elements = self.sub_scan(&m.prefix(src), b)?;
        let src_prefix_len = m.prefix(src).len();
        m.version = self.new_version(dst, b)?;
        self.write(d, Some(super::lists::restamp(value, m.version)), b)?;
        let dst_prefix = m.prefix(dst);
        for (k, v) in elements {
            let mut nk = dst_prefix.clone();
            nk.extend_from_slice(k.get(src_prefix_len..).unwrap_or_default());
            self.write_sub(nk, Some(v), b);
        }
        Ok(())
    }
}
