//! `history`: the cluster's moves, oldest first, as the ShardMigrations the operator keeps
//! (finished ones up to `spec.migration.historyLimit`), and the measurements `plan` estimates
//! from.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::estimate::Sample;
use crate::crd::{MigrationPhase, ShardMigration};
use crate::migration::convert::ranges_of;

/// One move of the history.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRow {
    pub name: String,
    pub source: String,
    pub target: String,
    pub phase: String,
    /// Ring epoch the move was planned at.
    pub epoch: String,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
    /// Seconds from creation to commit (committed moves) or to the last phase change
    /// (cancelled or failed ones); None while in flight.
    pub secs: Option<u64>,
    /// Share of the ring moved, 0..=1.
    pub share: f64,
    pub bytes: Option<u64>,
    pub cutover_pause: Option<String>,
    pub message: Option<String>,
}

fn secs_between(from: Timestamp, to: Timestamp) -> Option<u64> {
    u64::try_from(to.as_millisecond() - from.as_millisecond())
        .ok()
        .map(|ms| ms.div_ceil(1000))
}

/// The history rows of `moves`, oldest first (ties by name).
pub fn rows(moves: &[ShardMigration]) -> Vec<HistoryRow> {
    let mut sorted: Vec<&ShardMigration> = moves.iter().collect();
    sorted.sort_by(|a, b| {
        let t = |m: &ShardMigration| m.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    sorted
        .into_iter()
        .map(|m| {
            let s = m.status.clone().unwrap_or_default();
            let created = m.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let end = match s.phase {
                MigrationPhase::Cleanup | MigrationPhase::Completed => {
                    s.committed_at.as_ref().map(|t| t.0)
                }
                MigrationPhase::Cancelled | MigrationPhase::Failed => {
                    s.phase_started.as_ref().map(|t| t.0)
                }
                _ => None,
            };
            let span = ranges_of(&m.spec.ranges).map(|r| r.span()).unwrap_or(0);
            HistoryRow {
                name: m.name_any(),
                source: m.spec.source.clone(),
                target: m.spec.target.clone(),
                phase: format!("{:?}", s.phase),
                epoch: m.spec.epoch.clone(),
                created: created.map(|t| t.to_string()),
                secs: created.zip(end).and_then(|(a, b)| secs_between(a, b)),
                share: span as f64 / ringshift_ring::FULL_SPAN as f64,
                bytes: s.progress.as_ref().and_then(|p| p.bytes.parse().ok()),
                cutover_pause: s.cutover_pause.clone(),
                message: s.message.clone(),
            }
        })
        .collect()
}

/// Measurements of the committed moves that carried data, for `plan`'s estimates.
pub fn samples(moves: &[ShardMigration]) -> Vec<Sample> {
    moves
        .iter()
        .filter(|m| {
            m.status.as_ref().is_some_and(|s| {
                matches!(s.phase, MigrationPhase::Cleanup | MigrationPhase::Completed)
            })
        })
        .filter_map(|m| {
            let s = m.status.as_ref()?;
            let bytes: u64 = s.progress.as_ref()?.bytes.parse().ok()?;
            let span = ranges_of(&m.spec.ranges).ok()?.span();
            let secs = m
                .metadata
                .creation_timestamp
                .as_ref()
                .zip(s.committed_at.as_ref())
                .and_then(|(a, b)| {
                    let ms = b.0.as_millisecond() - a.0.as_millisecond();
                    (ms > 0).then(|| ms as f64 / 1000.0)
                });
            Some(Sample { bytes, span, secs })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn mig(name: &str, created: &str, status: serde_json::Value) -> ShardMigration {
        serde_json::from_value(json!({
            "apiVersion": "ringshift.dev/v1alpha1",
            "kind": "ShardMigration",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {
                "cluster": "demo", "source": "demo-0", "target": "demo-3", "epoch": "4",
                "targetRing": "r",
                "ranges": [{"start": "0", "end": "4611686018427387903"}]
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn rows_are_oldest_first_with_durations_and_bytes() {
        let moves = vec![
            mig(
                "b",
                "2026-12-07T10:00:00Z",
                json!({"phase": "Completed", "committedAt": "2026-12-07T10:00:41Z",
                       "progress": {"keys": "10", "bytes": "4096", "percent": 100},
                       "cutoverPause": "40ms"}),
            ),
            mig(
                "a",
                "2026-12-07T09:00:00Z",
                json!({"phase": "Cancelled", "phaseStarted": "2026-12-07T09:00:05Z",
                       "message": "cancelled by request"}),
            ),
            mig("c", "2026-12-07T11:00:00Z", json!({"phase": "Copying"})),
        ];
        let r = rows(&moves);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(r[0].secs, Some(5));
        assert_eq!(r[0].message.as_deref(), Some("cancelled by request"));
        assert_eq!(r[1].secs, Some(41));
        assert_eq!(r[1].bytes, Some(4096));
        assert!((r[1].share - 0.25).abs() < 1e-9);
        assert_eq!(r[2].secs, None, "in flight");
    }

    #[test]
    fn only_committed_moves_are_measured() {
        let moves = vec![
            mig(
                "done",
                "2026-12-07T10:00:00Z",
                json!({"phase": "Cleanup", "committedAt": "2026-12-07T10:00:10Z",
                       "progress": {"keys": "1", "bytes": "100", "percent": 100}}),
            ),
            mig(
                "failed",
                "2026-12-07T10:00:00Z",
                json!({"phase": "Failed", "progress": {"keys": "1", "bytes": "7", "percent": 3}}),
            ),
        ];
        let s = samples(&moves);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].bytes, 100);
        assert_eq!(s[0].secs, Some(10.0));
        assert_eq!(s[0].span, 1u128 << 62);
    }

    #[test]
    fn a_clock_step_backwards_gives_no_duration() {
        let a: Time = serde_json::from_value(json!("2026-12-07T10:00:10Z")).unwrap();
        let b: Time = serde_json::from_value(json!("2026-12-07T10:00:00Z")).unwrap();
        assert_eq!(secs_between(a.0, b.0), None);
    }
}
