//! Commands that concern the connection or the whole node rather than one key: PING, ECHO,
//! HELLO, AUTH, QUIT, SELECT, CLIENT, COMMAND, CONFIG, INFO, DBSIZE, SCAN.

use std::sync::Arc;

use super::{ConnState, Flow, lower, table};
use crate::glob;
use crate::node::Node;
use crate::resp::reply;

pub fn connection_command(
    node: &Arc<Node>,
    conn: &mut ConnState,
    name: &str,
    args: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Flow {
    match name {
        "ping" => match args.get(1) {
            Some(m) if args.len() == 2 => reply::bulk(out, m),
            Some(_) => reply::error(out, &table::arity_error("ping")),
            None => reply::simple(out, "PONG"),
        },
        "echo" => reply::bulk(out, &args[1]),
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            reply::array_len(out, 2);
            reply::bulk(out, now.as_secs().to_string().as_bytes());
            reply::bulk(out, now.subsec_micros().to_string().as_bytes());
        }
        "quit" => {
            reply::simple(out, "OK");
            return Flow::Close;
        }
        "auth" => auth(node, conn, &args[1..], out),
        "hello" => super::handshake::hello(node, conn, args, out),
        "select" => match std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(0) => reply::simple(out, "OK"),
            Some(_) => reply::error(out, "ERR DB index is out of range"),
            None => reply::error(out, "ERR value is not an integer or out of range"),
        },
        "client" if args.len() == 3 && args[1].eq_ignore_ascii_case(b"reply") => {
            conn.reply.client_reply(&args[2], out);
        }
        "client" => {
            let now = node.engine.now_ms();
            let after = super::clients::client(&node.clients, &conn.client, args, now, out);
            if let super::clients::After::Close = after {
                return Flow::Close;
            }
        }
        "command" => command(args, conn.proto, out),
        "config" => super::handshake::config(node, conn, args, out),
        "info" => reply::bulk(out, info(node, conn).as_bytes()),
        "dbsize" => {
            let owned = node.engine.routing().owned_ranges();
            match node.engine.dbsize(&owned) {
                Ok(n) => reply::int(out, n as i64),
                Err(e) => reply::error(out, &format!("ERR storage failure: {e}")),
            }
        }
        "scan" => scan(node, args, out),
        other => reply::error(out, &format!("ERR unknown command '{other}'")),
    }
    Flow::Continue
}

