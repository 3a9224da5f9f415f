//! Sorted-set commands: parsing (Redis 7 syntax and error texts) and the reads. Writes are
//! `engine::zset` commands evaluated in the writer; multi-key commands need one owner
//! (CROSSSLOT otherwise, decided in `exec`).

use super::arg_error::ArgError;
use std::collections::HashMap;

use super::blocking;
use crate::engine::EngineError;
use crate::engine::collection::{CollMeta, CollType, Held};
use crate::engine::ops::DataCmd;
use crate::engine::view::KeyView;
use crate::engine::writer_parse_int as parse_int;
use crate::engine::zrange::{LexRange, RangeBy, RangeQuery, ScoreRange};
use crate::engine::zscore::{self, NOT_FLOAT};
use crate::engine::zset::{self, AddFlags, Aggregate, Input, PopReply, ZOp, ZsetCmd};
use crate::resp::reply;
use crate::resp::resp3_scores::ScoreShape;

use super::hash::{ElementScan, parse_scan, random_count, random_elements, scan_page};
use super::parse::{Keyed, ReadCmd};

#[derive(Clone, Debug, PartialEq)]
pub enum ZsetRead {
    Score {
        key: Vec<u8>,
        member: Vec<u8>,
    },
    MScore {
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    },
    Card(Vec<u8>),
    /// ZCOUNT / ZLEXCOUNT.
    Count {
        key: Vec<u8>,
        by: RangeBy,
    },
    Range {
        key: Vec<u8>,
        query: RangeQuery,
        with_scores: bool,
    },
    Rank {
        key: Vec<u8>,
        member: Vec<u8>,
        rev: bool,
        with_score: bool,
    },
    /// ZUNION / ZINTER / ZDIFF.
    Combine {
        op: ZOp,
        keys: Vec<Vec<u8>>,
        weights: Vec<f64>,
        agg: Aggregate,
        with_scores: bool,
    },
    InterCard {
        keys: Vec<Vec<u8>>,
        limit: u64,
    },
    RandMember {
        key: Vec<u8>,
        count: Option<i64>,
        with_scores: bool,
    },
    Scan {
        key: Vec<u8>,
        scan: ElementScan,
    },
}

// Scores are never NaN here (the parser refuses it).
impl Eq for ZsetRead {}

impl ZsetRead {
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            ZsetRead::Score { key, .. }
            | ZsetRead::MScore { key, .. }
            | ZsetRead::Card(key)
            | ZsetRead::Count { key, .. }
            | ZsetRead::Range { key, .. }
            | ZsetRead::Rank { key, .. }
            | ZsetRead::RandMember { key, .. }
            | ZsetRead::Scan { key, .. } => vec![key],
            ZsetRead::Combine { keys, .. } | ZsetRead::InterCard { keys, .. } => {
                keys.iter().map(Vec::as_slice).collect()
            }
        }
    }
}

/// Where a sorted-set command's reply holds scores, for RESP3 (None: no scores).
pub fn resp3_shape(args: &[Vec<u8>]) -> Option<ScoreShape> {
    let name = args.first()?.to_ascii_lowercase();
    let has = |from: usize, word: &str| args.iter().skip(from).any(|a| is(a, word));
    match name.as_slice() {
        b"zscore" | b"zincrby" => Some(ScoreShape::One),
        b"zadd" => {
            // INCR among the options before the first score.
            let incr = args
                .iter()
                .skip(2)
                .take_while(|a| {
                    ["nx", "xx", "gt", "lt", "ch", "incr"]
                        .iter()
                        .any(|w| is(a, w))
                })
                .any(|a| is(a, "incr"));
            incr.then_some(ScoreShape::One)
        }
        b"zmscore" => Some(ScoreShape::Each),
        b"zrange" | b"zrevrange" | b"zrangebyscore" | b"zrevrangebyscore" => {
            has(4, "withscores").then_some(ScoreShape::Pairs)
        }
        b"zunion" | b"zinter" | b"zdiff" => has(2, "withscores").then_some(ScoreShape::Pairs),
        b"zrandmember" => (args.len() == 4).then_some(ScoreShape::Pairs),
        b"zpopmin" | b"zpopmax" => Some(if args.len() == 3 {
            ScoreShape::Pairs
        } else {
            ScoreShape::Flat
        }),
        b"zmpop" | b"bzmpop" => Some(ScoreShape::KeyPairs),
        b"bzpopmin" | b"bzpopmax" => Some(ScoreShape::Third),
        b"zrank" | b"zrevrank" => (args.len() == 4).then_some(ScoreShape::Second),
        _ => None,
    }
}

