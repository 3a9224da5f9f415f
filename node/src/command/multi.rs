//! MULTI / EXEC / DISCARD / WATCH / UNWATCH: the connection's side of transactions.
//!
//! Commands are queued on the connection; EXEC hands the keyed ones to the writer as one
//! transaction (`engine::tx`), which checks ownership and WATCH and applies them in one
//! critical section, so no other client's write lands between them. As in Redis Cluster,
//! every key of a transaction and of its WATCHes must have one owner (else CROSSSLOT while
//! queueing). Commands without keys (PING, ECHO, CONFIG, ...) are answered after the keyed
//! ones were applied, in their place in the reply.
//!
//! A transaction whose keys another node owns goes to that node as a unit (`RSFWDTX`, see
//! `forward_tx`); WATCHes of keys another node owns are taken there (`RSWATCH`) and checked
//! there at EXEC. A WATCHed key that moves (or whose range is fenced) before EXEC makes EXEC
//! answer a null array, as a modification does.

use super::arg_error::ArgError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::parse::{self, Keyed};
use super::{ConnState, Flow, exec, table};
use crate::engine::tx::{Transaction, TxItem, TxReply, WatchedKey};
use crate::engine::{Outcome, Watching};
use crate::keys;
use crate::node::Node;
use crate::resp::reply;
use crate::routing::Route;

pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// One queued command and how it parsed (a syntax error is answered in EXEC's reply, as
/// Redis answers it when the command runs).
#[derive(Clone)]
pub struct Queued {
    pub name: &'static str,
    pub args: Vec<Vec<u8>>,
    pub keyed: Result<Option<Keyed>, ArgError>,
}

impl Queued {
    /// Looked up and parsed as when queued (a forwarded transaction's command).
    pub fn parse(args: Vec<Vec<u8>>) -> Result<Queued, ArgError> {
        let Some(first) = args.first() else {
            return Err("ERR empty command in forwarded transaction".into());
        };
        let Some(spec) = table::index(first).map(|i| &table::COMMANDS[i]) else {
            return Err(table::unknown_command_error(&args).into());
        };
        if !table::arity_ok(spec.arity, args.len()) {
            return Err(table::arity_error(spec.name).into());
        }
        let keyed = parse::parse_keyed(spec.name, &args, keys::now_ms());
        Ok(Queued {
            name: spec.name,
            args,
            keyed,
        })
    }

    /// Whether the owner's writer runs it (a keyed command or a flush): what a forwarded
    /// transaction carries.
    pub fn for_writer(&self) -> bool {
        matches!(self.keyed, Ok(Some(_))) || is_flush(self)
    }
}

/// A watched key: checked by this node's writer, or by the owner's (`remote`: the owner's
/// boot id, which must still be the owner's at EXEC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub key: WatchedKey,
    pub remote: Option<String>,
}

#[derive(Default)]
pub struct TxState {
    /// Some while between MULTI and EXEC/DISCARD.
    queued: Option<Vec<Queued>>,
    /// An error while queueing: EXEC aborts.
    dirty: bool,
    watched: Vec<Watch>,
    /// A WATCH of a key that was fenced (moving) already: EXEC aborts.
    doomed: bool,
    watching: Option<Watching>,
}

impl TxState {
    pub fn in_multi(&self) -> bool {
        self.queued.is_some()
    }

    /// A queueing error (unknown command, wrong arity, keys of another owner).
    pub fn flag(&mut self) {
        if self.in_multi() {
            self.dirty = true;
        }
    }

    /// Ends MULTI and every WATCH (EXEC, DISCARD, RESET).
    pub fn clear(&mut self) {
        *self = TxState::default();
    }

    /// Forgets every WATCH (UNWATCH; also queued in MULTI, then run by EXEC).
    pub fn unwatch(&mut self) {
        self.watched.clear();
        self.doomed = false;
        self.watching = None;
    }
}

/// Whether `name` is handled here for a connection in `state`.
pub fn handles(state: &TxState, name: &str) -> bool {
    matches!(name, "multi" | "exec" | "discard" | "watch" | "unwatch")
        || (state.in_multi() && !matches!(name, "quit" | "reset"))
}

