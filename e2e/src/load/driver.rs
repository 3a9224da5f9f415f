//! The load driver: concurrent clients writing versioned values through any node and reading
//! them back, checked by the [`Ledger`] as they go and once more at the end.

use super::checker::{
    Ledger, OpKind, OpRecord, OutcomeClass, Violation, decode_version, encode_value,
};
use super::stats::{Stats, StatsSnapshot};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where the client finds node addresses (`ip:port`).
#[derive(Debug, Clone)]
pub enum Addrs {
    /// A fixed list.
    Static(Vec<String>),
    /// A file with one address per line, re-read on every reconnect (pods come and go).
    File(PathBuf),
}

impl Addrs {
    fn resolve(&self) -> Vec<String> {
        match self {
            Addrs::Static(v) => v.clone(),
            Addrs::File(p) => std::fs::read_to_string(p)
                .map(|s| {
                    s.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addrs: Addrs,
    pub password: Option<String>,
    pub workers: usize,
    pub keys_per_worker: usize,
    pub duration: Duration,
    /// Share of operations that are reads, in percent.
    pub read_percent: u8,
    pub value_size: usize,
    pub op_timeout: Duration,
    /// Total operations per second over all workers; `None` is as fast as possible.
    pub rate: Option<u64>,
    /// Key prefix, so that several runs can share a cluster.
    pub prefix: String,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            addrs: Addrs::Static(vec!["127.0.0.1:6379".into()]),
            password: None,
            workers: 8,
            keys_per_worker: 500,
            duration: Duration::from_secs(10),
            read_percent: 30,
            value_size: 32,
            op_timeout: Duration::from_secs(5),
            rate: None,
            prefix: "load".into(),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub stats: StatsSnapshot,
    /// Keys verified at the end.
    pub keys_verified: usize,
    /// Keys that could not be read at the end (not counted as lost).
    pub keys_unverifiable: usize,
    /// Acknowledged writes missing at the end or during the run.
    pub lost_writes: usize,
    /// Reads during the run that returned a value older than the last acknowledged one.
    pub stale_reads: usize,
    /// Values that were never written or could not be parsed.
    pub phantoms: usize,
    /// The first few violations, for people.
    pub violations: Vec<String>,
}

impl Report {
    /// True when nothing acknowledged was lost and nothing impossible was seen.
    pub fn is_clean(&self) -> bool {
        self.lost_writes == 0 && self.stale_reads == 0 && self.phantoms == 0
    }
}

/// A handle to stop a run early.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One client connection, reconnected (to the next address) after any error.
struct Client {
    addrs: Addrs,
    password: Option<String>,
    next: usize,
    conn: Option<redis::aio::MultiplexedConnection>,
    timeout: Duration,
    /// The node the current (or last attempted) connection goes to: the coordinator of the
    /// client's operations.
    addr: String,
}

#[derive(Debug, PartialEq)]
enum OpError {
    /// The server answered with an error: the command may or may not have been applied, and
    /// that was settled when the answer was sent.
    Ambiguous(String),
    /// No answer (timeout, connection lost), or an answer saying the outcome is still open: the
    /// request may take effect at any later moment.
    NoAnswer(String),
}

/// Classifies an error reply. A coordinator whose forward to the owner failed after sending
/// says the command "may or may not have been applied": the forwarded request can still be
/// sitting in the owner's socket (a stopped or slow owner) and land later, even after a newer
/// write was acknowledged, so it is as open as an unanswered one.
fn classify_error_reply(text: String) -> OpError {
    if text.contains("may or may not have been applied") {
        OpError::NoAnswer(text)
    } else {
        OpError::Ambiguous(text)
    }
}

/// The outcome class of a failed operation, for its history: errors whose code says the
/// command was not applied (node/README.md's table), or indeterminate. (The ledger still
/// treats every failed write as possibly applied: this only labels the history.)
fn failure_class(e: &OpError) -> OutcomeClass {
    let OpError::Ambiguous(text) = e else {
        return OutcomeClass::Indeterminate;
    };
    // The redis crate renders a server error as `<code or kind>: <detail>`, codes it does not
    // know in quotes (`"RINGMOVED": ...`), known ones by kind (`TryAgain: ...`).
    let code: String = text
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    let not_applied = [
        "tryagain",
        "clusterdown",
        "crossslot",
        "ringmoved",
        "staleepoch",
        "deadline",
        "degraded",
        "noauth",
    ];
    if not_applied.contains(&code.as_str()) {
        OutcomeClass::FailedNotApplied
    } else {
        OutcomeClass::Indeterminate
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Client {
    async fn connection(&mut self) -> Result<&mut redis::aio::MultiplexedConnection, OpError> {
        if self.conn.is_none() {
            let addrs = self.addrs.resolve();
            if addrs.is_empty() {
                return Err(OpError::Ambiguous("no node addresses".into()));
            }
            let addr = &addrs[self.next % addrs.len()];
            self.next = self.next.wrapping_add(1);
            self.addr.clone_from(addr);
            let url = match &self.password {
                Some(p) => format!("redis://:{p}@{addr}/"),
                None => format!("redis://{addr}/"),
            };
            let client = redis::Client::open(url.as_str())
                .map_err(|e| OpError::Ambiguous(format!("bad address {addr}: {e}")))?;
            let conn =
                tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| OpError::Ambiguous(format!("connect to {addr} timed out")))?
                    .map_err(|e| OpError::Ambiguous(format!("connect to {addr}: {e}")))?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| OpError::Ambiguous("no connection".into()))
    }

    async fn run<T: redis::FromRedisValue>(&mut self, cmd: redis::Cmd) -> Result<T, OpError> {
        let timeout = self.timeout;
        let conn = self.connection().await?;
        let res = tokio::time::timeout(timeout, cmd.query_async::<T>(conn)).await;
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.conn = None;
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    Err(OpError::NoAnswer(e.to_string()))
                } else {
                    Err(classify_error_reply(e.to_string()))
                }
            }
            Err(_) => {
                self.conn = None;
                Err(OpError::NoAnswer("timed out".into()))
            }
        }
    }
}

/// A tiny deterministic generator (xorshift64*), so runs need no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn key_name(prefix: &str, worker: usize, i: usize) -> String {
    format!("{prefix}:w{worker}:k{i}")
}

/// What one worker knew at the end of the load phase.
pub struct WorkerOutcome {
    ledger: Ledger,
    /// Violations seen during the run, each with the key's history at that moment.
    violations: Vec<(Violation, String)>,
}

/// The ledgers of a finished load phase, to be verified by [`finish`].
pub struct Outcomes(Vec<WorkerOutcome>);

async fn worker(
    id: usize,
    cfg: Arc<LoadConfig>,
    stats: Arc<Stats>,
    stop: StopFlag,
) -> WorkerOutcome {
    let mut client = Client {
        addrs: cfg.addrs.clone(),
        password: cfg.password.clone(),
        next: id,
        conn: None,
        timeout: cfg.op_timeout,
        addr: String::new(),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut ledger = Ledger::default();
    let mut violations = Vec::new();
    let deadline = Instant::now() + cfg.duration;
    let pace = cfg
        .rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs_f64(cfg.workers as f64 / r as f64));
    let mut last_ok = Instant::now();
    let mut next_at = Instant::now();
    while Instant::now() < deadline && !stop.is_stopped() {
        if let Some(p) = pace {
            tokio::time::sleep_until(next_at.into()).await;
            next_at += p;
        }
        let key = key_name(
            &cfg.prefix,
            id,
            (rng.next() as usize) % cfg.keys_per_worker.max(1),
        );
        let is_read = (rng.next() % 100) < u64::from(cfg.read_percent);
        let started = Instant::now();
        let start_ms = unix_ms();
        let ok = if is_read {
            let res = client
                .run::<Option<String>>(redis::cmd("GET").arg(&key).clone())
                .await;
            let (found, class, error) = match &res {
                Ok(v) => (v.clone(), OutcomeClass::Acked, None),
                Err(e @ (OpError::Ambiguous(t) | OpError::NoAnswer(t))) => {
                    (None, failure_class(e), Some(t.clone()))
                }
            };
            ledger.record(
                &key,
                OpRecord {
                    op: OpKind::Get { found },
                    class,
                    start_ms,
                    end_ms: unix_ms(),
                    coordinator: client.addr.clone(),
                    error,
                },
            );
            match res {
                Ok(v) => {
                    if let Some(viol) = ledger.check(&key, v.as_deref()) {
                        stats.violation();
                        let history = ledger.explain(&key);
                        violations.push((viol, history));
                    }
                    stats.read_ok();
                    true
                }
                Err(OpError::Ambiguous(e) | OpError::NoAnswer(e)) => {
                    stats.read_failed(&e);
                    false
                }
            }
        } else {
            let version = ledger.next_version(&key);
            let value = encode_value(version, id, cfg.value_size);
            let res = client
                .run::<()>(redis::cmd("SET").arg(&key).arg(&value).clone())
                .await;
            let (class, error) = match &res {
                Ok(()) => (OutcomeClass::Acked, None),
                Err(e @ (OpError::Ambiguous(t) | OpError::NoAnswer(t))) => {
                    (failure_class(e), Some(t.clone()))
                }
            };
            ledger.record(
                &key,
                OpRecord {
                    op: OpKind::Set { version },
                    class,
                    start_ms,
                    end_ms: unix_ms(),
                    coordinator: client.addr.clone(),
                    error,
                },
            );
            match res {
                Ok(()) => {
                    ledger.acked(&key, version);
                    stats.write_acked();
                    true
                }
                Err(OpError::Ambiguous(e)) => {
                    ledger.maybe_applied(&key, version);
                    stats.write_failed(&e);
                    false
                }
                Err(OpError::NoAnswer(e)) => {
                    ledger.pending(&key, version);
                    stats.write_failed(&e);
                    false
                }
            }
        };
        let now = Instant::now();
        stats.latency(now - started);
        if ok {
            stats.stall(now - last_ok);
            last_ok = now;
        } else {
            // Back off a little so a down node is not hammered.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    WorkerOutcome { ledger, violations }
}

/// Reads every written key back (retrying transient errors) and checks it. Each violation
/// comes with the key's history and the final read that found it.
async fn verify(
    cfg: &LoadConfig,
    outcomes: &[WorkerOutcome],
) -> (usize, usize, Vec<(Violation, String)>) {
    let mut client = Client {
        addrs: cfg.addrs.clone(),
        password: cfg.password.clone(),
        next: 0,
        conn: None,
        timeout: cfg.op_timeout,
        addr: String::new(),
    };
    let (mut verified, mut unverifiable, mut violations) = (0, 0, Vec::new());
    for out in outcomes {
        for key in out.ledger.keys() {
            let mut result = None;
            let mut start_ms = unix_ms();
            for attempt in 0..20u32 {
                start_ms = unix_ms();
                match client
                    .run::<Option<String>>(redis::cmd("GET").arg(key).clone())
                    .await
                {
                    Ok(v) => {
                        result = Some(v);
                        break;
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await
                    }
                }
            }
            match result {
                Some(v) => {
                    verified += 1;
                    if let Some(viol) = out.ledger.check(key, v.as_deref()) {
                        let read = OpRecord {
                            op: OpKind::Get { found: v },
                            class: OutcomeClass::Acked,
                            start_ms,
                            end_ms: unix_ms(),
                            coordinator: client.addr.clone(),
                            error: None,
                        };
                        let history = format!("{}\n  final check: {read}", out.ledger.explain(key));
                        violations.push((viol, history));
                    }
                }
                None => unverifiable += 1,
            }
        }
    }
    (verified, unverifiable, violations)
}

/// Runs the load until `cfg.duration` passes or `stop` is set, then verifies every key.
pub async fn run(cfg: LoadConfig, stats: Arc<Stats>, stop: StopFlag) -> Report {
    let outcomes = drive(&cfg, stats.clone(), stop).await;
    finish(&cfg, &stats, outcomes).await
}

/// The load phase alone: workers write and read until the duration passes or `stop` is set.
pub async fn drive(cfg: &LoadConfig, stats: Arc<Stats>, stop: StopFlag) -> Outcomes {
    let cfg = Arc::new(cfg.clone());
    let mut handles = Vec::new();
    for id in 0..cfg.workers {
        handles.push(tokio::spawn(worker(
            id,
            cfg.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    let mut outcomes = Vec::new();
    for h in handles {
        if let Ok(o) = h.await {
            outcomes.push(o);
        }
    }
    Outcomes(outcomes)
}

/// The verification phase: reads every written key back and builds the report.
pub async fn finish(cfg: &LoadConfig, stats: &Stats, outcomes: Outcomes) -> Report {
    let outcomes = outcomes.0;
    let (keys_verified, keys_unverifiable, final_violations) = verify(cfg, &outcomes).await;
    let mut report = Report {
        stats: stats.snapshot(),
        keys_verified,
        keys_unverifiable,
        lost_writes: 0,
        stale_reads: 0,
        phantoms: 0,
        violations: Vec::new(),
    };
    let during = outcomes.iter().flat_map(|o| o.violations.iter());
    for (v, history) in during {
        match v {
            Violation::LostWrite { .. } => report.stale_reads += 1,
            _ => report.phantoms += 1,
        }
        if report.violations.len() < 20 {
            report
                .violations
                .push(format!("during run: {v}\n{history}"));
        }
    }
    for (v, history) in &final_violations {
        match v {
            Violation::LostWrite { .. } => report.lost_writes += 1,
            _ => report.phantoms += 1,
        }
        if report.violations.len() < 40 {
            report
                .violations
                .push(format!("at the end: {v}\n{history}"));
        }
    }
    report
}

/// Parses the version stored in a value, for tools that inspect keys directly.
pub fn version_of(value: &str) -> Option<u64> {
    decode_version(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_whose_outcome_is_still_open_counts_as_unanswered() {
        let open = classify_error_reply(
            "ERR forwarding failed, the command may or may not have been applied: timed out".into(),
        );
        assert!(matches!(open, OpError::NoAnswer(_)));
        let settled = classify_error_reply("TRYAGAIN range is moving".into());
        assert!(matches!(settled, OpError::Ambiguous(_)));
    }

    #[test]
    fn failures_are_labelled_not_applied_or_indeterminate() {
        let class = |t: &str| failure_class(&OpError::Ambiguous(t.into()));
        assert_eq!(
            class("TryAgain: range fenced for a cutover"),
            OutcomeClass::FailedNotApplied
        );
        assert_eq!(
            class("\"DEADLINE\": forwarded command not applied"),
            OutcomeClass::FailedNotApplied
        );
        assert_eq!(
            class("ClusterDown: owner unreachable"),
            OutcomeClass::FailedNotApplied
        );
        assert_eq!(
            class("ResponseError: storage failure"),
            OutcomeClass::Indeterminate
        );
        assert_eq!(
            failure_class(&OpError::NoAnswer("timed out".into())),
            OutcomeClass::Indeterminate
        );
    }
}
