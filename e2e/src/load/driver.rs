//! The load driver: concurrent clients writing versioned values through any node and reading
//! them back, checked by the [`Ledger`] as they go and once more at the end.

use super::checker::{
    Ledger, OpKind, OpRecord, OutcomeClass, Violation, decode_version, encode_value,
};
use super::collections::{FieldLedger, Kind, ListLedger, ListOutcome};
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
    /// What the workers write: key `i` of a worker holds `kinds[i % kinds.len()]`.
    pub kinds: Vec<Kind>,
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
            kinds: vec![Kind::String],
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

fn key_name(prefix: &str, worker: usize, kind: Kind, i: usize) -> String {
    format!("{prefix}:w{worker}:{}{i}", kind.tag())
}

/// Fields (hash) or members (sorted set) per key.
const FIELDS_PER_KEY: u64 = 8;
/// Elements a list keeps: `LTRIM key -LIST_KEEP -1`, one list write in `TRIM_EVERY`.
const LIST_KEEP: usize = 32;
const TRIM_EVERY: u64 = 8;

/// What one worker knew at the end of the load phase.
pub struct WorkerOutcome {
    ledger: Ledger,
    hashes: FieldLedger,
    zsets: FieldLedger,
    lists: ListLedger,
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
    let mut coll = Collections {
        hashes: FieldLedger::default(),
        zsets: FieldLedger::default(),
        lists: ListLedger::new(LIST_KEEP),
    };
    let mut violations = Vec::new();
    let kinds = if cfg.kinds.is_empty() {
        vec![Kind::String]
    } else {
        cfg.kinds.clone()
    };
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
        let i = (rng.next() as usize) % cfg.keys_per_worker.max(1);
        let kind = kinds[i % kinds.len()];
        let key = key_name(&cfg.prefix, id, kind, i);
        let is_read = (rng.next() % 100) < u64::from(cfg.read_percent);
        let started = Instant::now();
        let start_ms = unix_ms();
        let ok = if kind != Kind::String {
            let pick = rng.next();
            collection_op(
                &mut client,
                &mut coll,
                Op {
                    kind,
                    key: &key,
                    is_read,
                    pick,
                    writer: id,
                    value_size: cfg.value_size,
                },
                &stats,
                &mut violations,
            )
            .await
        } else if is_read {
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
                    stats.kind_acked(Kind::String);
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
    WorkerOutcome {
        ledger,
        hashes: coll.hashes,
        zsets: coll.zsets,
        lists: coll.lists,
        violations,
    }
}

/// The ledgers of a worker's collection keys.
struct Collections {
    hashes: FieldLedger,
    zsets: FieldLedger,
    lists: ListLedger,
}

/// One collection operation to run.
struct Op<'a> {
    kind: Kind,
    key: &'a str,
    is_read: bool,
    /// A random number choosing the field, member or list operation.
    pick: u64,
    writer: usize,
    value_size: usize,
}

/// How a failed or answered operation is labelled, and what a list ledger makes of it.
fn outcome_of<T>(res: &Result<T, OpError>) -> (OutcomeClass, Option<String>, ListOutcome) {
    match res {
        Ok(_) => (OutcomeClass::Acked, None, ListOutcome::Acked),
        Err(e @ OpError::Ambiguous(t)) => (failure_class(e), Some(t.clone()), ListOutcome::Maybe),
        Err(e @ OpError::NoAnswer(t)) => (failure_class(e), Some(t.clone()), ListOutcome::Pending),
    }
}

/// A sorted-set score written by this load: a whole version (`7`, or `7.0` in some replies).
fn parse_score(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| {
        s.parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
            .map(|f| f as u64)
    })
}

/// The version a hash field's value or a member's score holds.
fn field_version(kind: Kind, raw: &str) -> Option<u64> {
    match kind {
        Kind::Zset => parse_score(raw),
        _ => decode_version(raw),
    }
}

