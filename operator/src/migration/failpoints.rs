//! Named crash points at the driver's step boundaries, for crash-safety tests.
//!
//! Inert unless the process starts with `RINGSHIFT_FAILPOINTS` set: a comma-separated list of
//! `name` (crash at the first hit), `name:N` (crash at the N-th hit) or `name:pause=MS` (at every
//! hit, hold the driver there for MS milliseconds and go on: a window in which a test can
//! inject a fault at an exact step, even when it sees the step late), or, for the points listed
//! in [`FALLIBLE`], `name:fail=N` (the call at that point fails, as if the node had not
//! answered, N times for each key the point counts by; see [`fails`]). A crash logs the name and
//! ends the process at once with status 137, as SIGKILL would: no graceful shutdown, no lease
//! release, no further API or node call. The crash-safety test (`e2e/tests/failpoints.rs`) arms
//! each of [`ALL`] in turn and checks that the next leader resumes with nothing lost and never
//! two owners.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that arms failpoints.
pub const ENV: &str = "RINGSHIFT_FAILPOINTS";

/// Exit status of a process that hit a failpoint (128 + SIGKILL, like a killed process).
pub const EXIT_STATUS: i32 = 137;

/// Every failpoint, with where it sits. Names are stable: tests and runbooks use them.
pub const ALL: &[(&str, &str)] = &[
    (
        "placement.initial",
        "after the first placement is written, before any node is told",
    ),
    (
        "sync.pushed",
        "after a committed placement reached lagging nodes, before their acks are recorded",
    ),
    (
        "replan.written",
        "after a re-plan (new target ring) is written, before its ShardMigrations exist",
    ),
    (
        "moves.created",
        "after the ShardMigrations of a plan are created, before any is driven",
    ),
    (
        "persisted.Copying",
        "after status says Copying, before the target is asked to pull",
    ),
    (
        "pull.started",
        "after the target accepted the pull, before the next observation",
    ),
    (
        "persisted.CatchingUp",
        "after status says CatchingUp (copy done, or a cutover was aborted)",
    ),
    (
        "persisted.CuttingOver",
        "after status says CuttingOver, before the cutover record is written",
    ),
    (
        "cutover.recorded",
        "after the Committing record is written, before the source is fenced",
    ),
    (
        "cutover.fenced",
        "after the source is fenced, before waiting for the target to apply up to the fence",
    ),
    (
        "cutover.drained",
        "after the target applied up to the fence, before the commit write",
    ),
    (
        "cutover.committed",
        "after the commit write, before any node is told",
    ),
    (
        "cutover.target-serving",
        "after the target took the new placement, before the other nodes are told",
    ),
    (
        "cutover.pushed",
        "after every node was told, before their acks are recorded",
    ),
    (
        "cutover.acked",
        "after the acks are recorded, before status says Cleanup",
    ),
    (
        "abort.recorded",
        "after an abort is recorded in ShardPlacement status, before the source is unfenced",
    ),
    (
        "abort.unfenced",
        "after the source is unfenced, before status says CatchingUp again",
    ),
    (
        "persisted.Cleanup",
        "after status says Cleanup (committed), before acks and the drop",
    ),
    (
        "drop.before",
        "in Cleanup, just before the source is asked to drop its copy",
    ),
    (
        "drop.done",
        "after the source dropped its copy, before status says Completed",
    ),
    ("persisted.Completed", "after status says Completed"),
    ("persisted.Cancelled", "after status says Cancelled"),
    (
        "push.fail",
        "before a placement is pushed to a node (`push.fail:fail=N`: the first N pushes of each \
         epoch to each member fail as if the node had not answered)",
    ),
];

/// The points that can be armed with `fail=N`: the call they guard then fails without being
/// made.
pub const FALLIBLE: &[&str] = &["push.fail"];

/// A failpoint specification that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "{ENV}: unknown failpoint {0:?} (known: see `ringshift_operator::migration::failpoints::ALL`)"
    )]
    Unknown(String),
    #[error("{ENV}: {0:?}: the hit count must be a whole number of at least 1")]
    Count(String),
    #[error("{ENV}: {0:?}: a pause is `pause=MS` with MS a whole number of milliseconds")]
    Pause(String),
    #[error(
        "{ENV}: {0:?}: a failure is `fail=N` with N a whole number of at least 1, on a point that \
         can fail ({FALLIBLE:?})"
    )]
    Fail(String),
}

/// What an armed failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Exit at the N-th hit.
    Crash(u32),
    /// Hold the driver this long at every hit, then go on.
    Pause(std::time::Duration),
    /// Fail the guarded call at the first N hits of each key (see [`fails`]).
    Fail(u32),
}