fn score_arg(v: &[u8]) -> Result<f64, ArgError> {
    zscore::parse_score(v).ok_or(ArgError::from(NOT_FLOAT))
}

fn is(a: &[u8], word: &str) -> bool {
    a.eq_ignore_ascii_case(word.as_bytes())
}

/// ZADD's options and pairs, with Redis's checks in Redis's order.
fn parse_zadd(args: &[Vec<u8>]) -> Result<ZsetCmd, ArgError> {
    let mut flags = AddFlags::default();
    let mut i = 2;
    while let Some(a) = args.get(i) {
        let f = match a.to_ascii_lowercase().as_slice() {
            b"nx" => &mut flags.nx,
            b"xx" => &mut flags.xx,
            b"gt" => &mut flags.gt,
            b"lt" => &mut flags.lt,
            b"ch" => &mut flags.ch,
            b"incr" => &mut flags.incr,
            _ => break,
        };
        *f = true;
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(ArgError::Syntax);
    }
    if flags.nx && flags.xx {
        return Err("ERR XX and NX options at the same time are not compatible".into());
    }
    if flags.nx && (flags.gt || flags.lt) || flags.gt && flags.lt {
        return Err("ERR GT, LT, and/or NX options at the same time are not compatible".into());
    }
    if flags.incr && rest.len() > 2 {
        return Err("ERR INCR option supports a single increment-element pair".into());
    }
    let pairs = rest
        .chunks_exact(2)
        .map(|p| Ok((score_arg(&p[0])?, p[1].clone())))
        .collect::<Result<Vec<_>, ArgError>>()?;
    Ok(ZsetCmd::Add {
        key: args[1].clone(),
        flags,
        pairs,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Z[REV]RANGE[BYSCORE|BYLEX] and ZRANGESTORE arguments from `key_at` (the source key; min and
/// max follow): Redis's `zrangeGenericCommand` checks, in its order. Answers the query and
/// WITHSCORES.
fn parse_range(
    args: &[Vec<u8>],
    key_at: usize,
    store: bool,
    mut kind: Kind,
    rev: Option<bool>,
) -> Result<(RangeQuery, bool), ArgError> {
    let mut with_scores = false;
    let mut limit: Option<(i64, i64)> = None;
    let mut dir = rev;
    let mut j = key_at + 3;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if !store && is(a, "withscores") {
            with_scores = true;
        } else if is(a, "limit") && left >= 2 {
            let o = parse_int(&args[j + 1]).ok_or(ArgError::NotInteger)?;
            let c = parse_int(&args[j + 2]).ok_or(ArgError::NotInteger)?;
            limit = Some((o, c));
            j += 2;
        } else if rev.is_none() && dir.is_none() && is(a, "rev") {
            dir = Some(true);
        } else if kind == Kind::Auto && is(a, "bylex") {
            kind = Kind::Lex;
        } else if kind == Kind::Auto && is(a, "byscore") {
            kind = Kind::Score;
        } else {
            return Err(ArgError::Syntax);
        }
        j += 1;
    }
    let rev = dir.unwrap_or(false);
    if kind == Kind::Auto {
        kind = Kind::Rank;
    }
    if limit.is_some() && kind == Kind::Rank {
        return Err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
                .into(),
        );
    }
    if with_scores && kind == Kind::Lex {
        return Err("ERR syntax error, WITHSCORES not supported in combination with BYLEX".into());
    }
    let (mut lo, mut hi) = (&args[key_at + 1], &args[key_at + 2]);
    if rev && kind != Kind::Rank {
        // Given as max, min.
        std::mem::swap(&mut lo, &mut hi);
    }
    let by = match kind {
        Kind::Score => RangeBy::Score(ScoreRange::parse(lo, hi)?),
        Kind::Lex => RangeBy::Lex(LexRange::parse(lo, hi)?),
        _ => RangeBy::Rank {
            start: parse_int(lo).ok_or(ArgError::NotInteger)?,
            end: parse_int(hi).ok_or(ArgError::NotInteger)?,
        },
    };
    let mut query = RangeQuery::new(by, rev);
    if let Some((o, c)) = limit {
        (query.offset, query.count) = (o, c);
    }
    Ok((query, with_scores))
}

/// numkeys and keys of ZUNION-like commands (numkeys at `at`), then WEIGHTS / AGGREGATE /
/// WITHSCORES / LIMIT as the command allows.
struct SetOpArgs {
    keys: Vec<Vec<u8>>,
    weights: Vec<f64>,
    agg: Aggregate,
    with_scores: bool,
    limit: u64,
}

fn parse_setop(
    name: &str,
    args: &[Vec<u8>],
    at: usize,
    op: ZOp,
    store: bool,
    card: bool,
) -> Result<SetOpArgs, ArgError> {
    let n = parse_int(&args[at]).ok_or(ArgError::NotInteger)?;
    if n < 1 {
        return Err(format!("ERR at least 1 input key is needed for '{name}' command").into());
    }
    let n = n as usize;
    if n > args.len() - at - 1 {
        return Err(ArgError::Syntax);
    }
    let mut o = SetOpArgs {
        keys: args[at + 1..at + 1 + n].to_vec(),
        weights: vec![1.0; n],
        agg: Aggregate::Sum,
        with_scores: false,
        limit: 0,
    };
    let mut j = at + 1 + n;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != ZOp::Diff && !card && remaining > n && is(a, "weights") {
            for i in 0..n {
                o.weights[i] = zscore::parse_score(&args[j + 1 + i])
                    .ok_or("ERR weight value is not a float")?;
            }
            j += 1 + n;
        } else if op != ZOp::Diff && !card && remaining >= 2 && is(a, "aggregate") {
            let v = &args[j + 1];
            o.agg = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(ArgError::Syntax);
            };
            j += 2;
        } else if !store && !card && is(a, "withscores") {
            o.with_scores = true;
            j += 1;
        } else if card && remaining >= 2 && is(a, "limit") {
            o.limit = parse_int(&args[j + 1])
                .and_then(|l| u64::try_from(l).ok())
                .ok_or("ERR LIMIT can't be negative")?;
            j += 2;
        } else {
            return Err(ArgError::Syntax);
        }
    }
    Ok(o)
}

