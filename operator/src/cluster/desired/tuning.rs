//! Node tuning (`spec.tuning`) resolved to the node's flags, and the resources a member gets
//! when `spec.resources` is unset: a memory request sized so that the tuning's buffers fit.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cluster::validate::quantity_value;
use crate::crd::{Durability, NodeResources, NodeTuning};

const MI: u64 = 1024 * 1024;
/// The node's default read cache (`--cache-bytes`, node/src/config.rs).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * MI;
/// The node's default memtable size (`--memtable-bytes`, node/src/config.rs).
pub const DEFAULT_MEMTABLE_BYTES: u64 = 16 * MI;
/// Smallest memtable: fjall flushes a full memtable into a table, so a smaller one turns
/// every few writes into a flush.
pub const MIN_MEMTABLE_BYTES: u64 = MI;
/// Memtables a node may hold per unit of `memtableBytes`: the data and collection keyspaces,
/// each with an active memtable and a sealed one being flushed.
pub const MEMTABLES: u64 = 4;
/// Memory a node uses beside its cache and those memtables: fjall's block cache (32Mi), the
/// change-log keyspace's memtables (64Mi each, active + sealed) and the runtime, connections
/// and request frames.
pub const BASE_MEMORY_BYTES: u64 = 384 * MI;
/// CPU request of a member when `spec.resources` is unset. No CPU limit: throttling a node
/// stretches cutover pauses, and CPU left idle on the machine may as well serve requests.
pub const DEFAULT_CPU_REQUEST: &str = "100m";

/// Tuning with every default applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Read cache bytes (0: off).
    pub cache_bytes: u64,
    /// Memtable bytes of the data and collection keyspaces.
    pub memtable_bytes: u64,
    /// fsync before acknowledging.
    pub durability: Durability,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            memtable_bytes: DEFAULT_MEMTABLE_BYTES,
            durability: Durability::Durable,
        }
    }
}

/// A whole number of bytes from a quantity (`256Mi`, `1G`, `1048576`), or why it is not one.
fn bytes(field: &str, q: &Quantity) -> Result<u64, String> {
    match quantity_value(&q.0) {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 => Ok(v as u64),
        _ => Err(format!(
            "spec.tuning.{field}: {:?} is not a whole, non-negative number of bytes (e.g. 256Mi)",
            q.0
        )),
    }
}

/// The tuning the nodes run with, or what is wrong with `spec.tuning`.
pub fn resolve(tuning: Option<&NodeTuning>) -> Result<Tuning, Vec<String>> {
    let mut t = Tuning::default();
    let Some(spec) = tuning else { return Ok(t) };
    let mut errors = Vec::new();
    if let Some(q) = &spec.cache_bytes {
        match bytes("cacheBytes", q) {
            Ok(b) => t.cache_bytes = b,
            Err(e) => errors.push(e),
        }
    }
    if let Some(q) = &spec.memtable_bytes {
        match bytes("memtableBytes", q) {
            Ok(b) if b < MIN_MEMTABLE_BYTES => errors.push(format!(
                "spec.tuning.memtableBytes: {} is below the minimum of 1Mi",
                q.0
            )),
            Ok(b) => t.memtable_bytes = b,
            Err(e) => errors.push(e),
        }
    }
    if let Some(d) = spec.durability {
        t.durability = d;
    }
    if errors.is_empty() {
        Ok(t)
    } else {
        Err(errors)
    }
}

impl Tuning {
    /// The node's flags for this tuning.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cache-bytes".into(),
            self.cache_bytes.to_string(),
            "--memtable-bytes".into(),
            self.memtable_bytes.to_string(),
            "--durability".into(),
            self.durability.flag().into(),
        ]
    }

    /// Memory the node's cache and memtables can take.
    pub fn buffer_bytes(&self) -> u64 {
        self.cache_bytes
            .saturating_add(self.memtable_bytes.saturating_mul(MEMTABLES))
    }

    /// Memory a node needs: its buffers plus the rest of the process.
    pub fn memory_bytes(&self) -> u64 {
        self.buffer_bytes().saturating_add(BASE_MEMORY_BYTES)
    }
}

/// `n` bytes as the quantity the API server would store (the largest binary suffix that
/// divides it), rounded up to a whole Mi, so that the applied value reads back unchanged.
pub fn memory_quantity(n: u64) -> Quantity {
    let mib = n.div_ceil(MI).max(1);
    let (value, suffix) = if mib.is_multiple_of(1024 * 1024) {
        (mib / (1024 * 1024), "Ti")
    } else if mib.is_multiple_of(1024) {
        (mib / 1024, "Gi")
    } else {
        (mib, "Mi")
    };
    Quantity(format!("{value}{suffix}"))
}

