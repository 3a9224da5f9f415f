//! The data port's connections as CLIENT sees them: a registry (touched on connect, close,
//! CLIENT LIST/KILL and name changes only; each command just stores two atomics), and the
//! CLIENT subcommands.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{lower, table};
use crate::resp::reply;

/// One connection's state that other connections may read (CLIENT LIST) or act on (KILL).
pub struct ClientShared {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    created_ms: u64,
    last_ms: AtomicU64,
    /// Index in `table::COMMANDS` of the last command, +1 (0: none yet).
    last_cmd: AtomicUsize,
    name: Mutex<Option<Vec<u8>>>,
    proto: AtomicU8,
    no_evict: AtomicBool,
    killed: AtomicBool,
    /// Woken by CLIENT KILL; the connection closes.
    pub kill: Notify,
    /// Set while the connection waits in a blocking command.
    blocked: AtomicBool,
    /// CLIENT UNBLOCK's request (`Unblock` as u8; 0: none) and its wake-up.
    unblock_as: AtomicU8,
    pub unblock: Notify,
}

/// How CLIENT UNBLOCK ends a blocking command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unblock {
    /// As if its timeout had passed.
    Timeout = 1,
    /// With the UNBLOCKED error.
    Error = 2,
}

impl ClientShared {
    pub fn name(&self) -> Option<Vec<u8>> {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
    }

    pub fn set_name(&self, name: Option<Vec<u8>>) {
        if let Ok(mut n) = self.name.lock() {
            *n = name;
        }
    }

    pub fn set_proto(&self, proto: u8) {
        self.proto.store(proto, Ordering::Relaxed);
    }

    /// Records the connection's activity (CLIENT LIST's idle field), once per read.
    pub fn active(&self, now_ms: u64) {
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Records a command (CLIENT LIST's cmd field).
    pub fn command(&self, cmd_index: usize) {
        self.last_cmd.store(cmd_index + 1, Ordering::Relaxed);
    }

    /// Marks the connection as waiting in a blocking command (or no longer); clears any
    /// unblock request left from an earlier wait.
    pub fn set_blocked(&self, blocked: bool) {
        self.unblock_as.store(0, Ordering::Relaxed);
        self.blocked.store(blocked, Ordering::Release);
    }

    /// The pending CLIENT UNBLOCK request, taken.
    pub fn take_unblock(&self) -> Option<Unblock> {
        match self.unblock_as.swap(0, Ordering::AcqRel) {
            1 => Some(Unblock::Timeout),
            2 => Some(Unblock::Error),
            _ => None,
        }
    }

    /// CLIENT UNBLOCK: false if the connection is not blocked.
    fn request_unblock(&self, how: Unblock) -> bool {
        if !self.blocked.load(Ordering::Acquire) {
            return false;
        }
        self.unblock_as.store(how as u8, Ordering::Release);
        self.unblock.notify_one();
        true
    }

    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        // A stored permit: the connection sees it even if it is not waiting right now.
        self.kill.notify_one();
    }

    /// One CLIENT LIST line (without the newline): the fields this node tracks.
    fn line(&self, now_ms: u64) -> String {
        let name = self.name().map(|n| String::from_utf8_lossy(&n).to_string());
        let cmd = match self.last_cmd.load(Ordering::Relaxed) {
            0 => "NULL",
            i => table::COMMANDS.get(i - 1).map_or("NULL", |c| c.name),
        };
        let flags = if self.no_evict.load(Ordering::Relaxed) {
            "e"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags={flags} db=0 sub=0 psub=0 \
             multi=-1 cmd={cmd} user=default resp={}",
            self.id,
            self.addr,
            self.laddr,
            name.unwrap_or_default(),
            now_ms.saturating_sub(self.created_ms) / 1000,
            now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed)) / 1000,
            self.proto.load(Ordering::Relaxed),
        )
    }
}

