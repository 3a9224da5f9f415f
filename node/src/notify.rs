//! Keyspace notifications (`CONFIG SET notify-keyspace-events`): Redis 7's event classes and
//! names, and which events a write produced, read from the command and its reply as the
//! client gets it (RESP2), so local, pipelined and forwarded writes are covered alike by the
//! node the client wrote through. Delivery is PUBLISH's (every member's subscribers).

/// Redis's flag bits (server.h).
pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 13;
pub const NEW: u32 = 1 << 14;
/// `A`: every class but key misses and new keys.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

pub const INVALID_CLASS: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// The flags of a `notify-keyspace-events` value; None for an unknown character.
pub fn parse_flags(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0, |flags, c| {
        Some(
            flags
                | match c {
                    b'A' => ALL,
                    b'g' => GENERIC,
                    b'$' => STRING,
                    b'l' => LIST,
                    b's' => SET,
                    b'h' => HASH,
                    b'z' => ZSET,
                    b'x' => EXPIRED,
                    b'e' => EVICTED,
                    b'K' => KEYSPACE,
                    b'E' => KEYEVENT,
                    b't' => STREAM,
                    b'm' => KEY_MISS,
                    b'd' => MODULE,
                    b'n' => NEW,
                    _ => return None,
                },
        )
    })
}

/// The value CONFIG GET shows, as Redis writes it (`A` when every class of it is on, and then,
/// as Redis does, without `n`).
pub fn format_flags(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & bit != 0 {
                out.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & bit != 0 {
            out.push(c);
        }
    }
    out
}

/// One event: its class, Redis's name for it, and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub class: u32,
    pub name: &'static str,
    pub key: Vec<u8>,
}

fn ev(class: u32, name: &'static str, key: &[u8]) -> Event {
    Event {
        class,
        name,
        key: key.to_vec(),
    }
}

/// The (channel, message) pairs `flags` publishes for `e`: keyspace first, then keyevent, as
/// Redis sends them (database 0 is the only one).
pub fn messages(flags: u32, e: &Event) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if flags & e.class == 0 {
        return out;
    }
    if flags & KEYSPACE != 0 {
        out.push((
            [b"__keyspace@0__:".as_slice(), &e.key].concat(),
            e.name.as_bytes().to_vec(),
        ));
    }
    if flags & KEYEVENT != 0 {
        out.push((
            [b"__keyevent@0__:".as_slice(), e.name.as_bytes()].concat(),
            e.key.clone(),
        ));
    }
    out
}

/// A RESP2 reply, as far as events depend on it.
#[derive(Debug, PartialEq)]
enum Reply<'a> {
    Ok,
    Int(i64),
    /// A bulk string or a non-empty array (first element, if a bulk string).
    Value(Option<&'a [u8]>),
    /// Nil, a null or empty array, an error: nothing changed.
    Nothing,
}

fn reply_of(raw: &[u8]) -> Reply<'_> {
    let line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    let head = raw.get(1..line_end).unwrap_or_default();
    let num = || std::str::from_utf8(head).ok()?.parse::<i64>().ok();
    match raw.first() {
        Some(b'+') => Reply::Ok,
        Some(b':') => num().map_or(Reply::Nothing, Reply::Int),
        Some(b'$') if num().is_some_and(|n| n >= 0) => Reply::Value(None),
        Some(b'*') if num().is_some_and(|n| n > 0) => {
            // The first element, when it is a bulk string (LMPOP's key).
            let rest = raw.get(line_end + 2..).unwrap_or_default();
            let first = match rest.first() {
                Some(b'$') => {
                    let end = rest.windows(2).position(|w| w == b"\r\n");
                    end.and_then(|e| {
                        let n: usize = std::str::from_utf8(rest.get(1..e)?).ok()?.parse().ok()?;
                        rest.get(e + 2..e + 2 + n)
                    })
                }
                _ => None,
            };
            Reply::Value(Some(first.unwrap_or_default()))
        }
        _ => Reply::Nothing,
    }
}

/// The direction word of LMPOP/ZMPOP (`first`: the index of numkeys; the blocking forms have
/// their timeout before it).
fn mpop_direction(args: &[Vec<u8>], first: usize) -> &[u8] {
    let numkeys = args
        .get(first)
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    args.get(first + 1 + numkeys)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn has_word(args: &[Vec<u8>], words: &[&str]) -> bool {
    args.iter()
        .any(|a| words.iter().any(|w| a.eq_ignore_ascii_case(w.as_bytes())))
}

/// Whether EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT set a time already past (Redis then deletes the
/// key and sends `del`, not `expire`).
fn expire_in_past(name: &str, when: &[u8], now_ms: u64) -> bool {
    let Some(v) = std::str::from_utf8(when)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return false;
    };
    let at_ms = match name {
        "expire" => (now_ms as i64).saturating_add(v.saturating_mul(1000)),
        "pexpire" => (now_ms as i64).saturating_add(v),
        "expireat" => v.saturating_mul(1000),
        _ => v,
    };
    at_ms <= now_ms as i64
}

