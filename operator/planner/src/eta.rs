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

/// Seconds until catch-up can cut over: the lag above `threshold` divided by the rate at which
/// the lag shrinks (records/s, measured). `Some(0)` when already within the threshold; None when
/// the lag is not shrinking (the source writes as fast as the target applies, or faster).
pub fn catch_up_eta_seconds(lag: u64, threshold: u64, shrink_per_s: f64) -> Option<u64> {
    if lag <= threshold {
        return Some(0);
    }
    if shrink_per_s.is_nan() || shrink_per_s <= 0.0 {
        return None;
    }
    let secs = ((lag - threshold) as f64 / shrink_per_s).ceil();
    (secs.is_finite() && secs < u64::MAX as f64).then_some(secs as u64)
}

/// `42s`, `3m20s`, `2h5m`, for status and printer columns.
pub fn format_eta(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// The rate of change of a counter (per second), smoothed; the caller passes the clock.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateMeter {
    last: Option<(u64, u64)>,
    rate: Option<f64>,
}

impl RateMeter {
    /// Samples closer together than this are ignored (too noisy).
    pub const MIN_INTERVAL_MS: u64 = 200;

    /// Records `value` at `now_ms`; returns the smoothed rate (negative when the counter
    /// shrinks), None until two samples are far enough apart.
    pub fn observe(&mut self, value: u64, now_ms: u64) -> Option<f64> {
        match self.last {
            Some((v0, t0)) if now_ms >= t0.saturating_add(Self::MIN_INTERVAL_MS) => {
                let dt = (now_ms - t0) as f64 / 1000.0;
                let r = (value as f64 - v0 as f64) / dt;
                self.rate = Some(match self.rate {
                    Some(prev) => 0.5 * prev + 0.5 * r,
                    None => r,
                });
                self.last = Some((value, now_ms));
            }
            Some((_, t0)) if now_ms >= t0 => {}
            _ => self.last = Some((value, now_ms)),
        }
        self.rate
    }

    pub fn rate(&self) -> Option<f64> {
        self.rate
    }
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
    fn catch_up_eta() {
        assert_eq!(catch_up_eta_seconds(500, 1000, 0.0), Some(0));
        assert_eq!(catch_up_eta_seconds(11_000, 1000, 1000.0), Some(10));
        assert_eq!(catch_up_eta_seconds(11_000, 1000, 0.0), None);
        assert_eq!(catch_up_eta_seconds(11_000, 1000, -50.0), None);
        assert_eq!(catch_up_eta_seconds(11_000, 1000, f64::NAN), None);
    }

    #[test]
    fn eta_text() {
        assert_eq!(format_eta(0), "0s");
        assert_eq!(format_eta(59), "59s");
        assert_eq!(format_eta(200), "3m20s");
        assert_eq!(format_eta(7500), "2h5m");
    }

    #[test]
    fn meter_measures_growth_and_shrinking() {
        let mut m = RateMeter::default();
        assert_eq!(m.observe(1000, 10_000), None);
        assert_eq!(m.observe(1100, 10_050), None, "too close to measure");
        assert_eq!(m.observe(2000, 11_000), Some(1000.0));
        // smoothed with the previous rate
        assert_eq!(m.observe(2000, 12_000), Some(500.0));
        // a shrinking counter (lag draining) gives a negative rate
        let mut lag = RateMeter::default();
        lag.observe(5000, 0);
        assert_eq!(lag.observe(3000, 1000), Some(-2000.0));
        // a clock going backwards is ignored
        assert_eq!(lag.observe(1, 500), Some(-2000.0));
    }

    #[test]
    fn estimate() {
        assert_eq!(estimate_bytes(1000, 1, 4), 250);
        assert_eq!(estimate_bytes(1000, 8, 4), 1000);
        assert_eq!(estimate_bytes(1000, 1, 0), 0);
        assert_eq!(estimate_bytes(u64::MAX, 1 << 64, 1 << 64), u64::MAX);
    }
}
