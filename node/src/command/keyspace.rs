//! Commands over this node's whole keyspace (the ranges it owns, as on a Redis Cluster node):
//! KEYS, RANDOMKEY, FLUSHALL/FLUSHDB; and FUNCTION, of which only the no-op FLUSH/LIST exist.

use crate::engine::{Op, Outcome};
use crate::glob;
use crate::node::Node;
use crate::resp::reply;

use super::exec::route_error;
use super::lower;

/// Keys read per engine scan call.
const SCAN_STEP: usize = 1000;

/// KEYS pattern: every live key of the ranges this node owns that matches.
pub fn keys(node: &Node, pattern: &[u8], out: &mut Vec<u8>) {
    let owned = node.engine.routing().owned_ranges();
    let mut found = Vec::new();
    let mut from = 0u64;
    loop {
        let (batch, next) = match node.engine.scan(&owned, from, SCAN_STEP) {
            Ok(v) => v,
            Err(e) => {
                reply::error(out, &format!("ERR storage failure: {e}"));
                return;
            }
        };
        found.extend(batch.into_iter().filter(|k| glob::matches(pattern, k)));
        match next {
            Some(h) => from = h,
            None => break,
        }
    }
    reply::array_len(out, found.len());
    for k in found {
        reply::bulk(out, &k);
    }
}

/// Keys RANDOMKEY picks among.
const RANDOM_WINDOW: usize = 64;

/// A random u64 (std's per-hasher random keys; no cryptographic claim).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// RANDOMKEY: a live key of the ranges this node owns: one of the (up to) 64 keys that follow
/// a random point in hash space, wrapping around, picked uniformly. Uniform over all keys when
/// the node holds at most 64; otherwise keys after wide gaps are somewhat likelier.
pub fn random_key(node: &Node, out: &mut Vec<u8>) {
    let owned = node.engine.routing().owned_ranges();
    let start = random_u64();
    let found = node
        .engine
        .scan(&owned, start, RANDOM_WINDOW)
        .and_then(|(mut keys, _)| {
            if keys.len() < RANDOM_WINDOW && start > 0 {
                // Wrap around: the keys before the starting point.
                let (more, _) = node.engine.scan(&owned, 0, RANDOM_WINDOW - keys.len())?;
                keys.extend(
                    more.into_iter()
                        .filter(|k| crate::keys::key_hash(k) < start),
                );
            }
            Ok(keys)
        });
    match found {
        Ok(keys) if keys.is_empty() => reply::nil(out),
        Ok(keys) => {
            let pick = (random_u64() % keys.len() as u64) as usize;
            reply::bulk(out, &keys[pick]);
        }
        Err(e) => reply::error(out, &format!("ERR storage failure: {e}")),
    }
}

/// FLUSHALL / FLUSHDB [ASYNC|SYNC]: removes every key of the ranges this node owns, logged as
/// range clears (so a pull that tails those ranges replays the clear). Refused with TRYAGAIN
/// while any of them is fenced for a cutover. Keys owned by other members stay: as on a Redis
/// Cluster node, the command flushes this node's share.
pub async fn flush(node: &Node, args: &[Vec<u8>], out: &mut Vec<u8>) {
    match args.get(1).map(|a| lower(a)).as_deref() {
        None | Some("async") | Some("sync") if args.len() <= 2 => {}
        _ => {
            reply::error(out, "ERR syntax error");
            return;
        }
    }
    let routing = node.engine.routing();
    if routing.placement.is_none() {
        let route = crate::routing::Route::NoPlacement;
        reply::error(out, &route_error(&route).unwrap_or_default());
        return;
    }
    match node.engine.run(Op::Flush).await {
        Ok(Outcome::Done) => reply::simple(out, "OK"),
        Ok(Outcome::Refused(msg)) => reply::error(out, &msg),
        Ok(Outcome::Failed(msg)) => reply::error(out, &format!("ERR storage failure: {msg}")),
        Ok(_) => reply::error(out, "ERR unexpected writer answer"),
        Err(e) => reply::error(out, &format!("ERR {e}")),
    }
}

/// FUNCTION: ringshift runs no functions, so FLUSH has nothing to do and LIST is empty.
pub fn function(args: &[Vec<u8>], out: &mut Vec<u8>) {
    match lower(&args[1]).as_str() {
        "flush" => reply::simple(out, "OK"),
        "list" => reply::array_len(out, 0),
        other => reply::error(
            out,
            &format!("ERR FUNCTION {other} is not supported by ringshift (no scripting)"),
        ),
    }
}