#[derive(Default)]
pub struct Clients {
    map: Mutex<BTreeMap<u64, Arc<ClientShared>>>,
}

impl Clients {
    pub fn register(&self, id: u64, addr: String, laddr: String, now_ms: u64) -> Arc<ClientShared> {
        let c = Arc::new(ClientShared {
            id,
            addr,
            laddr,
            created_ms: now_ms,
            last_ms: AtomicU64::new(now_ms),
            last_cmd: AtomicUsize::new(0),
            name: Mutex::new(None),
            proto: AtomicU8::new(2),
            no_evict: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            blocked: AtomicBool::new(false),
            unblock_as: AtomicU8::new(0),
            unblock: Notify::new(),
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, c.clone());
        }
        c
    }

    pub fn remove(&self, id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }

    pub fn count(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn all(&self) -> Vec<Arc<ClientShared>> {
        self.map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Redis 7's errors: a known subcommand with the wrong arguments, or an unknown one (named as
/// given).
fn subcommand_error(out: &mut Vec<u8>, sub: &str, given: &[u8]) {
    const KNOWN: &[&str] = &[
        "setname", "getname", "id", "setinfo", "info", "list", "no-evict", "kill", "unblock",
        "reply",
    ];
    if KNOWN.contains(&sub) {
        reply::error(
            out,
            &format!("ERR wrong number of arguments for 'client|{sub}' command"),
        );
    } else {
        reply::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(given)
            ),
        );
    }
}

/// What CLIENT did to the connection that sent it.
pub enum After {
    Continue,
    /// It killed itself: close once the reply is written.
    Close,
}

/// CLIENT subcommands (`me`: the calling connection).
pub fn client(
    clients: &Clients,
    me: &ClientShared,
    args: &[Vec<u8>],
    now_ms: u64,
    out: &mut Vec<u8>,
) -> After {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "setname" if args.len() == 3 => {
            if args[2].iter().any(|&b| b <= b' ' || b > b'~') {
                reply::error(
                    out,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            } else {
                me.set_name((!args[2].is_empty()).then(|| args[2].clone()));
                reply::simple(out, "OK");
            }
        }
        "getname" if args.len() == 2 => match me.name() {
            Some(n) => reply::bulk(out, &n),
            None => reply::nil(out),
        },
        "id" if args.len() == 2 => reply::int(out, me.id as i64),
        "setinfo" if args.len() == 4 => reply::simple(out, "OK"),
        "info" if args.len() == 2 => reply::bulk(out, format!("{}\n", me.line(now_ms)).as_bytes()),
        "list" => list(clients, &args[2..], now_ms, out),
        "no-evict" if args.len() == 3 => match lower(&args[2]).as_str() {
            "on" | "off" => {
                me.no_evict
                    .store(lower(&args[2]) == "on", Ordering::Relaxed);
                reply::simple(out, "OK");
            }
            _ => reply::error(out, "ERR syntax error"),
        },
        "kill" if args.len() >= 3 => return kill(clients, me, &args[2..], out),
        "unblock" if args.len() == 3 || args.len() == 4 => unblock(clients, &args[2..], out),
        _ => subcommand_error(out, &sub, &args[1]),
    }
    After::Continue
}

/// CLIENT UNBLOCK <id> [TIMEOUT|ERROR]: 1 if that client was blocked (and is now released),
/// else 0.
fn unblock(clients: &Clients, opts: &[Vec<u8>], out: &mut Vec<u8>) {
    let Some(id) = crate::engine::writer_parse_int(&opts[0]) else {
        reply::error(out, super::parse::NOT_INT);
        return;
    };
    let how = match opts.get(1).map(|o| lower(o)).as_deref() {
        None | Some("timeout") => Unblock::Timeout,
        Some("error") => Unblock::Error,
        Some(_) => {
            reply::error(out, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
            return;
        }
    };
    let target = clients
        .map
        .lock()
        .ok()
        .and_then(|m| m.get(&(id as u64)).cloned());
    let done = target.is_some_and(|c| c.request_unblock(how));
    reply::int(out, i64::from(done));
}

fn list(clients: &Clients, opts: &[Vec<u8>], now_ms: u64, out: &mut Vec<u8>) {
    let mut ids: Option<Vec<u64>> = None;
    let mut only_normal = true;
    match opts.first().map(|o| lower(o)).as_deref() {
        None => {}
        Some("type") if opts.len() == 2 => match lower(&opts[1]).as_str() {
            "normal" => {}
            "master" | "replica" | "slave" | "pubsub" => only_normal = false,
            other => {
                reply::error(out, &format!("ERR Unknown client type '{other}'"));
                return;
            }
        },
        Some("id") if opts.len() >= 2 => {
            let mut v = Vec::new();
            for o in &opts[1..] {
                match std::str::from_utf8(o)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(id) if id > 0 => v.push(id),
                    _ => {
                        reply::error(out, "ERR Invalid client ID");
                        return;
                    }
                }
            }
            ids = Some(v);
        }
        _ => {
            reply::error(out, "ERR syntax error");
            return;
        }
    }
    let mut text = String::new();
    if only_normal {
        for c in clients.all() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
                text.push_str(&c.line(now_ms));
                text.push('\n');
            }
        }
    }
    reply::bulk(out, text.as_bytes());
}

