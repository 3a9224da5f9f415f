//! Parsing of the string and keyspace commands beyond the first set (SETNX, SETEX, PSETEX,
//! GETSET, GETDEL, GETEX, APPEND, GETRANGE/SUBSTR, SETRANGE, INCRBYFLOAT, MSETNX, EXPIREAT,
//! PEXPIREAT, EXPIRETIME, PEXPIRETIME, TOUCH, OBJECT), with Redis 7's errors.

use super::arg_error::ArgError;
use crate::engine::ops::{DataCmd, ExpireCond, SetCond, SetExpiry};
use crate::engine::strings::{GetExExpiry, NOT_FLOAT, REDIS_MAX_STRING_LEN, StrCmd, parse_float};
use crate::engine::writer_parse_int as parse_int;

use crate::resp::reply;

use super::parse::{Keyed, ObjectSub, ReadCmd, parse_expire_options};

fn int(v: &[u8]) -> Result<i64, ArgError> {
    parse_int(v).ok_or(ArgError::NotInteger)
}

/// `Ok(None)`: not one of these commands.
pub fn parse(name: &str, args: &[Vec<u8>], now_ms: u64) -> Result<Option<Keyed>, ArgError> {
    let key = || args[1].clone();
    Ok(Some(match name {
        "setnx" => Keyed::Write(DataCmd::Str(StrCmd::SetNx {
            key: key(),
            value: args[2].clone(),
        })),
        "setex" | "psetex" => {
            let n = int(&args[2])?;
            let invalid = || ArgError::from(format!("ERR invalid expire time in '{name}' command"));
            if n <= 0 {
                return Err(invalid());
            }
            let ms = if name == "setex" {
                n.checked_mul(1000).ok_or_else(invalid)?
            } else {
                n
            };
            let at = ms.checked_add(now_ms as i64).ok_or_else(invalid)?;
            Keyed::Write(DataCmd::Set {
                key: key(),
                value: args[3].clone(),
                expiry: SetExpiry::At(at as u64),
                cond: SetCond::Always,
                get: false,
            })
        }
        "getset" => Keyed::Write(DataCmd::Set {
            key: key(),
            value: args[2].clone(),
            expiry: SetExpiry::Clear,
            cond: SetCond::Always,
            get: true,
        }),
        "getdel" => Keyed::Write(DataCmd::Str(StrCmd::GetDel { key: key() })),
        "getex" => match parse_getex(&args[2..], now_ms)? {
            None => Keyed::Read(ReadCmd::Get(key())),
            Some(expiry) => Keyed::Write(DataCmd::Str(StrCmd::GetEx { key: key(), expiry })),
        },
        "append" => Keyed::Write(DataCmd::Str(StrCmd::Append {
            key: key(),
            value: args[2].clone(),
        })),
        "getrange" | "substr" => Keyed::Read(ReadCmd::GetRange {
            key: key(),
            start: int(&args[2])?,
            end: int(&args[3])?,
        }),
        "setrange" => {
            let offset = int(&args[2])?;
            if offset < 0 {
                return Err("ERR offset is out of range".into());
            }
            Keyed::Write(DataCmd::Str(StrCmd::SetRange {
                key: key(),
                offset: offset as u64,
                value: args[3].clone(),
            }))
        }
        "incrbyfloat" => {
            parse_float(&args[2]).ok_or(NOT_FLOAT)?;
            Keyed::Write(DataCmd::Str(StrCmd::IncrByFloat {
                key: key(),
                delta: args[2].clone(),
            }))
        }
        "msetnx" => {
            if args.len() % 2 != 1 {
                return Err("ERR wrong number of arguments for 'msetnx' command".into());
            }
            let pairs = args[1..]
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            Keyed::Write(DataCmd::MSetNx { pairs })
        }
        "expireat" | "pexpireat" => {
            let cond: ExpireCond = parse_expire_options(&args[3..])?;
            let n = int(&args[2])?;
            let at = if name == "expireat" {
                n.checked_mul(1000)
                    .ok_or_else(|| format!("ERR invalid expire time in '{name}' command"))?
            } else {
                n
            };
            Keyed::Write(DataCmd::Expire {
                key: key(),
                at: Some(at.max(0) as u64),
                cond,
            })
        }
        "setbit" => {
            let offset = bit_offset(&args[2])?;
            let on = match parse_int(&args[3]) {
                Some(0) => false,
                Some(1) => true,
                _ => return Err("ERR bit is not an integer or out of range".into()),
            };
            Keyed::Write(DataCmd::Str(StrCmd::SetBit {
                key: key(),
                offset,
                on,
            }))
        }
        "getbit" => Keyed::Read(ReadCmd::GetBit {
            key: key(),
            offset: bit_offset(&args[2])?,
        }),
        "memory" if String::from_utf8_lossy(&args[1]).eq_ignore_ascii_case("usage") => {
            if args.len() < 3 {
                return Err("ERR wrong number of arguments for 'memory|usage' command".into());
            }
            match args.get(3..) {
                None | Some([]) => {}
                Some([opt, n]) if opt.eq_ignore_ascii_case(b"samples") => {
                    int(n)?;
                }
                Some(_) => return Err(ArgError::Syntax),
            }
            Keyed::Read(ReadCmd::MemoryUsage(args[2].clone()))
        }
        "lcs" => Keyed::Read(ReadCmd::Lcs {
            a: key(),
            b: args[2].clone(),
            opts: super::lcs::parse_opts(&args[3..])?,
        }),
        "rename" | "renamenx" => Keyed::Write(DataCmd::Rename {
            src: key(),
            dst: args[2].clone(),
            nx: name == "renamenx",
        }),
        "copy" => {
            let mut replace = false;
            let mut i = 3;
            while i < args.len() {
                match String::from_utf8_lossy(&args[i])
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "replace" => replace = true,
                    "db" if i + 1 < args.len() => {
                        // One database: 0 is this one, any other index is out of range.
                        if int(&args[i + 1])? != 0 {
                            return Err("ERR DB index is out of range".into());
                        }
                        i += 1;
                    }
                    _ => return Err(ArgError::Syntax),
                }
                i += 1;
            }
            Keyed::Write(DataCmd::Copy {
                src: key(),
                dst: args[2].clone(),
                replace,
            })
        }
        "expiretime" | "pexpiretime" => Keyed::Read(ReadCmd::ExpireTime {
            key: key(),
            millis: name == "pexpiretime",
        }),
        "touch" => Keyed::Read(ReadCmd::Exists(args[1..].to_vec())),
        "object" => {
            let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            let sub = match sub.as_str() {
                "encoding" => ObjectSub::Encoding,
                "freq" => ObjectSub::Freq,
                "idletime" => ObjectSub::IdleTime,
                "refcount" => ObjectSub::RefCount,
                // OBJECT HELP and unknown subcommands are answered without a key.
                _ => return Ok(None),
            };
            if args.len() != 3 {
                return Err(format!(
                    "ERR wrong number of arguments for 'object|{}' command",
                    String::from_utf8_lossy(&args[1]).to_ascii_lowercase()
                )
                .into());
            }
            Keyed::Read(ReadCmd::Object {
                key: args[2].clone(),
                sub,
            })
        }
        _ => return Ok(None),
    }))
}