fn op_of(name: &str) -> ZOp {
    if name.starts_with("zunion") {
        ZOp::Union
    } else if name.starts_with("zinter") {
        ZOp::Inter
    } else {
        ZOp::Diff
    }
}

/// `Ok(None)`: not a sorted-set command.
pub fn parse(name: &str, args: &[Vec<u8>]) -> Result<Option<Keyed>, ArgError> {
    let key = || args[1].clone();
    let read = |r| Ok(Some(Keyed::Read(ReadCmd::ZSet(r))));
    let write = |c| Ok(Some(Keyed::Write(DataCmd::ZSet(c))));
    match name {
        "zadd" => write(parse_zadd(args)?),
        "zincrby" => write(ZsetCmd::Add {
            key: key(),
            flags: AddFlags {
                incr: true,
                ..AddFlags::default()
            },
            pairs: vec![(score_arg(&args[2])?, args[3].clone())],
        }),
        "zrem" => write(ZsetCmd::Rem {
            key: key(),
            members: args[2..].to_vec(),
        }),
        "zremrangebyrank" => write(ZsetCmd::RemRange {
            key: key(),
            by: RangeBy::Rank {
                start: parse_int(&args[2]).ok_or(ArgError::NotInteger)?,
                end: parse_int(&args[3]).ok_or(ArgError::NotInteger)?,
            },
        }),
        "zremrangebyscore" => write(ZsetCmd::RemRange {
            key: key(),
            by: RangeBy::Score(ScoreRange::parse(&args[2], &args[3])?),
        }),
        "zremrangebylex" => write(ZsetCmd::RemRange {
            key: key(),
            by: RangeBy::Lex(LexRange::parse(&args[2], &args[3])?),
        }),
        "zpopmin" | "zpopmax" => {
            if args.len() > 3 {
                return Err(ArgError::Syntax);
            }
            let count = match args.get(2) {
                None => None,
                Some(c) => Some(parse_int(c).ok_or(ArgError::NotInteger).and_then(|n| {
                    u64::try_from(n)
                        .map_err(|_| ArgError::from("ERR value is out of range, must be positive"))
                })?),
            };
            write(ZsetCmd::Pop {
                keys: vec![key()],
                max: name == "zpopmax",
                count,
                reply: PopReply::Flat,
            })
        }
        // The blocking forms parse to their non-blocking attempt (see `command::blocking`),
        // which answers the null array while there is nothing to pop.
        "bzpopmin" | "bzpopmax" => {
            blocking::parse_timeout(&args[args.len() - 1])?;
            write(ZsetCmd::Pop {
                keys: args[1..args.len() - 1].to_vec(),
                max: name == "bzpopmax",
                count: None,
                reply: PopReply::Blocking,
            })
        }
        "bzmpop" => {
            blocking::parse_timeout(&args[1])?;
            let (keys, max, count) = parse_mpop(args, 2)?;
            write(ZsetCmd::Pop {
                keys,
                max,
                count: Some(count),
                reply: PopReply::Multi,
            })
        }
        "zmpop" => {
            let (keys, max, count) = parse_mpop(args, 1)?;
            write(ZsetCmd::Pop {
                keys,
                max,
                count: Some(count),
                reply: PopReply::Multi,
            })
        }
        "zunionstore" | "zinterstore" | "zdiffstore" => {
            let op = op_of(name);
            let o = parse_setop(name, args, 2, op, true, false)?;
            write(ZsetCmd::Store {
                dst: key(),
                op,
                keys: o.keys,
                weights: o.weights,
                agg: o.agg,
            })
        }
        "zrangestore" => {
            let (query, _) = parse_range(args, 2, true, Kind::Auto, None)?;
            write(ZsetCmd::RangeStore {
                dst: key(),
                src: args[2].clone(),
                query,
            })
        }
        "zscore" => read(ZsetRead::Score {
            key: key(),
            member: args[2].clone(),
        }),
        "zmscore" => read(ZsetRead::MScore {
            key: key(),
            members: args[2..].to_vec(),
        }),
        "zcard" => read(ZsetRead::Card(key())),
        "zcount" => read(ZsetRead::Count {
            key: key(),
            by: RangeBy::Score(ScoreRange::parse(&args[2], &args[3])?),
        }),
        "zlexcount" => read(ZsetRead::Count {
            key: key(),
            by: RangeBy::Lex(LexRange::parse(&args[2], &args[3])?),
        }),
        "zrange" | "zrevrange" | "zrangebyscore" | "zrevrangebyscore" | "zrangebylex"
        | "zrevrangebylex" => {
            let (kind, rev) = match name {
                "zrange" => (Kind::Auto, None),
                "zrevrange" => (Kind::Rank, Some(true)),
                "zrangebyscore" => (Kind::Score, Some(false)),
                "zrevrangebyscore" => (Kind::Score, Some(true)),
                "zrangebylex" => (Kind::Lex, Some(false)),
                _ => (Kind::Lex, Some(true)),
            };
            let (query, with_scores) = parse_range(args, 1, false, kind, rev)?;
            read(ZsetRead::Range {
                key: key(),
                query,
                with_scores,
            })
        }
        "zrank" | "zrevrank" => {
            let with_score = match args.get(3) {
                None => false,
                Some(a) if args.len() == 4 && is(a, "withscore") => true,
                Some(_) => return Err(ArgError::Syntax),
            };
            read(ZsetRead::Rank {
                key: key(),
                member: args[2].clone(),
                rev: name == "zrevrank",
                with_score,
            })
        }
        "zunion" | "zinter" | "zdiff" => {
            let op = op_of(name);
            let o = parse_setop(name, args, 1, op, false, false)?;
            read(ZsetRead::Combine {
                op,
                keys: o.keys,
                weights: o.weights,
                agg: o.agg,
                with_scores: o.with_scores,
            })
        }
        "zintercard" => {
            let o = parse_setop(name, args, 1, ZOp::Inter, false, true)?;
            read(ZsetRead::InterCard {
                keys: o.keys,
                limit: o.limit,
            })
        }
        "zrandmember" => {
            let count = match args.get(2) {
                None => None,
                Some(c) => Some(random_count(c)?),
            };
            let with_scores = match args.get(3) {
                None => false,
                Some(w) if args.len() == 4 && is(w, "withscores") => true,
                Some(_) => return Err(ArgError::Syntax),
            };
            read(ZsetRead::RandMember {
                key: key(),
                count,
                with_scores,
            })
        }
        "zscan" => read(ZsetRead::Scan {
            key: key(),
            scan: parse_scan(args, false)?,
        }),
        _ => Ok(None),
    }
}