pub async fn command(
    node: &Arc<Node>,
    conn: &mut ConnState,
    name: &'static str,
    args: Vec<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Flow {
    match name {
        "multi" => {
            if conn.tx.in_multi() {
                reply::error(out, "ERR MULTI calls can not be nested");
            } else {
                conn.tx.queued = Some(Vec::new());
                reply::simple(out, "OK");
            }
        }
        "discard" => {
            if conn.tx.in_multi() {
                conn.tx.clear();
                reply::simple(out, "OK");
            } else {
                reply::error(out, "ERR DISCARD without MULTI");
            }
        }
        "watch" if conn.tx.in_multi() => {
            reply::error(out, "ERR WATCH inside MULTI is not allowed");
        }
        "watch" => watch(node, conn, &args[1..], out).await,
        "unwatch" if !conn.tx.in_multi() => {
            conn.tx.unwatch();
            reply::simple(out, "OK");
        }
        "exec" => return run_exec(node, conn, out).await,
        _ => queue(node, conn, name, args, out),
    }
    Flow::Continue
}

/// Whether `keys`, the watched keys and the queued commands' keys all have one owner now.
fn one_owner(node: &Node, state: &TxState, keys: &[&[u8]]) -> bool {
    let mut all: Vec<&[u8]> = keys.to_vec();
    all.extend(state.watched.iter().map(|w| w.key.key.as_slice()));
    for q in state.queued.iter().flatten() {
        if let Ok(Some(k)) = &q.keyed {
            all.extend(k.keys());
        }
    }
    let owners = super::exec::owners_of(node, &all);
    owners.windows(2).all(|w| w[0] == w[1])
}

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same owner";

fn queue(
    node: &Arc<Node>,
    conn: &mut ConnState,
    name: &'static str,
    args: Vec<Vec<u8>>,
    out: &mut Vec<u8>,
) {
    let keyed = parse::parse_keyed(name, &args, keys::now_ms());
    if let Ok(Some(k)) = &keyed
        && !one_owner(node, &conn.tx, &k.keys())
    {
        conn.tx.flag();
        reply::error(out, CROSSSLOT);
        return;
    }
    if let Some(q) = conn.tx.queued.as_mut() {
        q.push(Queued { name, args, keyed });
    }
    reply::simple(out, "QUEUED");
}

async fn watch(node: &Arc<Node>, conn: &mut ConnState, keys: &[Vec<u8>], out: &mut Vec<u8>) {
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    if !one_owner(node, &conn.tx, &refs) {
        reply::error(out, CROSSSLOT);
        return;
    }
    match exec::route_keys(node, &refs) {
        Route::Local => {
            if conn.tx.watching.is_none() {
                conn.tx.watching = Some(node.engine.start_watching());
            }
            match node.engine.watch(keys) {
                Ok(w) => {
                    conn.tx
                        .watched
                        .extend(w.into_iter().map(|key| Watch { key, remote: None }));
                    reply::simple(out, "OK");
                }
                Err(e) => reply::error(out, &format!("ERR {e}")),
            }
        }
        // Moving: EXEC will find it moved (or still fenced) and abort.
        Route::Fenced { .. } => {
            conn.tx.doomed = true;
            reply::simple(out, "OK");
        }
        Route::Remote {
            epoch,
            data_addr: Some(addr),
            ..
        } => match super::txfwd::remote_watch(node, &addr, epoch, keys).await {
            Ok(w) => {
                conn.tx.watched.extend(w);
                reply::simple(out, "OK");
            }
            Err(msg) => reply::error(out, &msg),
        },
        Route::Remote { owner, .. } => {
            reply::error(
                out,
                &format!("CLUSTERDOWN no address known for owner {owner}"),
            );
        }
        other => reply::error(out, &exec::route_error(&other).unwrap_or_default()),
    }
}

/// What a queued command contributes to EXEC's reply.
enum Slot {
    /// The writer's reply number `n`; RESP3 reshaping (map, pairs).
    Writer(usize, (bool, bool)),
    Error(String),
    /// Answered after the writer's part, as outside a transaction.
    Other(&'static str, Vec<Vec<u8>>),
}

/// The writer's items for the queued commands, the keys they touch and each command's slot.
fn plan(node: &Arc<Node>, proto: u8, queued: &[Queued]) -> (Vec<TxItem>, Vec<Vec<u8>>, Vec<Slot>) {
    let mut items = Vec::new();
    let mut keys = Vec::new();
    let mut slots = Vec::new();
    for q in queued {
        match &q.keyed {
            Err(msg) => slots.push(Slot::Error(msg.to_string())),
            Ok(Some(k)) => {
                keys.extend(k.keys().iter().map(|k| k.to_vec()));
                slots.push(Slot::Writer(items.len(), super::resp3_shape(proto, k)));
                items.push(match k.clone() {
                    Keyed::Write(w) => TxItem::Write(w),
                    Keyed::Read(r) => {
                        let node = node.clone();
                        TxItem::Read(Box::new(move |view| {
                            let mut out = Vec::new();
                            exec::local_read_in(&node, view, &r, &mut out);
                            out
                        }))
                    }
                });
            }
            Ok(None) if is_flush(q) => {
                slots.push(Slot::Writer(items.len(), (false, false)));
                items.push(TxItem::Flush);
            }
            Ok(None) => slots.push(Slot::Other(q.name, q.args.clone())),
        }
    }
    (items, keys, slots)
}

/// FLUSHALL/FLUSHDB with valid arguments (others answer their syntax error as usual).
fn is_flush(q: &Queued) -> bool {
    matches!(q.name, "flushall" | "flushdb")
        && match q.args.get(1) {
            None => true,
            Some(a) => {
                q.args.len() == 2
                    && (a.eq_ignore_ascii_case(b"sync") || a.eq_ignore_ascii_case(b"async"))
            }
        }
}

/// How a transaction ended, before its reply is written.
pub enum TxEnd {
    Applied(Vec<TxReply>),
    /// A watched key was modified or moved: null array.
    Aborted,
    /// An error reply for EXEC as a whole (nothing applied, or unknown after a failure).
    Error(String),
}

async fn run_exec(node: &Arc<Node>, conn: &mut ConnState, out: &mut Vec<u8>) -> Flow {
    let Some(queued) = conn.tx.queued.take() else {
        reply::error(out, "ERR EXEC without MULTI");
        return Flow::Continue;
    };
    let state = std::mem::take(&mut conn.tx);
    if state.dirty {
        reply::error(out, EXECABORT);
        return Flow::Continue;
    }
    if state.doomed {
        reply::nil_array(out);
        return Flow::Continue;
    }
    let end = run_transaction(node, conn.proto, &queued, &state.watched, None).await;
    drop(state);
    match end {
        TxEnd::Aborted => reply::nil_array(out),
        TxEnd::Error(msg) => reply::error(out, &msg),
        TxEnd::Applied(replies) => {
            let (_, _, slots) = plan(node, conn.proto, &queued);
            return write_replies(node, conn, &queued, slots, replies, out).await;
        }
    }
    Flow::Continue
}

/// EXEC's array: the writer's replies and the other commands' in queue order.
async fn write_replies(
    node: &Arc<Node>,
    conn: &mut ConnState,
    queued: &[Queued],
    slots: Vec<Slot>,
    replies: Vec<TxReply>,
    out: &mut Vec<u8>,
) -> Flow {
    let mut replies: Vec<Option<TxReply>> = replies.into_iter().map(Some).collect();
    reply::array_len(out, slots.len());
    let mut flow = Flow::Continue;
    for (slot, q) in slots.into_iter().zip(queued) {
        let start = out.len();
        match slot {
            Slot::Error(msg) => reply::error(out, &msg),
            Slot::Writer(i, (map, pairs)) => {
                match replies.get_mut(i).and_then(Option::take) {
                    Some(TxReply::Data(d)) => exec::encode_data_into(out, d),
                    Some(TxReply::Raw(raw)) => out.extend_from_slice(&raw),
                    None => reply::error(out, "ERR transaction reply missing"),
                }
                super::pubsub::notify_write(node, &q.args, &out[start..]).await;
                if map {
                    crate::resp::resp3::array_to_map(out, start);
                }
                if pairs {
                    crate::resp::resp3::array_to_pairs(out, start);
                }
            }
            Slot::Other(name, args) => {
                if let Flow::Close = super::unkeyed(node, conn, name, &args, out).await {
                    flow = Flow::Close;
                }
            }
        }
    }
    flow
}

/// Runs a transaction whose keys all have one owner: here, or forwarded to the owner as a
/// unit. Fenced keys are waited on up to the write-pause budget (nothing was applied); a
/// watched key that is not served here any more aborts it. `deadline_ms`: a forwarded
/// transaction's coordinator deadline.
pub async fn run_transaction(
    node: &Arc<Node>,
    proto: u8,
    queued: &[Queued],
    watched: &[Watch],
    deadline_ms: Option<u64>,
) -> TxEnd {
    let forwarded = deadline_ms.is_some();
    let budget = node
        .engine
        .routing()
        .placement
        .as_ref()
        .map_or(2000, |p| p.write_pause_budget_ms);
    let mut budget = Duration::from_millis(budget);
    if let Some(d) = deadline_ms {
        budget = budget.min(Duration::from_millis(
            d.saturating_sub(node.engine.now_ms()),
        ));
    }
    let deadline = Instant::now() + budget;
    let mut changes = node.engine.routing_changes();
    let local_watches: Vec<WatchedKey> = watched
        .iter()
        .filter(|w| w.remote.is_none())
        .map(|w| w.key.clone())
        .collect();
    loop {
        let (items, keys, _) = plan(node, proto, queued);
        if items.is_empty() && watched.is_empty() {
            return TxEnd::Applied(Vec::new());
        }
        let mut all: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        all.extend(watched.iter().map(|w| w.key.key.as_slice()));
        let route = exec::route_keys(node, &all);
        let route = if route == Route::Local && watched.iter().any(|w| w.remote.is_some()) {
            // Watched on the owner of the time, which this node is now: moved.
            return TxEnd::Aborted;
        } else if route == Route::Local {
            let tx = Transaction {
                items,
                keys,
                watched: local_watches.clone(),
                deadline_ms,
            };
            match node.engine.transaction(tx).await {
                Ok(Outcome::Transaction(r)) => return TxEnd::Applied(r),
                Ok(Outcome::WatchAborted) => return TxEnd::Aborted,
                Ok(Outcome::TxNotServed(route)) => route,
                Ok(Outcome::DeadlinePassed {
                    deadline_ms,
                    now_ms,
                }) => {
                    node.metrics.error("forward_deadline");
                    return TxEnd::Error(exec::deadline_error(deadline_ms, now_ms));
                }
                Ok(Outcome::Failed(msg)) => {
                    return TxEnd::Error(format!("ERR storage failure: {msg}"));
                }
                Ok(_) => return TxEnd::Error("ERR unexpected writer answer".into()),
                Err(e) => return TxEnd::Error(format!("ERR {e}")),
            }
        } else {
            route
        };
        // A watched key this node served at WATCH is fenced or gone: it moved.
        if !local_watches.is_empty() {
            return TxEnd::Aborted;
        }
        let last = match route {
            Route::Fenced {
                epoch,
                migration_uid,
            } => exec::fenced_error(epoch, &migration_uid),
            Route::Remote {
                epoch,
                owner,
                data_addr,
            } => {
                if forwarded {
                    return TxEnd::Error(exec::moved_error(epoch, &owner, data_addr.as_deref()));
                }
                let Some(addr) = data_addr else {
                    return TxEnd::Error(format!("CLUSTERDOWN no address known for owner {owner}"));
                };
                match super::txfwd::forward_tx(node, &addr, epoch, queued, watched).await {
                    super::txfwd::TxForwarded::Done(end) => return end,
                    super::txfwd::TxForwarded::Retry(last) => last,
                }
            }
            Route::Local => "TRYAGAIN routing changed during the transaction".into(),
            other => return TxEnd::Error(exec::route_error(&other).unwrap_or_default()),
        };
        let now = Instant::now();
        if now >= deadline {
            node.metrics.error("retry_budget_exhausted");
            return TxEnd::Error(last);
        }
        let wait = (deadline - now).min(Duration::from_millis(20));
        let _ = tokio::time::timeout(wait, changes.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(args: &[&str]) -> Queued {
        Queued::parse(args.iter().map(|a| a.as_bytes().to_vec()).collect()).expect("known")
    }

    #[test]
    fn inside_multi_everything_but_exec_discard_quit_and_reset_is_queued_here() {
        let mut s = TxState::default();
        assert!(handles(&s, "watch") && handles(&s, "exec"));
        assert!(!handles(&s, "get") && !handles(&s, "reset"));
        s.queued = Some(Vec::new());
        assert!(handles(&s, "get") && handles(&s, "subscribe") && handles(&s, "discard"));
        assert!(!handles(&s, "quit") && !handles(&s, "reset"));
        s.flag();
        assert!(s.dirty);
        s.clear();
        assert!(!s.in_multi() && !s.dirty);
    }

    #[test]
    fn the_writer_runs_keyed_commands_and_valid_flushes_only() {
        assert!(queued(&["SET", "k", "v"]).for_writer());
        assert!(queued(&["GET", "k"]).for_writer());
        assert!(queued(&["FLUSHALL", "ASYNC"]).for_writer());
        assert!(!queued(&["FLUSHALL", "NOPE"]).for_writer());
        assert!(!queued(&["PING"]).for_writer());
        // A syntax error is kept for EXEC's reply, not run anywhere.
        assert!(!queued(&["SET", "k", "v", "BADOPT"]).for_writer());
        assert!(Queued::parse(vec![b"NOSUCH".to_vec()]).is_err());
        assert!(Queued::parse(vec![b"GET".to_vec()]).is_err());
    }
}
