//! SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB and the internal
//! RSPUBLISH.
//!
//! Any member is an entry point: PUBLISH delivers to this node's subscribers and sends
//! `RSPUBLISH <cluster uid> <sender> <channel> <message>` to every other member of the
//! installed placement (their data addresses), which deliver to theirs. PUBLISH answers the
//! cluster-wide count: this node's receivers plus what each member that answered in time
//! reported (a member that cannot be reached counts 0). PUBSUB CHANNELS/NUMSUB/NUMPAT
//! answer for this node's subscribers only, as Redis Cluster's do.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{ConnState, lower};
use crate::node::Node;
use crate::notify;
use crate::pubsub::Subscriber;
use crate::resp::reply;

/// How long PUBLISH waits for a member's count.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a RESP2 connection with subscriptions may run `name` (Redis's rule).
pub fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    )
}

pub fn subscribed_error(name: &str) -> String {
    format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    )
}

/// Whether `conn` is in RESP2 subscribed mode.
pub fn in_subscribed_mode(conn: &ConnState) -> bool {
    conn.proto < 3 && conn.subs.as_ref().is_some_and(|s| s.count() > 0)
}

fn push_header(proto: u8, n: usize, out: &mut Vec<u8>) {
    out.push(if proto >= 3 { b'>' } else { b'*' });
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn confirm(proto: u8, kind: &str, name: Option<&[u8]>, count: usize, out: &mut Vec<u8>) {
    push_header(proto, 3, out);
    reply::bulk(out, kind.as_bytes());
    match name {
        Some(n) => reply::bulk(out, n),
        None => reply::nil(out),
    }
    reply::int(out, count as i64);
}

/// Handles a pub/sub command; None if `name` is not one.
pub async fn command(
    node: &Arc<Node>,
    conn: &mut ConnState,
    name: &str,
    args: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Option<()> {
    let proto = conn.proto;
    match name {
        "subscribe" | "psubscribe" => {
            let pattern = name == "psubscribe";
            let id = conn.client.id;
            let subs = conn
                .subs
                .get_or_insert_with(|| Subscriber::new(node.pubsub.clone(), id));
            for ch in &args[1..] {
                subs.subscribe(pattern, ch);
                confirm(proto, name, Some(ch), subs.count(), out);
            }
        }
        "unsubscribe" | "punsubscribe" => {
            let pattern = name == "punsubscribe";
            let names: Vec<Vec<u8>> = if args.len() > 1 {
                args[1..].to_vec()
            } else {
                conn.subs
                    .as_ref()
                    .map(|s| s.all(pattern))
                    .unwrap_or_default()
            };
            if names.is_empty() {
                let count = conn.subs.as_ref().map_or(0, Subscriber::count);
                confirm(proto, name, None, count, out);
            }
            for ch in names {
                let count = match conn.subs.as_mut() {
                    Some(s) => {
                        s.unsubscribe(pattern, &ch);
                        s.count()
                    }
                    None => 0,
                };
                confirm(proto, name, Some(&ch), count, out);
            }
        }
        "ping" if in_subscribed_mode(conn) => {
            if args.len() > 2 {
                reply::error(out, &super::table::arity_error("ping"));
            } else {
                reply::array_len(out, 2);
                reply::bulk(out, b"pong");
                reply::bulk(out, args.get(1).map_or(&[][..], Vec::as_slice));
            }
        }
        "publish" => {
            let n = publish(node, &args[1], &args[2]).await;
            // A message to this very connection goes before the reply, as in Redis.
            deliver(conn, out);
            reply::int(out, n as i64);
        }
        "rspublish" => rspublish(node, args, out),
        "pubsub" => pubsub(node, args, out),
        _ => return None,
    }
    Some(())
}

/// Appends the connection's waiting messages in its protocol; true if it fell behind (its
/// mailbox overflowed) and must be disconnected.
pub fn deliver(conn: &ConnState, out: &mut Vec<u8>) -> bool {
    let Some(s) = &conn.subs else {
        return false;
    };
    if s.mailbox.overflowed() {
        tracing::info!(
            client = conn.client.id,
            "subscriber disconnected: it fell behind by more than the pubsub buffer limit"
        );
        return true;
    }
    for m in s.mailbox.take() {
        m.encode(conn.proto, out);
    }
    false
}

/// Publishes the keyspace notifications of a write this node answered (`raw`: its RESP2
/// reply), as PUBLISH does. Nothing to do while notify-keyspace-events is empty.
pub async fn notify_write(node: &Arc<Node>, args: &[Vec<u8>], raw: &[u8]) {
    if node.notify_flags.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(first) = args.first() else {
        return;
    };
    let events = notify::events_of(&lower(first), args, raw, crate::keys::now_ms());
    notify_events(node, events).await;
}

async fn notify_events(node: &Arc<Node>, events: Vec<notify::Event>) {
    let flags = node.notify_flags.load(Ordering::Relaxed);
    for e in events {
        for (channel, message) in notify::messages(flags, &e) {
            publish(node, &channel, &message).await;
        }
    }
}

/// The distinct `keys` that do not exist now, wherever they live (a write's keys before it
/// runs, while the `n` class is on).
pub async fn absent_keys(node: &Arc<Node>, keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut absent = Vec::new();
    for key in keys {
        if !absent.contains(key) && !exists(node, key).await {
            absent.push(key.clone());
        }
    }
    absent
}

async fn exists(node: &Arc<Node>, key: &[u8]) -> bool {
    let args = vec![b"exists".to_vec(), key.to_vec()];
    let keyed = super::parse::Keyed::Read(super::parse::ReadCmd::Exists(vec![key.to_vec()]));
    // (An error reply counts as "exists": no `new` event is sent on a doubt.)
    super::exec::execute(node, "exists", args, keyed, false, None).await != b":0\r\n"
}

/// Sends `new` (Redis' dbAdd event) for the keys of `absent_before` that a write created:
/// absent before it ran and present now.
pub async fn notify_new(node: &Arc<Node>, absent_before: Vec<Vec<u8>>) {
    let mut events = Vec::new();
    for key in absent_before {
        if exists(node, &key).await {
            events.push(notify::Event {
                class: notify::NEW,
                name: "new",
                key,
            });
        }
    }
    notify_events(node, events).await;
}

/// Publishes `expired` for the keys the expiry sweep deleted, as the engine reports them.
pub async fn publish_expired(node: Arc<Node>, mut feed: tokio::sync::mpsc::Receiver<Vec<Vec<u8>>>) {
    while let Some(keys) = feed.recv().await {
        let events = keys
            .into_iter()
            .map(|key| notify::Event {
                class: notify::EXPIRED,
                name: "expired",
                key,
            })
            .collect();
        notify_events(&node, events).await;
    }
}

/// Delivers here and on every other member; the cluster-wide count of receivers.
pub async fn publish(node: &Arc<Node>, channel: &[u8], message: &[u8]) -> usize {
    let local = node.pubsub.publish(channel, message);
    let routing = node.engine.routing();
    let Some(p) = routing.placement.as_ref() else {
        return local;
    };
    let mut frame = Vec::new();
    reply::command(
        &mut frame,
        &[
            b"RSPUBLISH",
            p.cluster_uid.as_bytes(),
            node.cfg.member.as_bytes(),
            channel,
            message,
        ],
    );
    let frame = Arc::new(frame);
    let calls: Vec<_> = p
        .members
        .iter()
        .filter(|(name, _)| **name != node.cfg.member)
        .map(|(name, m)| {
            let node = node.clone();
            let frame = frame.clone();
            let addr = m.data_addr.clone();
            let name = name.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(PEER_TIMEOUT, node.pool.call(&addr, &frame)).await {
                    Ok(Ok(raw)) => match reply::as_int(&raw) {
                        Some(n) => n.max(0) as usize,
                        None => {
                            tracing::debug!(member = %name, "member refused a publish");
                            0
                        }
                    },
                    Ok(Err(e)) => {
                        tracing::debug!(member = %name, error = %e, "publish not delivered");
                        0
                    }
                    Err(_) => {
                        tracing::debug!(member = %name, "publish timed out");
                        0
                    }
                }
            })
        })
        .collect();
    let mut total = local;
    for c in calls {
        total += c.await.unwrap_or(0);
    }
    total
}

