//! Executing keyed commands: locally when this node owns the keys, otherwise through the
//! coordinator (one hop to the owner). Fenced ranges are waited on up to the write-pause budget;
//! a command is retried only when the owner said it was not applied (fenced, not owner, stale
//! epoch, or the owner could not be reached at all).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::list_source::ViewList;
use crate::engine::view::KeyView;
use crate::engine::{DataReply, Op, Outcome};
use crate::keys::{self, Stored};
use crate::node::Node;
use crate::resp::reply;
use crate::routing::Route;

use super::parse::{Keyed, ReadCmd};

const DEFAULT_BUDGET_MS: u64 = 2000;

/// Error replies that mean "not applied" (safe to retry), by their first word.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotApplied {
    Fenced,
    Moved {
        epoch: u64,
    },
    StaleEpoch,
    /// A forwarded command reached the owner (or its evaluation) after its deadline.
    Deadline,
}

pub(crate) fn classify(raw: &[u8]) -> Option<NotApplied> {
    let line = raw.strip_prefix(b"-")?;
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    match words.next()? {
        "TRYAGAIN" => Some(NotApplied::Fenced),
        "STALEEPOCH" => Some(NotApplied::StaleEpoch),
        "DEADLINE" => Some(NotApplied::Deadline),
        "RINGMOVED" => Some(NotApplied::Moved {
            epoch: words.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

pub fn route_error(route: &Route) -> Option<String> {
    match route {
        Route::NoPlacement => Some("CLUSTERDOWN no placement installed on this node".into()),
        Route::Unowned { epoch } => Some(format!(
            "CLUSTERDOWN hash not covered by the placement at epoch {epoch}"
        )),
        Route::Degraded(reason) => Some(format!("DEGRADED {reason}")),
        _ => None,
    }
}

pub fn moved_error(epoch: u64, owner: &str, addr: Option<&str>) -> String {
    format!("RINGMOVED {epoch} {owner} {}", addr.unwrap_or("unknown"))
}

/// A forwarded command refused because its coordinator's deadline passed: not applied.
pub fn deadline_error(deadline_ms: u64, now_ms: u64) -> String {
    format!(
        "DEADLINE forwarded command not applied: its deadline {deadline_ms} passed (this node's clock {now_ms})"
    )
}

pub fn fenced_error(epoch: u64, migration: &str) -> String {
    format!("TRYAGAIN range fenced for a cutover (epoch {epoch}, migration {migration})")
}

fn err(msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    reply::error(&mut out, msg);
    out
}

pub fn encode_data(r: DataReply) -> Vec<u8> {
    let mut out = Vec::new();
    encode_data_into(&mut out, r);
    out
}

pub fn encode_data_into(out: &mut Vec<u8>, r: DataReply) {
    match r {
        DataReply::Ok => reply::simple(out, "OK"),
        DataReply::Nil => reply::nil(out),
        DataReply::NullArray => out.extend_from_slice(b"*-1\r\n"),
        DataReply::Bulk(b) => reply::bulk(out, &b),
        DataReply::Int(n) => reply::int(out, n),
        DataReply::Err(e) => reply::error(out, &e),
        DataReply::Array(items) => {
            reply::array_len(out, items.len());
            for i in items {
                encode_data_into(out, i);
            }
        }
    }
}

/// Combined route of a set of keys: Local only if all are local; otherwise the first non-local.
pub fn route_keys(node: &Node, keys: &[&[u8]]) -> Route {
    let routing = node.engine.routing();
    let mut first = None;
    for k in keys {
        let r = routing.route(keys::key_hash(k));
        if r != Route::Local {
            return r;
        }
        first.get_or_insert(r);
    }
    first.unwrap_or(Route::Local)
}

/// Owner name of each key (None when the placement cannot answer).
pub(super) fn owners_of(node: &Node, keys: &[&[u8]]) -> Vec<Option<Arc<str>>> {
    let routing = node.engine.routing();
    keys.iter()
        .map(|k| {
            routing
                .placement
                .as_ref()
                .and_then(|p| p.owners.owner(keys::key_hash(k)).cloned())
        })
        .collect()
}

/// Runs a keyed command, splitting MGET/EXISTS/DEL across owners. A forwarded command may
/// carry its coordinator's deadline (unix ms; see `run_group`).
pub async fn execute(
    node: &Arc<Node>,
    name: &str,
    args: Vec<Vec<u8>>,
    keyed: Keyed,
    forwarded: bool,
    deadline_ms: Option<u64>,
) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = keyed.keys().iter().map(|k| k.to_vec()).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let owners = owners_of(node, &key_refs);
    let distinct = {
        let mut v: Vec<&Option<Arc<str>>> = owners.iter().collect();
        v.dedup();
        v.sort();
        v.dedup();
        v.len()
    };
    if distinct <= 1 || forwarded {
        return run_group(node, args, keyed, forwarded, deadline_ms).await;
    }
    match &keyed {
        Keyed::Read(ReadCmd::MGet(_))
        | Keyed::Read(ReadCmd::Exists(_))
        | Keyed::Write(crate::engine::DataCmd::Del { .. }) => {
            split(node, name, &keys, &owners, &keyed).await
        }
        // Every other multi-key command (MSET, MSETNX, RENAME, COPY, LCS, ...) needs one owner,
        // as Redis Cluster needs one slot.
        _ => err("CROSSSLOT Keys in request don't hash to the same owner"),
    }
}

/// Not atomic across owners: each owner's part runs on its own, results are reassembled in the
/// order of the keys.
async fn split(
    node: &Arc<Node>,
    name: &str,
    keys: &[Vec<u8>],
    owners: &[Option<Arc<str>>],
    keyed: &Keyed,
) -> Vec<u8> {
    let mut groups: Vec<(Option<Arc<str>>, Vec<usize>)> = Vec::new();
    for (i, o) in owners.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| g == o) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((o.clone(), vec![i])),
        }
    }
    let parts = groups.iter().map(|(_, idx)| {
        let sub_keys: Vec<Vec<u8>> = idx.iter().map(|&i| keys[i].clone()).collect();
        let mut args = vec![name.as_bytes().to_vec()];
        args.extend(sub_keys.iter().cloned());
        let sub = match keyed {
            Keyed::Read(ReadCmd::MGet(_)) => Keyed::Read(ReadCmd::MGet(sub_keys)),
            Keyed::Read(_) => Keyed::Read(ReadCmd::Exists(sub_keys)),
            Keyed::Write(_) => Keyed::Write(crate::engine::DataCmd::Del { keys: sub_keys }),
        };
        let node = node.clone();
        async move { run_group(&node, args, sub, false, None).await }
    });
    let results = futures_join(parts.collect()).await;
    let is_mget = matches!(keyed, Keyed::Read(ReadCmd::MGet(_)));
    let is_del = matches!(keyed, Keyed::Write(_));
    let mut items: Vec<Vec<u8>> = vec![Vec::new(); keys.len()];
    let mut total = 0i64;
    // Owners whose part succeeded, and the failed parts: (owner, raw error reply).
    let mut answered: Vec<String> = Vec::new();
    let mut failed: Vec<(String, Vec<u8>)> = Vec::new();
    for ((owner, idx), raw) in groups.iter().zip(results) {
        let owner = owner.as_deref().unwrap_or("(no owner)").to_string();
        if raw.first() == Some(&b'-') {
            failed.push((owner, raw));
            continue;
        }
        let ok = if is_mget {
            match reply::array_items(&raw) {
                Some(parts) if parts.len() == idx.len() => {
                    for (&i, p) in idx.iter().zip(parts) {
                        items[i] = p.to_vec();
                    }
                    true
                }
                _ => false,
            }
        } else {
            match reply::as_int(&raw) {
                Some(n) => {
                    total += n;
                    true
                }
                None => false,
            }
        };
        if ok {
            answered.push(owner);
        } else {
            failed.push((owner, err("ERR unexpected reply from the owner")));
        }
    }
    if let Some((_, first)) = failed.first() {
        // A read has no effect to report; a DEL that nobody applied (every failure said so)
        // gets the owner's own not-applied error. Otherwise the client must learn that some
        // keys may be gone already.
        let nothing_applied = answered.is_empty() && failed.iter().all(|(_, r)| not_applied(r));
        if !is_del || nothing_applied {
            return first.clone();
        }
        node.metrics.error("split_partial");
        return err(&partial_del_error(total, &answered, &failed));
    }
    let mut out = Vec::new();
    if is_mget {
        reply::array_len(&mut out, items.len());
        for i in items {
            out.extend_from_slice(&i);
        }
    } else {
        reply::int(&mut out, total);
    }
    out
}

