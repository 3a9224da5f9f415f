//! Sorted sets against real nodes: the same command script on redis-server and a node with
//! the replies compared (also queued in MULTI), encodings and their thresholds, multi-key
//! commands across owners, and a move of a 20,000-member sorted set while ZADD/ZINCRBY/ZREM/ZPOPMIN hit it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::calls::{cmd, err};
use common::moves::*;
use common::script::*;
use common::*;
use redis::Value;
use ringshift_node_api::*;

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same owner";

const WRITES: &str = "
ZADD z 1 a 2 b 3 c
ZADD z 1 a 2 b 3 c
ZADD z CH 5 a 2 b 9 d
ZADD z NX 100 a 7 e
ZADD z XX 100 a 7 f
ZADD z GT 1 a
ZADD z GT CH 200 a
ZADD z LT CH 150 a
ZADD z XX GT CH 300 a 1 zz
ZADD z NX XX 1 a
ZADD z GT LT 1 a
ZADD z NX GT 1 a
ZADD z INCR 1 a 2 b
ZADD z INCR 10 a
ZADD z INCR NX 10 a
ZADD z INCR XX 10 nope
ZADD z 1 a 2
ZADD z x a
ZADD z nan a
ZADD z 1e400 a
ZADD z NX
ZADD z inf top -inf bottom 1.5 half 0.1 tenth -0 zero 1e20 big
ZSCORE z top
ZSCORE z bottom
ZSCORE z tenth
ZSCORE z zero
ZSCORE z big
ZSCORE z nope
ZMSCORE z a nope half
ZINCRBY z 2.5 half
ZINCRBY z 1 new
ZINCRBY z x half
ZINCRBY z -inf top
ZADD inf 1 a
ZADD inf INCR -inf a
ZINCRBY inf +inf a
ZCARD z
ZCARD nokey
TYPE z
ZRANGE z 0 -1 WITHSCORES
ZRANGE z 2 4
ZRANGE z -3 -1 WITHSCORES
ZRANGE z 5 1
ZRANGE z 0 -1 REV
ZREVRANGE z 0 2 WITHSCORES
ZRANGE z 0 1 LIMIT 0 1
ZRANGE z (1 5 BYSCORE WITHSCORES
ZRANGE z 5 (1 BYSCORE REV
ZRANGE z -inf +inf BYSCORE LIMIT 1 3
ZRANGE z -inf +inf BYSCORE LIMIT -1 3
ZRANGE z -inf +inf BYSCORE LIMIT 2 -1
ZRANGE z -inf +inf BYSCORE LIMIT 100 1
ZRANGE z a b BYSCORE
ZRANGE z 0 1 BYSCORE BYLEX
ZRANGEBYSCORE z -inf +inf
ZRANGEBYSCORE z (2 (9 WITHSCORES
ZRANGEBYSCORE z 2 9 LIMIT 1 1 WITHSCORES
ZRANGEBYSCORE z 2 9 REV
ZREVRANGEBYSCORE z 9 2 WITHSCORES
ZREVRANGEBYSCORE z (9 -inf LIMIT 0 2
ZCOUNT z -inf +inf
ZCOUNT z (1 3
ZCOUNT z 5 1
ZCOUNT z x 1
ZRANK z tenth
ZRANK z top
ZRANK z nope
ZREVRANK z top
ZREVRANK z bottom
ZREM z nope tenth tenth
ZREM nokey a
ZPOPMIN z
ZPOPMIN z 2
ZPOPMAX z
ZPOPMAX z 0
ZPOPMAX z -1
ZPOPMAX z 1 2
ZPOPMIN nokey
ZPOPMIN nokey 3
ZRANGE z 0 -1 WITHSCORES
ZREMRANGEBYRANK z 0 0
ZREMRANGEBYSCORE z (2 9
ZREMRANGEBYSCORE z x 1
ZRANGE z 0 -1 WITHSCORES
ZREMRANGEBYRANK z 0 -1
EXISTS z
ZADD lex 0 alpha 0 bar 0 cool 0 down 0 elephant 0 foo 0 great 0 hill 0 omega
ZRANGEBYLEX lex - [cool
ZRANGEBYLEX lex [bar (foo
ZRANGEBYLEX lex (bar +
ZRANGEBYLEX lex - + LIMIT 2 3
ZREVRANGEBYLEX lex [cool -
ZREVRANGEBYLEX lex + (great LIMIT 0 1
ZRANGEBYLEX lex a b
ZRANGEBYLEX lex - + WITHSCORES
ZRANGE lex [c [e BYLEX
ZRANGE lex (great - BYLEX REV
ZRANGE lex [c [e BYLEX WITHSCORES
ZLEXCOUNT lex - +
ZLEXCOUNT lex (bar [foo
ZLEXCOUNT lex x y
ZREMRANGEBYLEX lex [alpha (cool
ZRANGE lex 0 -1
ZADD {t}a 1 x 2 y 3 z
ZADD {t}b 10 y 20 z 30 w
SADD {t}s y w q
SET {t}str v
ZUNION 2 {t}a {t}b WITHSCORES
ZUNION 2 {t}a {t}b WEIGHTS 2 0.5 WITHSCORES
ZUNION 2 {t}a {t}b AGGREGATE MAX WITHSCORES
ZUNION 2 {t}a {t}b AGGREGATE MIN
ZINTER 2 {t}a {t}b WITHSCORES
ZINTER 2 {t}a {t}s WITHSCORES
ZINTER 3 {t}a {t}b {t}s AGGREGATE MAX WITHSCORES
ZDIFF 2 {t}a {t}b WITHSCORES
ZDIFF 1 {t}a
ZUNION 2 {t}a {t}str
ZUNION 0 {t}a
ZUNION 3 {t}a {t}b
ZUNION 2 {t}a {t}b WEIGHTS 1
ZUNION 2 {t}a {t}b WEIGHTS 1 x
ZUNION 2 {t}a {t}b AGGREGATE avg
ZDIFF 2 {t}a {t}b WEIGHTS 1 1
ZUNIONSTORE {t}d 2 {t}a {t}b
ZRANGE {t}d 0 -1 WITHSCORES
ZINTERSTORE {t}d 2 {t}a {t}b WEIGHTS 1 -1
ZRANGE {t}d 0 -1 WITHSCORES
ZDIFFSTORE {t}d 2 {t}b {t}a
ZRANGE {t}d 0 -1 WITHSCORES
ZINTERSTORE {t}d 2 {t}a {t}none
EXISTS {t}d
ZUNIONSTORE {t}str 1 {t}a
TYPE {t}str
ZRANGE {t}str 0 -1 WITHSCORES
SET {t}str2 v
SUNIONSTORE {t}str2 {t}s
TYPE {t}str2
SET {t}str3 v
ZRANGESTORE {t}str3 {t}a 0 -1
TYPE {t}str3
ZUNIONSTORE {t}d 1 {t}a WITHSCORES
ZINTERCARD 2 {t}a {t}b
ZINTERCARD 2 {t}a {t}b LIMIT 1
ZINTERCARD 2 {t}a {t}b LIMIT -1
ZINTERCARD 0 {t}a
ZRANGESTORE {t}r {t}b 0 1
ZRANGE {t}r 0 -1 WITHSCORES
ZRANGESTORE {t}r {t}b 15 +inf BYSCORE LIMIT 0 1
ZRANGE {t}r 0 -1 WITHSCORES
ZRANGESTORE {t}r {t}b 5 1
EXISTS {t}r
ZRANGESTORE {t}r {t}none 0 -1
ZRANGESTORE {t}r {t}b 0 -1 WITHSCORES
ZMPOP 2 {t}none {t}b MIN
ZMPOP 2 {t}none {t}b MAX COUNT 10
ZMPOP 1 {t}none MIN
ZMPOP 0 {t}b MIN
ZMPOP 1 {t}b LEFT
ZMPOP 1 {t}b MIN COUNT 0
ZMPOP 1 {t}a MIN COUNT 1 COUNT 1
SET str v
ZADD str 1 a
ZRANGE str 0 -1
ZSCORE str a
ZCARD str
ZPOPMIN str
ZRANDMEMBER str
ZADD one 5 only
ZRANDMEMBER one
ZRANDMEMBER one 1 WITHSCORES
ZRANDMEMBER one -3 WITHSCORES
ZRANDMEMBER one 0
ZRANDMEMBER nokey
ZRANDMEMBER nokey 5
ZRANDMEMBER one 1 BAD
ZSCAN one 0
ZSCAN nokey 0
";

#[tokio::test(flavor = "multi_thread")]
async fn sorted_set_commands_answer_like_redis_server() {
    let (server, server_addr) = start_redis("zsets-compat-server", "127.0.12.1");
    let node = NodeProc::start("zsets-compat", "a", "127.0.12.2");
    install(&placement(&["a"]), &[&node]).await;
    // RESP2, then RESP3 (scores as doubles, WITHSCORES as pairs).
    for resp3 in [false, true] {
        compare_from_empty(&server_addr, &node.data_addr(), WRITES, resp3);
    }
    drop(server);
}

/// Pipelined writes are evaluated together in one writer batch: pops, range removals and
/// stores must see the members the batch's earlier writes added, moved or removed.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_writes_see_each_other_like_redis_server() {
    let (server, server_addr) = start_redis("zsets-pipe-server", "127.0.12.8");
    let node = NodeProc::start("zsets-pipe", "a", "127.0.12.9");
    install(&placement(&["a"]), &[&node]).await;
    let script: &[&[&str]] = &[
        &["ZADD", "{p}z", "5", "a", "1", "b", "3", "c", "4", "d"],
        &["ZPOPMIN", "{p}z"],
        &["ZADD", "{p}z", "0", "e", "9", "b"],
        &["ZINCRBY", "{p}z", "-10", "d"],
        &["ZPOPMAX", "{p}z", "2"],
        &["ZREM", "{p}z", "e"],
        &["ZADD", "{p}z", "2", "f", "2", "g", "7", "h"],
        &["ZREMRANGEBYSCORE", "{p}z", "(2", "5"],
        &["ZUNIONSTORE", "{p}u", "1", "{p}z"],
        &["ZRANGESTORE", "{p}r", "{p}z", "1", "-1"],
        &["ZMPOP", "2", "{p}none", "{p}r", "MAX", "COUNT", "1"],
        &["ZREMRANGEBYRANK", "{p}u", "0", "0"],
        &["ZRANGE", "{p}z", "0", "-1", "WITHSCORES"],
        &["ZRANGE", "{p}u", "0", "-1", "WITHSCORES"],
        &["ZRANGE", "{p}r", "0", "-1", "WITHSCORES"],
    ];
    let run = |addr: &str| -> Vec<Value> {
        let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
        let mut c = client.get_connection().unwrap();
        let mut pipe = redis::pipe();
        for line in script {
            let mut k = redis::cmd(line[0]);
            for a in &line[1..] {
                k.arg(*a);
            }
            pipe.add_command(k);
        }
        pipe.query(&mut c).unwrap()
    };
    assert_eq!(run(&node.data_addr()), run(&server_addr));
    drop(server);
}

/// Sorted-set reads queued in MULTI see the transaction's own earlier writes.
const IN_MULTI: &str = "
ZADD z 1 a 2 b 3 c
MULTI
ZADD z 5 a 0 d
ZREM z b
ZSCORE z a
ZMSCORE z a b d nope
ZCARD z
ZRANK z a
ZREVRANK z d
ZRANK z b
ZRANGE z 0 -1 WITHSCORES
ZRANGE z (0 +inf BYSCORE LIMIT 0 2
ZREVRANGEBYSCORE z +inf -inf WITHSCORES
ZREVRANGE z 0 1
ZCOUNT z 0 4
ZINCRBY z 10 c
ZRANGE z 0 0 REV WITHSCORES
ZPOPMIN z
ZRANGE z 0 -1
ZADD lex 0 a 0 b 0 c 0 d
ZRANGEBYLEX lex [b +
ZREVRANGEBYLEX lex (d -
ZLEXCOUNT lex [a (c
ZUNION 2 z lex WITHSCORES
ZINTER 2 z lex
ZDIFF 2 lex z
ZINTERCARD 2 z lex
ZADD one 7 x
ZRANDMEMBER one
ZRANDMEMBER one 2 WITHSCORES
ZSCAN one 0
SET str v
ZSCORE str a
ZRANGE str 0 -1
DEL z
ZCARD z
ZSCORE z a
ZRANGE z 0 -1
EXEC
ZRANGE lex 0 -1 WITHSCORES
ZCARD z
";

#[tokio::test(flavor = "multi_thread")]
async fn sorted_set_reads_in_multi_see_its_writes_like_redis_server() {
    let (server, server_addr) = start_redis("zsets-multi-server", "127.0.12.10");
    let node = NodeProc::start("zsets-multi", "a", "127.0.12.11");
    install(&placement(&["a"]), &[&node]).await;
    for resp3 in [false, true] {
        compare_from_empty(&server_addr, &node.data_addr(), IN_MULTI, resp3);
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn encodings_follow_the_listpack_thresholds_and_config_set() {
    let node = NodeProc::start("zsets-encoding", "a", "127.0.12.3");
    install(&placement(&["a"]), &[&node]).await;
    let mut c = node.redis();
    cmd::<i64>(&mut c, &["ZADD", "z", "1", "a"]);
    assert_eq!(
        cmd::<String>(&mut c, &["OBJECT", "ENCODING", "z"]),
        "listpack"
    );
    let long = "x".repeat(65);
    cmd::<i64>(&mut c, &["ZADD", "z", "2", &long]);
    assert_eq!(
        cmd::<String>(&mut c, &["OBJECT", "ENCODING", "z"]),
        "skiplist"
    );
    cmd::<()>(&mut c, &["CONFIG", "SET", "zset-max-ziplist-value", "100"]);
    assert_eq!(
        cmd::<String>(&mut c, &["OBJECT", "ENCODING", "z"]),
        "listpack"
    );
    let got: Vec<String> = cmd(&mut c, &["CONFIG", "GET", "zset-max-listpack-value"]);
    assert_eq!(got, ["zset-max-listpack-value", "100"]);
    cmd::<()>(&mut c, &["CONFIG", "SET", "zset-max-listpack-entries", "1"]);
    assert_eq!(
        cmd::<String>(&mut c, &["OBJECT", "ENCODING", "z"]),
        "skiplist"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_key_sorted_set_commands_need_one_owner() {
    let a = NodeProc::start("zsets-crossslot", "a", "127.0.12.4");
    let b = NodeProc::start("zsets-crossslot", "b", "127.0.12.5");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let owner = |k: &str| p.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap();
    let first = "k0".to_string();
    let other = (1..1000)
        .map(|i| format!("k{i}"))
        .find(|k| owner(k) != owner(&first))
        .unwrap();
    let mut c = a.redis();
    for args in [
        vec!["ZUNION", "2", &first, &other],
        vec!["ZINTERSTORE", &first, "1", &other],
        vec!["ZRANGESTORE", &first, &other, "0", "-1"],
        vec!["ZMPOP", "2", &first, &other, "MIN"],
        vec!["ZINTERCARD", "2", &first, &other],
    ] {
        assert_eq!(err(&mut c, &args), CROSSSLOT, "{args:?}");
    }
    cmd::<i64>(&mut c, &["ZADD", "{t}a", "1", "x", "2", "y"]);
    cmd::<i64>(&mut c, &["ZADD", "{t}b", "5", "y"]);
    assert_eq!(
        cmd::<i64>(&mut c, &["ZINTERSTORE", "{t}c", "2", "{t}a", "{t}b"]),
        1
    );
    // Through the other node (forwarded to the owner).
    let mut cb = b.redis();
    let got: Vec<String> = cmd(&mut cb, &["ZRANGE", "{t}c", "0", "-1", "WITHSCORES"]);
    assert_eq!(got, ["y", "7"]);
}

/// A sorted set's members and scores, as ZRANGE WITHSCORES lists them.
fn zrange(c: &mut redis::Connection, key: &str) -> Vec<(String, String)> {
    cmd(c, &["ZRANGE", key, "0", "-1", "WITHSCORES"])
}

/// Moves the ranges holding a 20,000-member sorted set and small ones from a to b while one
/// client keeps writing to them (ZADD, ZINCRBY, ZREM, ZPOPMIN: catch-up replays their
/// per-element records); the target ends with exactly the acknowledged state, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_20k_member_sorted_set_moves_with_writes_going_on() {
    const MEMBERS: usize = 20_000;
    const SMALL: usize = 200;
    let a = NodeProc::start("zsets-move", "a", "127.0.12.6");
    let b = NodeProc::start("zsets-move", "b", "127.0.12.7");
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    let (p2, ranges) = split_to_b(&p1);
    let moving = |k: &str| in_ranges(&ranges, k);
    let big = (0..)
        .map(|i| format!("big{i}"))
        .find(|k| moving(k))
        .unwrap();
    let mut c = a.redis();
    // model: key -> member -> score (f64), the acknowledged state.
    let model: Arc<Mutex<BTreeMap<String, BTreeMap<String, f64>>>> = Default::default();
    for part in (0..MEMBERS).step_by(1000).collect::<Vec<_>>().chunks(10) {
        let mut pipe = redis::pipe();
        for &start in part {
            let mut k = redis::cmd("ZADD");
            k.arg(&big);
            for i in start..(start + 1000).min(MEMBERS) {
                k.arg(initial_score(i).to_string()).arg(format!("m{i}"));
            }
            pipe.add_command(k).ignore();
        }
        pipe.query::<()>(&mut c).unwrap();
    }
    model.lock().unwrap().insert(
        big.clone(),
        (0..MEMBERS)
            .map(|i| (format!("m{i}"), initial_score(i)))
            .collect(),
    );
    for i in 0..SMALL {
        let z = format!("z{i}");
        cmd::<i64>(&mut c, &["ZADD", &z, "1", "a", "2", "b"]);
        model
            .lock()
            .unwrap()
            .insert(z, BTreeMap::from([("a".into(), 1.0), ("b".into(), 2.0)]));
    }
    install(&p2, &[&a, &b]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (model, stop, addr, big) = (model.clone(), stop.clone(), a.data_addr(), big.clone());
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut c = client.get_connection().unwrap();
            let mut i: usize = 0;
            while !stop.load(Ordering::Relaxed) {
                let z = format!("z{}", i % SMALL);
                let member = format!("m{}", (i * 7919) % MEMBERS);
                let write = match i % 5 {
                    0 => redis::cmd("ZADD").arg(&big).arg(i).arg(&member).clone(),
                    1 => redis::cmd("ZINCRBY")
                        .arg(&big)
                        .arg("0.25")
                        .arg(&member)
                        .clone(),
                    2 => redis::cmd("ZREM").arg(&big).arg(&member).clone(),
                    3 => redis::cmd("ZINCRBY")
                        .arg(&z)
                        .arg(1)
                        .arg(format!("n{i}"))
                        .clone(),
                    _ => redis::cmd("ZPOPMIN").arg(&z).clone(),
                };
                // Each acknowledged write goes into the model (one client, in order).
                if let Ok(v) = write.query::<Value>(&mut c) {
                    let mut m = model.lock().unwrap();
                    match i % 5 {
                        0 => {
                            m.entry(big.clone()).or_default().insert(member, i as f64);
                        }
                        1 => {
                            *m.entry(big.clone()).or_default().entry(member).or_default() += 0.25;
                        }
                        2 => {
                            m.entry(big.clone()).or_default().remove(&member);
                        }
                        3 => {
                            *m.entry(z).or_default().entry(format!("n{i}")).or_default() += 1.0;
                        }
                        _ => {
                            if let Value::Array(items) = v
                                && let Some(Value::BulkString(popped)) = items.first()
                            {
                                let e = m.entry(z.clone()).or_default();
                                e.remove(&String::from_utf8_lossy(popped).to_string());
                                if e.is_empty() {
                                    m.remove(&z);
                                }
                            }
                        }
                    }
                }
                i += 1;
            }
            i
        })
    };

    let started = Instant::now();
    let mig = caller(p2.epoch(), "mig-zset", 1);
    start_pull(&b, &a, &mig, &ranges).await;
    let s = wait_pull(&b, "mig-zset", |s| s.phase == PullPhase::CatchingUp).await;
    let copy_took = started.elapsed();
    assert_eq!(s.verified, Some(true));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = load.join().unwrap();
    assert!(writes > 100, "load made {writes} writes");
    // What the source serves before the cutover, in order, is what the target must serve.
    let before = zrange(&mut c, &big);
    let f = fence(&a, &mig, &ranges).await;
    wait_pull(&b, "mig-zset", |s| applied_up_to(s, &f)).await;
    let sa = checksum(&a, &ranges).await;
    assert_eq!(sa, checksum(&b, &ranges).await);

    let mut cb = b.redis();
    let p3 = p2.commit("a", "b").unwrap();
    install(&p3, &[&a, &b]).await;
    assert_eq!(zrange(&mut cb, &big), before, "the big set on the target");
    let model = std::mem::take(&mut *model.lock().unwrap());
    let want = |m: &BTreeMap<String, f64>| {
        let mut v: Vec<(&String, &f64)> = m.iter().collect();
        v.sort_by(|x, y| x.1.total_cmp(y.1).then(x.0.cmp(y.0)));
        v.into_iter()
            .map(|(m, s)| (m.clone(), format_g17(*s)))
            .collect::<Vec<_>>()
    };
    let mut moved = 0;
    let mut ca = a.redis();
    for (k, members) in &model {
        if moving(k) {
            moved += 1;
            assert_same(&zrange(&mut cb, k), &want(members), k);
        }
        // Through a too (forwarded when it moved).
        assert_eq!(cmd::<usize>(&mut ca, &["ZCARD", k]), members.len(), "{k}");
    }
    assert!(moved > SMALL / 10, "only {moved} sorted sets moved");
    let top: Vec<String> = cmd(&mut cb, &["ZREVRANGE", &big, "0", "0"]);
    let by_rank: i64 = cmd(&mut cb, &["ZREVRANK", &big, &top[0]]);
    assert_eq!(by_rank, 0);
    eprintln!(
        "moved a {MEMBERS}-member sorted set and {moved} small ones with {writes} writes going on: copy to catching up in {copy_took:?}"
    );
}

/// Equal member lists, else a panic naming the first difference (the lists are long).
fn assert_same(got: &[(String, String)], want: &[(String, String)], key: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{key} on the target: {} members, want {}; first difference at {i}: {:?}, want {:?}",
            got.len(),
            want.len(),
            &got[i.saturating_sub(1)..(i + 2).min(got.len())],
            &want[i.saturating_sub(1)..(i + 2).min(want.len())],
        );
    }
}

/// The big set's scores: repeating (ties order by member), negative ones and fractions.
fn initial_score(i: usize) -> f64 {
    (i % 997) as f64 - 300.5
}

/// Scores as the node prints them for the values this test writes (integers and quarters).
fn format_g17(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
