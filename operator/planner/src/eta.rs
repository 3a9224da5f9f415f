//! Progress and ETA of a copy, from counters the target reports.

/// Percent done (0..=100) from bytes copied and the estimated total.
pub fn percent(done: u64, total_estimate: u64) -> u8 {
    if total_estimate == 0 {
        return if done == 0 { 0 } else { 100 };
    }
    let p = (u128::from(done) * 100 / u128::from(total_estimate)).min(100);
    p as u8
}

/// Seconds left at the observed rate (bytes/s), or None when the rate is unknown.
pub fn eta_seconds(done: u64, total_estimate: u64, rate_per_s: u64) -> Option<u64> {
    if rate_per_s == 0 {
        return None;
    }
    Some(total_estimate.saturating_sub(done).div_ceil(rate_per_s))
}

/// Estimated bytes a transfer carries: the source's bytes times the share of its ranges.
pub fn estimate_bytes(source_bytes: u64, moved_span: u128, source_span: u128) -> u64 {
    if source_span == 0 {
        return 0;
    }
    let est = u128::from(source_bytes) * moved_span.min(source_span) / source_span;
    u64::try_from(est).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(5, 0), 100);
        assert_eq!(percent(50, 200), 25);
        assert_eq!(percent(500, 200), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
    }

    #[test]
    fn eta() {
        assert_eq!(eta_seconds(0, 100, 0), None);
        assert_eq!(eta_seconds(40, 100, 20), Some(3));
        assert_eq!(eta_seconds(200, 100, 20), Some(0));
    }

    #[test]
    fn estimate() {
        assert_eq!(estimate_bytes(1000, 1, 4), 250);
        assert_eq!(estimate_bytes(1000, 8, 4), 1000);
        assert_eq!(estimate_bytes(1000, 1, 0), 0);
        assert_eq!(estimate_bytes(u64::MAX, 1 << 64, 1 << 64), u64::MAX);
    }
}
