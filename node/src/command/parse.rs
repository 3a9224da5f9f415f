//! Parses keyed commands into what they do, with Redis' syntax errors, before any routing.

use super::arg_error::ArgError;
use crate::engine::ops::{DataCmd, ExpireCond};
use crate::engine::writer_parse_int as parse_int;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadCmd {
    Get(Vec<u8>),
    MGet(Vec<Vec<u8>>),
    Exists(Vec<Vec<u8>>),
    Ttl {
        key: Vec<u8>,
        millis: bool,
    },
    StrLen(Vec<u8>),
    Type(Vec<u8>),
    GetRange {
        key: Vec<u8>,
        start: i64,
        end: i64,
    },
    /// EXPIRETIME / PEXPIRETIME.
    ExpireTime {
        key: Vec<u8>,
        millis: bool,
    },
    Object {
        key: Vec<u8>,
        sub: ObjectSub,
    },
    GetBit {
        key: Vec<u8>,
        offset: u64,
    },
    Lcs {
        a: Vec<u8>,
        b: Vec<u8>,
        opts: super::lcs::LcsOpts,
    },
    /// MEMORY USAGE: the bytes of the key's stored record.
    MemoryUsage(Vec<u8>),
    Hash(super::hash::HashRead),
    Set(super::set::SetRead),
    ZSet(super::zset::ZsetRead),
    List(super::list::ListRead),
}

/// OBJECT's keyed subcommands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectSub {
    Encoding,
    Freq,
    IdleTime,
    RefCount,
}

impl ReadCmd {
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            ReadCmd::Get(k)
            | ReadCmd::StrLen(k)
            | ReadCmd::Type(k)
            | ReadCmd::MemoryUsage(k)
            | ReadCmd::Ttl { key: k, .. }
            | ReadCmd::GetRange { key: k, .. }
            | ReadCmd::ExpireTime { key: k, .. }
            | ReadCmd::Object { key: k, .. }
            | ReadCmd::GetBit { key: k, .. } => {
                vec![k]
            }
            ReadCmd::MGet(ks) | ReadCmd::Exists(ks) => ks.iter().map(Vec::as_slice).collect(),
            ReadCmd::Lcs { a, b, .. } => vec![a, b],
            ReadCmd::Hash(h) => vec![h.key()],
            ReadCmd::Set(s) => s.keys(),
            ReadCmd::ZSet(z) => z.keys(),
            ReadCmd::List(l) => vec![l.key()],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keyed {
    Read(ReadCmd),
    Write(DataCmd),
}

impl Keyed {
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Keyed::Read(r) => r.keys(),
            Keyed::Write(w) => w.keys(),
        }
    }
}

pub const NOT_INT: &str = "ERR value is not an integer or out of range";
pub const SYNTAX: &str = "ERR syntax error";

/// Parses a keyed command (arity already checked). `Ok(None)`: not a keyed command.
pub fn parse_keyed(name: &str, args: &[Vec<u8>], now_ms: u64) -> Result<Option<Keyed>, ArgError> {
    let a = |i: usize| args[i].clone();
    let rest = || args[1..].to_vec();
    if name.starts_with('h')
        && let Some(k) = super::hash::parse(name, args)?
    {
        return Ok(Some(k));
    }
    if name.starts_with('s')
        && let Some(k) = super::set::parse(name, args)?
    {
        return Ok(Some(k));
    }
    if (name.starts_with('z') || name.starts_with("bz"))
        && let Some(k) = super::zset::parse(name, args)?
    {
        return Ok(Some(k));
    }
    if matches!(name.as_bytes().first(), Some(b'l' | b'r' | b'b'))
        && let Some(k) = super::list::parse(name, args)?
    {
        return Ok(Some(k));
    }
    Ok(Some(match name {
        "get" => Keyed::Read(ReadCmd::Get(a(1))),
        "mget" => Keyed::Read(ReadCmd::MGet(rest())),
        "exists" => Keyed::Read(ReadCmd::Exists(rest())),
        "ttl" => Keyed::Read(ReadCmd::Ttl {
            key: a(1),
            millis: false,
        }),
        "pttl" => Keyed::Read(ReadCmd::Ttl {
            key: a(1),
            millis: true,
        }),
        "strlen" => Keyed::Read(ReadCmd::StrLen(a(1))),
        "type" => Keyed::Read(ReadCmd::Type(a(1))),
        "set" => Keyed::Write(super::strings::parse_set(args, now_ms)?),
        "del" | "unlink" => Keyed::Write(DataCmd::Del { keys: rest() }),
        "incr" => Keyed::Write(DataCmd::IncrBy {
            key: a(1),
            delta: 1,
        }),
        "decr" => Keyed::Write(DataCmd::IncrBy {
            key: a(1),
            delta: -1,
        }),
        "incrby" | "decrby" => {
            let n = parse_int(&args[2]).ok_or(ArgError::NotInteger)?;
            let delta = if name == "decrby" {
                n.checked_neg().ok_or("ERR decrement would overflow")?
            } else {
                n
            };
            Keyed::Write(DataCmd::IncrBy { key: a(1), delta })
        }
        "expire" | "pexpire" => {
            // Options are checked before the time, as Redis does.
            let cond = parse_expire_options(&args[3..])?;
            let n = parse_int(&args[2]).ok_or(ArgError::NotInteger)?;
            let ms = if name == "expire" {
                n.checked_mul(1000)
            } else {
                Some(n)
            };
            let at = ms
                .and_then(|ms| (now_ms as i64).checked_add(ms))
                .ok_or_else(|| format!("ERR invalid expire time in '{name}' command"))?;
            Keyed::Write(DataCmd::Expire {
                key: a(1),
                at: Some(at.max(0) as u64),
                cond,
            })
        }
        "persist" => Keyed::Write(DataCmd::Expire {
            key: a(1),
            at: None,
            cond: ExpireCond::default(),
        }),
        "mset" => {
            if args.len() % 2 != 1 {
                return Err("ERR wrong number of arguments for 'mset' command".into());
            }
            let pairs = args[1..]
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            Keyed::Write(DataCmd::MSet { pairs })
        }
        _ => return super::strings::parse(name, args, now_ms),
    }))
}

