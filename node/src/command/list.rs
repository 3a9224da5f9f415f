//! List commands: parsing (Redis 7 syntax and errors) and the reads. Writes are
//! `engine::list` commands evaluated in the writer; the blocking commands parse to the
//! non-blocking attempt `command::blocking` retries. Multi-key commands need one owner
//! (CROSSSLOT otherwise, decided in `exec`).

use super::arg_error::ArgError;
use crate::engine::EngineError;
use crate::engine::list::{End, ListCmd, ListMeta, Lpos, LposOpts, PopReply, span};
use crate::engine::list_source::ListSource;
use crate::engine::ops::DataCmd;
use crate::engine::writer_parse_int as parse_int;
use crate::resp::reply;

use super::blocking;
use super::parse::{Keyed, ReadCmd};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListRead {
    Range {
        key: Vec<u8>,
        start: i64,
        stop: i64,
    },
    Index {
        key: Vec<u8>,
        index: i64,
    },
    Len(Vec<u8>),
    Pos {
        key: Vec<u8>,
        value: Vec<u8>,
        opts: LposOpts,
    },
}

impl ListRead {
    pub fn key(&self) -> &[u8] {
        match self {
            ListRead::Range { key, .. }
            | ListRead::Index { key, .. }
            | ListRead::Len(key)
            | ListRead::Pos { key, .. } => key,
        }
    }
}

const POSITIVE: &str = "ERR value is out of range, must be positive";

fn int(raw: &[u8]) -> Result<i64, ArgError> {
    parse_int(raw).ok_or(ArgError::NotInteger)
}

/// An integer in `min..` with Redis' `msg` for anything else (non-integers included).
fn at_least(raw: &[u8], min: i64, msg: &str) -> Result<i64, ArgError> {
    parse_int(raw)
        .filter(|n| *n >= min)
        .ok_or_else(|| ArgError::from(format!("ERR {msg}")))
}

fn end(raw: &[u8]) -> Result<End, ArgError> {
    End::parse(raw).ok_or(ArgError::Syntax)
}

/// LMPOP/BLMPOP from `numkeys` at `args[at]`: keys, end and the optional COUNT.
fn mpop(args: &[Vec<u8>], at: usize) -> Result<(Vec<Vec<u8>>, End, u64), ArgError> {
    let n = at_least(&args[at], 1, "numkeys should be greater than 0")? as usize;
    let where_at = at.saturating_add(n).saturating_add(1);
    let Some(w) = args.get(where_at) else {
        return Err(ArgError::Syntax);
    };
    let end = end(w)?;
    let mut count = None;
    let mut i = where_at + 1;
    while i < args.len() {
        match args.get(i + 1) {
            Some(c) if count.is_none() && args[i].eq_ignore_ascii_case(b"count") => {
                count = Some(at_least(c, 1, "count should be greater than 0")? as u64);
            }
            _ => return Err(ArgError::Syntax),
        }
        i += 2;
    }
    Ok((args[at + 1..where_at].to_vec(), end, count.unwrap_or(1)))
}

