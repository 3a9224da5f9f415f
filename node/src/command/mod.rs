//! Command dispatch for the data port.

pub mod arg_error;
pub mod blocking;
pub mod clients;
pub mod encoding;
pub mod exec;
mod handshake;
pub mod hash;
mod info;
mod keyspace;
mod lcs;
pub mod list;
pub mod multi;
pub mod parse;
pub mod pubsub;
mod reply_mode;
pub mod set;
mod strings;
pub mod table;
mod txfwd;
pub mod zset;

use std::sync::Arc;

use crate::engine::{DataCmd, Outcome};
use crate::keys;
use crate::node::Node;
use crate::resp::reply;
use crate::routing::Route;

use parse::Keyed;

/// A connection's pipelined local writes, not yet submitted. They go to the writer together
/// when the connection next needs their replies (a read, a non-write command, or the end of
/// what the client has sent so far): one hand-off and one wake-up for the lot.
#[derive(Default)]
pub struct Pipeline {
    cmds: Vec<DataCmd>,
    /// Each write's request, for the slow path if the writer refuses it.
    args: Vec<Vec<Vec<u8>>>,
    /// The protocol the writes were sent under (their replies follow it).
    proto: u8,
}

pub struct ConnState {
    pub authed: bool,
    /// 2 or 3 (HELLO): RESP3 replies are rewritten from RESP2 by `resp::resp3`.
    pub proto: u8,
    /// Id, name and what CLIENT LIST/KILL see (registered in `Node::clients`).
    pub client: Arc<clients::ClientShared>,
    /// Commands of the current read (index in the command table, None: unknown): the server
    /// records their latency once their replies are written.
    pub answering: Vec<Option<usize>>,
    /// MULTI queue and WATCHes.
    pub tx: multi::TxState,
    /// Pub/Sub subscriptions (None until the first SUBSCRIBE).
    pub subs: Option<crate::pubsub::Subscriber>,
    /// CLIENT REPLY ON|OFF|SKIP.
    pub reply: reply_mode::ReplyMode,
    /// When the last read's bytes reached this host (`arrival`), if the kernel said.
    pub arrival: Option<u64>,
    /// Whether a command of the current read may have written here: only then do its replies
    /// wait for the blocked clients its writes fed (`engine::ready`), so a connection that
    /// only reads never waits on other connections' writes.
    pub wrote: bool,
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

pub enum Flow {
    Continue,
    Close,
}

fn error(out: &mut Vec<u8>, msg: &str) {
    reply::error(out, msg);
}

/// Submits the pending writes and appends their replies, in order. A write the writer
/// refused (a fence or a placement change came between the route check and the write) is
/// retried on the slow path before the next reply is appended; the writer applied none of the
/// ones after it, so they are retried in order too.
pub async fn flush(node: &Arc<Node>, pending: &mut Pipeline, out: &mut Vec<u8>) {
    if pending.cmds.is_empty() {
        return;
    }
    let cmds = std::mem::take(&mut pending.cmds);
    let args = std::mem::take(&mut pending.args);
    let outcomes = node.engine.submit_pipeline(cmds).await.unwrap_or_default();
    let mut outcomes = outcomes.into_iter();
    for args in args {
        let start = out.len();
        let shape = (pending.proto >= 3)
            .then(|| zset::resp3_shape(&args))
            .flatten();
        match outcomes.next() {
            Some(Outcome::Data(r)) => exec::encode_data_into(out, r),
            Some(Outcome::NotServed(_, w)) => out.extend_from_slice(
                &exec::run_group(node, args.clone(), Keyed::Write(w), false, None).await,
            ),
            Some(Outcome::Failed(msg)) => reply::error(out, &format!("ERR storage failure: {msg}")),
            _ => reply::error(out, "ERR storage writer unavailable"),
        }
        pubsub::notify_write(node, &args, &out[start..]).await;
        if let Some(shape) = shape {
            crate::resp::resp3_scores::scores_to_doubles(out, start, shape);
        }
    }
}

/// `flush` for a connection: the replies it appends follow the connection's protocol.
pub async fn flush_for(
    node: &Arc<Node>,
    conn: &ConnState,
    pending: &mut Pipeline,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    flush(node, pending, out).await;
    if conn.proto >= 3 {
        crate::resp::resp3::upgrade_nulls(out, start);
    }
}

/// Handles one request. Local writes are queued in `pending` (submitted together by the next
/// `flush`); anything else first flushes them, so replies keep the request order. Everything
/// appended here answers commands sent under the protocol in force when it was called (HELLO
/// flushes before it switches), so that is the protocol its replies are put in.
pub async fn handle(
    node: &Arc<Node>,
    conn: &mut ConnState,
    args: Vec<Vec<u8>>,
    pending: &mut Pipeline,
    out: &mut Vec<u8>,
) -> Flow {
    // CLIENT REPLY: while replies may be dropped (or CLIENT may change that), this command's
    // reply is appended here, apart from earlier pipelined ones, so it can be dropped alone.
    let careful = conn.reply.engaged()
        || args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(b"client"));
    let push = careful && args.first().is_some_and(|a| reply_mode::is_push(a));
    if careful {
        flush_for(node, conn, pending, out).await;
    }
    let start = out.len();
    let proto = conn.proto;
    let empty = args.is_empty();
    let mut index = None;
    let flow = handle_in(node, conn, args, pending, &mut index, out).await;
    if careful {
        flush(node, pending, out).await;
        if conn.reply.silenced() && !push {
            out.truncate(start);
        }
        conn.reply.command_done();
    }
    if !empty {
        conn.answering.push(index);
    }
    if proto >= 3 {
        crate::resp::resp3::upgrade_nulls(out, start);
    }
    flow
}