/// Parses a specification into `name -> action`.
pub fn parse(spec: &str) -> Result<BTreeMap<&'static str, Action>, SpecError> {
    let mut out = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, action) = match item.rsplit_once(':') {
            Some((n, a)) if a.trim().starts_with("fail=") => {
                let n = n.trim();
                let count: u32 = a.trim()["fail=".len()..]
                    .parse()
                    .ok()
                    .filter(|c| *c >= 1 && FALLIBLE.contains(&n))
                    .ok_or_else(|| SpecError::Fail(item.to_string()))?;
                (n, Action::Fail(count))
            }
            Some((n, a)) if a.trim().starts_with("pause=") => {
                let ms: u64 = a.trim()["pause=".len()..]
                    .parse()
                    .map_err(|_| SpecError::Pause(item.to_string()))?;
                (
                    n.trim(),
                    Action::Pause(std::time::Duration::from_millis(ms)),
                )
            }
            Some((n, c)) => {
                let c: u32 = c
                    .trim()
                    .parse()
                    .ok()
                    .filter(|c| *c >= 1)
                    .ok_or_else(|| SpecError::Count(item.to_string()))?;
                (n.trim(), Action::Crash(c))
            }
            None => (item, Action::Crash(1)),
        };
        let known = ALL
            .iter()
            .map(|(n, _)| *n)
            .find(|n| *n == name)
            .ok_or_else(|| SpecError::Unknown(name.to_string()))?;
        out.insert(known, action);
    }
    Ok(out)
}

/// Armed failpoints of this process, with their hit counters.
#[derive(Debug, Default)]
pub struct Armed {
    points: BTreeMap<&'static str, (Action, AtomicU32)>,
    /// Hits of `fail=N` points by key.
    keyed: std::sync::Mutex<BTreeMap<(&'static str, String), u32>>,
}

impl Armed {
    pub fn new(spec: BTreeMap<&'static str, Action>) -> Armed {
        Armed {
            points: spec
                .into_iter()
                .map(|(n, a)| (n, (a, AtomicU32::new(0))))
                .collect(),
            keyed: Default::default(),
        }
    }

    /// Counts a hit of `name`; the action when this hit is the one it applies to.
    pub fn fires(&self, name: &str) -> Option<Action> {
        self.fires_keyed(name, "")
    }