/// ZMPOP's `numkeys key... MIN|MAX [COUNT n]` from `at` (numkeys): (keys, max, count).
pub fn parse_mpop(args: &[Vec<u8>], at: usize) -> Result<(Vec<Vec<u8>>, bool, u64), ArgError> {
    const NUMKEYS: &str = "ERR numkeys should be greater than 0";
    let n = parse_int(&args[at]).filter(|n| *n > 0).ok_or(NUMKEYS)? as usize;
    let where_at = at
        .checked_add(n + 1)
        .filter(|w| *w < args.len())
        .ok_or(ArgError::Syntax)?;
    let max = if is(&args[where_at], "max") {
        true
    } else if is(&args[where_at], "min") {
        false
    } else {
        return Err(ArgError::Syntax);
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "count") && j + 1 < args.len() {
            let c = parse_int(&args[j + 1])
                .filter(|c| *c > 0)
                .ok_or("ERR count should be greater than 0")?;
            count = Some(c as u64);
            j += 2;
        } else {
            return Err(ArgError::Syntax);
        }
    }
    Ok((args[at + 1..where_at].to_vec(), max, count.unwrap_or(1)))
}

/// A ZUNION/ZINTER/ZDIFF input (a set's members score 1); Err(WRONGTYPE) for another type.
fn input(
    view: &dyn KeyView,
    key: &[u8],
) -> Result<Result<HashMap<Vec<u8>, f64>, &'static str>, EngineError> {
    let m = match Held::of(view.get(key)?.as_ref()) {
        Held::Nothing => return Ok(Ok(HashMap::new())),
        Held::Coll(m) if matches!(m.ty, CollType::ZSet | CollType::Set) => m,
        _ => return Ok(Err(crate::engine::collection::WRONGTYPE)),
    };
    let is_set = m.ty == CollType::Set;
    Ok(Ok(view
        .all_elements(key, &m)?
        .into_iter()
        .map(|(f, v)| {
            let s = if is_set { 1.0 } else { zset::stored_score(&v) };
            (f, s)
        })
        .collect()))
}