/// `Ok(None)`: not a list command.
pub fn parse(name: &str, args: &[Vec<u8>]) -> Result<Option<Keyed>, ArgError> {
    let key = || args[1].clone();
    let read = |r| Ok(Some(Keyed::Read(ReadCmd::List(r))));
    let write = |c| Ok(Some(Keyed::Write(DataCmd::List(c))));
    let left = |n: &str| n.trim_start_matches('b').starts_with('l');
    match name {
        "lpush" | "rpush" | "lpushx" | "rpushx" => write(ListCmd::Push {
            key: key(),
            values: args[2..].to_vec(),
            end: if left(name) { End::Left } else { End::Right },
            existing: name.ends_with('x'),
        }),
        "lpop" | "rpop" => {
            let count = match args.get(2) {
                None => None,
                Some(_) if args.len() > 3 => return Err(super::table::arity_error(name).into()),
                Some(c) => Some(at_least(c, 0, POSITIVE.trim_start_matches("ERR "))? as u64),
            };
            write(ListCmd::Pop {
                keys: vec![key()],
                end: if left(name) { End::Left } else { End::Right },
                count: count.unwrap_or(1),
                reply: if count.is_some() {
                    PopReply::Many
                } else {
                    PopReply::One
                },
            })
        }
        "lmpop" => {
            let (keys, end, count) = mpop(args, 1)?;
            write(ListCmd::Pop {
                keys,
                end,
                count,
                reply: PopReply::KeyElements,
            })
        }
        "blpop" | "brpop" => {
            blocking::parse_timeout(&args[args.len() - 1])?;
            write(ListCmd::Pop {
                keys: args[1..args.len() - 1].to_vec(),
                end: if left(name) { End::Left } else { End::Right },
                count: 1,
                reply: PopReply::KeyElement,
            })
        }
        "blmpop" => {
            let (keys, end, count) = mpop(args, 2)?;
            blocking::parse_timeout(&args[1])?;
            write(ListCmd::Pop {
                keys,
                end,
                count,
                reply: PopReply::KeyElements,
            })
        }
        "lmove" | "blmove" => {
            let (from, to) = (end(&args[3])?, end(&args[4])?);
            let blocking = name == "blmove";
            if blocking {
                blocking::parse_timeout(&args[5])?;
            }
            write(ListCmd::Move {
                src: key(),
                dst: args[2].clone(),
                from,
                to,
                blocking,
            })
        }
        "rpoplpush" | "brpoplpush" => {
            let blocking = name == "brpoplpush";
            if blocking {
                blocking::parse_timeout(&args[3])?;
            }
            write(ListCmd::Move {
                src: key(),
                dst: args[2].clone(),
                from: End::Right,
                to: End::Left,
                blocking,
            })
        }
        "lset" => write(ListCmd::Set {
            key: key(),
            index: int(&args[2])?,
            value: args[3].clone(),
        }),
        "linsert" => {
            let before = if args[2].eq_ignore_ascii_case(b"before") {
                true
            } else if args[2].eq_ignore_ascii_case(b"after") {
                false
            } else {
                return Err(ArgError::Syntax);
            };
            write(ListCmd::Insert {
                key: key(),
                before,
                pivot: args[3].clone(),
                value: args[4].clone(),
            })
        }
        "lrem" => write(ListCmd::Rem {
            key: key(),
            count: int(&args[2])?,
            value: args[3].clone(),
        }),
        "ltrim" => write(ListCmd::Trim {
            key: key(),
            start: int(&args[2])?,
            stop: int(&args[3])?,
        }),
        "lrange" => read(ListRead::Range {
            key: key(),
            start: int(&args[2])?,
            stop: int(&args[3])?,
        }),
        "lindex" => read(ListRead::Index {
            key: key(),
            index: int(&args[2])?,
        }),
        "llen" => read(ListRead::Len(key())),
        "lpos" => read(ListRead::Pos {
            key: key(),
            value: args[2].clone(),
            opts: lpos_opts(&args[3..])?,
        }),
        _ => Ok(None),
    }
}

/// LPOS's RANK / COUNT / MAXLEN (a repeated option: the last one wins, as in Redis).
fn lpos_opts(opts: &[Vec<u8>]) -> Result<LposOpts, ArgError> {
    let mut o = LposOpts::default();
    let mut i = 0;
    while i < opts.len() {
        let Some(v) = opts.get(i + 1) else {
            return Err(ArgError::Syntax);
        };
        match opts[i].to_ascii_lowercase().as_slice() {
            b"rank" => {
                o.rank = int(v)?;
                if o.rank == 0 {
                    return Err(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 \
                                from the second ... or use negative to start from the end of the \
                                list"
                            .into(),
                    );
                }
            }
            b"count" => o.count = Some(at_least(v, 0, "COUNT can't be negative")? as u64),
            b"maxlen" => o.maxlen = at_least(v, 0, "MAXLEN can't be negative")? as u64,
            _ => return Err(ArgError::Syntax),
        }
        i += 2;
    }
    Ok(o)
}

