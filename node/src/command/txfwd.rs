//! Transactions and WATCHes of keys another node owns: one hop to the owner, like forwarded
//! commands (`RSFWD2`), with the same cluster and epoch checks and the same "not applied"
//! answers.
//!
//! `RSWATCH <uid> <epoch> <sender> <key>...` takes the WATCH on the owner: it answers, per key,
//! its writer clock and whether the key is live, plus its boot id. The owner keeps stamping
//! writes for `REMOTE_WATCH_HOLD` after it (afterwards a write it does not stamp raises its
//! floor, so an older WATCH aborts: never a missed modification).
//!
//! `RSFWDTX <uid> <epoch> <sender> <deadline> <nwatch> (<key> <stamp> <live> <boot>)*
//! (<argc> <arg>...)*` carries the commands the owner's writer runs (keyed ones and flushes;
//! the coordinator answers the others) and the watches. The owner applies it before the
//! deadline or not at all; it answers a null array (watch aborted), a not-applied error, or the
//! array of its commands' replies.

use std::sync::Arc;
use std::time::Instant;

use super::exec;
use super::multi::{Queued, TxEnd, Watch};
use crate::engine::tx::{TxReply, WatchedKey};
use crate::node::Node;
use crate::resp::reply;

/// How long an owner keeps stamping writes after a remote WATCH.
const REMOTE_WATCH_HOLD: std::time::Duration = std::time::Duration::from_secs(120);

pub enum TxForwarded {
    Done(TxEnd),
    /// Not applied; retry with this error if the budget runs out.
    Retry(String),
}

/// This process's id in remote watches: a restarted owner has a new one (its clock restarts).
pub fn boot_id(node: &Node) -> String {
    format!("{}-{}", node.cfg.member, node.started_ms)
}

fn header(node: &Node, epoch: &str) -> Result<Vec<Vec<u8>>, String> {
    let routing = node.engine.routing();
    let Some(p) = routing.placement.as_ref() else {
        return Err("CLUSTERDOWN no placement installed on this node".into());
    };
    Ok(vec![
        p.cluster_uid.as_bytes().to_vec(),
        epoch.as_bytes().to_vec(),
        node.cfg.member.as_bytes().to_vec(),
    ])
}

/// Sends a frame to the owner; Err: not applied (retry), with the error to give up with.
async fn call(
    node: &Arc<Node>,
    addr: &str,
    epoch: u64,
    frame: &[u8],
) -> Result<Vec<u8>, TxForwarded> {
    node.metrics.forwarded.inc();
    let sent = Instant::now();
    let answer = node.pool.call(addr, frame).await;
    node.metrics.forward_latency.observe(sent.elapsed());
    match answer {
        Ok(raw) => match exec::classify(&raw) {
            None => Ok(raw),
            Some(kind) => {
                let text = String::from_utf8_lossy(&raw[1..]).trim_end().to_string();
                if let exec::NotApplied::Moved { epoch: theirs } = kind
                    && theirs > epoch
                {
                    let admin = node.engine.routing().placement.as_ref().and_then(|p| {
                        p.members
                            .values()
                            .find(|m| m.data_addr == addr)
                            .map(|m| m.admin_addr.clone())
                    });
                    if let Some(admin) = admin {
                        node.refresh_placement_from(&admin).await;
                    }
                }
                Err(TxForwarded::Retry(text))
            }
        },
        Err(e @ crate::pool::PeerError::Connect { .. }) => Err(TxForwarded::Retry(format!(
            "CLUSTERDOWN owner unreachable: {e}"
        ))),
        Err(e) => {
            node.metrics.error("forward_ambiguous");
            Err(TxForwarded::Done(TxEnd::Error(format!(
                "ERR forwarding failed, the transaction may or may not have been applied: {e}"
            ))))
        }
    }
}

/// WATCH of keys owned by the node at `addr`.
pub async fn remote_watch(
    node: &Arc<Node>,
    addr: &str,
    epoch: u64,
    keys: &[Vec<u8>],
) -> Result<Vec<Watch>, String> {
    let mut args = vec![b"RSWATCH".to_vec()];
    args.extend(header(node, &epoch.to_string())?);
    args.extend(keys.iter().cloned());
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let mut frame = Vec::new();
    reply::command(&mut frame, &refs);
    let raw = match call(node, addr, epoch, &frame).await {
        Ok(raw) => raw,
        Err(TxForwarded::Retry(msg)) => return Err(msg),
        Err(TxForwarded::Done(_)) => return Err("ERR WATCH could not reach the owner".into()),
    };
    if raw.first() == Some(&b'-') {
        return Err(String::from_utf8_lossy(&raw[1..]).trim_end().to_string());
    }
    parse_watch_reply(&raw, keys).ok_or_else(|| "ERR unexpected WATCH reply from the owner".into())
}

