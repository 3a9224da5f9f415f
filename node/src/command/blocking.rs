//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP). Each parses to its non-blocking attempt, a keyed command that answers the
//! RESP2 null array when it has nothing to serve (what Redis answers on a timeout). The client's
//! connection retries the attempt through the normal routing path until it serves something or
//! the timeout passes, so a key whose range moves is served by its new owner (the attempt is
//! forwarded there); it is woken early when a collection key it waits on is written here
//! (`engine::ready`), and otherwise retries every `RETRY` for writes on other nodes. A
//! forwarded blocking command is one attempt: only the client's own node waits. Local keys are
//! served first come, first served (`engine::ready`): an attempt takes only from the keys where
//! this client is the oldest waiter, and the write that woke it answers after it was served.

use super::arg_error::ArgError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node::Node;

use super::clients::{ClientShared, Unblock};
use super::exec;
use super::parse::Keyed;
use crate::engine::DataCmd;
use crate::engine::collection::CollMeta;
use crate::engine::list::ListCmd;
use crate::engine::zset::ZsetCmd;

/// How long after its command arrived a blocking command that must wait first acts (see
/// `run`): at least this, or twice the largest recent handling lag (`arrival::recent_lag`) up
/// to `MAX_SKEW`, since on a busy machine a command can be handled milliseconds after it
/// arrived.
pub const ARRIVAL_SKEW: Duration = Duration::from_millis(1);
const MAX_SKEW: Duration = Duration::from_millis(50);

fn skew() -> Duration {
    (crate::arrival::recent_lag() * 2).clamp(ARRIVAL_SKEW, MAX_SKEW)
}

/// How long to wait now so the first attempt comes `skew()` after `arrival` (ns since the
/// epoch, the kernel's receive time); None when that moment has passed.
fn skew_wait(arrival: u64) -> Option<Duration> {
    let now = Duration::from_nanos(crate::arrival::now_ns());
    let due = Duration::from_nanos(arrival) + skew();
    due.checked_sub(now).filter(|d| !d.is_zero())
}

/// What every attempt answers when it served nothing (and the reply on a timeout).
pub const NOTHING: &[u8] = b"*-1\r\n";

/// How often a blocked client retries without a local wake-up (writes on another node).
pub const RETRY: Duration = Duration::from_millis(100);

/// Whether `name` is a blocking command (its attempt follows the rule above).
pub fn is_blocking(name: &str) -> bool {
    timeout_at(name, 0).is_some()
}

/// Whether a request names a blocking command, without allocating.
pub fn may_block(args: &[Vec<u8>]) -> bool {
    args.first().is_some_and(|n| {
        n.len() >= 5
            && n.first().is_some_and(|c| c.eq_ignore_ascii_case(&b'b'))
            && [
                "blpop",
                "brpop",
                "blmove",
                "brpoplpush",
                "blmpop",
                "bzpopmin",
                "bzpopmax",
                "bzmpop",
            ]
            .iter()
            .any(|b| n.eq_ignore_ascii_case(b.as_bytes()))
    })
}

/// Index of the timeout argument of blocking command `name` with `argc` arguments.
pub fn timeout_at(name: &str, argc: usize) -> Option<usize> {
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => Some(argc.saturating_sub(1)),
        "brpoplpush" => Some(3),
        "blmove" => Some(5),
        "blmpop" | "bzmpop" => Some(1),
        _ => None,
    }
}

/// A timeout in seconds (a float) with Redis 7.0's errors; None = wait forever (0).
pub fn parse_timeout(raw: &[u8]) -> Result<Option<Duration>, ArgError> {
    let secs: f64 = std::str::from_utf8(raw)
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() == raw.len())
        .and_then(|s| s.parse().ok())
        .filter(|f: &f64| !f.is_nan())
        .ok_or(ArgError::from("ERR timeout is not a float or out of range"))?;
    let ms = (secs * 1000.0).ceil();
    // (Redis 7.0 converts to a long long: a value past its range wraps to a negative one.)
    if !(0.0..9.2e18).contains(&ms) {
        return Err("ERR timeout is negative".into());
    }
    Ok((ms > 0.0).then(|| Duration::from_millis(ms as u64)))
}

/// Counts a connection in `blocked_clients` (and marks it blocked for CLIENT UNBLOCK) while
/// it lives.
struct Blocked<'a>(&'a Node, &'a ClientShared);

