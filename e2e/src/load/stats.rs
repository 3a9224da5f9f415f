//! Live counters of a load run, shared by the workers and read by progress displays.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters updated by the workers.
#[derive(Debug, Default)]
pub struct Stats {
    writes_acked: AtomicU64,
    /// Acknowledged writes per [`crate::load::Kind`] (string, hash, list, zset).
    acked_by_kind: [AtomicU64; 4],
    writes_failed: AtomicU64,
    reads_ok: AtomicU64,
    reads_failed: AtomicU64,
    violations: AtomicU64,
    longest_stall_us: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub writes_acked: u64,
    /// Acknowledged writes per kind, indexed by [`crate::load::Kind::index`].
    pub acked_by_kind: [u64; 4],
    pub writes_failed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub violations: u64,
    pub longest_stall: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    pub last_error: Option<String>,
}

impl StatsSnapshot {
    pub fn ops(&self) -> u64 {
        self.writes_acked + self.writes_failed + self.reads_ok + self.reads_failed
    }
    /// `string 10, hash 3, ...` for the kinds that were written.
    pub fn by_kind(&self) -> String {
        crate::load::Kind::ALL
            .iter()
            .filter(|k| self.acked_by_kind[k.index()] > 0)
            .map(|k| format!("{} {}", k.name(), self.acked_by_kind[k.index()]))
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn errors(&self) -> u64 {
        self.writes_failed + self.reads_failed
    }
}

/// Keep at most this many latency samples (about 16 MiB), enough for long runs.
const MAX_SAMPLES: usize = 4 << 20;

impl Stats {
    pub fn write_acked(&self) {
        self.writes_acked.fetch_add(1, Ordering::Relaxed);
    }
    /// An acknowledged write of one kind (also counted in the total).
    pub fn kind_acked(&self, kind: crate::load::Kind) {
        self.write_acked();
        self.acked_by_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub fn write_failed(&self, err: &str) {
        self.writes_failed.fetch_add(1, Ordering::Relaxed);
        self.set_error(err);
    }
    pub fn read_ok(&self) {
        self.reads_ok.fetch_add(1, Ordering::Relaxed);
    }
    pub fn read_failed(&self, err: &str) {
        self.reads_failed.fetch_add(1, Ordering::Relaxed);
        self.set_error(err);
    }
    pub fn violation(&self) {
        self.violations.fetch_add(1, Ordering::Relaxed);
    }
    /// Time between two successful operations of one client: what a user sees as a stall.
    pub fn stall(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.longest_stall_us.fetch_max(us, Ordering::Relaxed);
    }
    pub fn latency(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if let Ok(mut v) = self.latencies_us.lock()
            && v.len() < MAX_SAMPLES
        {
            v.push(us);
        }
    }
    fn set_error(&self, err: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(err.to_string());
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let (p50, p99, max) = match self.latencies_us.lock() {
            Ok(v) => percentiles(&v),
            Err(_) => (0, 0, 0),
        };
        StatsSnapshot {
            writes_acked: self.writes_acked.load(Ordering::Relaxed),
            acked_by_kind: std::array::from_fn(|i| self.acked_by_kind[i].load(Ordering::Relaxed)),
            writes_failed: self.writes_failed.load(Ordering::Relaxed),
            reads_ok: self.reads_ok.load(Ordering::Relaxed),
            reads_failed: self.reads_failed.load(Ordering::Relaxed),
            violations: self.violations.load(Ordering::Relaxed),
            longest_stall: Duration::from_micros(self.longest_stall_us.load(Ordering::Relaxed)),
            latency_p50: Duration::from_micros(p50),
            latency_p99: Duration::from_micros(p99),
            latency_max: Duration::from_micros(max),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// p50, p99 and max of microsecond samples.
pub fn percentiles(samples: &[u32]) -> (u64, u64, u64) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let at = |q: f64| -> u64 {
        let idx = ((v.len() - 1) as f64 * q).round() as usize;
        u64::from(v[idx.min(v.len() - 1)])
    };
    (at(0.50), at(0.99), u64::from(v[v.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentiles(&v), (51, 99, 100));
        assert_eq!(percentiles(&[]), (0, 0, 0));
    }

    #[test]
    fn snapshot_counts() {
        let s = Stats::default();
        s.write_acked();
        s.write_failed("boom");
        s.read_ok();
        s.stall(Duration::from_millis(7));
        s.stall(Duration::from_millis(3));
        let snap = s.snapshot();
        assert_eq!(snap.ops(), 3);
        assert_eq!(snap.errors(), 1);
        assert_eq!(snap.longest_stall, Duration::from_millis(7));
        assert_eq!(snap.last_error.as_deref(), Some("boom"));
    }
}