    /// Like [`Armed::fires`]; a `fail=N` point fires at the first N hits of each `key`.
    pub fn fires_keyed(&self, name: &str, key: &str) -> Option<Action> {
        let (&name, (action, hits)) = self.points.get_key_value(name)?;
        let hit = hits.fetch_add(1, Ordering::SeqCst) + 1;
        match action {
            Action::Crash(n) => (hit == *n).then_some(*action),
            Action::Pause(_) => Some(*action),
            Action::Fail(n) => {
                let mut keyed = self.keyed.lock().unwrap_or_else(|p| p.into_inner());
                let count = keyed.entry((name, key.to_string())).or_insert(0);
                *count += 1;
                (*count <= *n).then_some(*action)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Reads [`ENV`] once. The operator calls this at start so a typo stops it with a clear error
/// instead of testing nothing.
pub fn init() -> Result<(), SpecError> {
    let spec = std::env::var(ENV).unwrap_or_default();
    let armed = Armed::new(parse(&spec)?);
    if !armed.is_empty() {
        tracing::warn!(failpoints = %spec, "failpoints armed: this process will crash on purpose");
    }
    let _ = ARMED.set(armed);
    Ok(())
}

/// Marks the step boundary `name`; ends the process when it is armed and this is its hit.
pub fn hit(name: &'static str) {
    let _ = fails(name, "");
}

/// Marks the point `name` before a call that may fail, counted by `key` (e.g. the member and
/// the epoch of a placement push); true when the caller must fail the call without making it
/// (`name:fail=N` and this is one of the first N hits of `key`). A crash or a pause armed
/// there acts as at [`hit`].
pub fn fails(name: &'static str, key: &str) -> bool {
    debug_assert!(
        ALL.iter().any(|(n, _)| *n == name),
        "unlisted failpoint {name}"
    );
    let Some(armed) = ARMED.get() else {
        return false;
    };
    let Some(action) = armed.fires_keyed(name, key) else {
        return false;
    };
    if let Action::Fail(_) = action {
        tracing::warn!(failpoint = name, key, "failpoint hit: failing the call");
        return true;
    }
    if let Action::Pause(d) = action {
        tracing::warn!(
            failpoint = name,
            pause_ms = d.as_millis() as u64,
            "failpoint hit: pausing"
        );
        // The driver is async; block only this worker, as a slow step would.
        tokio::task::block_in_place(|| std::thread::sleep(d));
        return false;
    }
    tracing::error!(
        failpoint = name,
        "failpoint hit: exiting with status {EXIT_STATUS}"
    );
    eprintln!("ringshift failpoint {name} hit: exiting with status {EXIT_STATUS}");
    std::process::exit(EXIT_STATUS);
}

/// The failpoint after a status persist into `phase`, if that phase has one.
pub fn after_persist(phase: ringshift_planner::Phase) -> Option<&'static str> {
    use ringshift_planner::Phase;
    match phase {
        Phase::Copying => Some("persisted.Copying"),
        Phase::CatchingUp => Some("persisted.CatchingUp"),
        Phase::CuttingOver => Some("persisted.CuttingOver"),
        Phase::Cleanup => Some("persisted.Cleanup"),
        Phase::Completed => Some("persisted.Completed"),
        Phase::Cancelled => Some("persisted.Cancelled"),
        Phase::Pending | Phase::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_planner::Phase;

    #[test]
    fn names_are_unique_and_have_no_separators() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(names.iter().all(|n| !n.contains(',') && !n.contains(':')));
    }

    #[test]
    fn parses_names_and_counts() {
        let p = parse(" cutover.fenced, drop.before:3 ,").unwrap();
        assert_eq!(p.get("cutover.fenced"), Some(&Action::Crash(1)));
        assert_eq!(p.get("drop.before"), Some(&Action::Crash(3)));
        let p = parse("cutover.recorded:pause=800").unwrap();
        assert_eq!(
            p.get("cutover.recorded"),
            Some(&Action::Pause(std::time::Duration::from_millis(800)))
        );
        assert!(matches!(
            parse("cutover.recorded:pause=soon"),
            Err(SpecError::Pause(_))
        ));
        assert!(parse("").unwrap().is_empty());
        assert_eq!(
            parse("cutover.fence"),
            Err(SpecError::Unknown("cutover.fence".into()))
        );
        assert!(matches!(parse("drop.before:0"), Err(SpecError::Count(_))));
        assert!(matches!(parse("drop.before:x"), Err(SpecError::Count(_))));
    }

    #[test]
    fn fires_exactly_on_the_armed_hit() {
        let armed = Armed::new(parse("pull.started:3,drop.before:pause=5").unwrap());
        assert!(armed.fires("pull.started").is_none());
        assert!(armed.fires("cutover.fenced").is_none());
        assert!(armed.fires("pull.started").is_none());
        assert_eq!(armed.fires("pull.started"), Some(Action::Crash(3)));
        assert!(armed.fires("pull.started").is_none(), "only once");
        assert!(Armed::default().fires("pull.started").is_none());
        assert!(matches!(armed.fires("drop.before"), Some(Action::Pause(_))));
        assert!(
            matches!(armed.fires("drop.before"), Some(Action::Pause(_))),
            "a pause holds every hit"
        );
    }

    #[test]
    fn a_fallible_point_fails_the_first_n_hits_of_each_key() {
        let p = parse("push.fail:fail=2").unwrap();
        assert_eq!(p.get("push.fail"), Some(&Action::Fail(2)));
        assert!(FALLIBLE.iter().all(|f| ALL.iter().any(|(n, _)| n == f)));
        let armed = Armed::new(p);
        for key in ["node-0@3", "node-1@3", "node-0@4"] {
            assert_eq!(armed.fires_keyed("push.fail", key), Some(Action::Fail(2)));
            assert_eq!(armed.fires_keyed("push.fail", key), Some(Action::Fail(2)));
            assert!(armed.fires_keyed("push.fail", key).is_none(), "{key}");
        }
        assert!(matches!(parse("push.fail:fail=0"), Err(SpecError::Fail(_))));
        assert!(matches!(parse("push.fail:fail=x"), Err(SpecError::Fail(_))));
        assert!(
            matches!(parse("cutover.fenced:fail=1"), Err(SpecError::Fail(_))),
            "only a point that guards a call can fail it"
        );
        assert_eq!(
            parse("push.fail").unwrap().get("push.fail"),
            Some(&Action::Crash(1))
        );
    }

    #[test]
    fn every_persisted_phase_failpoint_is_listed() {
        for phase in Phase::ALL {
            if let Some(n) = after_persist(phase) {
                assert!(ALL.iter().any(|(m, _)| *m == n), "{n}");
            }
        }
    }
}