/// The expiry options of SET and GETEX.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// SET's and GETEX's options as Redis 7 parses them: conflicting options are a syntax error,
/// an option may repeat (the last value counts), and the expire time is checked only once
/// every option has been read.
#[derive(Default)]
pub struct ExtOpts {
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub keepttl: bool,
    pub persist: bool,
    expire: Option<(Unit, Vec<u8>)>,
}

impl ExtOpts {
    pub fn parse(opts: &[Vec<u8>], is_set: bool) -> Result<ExtOpts, ArgError> {
        let mut o = ExtOpts::default();
        let mut i = 0;
        while i < opts.len() {
            let opt = String::from_utf8_lossy(&opts[i]).to_ascii_lowercase();
            let next = opts.get(i + 1);
            let no_expire = |o: &ExtOpts, unit| o.expire.as_ref().is_none_or(|(u, _)| *u == unit);
            let unit = match opt.as_str() {
                "ex" => Some(Unit::Ex),
                "px" => Some(Unit::Px),
                "exat" => Some(Unit::ExAt),
                "pxat" => Some(Unit::PxAt),
                _ => None,
            };
            match opt.as_str() {
                "nx" if is_set && !o.xx => o.nx = true,
                "xx" if is_set && !o.nx => o.xx = true,
                "get" if is_set => o.get = true,
                "keepttl" if is_set && o.expire.is_none() => o.keepttl = true,
                "persist" if !is_set && o.expire.is_none() => o.persist = true,
                _ if unit.is_some_and(|u| !o.keepttl && !o.persist && no_expire(&o, u))
                    && next.is_some() =>
                {
                    if let (Some(u), Some(v)) = (unit, next) {
                        o.expire = Some((u, v.clone()));
                    }
                    i += 1;
                }
                _ => return Err(ArgError::Syntax),
            }
            i += 1;
        }
        Ok(o)
    }

