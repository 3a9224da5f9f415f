//! Hash commands: parsing (Redis 7 syntax and errors) and the reads, answered from the key's
//! metadata and its elements. Writes are `engine::hash` commands evaluated in the writer.

use super::arg_error::ArgError;
use crate::engine::collection::{CollMeta, CollType, Rng};
use crate::engine::hash::{HSetMode, HashCmd};
use crate::engine::ops::DataCmd;
use crate::engine::strings::{NOT_FLOAT, parse_float};
use crate::engine::view::KeyView;
use crate::engine::writer_parse_int as parse_int;
use crate::engine::{EngineError, KvPair};
use crate::resp::reply;

use super::parse::{Keyed, ReadCmd};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashRead {
    Get {
        key: Vec<u8>,
        field: Vec<u8>,
    },
    MGet {
        key: Vec<u8>,
        fields: Vec<Vec<u8>>,
    },
    Exists {
        key: Vec<u8>,
        field: Vec<u8>,
    },
    Len(Vec<u8>),
    StrLen {
        key: Vec<u8>,
        field: Vec<u8>,
    },
    GetAll(Vec<u8>),
    Keys(Vec<u8>),
    Vals(Vec<u8>),
    Scan {
        key: Vec<u8>,
        scan: ElementScan,
    },
    RandField {
        key: Vec<u8>,
        count: Option<i64>,
        with_values: bool,
    },
}

impl HashRead {
    pub fn key(&self) -> &[u8] {
        match self {
            HashRead::Get { key, .. }
            | HashRead::MGet { key, .. }
            | HashRead::Exists { key, .. }
            | HashRead::StrLen { key, .. }
            | HashRead::Scan { key, .. }
            | HashRead::RandField { key, .. }
            | HashRead::Len(key)
            | HashRead::GetAll(key)
            | HashRead::Keys(key)
            | HashRead::Vals(key) => key,
        }
    }

    /// Whether RESP3 answers it as a map (RESP2: a flat array of pairs).
    pub fn is_map(&self) -> bool {
        matches!(self, HashRead::GetAll(_))
    }
}

/// HSCAN/SSCAN arguments. Elements are read in field order; the cursor holds the first 7 bytes
/// of the next field to return (`cursor_of`), so removing elements between calls never makes
/// the scan skip one that stays (it may return some twice, as SCAN may).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementScan {
    pub cursor: u64,
    pub pattern: Option<Vec<u8>>,
    pub count: usize,
    pub no_values: bool,
}

/// Elements returned per HSCAN/SSCAN call at least: COUNT is a hint, and a larger page keeps a
/// full scan of a big collection from re-reading its head once per few elements.
const SCAN_MIN_PAGE: usize = 512;

pub fn parse_scan(args: &[Vec<u8>], allow_novalues: bool) -> Result<ElementScan, ArgError> {
    let cursor = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("ERR invalid cursor")?;
    let mut s = ElementScan {
        cursor,
        pattern: None,
        count: 10,
        no_values: false,
    };
    let mut i = 3;
    while i < args.len() {
        let opt = String::from_utf8_lossy(&args[i]).to_ascii_lowercase();
        if opt == "novalues" && allow_novalues {
            s.no_values = true;
            i += 1;
            continue;
        }
        let v = args.get(i + 1).ok_or(ArgError::Syntax)?;
        match opt.as_str() {
            "count" => {
                let n = parse_int(v).ok_or(ArgError::NotInteger)?;
                if n < 1 {
                    return Err(ArgError::Syntax);
                }
                s.count = n as usize;
            }
            "match" => s.pattern = Some(v.clone()),
            _ => return Err(ArgError::Syntax),
        }
        i += 2;
    }
    Ok(s)
}

fn arity(name: &str) -> ArgError {
    ArgError::Arity(name.to_string())
}

