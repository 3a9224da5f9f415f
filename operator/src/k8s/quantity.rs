//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2G`, `1e3`) as numbers: the one parser
//! of the operator's validation, its node tuning and the e2e kubelet.

/// Why a string is not the quantity asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a quantity at all.
    #[error("{0:?} is not a quantity (e.g. 500m, 1Gi)")]
    Malformed(String),
    /// A quantity, but not a whole, non-negative number that fits 64 bits.
    #[error("{0:?} is not a whole, non-negative number")]
    NotWhole(String),
}

/// The value of quantity `q`: an optionally signed decimal number and one suffix, a binary
/// (`Ki` ... `Ei`) or decimal (`n` `u` `m` `k` `M` `G` `T` `P` `E`) multiplier or a decimal
/// exponent (`e3`, `E-2`). No spaces, as the API server writes them.
pub fn parse(q: &str) -> Result<f64, QuantityError> {
    let malformed = || QuantityError::Malformed(q.to_string());
    let bytes = q.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let mantissa = &q[digits_start..i];
    if mantissa.is_empty() || mantissa == "." || mantissa.matches('.').count() > 1 {
        return Err(malformed());
    }
    let value: f64 = q[..i].parse().map_err(|_| malformed())?;
    let scale = match &q[i..] {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| malformed())?;
            10f64.powi(e)
        }
        _ => return Err(malformed()),
    };
    Some(value * scale)
        .filter(|v| v.is_finite())
        .ok_or_else(malformed)
}

/// Quantity `q` as a whole, non-negative count (bytes, for instance).
pub fn whole(q: &str) -> Result<u64, QuantityError> {
    let v = parse(q)?;
    if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
        Ok(v as u64)
    } else {
        Err(QuantityError::NotWhole(q.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binary_and_decimal_suffixes_scale() {
        assert_eq!(parse("1Ki"), Ok(1024.0));
        assert_eq!(parse("64Mi"), Ok(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1Gi"), Ok(1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("2Ti"), Ok(2.0 * 1024f64.powi(4)));
        assert_eq!(parse("3k"), Ok(3000.0));
        assert_eq!(parse("5M"), Ok(5e6));
        assert_eq!(parse("1.5G"), Ok(1.5e9));
        assert_eq!(parse("250m"), Ok(0.25));
        assert_eq!(parse("2"), Ok(2.0));
    }

    #[test]
    fn exponents_decimals_and_signs_parse() {
        assert_eq!(parse("1e3"), Ok(1000.0));
        assert_eq!(parse("15E-1"), Ok(1.5));
        assert_eq!(parse("0.5"), Ok(0.5));
        assert_eq!(parse(".5Gi"), Ok(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse("-1Gi"), Ok(-1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("+2k"), Ok(2000.0));
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "", "lots", "1GB", "Gi", ".", "1..2", "1 Gi", " 1", "0x10", "1e", "1e999999", "2x",
            "1Mi ", "--1",
        ] {
            assert_eq!(
                parse(bad),
                Err(QuantityError::Malformed(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn whole_counts_refuse_fractions_and_negatives() {
        assert_eq!(whole("256Mi"), Ok(256 * 1024 * 1024));
        assert_eq!(whole("1e3"), Ok(1000));
        assert_eq!(whole("1.5"), Err(QuantityError::NotWhole("1.5".into())));
        assert_eq!(whole("500m"), Err(QuantityError::NotWhole("500m".into())));
        assert_eq!(whole("-1"), Err(QuantityError::NotWhole("-1".into())));
        assert_eq!(whole("1e30"), Err(QuantityError::NotWhole("1e30".into())));
        assert_eq!(whole("x"), Err(QuantityError::Malformed("x".into())));
    }

    proptest! {
        #[test]
        fn binary_suffixes_multiply_whole_numbers_exactly(n in 0u64..1_000_000, p in 0u32..3) {
            let suffix = ["Ki", "Mi", "Gi"][p as usize];
            prop_assert_eq!(whole(&format!("{n}{suffix}")), Ok(n << (10 * (p + 1))));
        }
    }
}