async fn handle_in(
    node: &Arc<Node>,
    conn: &mut ConnState,
    args: Vec<Vec<u8>>,
    pending: &mut Pipeline,
    index_out: &mut Option<usize>,
    out: &mut Vec<u8>,
) -> Flow {
    let Some(first) = args.first() else {
        return Flow::Continue;
    };
    let Some(index) = table::index(first) else {
        flush(node, pending, out).await;
        conn.tx.flag();
        node.metrics.error("unknown_command");
        error(out, &table::unknown_command_error(&args));
        return Flow::Continue;
    };
    *index_out = Some(index);
    let spec = &table::COMMANDS[index];
    let name = spec.name;
    if !table::arity_ok(spec.arity, args.len()) {
        flush(node, pending, out).await;
        conn.tx.flag();
        node.metrics.error("arity");
        error(out, &table::arity_error(name));
        return Flow::Continue;
    }
    let needs_auth = node.cfg.password.is_some() && !conn.authed;
    if needs_auth && !matches!(name, "auth" | "hello" | "quit") {
        flush(node, pending, out).await;
        error(out, "NOAUTH Authentication required.");
        return Flow::Continue;
    }
    node.metrics.op_index(index);
    conn.client.command(index);
    if pubsub::in_subscribed_mode(conn) && !pubsub::allowed_when_subscribed(name) {
        flush(node, pending, out).await;
        conn.tx.flag();
        error(out, &pubsub::subscribed_error(name));
        return Flow::Continue;
    }
    if multi::handles(&conn.tx, name) {
        conn.wrote = true;
        flush(node, pending, out).await;
        return multi::command(node, conn, name, args, out).await;
    }
    if name == "rsfwdtx" || name == "rswatch" {
        conn.wrote = true;
        flush(node, pending, out).await;
        out.extend_from_slice(&if name == "rsfwdtx" {
            txfwd::serve_forwarded_tx(node, &args).await
        } else {
            txfwd::serve_remote_watch(node, &args).await
        });
        return Flow::Continue;
    }
    if name == "rsfwd" || name == "rsfwd2" {
        conn.wrote = true;
        flush(node, pending, out).await;
        out.extend_from_slice(&forwarded(node, args, name == "rsfwd2").await);
        return Flow::Continue;
    }
    match parse::parse_keyed(name, &args, keys::now_ms()) {
        Err(msg) => {
            flush(node, pending, out).await;
            error(out, &msg.to_string());
            Flow::Continue
        }
        Ok(Some(keyed)) if blocking::is_blocking(name) => {
            conn.wrote = true;
            flush(node, pending, out).await;
            let timeout = blocking::timeout_at(name, args.len())
                .and_then(|i| args.get(i))
                .map(|t| blocking::parse_timeout(t));
            match timeout {
                Some(Ok(timeout)) => {
                    // BZPOPMIN/BZPOPMAX/BZMPOP scores are doubles in RESP3.
                    let score_shape = (conn.proto >= 3)
                        .then(|| zset::resp3_shape(&args))
                        .flatten();
                    let notify = (node.notify_flags.load(std::sync::atomic::Ordering::Relaxed)
                        != 0)
                        .then(|| args.clone());
                    let reply =
                        blocking::run(node, &conn.client, conn.arrival, name, args, keyed, timeout)
                            .await;
                    if let Some(args) = notify {
                        pubsub::notify_write(node, &args, &reply).await;
                    }
                    let start = out.len();
                    out.extend_from_slice(&reply);
                    if let Some(shape) = score_shape {
                        crate::resp::resp3_scores::scores_to_doubles(out, start, shape);
                    }
                }
                Some(Err(msg)) => error(out, &msg.to_string()),
                None => error(out, "ERR syntax error"),
            }
            Flow::Continue
        }
        Ok(Some(keyed)) => {
            conn.wrote |= matches!(keyed, Keyed::Write(_));
            keyed_command(node, conn.proto, name, args, keyed, pending, out).await;
            Flow::Continue
        }
        Ok(None) => {
            flush(node, pending, out).await;
            unkeyed(node, conn, name, &args, out).await
        }
    }
}