/// Whether an owner's error reply says the command was certainly not applied there.
fn not_applied(raw: &[u8]) -> bool {
    classify(raw).is_some() || raw.starts_with(b"-CLUSTERDOWN") || raw.starts_with(b"-DEGRADED")
}

/// The answer to a DEL split across owners when some part failed: the parts that applied, and
/// for each failed part whether it was applied there (no, or unknown).
fn partial_del_error(deleted: i64, answered: &[String], failed: &[(String, Vec<u8>)]) -> String {
    let mut msg = if answered.is_empty() {
        "ERR DEL partially applied: no owner confirmed its part".to_string()
    } else {
        format!(
            "ERR DEL partially applied: {deleted} keys deleted on {}",
            answered.join(", ")
        )
    };
    for (owner, raw) in failed {
        let text = String::from_utf8_lossy(raw.strip_prefix(b"-").unwrap_or(raw));
        let what = if not_applied(raw) {
            "not applied there"
        } else {
            "may or may not have been applied there"
        };
        msg.push_str(&format!(
            "; owner {owner} failed ({what}): {}",
            text.trim_end()
        ));
    }
    msg
}

async fn futures_join(
    futs: Vec<impl std::future::Future<Output = Vec<u8>> + Send + 'static>,
) -> Vec<Vec<u8>> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| err(&format!("ERR internal task failed: {e}"))),
        );
    }
    out
}

