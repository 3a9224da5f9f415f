//! Set commands: parsing (Redis 7 syntax and errors) and the reads. Writes are `engine::set`
//! commands evaluated in the writer; multi-key commands need one owner (CROSSSLOT otherwise,
//! decided in `exec`).

use super::arg_error::ArgError;
use crate::engine::EngineError;
use crate::engine::view::KeyView;
use std::collections::BTreeSet;

use crate::engine::collection::{CollMeta, CollType};
use crate::engine::ops::DataCmd;
use crate::engine::set::{self, SetCmd, SetOp};
use crate::engine::writer_parse_int as parse_int;
use crate::resp::reply;

use super::hash::{ElementScan, parse_scan, random_elements, scan_page};
use super::parse::{Keyed, ReadCmd};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetRead {
    Members(Vec<u8>),
    IsMember { key: Vec<u8>, member: Vec<u8> },
    MIsMember { key: Vec<u8>, members: Vec<Vec<u8>> },
    Card(Vec<u8>),
    RandMember { key: Vec<u8>, count: Option<i64> },
    Combine { op: SetOp, keys: Vec<Vec<u8>> },
    InterCard { keys: Vec<Vec<u8>>, limit: u64 },
    Scan { key: Vec<u8>, scan: ElementScan },
}

impl SetRead {
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            SetRead::Members(key)
            | SetRead::Card(key)
            | SetRead::IsMember { key, .. }
            | SetRead::MIsMember { key, .. }
            | SetRead::RandMember { key, .. }
            | SetRead::Scan { key, .. } => vec![key],
            SetRead::Combine { keys, .. } | SetRead::InterCard { keys, .. } => {
                keys.iter().map(Vec::as_slice).collect()
            }
        }
    }
}

/// `Ok(None)`: not a set command.
pub fn parse(name: &str, args: &[Vec<u8>]) -> Result<Option<Keyed>, ArgError> {
    let key = || args[1].clone();
    let read = |r| Ok(Some(Keyed::Read(ReadCmd::Set(r))));
    let write = |c| Ok(Some(Keyed::Write(DataCmd::Sets(c))));
    match name {
        "sadd" => write(SetCmd::Add {
            key: key(),
            members: args[2..].to_vec(),
        }),
        "srem" => write(SetCmd::Rem {
            key: key(),
            members: args[2..].to_vec(),
        }),
        "spop" => {
            let count = match args.get(2) {
                None => None,
                Some(_) if args.len() > 3 => return Err(ArgError::Syntax),
                Some(c) => {
                    let n = parse_int(c).ok_or("ERR value is out of range, must be positive")?;
                    Some(
                        u64::try_from(n)
                            .map_err(|_| "ERR value is out of range, must be positive")?,
                    )
                }
            };
            write(SetCmd::Pop { key: key(), count })
        }
        "smove" => write(SetCmd::Move {
            src: key(),
            dst: args[2].clone(),
            member: args[3].clone(),
        }),
        "sinterstore" | "sunionstore" | "sdiffstore" => write(SetCmd::Store {
            op: op_of(name),
            dst: key(),
            keys: args[2..].to_vec(),
        }),
        "smembers" => read(SetRead::Members(key())),
        "sismember" => read(SetRead::IsMember {
            key: key(),
            member: args[2].clone(),
        }),
        "smismember" => read(SetRead::MIsMember {
            key: key(),
            members: args[2..].to_vec(),
        }),
        "scard" => read(SetRead::Card(key())),
        "srandmember" => {
            let count = match args.get(2) {
                None => None,
                Some(_) if args.len() > 3 => return Err(ArgError::Syntax),
                Some(c) => Some(super::hash::random_count(c)?),
            };
            read(SetRead::RandMember { key: key(), count })
        }
        "sinter" | "sunion" | "sdiff" => read(SetRead::Combine {
            op: op_of(name),
            keys: args[1..].to_vec(),
        }),
        "sintercard" => {
            let n = parse_int(&args[1])
                .filter(|n| *n > 0)
                .ok_or("ERR numkeys should be greater than 0")?;
            let n = n as usize;
            if n > args.len() - 2 {
                return Err("ERR Number of keys can't be greater than number of args".into());
            }
            let keys = args[2..2 + n].to_vec();
            let mut limit = 0;
            let mut i = 2 + n;
            while i < args.len() {
                let opt = &args[i];
                match args.get(i + 1) {
                    Some(v) if opt.eq_ignore_ascii_case(b"limit") => {
                        limit = parse_int(v)
                            .and_then(|l| u64::try_from(l).ok())
                            .ok_or("ERR LIMIT can't be negative")?;
                    }
                    _ => return Err(ArgError::Syntax),
                }
                i += 2;
            }
            read(SetRead::InterCard { keys, limit })
        }
        "sscan" => read(SetRead::Scan {
            key: key(),
            scan: parse_scan(args, false)?,
        }),
        _ => Ok(None),
    }
}