/// A command without keys (also run from EXEC).
pub async fn unkeyed(
    node: &Arc<Node>,
    conn: &mut ConnState,
    name: &str,
    args: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Flow {
    if pubsub::command(node, conn, name, args, out).await.is_some() {
        return Flow::Continue;
    }
    match name {
        "flushall" | "flushdb" => keyspace::flush(node, args, out).await,
        "keys" => keyspace::keys(node, &args[1], out),
        "randomkey" => keyspace::random_key(node, out),
        "function" => keyspace::function(args, out),
        "object" => strings::object_command(args, out),
        "memory" => strings::memory_command(args, out),
        "unwatch" => {
            conn.tx.unwatch();
            reply::simple(out, "OK");
        }
        "reset" => {
            conn.tx.clear();
            conn.subs = None;
            conn.proto = 2;
            reply::simple(out, "RESET");
        }
        _ => return info::connection_command(node, conn, name, args, out),
    }
    Flow::Continue
}

/// How RESP3 reshapes a keyed command's RESP2 reply: (a map, an array of pairs). Owners,
/// local or remote, answer in RESP2.
pub fn resp3_shape(proto: u8, keyed: &Keyed) -> (bool, bool) {
    let map = proto >= 3
        && match keyed {
            Keyed::Read(parse::ReadCmd::Lcs { opts, .. }) => opts.idx,
            Keyed::Read(parse::ReadCmd::Hash(h)) => h.is_map(),
            _ => false,
        };
    let pairs =
        proto >= 3 && matches!(keyed, Keyed::Read(parse::ReadCmd::Hash(h)) if hash::is_pairs(h));
    (map, pairs)
}

async fn keyed_command(
    node: &Arc<Node>,
    proto: u8,
    name: &str,
    args: Vec<Vec<u8>>,
    keyed: Keyed,
    pending: &mut Pipeline,
    out: &mut Vec<u8>,
) {
    let (map_reply, pair_reply) = resp3_shape(proto, &keyed);
    // Sorted-set scores are doubles in RESP3.
    let score_shape = (proto >= 3).then(|| zset::resp3_shape(&args)).flatten();
    let route = exec::route_keys(node, &keyed.keys());
    if route == Route::Local
        && let Keyed::Read(r) = &keyed
    {
        flush(node, pending, out).await;
        let start = out.len();
        exec::local_read(node, r, out);
        if map_reply {
            crate::resp::resp3::array_to_map(out, start);
        }
        if pair_reply {
            crate::resp::resp3::array_to_pairs(out, start);
        }
        if let Some(shape) = score_shape {
            crate::resp::resp3_scores::scores_to_doubles(out, start, shape);
        }
        return;
    }
    // Keyspace notification classes in force for this write (0 for a read).
    let flags = if matches!(keyed, Keyed::Write(_)) {
        node.notify_flags.load(std::sync::atomic::Ordering::Relaxed)
    } else {
        0
    };
    // `new` events (class n) need the keys' existence before and after this write, so such a
    // write runs on its own, not pipelined with the ones around it.
    let new_events = flags & crate::notify::NEW != 0;
    if route == Route::Local
        && !new_events
        && let Keyed::Write(w) = keyed
    {
        pending.cmds.push(w);
        pending.args.push(args);
        pending.proto = proto;
        return;
    }
    flush(node, pending, out).await;
    let start = out.len();
    // (A copy of the request only while keyspace notifications are on.)
    let notify = (flags != 0).then(|| args.clone());
    let absent = if new_events {
        let keys: Vec<Vec<u8>> = keyed.keys().iter().map(|k| k.to_vec()).collect();
        pubsub::absent_keys(node, &keys).await
    } else {
        Vec::new()
    };
    out.extend_from_slice(&exec::execute(node, name, args, keyed, false, None).await);
    if !absent.is_empty() {
        pubsub::notify_new(node, absent).await;
    }
    if let Some(args) = notify {
        pubsub::notify_write(node, &args, &out[start..]).await;
    }
    if map_reply {
        crate::resp::resp3::array_to_map(out, start);
    }
    if pair_reply {
        crate::resp::resp3::array_to_pairs(out, start);
    }
    if let Some(shape) = score_shape {
        crate::resp::resp3_scores::scores_to_doubles(out, start, shape);
    }
}

/// `RSFWD2 <cluster uid> <epoch> <sender> <deadline ms> <command...>`: a command forwarded by
/// a coordinator, to be applied before the deadline (unix ms, coordinator's clock) or not at
/// all. Executed here or refused with a not-applied error; never forwarded again. The old
/// form `RSFWD <cluster uid> <epoch> <sender> <command...>` (no deadline) is still served, for
/// coordinators of the previous release during a rolling upgrade.
async fn forwarded(node: &Arc<Node>, args: Vec<Vec<u8>>, v2: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(refused) = check_forwarded(node, &args[1], &args[2], &args[3]) {
        return refused;
    }
    let deadline_ms = if v2 {
        match std::str::from_utf8(&args[4])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(d) => Some(d),
            None => {
                error(&mut out, "ERR invalid deadline in forwarded command");
                return out;
            }
        }
    } else {
        None
    };
    let inner: Vec<Vec<u8>> = args[if v2 { 5 } else { 4 }..].to_vec();
    let name = String::from_utf8_lossy(&inner[0]).to_ascii_lowercase();
    match table::lookup(&name) {
        Some(spec) if table::arity_ok(spec.arity, inner.len()) => {}
        Some(_) => {
            error(&mut out, &table::arity_error(&name));
            return out;
        }
        None => {
            error(&mut out, &table::unknown_command_error(&inner));
            return out;
        }
    }
    match parse::parse_keyed(&name, &inner, keys::now_ms()) {
        Ok(Some(keyed)) => exec::execute(node, &name, inner, keyed, true, deadline_ms).await,
        Ok(None) => {
            error(&mut out, "ERR only keyed commands can be forwarded");
            out
        }
        Err(msg) => {
            error(&mut out, &msg.to_string());
            out
        }
    }
}