/// Runs a command whose keys all belong to one owner. With `deadline_ms` (a forwarded
/// command's coordinator deadline), nothing is applied at or after it: the coordinator has
/// answered its client by then, so a late write would land unseen.
pub async fn run_group(
    node: &Arc<Node>,
    args: Vec<Vec<u8>>,
    keyed: Keyed,
    forwarded: bool,
    deadline_ms: Option<u64>,
) -> Vec<u8> {
    let budget = node
        .engine
        .routing()
        .placement
        .as_ref()
        .map_or(DEFAULT_BUDGET_MS, |p| p.write_pause_budget_ms);
    let mut budget = Duration::from_millis(budget);
    if let Some(d) = deadline_ms {
        budget = budget.min(Duration::from_millis(
            d.saturating_sub(node.engine.now_ms()),
        ));
    }
    let deadline = Instant::now() + budget;
    let mut changes = node.engine.routing_changes();
    loop {
        if let Some(d) = deadline_ms {
            let now = node.engine.now_ms();
            if now >= d {
                node.metrics.error("forward_deadline");
                return err(&deadline_error(d, now));
            }
        }
        let keys = keyed.keys();
        let route = route_keys(node, &keys);
        let waited = match route {
            Route::Local => match &keyed {
                Keyed::Read(r) => {
                    let mut out = Vec::new();
                    local_read(node, r, &mut out);
                    return out;
                }
                Keyed::Write(w) => {
                    let op = match deadline_ms {
                        Some(deadline_ms) => Op::DataBefore {
                            cmd: w.clone(),
                            deadline_ms,
                        },
                        None => Op::Data(w.clone()),
                    };
                    match node.engine.run(op).await {
                        Ok(Outcome::Data(r)) => return encode_data(r),
                        Ok(Outcome::DeadlinePassed {
                            deadline_ms,
                            now_ms,
                        }) => {
                            node.metrics.error("forward_deadline");
                            return err(&deadline_error(deadline_ms, now_ms));
                        }
                        Ok(Outcome::NotServed(
                            Route::Fenced {
                                epoch,
                                migration_uid,
                            },
                            _,
                        )) => Some(fenced_error(epoch, &migration_uid)),
                        Ok(Outcome::NotServed(..)) => {
                            // Routing changed under us; nothing was applied: route again.
                            tokio::task::yield_now().await;
                            continue;
                        }
                        Ok(Outcome::Failed(msg)) => {
                            return err(&format!("ERR storage failure: {msg}"));
                        }
                        Ok(_) => return err("ERR unexpected writer answer"),
                        Err(e) => return err(&format!("ERR {e}")),
                    }
                }
            },
            Route::Fenced {
                epoch,
                migration_uid,
            } => Some(fenced_error(epoch, &migration_uid)),
            Route::Remote {
                epoch,
                owner,
                data_addr,
            } => {
                if forwarded {
                    return err(&moved_error(epoch, &owner, data_addr.as_deref()));
                }
                let Some(addr) = data_addr else {
                    return err(&format!("CLUSTERDOWN no address known for owner {owner}"));
                };
                match forward(node, &addr, epoch, &args).await {
                    Forwarded::Done(raw) => return raw,
                    Forwarded::Retry(last) => Some(last),
                }
            }
            other => return err(&route_error(&other).unwrap_or_default()),
        };
        // Not applied: wait for routing to change (or a short while), up to the budget.
        let last = waited.unwrap_or_default();
        let now = Instant::now();
        if now >= deadline {
            node.metrics.error("retry_budget_exhausted");
            return err(&last);
        }
        let wait = (deadline - now).min(Duration::from_millis(20));
        let _ = tokio::time::timeout(wait, changes.changed()).await;
    }
}

