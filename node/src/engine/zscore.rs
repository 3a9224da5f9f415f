//! Sorted-set scores: parsing as Redis 7.0 reads them, printing as it answers them (`%.17g`),
//! the 8-byte value of a member record, and the order-preserving 8-byte prefix of a score-index
//! record (so a byte-ordered scan of the index walks members by score).

/// Redis's error for a score (or increment) that is not a float.
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
/// ZADD INCR / ZINCRBY whose sum is NaN (inf + -inf).
pub const NAN_RESULT: &str = "ERR resulting score is not a number (NaN)";

/// A score argument as ZADD/ZINCRBY/WEIGHTS read it (`strtod` with Redis's checks): no
/// surrounding spaces, not NaN, and not a finite literal that overflows (`1e400` is refused,
/// `inf` is taken). -0 is stored as 0: Redis answers `0` for it.
pub fn parse_score(v: &[u8]) -> Option<f64> {
    let f = super::strings::parse_float(v)?;
    if f.is_infinite() && !is_inf_literal(v) {
        return None;
    }
    Some(if f == 0.0 { 0.0 } else { f })
}

fn is_inf_literal(v: &[u8]) -> bool {
    let t = v.strip_prefix(b"+").or(v.strip_prefix(b"-")).unwrap_or(v);
    t.eq_ignore_ascii_case(b"inf") || t.eq_ignore_ascii_case(b"infinity")
}

/// A bound of a score range (`zslParseRange`): `strtod` of the text, where an empty text reads
/// as 0 and overflow as an infinity; NaN or trailing garbage refused.
pub fn parse_bound_value(v: &[u8]) -> Option<f64> {
    if v.is_empty() {
        return Some(0.0);
    }
    let s = std::str::from_utf8(v).ok()?;
    // strtod skips leading spaces; trailing ones are garbage.
    let t = s.trim_start();
    if t.is_empty() || t.ends_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| !f.is_nan())
}

/// The score as Redis 7.0 prints it: `inf`/`-inf`, else C's `%.17g`.
pub fn format_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // 17 significant digits, then %g's choice of notation and trailing-zero removal.
    let sci = format!("{v:.16e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.unsigned_abs());
    }
    let decimals = (16 - exp) as usize;
    trim_fraction(&format!("{v:.decimals$}")).to_string()
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A member record's value: the score's bits.
pub fn score_value(v: f64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn value_score(raw: &[u8]) -> Option<f64> {
    Some(f64::from_be_bytes(raw.try_into().ok()?))
}

/// 8 bytes whose byte order is the scores' numeric order (-inf first, +inf last; -0 sorts as
/// 0, as Redis compares them equal).
pub fn encode_score(v: f64) -> [u8; 8] {
    let v = if v == 0.0 { 0.0 } else { v };
    let bits = v.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    ordered.to_be_bytes()
}

pub fn decode_score(raw: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(raw);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

/// A score-index field: `encode_score(score) ++ member`.
pub fn index_field(score: f64, member: &[u8]) -> Vec<u8> {
    let mut f = encode_score(score).to_vec();
    f.extend_from_slice(member);
    f
}

/// (score, member) of a score-index field.
pub fn split_index_field(field: &[u8]) -> Option<(f64, &[u8])> {
    let (s, member) = field.split_first_chunk::<8>()?;
    Some((decode_score(*s), member))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_score() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            Just(f64::MIN_POSITIVE),
            Just(-f64::MIN_POSITIVE),
            -1e6f64..1e6,
        ]
    }

    proptest! {
        /// Byte order of encodings is numeric order, and decoding gives the score back.
        #[test]
        fn encoding_preserves_order(a in any_score(), b in any_score()) {
            let (ea, eb) = (encode_score(a), encode_score(b));
            prop_assert_eq!(ea.cmp(&eb), a.partial_cmp(&b).unwrap());
            let back = decode_score(ea);
            prop_assert!(back == a);
        }

        /// Index fields sort by score, then member.
        #[test]
        fn index_fields_sort_by_score_then_member(
            a in any_score(), b in any_score(),
            ma in proptest::collection::vec(any::<u8>(), 0..6),
            mb in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let want = a.partial_cmp(&b).unwrap().then(ma.cmp(&mb));
            prop_assert_eq!(index_field(a, &ma).cmp(&index_field(b, &mb)), want);
            let f = index_field(a, &ma);
            let (s, m) = split_index_field(&f).unwrap();
            prop_assert!(s == a);
            prop_assert_eq!(m, &ma[..]);
        }

        /// Printing keeps 17 significant digits: the text reads back as the same f64.
        #[test]
        fn printed_scores_read_back(v in any_score()) {
            let s = format_score(v);
            let back: f64 = s.parse().unwrap();
            prop_assert!(back == v, "{} -> {} -> {}", v, s, back);
        }
    }

    #[test]
    fn scores_print_like_redis_7_0() {
        assert_eq!(format_score(1.0), "1");
        assert_eq!(format_score(1.5), "1.5");
        assert_eq!(format_score(-2.25), "-2.25");
        assert_eq!(format_score(0.1), "0.10000000000000001");
        assert_eq!(format_score(1e20), "1e+20");
        assert_eq!(format_score(1e16), "10000000000000000");
        assert_eq!(format_score(1e17), "1e+17");
        assert_eq!(format_score(0.0001), "0.0001");
        assert_eq!(format_score(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_score(123456789.0), "123456789");
        assert_eq!(format_score(f64::INFINITY), "inf");
        assert_eq!(format_score(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_score(0.0), "0");
    }

    #[test]
    fn score_arguments_follow_redis() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_score(b"nan"), None);
        assert_eq!(parse_score(b"1e400"), None);
        assert_eq!(parse_score(b""), None);
        assert_eq!(parse_score(b" 1"), None);
        assert_eq!(parse_score(b"abc"), None);
        let z = parse_score(b"-0").unwrap();
        assert!(z == 0.0 && z.is_sign_positive());
    }

    #[test]
    fn range_bounds_read_like_strtod() {
        assert_eq!(parse_bound_value(b""), Some(0.0));
        assert_eq!(parse_bound_value(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_bound_value(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_bound_value(b"nan"), None);
        assert_eq!(parse_bound_value(b"1x"), None);
        assert_eq!(parse_bound_value(b"1 "), None);
    }
}