/// The events of write command `args` (name lowercase in `name`) that answered `raw` (RESP2).
/// A command whose reply does not tell which keys changed (DEL of several keys that deleted
/// only some; a collection emptied by a removal) sends what the reply proves.
pub fn events_of(name: &str, args: &[Vec<u8>], raw: &[u8], now_ms: u64) -> Vec<Event> {
    let r = reply_of(raw);
    let key = args.get(1).map(Vec::as_slice).unwrap_or_default();
    let arg = |i: usize| args.get(i).map(Vec::as_slice).unwrap_or_default();
    let changed = match r {
        Reply::Ok | Reply::Value(_) => true,
        Reply::Int(n) => n > 0,
        Reply::Nothing => false,
    };
    let one = |class, ev_name| {
        if changed {
            vec![ev(class, ev_name, key)]
        } else {
            Vec::new()
        }
    };
    match name {
        "set" => {
            let conditional = has_word(&args[3.min(args.len())..], &["nx", "xx"]);
            let done = match r {
                Reply::Ok => true,
                // SET ... GET answers the old value: the write happened unless NX/XX held it.
                Reply::Value(_) => !conditional,
                Reply::Nothing => !conditional && has_word(&args[3.min(args.len())..], &["get"]),
                Reply::Int(_) => false,
            };
            let mut out = Vec::new();
            if done {
                out.push(ev(STRING, "set", key));
                if has_word(&args[3.min(args.len())..], &["ex", "px", "exat", "pxat"]) {
                    out.push(ev(GENERIC, "expire", key));
                }
            }
            out
        }
        "setnx" => one(STRING, "set"),
        "getset" => match r {
            Reply::Value(_) | Reply::Nothing if !raw.starts_with(b"-") => {
                vec![ev(STRING, "set", key)]
            }
            _ => Vec::new(),
        },
        "setex" | "psetex" if changed => {
            vec![ev(STRING, "set", key), ev(GENERIC, "expire", key)]
        }
        "getdel" => one(GENERIC, "del"),
        "getex" if changed => {
            let rest = &args[2.min(args.len())..];
            if has_word(rest, &["persist"]) {
                vec![ev(GENERIC, "persist", key)]
            } else if has_word(rest, &["ex", "px", "exat", "pxat"]) {
                vec![ev(GENERIC, "expire", key)]
            } else {
                Vec::new()
            }
        }
        "append" => one(STRING, "append"),
        "setrange" if !arg(3).is_empty() => one(STRING, "setrange"),
        "incr" | "decr" | "incrby" | "decrby" if !raw.starts_with(b"-") => {
            vec![ev(STRING, "incrby", key)]
        }
        "incrbyfloat" => one(STRING, "incrbyfloat"),
        "mset" if changed => args[1..]
            .chunks(2)
            .map(|p| ev(STRING, "set", &p[0]))
            .collect(),
        "msetnx" if changed => args[1..]
            .chunks(2)
            .map(|p| ev(STRING, "set", &p[0]))
            .collect(),
        // Which keys of several were deleted is known only when all or none were.
        "del" | "unlink" => match r {
            Reply::Int(n) if n > 0 && n as usize == args.len() - 1 => {
                args[1..].iter().map(|k| ev(GENERIC, "del", k)).collect()
            }
            _ => Vec::new(),
        },
        "expire" | "pexpire" | "expireat" | "pexpireat" if changed => {
            if expire_in_past(name, arg(2), now_ms) {
                vec![ev(GENERIC, "del", key)]
            } else {
                vec![ev(GENERIC, "expire", key)]
            }
        }
        "persist" => one(GENERIC, "persist"),
        "rename" | "renamenx" if changed => {
            vec![
                ev(GENERIC, "rename_from", key),
                ev(GENERIC, "rename_to", arg(2)),
            ]
        }
        "copy" if changed => vec![ev(GENERIC, "copy_to", arg(2))],
        "hset" | "hmset" if !raw.starts_with(b"-") => vec![ev(HASH, "hset", key)],
        "hsetnx" => one(HASH, "hset"),
        "hdel" => one(HASH, "hdel"),
        "hincrby" if !raw.starts_with(b"-") => vec![ev(HASH, "hincrby", key)],
        "hincrbyfloat" => one(HASH, "hincrbyfloat"),
        "lpush" | "lpushx" => one(LIST, "lpush"),
        "rpush" | "rpushx" => one(LIST, "rpush"),
        "lpop" => one(LIST, "lpop"),
        "rpop" => one(LIST, "rpop"),
        "linsert" => one(LIST, "linsert"),
        "lset" => one(LIST, "lset"),
        "lrem" => one(LIST, "lrem"),
        "ltrim" => one(LIST, "ltrim"),
        "rpoplpush" | "lmove" | "brpoplpush" | "blmove" if changed => {
            let (from, to) = if name.ends_with("rpoplpush") {
                ("right".as_bytes(), "left".as_bytes())
            } else {
                (arg(3), arg(4))
            };
            let pop = if from.eq_ignore_ascii_case(b"left") {
                "lpop"
            } else {
                "rpop"
            };
            let push = if to.eq_ignore_ascii_case(b"left") {
                "lpush"
            } else {
                "rpush"
            };
            vec![ev(LIST, pop, key), ev(LIST, push, arg(2))]
        }
        "lmpop" | "blmpop" => match r {
            Reply::Value(Some(k)) => {
                let dir = mpop_direction(args, if name == "lmpop" { 1 } else { 2 });
                let left = dir.eq_ignore_ascii_case(b"left");
                vec![ev(LIST, if left { "lpop" } else { "rpop" }, k)]
            }
            _ => Vec::new(),
        },
        // The blocking pops answer [key, ...]: the key that was served.
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => match r {
            Reply::Value(Some(k)) => {
                let (class, ev_name) = match name {
                    "blpop" => (LIST, "lpop"),
                    "brpop" => (LIST, "rpop"),
                    "bzpopmin" => (ZSET, "zpopmin"),
                    _ => (ZSET, "zpopmax"),
                };
                vec![ev(class, ev_name, k)]
            }
            _ => Vec::new(),
        },
        "sadd" => one(SET, "sadd"),
        "srem" => one(SET, "srem"),
        "spop" => one(SET, "spop"),
        "smove" if changed => vec![ev(SET, "srem", key), ev(SET, "sadd", arg(2))],
        "sinterstore" => one(SET, "sinterstore"),
        "sunionstore" => one(SET, "sunionstore"),
        "sdiffstore" => one(SET, "sdiffstore"),
        "zadd" => {
            let incr = has_word(&args[2.min(args.len())..], &["incr"]);
            match r {
                Reply::Value(_) if incr => vec![ev(ZSET, "zincr", key)],
                Reply::Int(n) if n > 0 => vec![ev(ZSET, "zadd", key)],
                _ => Vec::new(),
            }
        }
        "zincrby" => one(ZSET, "zincr"),
        "zrem" => one(ZSET, "zrem"),
        "zremrangebyscore" => one(ZSET, "zremrangebyscore"),
        "zremrangebyrank" => one(ZSET, "zremrangebyrank"),
        "zremrangebylex" => one(ZSET, "zremrangebylex"),
        "zpopmin" => one(ZSET, "zpopmin"),
        "zpopmax" => one(ZSET, "zpopmax"),
        "zmpop" | "bzmpop" => match r {
            Reply::Value(Some(k)) => {
                let dir = mpop_direction(args, if name == "zmpop" { 1 } else { 2 });
                let min = dir.eq_ignore_ascii_case(b"min");
                vec![ev(ZSET, if min { "zpopmin" } else { "zpopmax" }, k)]
            }
            _ => Vec::new(),
        },
        "zunionstore" => one(ZSET, "zunionstore"),
        "zinterstore" => one(ZSET, "zinterstore"),
        "zdiffstore" => one(ZSET, "zdiffstore"),
        "zrangestore" => one(ZSET, "zrangestore"),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    fn names(cmd: &str, raw: &str) -> Vec<(String, &'static str)> {
        let a = args(cmd);
        let name = String::from_utf8_lossy(&a[0]).to_ascii_lowercase();
        events_of(&name, &a, raw.as_bytes(), 1_000_000)
            .into_iter()
            .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.name))
            .collect()
    }

    fn k(key: &str, name: &'static str) -> (String, &'static str) {
        (key.to_string(), name)
    }

    #[test]
    fn flags_read_and_print_as_redis_does() {
        let show = |s: &str| parse_flags(s.as_bytes()).map(format_flags);
        assert_eq!(show("gKE").as_deref(), Some("gKE"));
        assert_eq!(show("$lshzxeKE").as_deref(), Some("$lshzxeKE"));
        assert_eq!(show("KA").as_deref(), Some("AK"));
        assert_eq!(show("EA").as_deref(), Some("AE"));
        assert_eq!(show("KEn").as_deref(), Some("nKE"));
        // `A` hides `n`, as in Redis.
        assert_eq!(show("AKEmn").as_deref(), Some("AKEm"));
        assert_eq!(show("").as_deref(), Some(""));
        assert_eq!(show("Kq"), None);
    }

    #[test]
    fn messages_follow_the_flags() {
        let e = ev(LIST, "lpush", b"mylist");
        let m = |f: &str| messages(parse_flags(f.as_bytes()).unwrap_or(0), &e);
        assert_eq!(
            m("KEl"),
            vec![
                (b"__keyspace@0__:mylist".to_vec(), b"lpush".to_vec()),
                (b"__keyevent@0__:lpush".to_vec(), b"mylist".to_vec()),
            ]
        );
        assert_eq!(m("El").len(), 1);
        assert!(m("KE$").is_empty(), "list events are not string events");
        assert!(m("l").is_empty(), "neither keyspace nor keyevent");
    }

    #[test]
    fn writes_send_redis_event_names_only_when_they_changed_something() {
        assert_eq!(names("SET foo bar", "+OK\r\n"), vec![k("foo", "set")]);
        assert_eq!(
            names("SET foo bar EX 10", "+OK\r\n"),
            vec![k("foo", "set"), k("foo", "expire")]
        );
        assert!(names("SET foo bar NX", "$-1\r\n").is_empty());
        assert_eq!(names("SET foo bar GET", "$-1\r\n"), vec![k("foo", "set")]);
        assert_eq!(names("EXPIRE foo 1", ":1\r\n"), vec![k("foo", "expire")]);
        assert_eq!(names("EXPIRE foo -1", ":1\r\n"), vec![k("foo", "del")]);
        assert!(names("EXPIRE foo 1", ":0\r\n").is_empty());
        assert_eq!(names("DEL foo", ":1\r\n"), vec![k("foo", "del")]);
        assert_eq!(
            names("DEL a b", ":2\r\n"),
            vec![k("a", "del"), k("b", "del")]
        );
        assert!(names("DEL a", ":0\r\n").is_empty());
        assert_eq!(names("LPUSH l a", ":1\r\n"), vec![k("l", "lpush")]);
        assert_eq!(names("RPOP l", "$1\r\na\r\n"), vec![k("l", "rpop")]);
        assert!(names("RPOP l", "$-1\r\n").is_empty());
        assert_eq!(
            names("LMOVE a b LEFT RIGHT", "$1\r\nx\r\n"),
            vec![k("a", "lpop"), k("b", "rpush")]
        );
        assert_eq!(
            names("LMPOP 2 x y LEFT", "*2\r\n$1\r\ny\r\n*1\r\n$1\r\nv\r\n"),
            vec![k("y", "lpop")]
        );
        assert_eq!(
            names(
                "BLMPOP 0 2 left y RIGHT",
                "*2\r\n$4\r\nleft\r\n*1\r\n$1\r\nv\r\n"
            ),
            vec![k("left", "rpop")],
            "the direction is the word after the keys, not a key named like one"
        );
        assert_eq!(
            names("BRPOP a b 0", "*2\r\n$1\r\nb\r\n$1\r\nv\r\n"),
            vec![k("b", "rpop")]
        );
        assert!(names("BLPOP a 1", "*-1\r\n").is_empty());
        assert_eq!(
            names("BZMPOP 0 1 z MIN", "*2\r\n$1\r\nz\r\n*0\r\n"),
            vec![k("z", "zpopmin")]
        );
        assert!(names("SREM s x", ":0\r\n").is_empty());
        assert_eq!(names("SADD s x", ":1\r\n"), vec![k("s", "sadd")]);
        assert_eq!(names("HMSET h a 1", "+OK\r\n"), vec![k("h", "hset")]);
        assert_eq!(names("HINCRBY h a 1", ":11\r\n"), vec![k("h", "hincrby")]);
        assert_eq!(names("ZADD z 1 a", ":1\r\n"), vec![k("z", "zadd")]);
        assert_eq!(
            names("ZADD z INCR 1 a", "$1\r\n2\r\n"),
            vec![k("z", "zincr")]
        );
        assert!(names("ZREM z x", ":0\r\n").is_empty());
        assert_eq!(names("INCR n", ":0\r\n"), vec![k("n", "incrby")]);
        assert!(names("INCR n", "-ERR value is not an integer\r\n").is_empty());
        assert_eq!(
            names("RENAME a b", "+OK\r\n"),
            vec![k("a", "rename_from"), k("b", "rename_to")]
        );
        assert!(names("SET s v", "-WRONGTYPE x\r\n").is_empty());
    }
}
