//! Prometheus metrics of the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Label of commands the table does not know: the `command` label stays a bounded set.
pub const UNKNOWN_COMMAND: &str = "unknown";

/// Upper bounds (seconds) of the latency buckets: 25 us to 2.5 s.
const BOUNDS: [f64; 16] = [
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
];

/// A latency histogram with fixed buckets and atomic counters. The data path observes every
/// command: prometheus-client's `Histogram` takes a mutex per observation, this takes none.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram(Arc<LatencyCounts>);

#[derive(Debug, Default)]
struct LatencyCounts {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// `n` observations of `d`.
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let secs = ns as f64 / 1e9;
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.0.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.0
            .sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
    }

    /// `(upper bound, count in this bucket alone)` pairs ending with +Inf (the encoder makes
    /// them cumulative), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64) {
        let buckets = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.0.buckets)
            .map(|(bound, c)| (bound, c.load(Ordering::Relaxed)))
            .collect();
        (buckets, self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, sum) = self.snapshot();
        let count = buckets.iter().map(|b| b.1).sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MigrationLabel {
    pub migration: String,
}

pub struct Metrics {
    pub registry: Registry,
    /// `ops` counters by index into the command table, created up front (hot path).
    ops_by_index: Vec<Counter>,
    pub ops: Family<CommandLabel, Counter>,
    /// Latency by index into the command table, then one for unknown commands.
    latency_by_index: Vec<LatencyHistogram>,
    pub command_latency: Family<CommandLabel, LatencyHistogram>,
    pub forward_latency: LatencyHistogram,
    pub connected_clients: Gauge,
    pub blocked_clients: Gauge,
    pub errors: Family<KindLabel, Counter>,
    pub forwarded: Counter,
    pub log_head: Gauge,
    pub bytes_copied: Family<MigrationLabel, Counter>,
    pub lag: Family<MigrationLabel, Gauge>,
    pub fenced_ranges: Gauge,
    pub epoch: Gauge,
    pub data_free_bytes: Gauge,
    pub data_total_bytes: Gauge,
    pub data_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringshift_node");
        let m = Metrics {
            ops: Family::default(),
            errors: Family::default(),
            forwarded: Counter::default(),
            log_head: Gauge::default(),
            bytes_copied: Family::default(),
            lag: Family::default(),
            fenced_ranges: Gauge::default(),
            epoch: Gauge::default(),
            data_free_bytes: Gauge::default(),
            data_total_bytes: Gauge::default(),
            data_bytes: Gauge::default(),
            registry: Registry::default(),
            ops_by_index: Vec::new(),
            latency_by_index: Vec::new(),
            command_latency: Family::default(),
            forward_latency: LatencyHistogram::default(),
            connected_clients: Gauge::default(),
            blocked_clients: Gauge::default(),
        };
        registry.register("ops", "Data commands executed, by command", m.ops.clone());
        registry.register(
            "errors",
            "Error replies and failures, by kind",
            m.errors.clone(),
        );
        registry.register(
            "forwarded_ops",
            "Commands forwarded to their owner",
            m.forwarded.clone(),
        );
        registry.register(
            "log_head",
            "Durable change log head sequence",
            m.log_head.clone(),
        );
        registry.register(
            "pull_bytes_copied",
            "Bytes copied by pulls into this node, by migration",
            m.bytes_copied.clone(),
        );
        registry.register(
            "pull_lag",
            "Change log records between a pull's applied offset and its source's head",
            m.lag.clone(),
        );
        registry.register(
            "fenced_ranges",
            "Hash ranges fenced on this node",
            m.fenced_ranges.clone(),
        );
        registry.register(
            "placement_epoch",
            "Epoch of the installed placement",
            m.epoch.clone(),
        );
        // Names read by the operator's pre-flight room check: do not rename.
        registry.register(
            "data_free_bytes",
            "Bytes still available to the node on its data directory's filesystem",
            m.data_free_bytes.clone(),
        );
        registry.register(
            "data_total_bytes",
            "Size of the data directory's filesystem in bytes",
            m.data_total_bytes.clone(),
        );
        registry.register(
            "data_bytes",
            "Approximate bytes of keys and values stored (engine estimate)",
            m.data_bytes.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Time from reading a command off the socket to writing its reply, by command (the \
             replies to one read go out together; a write's includes its group commit; unknown \
             commands under command=\"unknown\")",
            m.command_latency.clone(),
        );
        registry.register(
            "forward_duration_seconds",
            "Round trip of commands forwarded to their owner",
            m.forward_latency.clone(),
        );
        registry.register(
            "connected_clients",
            "Open connections on the data port",
            m.connected_clients.clone(),
        );
        registry.register(
            "blocked_clients",
            "Connections waiting in a blocking command (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, \
             BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP)",
            m.blocked_clients.clone(),
        );
        let latency_by_index = crate::command::table::COMMANDS
            .iter()
            .map(|c| c.name)
            .chain([UNKNOWN_COMMAND])
            .map(|name| {
                m.command_latency
                    .get_or_create(&CommandLabel {
                        command: name.to_string(),
                    })
                    .clone()
            })
            .collect();
        let ops_by_index = crate::command::table::COMMANDS
            .iter()
            .map(|c| {
                m.ops
                    .get_or_create(&CommandLabel {
                        command: c.name.to_string(),
                    })
                    .clone()
            })
            .collect();
        Metrics {
            registry,
            ops_by_index,
            latency_by_index,
            ..m
        }
    }

