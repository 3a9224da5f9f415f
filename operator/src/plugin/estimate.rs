//! How many bytes a planned move would carry and how long it would take, for `plan`.
//!
//! Two sources, best first: each source member's stored bytes (its `/metrics`, read through the
//! API server's pod proxy; the same estimate the operator's room check makes: stored bytes
//! times the share of the member's owned hash space that moves), else the density and copy rate
//! measured by this cluster's finished moves (bytes copied per hash, bytes per second from
//! creation to commit). Times use the slower of the measured rate and the bandwidth limit.

use std::collections::BTreeMap;

use ringshift_planner::eta::estimate_bytes;

/// Where the plan's estimates came from (shown under the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Basis {
    /// Every source member's stored bytes.
    NodeMetrics,
    /// Density of the finished moves of this cluster.
    History,
    /// Nothing to estimate from.
    None,
}

/// A finished move, as measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Bytes the copy carried.
    pub bytes: u64,
    /// Hashes the move covered.
    pub span: u128,
    /// Seconds from the move's creation to its commit, when known.
    pub secs: Option<f64>,
}

/// What `plan` can estimate from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Stored bytes of each member whose metrics answered.
    pub stored: BTreeMap<String, u64>,
    /// Hashes each member owns now.
    pub owned: BTreeMap<String, u128>,
    pub samples: Vec<Sample>,
    /// spec.migration.bandwidthBytesPerSecond, when set.
    pub bandwidth: Option<u64>,
}

/// One move's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub bytes: u64,
    pub secs: Option<u64>,
}

impl Inputs {
    /// Bytes per hash over the finished moves that carried data.
    fn density(&self) -> Option<f64> {
        let (bytes, span) = self
            .samples
            .iter()
            .filter(|s| s.span > 0)
            .fold((0u128, 0u128), |(b, h), s| {
                (b + u128::from(s.bytes), h + s.span)
            });
        (span > 0 && bytes > 0).then(|| bytes as f64 / span as f64)
    }

    /// Bytes per second the finished moves achieved, capped by the bandwidth limit.
    fn rate(&self) -> Option<f64> {
        let (bytes, secs) = self
            .samples
            .iter()
            .filter_map(|s| s.secs.filter(|t| *t > 0.0).map(|t| (s.bytes, t)))
            .fold((0u128, 0f64), |(b, t), (sb, st)| {
                (b + u128::from(sb), t + st)
            });
        let measured = (secs > 0.0 && bytes > 0).then(|| bytes as f64 / secs);
        match (measured, self.bandwidth.filter(|b| *b > 0)) {
            (Some(m), Some(b)) => Some(m.min(b as f64)),
            (m, b) => m.or(b.map(|b| b as f64)),
        }
    }

    /// The basis every move of a plan with these sources would use.
    pub fn basis(&self, sources: &[&str]) -> Basis {
        if !sources.is_empty()
            && sources
                .iter()
                .all(|s| self.stored.contains_key(*s) && self.owned.contains_key(*s))
        {
            Basis::NodeMetrics
        } else if self.density().is_some() {
            Basis::History
        } else {
            Basis::None
        }
    }

    /// The estimate of moving `span` hashes off `source` on `basis`.
    pub fn estimate(&self, basis: Basis, source: &str, span: u128) -> Option<Estimate> {
        let bytes = match basis {
            Basis::NodeMetrics => {
                estimate_bytes(*self.stored.get(source)?, span, *self.owned.get(source)?)
            }
            Basis::History => (self.density()? * span as f64).round() as u64,
            Basis::None => return None,
        };
        let secs = self
            .rate()
            .map(|r| (bytes as f64 / r).ceil() as u64)
            .filter(|_| bytes > 0)
            .or((bytes == 0).then_some(0));
        Some(Estimate { bytes, secs })
    }
}

/// Wall time of moves taking `secs` each when `concurrent` run at once (a greedy schedule in
/// plan order, as the operator starts them).
pub fn total_secs(secs: &[u64], concurrent: usize) -> u64 {
    let mut lanes = vec![0u64; concurrent.max(1)];
    for s in secs {
        if let Some(l) = lanes.iter_mut().min() {
            *l += s;
        }
    }
    lanes.into_iter().max().unwrap_or(0)
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUARTER: u128 = 1u128 << 62;

    fn inputs() -> Inputs {
        Inputs {
            stored: BTreeMap::from([("demo-0".into(), 4_000)]),
            owned: BTreeMap::from([("demo-0".into(), 2 * QUARTER), ("demo-1".into(), QUARTER)]),
            samples: vec![],
            bandwidth: None,
        }
    }

    #[test]
    fn node_metrics_scale_stored_bytes_by_the_moved_share() {
        let i = inputs();
        assert_eq!(i.basis(&["demo-0"]), Basis::NodeMetrics);
        let e = i.estimate(Basis::NodeMetrics, "demo-0", QUARTER).unwrap();
        assert_eq!(e.bytes, 2_000);
        assert_eq!(e.secs, None, "no rate measured and no limit set");
    }

    #[test]
    fn a_source_without_metrics_falls_back_to_history() {
        let mut i = inputs();
        assert_eq!(i.basis(&["demo-0", "demo-1"]), Basis::None);
        i.samples = vec![
            Sample {
                bytes: 1_000,
                span: QUARTER,
                secs: Some(10.0),
            },
            Sample {
                bytes: 3_000,
                span: QUARTER,
                secs: Some(10.0),
            },
        ];
        assert_eq!(i.basis(&["demo-0", "demo-1"]), Basis::History);
        let e = i.estimate(Basis::History, "demo-1", QUARTER).unwrap();
        assert_eq!(e.bytes, 2_000, "mean density of the finished moves");
        assert_eq!(e.secs, Some(10), "4000 bytes in 20 s measured");
    }

    #[test]
    fn the_bandwidth_limit_caps_the_measured_rate() {
        let mut i = inputs();
        i.samples = vec![Sample {
            bytes: 10_000,
            span: QUARTER,
            secs: Some(1.0),
        }];
        i.bandwidth = Some(100);
        let e = i.estimate(Basis::NodeMetrics, "demo-0", QUARTER).unwrap();
        assert_eq!(e.secs, Some(20), "2000 bytes at the 100 B/s limit");
        i.samples.clear();
        let e = i.estimate(Basis::NodeMetrics, "demo-0", QUARTER).unwrap();
        assert_eq!(e.secs, Some(20), "the limit alone still bounds the time");
    }

    #[test]
    fn nothing_to_estimate_from_gives_nothing() {
        let i = Inputs::default();
        assert_eq!(i.basis(&["demo-0"]), Basis::None);
        assert_eq!(i.estimate(Basis::None, "demo-0", QUARTER), None);
        assert_eq!(i.basis(&[]), Basis::None);
    }

    #[test]
    fn moves_share_the_concurrency_lanes() {
        assert_eq!(total_secs(&[10, 10, 10], 1), 30);
        assert_eq!(total_secs(&[10, 10, 10], 2), 20);
        assert_eq!(total_secs(&[30, 10, 10, 10], 2), 30);
        assert_eq!(total_secs(&[], 4), 0);
        assert_eq!(total_secs(&[5], 0), 5, "0 is treated as 1");
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