enum Forwarded {
    Done(Vec<u8>),
    /// Not applied; retry with this error if the budget runs out.
    Retry(String),
}

async fn forward(node: &Arc<Node>, addr: &str, epoch: u64, args: &[Vec<u8>]) -> Forwarded {
    let routing = node.engine.routing();
    let Some(p) = routing.placement.as_ref() else {
        return Forwarded::Retry("CLUSTERDOWN no placement installed on this node".into());
    };
    let epoch_s = epoch.to_string();
    // The owner applies nothing at or after this moment: by then this call has timed out
    // (its reply timeout starts after the connect) and the client got "may or may not".
    let deadline_s =
        (node.engine.now_ms() + crate::pool::IO_TIMEOUT.as_millis() as u64).to_string();
    let mut frame_args: Vec<&[u8]> = vec![
        b"RSFWD2",
        p.cluster_uid.as_bytes(),
        epoch_s.as_bytes(),
        node.cfg.member.as_bytes(),
        deadline_s.as_bytes(),
    ];
    frame_args.extend(args.iter().map(Vec::as_slice));
    let mut frame = Vec::new();
    reply::command(&mut frame, &frame_args);
    node.metrics.forwarded.inc();
    let sent = Instant::now();
    let mut answer = node.pool.call(addr, &frame).await;
    if answer.as_ref().is_ok_and(|raw| is_unknown_rsfwd2(raw)) {
        // An owner of the previous release (rolling upgrade): it refused the new form
        // unapplied; send the old one, which carries no deadline.
        let mut legacy: Vec<&[u8]> = vec![b"RSFWD"];
        legacy.extend(frame_args[1..4].iter().copied());
        legacy.extend(args.iter().map(Vec::as_slice));
        frame.clear();
        reply::command(&mut frame, &legacy);
        answer = node.pool.call(addr, &frame).await;
    }
    node.metrics.forward_latency.observe(sent.elapsed());
    match answer {
        Ok(raw) => match classify(&raw) {
            None => Forwarded::Done(raw),
            Some(kind) => {
                let text = String::from_utf8_lossy(&raw[1..]).trim_end().to_string();
                if let NotApplied::Moved { epoch: theirs } = kind
                    && theirs > epoch
                {
                    // The peer knows a newer placement: fetch it before retrying.
                    if let Some(admin) = p.members.values().find(|m| m.data_addr == addr) {
                        node.refresh_placement_from(&admin.admin_addr).await;
                    }
                } else if let NotApplied::Moved { .. } = kind {
                    return Forwarded::Done(raw);
                }
                Forwarded::Retry(text)
            }
        },
        Err(e @ crate::pool::PeerError::Connect { .. }) => {
            Forwarded::Retry(format!("CLUSTERDOWN owner unreachable: {e}"))
        }
        Err(e) => {
            node.metrics.error("forward_ambiguous");
            Forwarded::Done(err(&format!(
                "ERR forwarding failed, the command may or may not have been applied: {e}"
            )))
        }
    }
}