impl<'a> Blocked<'a> {
    fn new(node: &'a Node, client: &'a ClientShared) -> Blocked<'a> {
        node.metrics.blocked_clients.inc();
        client.set_blocked(true);
        Blocked(node, client)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.1.set_blocked(false);
        self.0.metrics.blocked_clients.dec();
    }
}

/// CLIENT UNBLOCK's ERROR reply (Redis' text).
pub const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// Whether an attempt's answer means "nothing was applied, keep waiting": nothing to serve, or
/// the range stayed fenced past the write-pause budget (a cutover; the next attempt goes to
/// whoever owns the key by then).
fn keep_waiting(reply: &[u8]) -> bool {
    reply == NOTHING || reply.starts_with(b"-TRYAGAIN ")
}

/// Runs blocking command `name` (its attempt already parsed as `keyed`) until it serves
/// something or `timeout` passes. Dropping the future (the client went away) unregisters it.
pub async fn run(
    node: &Arc<Node>,
    client: &ClientShared,
    arrival: Option<u64>,
    name: &str,
    args: Vec<Vec<u8>>,
    keyed: Keyed,
    timeout: Option<Duration>,
) -> Vec<u8> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let keys = waited_keys(&keyed);
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    // One whose keys held something since before it arrived, with no client waiting on them,
    // is served as Redis would serve it: at once, like the non-blocking pop (a worker on a
    // non-empty queue pays no pause, and workers sharing a queue are not put in line). If it
    // finds nothing after all (another client took it), it waits like any other.
    if arrival.is_some_and(|a| held_since_before(node, &keys, a))
        && !node.engine.ready.waited_on(&key_refs)
    {
        let since = node.engine.ready.generation();
        let reply = exec::execute(node, name, args.clone(), keyed.clone(), false, None).await;
        node.engine.ready.settle(since).await;
        if !keep_waiting(&reply) {
            return reply;
        }
    }
    // Registered before the first attempt, so no local write after it goes unnoticed.
    let watch = node.engine.ready.watch(&key_refs, arrival);
    // Two commands that arrive microseconds apart on two connections may be handled in either
    // order (seen: the later one registered 0.2 ms before the earlier one and took the
    // element a push right behind them brought). So a command that waits acts on nothing
    // until the arrival skew after its arrival, by when an earlier-arrived one has
    // registered ahead of it (a wake-up during the pause is kept).
    if let Some(wait) = arrival.and_then(skew_wait) {
        tokio::time::sleep(wait).await;
    }
    let mut blocked = None;
    let mut first = true;
    let mut woken = false;
    loop {
        // On local keys an attempt takes only from the keys where this client is the oldest
        // waiter (first come, first served: an older client woken for an element gets it even
        // when this command arrived between the write and its retry). A key set that holds
        // nothing needs no trip through the writer, and a periodic retry is left to the
        // clients whose turn it is.
        let local = exec::route_keys(node, &key_refs) == crate::routing::Route::Local;
        let attempt = if local {
            let mine = watch.first_keys();
            let skip = mine.is_empty() || (!first && !woken && locally_absent(node, &mine));
            (!skip).then(|| restricted(&keyed, &mine))
        } else {
            Some(keyed.clone())
        };
        if let Some(attempt) = attempt {
            let since = watch.begin();
            let reply = exec::execute(node, name, args.clone(), attempt, false, None).await;
            // Clients this attempt's own write fed (a BLMOVE into a watched list) are served
            // before it answers, as the writer of the element waits for this one.
            node.engine.ready.settle(since).await;
            if !keep_waiting(&reply) {
                // (Dropping the watch hands the turn to the next waiter.)
                return reply;
            }
            watch.end();
        }
        first = false;
        let now = Instant::now();
        let wait = match deadline {
            Some(d) if now >= d => return NOTHING.to_vec(),
            Some(d) => RETRY.min(d - now),
            None => RETRY,
        };
        blocked.get_or_insert_with(|| Blocked::new(node, client));
        woken = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = watch.notified() => woken = true,
            _ = client.unblock.notified() => match client.take_unblock() {
                Some(Unblock::Timeout) => return NOTHING.to_vec(),
                Some(Unblock::Error) => {
                    let mut out = Vec::new();
                    crate::resp::reply::error(&mut out, UNBLOCKED);
                    return out;
                }
                // A wake-up left from an earlier wait.
                None => {}
            },
        }
    }
}