/// CLIENT KILL <addr> (old form: OK or an error) or CLIENT KILL <filter> <value> ... (the
/// number of clients killed). Filters: ID, ADDR, LADDR, TYPE, USER, SKIPME.
fn kill(clients: &Clients, me: &ClientShared, opts: &[Vec<u8>], out: &mut Vec<u8>) -> After {
    if opts.len() == 1 {
        let addr = String::from_utf8_lossy(&opts[0]);
        return match clients.all().into_iter().find(|c| c.addr == addr) {
            Some(c) => {
                c.kill();
                reply::simple(out, "OK");
                if c.id == me.id {
                    After::Close
                } else {
                    After::Continue
                }
            }
            None => {
                reply::error(out, "ERR No such client");
                After::Continue
            }
        };
    }
    if !opts.len().is_multiple_of(2) {
        reply::error(out, "ERR syntax error");
        return After::Continue;
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skipme = true;
    let mut any_type = true;
    for pair in opts.chunks(2) {
        let v = String::from_utf8_lossy(&pair[1]).to_string();
        match lower(&pair[0]).as_str() {
            "id" => match v.parse::<u64>() {
                Ok(n) if n > 0 => id = Some(n),
                _ => {
                    reply::error(out, "ERR client-id should be greater than 0");
                    return After::Continue;
                }
            },
            "addr" => addr = Some(v),
            "laddr" => laddr = Some(v),
            "user" => any_type &= v == "default",
            "type" => match v.to_ascii_lowercase().as_str() {
                "normal" => {}
                "master" | "replica" | "slave" | "pubsub" => any_type = false,
                _ => {
                    reply::error(out, &format!("ERR Unknown client type '{v}'"));
                    return After::Continue;
                }
            },
            "skipme" => match v.to_ascii_lowercase().as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => {
                    reply::error(out, "ERR syntax error");
                    return After::Continue;
                }
            },
            _ => {
                reply::error(out, "ERR syntax error");
                return After::Continue;
            }
        }
    }
    let mut killed = 0;
    let mut me_killed = false;
    if any_type {
        for c in clients.all() {
            let matches = id.is_none_or(|i| i == c.id)
                && addr.as_ref().is_none_or(|a| *a == c.addr)
                && laddr.as_ref().is_none_or(|a| *a == c.laddr)
                && !(skipme && c.id == me.id);
            if matches {
                c.kill();
                killed += 1;
                me_killed |= c.id == me.id;
            }
        }
    }
    reply::int(out, killed);
    if me_killed {
        After::Close
    } else {
        After::Continue
    }
}
