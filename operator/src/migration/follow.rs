//! How often the driver looks at a move that waits on its nodes (copying, catching up): soon
//! after the move changed phase, then less and less often, never later than the phase machine
//! asks. A move's progress is then followed within a bounded delay without a fixed fast poll
//! (each look is a node call, and a changed progress one ShardMigration status write).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use ringshift_planner::Phase;

/// Delay of the first look after a phase change.
pub const FIRST: Duration = Duration::from_millis(50);
/// Longest delay between two looks.
pub const MAX: Duration = Duration::from_secs(2);

/// Delay before look number `looks` (0 = the first) since the last phase change: `FIRST`
/// doubling up to `MAX`.
pub fn delay(looks: u32) -> Duration {
    FIRST
        .checked_mul(1u32 << looks.min(16))
        .unwrap_or(MAX)
        .min(MAX)
}

/// The wait of a move in `phase` whose phase machine asked for `asked`, at look `looks`.
/// Only the phases that wait on node progress are followed this way; the others wait what
/// the phase machine asks (timers, retries, approvals).
pub fn wait(phase: Phase, asked: Duration, looks: u32) -> Duration {
    match phase {
        Phase::Copying | Phase::CatchingUp => delay(looks).min(asked),
        _ => asked,
    }
}

/// Looks per move since its last phase change, by migration UID.
#[derive(Default)]
pub struct Looks {
    by_move: Mutex<BTreeMap<String, (Phase, u32)>>,
}

impl Looks {
    /// Counts a look at move `uid` in `phase`; returns how many came before it in that phase.
    pub fn next(&self, uid: &str, phase: Phase) -> u32 {
        let mut m = self.by_move.lock().unwrap_or_else(|p| p.into_inner());
        let entry = m.entry(uid.to_string()).or_insert((phase, 0));
        if entry.0 != phase {
            *entry = (phase, 0);
        }
        let n = entry.1;
        entry.1 = entry.1.saturating_add(1);
        n
    }

    /// Forgets the moves not in `live` (finished or deleted).
    pub fn retain(&self, live: &std::collections::BTreeSet<String>) {
        self.by_move
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| live.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_fifty_ms_to_two_seconds() {
        let got: Vec<u64> = (0..8).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(got, vec![50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(delay(u32::MAX), MAX);
    }

    #[test]
    fn node_waits_follow_the_schedule_but_never_exceed_what_was_asked() {
        let asked = Duration::from_millis(1000);
        assert_eq!(wait(Phase::Copying, asked, 0), FIRST);
        assert_eq!(
            wait(Phase::CatchingUp, asked, 4),
            Duration::from_millis(800)
        );
        assert_eq!(wait(Phase::Copying, asked, 9), asked);
        // Timer waits (retention, approval) are the phase machine's own.
        let retention = Duration::from_secs(30);
        assert_eq!(wait(Phase::Cleanup, retention, 0), retention);
        assert_eq!(wait(Phase::Pending, asked, 0), asked);
    }

    #[test]
    fn looks_restart_at_each_phase_change() {
        let l = Looks::default();
        assert_eq!(l.next("m", Phase::Copying), 0);
        assert_eq!(l.next("m", Phase::Copying), 1);
        assert_eq!(l.next("m", Phase::Copying), 2);
        assert_eq!(l.next("m", Phase::CatchingUp), 0);
        assert_eq!(l.next("other", Phase::Copying), 0);
        l.retain(&["other".to_string()].into_iter().collect());
        assert_eq!(l.next("m", Phase::CatchingUp), 0, "forgotten");
        assert_eq!(l.next("other", Phase::Copying), 1);
    }
}