/// An owner that does not know `RSFWD2` yet answers it as an unknown command.
fn is_unknown_rsfwd2(raw: &[u8]) -> bool {
    raw.starts_with(b"-ERR unknown command 'RSFWD2'")
}

/// Answers a read of keys this node owns, appending the reply to `out`.
pub fn local_read(node: &Node, r: &ReadCmd, out: &mut Vec<u8>) {
    local_read_in(node, &*node.engine, r, out);
}

/// Why a read is answered with an error reply (its text) instead of its result.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// A string command on a collection.
    #[error("{}", crate::engine::collection::WRONGTYPE)]
    WrongType,
    #[error("ERR storage failure: {0}")]
    Storage(#[from] crate::engine::EngineError),
}

/// Answers a read from `view` (committed data, or a transaction's view in the writer),
/// appending the reply to `out`.
pub fn local_read_in(node: &Node, view: &dyn KeyView, r: &ReadCmd, out: &mut Vec<u8>) {
    let start = out.len();
    use crate::engine::collection::{self, CollMeta};
    let any = |k: &[u8]| -> Result<Option<Stored>, ReadError> { Ok(view.get(k)?) };
    // A string command's view: a collection is the wrong type.
    let get = |k: &[u8]| -> Result<Option<Stored>, ReadError> {
        match any(k)? {
            Some(s) if s.typed => Err(ReadError::WrongType),
            s => Ok(s),
        }
    };
    let res: Result<(), ReadError> = (|| {
        match r {
            ReadCmd::Get(k) => match get(k)? {
                Some(s) => reply::bulk(out, &s.value),
                None => reply::nil(out),
            },
            ReadCmd::MGet(ks) => {
                reply::array_len(out, ks.len());
                for k in ks {
                    // (MGET answers nil for a key of another type, as Redis does.)
                    match any(k)? {
                        Some(s) if !s.typed => reply::bulk(out, &s.value),
                        _ => reply::nil(out),
                    }
                }
            }
            ReadCmd::Hash(h) => super::hash::read(view, h, out)?,
            ReadCmd::Set(s) => super::set::read(view, s, out)?,
            // Sorted-set reads scan through the view (inside a transaction: the writer's
            // batch view, so they see its own earlier writes).
            ReadCmd::ZSet(z) => super::zset::read(view, z, out)?,
            // List reads use the engine's ordered scans when the view is committed data.
            ReadCmd::List(l) => match view.committed() {
                Some(engine) => super::list::read(engine, l, out)?,
                None => super::list::read(&ViewList(view), l, out)?,
            },
            ReadCmd::Exists(ks) => {
                let mut n = 0;
                for k in ks {
                    if any(k)?.is_some() {
                        n += 1;
                    }
                }
                reply::int(out, n);
            }
            ReadCmd::Ttl { key, millis } => {
                let v = match any(key)? {
                    None => -2,
                    Some(Stored {
                        expires_at: None, ..
                    }) => -1,
                    Some(Stored {
                        expires_at: Some(at),
                        ..
                    }) => {
                        let left = at.saturating_sub(view.now_ms()) as i64;
                        if *millis { left } else { (left + 500) / 1000 }
                    }
                };
                reply::int(out, v);
            }
            ReadCmd::StrLen(k) => reply::int(out, get(k)?.map_or(0, |s| s.value.len() as i64)),
            ReadCmd::Type(k) => {
                reply::simple(out, any(k)?.as_ref().map_or("none", collection::type_name))
            }
            ReadCmd::GetRange { key, start, end } => {
                let v = get(key)?.map(|s| s.value).unwrap_or_default();
                reply::bulk(out, super::strings::range_of(&v, *start, *end));
            }
            ReadCmd::ExpireTime { key, millis } => {
                let v = match any(key)? {
                    None => -2,
                    Some(Stored {
                        expires_at: None, ..
                    }) => -1,
                    Some(Stored {
                        expires_at: Some(at),
                        ..
                    }) => {
                        let at = at as i64;
                        if *millis { at } else { (at + 500) / 1000 }
                    }
                };
                reply::int(out, v);
            }
            ReadCmd::Lcs { a, b, opts } => {
                let a = get(a)?.map(|s| s.value).unwrap_or_default();
                let b = get(b)?.map(|s| s.value).unwrap_or_default();
                super::lcs::reply_lcs(&a, &b, *opts, out);
            }
            ReadCmd::MemoryUsage(key) => match any(key)? {
                // The stored record: hash and key, expiry, value (a collection's metadata;
                // its elements are not counted).
                Some(s) => reply::int(out, (8 + key.len() + 8 + s.value.len()) as i64),
                None => reply::nil(out),
            },
            ReadCmd::GetBit { key, offset } => {
                let v = get(key)?.map(|s| s.value).unwrap_or_default();
                reply::int(out, crate::engine::strings::get_bit(&v, *offset));
            }
            ReadCmd::Object { key, sub } => match any(key)? {
                None => reply::nil(out),
                Some(s) => match CollMeta::of(&s) {
                    Some(m) if *sub == super::parse::ObjectSub::Encoding => reply::bulk(
                        out,
                        super::encoding::encoding(node, view, key, &m)?.as_bytes(),
                    ),
                    _ => super::strings::object_reply(*sub, out),
                },
            },
        }
        Ok(())
    })();
    if let Err(e) = res {
        out.truncate(start);
        reply::error(out, &e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_not_applied_answers() {
        assert_eq!(
            classify(b"-TRYAGAIN range fenced\r\n"),
            Some(NotApplied::Fenced)
        );
        assert_eq!(
            classify(b"-STALEEPOCH 3 4\r\n"),
            Some(NotApplied::StaleEpoch)
        );
        assert_eq!(
            classify(b"-RINGMOVED 7 b 127.0.0.1:6379\r\n"),
            Some(NotApplied::Moved { epoch: 7 })
        );
        assert_eq!(
            classify(format!("-{}\r\n", deadline_error(5, 6)).as_bytes()),
            Some(NotApplied::Deadline)
        );
        assert_eq!(classify(b"-ERR boom\r\n"), None);
        assert_eq!(classify(b"+OK\r\n"), None);
    }

    #[test]
    fn an_owner_of_the_previous_release_is_recognised_by_its_unknown_command_error() {
        let args: Vec<Vec<u8>> = ["RSFWD2", "uid", "1", "a", "99", "GET", "k"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        let raw = format!("-{}\r\n", super::super::table::unknown_command_error(&args));
        assert!(is_unknown_rsfwd2(raw.as_bytes()));
        assert!(!is_unknown_rsfwd2(b"-ERR unknown command 'FOO'\r\n"));
    }

    #[test]
    fn a_partial_del_names_what_applied_and_what_is_unknown() {
        let failed =
            vec![
            ("b".to_string(), b"-CLUSTERDOWN owner unreachable\r\n".to_vec()),
            (
                "c".to_string(),
                b"-ERR forwarding failed, the command may or may not have been applied: reset\r\n"
                    .to_vec(),
            ),
        ];
        assert_eq!(
            partial_del_error(2, &["a".into()], &failed),
            "ERR DEL partially applied: 2 keys deleted on a; \
             owner b failed (not applied there): CLUSTERDOWN owner unreachable; \
             owner c failed (may or may not have been applied there): ERR forwarding failed, \
             the command may or may not have been applied: reset"
        );
        assert!(
            partial_del_error(0, &[], &failed[1..])
                .starts_with("ERR DEL partially applied: no owner")
        );
    }
}