/// Answers a list read.
pub fn read(src: &dyn ListSource, r: &ListRead, out: &mut Vec<u8>) -> Result<(), EngineError> {
    let key = r.key();
    let meta: Option<ListMeta> = match src.meta(key)? {
        Ok(m) => m,
        Err(wrongtype) => {
            reply::error(out, wrongtype);
            return Ok(());
        }
    };
    let len = meta.as_ref().map_or(0, ListMeta::len);
    match (r, &meta) {
        (ListRead::Len(_), _) => reply::int(out, len as i64),
        (ListRead::Range { .. }, None) => reply::array_len(out, 0),
        (ListRead::Range { start, stop, .. }, Some(m)) => {
            let s = span(len, *start, *stop);
            let mut items = Vec::with_capacity((s.end - s.start) as usize);
            src.scan(key, m, s, false, &mut |v| {
                items.push(v.to_vec());
                true
            })?;
            reply::array_len(out, items.len());
            for v in items {
                reply::bulk(out, &v);
            }
        }
        (ListRead::Index { index, .. }, m) => {
            let got = match (m, crate::engine::list::position(len, *index)) {
                (Some(m), Some(pos)) => src.at(key, m, pos)?,
                _ => None,
            };
            match got {
                Some(v) => reply::bulk(out, &v),
                None => reply::nil(out),
            }
        }
        (ListRead::Pos { value, opts, .. }, m) => {
            let mut p = Lpos::new(*opts, value, len);
            if let Some(m) = m {
                let reverse = p.reverse();
                src.scan(key, m, 0..len, reverse, &mut |v| p.feed(v))?;
            }
            match opts.count {
                None => match p.found.first() {
                    Some(pos) => reply::int(out, *pos as i64),
                    None => reply::nil(out),
                },
                Some(_) => {
                    reply::array_len(out, p.found.len());
                    for pos in &p.found {
                        reply::int(out, *pos as i64);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse::{NOT_INT, SYNTAX};

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|p| p.as_bytes().to_vec()).collect()
    }

    fn parsed(s: &str) -> Result<Keyed, ArgError> {
        let a = args(s);
        let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
        parse(&name, &a).map(|k| k.expect("a list command"))
    }

    #[test]
    fn pop_counts_follow_redis() {
        assert_eq!(parsed("LPOP k -1").unwrap_err(), POSITIVE);
        assert_eq!(parsed("LPOP k x").unwrap_err(), POSITIVE);
        assert_eq!(
            parsed("LPOP k 1 2").unwrap_err(),
            "ERR wrong number of arguments for 'lpop' command"
        );
        match parsed("RPOP k 0").unwrap() {
            Keyed::Write(DataCmd::List(ListCmd::Pop {
                count, reply, end, ..
            })) => {
                assert_eq!((count, reply, end), (0, PopReply::Many, End::Right));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lmpop_syntax_and_errors() {
        assert_eq!(
            parsed("LMPOP 0 k LEFT").unwrap_err(),
            "ERR numkeys should be greater than 0"
        );
        assert_eq!(parsed("LMPOP 2 k LEFT").unwrap_err(), SYNTAX);
        assert_eq!(parsed("LMPOP 1 k MIDDLE").unwrap_err(), SYNTAX);
        assert_eq!(
            parsed("LMPOP 1 k LEFT COUNT 0").unwrap_err(),
            "ERR count should be greater than 0"
        );
        assert_eq!(
            parsed("LMPOP 1 k LEFT COUNT 1 COUNT 2").unwrap_err(),
            SYNTAX
        );
        match parsed("LMPOP 2 a b right count 3").unwrap() {
            Keyed::Write(DataCmd::List(ListCmd::Pop {
                keys, end, count, ..
            })) => {
                assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
                assert_eq!((end, count), (End::Right, 3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn blocking_forms_check_their_timeout() {
        assert_eq!(parsed("BLPOP k -1").unwrap_err(), "ERR timeout is negative");
        assert_eq!(
            parsed("BLPOP k abc").unwrap_err(),
            "ERR timeout is not a float or out of range"
        );
        assert_eq!(
            parsed("BLMPOP -1 1 k LEFT").unwrap_err(),
            "ERR timeout is negative"
        );
        assert!(parsed("BRPOPLPUSH a b 0.5").is_ok());
        assert_eq!(parsed("BLMOVE a b UP LEFT 0").unwrap_err(), SYNTAX);
    }

    #[test]
    fn lpos_options() {
        let opts = |s: &str| match parsed(s) {
            Ok(Keyed::Read(ReadCmd::List(ListRead::Pos { opts, .. }))) => Ok(opts),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert!(
            opts("LPOS k a RANK 0")
                .unwrap_err()
                .to_string()
                .starts_with("ERR RANK can't be zero")
        );
        assert_eq!(
            opts("LPOS k a COUNT -1").unwrap_err(),
            "ERR COUNT can't be negative"
        );
        assert_eq!(
            opts("LPOS k a MAXLEN -1").unwrap_err(),
            "ERR MAXLEN can't be negative"
        );
        assert_eq!(opts("LPOS k a FOO 1").unwrap_err(), SYNTAX);
        assert_eq!(opts("LPOS k a COUNT").unwrap_err(), SYNTAX);
        assert_eq!(opts("LPOS k a RANK x").unwrap_err(), NOT_INT);
        let o = opts("LPOS k a rank 1 RANK -2 count 0 maxlen 9").unwrap();
        assert_eq!((o.rank, o.count, o.maxlen), (-2, Some(0), 9));
    }

    #[test]
    fn linsert_needs_before_or_after() {
        assert_eq!(parsed("LINSERT k MIDDLE a b").unwrap_err(), SYNTAX);
        assert!(parsed("LINSERT k after a b").is_ok());
    }
}