fn score_of(
    view: &dyn KeyView,
    key: &[u8],
    m: &CollMeta,
    member: &[u8],
) -> Result<Option<f64>, EngineError> {
    Ok(view
        .element(key, m, member)?
        .map(|v| zset::stored_score(&v)))
}

fn members_reply(out: &mut Vec<u8>, got: &[(Vec<u8>, f64)], with_scores: bool) {
    reply::array_len(out, got.len() * if with_scores { 2 } else { 1 });
    for (m, s) in got {
        reply::bulk(out, m);
        if with_scores {
            reply::bulk(out, zscore::format_score(*s).as_bytes());
        }
    }
}

fn score_reply(out: &mut Vec<u8>, s: Option<f64>) {
    match s {
        Some(s) => reply::bulk(out, zscore::format_score(s).as_bytes()),
        None => reply::nil(out),
    }
}

/// Answers a sorted-set read.
/// Answers a sorted-set read from `view` (committed data, or a transaction's view in the
/// writer, which sees the transaction's own earlier writes).
pub fn read(view: &dyn KeyView, r: &ZsetRead, out: &mut Vec<u8>) -> Result<(), EngineError> {
    if let ZsetRead::Combine { keys, .. } | ZsetRead::InterCard { keys, .. } = r {
        let weights = match r {
            ZsetRead::Combine { weights, .. } => weights.clone(),
            _ => Vec::new(),
        };
        let mut inputs = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            match input(view, k)? {
                Ok(members) => inputs.push(Input {
                    members,
                    weight: weights.get(i).copied().unwrap_or(1.0),
                }),
                Err(wrongtype) => {
                    reply::error(out, wrongtype);
                    return Ok(());
                }
            }
        }
        match r {
            ZsetRead::Combine {
                op,
                agg,
                with_scores,
                ..
            } => members_reply(out, &zset::combine(*op, inputs, *agg), *with_scores),
            ZsetRead::InterCard { limit, .. } => {
                let n = zset::combine(ZOp::Inter, inputs, Aggregate::Sum).len() as u64;
                reply::int(out, if *limit > 0 { n.min(*limit) } else { n } as i64);
            }
            _ => {}
        }
        return Ok(());
    }
    let key = r.keys()[0];
    let meta: Option<CollMeta> = match view.collection(key, CollType::ZSet)? {
        Ok(m) => m,
        Err(wrongtype) => {
            reply::error(out, wrongtype);
            return Ok(());
        }
    };
    let Some(m) = meta else {
        match r {
            ZsetRead::Score { .. } => reply::nil(out),
            ZsetRead::Rank { with_score, .. } => {
                if *with_score {
                    out.extend_from_slice(b"*-1\r\n");
                } else {
                    reply::nil(out);
                }
            }
            ZsetRead::MScore { members, .. } => {
                reply::array_len(out, members.len());
                for _ in members {
                    reply::nil(out);
                }
            }
            ZsetRead::Card(_) | ZsetRead::Count { .. } => reply::int(out, 0),
            ZsetRead::RandMember { count: None, .. } => reply::nil(out),
            ZsetRead::Scan { .. } => {
                reply::array_len(out, 2);
                reply::bulk(out, b"0");
                reply::array_len(out, 0);
            }
            _ => reply::array_len(out, 0),
        }
        return Ok(());
    };
    match r {
        ZsetRead::Score { member, .. } => score_reply(out, score_of(view, key, &m, member)?),
        ZsetRead::MScore { members, .. } => {
            reply::array_len(out, members.len());
            for member in members {
                score_reply(out, score_of(view, key, &m, member)?);
            }
        }
        ZsetRead::Card(_) => reply::int(out, m.count as i64),
        ZsetRead::Count { by, .. } => {
            let q = RangeQuery::new(by.clone(), false);
            let n = view.zset_range(key, &m, &q)?.len();
            reply::int(out, n as i64);
        }
        ZsetRead::Range {
            query, with_scores, ..
        } => {
            let got = view.zset_range(key, &m, query)?;
            members_reply(out, &got, *with_scores);
        }
        ZsetRead::Rank {
            member,
            rev,
            with_score,
            ..
        } => match view.zset_rank(key, &m, member)? {
            None if *with_score => out.extend_from_slice(b"*-1\r\n"),
            None => reply::nil(out),
            Some((rank, score)) => {
                let rank = if *rev { m.count - 1 - rank } else { rank };
                if *with_score {
                    reply::array_len(out, 2);
                    reply::int(out, rank as i64);
                    reply::bulk(out, zscore::format_score(score).as_bytes());
                } else {
                    reply::int(out, rank as i64);
                }
            }
        },
        ZsetRead::RandMember {
            count, with_scores, ..
        } => {
            if *with_scores
                && let Some(c) = count
                && c.unsigned_abs() > i64::MAX as u64 / 2
            {
                reply::error(out, "ERR value is out of range");
                return Ok(());
            }
            let got = random_elements(view, key, &m, count.unwrap_or(1))?;
            let got: Vec<(Vec<u8>, f64)> = got
                .into_iter()
                .map(|(f, v)| (f, zset::stored_score(&v)))
                .collect();
            match count {
                None => match got.first() {
                    Some((f, _)) => reply::bulk(out, f),
                    None => reply::nil(out),
                },
                Some(_) => members_reply(out, &got, *with_scores),
            }
        }
        ZsetRead::Scan { scan, .. } => {
            let (next, got) = scan_page(view, key, Some(&m), scan)?;
            reply::array_len(out, 2);
            reply::bulk(out, next.to_string().as_bytes());
            reply::array_len(out, got.len() * 2);
            for (f, v) in got {
                reply::bulk(out, &f);
                reply::bulk(out, zscore::format_score(zset::stored_score(&v)).as_bytes());
            }
        }
        ZsetRead::Combine { .. } | ZsetRead::InterCard { .. } => {}
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

    fn parse_err(s: &str) -> String {
        let a = args(s);
        let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
        parse(&name, &a).unwrap_err().to_string()
    }

    #[test]
    fn zadd_option_errors_in_redis_order() {
        assert_eq!(
            parse_err("ZADD k NX XX 1 a"),
            "ERR XX and NX options at the same time are not compatible"
        );
        assert_eq!(
            parse_err("ZADD k GT LT 1 a"),
            "ERR GT, LT, and/or NX options at the same time are not compatible"
        );
        assert_eq!(
            parse_err("ZADD k NX GT 1 a"),
            "ERR GT, LT, and/or NX options at the same time are not compatible"
        );
        assert_eq!(
            parse_err("ZADD k INCR 1 a 2 b"),
            "ERR INCR option supports a single increment-element pair"
        );
        assert_eq!(parse_err("ZADD k 1 a 2"), SYNTAX);
        assert_eq!(parse_err("ZADD k NX"), SYNTAX);
        assert_eq!(parse_err("ZADD k x a"), NOT_FLOAT);
        assert_eq!(parse_err("ZADD k nan a"), NOT_FLOAT);
        // XX with GT is allowed.
        assert!(parse("zadd", &args("ZADD k XX GT CH 1 a")).is_ok());
    }

    #[test]
    fn range_options_follow_zrange_generic() {
        assert_eq!(
            parse_err("ZRANGE k 0 1 LIMIT 0 1"),
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        );
        assert_eq!(
            parse_err("ZRANGE k [a [b BYLEX WITHSCORES"),
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
        );
        assert_eq!(parse_err("ZRANGEBYSCORE k 0 1 BYSCORE"), SYNTAX);
        assert_eq!(parse_err("ZREVRANGE k 0 1 REV"), SYNTAX);
        assert_eq!(parse_err("ZRANGE k a b"), NOT_INT);
        assert_eq!(
            parse_err("ZRANGE k x 1 BYSCORE"),
            "ERR min or max is not a float"
        );
        assert_eq!(
            parse_err("ZRANGEBYLEX k a b"),
            "ERR min or max not valid string range item"
        );
        // REV with BYSCORE takes max first.
        let Ok(Some(Keyed::Read(ReadCmd::ZSet(ZsetRead::Range { query, .. })))) =
            parse("zrange", &args("ZRANGE k 5 (1 BYSCORE REV LIMIT 1 2"))
        else {
            panic!("ZRANGE parses")
        };
        assert!(query.rev);
        assert_eq!((query.offset, query.count), (1, 2));
        let RangeBy::Score(r) = query.by else {
            panic!("by score")
        };
        assert_eq!(
            (r.min, r.min_excl, r.max, r.max_excl),
            (1.0, true, 5.0, false)
        );
    }

    #[test]
    fn set_operation_arguments() {
        assert_eq!(
            parse_err("ZUNIONSTORE d 0 a"),
            "ERR at least 1 input key is needed for 'zunionstore' command"
        );
        assert_eq!(parse_err("ZUNION 3 a b"), SYNTAX);
        assert_eq!(
            parse_err("ZUNION 2 a b WEIGHTS 1 x"),
            "ERR weight value is not a float"
        );
        assert_eq!(parse_err("ZDIFF 2 a b WEIGHTS 1 2"), SYNTAX);
        assert_eq!(parse_err("ZUNION 1 a AGGREGATE avg"), SYNTAX);
        assert_eq!(parse_err("ZUNIONSTORE d 1 a WITHSCORES"), SYNTAX);
        assert_eq!(
            parse_err("ZINTERCARD 1 a LIMIT -1"),
            "ERR LIMIT can't be negative"
        );
        assert_eq!(
            parse_err("ZMPOP 0 a MIN"),
            "ERR numkeys should be greater than 0"
        );
        assert_eq!(parse_err("ZMPOP 2 a MIN"), SYNTAX);
        assert_eq!(
            parse_err("ZMPOP 1 a MIN COUNT 0"),
            "ERR count should be greater than 0"
        );
        assert_eq!(
            parse_err("ZPOPMIN k -1"),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            parse_mpop(&args("ZMPOP 2 a b MAX COUNT 3"), 1).unwrap(),
            (vec![b"a".to_vec(), b"b".to_vec()], true, 3)
        );
    }
}