/// `Ok(None)`: not a hash command.
pub fn parse(name: &str, args: &[Vec<u8>]) -> Result<Option<Keyed>, ArgError> {
    let key = || args[1].clone();
    let read = |r| Ok(Some(Keyed::Read(ReadCmd::Hash(r))));
    let write = |c| Ok(Some(Keyed::Write(DataCmd::Hash(c))));
    match name {
        "hset" | "hmset" => {
            if !args.len().is_multiple_of(2) {
                return Err(arity(name));
            }
            let pairs = args[2..]
                .chunks_exact(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            let mode = if name == "hset" {
                HSetMode::Count
            } else {
                HSetMode::Ok
            };
            write(HashCmd::Set {
                key: key(),
                pairs,
                mode,
            })
        }
        "hsetnx" => write(HashCmd::Set {
            key: key(),
            pairs: vec![(args[2].clone(), args[3].clone())],
            mode: HSetMode::Nx,
        }),
        "hdel" => write(HashCmd::Del {
            key: key(),
            fields: args[2..].to_vec(),
        }),
        "hincrby" => write(HashCmd::IncrBy {
            key: key(),
            field: args[2].clone(),
            delta: parse_int(&args[3]).ok_or(ArgError::NotInteger)?,
        }),
        "hincrbyfloat" => {
            match parse_float(&args[3]) {
                None => return Err(NOT_FLOAT.into()),
                Some(d) if !d.is_finite() => return Err("ERR value is NaN or Infinity".into()),
                Some(_) => {}
            }
            write(HashCmd::IncrByFloat {
                key: key(),
                field: args[2].clone(),
                delta: args[3].clone(),
            })
        }
        "hget" => read(HashRead::Get {
            key: key(),
            field: args[2].clone(),
        }),
        "hmget" => read(HashRead::MGet {
            key: key(),
            fields: args[2..].to_vec(),
        }),
        "hexists" => read(HashRead::Exists {
            key: key(),
            field: args[2].clone(),
        }),
        "hstrlen" => read(HashRead::StrLen {
            key: key(),
            field: args[2].clone(),
        }),
        "hlen" => read(HashRead::Len(key())),
        "hgetall" => read(HashRead::GetAll(key())),
        "hkeys" => read(HashRead::Keys(key())),
        "hvals" => read(HashRead::Vals(key())),
        "hscan" => read(HashRead::Scan {
            key: key(),
            scan: parse_scan(args, true)?,
        }),
        "hrandfield" => {
            let count = match args.get(2) {
                None => None,
                Some(c) => Some(random_count(c)?),
            };
            let with_values = match args.get(3) {
                None => false,
                Some(w) if args.len() == 4 && w.eq_ignore_ascii_case(b"withvalues") => true,
                Some(_) => return Err(ArgError::Syntax),
            };
            read(HashRead::RandField {
                key: key(),
                count,
                with_values,
            })
        }
        _ => Ok(None),
    }
}

/// Most elements a negative HRANDFIELD/SRANDMEMBER count may ask for (Redis would build the
/// reply whatever its size; here one command must not take the node's memory).
const MAX_RANDOM_REPEATS: u64 = 10_000_000;

/// The count of HRANDFIELD/SRANDMEMBER, with Redis's range errors.
pub fn random_count(raw: &[u8]) -> Result<i64, ArgError> {
    let c = parse_int(raw).ok_or(ArgError::NotInteger)?;
    if c == i64::MIN {
        return Err(format!(
            "ERR value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )
        .into());
    }
    if c < 0 && c.unsigned_abs() > MAX_RANDOM_REPEATS {
        return Err(format!(
            "ERR value is out of range: ringshift answers at most {MAX_RANDOM_REPEATS} elements with repeats"
        ).into());
    }
    Ok(c)
}

/// Whether RESP3 answers it as an array of [field, value] pairs (RESP2: flat).
pub fn is_pairs(r: &HashRead) -> bool {
    matches!(
        r,
        HashRead::RandField {
            count: Some(_),
            with_values: true,
            ..
        }
    )
}

/// `count` random elements (Redis's HRANDFIELD/SRANDMEMBER count rules): distinct for a
/// positive count (all when it covers the collection), with repeats for a negative one.
pub fn random_elements(
    view: &dyn KeyView,
    key: &[u8],
    m: &CollMeta,
    count: i64,
) -> Result<Vec<KvPair>, EngineError> {
    let mut rng = Rng::new();
    let n = m.count as usize;
    if count >= 0 && count as u64 >= m.count {
        return view.all_elements(key, m);
    }
    let want = count.unsigned_abs() as usize;
    if count < 0 {
        let all = view.all_elements(key, m)?;
        if all.is_empty() {
            return Ok(Vec::new());
        }
        return Ok((0..want)
            .map(|_| all[rng.below(all.len())].clone())
            .collect());
    }
    // Distinct: pick sorted positions, then read the collection once.
    let mut picks = std::collections::BTreeSet::new();
    while picks.len() < want {
        picks.insert(rng.below(n));
    }
    let mut out = Vec::with_capacity(want);
    let all = view.all_elements(key, m)?;
    for (i, el) in all.into_iter().enumerate() {
        if picks.contains(&i) {
            out.push(el);
        }
    }
    Ok(out)
}

/// Bytes of a field a cursor holds.
const CURSOR_BYTES: usize = 7;

/// The cursor resuming at `field`: its first 7 bytes (zero-padded) above a low byte of 1, so it
/// is never 0 (0 = start, and done).
fn cursor_of(field: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(field.iter().take(CURSOR_BYTES)) {
        *d = *s;
    }
    b[CURSOR_BYTES] = 1;
    u64::from_be_bytes(b)
}

/// Where a cursor resumes: its field bytes without the zero padding (a lower bound of the
/// field it was made from).
fn resume_at(cursor: u64) -> Vec<u8> {
    if cursor == 0 {
        return Vec::new();
    }
    let b = cursor.to_be_bytes();
    let mut f = b[..CURSOR_BYTES].to_vec();
    while f.last() == Some(&0) {
        f.pop();
    }
    f
}

/// One page of HSCAN/SSCAN: (next cursor, elements).
pub fn scan_page(
    view: &dyn KeyView,
    key: &[u8],
    m: Option<&CollMeta>,
    s: &ElementScan,
) -> Result<(u64, Vec<KvPair>), EngineError> {
    let Some(m) = m else {
        return Ok((0, Vec::new()));
    };
    let page = s.count.max(SCAN_MIN_PAGE);
    let (got, next) = view.elements_from(key, m, &resume_at(s.cursor), page, CURSOR_BYTES)?;
    let next = next.map_or(0, |f| cursor_of(&f));
    let got = got
        .into_iter()
        .filter(|(f, _)| {
            s.pattern
                .as_deref()
                .is_none_or(|p| crate::glob::matches(p, f))
        })
        .collect();
    Ok((next, got))
}

/// Answers a hash read.
pub fn read(view: &dyn KeyView, r: &HashRead, out: &mut Vec<u8>) -> Result<(), EngineError> {
    let key = r.key();
    let meta = match view.collection(key, CollType::Hash)? {
        Ok(m) => m,
        Err(wrongtype) => {
            reply::error(out, wrongtype);
            return Ok(());
        }
    };
    let field = |f: &[u8]| -> Result<Option<Vec<u8>>, EngineError> {
        match &meta {
            None => Ok(None),
            Some(m) => view.element(key, m, f),
        }
    };
    let all = || -> Result<Vec<KvPair>, EngineError> {
        match &meta {
            None => Ok(Vec::new()),
            Some(m) => view.all_elements(key, m),
        }
    };
    match r {
        HashRead::Get { field: f, .. } => match field(f)? {
            Some(v) => reply::bulk(out, &v),
            None => reply::nil(out),
        },
        HashRead::MGet { fields, .. } => {
            reply::array_len(out, fields.len());
            for f in fields {
                match field(f)? {
                    Some(v) => reply::bulk(out, &v),
                    None => reply::nil(out),
                }
            }
        }
        HashRead::Exists { field: f, .. } => reply::int(out, i64::from(field(f)?.is_some())),
        HashRead::StrLen { field: f, .. } => {
            reply::int(out, field(f)?.map_or(0, |v| v.len() as i64))
        }
        HashRead::Len(_) => reply::int(out, meta.as_ref().map_or(0, |m| m.count as i64)),
        HashRead::GetAll(_) => {
            let all = all()?;
            reply::array_len(out, all.len() * 2);
            for (f, v) in all {
                reply::bulk(out, &f);
                reply::bulk(out, &v);
            }
        }
        HashRead::Keys(_) | HashRead::Vals(_) => {
            let keys = matches!(r, HashRead::Keys(_));
            let all = all()?;
            reply::array_len(out, all.len());
            for (f, v) in all {
                reply::bulk(out, if keys { &f } else { &v });
            }
        }
        HashRead::Scan { scan, .. } => {
            let (next, got) = scan_page(view, key, meta.as_ref(), scan)?;
            reply::array_len(out, 2);
            reply::bulk(out, next.to_string().as_bytes());
            let per = if scan.no_values { 1 } else { 2 };
            reply::array_len(out, got.len() * per);
            for (f, v) in got {
                reply::bulk(out, &f);
                if !scan.no_values {
                    reply::bulk(out, &v);
                }
            }
        }
        HashRead::RandField {
            count, with_values, ..
        } => {
            let Some(m) = &meta else {
                match count {
                    None => reply::nil(out),
                    Some(_) => reply::array_len(out, 0),
                }
                return Ok(());
            };
            match count {
                None => {
                    let got = random_elements(view, key, m, 1)?;
                    match got.first() {
                        Some((f, _)) => reply::bulk(out, f),
                        None => reply::nil(out),
                    }
                }
                Some(c) => {
                    let got = random_elements(view, key, m, *c)?;
                    let per = if *with_values { 2 } else { 1 };
                    reply::array_len(out, got.len() * per);
                    for (f, v) in got {
                        reply::bulk(out, &f);
                        if *with_values {
                            reply::bulk(out, &v);
                        }
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
    use proptest::prelude::*;

    proptest! {
        /// A cursor resumes at or before the field it was made from, and cursors keep the
        /// order of fields whose first 7 bytes differ: a scan never skips and always advances.
        #[test]
        fn cursors_resume_at_or_before_their_field(
            a in proptest::collection::vec(any::<u8>(), 0..12),
            b in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            prop_assert_ne!(cursor_of(&a), 0);
            prop_assert!(resume_at(cursor_of(&a)) <= a);
            let head = |f: &[u8]| {
                let mut h: Vec<u8> = f.iter().copied().take(CURSOR_BYTES).collect();
                h.resize(CURSOR_BYTES, 0);
                h
            };
            if head(&a) < head(&b) {
                prop_assert!(resume_at(cursor_of(&a)) < resume_at(cursor_of(&b)));
            }
        }
    }
}
