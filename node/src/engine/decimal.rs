//! Exact decimal addition for INCRBYFLOAT. Redis adds in long double and prints the result
//! with 17 decimals; adding the two decimal strings exactly and rounding to 17 decimals (half
//! to even) gives the same text where an f64 would show its binary noise (0.1 + 0.2 is 0.3).

/// value = (-1)^neg * digits * 10^-scale; `digits` big-endian, each 0-9.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dec {
    neg: bool,
    digits: Vec<u8>,
    scale: usize,
}

/// Exponents beyond this are left to the caller's f64 path.
const MAX_EXP: i64 = 400;
/// Decimals Redis prints.
const DECIMALS: usize = 17;

fn parse(s: &str) -> Option<Dec> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    if !(-MAX_EXP..=MAX_EXP).contains(&exp) {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let scale = frac.len() as i64 - exp;
    let scale = if scale < 0 {
        digits.extend(std::iter::repeat_n(0, (-scale) as usize));
        0
    } else {
        scale as usize
    };
    Some(Dec { neg, digits, scale })
}

/// Magnitudes of equal length: a - b, with a >= b.
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i8;
    for i in (0..a.len()).rev() {
        let mut d = a[i] as i8 - b[i] as i8 - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len() + 1];
    let mut carry = 0u8;
    for i in (0..a.len()).rev() {
        let d = a[i] + b[i] + carry;
        out[i + 1] = d % 10;
        carry = d / 10;
    }
    out[0] = carry;
    out
}

fn add(a: Dec, b: Dec) -> Dec {
    let scale = a.scale.max(b.scale);
    let widen = |d: Dec| {
        let mut digits = d.digits;
        digits.extend(std::iter::repeat_n(0, scale - d.scale));
        (d.neg, digits)
    };
    let (an, mut ad) = widen(a);
    let (bn, mut bd) = widen(b);
    let len = ad.len().max(bd.len());
    let pad = |v: &mut Vec<u8>| {
        let mut p = vec![0u8; len - v.len()];
        p.append(v);
        *v = p;
    };
    pad(&mut ad);
    pad(&mut bd);
    let (neg, digits) = if an == bn {
        (an, add_mag(&ad, &bd))
    } else if ad >= bd {
        (an, sub_mag(&ad, &bd))
    } else {
        (bn, sub_mag(&bd, &ad))
    };
    Dec { neg, digits, scale }
}

/// Rounds to `DECIMALS` decimals, half to even.
fn round(mut d: Dec) -> Dec {
    if d.scale <= DECIMALS {
        return d;
    }
    let cut = d.scale - DECIMALS;
    if d.digits.len() <= cut {
        // The implicit leading zeros are digits too: the first dropped one may be one of them.
        let mut padded = vec![0u8; cut + 1 - d.digits.len()];
        padded.append(&mut d.digits);
        d.digits = padded;
    }
    let keep = d.digits.len() - cut;
    let dropped: Vec<u8> = d.digits.split_off(keep);
    let mut digits = d.digits;
    let first = dropped.first().copied().unwrap_or(0);
    let rest_nonzero = dropped.iter().skip(1).any(|&x| x != 0);
    let last_odd = digits.last().is_some_and(|x| x % 2 == 1);
    let up = first > 5 || first == 5 && (rest_nonzero || last_odd);
    if up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    Dec {
        neg: d.neg,
        digits,
        scale: DECIMALS,
    }
}

fn format(d: &Dec) -> String {
    let mut digits: Vec<u8> = d.digits.clone();
    if digits.len() <= d.scale {
        let mut p = vec![0u8; d.scale + 1 - digits.len()];
        p.append(&mut digits);
        digits = p;
    }
    let split = digits.len() - d.scale;
    let int: String = digits[..split].iter().map(|x| (b'0' + x) as char).collect();
    let int = int.trim_start_matches('0');
    let frac: String = digits[split..].iter().map(|x| (b'0' + x) as char).collect();
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if int == "0" && frac.is_empty() {
        return "0".into();
    }
    let sign = if d.neg { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// `a + b` for two finite decimal strings, as Redis' INCRBYFLOAT prints it; `None` if either
/// is not plain decimal notation within the exponent bound.
pub fn add_text(a: &str, b: &str) -> Option<String> {
    Some(format(&round(add(parse(a)?, parse(b)?))))
}

#[cfg(test)]
mod tests {
    use super::add_text;
    use proptest::prelude::*;

    proptest! {
        /// The exact sum agrees with the f64 sum to f64's precision, for any sign, scale and
        /// exponent.
        #[test]
        fn agrees_with_f64(a in -1_000_000_000i64..1_000_000_000, sa in 0u32..12,
                           b in -1_000_000_000i64..1_000_000_000, sb in 0u32..12) {
            let x = format!("{}e-{sa}", a);
            let y = format!("{}e-{sb}", b);
            let want = x.parse::<f64>().unwrap() + y.parse::<f64>().unwrap();
            let got: f64 = add_text(&x, &y).unwrap().parse().unwrap();
            prop_assert!((got - want).abs() <= want.abs() * 1e-12 + 1e-17, "{x} + {y} = {got}, f64 {want}");
        }
    }

    #[test]
    fn sums_print_like_redis() {
        let t = |a, b| add_text(a, b).unwrap();
        assert_eq!(t("0.1", "0.2"), "0.3");
        assert_eq!(t("10.5", "0.1"), "10.6");
        assert_eq!(t("1", "-1.1"), "-0.1");
        assert_eq!(t("0", "5.0e3"), "5000");
        assert_eq!(t("17179869184", "1.5"), "17179869185.5");
        assert_eq!(t("0", "1e-3"), "0.001");
        // Half to even at the 17th decimal, and no negative zero.
        assert_eq!(t("0", "0.024390243902439025"), "0.02439024390243902");
        assert_eq!(t("0.02439024390243902", "-0.024390243902439025"), "0");
        assert_eq!(t("0", "0.99999999999999999999"), "1");
        assert_eq!(t("-3", "3"), "0");
        // Dropped digits behind implicit zeros.
        assert_eq!(t("0", "6e-22"), "0");
        assert_eq!(t("0", "0.000000000000000006"), "0.00000000000000001");
        assert_eq!(t(".5", "5."), "5.5");
        assert_eq!(add_text("1e999", "1"), None);
        assert_eq!(add_text("inf", "1"), None);
    }
}
