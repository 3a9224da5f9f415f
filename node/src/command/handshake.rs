//! What clients send while connecting: HELLO (RESP2 or RESP3) and CONFIG GET.

use super::info::{REDIS_COMPAT_VERSION, auth};
use std::sync::atomic::Ordering;

use super::{ConnState, lower};
use crate::glob;
use crate::node::Node;
use crate::resp::reply;

/// HELLO [protover [AUTH user pass] [SETNAME name]]: switches the connection's protocol and
/// answers the server's description (a map in RESP3).
pub fn hello(node: &Node, conn: &mut ConnState, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let mut proto = conn.proto;
    if let Some(v) = args.get(1) {
        match std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(p @ (2 | 3)) => proto = p as u8,
            Some(_) => {
                reply::error(out, "NOPROTO sorry, this protocol version is not supported");
                return;
            }
            None => {
                reply::error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                );
                return;
            }
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        match lower(&args[i]).as_str() {
            "auth" if i + 2 < args.len() => {
                let mut tmp = Vec::new();
                auth(node, conn, &args[i + 1..i + 3], &mut tmp);
                if tmp.first() == Some(&b'-') {
                    out.extend_from_slice(&tmp);
                    return;
                }
                i += 3;
            }
            "setname" if i + 1 < args.len() => {
                let n = &args[i + 1];
                if n.iter().any(|&b| b <= b' ' || b > b'~') {
                    reply::error(
                        out,
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                    return;
                }
                name = Some(n.clone());
                i += 2;
            }
            other => {
                reply::error(out, &format!("ERR Syntax error in HELLO option '{other}'"));
                return;
            }
        }
    }
    if node.cfg.password.is_some() && !conn.authed {
        reply::error(
            out,
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
        return;
    }
    if let Some(n) = name {
        conn.client.set_name((!n.is_empty()).then_some(n));
    }
    conn.proto = proto;
    conn.client.set_proto(proto);
    map_len(out, proto, 7);
    reply::bulk(out, b"server");
    reply::bulk(out, b"redis");
    reply::bulk(out, b"version");
    reply::bulk(out, REDIS_COMPAT_VERSION.as_bytes());
    reply::bulk(out, b"proto");
    reply::int(out, proto as i64);
    reply::bulk(out, b"id");
    reply::int(out, conn.client.id as i64);
    reply::bulk(out, b"mode");
    reply::bulk(out, b"standalone");
    reply::bulk(out, b"role");
    reply::bulk(out, b"master");
    reply::bulk(out, b"modules");
    reply::array_len(out, 0);
}

/// The header of a map of `n` pairs: a RESP3 map, or a flat RESP2 array.
fn map_len(out: &mut Vec<u8>, proto: u8, n: usize) {
    if proto >= 3 {
        out.push(b'%');
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    } else {
        reply::array_len(out, n * 2);
    }
}

/// The settings CONFIG GET reports: what clients and tools probe, with this node's values.
fn settings(node: &Node) -> Vec<(&'static str, String)> {
    let durable = node.engine.config.durable;
    vec![
        ("databases", "1".into()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("save", String::new()),
        // Every acknowledged write is in the fsynced journal (unless --durability none).
        ("appendonly", if durable { "yes" } else { "no" }.into()),
        ("appendfsync", if durable { "always" } else { "no" }.into()),
        ("timeout", "0".into()),
        ("port", node.cfg.data_port().to_string()),
        ("bind", node.cfg.data_addr.ip().to_string()),
        ("cluster-enabled", "no".into()),
        ("proto-max-bulk-len", node.cfg.max_frame.to_string()),
    ]
    .into_iter()
    .chain(node.encodings.settings())
    .chain([(
        "notify-keyspace-events",
        crate::notify::format_flags(node.notify_flags.load(Ordering::Relaxed)),
    )])
    .collect()
}

/// The keyspace notification classes (per node, as in Redis Cluster: the node a client writes
/// through decides which events its writes send).
const NOTIFY: &str = "notify-keyspace-events";

/// CONFIG GET pattern [pattern ...]; CONFIG SET of the encoding thresholds and
/// notify-keyspace-events only (the node is otherwise configured by its flags and the operator).
pub fn config(node: &Node, conn: &ConnState, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "get" if args.len() >= 3 => {
            let all = settings(node);
            let found: Vec<&(&str, String)> = all
                .iter()
                .filter(|(k, _)| {
                    args[2..]
                        .iter()
                        .any(|p| glob::matches(&p.to_ascii_lowercase(), k.as_bytes()))
                })
                .collect();
            map_len(out, conn.proto, found.len());
            for (k, v) in found {
                reply::bulk(out, k.as_bytes());
                reply::bulk(out, v.as_bytes());
            }
        }
        "set" if args.len() >= 4 && args.len().is_multiple_of(2) => {
            // Only the encoding thresholds OBJECT ENCODING reports by can be set; all or none.
            // `save ""` (no RDB snapshots) is what the node is already, so it is accepted as is.
            let mut pairs: Vec<(String, &[u8])> = args[2..]
                .chunks_exact(2)
                .map(|p| (lower(&p[0]), p[1].as_slice()))
                .filter(|(n, v)| !(n == "save" && v.is_empty()))
                .collect();
            // Keyspace notifications: checked first, applied with the rest.
            let mut notify = None;
            for (n, v) in pairs.iter().filter(|(n, _)| n == NOTIFY) {
                match crate::notify::parse_flags(v) {
                    Some(f) => notify = Some(f),
                    None => {
                        reply::error(
                            out,
                            &format!(
                                "ERR CONFIG SET failed (possibly related to argument '{n}') - {}",
                                crate::notify::INVALID_CLASS
                            ),
                        );
                        return;
                    }
                }
            }
            pairs.retain(|(n, _)| n != NOTIFY);
            if let Some((name, _)) = pairs.iter().find(|(n, _)| !node.encodings.knows(n)) {
                reply::error(
                    out,
                    &format!("ERR CONFIG SET {name} is not supported by ringshift"),
                );
                return;
            }
            if pairs
                .iter()
                .any(|(n, v)| node.encodings.set(n, v) == Some(false))
            {
                reply::error(out, "ERR CONFIG SET failed: argument must be a number");
                return;
            }
            if let Some(f) = notify {
                node.notify_flags.store(f, Ordering::Relaxed);
            }
            reply::simple(out, "OK");
        }
        "set" | "resetstat" | "rewrite" => {
            reply::error(out, "ERR CONFIG SET is not supported by ringshift")
        }
        "get" => reply::error(
            out,
            "ERR wrong number of arguments for 'config|get' command",
        ),
        other => reply::error(
            out,
            &format!("ERR unknown subcommand '{other}'. Try CONFIG HELP."),
        ),
    }
}
