//! The command table: names, arities (Redis convention: n = exactly n arguments including the
//! name, -n = at least n), flags and key positions, as COMMAND reports them.

pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const W: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly", "fast"];
const C: &[&str] = &["fast", "loading", "stale"];
const TX: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const PS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

pub const COMMANDS: &[CommandSpec] = &[
    spec("ping", -1, C, (0, 0, 0)),
    spec("echo", 2, C, (0, 0, 0)),
    spec(
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        (0, 0, 0),
    ),
    spec(
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        (0, 0, 0),
    ),
    spec(
        "quit",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        (0, 0, 0),
    ),
    spec("select", 2, C, (0, 0, 0)),
    spec("client", -2, C, (0, 0, 0)),
    spec("command", -1, &["loading", "stale"], (0, 0, 0)),
    spec("config", -2, &["admin", "loading", "stale"], (0, 0, 0)),
    spec("info", -1, &["loading", "stale"], (0, 0, 0)),
    spec("dbsize", 1, &["readonly"], (0, 0, 0)),
    spec("scan", -2, &["readonly"], (0, 0, 0)),
    spec("get", 2, R, (1, 1, 1)),
    spec("set", -3, W, (1, 1, 1)),
    spec("del", -2, &["write"], (1, -1, 1)),
    spec("unlink", -2, &["write", "fast"], (1, -1, 1)),
    spec("exists", -2, R, (1, -1, 1)),
    spec("mget", -2, R, (1, -1, 1)),
    spec("mset", -3, W, (1, -1, 2)),
    spec("incr", 2, W, (1, 1, 1)),
    spec("decr", 2, W, (1, 1, 1)),
    spec("incrby", 3, W, (1, 1, 1)),
    spec("decrby", 3, W, (1, 1, 1)),
    spec("expire", -3, &["write", "fast"], (1, 1, 1)),
    spec("pexpire", -3, &["write", "fast"], (1, 1, 1)),
    spec("persist", 2, &["write", "fast"], (1, 1, 1)),
    spec("ttl", 2, R, (1, 1, 1)),
    spec("pttl", 2, R, (1, 1, 1)),
    spec("strlen", 2, R, (1, 1, 1)),
    spec("type", 2, R, (1, 1, 1)),
    spec("hset", -4, W, (1, 1, 1)),
    spec("hmset", -4, W, (1, 1, 1)),
    spec("hsetnx", 4, W, (1, 1, 1)),
    spec("hdel", -3, &["write", "fast"], (1, 1, 1)),
    spec("hincrby", 4, W, (1, 1, 1)),
    spec("hincrbyfloat", 4, W, (1, 1, 1)),
    spec("hget", 3, R, (1, 1, 1)),
    spec("hmget", -3, R, (1, 1, 1)),
    spec("hexists", 3, R, (1, 1, 1)),
    spec("hstrlen", 3, R, (1, 1, 1)),
    spec("hlen", 2, R, (1, 1, 1)),
    spec("hgetall", 2, &["readonly"], (1, 1, 1)),
    spec("hkeys", 2, &["readonly"], (1, 1, 1)),
    spec("hvals", 2, &["readonly"], (1, 1, 1)),
    spec("hscan", -3, &["readonly"], (1, 1, 1)),
    spec("hrandfield", -2, &["readonly"], (1, 1, 1)),
    spec("sadd", -3, W, (1, 1, 1)),
    spec("srem", -3, &["write", "fast"], (1, 1, 1)),
    spec("spop", -2, &["write", "fast"], (1, 1, 1)),
    spec("smove", 4, &["write", "fast"], (1, 2, 1)),
    spec("sinterstore", -3, W, (1, -1, 1)),
    spec("sunionstore", -3, W, (1, -1, 1)),
    spec("sdiffstore", -3, W, (1, -1, 1)),
    spec("smembers", 2, &["readonly"], (1, 1, 1)),
    spec("sismember", 3, R, (1, 1, 1)),
    spec("smismember", -3, R, (1, 1, 1)),
    spec("scard", 2, R, (1, 1, 1)),
    spec("srandmember", -2, &["readonly"], (1, 1, 1)),
    spec("sinter", -2, &["readonly"], (1, -1, 1)),
    spec("sunion", -2, &["readonly"], (1, -1, 1)),
    spec("sdiff", -2, &["readonly"], (1, -1, 1)),
    spec("sintercard", -3, &["readonly"], (0, 0, 0)),
    spec("sscan", -3, &["readonly"], (1, 1, 1)),
    spec("zadd", -4, W, (1, 1, 1)),
    spec("zincrby", 4, W, (1, 1, 1)),
    spec("zrem", -3, &["write", "fast"], (1, 1, 1)),
    spec("zremrangebyrank", 4, &["write"], (1, 1, 1)),
    spec("zremrangebyscore", 4, &["write"], (1, 1, 1)),
    spec("zremrangebylex", 4, &["write"], (1, 1, 1)),
    spec("zpopmin", -2, &["write", "fast"], (1, 1, 1)),
    spec("zpopmax", -2, &["write", "fast"], (1, 1, 1)),
    spec("zmpop", -4, &["write"], (0, 0, 0)),
    spec(
        "bzpopmin",
        -3,
        &["write", "noscript", "blocking", "fast"],
        (1, -2, 1),
    ),
    spec(
        "bzpopmax",
        -3,
        &["write", "noscript", "blocking", "fast"],
        (1, -2, 1),
    ),
    spec(
        "bzmpop",
        -5,
        &["write", "blocking", "movablekeys"],
        (0, 0, 0),
    ),
    spec("zunionstore", -4, W, (1, 1, 1)),
    spec("zinterstore", -4, W, (1, 1, 1)),
    spec("zdiffstore", -4, W, (1, 1, 1)),
    spec("zrangestore", -5, W, (1, 2, 1)),
    spec("zscore", 3, R, (1, 1, 1)),
    spec("zmscore", -3, R, (1, 1, 1)),
    spec("zcard", 2, R, (1, 1, 1)),
    spec("zcount", 4, R, (1, 1, 1)),
    spec("zlexcount", 4, R, (1, 1, 1)),
    spec("zrange", -4, &["readonly"], (1, 1, 1)),
    spec("zrangebyscore", -4, &["readonly"], (1, 1, 1)),
    spec("zrevrangebyscore", -4, &["readonly"], (1, 1, 1)),
    spec("zrangebylex", -4, &["readonly"], (1, 1, 1)),
    spec("zrevrangebylex", -4, &["readonly"], (1, 1, 1)),
    spec("zrevrange", -4, &["readonly"], (1, 1, 1)),
    spec("zrank", -3, R, (1, 1, 1)),
    spec("zrevrank", -3, R, (1, 1, 1)),
    spec("zunion", -3, &["readonly"], (0, 0, 0)),
    spec("zinter", -3, &["readonly"], (0, 0, 0)),
    spec("zdiff", -3, &["readonly"], (0, 0, 0)),
    spec("zintercard", -3, &["readonly"], (0, 0, 0)),
    spec("zrandmember", -2, &["readonly"], (1, 1, 1)),
    spec("zscan", -3, &["readonly"], (1, 1, 1)),
    spec("lpush", -3, W, (1, 1, 1)),
    spec("rpush", -3, W, (1, 1, 1)),
    spec("lpushx", -3, W, (1, 1, 1)),
    spec("rpushx", -3, W, (1, 1, 1)),
    spec("lpop", -2, &["write", "fast"], (1, 1, 1)),
    spec("rpop", -2, &["write", "fast"], (1, 1, 1)),
    spec("lmpop", -4, &["write", "movablekeys"], (0, 0, 0)),
    spec("lrange", 4, &["readonly"], (1, 1, 1)),
    spec("lindex", 3, &["readonly"], (1, 1, 1)),
    spec("llen", 2, R, (1, 1, 1)),
    spec("lpos", -3, &["readonly"], (1, 1, 1)),
    spec("lset", 4, W, (1, 1, 1)),
    spec("linsert", 5, W, (1, 1, 1)),
    spec("lrem", 4, &["write"], (1, 1, 1)),
    spec("ltrim", 4, &["write"], (1, 1, 1)),
    spec("lmove", 5, W, (1, 2, 1)),
    spec("rpoplpush", 3, W, (1, 2, 1)),
    spec("blpop", -3, &["write", "noscript", "blocking"], (1, -2, 1)),
    spec("brpop", -3, &["write", "noscript", "blocking"], (1, -2, 1)),
    spec(
        "blmove",
        6,
        &["write", "denyoom", "noscript", "blocking"],
        (1, 2, 1),
    ),
    spec(
        "brpoplpush",
        4,
        &["write", "denyoom", "noscript", "blocking"],
        (1, 2, 1),
    ),
    spec(
        "blmpop",
        -5,
        &["write", "blocking", "movablekeys"],
        (0, 0, 0),
    ),
    spec("setnx", 3, W, (1, 1, 1)),
    spec("setex", 4, W, (1, 1, 1)),
    spec("psetex", 4, W, (1, 1, 1)),
    spec("getset", 3, W, (1, 1, 1)),
    spec("getdel", 2, &["write", "fast"], (1, 1, 1)),
    spec("getex", -2, &["write", "fast"], (1, 1, 1)),
    spec("append", 3, W, (1, 1, 1)),
    spec("getrange", 4, &["readonly"], (1, 1, 1)),
    spec("substr", 4, &["readonly"], (1, 1, 1)),
    spec("setrange", 4, W, (1, 1, 1)),
    spec("incrbyfloat", 3, W, (1, 1, 1)),
    spec("msetnx", -3, W, (1, -1, 2)),
    spec("expireat", -3, &["write", "fast"], (1, 1, 1)),
    spec("pexpireat", -3, &["write", "fast"], (1, 1, 1)),
    spec("expiretime", 2, R, (1, 1, 1)),
    spec("pexpiretime", 2, R, (1, 1, 1)),
    spec("touch", -2, R, (1, -1, 1)),
    spec("rename", 3, &["write"], (1, 2, 1)),
    spec("renamenx", 3, &["write", "fast"], (1, 2, 1)),
    spec("copy", -3, W, (1, 2, 1)),
    spec("time", 1, C, (0, 0, 0)),
    spec("setbit", 4, W, (1, 1, 1)),
    spec("getbit", 3, R, (1, 1, 1)),
    spec("lcs", -3, &["readonly"], (1, 2, 1)),
    spec("memory", -2, &["readonly"], (2, 2, 1)),
    spec("object", -2, &["readonly"], (2, 2, 1)),
    spec("keys", 2, &["readonly"], (0, 0, 0)),
    spec("randomkey", 1, &["readonly"], (0, 0, 0)),
    spec("flushall", -1, &["write"], (0, 0, 0)),
    spec("flushdb", -1, &["write"], (0, 0, 0)),
    spec("function", -2, &["noscript"], (0, 0, 0)),
    spec("multi", 1, TX, (0, 0, 0)),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        (0, 0, 0),
    ),
    spec("discard", 1, TX, (0, 0, 0)),
    spec("watch", -2, TX, (1, -1, 1)),
    spec("unwatch", 1, TX, (0, 0, 0)),
    spec(
        "reset",
        1,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        (0, 0, 0),
    ),
    spec("subscribe", -2, PS, (0, 0, 0)),
    spec("psubscribe", -2, PS, (0, 0, 0)),
    spec("unsubscribe", -1, PS, (0, 0, 0)),
    spec("punsubscribe", -1, PS, (0, 0, 0)),
    spec(
        "publish",
        3,
        &["pubsub", "loading", "stale", "fast"],
        (0, 0, 0),
    ),
    spec("pubsub", -2, &[], (0, 0, 0)),
    spec("rspublish", 5, &["internal"], (0, 0, 0)),
    spec("rsfwd", -5, &["internal"], (0, 0, 0)),
    spec("rsfwdtx", -6, &["internal"], (0, 0, 0)),
    spec("rswatch", -5, &["internal"], (0, 0, 0)),
    spec("rsfwd2", -6, &["internal"], (0, 0, 0)),
];

