//! Command dispatch for the data port.

pub mod exec;
mod info;
pub mod parse;
pub mod table;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::engine::{Op, Outcome};
use crate::keys;
use crate::node::Node;
use crate::resp::reply;
use crate::routing::Route;

use parse::Keyed;

/// A reply that will be ready once a write is durable (pipelined writes share a group commit).
pub type PendingReply = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

/// A connection's pipelined writes awaiting their replies, and the gate that keeps them in
/// order: once the writer refuses one of them (a fence or a placement change came between the
/// route check and the write), it refuses every later one of this connection too, so none is
/// applied before the refused one has been retried and answered.
#[derive(Default)]
pub struct Pipeline {
    replies: Vec<PendingReply>,
    gate: Arc<std::sync::atomic::AtomicBool>,
}

pub struct ConnState {
    pub id: u64,
    pub authed: bool,
    pub name: Option<Vec<u8>>,
}

pub enum Flow {
    Continue,
    Close,
}

fn error(out: &mut Vec<u8>, msg: &str) {
    reply::error(out, msg);
}

/// Appends the replies of every pending write, in order (a refused one is retried on the slow
/// path before the next one is looked at). Nothing of this connection is queued afterwards, so
/// the gate opens again.
pub async fn flush(pending: &mut Pipeline, out: &mut Vec<u8>) {
    if pending.replies.is_empty() {
        return;
    }
    for p in pending.replies.drain(..) {
        out.extend_from_slice(&p.await);
    }
    pending
        .gate
        .store(false, std::sync::atomic::Ordering::Release);
}

/// Handles one request. Local writes are submitted at once and their replies queued in
/// `pending`; anything else first waits for those, so replies keep the request order.
pub async fn handle(
    node: &Arc<Node>,
    conn: &mut ConnState,
    args: Vec<Vec<u8>>,
    pending: &mut Pipeline,
    out: &mut Vec<u8>,
) -> Flow {
    let Some(first) = args.first() else {
        return Flow::Continue;
    };
    let Some(index) = table::index(first) else {
        flush(pending, out).await;
        node.metrics.error("unknown_command");
        error(out, &table::unknown_command_error(&args));
        return Flow::Continue;
    };
    let spec = &table::COMMANDS[index];
    let name = spec.name;
    if !table::arity_ok(spec.arity, args.len()) {
        flush(pending, out).await;
        node.metrics.error("arity");
        error(out, &table::arity_error(name));
        return Flow::Continue;
    }
    let needs_auth = node.cfg.password.is_some() && !conn.authed;
    if needs_auth && !matches!(name, "auth" | "hello" | "quit") {
        flush(pending, out).await;
        error(out, "NOAUTH Authentication required.");
        return Flow::Continue;
    }
    node.metrics.op_index(index);
    if name == "rsfwd" {
        flush(pending, out).await;
        out.extend_from_slice(&forwarded(node, args).await);
        return Flow::Continue;
    }
    match parse::parse_keyed(name, &args, keys::now_ms()) {
        Err(msg) => {
            flush(pending, out).await;
            error(out, &msg);
            Flow::Continue
        }
        Ok(Some(keyed)) => {
            keyed_command(node, name, args, keyed, pending, out).await;
            Flow::Continue
        }
        Ok(None) => {
            flush(pending, out).await;
            info::connection_command(node, conn, name, &args, out)
        }
    }
}

async fn keyed_command(
    node: &Arc<Node>,
    name: &str,
    args: Vec<Vec<u8>>,
    keyed: Keyed,
    pending: &mut Pipeline,
    out: &mut Vec<u8>,
) {
    let route = exec::route_keys(node, &keyed.keys());
    if route == Route::Local
        && let Keyed::Read(r) = &keyed
    {
        flush(pending, out).await;
        exec::local_read(node, r, out);
        return;
    }
    if route == Route::Local
        && let Keyed::Write(w) = keyed
    {
        let rx = node
            .engine
            .submit_ordered(Op::Data(w), pending.gate.clone());
        let node = node.clone();
        pending.replies.push(Box::pin(async move {
            match rx.await {
                Ok(Outcome::Data(r)) => exec::encode_data(r),
                // Not applied (fence or placement changed meanwhile): take the slow path.
                Ok(Outcome::NotServed(_, w)) => {
                    exec::run_group(&node, args, Keyed::Write(w), false).await
                }
                Ok(Outcome::Failed(msg)) => {
                    let mut o = Vec::new();
                    reply::error(&mut o, &format!("ERR storage failure: {msg}"));
                    o
                }
                _ => {
                    let mut o = Vec::new();
                    reply::error(&mut o, "ERR storage writer unavailable");
                    o
                }
            }
        }));
        return;
    }
    flush(pending, out).await;
    out.extend_from_slice(&exec::execute(node, name, args, keyed, false).await);
}

/// `RSFWD <cluster uid> <epoch> <sender> <command...>`: a command forwarded by a coordinator.
/// Executed here or refused with a not-applied error; never forwarded again.
async fn forwarded(node: &Arc<Node>, args: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let uid = String::from_utf8_lossy(&args[1]).to_string();
    let Some(epoch) = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        error(&mut out, "ERR invalid epoch in forwarded command");
        return out;
    };
    let sender = String::from_utf8_lossy(&args[3]).to_string();
    let inner: Vec<Vec<u8>> = args[4..].to_vec();
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
        return out;
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
        return out;
    }
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
        Ok(Some(keyed)) => exec::execute(node, &name, inner, keyed, true).await,
        Ok(None) => {
            error(&mut out, "ERR only keyed commands can be forwarded");
            out
        }
        Err(msg) => {
            error(&mut out, &msg);
            out
        }
    }
}
