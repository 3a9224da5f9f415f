//! Single-key string commands that transform a key's value (APPEND, SETRANGE, INCRBYFLOAT,
//! SETNX, GETDEL, GETEX): evaluated as pure functions of the key's current state, so the
//! writer only reads the key, applies the resulting post-image (value and absolute expiry, or
//! a delete) through its usual logged write, and answers.

use crate::keys::Stored;

use super::ops::DataReply;

/// Redis' `proto-max-bulk-len` (512 MiB): bit offsets past it are out of range.
pub const REDIS_MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

/// The largest string APPEND, SETRANGE and SETBIT build here: the default largest request
/// (`--max-frame-bytes`, 64 MiB), so these commands cannot make a value larger than SET can
/// carry (one command must not take a pod's memory, and every value has to move in a pull).
pub const MAX_STRING_LEN: u64 = 64 * 1024 * 1024;

const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";

/// What GETEX does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetExExpiry {
    /// PERSIST: remove any expiry.
    Persist,
    /// Absolute unix ms (EX/PX/EXAT/PXAT); in the past it deletes the key.
    At(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrCmd {
    /// SETNX: set if absent, answer 1 or 0.
    SetNx {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Append {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    SetRange {
        key: Vec<u8>,
        offset: u64,
        value: Vec<u8>,
    },
    /// The increment as given (checked to be a float by the parser).
    IncrByFloat {
        key: Vec<u8>,
        delta: Vec<u8>,
    },
    GetDel {
        key: Vec<u8>,
    },
    /// SETBIT (offset below `REDIS_MAX_STRING_LEN * 8`, checked by the parser).
    SetBit {
        key: Vec<u8>,
        offset: u64,
        on: bool,
    },
    GetEx {
        key: Vec<u8>,
        expiry: GetExExpiry,
    },
}

impl StrCmd {
    pub fn key(&self) -> &[u8] {
        match self {
            StrCmd::SetNx { key, .. }
            | StrCmd::Append { key, .. }
            | StrCmd::SetRange { key, .. }
            | StrCmd::IncrByFloat { key, .. }
            | StrCmd::GetDel { key }
            | StrCmd::SetBit { key, .. }
            | StrCmd::GetEx { key, .. } => key,
        }
    }
}

/// What a command does to its key.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Keep,
    Put(Stored),
    Del,
}

/// Evaluates `cmd` against the key's live state (`None`: absent or expired) at `now` (unix ms).
pub fn eval(cmd: StrCmd, old: Option<Stored>, now: u64) -> (Change, DataReply) {
    match cmd {
        StrCmd::SetNx { value, .. } => match old {
            Some(_) => (Change::Keep, DataReply::Int(0)),
            None => (Change::Put(Stored::string(value, None)), DataReply::Int(1)),
        },
        StrCmd::Append { value, .. } => {
            let (mut cur, expires_at) = old.map_or((Vec::new(), None), |s| (s.value, s.expires_at));
            if cur.len() as u64 + value.len() as u64 > MAX_STRING_LEN {
                return (Change::Keep, DataReply::Err(TOO_LONG.into()));
            }
            cur.extend_from_slice(&value);
            let len = cur.len() as i64;
            (
                Change::Put(Stored::string(cur, expires_at)),
                DataReply::Int(len),
            )
        }
        StrCmd::SetRange { offset, value, .. } => {
            let cur_len = old.as_ref().map_or(0, |s| s.value.len()) as i64;
            if value.is_empty() {
                // Nothing to write: the key is neither created nor changed.
                return (Change::Keep, DataReply::Int(cur_len));
            }
            let end = offset.saturating_add(value.len() as u64);
            if end > MAX_STRING_LEN {
                return (Change::Keep, DataReply::Err(TOO_LONG.into()));
            }
            let (mut cur, expires_at) = old.map_or((Vec::new(), None), |s| (s.value, s.expires_at));
            // `end` <= MAX_STRING_LEN, so these fit in usize.
            let (offset, end) = (offset as usize, end as usize);
            if cur.len() < end {
                cur.resize(end, 0);
            }
            cur[offset..end].copy_from_slice(&value);
            let len = cur.len() as i64;
            (
                Change::Put(Stored::string(cur, expires_at)),
                DataReply::Int(len),
            )
        }
        StrCmd::IncrByFloat { delta, .. } => {
            let (cur, expires_at) = match &old {
                None => (b"0".as_slice(), None),
                Some(s) => (s.value.as_slice(), s.expires_at),
            };
            let (Some(a), Some(d)) = (parse_float(cur), parse_float(&delta)) else {
                return (Change::Keep, DataReply::Err(NOT_FLOAT.into()));
            };
            let v = a + d;
            if !v.is_finite() {
                return (
                    Change::Keep,
                    DataReply::Err("ERR increment would produce NaN or Infinity".into()),
                );
            }
            // Exact decimal addition where both are plain decimals (always, short of huge
            // exponents), else the f64 sum.
            let text = std::str::from_utf8(cur)
                .ok()
                .zip(std::str::from_utf8(&delta).ok())
                .and_then(|(a, d)| super::decimal::add_text(a, d))
                .unwrap_or_else(|| human_float(v))
                .into_bytes();
            (
                Change::Put(Stored::string(text.clone(), expires_at)),
                DataReply::Bulk(text),
            )
        }
        StrCmd::SetBit { offset, on, .. } => {
            if offset >> 3 >= MAX_STRING_LEN {
                return (Change::Keep, DataReply::Err(TOO_LONG.into()));
            }
            let (mut cur, expires_at) = old.map_or((Vec::new(), None), |s| (s.value, s.expires_at));
            let byte = (offset >> 3) as usize;
            let shift = 7 - (offset & 7) as u32;
            if cur.len() <= byte {
                cur.resize(byte + 1, 0);
            }
            let was = (cur[byte] >> shift) & 1;
            if on {
                cur[byte] |= 1 << shift;
            } else {
                cur[byte] &= !(1 << shift);
            }
            (
                Change::Put(Stored::string(cur, expires_at)),
                DataReply::Int(was as i64),
            )
        }
        StrCmd::GetDel { .. } => match old {
            None => (Change::Keep, DataReply::Nil),
            Some(s) => (Change::Del, DataReply::Bulk(s.value)),
        },
        StrCmd::GetEx { expiry, .. } => match old {
            None => (Change::Keep, DataReply::Nil),
            Some(s) => {
                let reply = DataReply::Bulk(s.value.clone());
                let change = match expiry {
                    GetExExpiry::At(at) if at <= now => Change::Del,
                    GetExExpiry::At(at) => Change::Put(Stored::string(s.value, Some(at))),
                    GetExExpiry::Persist if s.expires_at.is_none() => Change::Keep,
                    GetExExpiry::Persist => Change::Put(Stored::string(s.value, None)),
                };
                (change, reply)
            }
        },
    }
}

/// A float as Redis reads one from a value or an argument: no surrounding spaces, not NaN
/// (infinities parse; the arithmetic refuses them).
pub fn parse_float(v: &[u8]) -> Option<f64> {
    if v.is_empty() || v.len() > 5000 {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    if s.starts_with(|c: char| c.is_ascii_whitespace())
        || s.ends_with(|c: char| c.is_ascii_whitespace())
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| !f.is_nan())
}

/// A float in Redis' "human" form: plain decimal notation (no exponent), at most 17 decimals,
/// no trailing zeros, no negative zero. Rounded to 15 significant digits, what an f64 carries
/// faithfully (Redis computes in long double, so sums like 0.1 + 0.2 read as 0.3 there too).
pub fn human_float(v: f64) -> String {
    let s = significant15(v);
    match s.split_once('.') {
        Some((_, decimals)) if decimals.len() > 17 => {
            let fixed = format!("{v:.17}");
            let t = fixed.trim_end_matches('0').trim_end_matches('.');
            if t == "-0" || t.is_empty() {
                "0".into()
            } else {
                t.to_string()
            }
        }
        _ => s,
    }
}

fn significant15(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    // d.dddddddddddddde<exp>
    let sci = format!("{:.14e}", v);
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return v.to_string();
    };
    let Ok(exp) = exp.parse::<i64>() else {
        return v.to_string();
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let n = digits.len() as i64;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else if exp + 1 >= n {
        out.push_str(digits);
        for _ in 0..(exp + 1 - n) {
            out.push('0');
        }
    } else {
        let point = (exp + 1) as usize;
        out.push_str(&digits[..point]);
        out.push('.');
        out.push_str(&digits[point..]);
    }
    out
}

/// GETBIT: the bit at `offset` (0 past the end).
pub fn get_bit(v: &[u8], offset: u64) -> i64 {
    let byte = offset >> 3;
    v.get(byte as usize)
        .map_or(0, |b| ((b >> (7 - (offset & 7))) & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str, expires_at: Option<u64>) -> Option<Stored> {
        Some(Stored::string(v.as_bytes().to_vec(), expires_at))
    }

    #[test]
    fn floats_print_like_redis() {
        assert_eq!(human_float(10.5 + 0.1), "10.6");
        assert_eq!(human_float(0.1 + 0.2), "0.3");
        assert_eq!(human_float(1.0 - 1.1), "-0.1");
        assert_eq!(human_float(3.0), "3");
        assert_eq!(human_float(17179869185.5), "17179869185.5");
        assert_eq!(human_float(34359738368.0), "34359738368");
        assert_eq!(human_float(1e20), "100000000000000000000");
        assert_eq!(human_float(0.000123), "0.000123");
        assert_eq!(human_float(-0.0), "0");
        assert_eq!(human_float(1.0 / 41.0 - 1.0 / 41.0), "0");
        // At most 17 decimals, as Redis prints.
        assert_eq!(human_float(-2.42861286636753e-17), "-0.00000000000000002");
        assert_eq!(human_float(-2.4e-18), "0");
        assert_eq!(human_float(1.2345e-5), "0.000012345");
    }

    #[test]
    fn floats_parse_like_redis() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"1 "), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_float(b"1\0"), None);
        assert_eq!(parse_float(b""), None);
    }

    #[test]
    fn setrange_pads_and_keeps_expiry() {
        let cmd = |offset, v: &str| StrCmd::SetRange {
            key: b"k".to_vec(),
            offset,
            value: v.as_bytes().to_vec(),
        };
        let (c, r) = eval(cmd(3, "xy"), s("a", Some(99)), 0);
        assert_eq!(r, DataReply::Int(5));
        assert_eq!(
            c,
            Change::Put(Stored::string(b"a\0\0xy".to_vec(), Some(99)))
        );
        assert_eq!(eval(cmd(3, ""), None, 0), (Change::Keep, DataReply::Int(0)));
        assert_eq!(eval(cmd(0, ""), s("abc", None), 0).1, DataReply::Int(3));
        assert!(matches!(
            eval(cmd(MAX_STRING_LEN, "x"), None, 0).1,
            DataReply::Err(_)
        ));
    }

    #[test]
    fn bits_are_msb_first() {
        let cmd = |offset, on| StrCmd::SetBit {
            key: b"k".to_vec(),
            offset,
            on,
        };
        let (c, r) = eval(cmd(9, true), s("\x00", Some(7)), 0);
        assert_eq!(r, DataReply::Int(0));
        let Change::Put(v) = c else { panic!() };
        assert_eq!(v.value, vec![0x00, 0x40]);
        assert_eq!(v.expires_at, Some(7));
        assert_eq!(get_bit(&v.value, 9), 1);
        assert_eq!(get_bit(&v.value, 8), 0);
        assert_eq!(get_bit(&v.value, 1000), 0);
        assert_eq!(eval(cmd(9, false), Some(v), 0).1, DataReply::Int(1));
    }

    #[test]
    fn getex_in_the_past_deletes() {
        let cmd = |expiry| StrCmd::GetEx {
            key: b"k".to_vec(),
            expiry,
        };
        assert_eq!(
            eval(cmd(GetExExpiry::At(5)), s("v", None), 10),
            (Change::Del, DataReply::Bulk(b"v".to_vec()))
        );
        assert_eq!(
            eval(cmd(GetExExpiry::Persist), s("v", None), 10).0,
            Change::Keep
        );
        assert_eq!(eval(cmd(GetExExpiry::Persist), None, 10).1, DataReply::Nil);
    }
}