pub fn lookup(name_lower: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name_lower)
}

/// Index into `COMMANDS` of a command name in any case, without allocating.
pub fn index(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// True if `argc` (including the command name) satisfies `arity`.
pub fn arity_ok(arity: i64, argc: usize) -> bool {
    let argc = argc as i64;
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Redis' reply for an unknown command.
pub fn unknown_command_error(args: &[Vec<u8>]) -> String {
    let name = args
        .first()
        .map(|a| String::from_utf8_lossy(a))
        .unwrap_or_default();
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        truncate(&name, 128)
    );
    for a in args.iter().skip(1) {
        if msg.len() >= 128 {
            break;
        }
        msg.push_str(&format!(
            "'{}' ",
            truncate(&String::from_utf8_lossy(a), 128)
        ));
    }
    msg
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn arity_error(name_lower: &str) -> String {
    format!("ERR wrong number of arguments for '{name_lower}' command")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_follows_redis_convention() {
        let get = lookup("get").unwrap();
        assert!(arity_ok(get.arity, 2));
        assert!(!arity_ok(get.arity, 3));
        let set = lookup("set").unwrap();
        assert!(arity_ok(set.arity, 5));
        assert!(!arity_ok(set.arity, 2));
    }

    #[test]
    fn unknown_command_wording() {
        let args = vec![b"FOO".to_vec(), b"a".to_vec(), b"b".to_vec()];
        assert_eq!(
            unknown_command_error(&args),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
    }
}