/// The checks every forwarded request passes first: the sender's cluster and an epoch this
/// node has installed (a newer one makes it fetch the sender's placement). Err: the refusal.
pub(crate) fn check_forwarded(
    node: &Arc<Node>,
    uid: &[u8],
    epoch: &[u8],
    sender: &[u8],
) -> Result<(), Vec<u8>> {
    let mut out = Vec::new();
    let uid = String::from_utf8_lossy(uid).to_string();
    let Some(epoch) = std::str::from_utf8(epoch)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        error(&mut out, "ERR invalid epoch in forwarded command");
        return Err(out);
    };
    let sender = String::from_utf8_lossy(sender).to_string();
    let routing = node.engine.routing();
    let mine = routing.epoch();
    if let Some(p) = &routing.placement
        && p.cluster_uid != uid
    {
        error(
            &mut out,
            &format!(
                "ERR forwarded command from cluster {uid}, this node belongs to {}",
                p.cluster_uid
            ),
        );
        return Err(out);
    }
    if routing.placement.is_none() || epoch > mine {
        if let Some(m) = routing
            .placement
            .as_ref()
            .and_then(|p| p.members.get(&sender))
        {
            let node = node.clone();
            let admin = m.admin_addr.clone();
            tokio::spawn(async move { node.refresh_placement_from(&admin).await });
        }
        error(&mut out, &format!("STALEEPOCH {mine} {epoch}"));
        return Err(out);
    }
    Ok(())
}