/// Runs one hash, sorted-set or list operation and records it; true when it was answered.
async fn collection_op(
    client: &mut Client,
    coll: &mut Collections,
    op: Op<'_>,
    stats: &Stats,
    violations: &mut Vec<(Violation, String)>,
) -> bool {
    let start_ms = unix_ms();
    let key = op.key;
    if op.kind == Kind::List {
        return list_op(client, &mut coll.lists, op, stats, violations).await;
    }
    let (ledger, field, read_cmd, write_cmd) = if op.kind == Kind::Hash {
        let f = format!("f{}", op.pick % FIELDS_PER_KEY);
        (&mut coll.hashes, f, "HGET", "HSET")
    } else {
        let m = format!("m{}", op.pick % FIELDS_PER_KEY);
        (&mut coll.zsets, m, "ZSCORE", "ZADD")
    };
    if op.is_read {
        let res = client
            .run::<Option<String>>(redis::cmd(read_cmd).arg(key).arg(&field).clone())
            .await;
        let (class, error, _) = outcome_of(&res);
        let shown = match &res {
            Ok(Some(v)) => v.chars().take(24).collect(),
            Ok(None) => "nil".to_string(),
            Err(_) => "?".to_string(),
        };
        ledger.record(
            key,
            &field,
            OpRecord {
                op: OpKind::Command(format!("{read_cmd} {field} -> {shown}")),
                class,
                start_ms,
                end_ms: unix_ms(),
                coordinator: client.addr.clone(),
                error,
            },
        );
        match res {
            Ok(v) => {
                let viol = match v.as_deref().map(|raw| (raw, field_version(op.kind, raw))) {
                    Some((raw, None)) => Some(Violation::Garbled {
                        key: format!("{key} {field}"),
                        value: raw.chars().take(64).collect(),
                    }),
                    Some((_, Some(n))) => ledger.check_field(key, &field, Some(n)),
                    None => ledger.check_field(key, &field, None),
                };
                if let Some(viol) = viol {
                    stats.violation();
                    violations.push((viol, ledger.explain(key, &field)));
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
        let version = ledger.next_version(key, &field);
        let cmd = if op.kind == Kind::Hash {
            redis::cmd("HSET")
                .arg(key)
                .arg(&field)
                .arg(encode_value(version, op.writer, op.value_size))
                .clone()
        } else {
            redis::cmd("ZADD").arg(key).arg(version).arg(&field).clone()
        };
        let res = client.run::<()>(cmd).await;
        let (class, error, outcome) = outcome_of(&res);
        ledger.record(
            key,
            &field,
            OpRecord {
                op: OpKind::Command(format!("{write_cmd} {field} v{version}")),
                class,
                start_ms,
                end_ms: unix_ms(),
                coordinator: client.addr.clone(),
                error,
            },
        );
        match (res, outcome) {
            (Ok(()), _) => {
                ledger.acked(key, &field, version);
                stats.kind_acked(op.kind);
                true
            }
            (Err(OpError::Ambiguous(e) | OpError::NoAnswer(e)), outcome) => {
                if outcome == ListOutcome::Pending {
                    ledger.pending(key, &field, version);
                } else {
                    ledger.maybe_applied(key, &field, version);
                }
                stats.write_failed(&e);
                false
            }
        }
    }
}

/// `RPUSH key <version>`, one write in [`TRIM_EVERY`] an `LTRIM key -keep -1`, or a read of
/// the whole list (`LRANGE key 0 -1`) checked against what was acknowledged so far.
async fn list_op(
    client: &mut Client,
    lists: &mut ListLedger,
    op: Op<'_>,
    stats: &Stats,
    violations: &mut Vec<(Violation, String)>,
) -> bool {
    let start_ms = unix_ms();
    let key = op.key;
    let record = |lists: &mut ListLedger, text: String, class, error, addr: &str| {
        lists.record(
            key,
            OpRecord {
                op: OpKind::Command(text),
                class,
                start_ms,
                end_ms: unix_ms(),
                coordinator: addr.to_string(),
                error,
            },
        );
    };
    if op.is_read {
        let res = client
            .run::<Vec<String>>(redis::cmd("LRANGE").arg(key).arg(0).arg(-1).clone())
            .await;
        let (class, error, _) = outcome_of(&res);
        let shown = match &res {
            Ok(v) => format!("LRANGE -> {}", summarize(v)),
            Err(_) => "LRANGE -> ?".to_string(),
        };
        record(lists, shown, class, error, &client.addr);
        match res {
            Ok(v) => {
                for viol in lists.check(key, &v) {
                    stats.violation();
                    violations.push((viol, lists.explain(key)));
                }
                stats.read_ok();
                true
            }
            Err(OpError::Ambiguous(e) | OpError::NoAnswer(e)) => {
                stats.read_failed(&e);
                false
            }
        }
    } else if op.pick.is_multiple_of(TRIM_EVERY) {
        let keep = lists.keep() as i64;
        let res = client
            .run::<()>(redis::cmd("LTRIM").arg(key).arg(-keep).arg(-1).clone())
            .await;
        let (class, error, outcome) = outcome_of(&res);
        record(
            lists,
            format!("LTRIM -{keep} -1"),
            class,
            error,
            &client.addr,
        );
        lists.trimmed(key, outcome);
        match res {
            Ok(()) => {
                stats.kind_acked(Kind::List);
                true
            }
            Err(OpError::Ambiguous(e) | OpError::NoAnswer(e)) => {
                stats.write_failed(&e);
                false
            }
        }
    } else {
        let version = lists.next_version(key);
        let res = client
            .run::<()>(redis::cmd("RPUSH").arg(key).arg(version).clone())
            .await;
        let (class, error, outcome) = outcome_of(&res);
        record(
            lists,
            format!("RPUSH {version}"),
            class,
            error,
            &client.addr,
        );
        lists.pushed(key, version, outcome);
        match res {
            Ok(()) => {
                stats.kind_acked(Kind::List);
                true
            }
            Err(OpError::Ambiguous(e) | OpError::NoAnswer(e)) => {
                stats.write_failed(&e);
                false
            }
        }
    }
}

/// A list's elements for a history line: all of a short one, the ends of a long one.
fn summarize(v: &[String]) -> String {
    if v.len() <= 8 {
        format!("[{}]", v.join(" "))
    } else {
        format!(
            "[{} .. {}] ({} elements)",
            v[..3].join(" "),
            v[v.len() - 3..].join(" "),
            v.len()
        )
    }
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
    for out in outcomes {
        verify_collections(
            &mut client,
            out,
            &mut verified,
            &mut unverifiable,
            &mut violations,
        )
        .await;
    }
    (verified, unverifiable, violations)
}

/// Runs a read, retrying transient errors; `None` when it never got an answer.
async fn read_retrying<T: redis::FromRedisValue>(
    client: &mut Client,
    cmd: &redis::Cmd,
) -> Option<(T, u64)> {
    for attempt in 0..20u32 {
        let start_ms = unix_ms();
        match client.run::<T>(cmd.clone()).await {
            Ok(v) => return Some((v, start_ms)),
            Err(_) => tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await,
        }
    }
    None
}

/// Reads every hash (`HGETALL`), sorted set (`ZRANGE 0 -1 WITHSCORES`) and list
/// (`LRANGE 0 -1`) a worker wrote and checks each against its ledger.
async fn verify_collections(
    client: &mut Client,
    out: &WorkerOutcome,
    verified: &mut usize,
    unverifiable: &mut usize,
    violations: &mut Vec<(Violation, String)>,
) {
    for (kind, ledger) in [(Kind::Hash, &out.hashes), (Kind::Zset, &out.zsets)] {
        for key in ledger.keys() {
            let cmd = if kind == Kind::Hash {
                redis::cmd("HGETALL").arg(key).clone()
            } else {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .clone()
            };
            let Some((pairs, start_ms)) =
                read_retrying::<Vec<(String, String)>>(client, &cmd).await
            else {
                *unverifiable += 1;
                continue;
            };
            *verified += 1;
            let found: Vec<(String, Option<u64>)> = pairs
                .iter()
                .map(|(f, raw)| (f.clone(), field_version(kind, raw)))
                .collect();
            for viol in ledger.check_all(key, &found) {
                let field = viol
                    .key()
                    .rsplit(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let shown = pairs
                    .iter()
                    .map(|(f, raw)| format!("{f}={}", raw.chars().take(12).collect::<String>()))
                    .collect::<Vec<_>>()
                    .join(" ");
                let read = final_read(client, start_ms, format!("{} -> {shown}", kind.name()));
                let history = format!("{}\n  final check: {read}", ledger.explain(key, &field));
                violations.push((viol, history));
            }
        }
    }
    for key in out.lists.keys() {
        let cmd = redis::cmd("LRANGE").arg(key).arg(0).arg(-1).clone();
        let Some((elements, start_ms)) = read_retrying::<Vec<String>>(client, &cmd).await else {
            *unverifiable += 1;
            continue;
        };
        *verified += 1;
        for viol in out.lists.check(key, &elements) {
            let read = final_read(
                client,
                start_ms,
                format!("LRANGE -> {}", summarize(&elements)),
            );
            let history = format!("{}\n  final check: {read}", out.lists.explain(key));
            violations.push((viol, history));
        }
    }
}

fn final_read(client: &Client, start_ms: u64, text: String) -> OpRecord {
    OpRecord {
        op: OpKind::Command(text),
        class: OutcomeClass::Acked,
        start_ms,
        end_ms: unix_ms(),
        coordinator: client.addr.clone(),
        error: None,
    }
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
        if v.is_loss() {
            report.stale_reads += 1;
        } else {
            report.phantoms += 1;
        }
        if report.violations.len() < 20 {
            report
                .violations
                .push(format!("during run: {v}\n{history}"));
        }
    }
    for (v, history) in &final_violations {
        if v.is_loss() {
            report.lost_writes += 1;
        } else {
            report.phantoms += 1;
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