pub fn auth(node: &Node, conn: &mut ConnState, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let Some(pw) = &node.cfg.password else {
        reply::error(
            out,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
        return;
    };
    let (user, given) = match args {
        [p] => (b"default".as_slice(), p),
        [u, p] => (u.as_slice(), p),
        _ => {
            reply::error(out, "ERR syntax error");
            return;
        }
    };
    if user == b"default" && same_secret(given, pw.as_bytes()) {
        conn.authed = true;
        reply::simple(out, "OK");
    } else {
        reply::error(
            out,
            "WRONGPASS invalid username-password pair or user is disabled.",
        );
    }
}

/// Compares a password in time that does not depend on where it differs (as Redis does), so
/// response timing does not reveal a prefix.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len()
        && given
            .iter()
            .zip(secret)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The Redis version we answer to handshakes with (the command set is a subset of it).
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

fn command_info(out: &mut Vec<u8>, spec: &table::CommandSpec) {
    reply::array_len(out, 6);
    reply::bulk(out, spec.name.as_bytes());
    reply::int(out, spec.arity);
    reply::array_len(out, spec.flags.len());
    for f in spec.flags {
        reply::simple(out, f);
    }
    reply::int(out, spec.first_key);
    reply::int(out, spec.last_key);
    reply::int(out, spec.step);
}

fn command(args: &[Vec<u8>], proto: u8, out: &mut Vec<u8>) {
    let visible: Vec<&table::CommandSpec> = table::COMMANDS
        .iter()
        .filter(|c| !c.flags.contains(&"internal"))
        .collect();
    match args.get(1).map(|a| lower(a)).as_deref() {
        None => {
            reply::array_len(out, visible.len());
            for c in visible {
                command_info(out, c);
            }
        }
        Some("count") => reply::int(out, visible.len() as i64),
        Some("info") => {
            reply::array_len(out, args.len() - 2);
            for a in &args[2..] {
                match table::lookup(&lower(a)) {
                    Some(c) => command_info(out, c),
                    None => reply::nil(out),
                }
            }
        }
        // redis-cli asks for docs to build its hints; having none is a valid answer.
        // (A map in RESP3.)
        Some("docs") if proto >= 3 => out.extend_from_slice(b"%0\r\n"),
        Some("docs") => reply::array_len(out, 0),
        Some(other) => reply::error(
            out,
            &format!("ERR unknown subcommand '{other}'. Try COMMAND HELP."),
        ),
    }
}

fn info(node: &Node, _conn: &ConnState) -> String {
    let routing = node.engine.routing();
    let e = &node.engine;
    let mut s = String::new();
    s.push_str("# Server\r\n");
    s.push_str(&format!("redis_version:{REDIS_COMPAT_VERSION}\r\n"));
    s.push_str(&format!(
        "ringshift_version:{}\r\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str("redis_mode:standalone\r\n");
    s.push_str(&format!("tcp_port:{}\r\n", node.cfg.data_port()));
    s.push_str(&format!(
        "uptime_in_seconds:{}\r\n",
        node.started.elapsed().as_secs()
    ));
    // What client libraries read at startup (BullMQ and Sidekiq check the eviction policy).
    s.push_str("\r\n# Clients\r\n");
    s.push_str(&format!("connected_clients:{}\r\n", node.clients.count()));
    s.push_str(&format!(
        "blocked_clients:{}\r\n",
        node.metrics.blocked_clients.get()
    ));
    s.push_str("\r\n# Memory\r\n");
    s.push_str("maxmemory:0\r\n");
    s.push_str("maxmemory_policy:noeviction\r\n");
    s.push_str("\r\n# Persistence\r\n");
    s.push_str(&format!(
        "ringshift_durability:{}\r\n",
        if e.config.durable { "durable" } else { "none" }
    ));
    s.push_str("\r\n# Ringshift\r\n");
    s.push_str(&format!("member:{}\r\n", routing.me));
    s.push_str(&format!("incarnation:{}\r\n", e.incarnation));
    s.push_str(&format!("epoch:{}\r\n", routing.epoch()));
    s.push_str(&format!("log_head:{}\r\n", e.head()));
    s.push_str(&format!("log_oldest:{}\r\n", e.oldest_retained()));
    s.push_str(&format!("fences:{}\r\n", routing.fences.len()));
    if let Some(d) = &routing.degraded {
        s.push_str(&format!("degraded:{d}\r\n"));
    }
    s.push_str("\r\n# Keyspace\r\n");
    s.push_str(&format!(
        "db0:keys={},expires=0,avg_ttl=0\r\n",
        e.approximate_keys()
    ));
    s
}

/// SCAN over the ranges this node owns. The cursor is a position in hash space (hash + 1; 0
/// starts and ends); all keys sharing a hash are returned together so a cursor never splits
/// them. Keys may be returned twice across calls, as Redis allows.
fn scan(node: &Node, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        reply::error(out, "ERR invalid cursor");
        return;
    };
    let mut count = 10usize;
    let mut pattern: Option<&[u8]> = None;
    let mut type_filter: Option<String> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = lower(&args[i]);
        let Some(v) = args.get(i + 1) else {
            reply::error(out, "ERR syntax error");
            return;
        };
        match opt.as_str() {
            "count" => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(n) if n >= 1 => count = n,
                _ => {
                    reply::error(out, "ERR syntax error");
                    return;
                }
            },
            "match" => pattern = Some(v),
            "type" => type_filter = Some(lower(v)),
            _ => {
                reply::error(out, "ERR syntax error");
                return;
            }
        }
        i += 2;
    }
    let owned = node.engine.routing().owned_ranges();
    let (found, next) = match node.engine.scan(&owned, cursor.saturating_sub(1), count) {
        Ok(v) => v,
        Err(e) => {
            reply::error(out, &format!("ERR storage failure: {e}"));
            return;
        }
    };
    // `next` is never u64::MAX (scan keeps that group together), so `+ 1` cannot overflow.
    let next_cursor = next.map_or(0, |h| h.saturating_add(1));
    let type_of = |k: &[u8]| match node.engine.get(k) {
        Ok(Some(s)) => crate::engine::collection::type_name(&s),
        _ => "none",
    };
    let found: Vec<Vec<u8>> = found
        .into_iter()
        .filter(|k| pattern.is_none_or(|p| glob::matches(p, k)))
        .filter(|k| type_filter.as_deref().is_none_or(|t| t == type_of(k)))
        .collect();
    reply::array_len(out, 2);
    reply::bulk(out, next_cursor.to_string().as_bytes());
    reply::array_len(out, found.len());
    for k in found {
        reply::bulk(out, &k);
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3crett", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