/// EXPIRE/PEXPIRE options with Redis 7's errors.
pub fn parse_expire_options(opts: &[Vec<u8>]) -> Result<ExpireCond, ArgError> {
    let mut c = ExpireCond::default();
    for o in opts {
        match o.to_ascii_lowercase().as_slice() {
            b"nx" => c.nx = true,
            b"xx" => c.xx = true,
            b"gt" => c.gt = true,
            b"lt" => c.lt = true,
            _ => {
                return Err(
                    format!("ERR Unsupported option {}", String::from_utf8_lossy(o)).into(),
                );
            }
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if c.gt && c.lt {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::{SetCond, SetExpiry};

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn set_options() {
        let p = parse_keyed("set", &args("SET k v EX 10 NX"), 1000)
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            Keyed::Write(DataCmd::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expiry: SetExpiry::At(11_000),
                cond: SetCond::IfAbsent,
                get: false
            })
        );
        assert_eq!(
            parse_keyed("set", &args("SET k v NX XX"), 0).unwrap_err(),
            SYNTAX
        );
        assert_eq!(
            parse_keyed("set", &args("SET k v EX"), 0).unwrap_err(),
            SYNTAX
        );
        assert_eq!(
            parse_keyed("set", &args("SET k v EX x"), 0).unwrap_err(),
            NOT_INT
        );
        assert_eq!(
            parse_keyed("set", &args("SET k v PX 0"), 0).unwrap_err(),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            parse_keyed("set", &args("SET k v EX 1 PX 1"), 0).unwrap_err(),
            SYNTAX
        );
    }

    #[test]
    fn expire_options() {
        let cond = |s: &str| match parse_keyed("expire", &args(s), 0) {
            Ok(Some(Keyed::Write(DataCmd::Expire { cond, .. }))) => Ok(cond),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(cond("EXPIRE k 10").unwrap(), ExpireCond::default());
        let xx_gt = cond("EXPIRE k 10 xx GT").unwrap();
        assert!(xx_gt.xx && xx_gt.gt && !xx_gt.nx && !xx_gt.lt);
        assert!(
            cond("EXPIRE k 10 NX XX")
                .unwrap_err()
                .to_string()
                .starts_with("ERR NX and XX")
        );
        assert!(
            cond("EXPIRE k 10 GT LT")
                .unwrap_err()
                .to_string()
                .starts_with("ERR GT and LT")
        );
        assert_eq!(
            cond("EXPIRE k 10 FOO").unwrap_err(),
            "ERR Unsupported option FOO"
        );
        // Options are checked before the time.
        assert_eq!(
            cond("EXPIRE k x FOO").unwrap_err(),
            "ERR Unsupported option FOO"
        );
    }

    #[test]
    fn expire_conditions_follow_redis() {
        let c = |nx, xx, gt, lt| ExpireCond { nx, xx, gt, lt };
        let none = None;
        let at100 = Some(100);
        assert!(c(true, false, false, false).allows(none, 50));
        assert!(!c(true, false, false, false).allows(at100, 50));
        assert!(!c(false, true, false, false).allows(none, 50));
        assert!(c(false, true, false, false).allows(at100, 50));
        // No expiry counts as infinite.
        assert!(!c(false, false, true, false).allows(none, 50));
        assert!(c(false, false, false, true).allows(none, 50));
        assert!(c(false, false, true, false).allows(at100, 101));
        assert!(!c(false, false, true, false).allows(at100, 100));
        assert!(c(false, false, false, true).allows(at100, 99));
        assert!(!c(false, false, false, true).allows(at100, 100));
    }

    #[test]
    fn mset_needs_pairs() {
        assert!(parse_keyed("mset", &args("MSET a 1 b"), 0).is_err());
        assert!(parse_keyed("mset", &args("MSET a 1 b 2"), 0).is_ok());
    }
}