fn op_of(name: &str) -> SetOp {
    if name.starts_with("sinter") {
        SetOp::Inter
    } else if name.starts_with("sunion") {
        SetOp::Union
    } else {
        SetOp::Diff
    }
}

/// The set at `key`: Ok(None) absent, Err(reply written) when it holds another type.
fn set_meta(
    view: &dyn KeyView,
    key: &[u8],
) -> Result<Result<Option<CollMeta>, &'static str>, EngineError> {
    view.collection(key, CollType::Set)
}

fn members(
    view: &dyn KeyView,
    key: &[u8],
    m: Option<&CollMeta>,
) -> Result<BTreeSet<Vec<u8>>, EngineError> {
    match m {
        None => Ok(BTreeSet::new()),
        Some(m) => Ok(view
            .all_elements(key, m)?
            .into_iter()
            .map(|(f, _)| f)
            .collect()),
    }
}

/// Answers a set read.
pub fn read(view: &dyn KeyView, r: &SetRead, out: &mut Vec<u8>) -> Result<(), EngineError> {
    if let SetRead::Combine { keys, .. } | SetRead::InterCard { keys, .. } = r {
        let mut sets = Vec::with_capacity(keys.len());
        for k in keys {
            match set_meta(view, k)? {
                Ok(m) => sets.push(members(view, k, m.as_ref())?),
                Err(wrongtype) => {
                    reply::error(out, wrongtype);
                    return Ok(());
                }
            }
        }
        match r {
            SetRead::Combine { op, .. } => {
                let result = set::combine(*op, sets);
                reply::array_len(out, result.len());
                for m in result {
                    reply::bulk(out, &m);
                }
            }
            SetRead::InterCard { limit, .. } => {
                let n = set::combine(SetOp::Inter, sets).len() as u64;
                let n = if *limit > 0 { n.min(*limit) } else { n };
                reply::int(out, n as i64);
            }
            _ => {}
        }
        return Ok(());
    }
    let key = r.keys()[0];
    let meta = match set_meta(view, key)? {
        Ok(m) => m,
        Err(wrongtype) => {
            reply::error(out, wrongtype);
            return Ok(());
        }
    };
    let has = |m: &[u8]| -> Result<bool, EngineError> {
        match &meta {
            None => Ok(false),
            Some(c) => Ok(view.element(key, c, m)?.is_some()),
        }
    };
    match r {
        SetRead::Members(_) => {
            let all = members(view, key, meta.as_ref())?;
            reply::array_len(out, all.len());
            for m in all {
                reply::bulk(out, &m);
            }
        }
        SetRead::IsMember { member, .. } => reply::int(out, i64::from(has(member)?)),
        SetRead::MIsMember { members, .. } => {
            reply::array_len(out, members.len());
            for m in members {
                reply::int(out, i64::from(has(m)?));
            }
        }
        SetRead::Card(_) => reply::int(out, meta.as_ref().map_or(0, |m| m.count as i64)),
        SetRead::RandMember { count, .. } => {
            let Some(m) = &meta else {
                match count {
                    None => reply::nil(out),
                    Some(_) => reply::array_len(out, 0),
                }
                return Ok(());
            };
            let got = random_elements(view, key, m, count.unwrap_or(1))?;
            match count {
                None => match got.first() {
                    Some((f, _)) => reply::bulk(out, f),
                    None => reply::nil(out),
                },
                Some(_) => {
                    reply::array_len(out, got.len());
                    for (f, _) in got {
                        reply::bulk(out, &f);
                    }
                }
            }
        }
        SetRead::Scan { scan, .. } => {
            let (next, got) = scan_page(view, key, meta.as_ref(), scan)?;
            reply::array_len(out, 2);
            reply::bulk(out, next.to_string().as_bytes());
            reply::array_len(out, got.len());
            for (f, _) in got {
                reply::bulk(out, &f);
            }
        }
        SetRead::Combine { .. } | SetRead::InterCard { .. } => {}
    }
    Ok(())
}