/// The node container's resources: `spec.resources` as written, else requests cpu 100m and
/// memory = what `tuning` needs (a member's cache fills up to its budget, so that is its
/// working set: a lower request would let the scheduler overcommit the node and make the
/// member the kubelet's first eviction under memory pressure).
///
/// No default limit: measured on the harness (debug build, default tuning), a node's memory
/// grows with unflushed writes beyond its cache and memtables (1.0 GiB after 300k 1 KiB SETs,
/// 1.8 GiB after 600k) and journal replay after a restart climbs past 1 GiB again, so a limit
/// of `memory_bytes` would OOM-kill a busy member and then keep killing it while it recovers.
/// Until the node bounds its write buffers, a limit is the user's explicit choice.
pub fn resources(spec: Option<&NodeResources>, tuning: &Tuning) -> ResourceRequirements {
    match spec {
        Some(r) => ResourceRequirements {
            requests: (!r.requests.is_empty()).then(|| r.requests.clone()),
            limits: (!r.limits.is_empty()).then(|| r.limits.clone()),
            ..Default::default()
        },
        None => {
            let memory = memory_quantity(tuning.memory_bytes());
            ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(DEFAULT_CPU_REQUEST.into())),
                    ("memory".to_string(), memory),
                ])),
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(v: serde_json::Value) -> NodeTuning {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unset_tuning_is_the_nodes_defaults_passed_explicitly() {
        let t = resolve(None).unwrap();
        assert_eq!(
            t.args(),
            [
                "--cache-bytes",
                "268435456",
                "--memtable-bytes",
                "16777216",
                "--durability",
                "durable"
            ]
        );
        assert_eq!(resolve(Some(&tuning(serde_json::json!({})))).unwrap(), t);
    }

    #[test]
    fn quantities_become_byte_counts() {
        let t = resolve(Some(&tuning(serde_json::json!({
            "cacheBytes": "1Gi", "memtableBytes": "32M", "durability": "None"
        }))))
        .unwrap();
        assert_eq!(t.cache_bytes, 1 << 30);
        assert_eq!(t.memtable_bytes, 32_000_000);
        assert_eq!(t.durability, Durability::None);
        assert!(t.args().ends_with(&["--durability".into(), "none".into()]));
        // A plain integer is bytes; 0 turns the cache off.
        let t = resolve(Some(&tuning(serde_json::json!({"cacheBytes": 0})))).unwrap();
        assert_eq!(t.cache_bytes, 0);
    }

    #[test]
    fn bad_sizes_are_reported_per_field() {
        let e = resolve(Some(&tuning(serde_json::json!({
            "cacheBytes": "-1Gi", "memtableBytes": "1500m"
        }))))
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("spec.tuning.cacheBytes"), "{e:?}");
        assert!(e[1].starts_with("spec.tuning.memtableBytes"), "{e:?}");
        for bad in ["lots", "0", "512Ki"] {
            let e = resolve(Some(&tuning(serde_json::json!({"memtableBytes": bad}))));
            assert!(e.is_err(), "{bad}");
        }
        assert!(resolve(Some(&tuning(serde_json::json!({"memtableBytes": "1Mi"})))).is_ok());
    }

    #[test]
    fn memory_quantities_are_in_the_servers_canonical_form() {
        assert_eq!(memory_quantity(704 * MI).0, "704Mi");
        assert_eq!(memory_quantity(2048 * MI).0, "2Gi");
        assert_eq!(memory_quantity(1536 * MI).0, "1536Mi");
        assert_eq!(memory_quantity(1024 * 1024 * MI).0, "1Ti");
        // Rounded up to whole Mi, never below what is needed.
        assert_eq!(memory_quantity(10 * MI + 1).0, "11Mi");
        assert_eq!(memory_quantity(0).0, "1Mi");
    }

    #[test]
    fn default_resources_fit_the_tuning() {
        let r = resources(None, &Tuning::default());
        let requests = r.requests.unwrap();
        assert_eq!(requests["cpu"].0, "100m");
        // 256Mi cache + 4 x 16Mi memtables + 384Mi.
        assert_eq!(requests["memory"].0, "704Mi");
        assert!(r.limits.is_none(), "no default limit (see resources())");

        let big = Tuning {
            cache_bytes: 4 << 30,
            memtable_bytes: 64 * MI,
            durability: Durability::Durable,
        };
        let requests = resources(None, &big).requests.unwrap();
        let request = quantity_value(&requests["memory"].0).unwrap() as u64;
        assert!(request >= big.buffer_bytes() + BASE_MEMORY_BYTES);
        assert_eq!(requests["memory"].0, "4736Mi");
    }

    #[test]
    fn written_resources_are_used_as_they_are() {
        let spec: NodeResources = serde_json::from_value(serde_json::json!({
            "requests": {"cpu": "2"}, "limits": {"memory": "8Gi"}
        }))
        .unwrap();
        let r = resources(Some(&spec), &Tuning::default());
        assert_eq!(r.requests.unwrap()["cpu"].0, "2");
        let limits = r.limits.unwrap();
        assert_eq!(limits["memory"].0, "8Gi");
        assert_eq!(limits.len(), 1);
    }
}