    /// The absolute expiry (unix ms) the options ask for, checked as Redis does.
    pub fn expire_at(&self, now_ms: u64, name: &str) -> Result<Option<u64>, ArgError> {
        let Some((unit, raw)) = &self.expire else {
            return Ok(None);
        };
        let n = int(raw)?;
        let invalid = || ArgError::from(format!("ERR invalid expire time in '{name}' command"));
        let seconds = matches!(unit, Unit::Ex | Unit::ExAt);
        if n <= 0 || seconds && n > i64::MAX / 1000 {
            return Err(invalid());
        }
        let ms = if seconds { n * 1000 } else { n };
        let at = if matches!(unit, Unit::Ex | Unit::Px) {
            ms.checked_add(now_ms as i64).ok_or_else(invalid)?
        } else {
            ms
        };
        Ok(Some(at as u64))
    }
}

/// A bit offset of SETBIT/GETBIT: within a string of Redis' 512 MiB (SETBIT builds at most
/// `MAX_STRING_LEN`, see `engine::strings`).
fn bit_offset(v: &[u8]) -> Result<u64, ArgError> {
    match parse_int(v) {
        Some(n) if n >= 0 && (n as u64 >> 3) < REDIS_MAX_STRING_LEN => Ok(n as u64),
        _ => Err("ERR bit offset is not an integer or out of range".into()),
    }
}

/// GETEX's options; `None` when it only reads.
fn parse_getex(opts: &[Vec<u8>], now_ms: u64) -> Result<Option<GetExExpiry>, ArgError> {
    let o = ExtOpts::parse(opts, false)?;
    if o.persist {
        return Ok(Some(GetExExpiry::Persist));
    }
    Ok(o.expire_at(now_ms, "getex")?.map(GetExExpiry::At))
}

/// SET with every Redis 7 option.
pub fn parse_set(args: &[Vec<u8>], now_ms: u64) -> Result<DataCmd, ArgError> {
    let o = ExtOpts::parse(&args[3..], true)?;
    let expiry = match o.expire_at(now_ms, "set")? {
        Some(at) => SetExpiry::At(at),
        None if o.keepttl => SetExpiry::Keep,
        None => SetExpiry::Clear,
    };
    let cond = match (o.nx, o.xx) {
        (true, _) => SetCond::IfAbsent,
        (_, true) => SetCond::IfPresent,
        _ => SetCond::Always,
    };
    Ok(DataCmd::Set {
        key: args[1].clone(),
        value: args[2].clone(),
        expiry,
        cond,
        get: o.get,
    })
}