/// A member's PUBLISH: delivered to this node's subscribers only.
fn rspublish(node: &Node, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let routing = node.engine.routing();
    if let Some(p) = routing.placement.as_ref()
        && p.cluster_uid.as_bytes() != args[1].as_slice()
    {
        reply::error(
            out,
            &format!(
                "ERR publish from cluster {}, this node belongs to {}",
                String::from_utf8_lossy(&args[1]),
                p.cluster_uid
            ),
        );
        return;
    }
    let n = node.pubsub.publish(&args[3], &args[4]);
    reply::int(out, n as i64);
}

fn pubsub(node: &Node, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let sub = lower(&args[1]);
    let hub = &node.pubsub;
    match (sub.as_str(), args.len()) {
        ("channels", 2 | 3) => {
            let chans = hub.channels(args.get(2).map(Vec::as_slice));
            reply::array_len(out, chans.len());
            for c in chans {
                reply::bulk(out, &c);
            }
        }
        ("numsub", _) => {
            reply::array_len(out, 2 * (args.len() - 2));
            for c in &args[2..] {
                reply::bulk(out, c);
                reply::int(out, hub.numsub(c) as i64);
            }
        }
        ("numpat", 2) => reply::int(out, hub.numpat() as i64),
        ("shardchannels", 2 | 3) => reply::array_len(out, 0),
        ("shardnumsub", _) => {
            reply::array_len(out, 2 * (args.len() - 2));
            for c in &args[2..] {
                reply::bulk(out, c);
                reply::int(out, 0);
            }
        }
        ("help", 2) => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "HELP",
                "    Prints this help.",
            ];
            reply::array_len(out, lines.len());
            for l in lines {
                reply::simple(out, l);
            }
        }
        ("numpat" | "help", _) => reply::error(
            out,
            &format!("ERR wrong number of arguments for 'pubsub|{sub}' command"),
        ),
        ("channels" | "shardchannels", _) => reply::error(
            out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&args[1])
            ),
        ),
        _ => reply::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&args[1])
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribed_mode_allows_only_redis_s_commands() {
        for ok in ["subscribe", "punsubscribe", "ping", "quit", "reset"] {
            assert!(allowed_when_subscribed(ok));
        }
        assert!(!allowed_when_subscribed("get"));
        assert!(!allowed_when_subscribed("publish"));
        assert_eq!(
            subscribed_error("get"),
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        );
    }

    #[test]
    fn confirmations_are_arrays_in_resp2_and_pushes_in_resp3() {
        let mut out = Vec::new();
        confirm(2, "subscribe", Some(b"a"), 1, &mut out);
        assert_eq!(out, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n".to_vec());
        out.clear();
        confirm(3, "unsubscribe", None, 0, &mut out);
        assert_eq!(out, b">3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n".to_vec());
    }
}
