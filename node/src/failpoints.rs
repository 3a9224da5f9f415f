//! Named fault-injection points that make rare interleavings of moves reachable on purpose
//! (tests only). Inert unless the node starts with `--failpoints` / `RINGSHIFT_NODE_FAILPOINTS`:
//! a comma-separated list of `name=value`. A disarmed node pays one atomic load per point.
//! Every hit is logged (`failpoint hit`, with the name), so a test can wait for it in the log.
//! Names and semantics are documented in node/README.md ("Failpoints").

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A drop waits this long before each of its clear chunks and before its final logged clear.
pub const SLOW_DROP_CHUNK: &str = "slow-drop-chunk";
/// The next N pulled batches (`Op::Apply`) fail in the writer after applying their first record,
/// as a storage read error mid-batch would.
pub const FAIL_APPLY: &str = "fail-apply";
/// A pull's ingestion unit waits this long after writing its tables, before registering them.
pub const PAUSE_INGEST_FINISH: &str = "pause-ingest-finish";
/// A pull's clear of its ranges (before a copy) waits this long before each of its chunks.
pub const SLOW_PULL_CLEAR: &str = "slow-pull-clear";

/// Every failpoint and whether its value is a duration (else a count).
const KNOWN: &[(&str, Kind)] = &[
    (SLOW_DROP_CHUNK, Kind::Delay),
    (FAIL_APPLY, Kind::Count),
    (PAUSE_INGEST_FINISH, Kind::Delay),
    (SLOW_PULL_CLEAR, Kind::Delay),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delay,
    Count,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailpointError {
    #[error(
        "unknown failpoint {0:?} (known: slow-drop-chunk, fail-apply, pause-ingest-finish, slow-pull-clear)"
    )]
    Unknown(String),
    #[error("failpoint {name}: bad value {value:?} ({expected})")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("failpoints were armed already")]
    AlreadyArmed,
}

enum Armed {
    Delay(Duration),
    /// Hits left that fail.
    Count(AtomicU64),
}

static ARMED: OnceLock<HashMap<&'static str, Armed>> = OnceLock::new();

/// Parses `name=value,...` (durations like `500ms`, `2s`; counts like `1`; a count without a
/// value means 1).
fn parse(spec: &str) -> Result<HashMap<&'static str, Armed>, FailpointError> {
    let mut out = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').unwrap_or((item, ""));
        let (name, value) = (name.trim(), value.trim());
        let Some((known, kind)) = KNOWN.iter().find(|(n, _)| *n == name) else {
            return Err(FailpointError::Unknown(name.to_string()));
        };
        let bad = |expected| FailpointError::BadValue {
            name: name.to_string(),
            value: value.to_string(),
            expected,
        };
        let armed = match kind {
            Kind::Delay => Armed::Delay(
                parse_duration(value).ok_or_else(|| bad("a duration such as 500ms or 2s"))?,
            ),
            Kind::Count if value.is_empty() => Armed::Count(AtomicU64::new(1)),
            Kind::Count => Armed::Count(AtomicU64::new(
                value.parse().map_err(|_| bad("a count such as 1"))?,
            )),
        };
        out.insert(*known, armed);
    }
    Ok(out)
}

fn parse_duration(v: &str) -> Option<Duration> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    v.strip_suffix('s')?.parse().ok().map(Duration::from_secs)
}

/// Arms the failpoints of `spec` for the life of the process (once, at startup).
pub fn arm(spec: &str) -> Result<(), FailpointError> {
    let parsed = parse(spec)?;
    if parsed.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        failpoints = spec,
        "failpoints armed: this node injects faults"
    );
    ARMED.set(parsed).map_err(|_| FailpointError::AlreadyArmed)
}

/// The delay of an armed delay failpoint (logged as a hit).
pub fn delay(name: &'static str) -> Option<Duration> {
    match ARMED.get()?.get(name)? {
        Armed::Delay(d) => {
            tracing::info!(
                failpoint = name,
                delay_ms = d.as_millis() as u64,
                "failpoint hit"
            );
            Some(*d)
        }
        Armed::Count(_) => None,
    }
}

/// Waits out an armed delay failpoint (nothing when disarmed).
pub async fn sleep(name: &'static str) {
    if let Some(d) = delay(name) {
        tokio::time::sleep(d).await;
    }
}

/// True if an armed count failpoint has hits left (it uses one up and logs it).
pub fn fail(name: &'static str) -> bool {
    let Some(Armed::Count(left)) = ARMED.get().and_then(|m| m.get(name)) else {
        return false;
    };
    let took = left
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok();
    if took {
        tracing::info!(failpoint = name, "failpoint hit");
    }
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_durations_and_counts() {
        let m = parse("slow-drop-chunk=500ms, fail-apply=2,pause-ingest-finish=3s").unwrap();
        assert!(matches!(m[SLOW_DROP_CHUNK], Armed::Delay(d) if d == Duration::from_millis(500)));
        assert!(matches!(&m[FAIL_APPLY], Armed::Count(n) if n.load(Ordering::Relaxed) == 2));
        assert!(matches!(m[PAUSE_INGEST_FINISH], Armed::Delay(d) if d == Duration::from_secs(3)));
        assert!(
            matches!(&parse("fail-apply").unwrap()[FAIL_APPLY], Armed::Count(n) if n.load(Ordering::Relaxed) == 1)
        );
        assert!(parse("").unwrap().is_empty());
        assert!(matches!(parse("nope=1"), Err(FailpointError::Unknown(_))));
        assert!(matches!(
            parse("slow-drop-chunk=fast"),
            Err(FailpointError::BadValue { .. })
        ));
        // Disarmed (never armed in unit tests): no effect.
        assert!(!fail(FAIL_APPLY));
        assert!(delay(SLOW_DROP_CHUNK).is_none());
    }
}
