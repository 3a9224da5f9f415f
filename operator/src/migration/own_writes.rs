//! ShardMigrations as this replica last wrote them (created, or their status written).
//!
//! The driver is not woken by its own ShardMigration writes, and its next round may run before
//! the watch has delivered them to the shared cache. Reading only the cache, that round would
//! plan the create again (a POST refused with 409) or write status onto a resourceVersion it
//! already superseded (a 409, then a retry). A round therefore reads the cache overlaid with
//! these copies, for as long as the cache provably lags behind them.
//!
//! Safety does not rest on this: every ShardMigration status write still carries the
//! resourceVersion it was computed from, so a copy that is wrong only costs a conflict.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;

use crate::crd::ShardMigration;

/// How long a written copy may stand in for a cache that never shows it (the object was
/// deleted before the watch delivered the write, or the watch restarted meanwhile).
pub const TTL: Duration = Duration::from_secs(30);

/// Which copy of one ShardMigration a round should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresher {
    /// The cache: it shows this replica's last write, or a write made after it.
    Cache,
    /// This replica's copy: the cache shows nothing yet, or a version this replica overwrote.
    Written,
}

/// Decides between the cached copy (its resourceVersion, None when the cache has no such
/// object) and this replica's written copy, given the versions that copy superseded. A version
/// other than a superseded one is at least as new as the write: the write was accepted only
/// on the version it replaced, so nothing comes between them, and the cache only moves
/// forward.
pub fn fresher(cached: Option<&str>, superseded: &BTreeSet<String>) -> Fresher {
    match cached {
        Some(rv) if !superseded.contains(rv) => Fresher::Cache,
        _ => Fresher::Written,
    }
}

struct Entry {
    obj: ShardMigration,
    superseded: BTreeSet<String>,
    at: Instant,
}

/// This replica's written ShardMigrations, by (namespace, name).
#[derive(Default)]
pub struct OwnWrites {
    by_key: Mutex<BTreeMap<(String, String), Entry>>,
}

fn key_of(m: &ShardMigration) -> (String, String) {
    (m.namespace().unwrap_or_default(), m.name_any())
}

impl OwnWrites {
    /// Remembers `obj`, as the API server returned it after a write made on `replaced` (the
    /// resourceVersion the write carried; None for a create).
    pub fn record(&self, obj: &ShardMigration, replaced: Option<&str>) {
        let mut m = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(key_of(obj)).or_insert_with(|| Entry {
            obj: obj.clone(),
            superseded: BTreeSet::new(),
            at: Instant::now(),
        });
        e.obj = obj.clone();
        e.at = Instant::now();
        if let Some(rv) = replaced {
            e.superseded.insert(rv.to_string());
        }
    }