/// The keys a blocking command waits on: its sources (not BLMOVE's destination, whose writes
/// serve it nothing).
fn waited_keys(keyed: &Keyed) -> Vec<Vec<u8>> {
    match keyed {
        Keyed::Write(DataCmd::List(ListCmd::Move { src, .. })) => vec![src.clone()],
        k => k.keys().iter().map(|k| k.to_vec()).collect(),
    }
}

/// The attempt restricted to source keys `mine` (in the command's own key order).
fn restricted(keyed: &Keyed, mine: &[Vec<u8>]) -> Keyed {
    let mut k = keyed.clone();
    match &mut k {
        Keyed::Write(DataCmd::List(ListCmd::Pop { keys, .. }))
        | Keyed::Write(DataCmd::ZSet(ZsetCmd::Pop { keys, .. })) => {
            keys.retain(|k| mine.contains(k))
        }
        // A single source: `mine` is all of it (or the attempt was skipped).
        _ => {}
    }
    k
}

/// True when some of the (local) keys hold a collection created before `arrival` (ns since
/// the epoch) and the others are absent: whatever an attempt takes was there when the command
/// arrived. An emptied collection is deleted and a new one gets a fresh version from the
/// writer's clock (ms << 16), so a version older than the arrival means the key held
/// elements since before it (a margin of 2 ms covers the clock's resolution).
fn held_since_before(node: &Node, keys: &[Vec<u8>], arrival: u64) -> bool {
    let arrival_ms = arrival / 1_000_000;
    let mut held = false;
    for k in keys {
        match node.engine.get(k) {
            Ok(None) => {}
            Ok(Some(s)) => match CollMeta::of(&s) {
                Some(m) if (m.version >> 16) + 2 <= arrival_ms => held = true,
                _ => return false,
            },
            Err(_) => return false,
        }
    }
    held
}

/// True when none of the (local) keys exists: an attempt could serve nothing.
fn locally_absent(node: &Node, keys: &[Vec<u8>]) -> bool {
    keys.iter().all(|k| matches!(node.engine.get(k), Ok(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_redis_7_0() {
        assert_eq!(parse_timeout(b"0"), Ok(None));
        assert_eq!(parse_timeout(b"0.0"), Ok(None));
        assert_eq!(parse_timeout(b"0.0011"), Ok(Some(Duration::from_millis(2))));
        assert_eq!(parse_timeout(b"1.5"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(parse_timeout(b"-1").unwrap_err(), "ERR timeout is negative");
        assert_eq!(
            parse_timeout(b"1e20").unwrap_err(),
            "ERR timeout is negative"
        );
        for bad in [&b"abc"[..], b"", b" 1", b"nan"] {
            assert_eq!(
                parse_timeout(bad).unwrap_err(),
                "ERR timeout is not a float or out of range"
            );
        }
    }

    #[test]
    fn blocking_commands_are_recognised_in_any_case() {
        let req = |s: &str| vec![s.as_bytes().to_vec()];
        assert!(may_block(&req("BLPOP")));
        assert!(may_block(&req("brpoplpush")));
        assert!(may_block(&req("BlMpOp")));
        assert!(!may_block(&req("LPOP")));
        assert!(!may_block(&req("blah")));
        assert!(is_blocking("blmove"));
        assert!(!is_blocking("lmove"));
        assert_eq!(timeout_at("blpop", 4), Some(3));
    }

    #[test]
    fn the_first_attempt_waits_out_the_arrival_skew_only_once() {
        let now = crate::arrival::now_ns();
        let wait = skew_wait(now).expect("arrived just now");
        assert!(wait <= MAX_SKEW && wait > ARRIVAL_SKEW / 2, "{wait:?}");
        assert_eq!(skew_wait(now - 60_000_000), None, "arrived 60 ms ago");
    }

    #[test]
    fn reads_handled_late_lengthen_the_arrival_skew() {
        let now = crate::arrival::now_ns();
        // A read handled 10 ms after it arrived: a command that arrived before another may
        // be handled that much later, so the later one waits twice that.
        crate::arrival::note_handled(now - 10_000_000, now);
        assert!(skew() >= Duration::from_millis(20), "{:?}", skew());
        assert!(skew() <= MAX_SKEW);
    }

    #[test]
    fn only_nothing_or_a_fence_keeps_a_client_waiting() {
        assert!(keep_waiting(NOTHING));
        assert!(keep_waiting(b"-TRYAGAIN range fenced for a cutover\r\n"));
        assert!(!keep_waiting(b"$-1\r\n"));
        assert!(!keep_waiting(b"-WRONGTYPE Operation\r\n"));
        assert!(!keep_waiting(b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n"));
    }
}
