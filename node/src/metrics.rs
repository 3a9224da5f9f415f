//! Prometheus metrics of the node.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
            ..m
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