    /// Forgets the copy of `obj` (its write was refused, or it was deleted).
    pub fn forget(&self, obj: &ShardMigration) {
        self.by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key_of(obj));
    }

    /// The ShardMigrations of cluster `cluster` in `ns` a round should read: `cached`, each
    /// replaced by this replica's copy where the cache lags behind it, plus the ones this
    /// replica created that the cache does not show yet. Copies the cache caught up with (or
    /// that are older than [`TTL`]) are forgotten.
    pub fn overlay(
        &self,
        ns: &str,
        cluster: &str,
        cached: Vec<ShardMigration>,
    ) -> Vec<ShardMigration> {
        let mut m = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, e| e.at.elapsed() < TTL);
        let mut out = Vec::with_capacity(cached.len());
        let mut seen = BTreeSet::new();
        for c in cached {
            let k = key_of(&c);
            seen.insert(k.clone());
            match m.get(&k) {
                Some(e)
                    if fresher(c.resource_version().as_deref(), &e.superseded)
                        == Fresher::Written =>
                {
                    out.push(e.obj.clone());
                }
                Some(_) => {
                    m.remove(&k);
                    out.push(c);
                }
                None => out.push(c),
            }
        }
        for ((n, _), e) in m.iter() {
            if n == ns && e.obj.spec.cluster == cluster && !seen.contains(&key_of(&e.obj)) {
                out.push(e.obj.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{MigrationPhase, ShardMigrationSpec, ShardMigrationStatus};
    use kube::api::ObjectMeta;

    fn mig(name: &str, rv: &str, phase: MigrationPhase) -> ShardMigration {
        ShardMigration {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: ShardMigrationSpec {
                cluster: "demo".into(),
                source: "demo-0".into(),
                target: "demo-1".into(),
                ranges: Vec::new(),
                epoch: "2".into(),
                target_ring: "r".into(),
            },
            status: Some(ShardMigrationStatus {
                phase,
                ..Default::default()
            }),
        }
    }

    fn phases(v: &[ShardMigration]) -> Vec<(String, MigrationPhase)> {
        v.iter()
            .map(|m| (m.name_any(), m.status.clone().unwrap_or_default().phase))
            .collect()
    }

    #[test]
    fn only_a_superseded_or_missing_cached_copy_loses() {
        let old: BTreeSet<String> = ["5".to_string(), "7".to_string()].into();
        assert_eq!(fresher(None, &old), Fresher::Written);
        assert_eq!(fresher(Some("5"), &old), Fresher::Written);
        assert_eq!(fresher(Some("7"), &old), Fresher::Written);
        // Our own write's version, or somebody's write after ours.
        assert_eq!(fresher(Some("9"), &old), Fresher::Cache);
        assert_eq!(fresher(Some("12"), &old), Fresher::Cache);
    }

    #[test]
    fn a_created_move_is_seen_before_the_cache_has_it() {
        let w = OwnWrites::default();
        w.record(&mig("m1", "10", MigrationPhase::Pending), None);
        let got = w.overlay("ns", "demo", Vec::new());
        assert_eq!(phases(&got), vec![("m1".into(), MigrationPhase::Pending)]);
        // Other clusters and namespaces do not see it.
        assert!(w.overlay("ns", "other", Vec::new()).is_empty());
        assert!(w.overlay("ns2", "demo", Vec::new()).is_empty());
    }

    #[test]
    fn a_lagging_cache_is_overlaid_until_it_catches_up() {
        let w = OwnWrites::default();
        // Written Copying over version 10 (cached Pending), then CatchingUp over 11.
        w.record(&mig("m1", "11", MigrationPhase::Copying), Some("10"));
        w.record(&mig("m1", "12", MigrationPhase::CatchingUp), Some("11"));
        for stale in ["10", "11"] {
            let got = w.overlay(
                "ns",
                "demo",
                vec![mig("m1", stale, MigrationPhase::Pending)],
            );
            assert_eq!(
                phases(&got),
                vec![("m1".into(), MigrationPhase::CatchingUp)],
                "cache at {stale}"
            );
        }
        let caught_up = w.overlay(
            "ns",
            "demo",
            vec![mig("m1", "12", MigrationPhase::CatchingUp)],
        );
        assert_eq!(caught_up[0].resource_version().as_deref(), Some("12"));
        // Forgotten once the cache caught up: a stale cache no longer loses to it.
        let later = w.overlay("ns", "demo", vec![mig("m1", "10", MigrationPhase::Pending)]);
        assert_eq!(phases(&later), vec![("m1".into(), MigrationPhase::Pending)]);
    }

    #[test]
    fn a_write_by_someone_else_after_ours_wins() {
        let w = OwnWrites::default();
        w.record(&mig("m1", "11", MigrationPhase::Copying), Some("10"));
        let got = w.overlay(
            "ns",
            "demo",
            vec![mig("m1", "15", MigrationPhase::Cancelled)],
        );
        assert_eq!(phases(&got), vec![("m1".into(), MigrationPhase::Cancelled)]);
    }

    #[test]
    fn a_forgotten_copy_no_longer_overlays() {
        let w = OwnWrites::default();
        w.record(&mig("m1", "11", MigrationPhase::Copying), Some("10"));
        w.forget(&mig("m1", "11", MigrationPhase::Copying));
        let got = w.overlay("ns", "demo", vec![mig("m1", "10", MigrationPhase::Pending)]);
        assert_eq!(phases(&got), vec![("m1".into(), MigrationPhase::Pending)]);
    }
}