/// OBJECT's answer for an existing key: what this node actually knows. Every string is stored
/// as its bytes ("raw"); nothing is shared (refcount 1); access frequency and idle time are
/// not tracked (the eviction policy is noeviction).
pub fn object_reply(sub: ObjectSub, out: &mut Vec<u8>) {
    match sub {
        ObjectSub::Encoding => reply::bulk(out, b"raw"),
        ObjectSub::RefCount => reply::int(out, 1),
        ObjectSub::Freq => reply::error(
            out,
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
             Please note that when switching between policies at runtime LRU and LFU data \
             will take some time to adjust.",
        ),
        ObjectSub::IdleTime => reply::error(
            out,
            "ERR ringshift does not track access times, idle time not tracked",
        ),
    }
}

/// MEMORY without a key: only USAGE exists.
pub fn memory_command(args: &[Vec<u8>], out: &mut Vec<u8>) {
    reply::error(
        out,
        &format!(
            "ERR unknown subcommand '{}'. Try MEMORY HELP.",
            String::from_utf8_lossy(&args[1])
        ),
    );
}

/// OBJECT without a key: HELP, or an unknown subcommand.
pub fn object_command(args: &[Vec<u8>], out: &mut Vec<u8>) {
    let sub = String::from_utf8_lossy(&args[1]).to_string();
    if sub.eq_ignore_ascii_case("help") && args.len() == 2 {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Print this help.",
        ];
        reply::array_len(out, lines.len());
        for l in lines {
            reply::simple(out, l);
        }
    } else {
        reply::error(
            out,
            &format!("ERR unknown subcommand '{sub}'. Try OBJECT HELP."),
        );
    }
}

/// GETRANGE's slice of `v` (Redis 7.0's index rules).
pub fn range_of(v: &[u8], start: i64, end: i64) -> &[u8] {
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return &[];
    }
    &v[start as usize..=end as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse::{NOT_INT, SYNTAX};

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn getrange_indices() {
        let v = b"Hello World";
        assert_eq!(range_of(v, 0, 3), b"Hell");
        assert_eq!(range_of(v, -3, -1), b"rld");
        assert_eq!(range_of(v, 5, 3), b"");
        // (Redis 7.0 clamps a too-negative end to 0: the first byte.)
        assert_eq!(range_of(v, 0, -100), b"H");
        assert_eq!(range_of(v, -1, -5), b"");
        assert_eq!(range_of(v, 0, 100), v);
        assert_eq!(range_of(b"", 0, -1), b"");
    }

    #[test]
    fn setex_and_getex_errors() {
        assert_eq!(
            parse("setex", &args("SETEX k 0 v"), 0).unwrap_err(),
            "ERR invalid expire time in 'setex' command"
        );
        assert_eq!(
            parse("psetex", &args("PSETEX k x v"), 0).unwrap_err(),
            NOT_INT
        );
        assert_eq!(
            parse("getex", &args("GETEX k EX 1 PERSIST"), 0).unwrap_err(),
            SYNTAX
        );
        // Options first, then the time; a repeated option takes the last value.
        assert_eq!(parse_set(&args("SET k v EX 0 FOO"), 0).unwrap_err(), SYNTAX);
        assert!(parse_set(&args("SET k v EX x EX 10 NX NX GET"), 0).is_ok());
        assert_eq!(parse_set(&args("SET k v NX XX"), 0).unwrap_err(), SYNTAX);
        assert_eq!(
            parse_set(&args("SET k v KEEPTTL PX 5"), 0).unwrap_err(),
            SYNTAX
        );
        assert_eq!(parse_set(&args("SET k v PERSIST"), 0).unwrap_err(), SYNTAX);
        assert_eq!(
            parse("getex", &args("GETEX k PX -1"), 0).unwrap_err(),
            "ERR invalid expire time in 'getex' command"
        );
        assert!(matches!(
            parse("getex", &args("GETEX k"), 0),
            Ok(Some(Keyed::Read(ReadCmd::Get(_))))
        ));
        assert_eq!(
            parse("setrange", &args("SETRANGE k -1 v"), 0).unwrap_err(),
            "ERR offset is out of range"
        );
        assert_eq!(
            parse("incrbyfloat", &args("INCRBYFLOAT k x"), 0).unwrap_err(),
            NOT_FLOAT
        );
    }
}
