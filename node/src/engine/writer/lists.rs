//! List commands in the writer: pushes and pops write one element record per element at an
//! end; LSET one; LTRIM removes what it drops; LINSERT and LREM read the list and rewrite only
//! the records between the edit and the nearer end (`list::relayout`). Every change is logged
//! as the metadata record first, then the changed elements (see `writer::collections`).

use super::{Batch, Writer};
use crate::engine::collection;
use crate::engine::list::{self, Changes, End, ListCmd, ListMeta, PopReply};
use crate::engine::ops::DataReply;
use crate::keys::{self, Stored};

impl Writer {
    /// `key`'s list as of this batch: None absent, Err(WRONGTYPE) another type.
    fn list_meta(
        &self,
        key: &[u8],
        b: &Batch,
    ) -> Result<Result<Option<ListMeta>, &'static str>, fjall::Error> {
        let s = self.current(&keys::storage_key(key), b)?;
        Ok(list::list_of(s.as_ref()))
    }

    fn list_element(
        &self,
        key: &[u8],
        m: &ListMeta,
        index: u64,
        b: &Batch,
    ) -> Result<Vec<u8>, fjall::Error> {
        let sk = collection::sub_key(key, m.coll.version, &list::field(index));
        Ok(self.sub_get(&sk, b)?.unwrap_or_default())
    }

    /// The whole list as of this batch, first to last.
    fn list_elements(
        &self,
        key: &[u8],
        m: &ListMeta,
        b: &Batch,
    ) -> Result<Vec<Vec<u8>>, fjall::Error> {
        let prefix = collection::elements_prefix(key, m.coll.version);
        Ok(self
            .sub_scan(&prefix, b)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Stores `m` (or deletes the key once it is empty) and then the element changes.
    fn list_store(
        &mut self,
        key: &[u8],
        m: &ListMeta,
        changes: Changes,
        b: &mut Batch,
    ) -> Result<(), fjall::Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let skey = keys::storage_key(key);
        if m.is_empty() {
            // Emptied: the key goes; its elements are garbage for the maintenance task.
            return self.write(skey, None, b);
        }
        self.write(skey, Some(m.to_stored()), b)?;
        for (index, value) in changes {
            let sk = collection::sub_key(key, m.coll.version, &list::field(index));
            self.write_sub(sk, value, b);
        }
        Ok(())
    }

    /// A new list's metadata (a fresh version), for a push onto an absent key.
    fn new_list(&mut self, key: &[u8], b: &Batch) -> Result<ListMeta, fjall::Error> {
        Ok(ListMeta::new(self.new_version(key, b)?))
    }

    /// Pushes `values` at `end` of `m`, one element record each.
    fn push_onto(m: &mut ListMeta, values: Vec<Vec<u8>>, end: End) -> Changes {
        values
            .into_iter()
            .map(|v| {
                let index = match end {
                    End::Left => {
                        m.head = m.head.wrapping_sub(1);
                        m.head
                    }
                    End::Right => {
                        m.tail = m.tail.wrapping_add(1);
                        m.tail - 1
                    }
                };
                (index, Some(v))
            })
            .collect()
    }

    /// Pops up to `count` elements from `end` of `m` (as of this batch).
    fn pop_from(
        &self,
        key: &[u8],
        m: &mut ListMeta,
        count: u64,
        end: End,
        b: &Batch,
    ) -> Result<(Vec<Vec<u8>>, Changes), fjall::Error> {
        let n = count.min(m.len());
        let mut out = Vec::with_capacity(n as usize);
        let mut changes = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let index = match end {
                End::Left => {
                    m.head += 1;
                    m.head - 1
                }
                End::Right => {
                    m.tail -= 1;
                    m.tail
                }
            };
            out.push(self.list_element(key, m, index, b)?);
            changes.push((index, None));
        }
        Ok((out, changes))
    }

    pub(super) fn list_cmd(
        &mut self,
        cmd: ListCmd,
        b: &mut Batch,
    ) -> Result<DataReply, fjall::Error> {
        macro_rules! meta_or_wrongtype {
            ($key:expr) => {
                match self.list_meta($key, b)? {
                    Ok(m) => m,
                    Err(e) => return Ok(DataReply::Err(e.into())),
                }
            };
        }
        match cmd {
            ListCmd::Push {
                key,
                values,
                end,
                existing,
            } => {
                let mut m = match meta_or_wrongtype!(&key) {
                    Some(m) => m,
                    None if existing => return Ok(DataReply::Int(0)),
                    None => self.new_list(&key, b)?,
                };
                let changes = Self::push_onto(&mut m, values, end);
                self.list_store(&key, &m, changes, b)?;
                Ok(DataReply::Int(m.len() as i64))
            }
            ListCmd::Pop {
                keys,
                end,
                count,
                reply,
            } => {
                for key in keys {
                    let Some(mut m) = meta_or_wrongtype!(&key) else {
                        continue;
                    };
                    let (popped, changes) = self.pop_from(&key, &mut m, count, end, b)?;
                    self.list_store(&key, &m, changes, b)?;
                    let mut items = popped.into_iter().map(DataReply::Bulk);
                    return Ok(match reply {
                        PopReply::One => items.next().unwrap_or(DataReply::Nil),
                        PopReply::Many => DataReply::Array(items.collect()),
                        PopReply::KeyElement => DataReply::Array(
                            std::iter::once(DataReply::Bulk(key)).chain(items).collect(),
                        ),
                        PopReply::KeyElements => DataReply::Array(vec![
                            DataReply::Bulk(key),
                            DataReply::Array(items.collect()),
                        ]),
                    });
                }
                Ok(match reply {
                    PopReply::One => DataReply::Nil,
                    _ => DataReply::NullArray,
                })
            }
            ListCmd::Move {
                src,
                dst,
                from,
                to,
                blocking,
            } => {
                let Some(mut sm) = meta_or_wrongtype!(&src) else {
                    return Ok(if blocking {
                        DataReply::NullArray
                    } else {
                        DataReply::Nil
                    });
                };
                // The destination's type is checked before anything moves.
                let dm = meta_or_wrongtype!(&dst);
                let (mut popped, changes) = self.pop_from(&src, &mut sm, 1, from, b)?;
                let value = popped.pop().unwrap_or_default();
                self.list_store(&src, &sm, changes, b)?;
                // Same key: the source's new state is the destination's (re-read through the
                // batch, possibly deleted when it held one element).
                let dm = if src == dst {
                    match self.list_meta(&dst, b)? {
                        Ok(m) => m,
                        Err(e) => return Ok(DataReply::Err(e.into())),
                    }
                } else {
                    dm
                };
                let mut dm = match dm {
                    Some(m) => m,
                    None => self.new_list(&dst, b)?,
                };
                let changes = Self::push_onto(&mut dm, vec![value.clone()], to);
                self.list_store(&dst, &dm, changes, b)?;
                Ok(DataReply::Bulk(value))
            }
            ListCmd::Set { key, index, value } => {
                let Some(m) = meta_or_wrongtype!(&key) else {
                    return Ok(DataReply::Err("ERR no such key".into()));
                };
                let Some(pos) = list::position(m.len(), index) else {
                    return Ok(DataReply::Err("ERR index out of range".into()));
                };
                self.list_store(&key, &m, vec![(m.index(pos), Some(value))], b)?;
                Ok(DataReply::Ok)
            }
            ListCmd::Insert {
                key,
                before,
                pivot,
                value,
            } => {
                let Some(mut m) = meta_or_wrongtype!(&key) else {
                    return Ok(DataReply::Int(0));
                };
                let old = self.list_elements(&key, &m, b)?;
                let Some(new) = list::insert(&old, before, &pivot, &value) else {
                    return Ok(DataReply::Int(-1));
                };
                let (head, changes) = list::relayout(m.head, &old, &new);
                m.head = head;
                m.tail = head + new.len() as u64;
                self.list_store(&key, &m, changes, b)?;
                Ok(DataReply::Int(m.len() as i64))
            }
            ListCmd::Rem { key, count, value } => {
                let Some(mut m) = meta_or_wrongtype!(&key) else {
                    return Ok(DataReply::Int(0));
                };
                let old = self.list_elements(&key, &m, b)?;
                let gone = list::rem_positions(&old, count, &value);
                if gone.is_empty() {
                    return Ok(DataReply::Int(0));
                }
                let mut drop = gone.iter().peekable();
                let new: Vec<Vec<u8>> = old
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| drop.next_if(|g| **g == *i).is_none())
                    .map(|(_, e)| e.clone())
                    .collect();
                let (head, changes) = list::relayout(m.head, &old, &new);
                m.head = head;
                m.tail = head + new.len() as u64;
                self.list_store(&key, &m, changes, b)?;
                Ok(DataReply::Int(gone.len() as i64))
            }
            ListCmd::Trim { key, start, stop } => {
                let Some(mut m) = meta_or_wrongtype!(&key) else {
                    return Ok(DataReply::Ok);
                };
                let keep = list::span(m.len(), start, stop);
                let (new_head, new_tail) = if keep.is_empty() {
                    (m.head, m.head)
                } else {
                    (m.index(keep.start), m.index(keep.end))
                };
                let changes: Changes = (m.head..new_head)
                    .chain(new_tail.max(new_head)..m.tail)
                    .map(|i| (i, None))
                    .collect();
                if changes.is_empty() {
                    return Ok(DataReply::Ok);
                }
                m.head = new_head;
                m.tail = new_tail.max(new_head);
                self.list_store(&key, &m, changes, b)?;
                Ok(DataReply::Ok)
            }
        }
    }
}

/// A collection's record carrying `version` instead of its own (RENAME/COPY write the
/// elements under a new version; everything else in the record, a list's ends included, stays).
pub(super) fn restamp(mut value: Stored, version: u64) -> Stored {
    if let Some(v) = value.value.get_mut(1..9) {
        v.copy_from_slice(&version.to_be_bytes());
    }
    value
}
