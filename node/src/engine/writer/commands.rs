//! Redis semantics of the string and whole-key data commands (SET, DEL, INCRBY, EXPIRE,
//! RENAME, COPY, MSET, ...); collection commands go to their own modules.

use super::{Batch, Writer};
use crate::engine::collection;
use crate::engine::ops::{DataCmd, DataReply, SetCond, SetExpiry};
use crate::engine::strings::{self, Change};
use crate::keys::{self, Stored};

impl Writer {
    pub(super) fn data(&mut self, cmd: DataCmd, b: &mut Batch) -> Result<DataReply, fjall::Error> {
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
                        return Ok(DataReply::Err(collection::WRONGTYPE.into()));
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
                        return Ok(DataReply::Err(collection::WRONGTYPE.into()));
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
                    return Ok(DataReply::Err(collection::WRONGTYPE.into()));
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