/// `[boot, stamp, live...]` as the owner answers RSWATCH.
fn parse_watch_reply(raw: &[u8], keys: &[Vec<u8>]) -> Option<Vec<Watch>> {
    let items = reply::array_items(raw)?;
    let boot = bulk_text(items.first()?)?;
    let stamp: u64 = bulk_text(items.get(1)?)?.parse().ok()?;
    let lives = items.get(2..)?;
    if lives.len() != keys.len() {
        return None;
    }
    keys.iter()
        .zip(lives)
        .map(|(k, l)| {
            Some(Watch {
                key: WatchedKey {
                    key: k.clone(),
                    stamp,
                    live: reply::as_int(l)? == 1,
                },
                remote: Some(boot.clone()),
            })
        })
        .collect()
}

fn bulk_text(raw: &[u8]) -> Option<String> {
    let body = raw.strip_prefix(b"$")?;
    let nl = body.iter().position(|&c| c == b'\r')?;
    let len: usize = std::str::from_utf8(&body[..nl]).ok()?.parse().ok()?;
    let data = body.get(nl + 2..nl + 2 + len)?;
    Some(String::from_utf8_lossy(data).into_owned())
}

/// Sends a transaction to its owner. Only the commands the owner's writer runs go; the
/// owner's replies come back in their order.
pub async fn forward_tx(
    node: &Arc<Node>,
    addr: &str,
    epoch: u64,
    queued: &[Queued],
    watched: &[Watch],
) -> TxForwarded {
    // The owner applies nothing at or after this moment: by then this call has timed out.
    let deadline = (node.engine.now_ms() + crate::pool::IO_TIMEOUT.as_millis() as u64).to_string();
    let mut args = vec![b"RSFWDTX".to_vec()];
    match header(node, &epoch.to_string()) {
        Ok(h) => args.extend(h),
        Err(msg) => return TxForwarded::Retry(msg),
    }
    args.push(deadline.into_bytes());
    args.push(watched.len().to_string().into_bytes());
    for w in watched {
        args.push(w.key.key.clone());
        args.push(w.key.stamp.to_string().into_bytes());
        args.push(if w.key.live {
            b"1".to_vec()
        } else {
            b"0".to_vec()
        });
        // A watch taken on this node (which owned the key then) has no boot id the owner
        // could match: the key moved, and the owner aborts.
        args.push(w.remote.clone().unwrap_or_default().into_bytes());
    }
    for q in queued.iter().filter(|q| q.for_writer()) {
        args.push(q.args.len().to_string().into_bytes());
        args.extend(q.args.iter().cloned());
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let mut frame = Vec::new();
    reply::command(&mut frame, &refs);
    let raw = match call(node, addr, epoch, &frame).await {
        Ok(raw) => raw,
        Err(f) => return f,
    };
    TxForwarded::Done(end_of(&raw))
}

/// The owner's answer as a transaction end.
fn end_of(raw: &[u8]) -> TxEnd {
    if raw.starts_with(b"*-1\r\n") {
        return TxEnd::Aborted;
    }
    if raw.first() == Some(&b'-') {
        return TxEnd::Error(String::from_utf8_lossy(&raw[1..]).trim_end().to_string());
    }
    match reply::array_items(raw) {
        Some(items) => TxEnd::Applied(
            items
                .into_iter()
                .map(|i| TxReply::Raw(i.to_vec()))
                .collect(),
        ),
        None => TxEnd::Error("ERR unexpected transaction reply from the owner".into()),
    }
}

/// Parses an RSFWDTX body (after the deadline): watches and commands.
fn parse_tx(args: &[Vec<u8>], boot: &str) -> Result<(Vec<Watch>, Vec<Queued>, bool), String> {
    let bad = || "ERR malformed forwarded transaction".to_string();
    let num = |a: &[u8]| -> Option<usize> { std::str::from_utf8(a).ok()?.parse().ok() };
    let nwatch = num(args.first().ok_or_else(bad)?).ok_or_else(bad)?;
    let mut pos = 1;
    let mut watched = Vec::with_capacity(nwatch.min(1024));
    // A watch taken on another process than this one: the key moved (or this node restarted).
    let mut foreign = false;
    for _ in 0..nwatch {
        let w = args.get(pos..pos + 4).ok_or_else(bad)?;
        let stamp = std::str::from_utf8(&w[1])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if w[3] != boot.as_bytes() {
            foreign = true;
        }
        watched.push(Watch {
            key: WatchedKey {
                key: w[0].clone(),
                stamp,
                live: w[2] == b"1",
            },
            remote: None,
        });
        pos += 4;
    }
    let mut queued = Vec::new();
    while pos < args.len() {
        let argc = num(&args[pos]).ok_or_else(bad)?;
        let cmd = args.get(pos + 1..pos + 1 + argc).ok_or_else(bad)?.to_vec();
        queued.push(Queued::parse(cmd).map_err(|e| e.to_string())?);
        pos += 1 + argc;
    }
    Ok((watched, queued, foreign))
}

/// RSFWDTX on the owner.
pub async fn serve_forwarded_tx(node: &Arc<Node>, args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    if args.len() < 6 {
        reply::error(&mut out, &super::table::arity_error("rsfwdtx"));
        return out;
    }
    if let Err(refused) = super::check_forwarded(node, &args[1], &args[2], &args[3]) {
        return refused;
    }
    let Some(deadline) = std::str::from_utf8(&args[4])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        reply::error(&mut out, "ERR invalid deadline in forwarded command");
        return out;
    };
    let (watched, queued, foreign) = match parse_tx(&args[5..], &boot_id(node)) {
        Ok(p) => p,
        Err(msg) => {
            reply::error(&mut out, &msg);
            return out;
        }
    };
    if foreign {
        reply::nil_array(&mut out);
        return out;
    }
    if queued.iter().any(|q| !q.for_writer()) {
        reply::error(&mut out, "ERR only keyed commands can be forwarded");
        return out;
    }
    match super::multi::run_transaction(node, 2, &queued, &watched, Some(deadline)).await {
        TxEnd::Aborted => reply::nil_array(&mut out),
        TxEnd::Error(msg) => reply::error(&mut out, &msg),
        TxEnd::Applied(replies) => {
            reply::array_len(&mut out, replies.len());
            for r in replies {
                match r {
                    TxReply::Data(d) => exec::encode_data_into(&mut out, d),
                    TxReply::Raw(raw) => out.extend_from_slice(&raw),
                }
            }
        }
    }
    out
}