    /// Registers the engine's group-commit latency (the engine measures it).
    pub fn register_commit_latency(&mut self, commit: LatencyHistogram) {
        self.registry.register(
            "commit_duration_seconds",
            "Group commit of one write batch: data, change log and metadata in one journal \
             write, with its fdatasync when the node runs durable",
            commit,
        );
    }

    /// Records the commands of one read (indexes in the command table, None: unknown), all
    /// answered `d` after it: one observation per run of the same command (a pipeline of GETs
    /// costs one).
    pub fn commands_answered(&self, commands: &[Option<usize>], d: Duration) {
        let unknown = self.latency_by_index.len().saturating_sub(1);
        let mut rest = commands;
        while let Some(first) = rest.first() {
            let run = rest.iter().take_while(|c| *c == first).count();
            if let Some(h) = self.latency_by_index.get(first.unwrap_or(unknown)) {
                h.observe_n(d, run as u64);
            }
            rest = &rest[run..];
        }
    }

    pub fn op_index(&self, index: usize) {
        if let Some(c) = self.ops_by_index.get(index) {
            c.inc();
        }
    }

    pub fn op(&self, command: &str) {
        self.ops
            .get_or_create(&CommandLabel {
                command: command.to_string(),
            })
            .inc();
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Puts one series in each labelled family that starts empty (an exposition leaves empty
    /// families out), so that a test can list every metric and its labels from `encode`.
    pub fn touch_every_family(&self) {
        self.error("example");
        let migration = MigrationLabel {
            migration: "example".into(),
        };
        drop(self.bytes_copied.get_or_create(&migration));
        drop(self.lag.get_or_create(&migration));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_and_bounded_by_the_table() {
        let mut m = Metrics::new();
        m.register_commit_latency(LatencyHistogram::default());
        let get = crate::command::table::index(b"get");
        m.commands_answered(&[get], Duration::from_micros(30));
        m.commands_answered(&[get, None, get], Duration::from_millis(3));
        let text = m.encode();
        assert!(
            text.contains(r#"ringshift_node_command_duration_seconds_count{command="get"} 3"#),
            "{text}"
        );
        m.commands_answered(&[], Duration::from_secs(10));
        m.commands_answered(&[get], Duration::from_secs(10));
        let text = m.encode();
        for line in [
            r#"ringshift_node_command_duration_seconds_bucket{le="0.000025",command="get"} 0"#,
            r#"ringshift_node_command_duration_seconds_bucket{le="0.00005",command="get"} 1"#,
            r#"ringshift_node_command_duration_seconds_bucket{le="0.0025",command="get"} 1"#,
            r#"ringshift_node_command_duration_seconds_bucket{le="0.005",command="get"} 3"#,
            r#"ringshift_node_command_duration_seconds_bucket{le="+Inf",command="get"} 4"#,
            r#"ringshift_node_command_duration_seconds_count{command="get"} 4"#,
            r#"ringshift_node_command_duration_seconds_count{command="unknown"} 1"#,
            "ringshift_node_blocked_clients 0",
            "# TYPE ringshift_node_commit_duration_seconds histogram",
            "# TYPE ringshift_node_forward_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let series = text
            .lines()
            .filter(|l| l.starts_with("ringshift_node_command_duration_seconds_count"))
            .count();
        assert_eq!(series, crate::command::table::COMMANDS.len() + 1);
    }
}
