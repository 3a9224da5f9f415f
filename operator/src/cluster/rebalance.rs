//! Cluster-wide progress of a ring change (`ShardCluster.status.rebalance`), summed from the
//! ShardMigrations' own progress. Pure: the caller passes the moves and the clock.

use ringshift_planner::eta::format_eta;

use crate::crd::{MigrationPhase, RebalanceStatus, ShardMigration};

/// The progress of the latest ring change: the target ring of the newest unfinished move, or
/// of the newest move when all have finished. None when there are no moves at all.
pub fn rebalance(migrations: &[ShardMigration], now_ms: i64) -> Option<RebalanceStatus> {
    let ring = latest_ring(migrations)?;
    let moves: Vec<Move> = migrations
        .iter()
        .filter(|m| m.spec.target_ring == ring)
        .filter(|m| phase(m) != MigrationPhase::Cancelled)
        .map(Move::of)
        .collect();
    if moves.is_empty() {
        return None;
    }
    let total = moves.len();
    let done = moves.iter().filter(|m| m.committed()).count();
    let failed = moves
        .iter()
        .filter(|m| m.phase == MigrationPhase::Failed)
        .count();
    let bytes_moved: u64 = moves.iter().map(|m| m.bytes).fold(0, u64::saturating_add);
    let known: Vec<u64> = moves.iter().filter_map(|m| m.estimate).collect();
    let bytes_estimated = known.iter().copied().fold(0, u64::saturating_add);
    // A move not measured yet weighs as much as the average measured one.
    let fallback = match known.len() {
        0 => 1,
        n => (bytes_estimated / n as u64).max(1),
    };
    let weight = |m: &Move| m.estimate.unwrap_or(fallback).max(1) as f64;
    let all: f64 = moves.iter().map(weight).sum();
    let part: f64 = moves.iter().map(|m| weight(m) * m.fraction()).sum();
    let mut percent = ((part / all) * 100.0).floor().clamp(0.0, 100.0) as i32;
    if done < total {
        percent = percent.min(99);
    } else {
        percent = 100;
    }
    let eta = (done < total && failed == 0)
        .then(|| eta_seconds(&moves, bytes_moved, done, now_ms))
        .flatten()
        .map(format_eta);
    let (done, total) = (count(done), count(total));
    Some(RebalanceStatus {
        target_ring: ring.to_string(),
        moves_done: done,
        moves_total: total,
        moves_failed: count(failed),
        bytes_moved: bytes_moved.to_string(),
        bytes_estimated: bytes_estimated.to_string(),
        percent,
        eta,
        summary: format!("{percent}% ({done}/{total})"),
    })
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn phase(m: &ShardMigration) -> MigrationPhase {
    m.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn created_ms(m: &ShardMigration) -> Option<i64> {
    m.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
}

fn latest_ring(migrations: &[ShardMigration]) -> Option<&str> {
    let newest = |unfinished: bool| {
        migrations
            .iter()
            .filter(|m| !unfinished || !phase(m).is_finished())
            .max_by_key(|m| (created_ms(m), m.metadata.name.clone()))
    };
    newest(true)
        .or_else(|| newest(false))
        .map(|m| m.spec.target_ring.as_str())
}

/// What one move contributes.
struct Move {
    phase: MigrationPhase,
    bytes: u64,
    estimate: Option<u64>,
    percent: i32,
    created_ms: Option<i64>,
}

impl Move {
    fn of(m: &ShardMigration) -> Move {
        let progress = m.status.as_ref().and_then(|s| s.progress.as_ref());
        let num = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
        Move {
            phase: phase(m),
            bytes: num(progress.map(|p| p.bytes.as_str())).unwrap_or(0),
            estimate: num(progress.and_then(|p| p.estimated_bytes.as_deref())),
            percent: progress.map(|p| p.percent).unwrap_or(0),
            created_ms: created_ms(m),
        }
    }

    /// Committed: the ranges have their new owner (the source's copy goes later).
    fn committed(&self) -> bool {
        matches!(
            self.phase,
            MigrationPhase::Cleanup | MigrationPhase::Completed
        )
    }

    /// Share done, 0..=1: committed moves count whole, others by their copy.
    fn fraction(&self) -> f64 {
        if self.committed() {
            1.0
        } else {
            f64::from(self.percent.clamp(0, 100)) / 100.0
        }
    }
}

/// Seconds left at the pace seen since the first move was created: from bytes when the
/// remaining bytes are known and something was copied, else from moves committed so far.
fn eta_seconds(moves: &[Move], bytes_moved: u64, done: usize, now_ms: i64) -> Option<u64> {
    let start = moves.iter().filter_map(|m| m.created_ms).min()?;
    let elapsed_s = (now_ms.saturating_sub(start) as f64 / 1000.0).max(0.0);
    if elapsed_s < 1.0 {
        return None;
    }
    let remaining: u64 = moves
        .iter()
        .filter(|m| !m.committed())
        .map(|m| m.estimate.map(|e| e.saturating_sub(m.bytes)))
        .sum::<Option<u64>>()
        .unwrap_or(0);
    let rate = bytes_moved as f64 / elapsed_s;
    if remaining > 0 && rate >= 1.0 {
        return Some((remaining as f64 / rate).ceil() as u64);
    }
    if done > 0 {
        let left = (moves.len() - done) as f64;
        return Some((elapsed_s / done as f64 * left).ceil() as u64);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{MigrationProgress, ShardMigrationSpec, ShardMigrationStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    const T0: i64 = 1_700_000_000_000;

    fn mv(
        name: &str,
        ring: &str,
        created_s: i64,
        phase: MigrationPhase,
        bytes: u64,
        estimate: Option<u64>,
        percent: i32,
    ) -> ShardMigration {
        let mut m = ShardMigration::new(
            name,
            ShardMigrationSpec {
                cluster: "demo".into(),
                source: "demo-0".into(),
                target: "demo-3".into(),
                ranges: vec![],
                epoch: "1".into(),
                target_ring: ring.into(),
            },
        );
        m.metadata.creation_timestamp = Some(Time(
            Timestamp::from_millisecond(T0 + created_s * 1000).unwrap(),
        ));
        m.status = Some(ShardMigrationStatus {
            phase,
            progress: Some(MigrationProgress {
                keys: "0".into(),
                bytes: bytes.to_string(),
                percent,
                estimated_bytes: estimate.map(|e| e.to_string()),
            }),
            ..Default::default()
        });
        m
    }

    #[test]
    fn no_moves_no_rebalance() {
        assert_eq!(rebalance(&[], T0), None);
    }

    #[test]
    fn half_way_by_bytes_with_an_eta_from_the_pace() {
        use MigrationPhase::*;
        let moves = [
            mv("m1", "r2", 0, Completed, 1000, Some(1000), 100),
            mv("m2", "r2", 0, Copying, 0, Some(1000), 0),
        ];
        // 1000 bytes in 10 s, 1000 left: 10 s more.
        let r = rebalance(&moves, T0 + 10_000).unwrap();
        assert_eq!((r.moves_done, r.moves_total, r.moves_failed), (1, 2, 0));
        assert_eq!(
            (r.bytes_moved.as_str(), r.bytes_estimated.as_str()),
            ("1000", "2000")
        );
        assert_eq!(r.percent, 50);
        assert_eq!(r.eta.as_deref(), Some("10s"));
        assert_eq!(r.summary, "50% (1/2)");
        assert_eq!(r.target_ring, "r2");
    }

    #[test]
    fn only_the_latest_ring_change_counts_and_cancelled_moves_do_not() {
        use MigrationPhase::*;
        let moves = [
            // An earlier scale, finished.
            mv("old", "r1", 0, Completed, 500, Some(500), 100),
            // Cancelled by the re-plan that made r2.
            mv("gone", "r2", 5, Cancelled, 10, Some(900), 1),
            mv("m1", "r2", 5, Cleanup, 900, Some(900), 100),
            mv("m2", "r2", 6, CatchingUp, 300, Some(300), 100),
        ];
        let r = rebalance(&moves, T0 + 60_000).unwrap();
        assert_eq!((r.moves_done, r.moves_total), (1, 2));
        assert_eq!(r.bytes_moved, "1200");
        // m2's copy is done but not committed: never 100 before every move is committed.
        assert_eq!(r.percent, 99);
        // No bytes left, one of two moves committed in 55 s: 55 s more by moves.
        assert_eq!(r.eta.as_deref(), Some("55s"));
    }

    #[test]
    fn all_committed_reads_100_without_eta() {
        use MigrationPhase::*;
        let moves = [
            mv("m1", "r2", 0, Completed, 900, Some(1000), 100),
            mv("m2", "r2", 0, Cleanup, 300, None, 48),
        ];
        let r = rebalance(&moves, T0 + 5_000).unwrap();
        assert_eq!((r.percent, r.eta), (100, None));
        assert_eq!(r.summary, "100% (2/2)");
        // Estimates only over the moves that have one.
        assert_eq!(r.bytes_estimated, "1000");
    }

    #[test]
    fn unmeasured_moves_weigh_as_the_average_and_failures_stop_the_eta() {
        use MigrationPhase::*;
        let moves = [
            mv("m1", "r2", 0, Copying, 250, Some(1000), 25),
            mv("m2", "r2", 0, Pending, 0, None, 0),
            mv("m3", "r2", 0, Failed, 0, Some(1000), 0),
        ];
        let r = rebalance(&moves, T0 + 10_000).unwrap();
        assert_eq!(r.percent, 8, "250 of 3 x 1000");
        assert_eq!(r.moves_failed, 1);
        assert_eq!(r.eta, None);
    }

    #[test]
    fn the_newest_unfinished_move_picks_the_ring() {
        use MigrationPhase::*;
        let moves = [
            mv("a", "r1", 0, Copying, 0, None, 0),
            mv("b", "r2", 9, Completed, 0, None, 100),
        ];
        assert_eq!(rebalance(&moves, T0).unwrap().target_ring, "r1");
    }
}