/// RSWATCH on the owner.
pub async fn serve_remote_watch(node: &Arc<Node>, args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    if args.len() < 5 {
        reply::error(&mut out, &super::table::arity_error("rswatch"));
        return out;
    }
    if let Err(refused) = super::check_forwarded(node, &args[1], &args[2], &args[3]) {
        return refused;
    }
    let keys = &args[4..];
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    match exec::route_keys(node, &refs) {
        crate::routing::Route::Local => {}
        crate::routing::Route::Fenced {
            epoch,
            migration_uid,
        } => {
            reply::error(&mut out, &exec::fenced_error(epoch, &migration_uid));
            return out;
        }
        crate::routing::Route::Remote {
            epoch,
            owner,
            data_addr,
        } => {
            reply::error(
                &mut out,
                &exec::moved_error(epoch, &owner, data_addr.as_deref()),
            );
            return out;
        }
        other => {
            reply::error(&mut out, &exec::route_error(&other).unwrap_or_default());
            return out;
        }
    }
    // Stamping goes on for a while: the coordinator's EXEC comes later.
    let hold = node.engine.start_watching();
    tokio::spawn(async move {
        tokio::time::sleep(REMOTE_WATCH_HOLD).await;
        drop(hold);
    });
    match node.engine.watch(keys) {
        Ok(w) => {
            reply::array_len(&mut out, 2 + w.len());
            reply::bulk(&mut out, boot_id(node).as_bytes());
            reply::bulk(
                &mut out,
                w.first().map_or(0, |w| w.stamp).to_string().as_bytes(),
            );
            for k in w {
                reply::int(&mut out, i64::from(k.live));
            }
        }
        Err(e) => reply::error(&mut out, &format!("ERR {e}")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_forwarded_transaction_body_parses_back_into_watches_and_commands() {
        let body = a(&[
            "1", "k", "7", "1", "boot", "3", "SET", "k", "v", "2", "GET", "k",
        ]);
        let (w, q, foreign) = parse_tx(&body, "boot").expect("parses");
        assert!(!foreign);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key.stamp, 7);
        assert!(w[0].key.live);
        assert_eq!(q.len(), 2);
        assert_eq!(q[1].args, a(&["GET", "k"]));
        let (_, _, foreign) = parse_tx(&body, "other-boot").expect("parses");
        assert!(foreign, "a watch taken by another process must abort");
        assert!(parse_tx(&a(&["1", "k"]), "boot").is_err());
        assert!(parse_tx(&a(&["0", "5", "GET"]), "boot").is_err());
    }

    #[test]
    fn the_owners_answers_map_to_transaction_ends() {
        assert!(matches!(end_of(b"*-1\r\n"), TxEnd::Aborted));
        assert!(matches!(end_of(b"-ERR x\r\n"), TxEnd::Error(m) if m == "ERR x"));
        match end_of(b"*2\r\n+OK\r\n:3\r\n") {
            TxEnd::Applied(r) => assert_eq!(r.len(), 2),
            _ => panic!("expected replies"),
        }
    }

    #[test]
    fn a_watch_reply_gives_each_key_its_liveness_and_the_boot() {
        let keys = a(&["x", "y"]);
        let w = parse_watch_reply(b"*4\r\n$2\r\nb1\r\n$2\r\n42\r\n:1\r\n:0\r\n", &keys)
            .expect("parses");
        assert_eq!(w[0].key.stamp, 42);
        assert!(w[0].key.live && !w[1].key.live);
        assert_eq!(w[1].remote.as_deref(), Some("b1"));
        assert!(parse_watch_reply(b"*3\r\n$2\r\nb1\r\n$2\r\n42\r\n:1\r\n", &keys).is_none());
    }
}
