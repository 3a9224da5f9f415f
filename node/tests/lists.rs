//! Lists against real nodes: commands and errors as Redis 7 answers them, one owner for
//! multi-key commands, blocking pops (timeouts, wake-ups, INFO's blocked_clients, a client
//! that goes away), a 20,000-element list moved between two nodes intact, and a client blocked
//! in BLPOP served by the new owner after the key's range moved there.

mod common;

use std::time::{Duration, Instant};

use common::calls::{blocked_clients, cmd, err, wait_blocked};
use common::*;
use redis::Value;
use ringshift_node_api::*;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn lrange(c: &mut redis::Connection, key: &str) -> Vec<String> {
    cmd(c, &["LRANGE", key, "0", "-1"])
}

#[tokio::test(flavor = "multi_thread")]
async fn list_commands_answer_like_redis() {
    let a = NodeProc::start("list-cmds", "a", "127.0.7.1");
    install(&placement(&["a"]), &[&a]).await;
    let mut c = a.redis();
    assert_eq!(cmd::<i64>(&mut c, &["RPUSH", "l", "b", "c", "d"]), 3);
    assert_eq!(cmd::<i64>(&mut c, &["LPUSH", "l", "a", "z"]), 5);
    assert_eq!(lrange(&mut c, "l"), ["z", "a", "b", "c", "d"]);
    assert_eq!(cmd::<String>(&mut c, &["TYPE", "l"]), "list");
    assert_eq!(
        cmd::<String>(&mut c, &["OBJECT", "ENCODING", "l"]),
        "quicklist"
    );
    assert_eq!(cmd::<i64>(&mut c, &["LLEN", "l"]), 5);
    assert_eq!(cmd::<String>(&mut c, &["LINDEX", "l", "-1"]), "d");
    assert_eq!(cmd::<Option<String>>(&mut c, &["LINDEX", "l", "5"]), None);
    assert_eq!(
        cmd::<Vec<String>>(&mut c, &["LRANGE", "l", "-3", "100"]),
        ["b", "c", "d"]
    );
    assert_eq!(cmd::<String>(&mut c, &["LPOP", "l"]), "z");
    assert_eq!(cmd::<Vec<String>>(&mut c, &["RPOP", "l", "2"]), ["d", "c"]);
    assert_eq!(
        cmd::<Vec<String>>(&mut c, &["LPOP", "l", "0"]),
        Vec::<String>::new()
    );
    assert_eq!(cmd::<Value>(&mut c, &["LPOP", "none", "1"]), Value::Nil);
    assert_eq!(cmd::<i64>(&mut c, &["LPUSHX", "none", "x"]), 0);
    assert_eq!(cmd::<i64>(&mut c, &["EXISTS", "none"]), 0);
    assert_eq!(cmd::<i64>(&mut c, &["RPUSHX", "l", "c"]), 3);
    // LINSERT / LSET / LREM / LTRIM.
    assert_eq!(cmd::<i64>(&mut c, &["LINSERT", "l", "BEFORE", "b", "x"]), 4);
    assert_eq!(cmd::<i64>(&mut c, &["LINSERT", "l", "after", "c", "y"]), 5);
    assert_eq!(
        cmd::<i64>(&mut c, &["LINSERT", "l", "after", "nope", "y"]),
        -1
    );
    assert_eq!(
        cmd::<i64>(&mut c, &["LINSERT", "none", "after", "a", "y"]),
        0
    );
    assert_eq!(lrange(&mut c, "l"), ["a", "x", "b", "c", "y"]);
    assert_eq!(cmd::<String>(&mut c, &["LSET", "l", "-2", "C"]), "OK");
    assert_eq!(
        err(&mut c, &["LSET", "l", "9", "C"]),
        "ERR index out of range"
    );
    assert_eq!(err(&mut c, &["LSET", "none", "0", "C"]), "ERR no such key");
    assert_eq!(cmd::<i64>(&mut c, &["RPUSH", "l", "x", "a", "x"]), 8);
    assert_eq!(cmd::<i64>(&mut c, &["LREM", "l", "-2", "x"]), 2);
    assert_eq!(lrange(&mut c, "l"), ["a", "x", "b", "C", "y", "a"]);
    assert_eq!(cmd::<i64>(&mut c, &["LREM", "l", "0", "a"]), 2);
    assert_eq!(lrange(&mut c, "l"), ["x", "b", "C", "y"]);
    assert_eq!(cmd::<String>(&mut c, &["LTRIM", "l", "1", "-2"]), "OK");
    assert_eq!(lrange(&mut c, "l"), ["b", "C"]);
    assert_eq!(cmd::<String>(&mut c, &["LTRIM", "l", "5", "10"]), "OK");
    assert_eq!(cmd::<i64>(&mut c, &["EXISTS", "l"]), 0);
    // LPOS.
    cmd::<i64>(
        &mut c,
        &["RPUSH", "p", "a", "b", "c", "1", "2", "3", "c", "c"],
    );
    assert_eq!(cmd::<i64>(&mut c, &["LPOS", "p", "c"]), 2);
    assert_eq!(cmd::<i64>(&mut c, &["LPOS", "p", "c", "RANK", "-1"]), 7);
    assert_eq!(
        cmd::<Vec<i64>>(&mut c, &["LPOS", "p", "c", "COUNT", "0", "MAXLEN", "7"]),
        [2, 6]
    );
    assert_eq!(cmd::<Option<i64>>(&mut c, &["LPOS", "p", "zz"]), None);
    assert!(err(&mut c, &["LPOS", "p", "c", "RANK", "0"]).starts_with("ERR RANK can't be zero"));
    // LMOVE / RPOPLPUSH / LMPOP (one key's rotation included).
    assert_eq!(
        cmd::<String>(&mut c, &["LMOVE", "p", "p", "LEFT", "RIGHT"]),
        "a"
    );
    assert_eq!(cmd::<String>(&mut c, &["RPOPLPUSH", "p", "{p}q"]), "a");
    assert_eq!(lrange(&mut c, "{p}q"), ["a"]);
    assert_eq!(
        cmd::<Value>(&mut c, &["LMOVE", "none", "p", "LEFT", "LEFT"]),
        Value::Nil
    );
    assert_eq!(
        cmd::<(String, Vec<String>)>(&mut c, &["LMPOP", "2", "none", "p", "RIGHT", "COUNT", "2"]),
        ("p".to_string(), vec!["c".to_string(), "c".to_string()])
    );
    assert_eq!(
        cmd::<Value>(&mut c, &["LMPOP", "1", "none", "LEFT"]),
        Value::Nil
    );
    // Types and errors.
    cmd::<()>(&mut c, &["SET", "s", "x"]);
    assert_eq!(err(&mut c, &["LPUSH", "s", "x"]), WRONGTYPE);
    assert_eq!(err(&mut c, &["LRANGE", "s", "0", "1"]), WRONGTYPE);
    assert_eq!(err(&mut c, &["GET", "p"]), WRONGTYPE);
    assert_eq!(err(&mut c, &["RPOPLPUSH", "p", "s"]), WRONGTYPE);
    assert_eq!(cmd::<i64>(&mut c, &["LLEN", "p"]), 5, "nothing moved");
    assert_eq!(
        err(&mut c, &["LPOP", "p", "-1"]),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        err(&mut c, &["LRANGE", "p", "a", "1"]),
        "ERR value is not an integer or out of range"
    );
    // RENAME keeps the list's order (its ends travel with the record).
    assert_eq!(cmd::<String>(&mut c, &["RENAME", "p", "{p}r"]), "OK");
    assert_eq!(lrange(&mut c, "{p}r"), ["b", "c", "1", "2", "3"]);
    // Expiry applies to the whole list.
    cmd::<i64>(&mut c, &["PEXPIRE", "{p}r", "50"]);
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(cmd::<i64>(&mut c, &["LLEN", "{p}r"]), 0);
    // A restart keeps lists.
    cmd::<i64>(&mut c, &["RPUSH", "kept", "1", "2"]);
    drop(c);
    let mut a = a;
    a.restart();
    let mut c = a.redis();
    assert_eq!(lrange(&mut c, "kept"), ["1", "2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_key_list_commands_need_one_owner() {
    let a = NodeProc::start("list-crossslot", "a", "127.0.7.2");
    let b = NodeProc::start("list-crossslot", "b", "127.0.7.3");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let owner = |k: &str| p.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap();
    let first = "k0".to_string();
    let other = (1..1000)
        .map(|i| format!("k{i}"))
        .find(|k| owner(k) != owner(&first))
        .unwrap();
    let mut c = a.redis();
    const CROSS: &str = "CROSSSLOT Keys in request don't hash to the same owner";
    assert_eq!(
        err(&mut c, &["LMOVE", &first, &other, "LEFT", "LEFT"]),
        CROSS
    );
    assert_eq!(err(&mut c, &["LMPOP", "2", &first, &other, "LEFT"]), CROSS);
    assert_eq!(err(&mut c, &["BLPOP", &first, &other, "0"]), CROSS);
    // Hash tags keep keys on one owner, served through either node.
    cmd::<i64>(&mut c, &["RPUSH", "{t}a", "1", "2"]);
    let mut cb = b.redis();
    assert_eq!(
        cmd::<String>(&mut cb, &["LMOVE", "{t}a", "{t}b", "RIGHT", "LEFT"]),
        "2"
    );
    assert_eq!(
        cmd::<(String, String)>(&mut cb, &["BLPOP", "{t}none", "{t}b", "0"]),
        ("{t}b".to_string(), "2".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_pops_wait_wake_and_time_out() {
    let a = NodeProc::start("list-block", "a", "127.0.7.4");
    install(&placement(&["a"]), &[&a]).await;
    let mut c = a.redis();
    // A timeout answers nil after about the timeout.
    let t = Instant::now();
    assert_eq!(cmd::<Value>(&mut c, &["BLPOP", "q", "0.2"]), Value::Nil);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(
        err(&mut c, &["BLPOP", "q", "-1"]),
        "ERR timeout is negative"
    );
    // An element already there is served at once.
    cmd::<i64>(&mut c, &["RPUSH", "q", "x"]);
    assert_eq!(
        cmd::<(String, String)>(&mut c, &["BRPOP", "none", "q", "0"]),
        ("q".to_string(), "x".to_string())
    );
    // A push wakes a client blocked forever, well before the retry interval would.
    let addr = a.data_addr();
    let waiter = std::thread::spawn(move || {
        let mut w = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let t = Instant::now();
        let got: (String, String) = cmd(&mut w, &["BLPOP", "q", "0"]);
        (got, t.elapsed())
    });
    wait_blocked(&mut c, 1);
    cmd::<i64>(&mut c, &["LPUSH", "q", "woken"]);
    let (got, _) = waiter.join().unwrap();
    assert_eq!(got, ("q".to_string(), "woken".to_string()));
    wait_blocked(&mut c, 0);
    // First come, first served: the oldest waiter gets the first element; one that fails
    // (WRONGTYPE destination) leaves the element to the next one.
    cmd::<()>(&mut c, &["SET", "{f}str", "x"]);
    let spawn_wait = |args: &'static [&'static str]| {
        let addr = a.data_addr();
        std::thread::spawn(move || {
            let mut w = redis::Client::open(format!("redis://{addr}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let mut k = redis::cmd(args[0]);
            for x in &args[1..] {
                k.arg(*x);
            }
            k.query::<Value>(&mut w).map_err(|e| e.to_string())
        })
    };
    let failing = spawn_wait(&["BRPOPLPUSH", "{f}q", "{f}str", "0"]);
    wait_blocked(&mut c, 1);
    let oldest = spawn_wait(&["BLPOP", "{f}q", "0"]);
    wait_blocked(&mut c, 2);
    let youngest = spawn_wait(&["BLPOP", "{f}q", "0"]);
    wait_blocked(&mut c, 3);
    cmd::<i64>(&mut c, &["RPUSH", "{f}q", "one"]);
    assert!(failing.join().unwrap().unwrap_err().contains("WRONGTYPE"));
    let pair = |v: &str| {
        Ok(Value::Array(vec![
            Value::BulkString(b"{f}q".to_vec()),
            Value::BulkString(v.as_bytes().to_vec()),
        ]))
    };
    assert_eq!(oldest.join().unwrap(), pair("one"));
    cmd::<i64>(&mut c, &["RPUSH", "{f}q", "two"]);
    assert_eq!(youngest.join().unwrap(), pair("two"));
    wait_blocked(&mut c, 0);
    // BLMOVE moves, and waits like the others.
    cmd::<i64>(&mut c, &["RPUSH", "{m}src", "1"]);
    assert_eq!(
        cmd::<String>(
            &mut c,
            &["BLMOVE", "{m}src", "{m}dst", "LEFT", "RIGHT", "0"]
        ),
        "1"
    );
    assert_eq!(
        cmd::<Value>(
            &mut c,
            &["BLMOVE", "{m}src", "{m}dst", "LEFT", "RIGHT", "0.05"]
        ),
        Value::Nil
    );
    assert_eq!(
        cmd::<(String, Vec<String>)>(
            &mut c,
            &["BLMPOP", "0", "1", "{m}dst", "LEFT", "COUNT", "5"]
        ),
        ("{m}dst".to_string(), vec!["1".to_string()])
    );
    // CLIENT UNBLOCK ends a wait as a timeout (nil) or with Redis' UNBLOCKED error.
    let mut w = a.redis();
    let id: i64 = cmd(&mut w, &["CLIENT", "ID"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        for _ in 0..2 {
            let got = redis::cmd("BLPOP").arg("u").arg("0").query::<Value>(&mut w);
            tx.send(got.map_err(|e| e.to_string())).unwrap();
        }
    });
    let id = id.to_string();
    wait_blocked(&mut c, 1);
    assert_eq!(cmd::<i64>(&mut c, &["CLIENT", "UNBLOCK", &id]), 1);
    assert_eq!(rx.recv().unwrap(), Ok(Value::Nil));
    wait_blocked(&mut c, 1);
    assert_eq!(cmd::<i64>(&mut c, &["CLIENT", "UNBLOCK", &id, "ERROR"]), 1);
    assert!(
        rx.recv()
            .unwrap()
            .unwrap_err()
            .contains("client unblocked via CLIENT UNBLOCK")
    );
    waiter.join().unwrap();
    assert_eq!(
        cmd::<i64>(&mut c, &["CLIENT", "UNBLOCK", &id]),
        0,
        "not blocked now"
    );
    // A client that goes away while blocked is no longer counted (its wait ended with it).
    let mut raw = std::net::TcpStream::connect(a.data_addr()).unwrap();
    use std::io::Write;
    raw.write_all(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nnever\r\n$1\r\n0\r\n")
        .unwrap();
    wait_blocked(&mut c, 1);
    drop(raw);
    wait_blocked(&mut c, 0);
}

/// Writes `n` elements to `key` in pipelined batches of RPUSH.
fn load_list(c: &mut redis::Connection, key: &str, n: usize) {
    for part in (0..n).step_by(1000).collect::<Vec<_>>().chunks(10) {
        let mut pipe = redis::pipe();
        for &start in part {
            let mut k = redis::cmd("RPUSH");
            k.arg(key);
            for i in start..(start + 1000).min(n) {
                k.arg(format!("e{i}"));
            }
            pipe.add_command(k).ignore();
        }
        pipe.query::<()>(c).unwrap();
    }
}

/// Moves the ranges `p2` transfers from a to b (copy, catch-up, fence, commit) and returns the
/// committed placement.
async fn move_ranges(
    a: &NodeProc,
    b: &NodeProc,
    p2: &Placement,
    ranges: &[HashRange],
    mig: &str,
) -> Placement {
    let caller_ = caller(p2.epoch(), mig, 1);
    b.admin()
        .start_pull(&StartPull {
            caller: caller_.clone(),
            source: a.endpoint(),
            ranges: ranges.to_vec(),
            bytes_per_sec: None,
            verify: true,
        })
        .await
        .unwrap();
    let s = wait_pull(b, mig, |s| s.phase == PullPhase::CatchingUp).await;
    assert_eq!(s.verified, Some(true));
    let f = a
        .admin()
        .fence(&FenceRequest {
            caller: caller_.clone(),
            ranges: ranges.to_vec(),
        })
        .await
        .unwrap()
        .fence_offset;
    wait_pull(b, mig, |s| {
        s.applied_offset
            .as_ref()
            .is_some_and(|o| o.sequence >= f.sequence)
    })
    .await;
    let p3 = p2.commit("a", "b").unwrap();
    install(&p3, &[a, b]).await;
    p3
}

/// A two-node setup whose pending transfer (a to b) covers a key starting with `prefix`.
async fn moving_setup(
    test: &str,
    ips: [&str; 2],
    prefix: &str,
) -> (NodeProc, NodeProc, Placement, Vec<HashRange>, String) {
    let a = NodeProc::start(test, "a", ips[0]);
    let b = NodeProc::start(test, "b", ips[1]);
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    let p2 = p1.set_target(evolve(&p1, &["a", "b"])).unwrap();
    let ranges: Vec<HashRange> = p2.pending_transfers().unwrap()[0]
        .ranges
        .iter()
        .copied()
        .collect();
    let key = (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| {
            let h = ringshift_ring::key_hash(k.as_bytes());
            ranges.iter().any(|r| r.start <= h && h <= r.end)
        })
        .unwrap();
    install(&p2, &[&a, &b]).await;
    (a, b, p2, ranges, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_20k_element_list_moves_between_nodes_intact() {
    let (a, b, p2, ranges, key) =
        moving_setup("list-move", ["127.0.7.5", "127.0.7.6"], "biglist").await;
    let mut ca = a.redis();
    load_list(&mut ca, &key, 20_000);
    // Both ends and the middle changed, so the list's ends are not where a fresh one starts.
    cmd::<i64>(&mut ca, &["LPUSH", &key, "head1", "head0"]);
    cmd::<String>(&mut ca, &["LSET", &key, "10000", "middle"]);
    cmd::<String>(&mut ca, &["RPOP", &key]);
    let want = lrange(&mut ca, &key);
    assert_eq!(want.len(), 20_001);
    move_ranges(&a, &b, &p2, &ranges, "mig-list").await;
    let mut cb = b.redis();
    assert_eq!(lrange(&mut cb, &key), want, "on the new owner");
    assert_eq!(cmd::<String>(&mut cb, &["LINDEX", &key, "10000"]), "middle");
    // Through the old owner (forwarded), and writable at both ends on the new one.
    assert_eq!(cmd::<i64>(&mut ca, &["LLEN", &key]), 20_001);
    assert_eq!(cmd::<i64>(&mut cb, &["RPUSH", &key, "tail"]), 20_002);
    assert_eq!(cmd::<String>(&mut ca, &["LPOP", &key]), "head0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_blocked_in_blpop_is_served_by_the_new_owner_after_a_move() {
    let (a, b, p2, ranges, key) =
        moving_setup("list-block-move", ["127.0.7.7", "127.0.7.8"], "waitlist").await;
    let addr = a.data_addr();
    let k = key.clone();
    let waiter = std::thread::spawn(move || {
        let mut w = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let got: Value = cmd(&mut w, &["BLPOP", &k, "30"]);
        got
    });
    let mut ca = a.redis();
    wait_blocked(&mut ca, 1);
    move_ranges(&a, &b, &p2, &ranges, "mig-block").await;
    // The push lands on the new owner directly; the client still waits on a.
    let mut cb = b.redis();
    assert_eq!(blocked_clients(&mut ca), 1);
    let pushed = Instant::now();
    cmd::<i64>(&mut cb, &["RPUSH", &key, "after-move"]);
    let got = waiter.join().unwrap();
    assert_eq!(
        got,
        Value::Array(vec![
            Value::BulkString(key.clone().into_bytes()),
            Value::BulkString(b"after-move".to_vec()),
        ])
    );
    assert!(pushed.elapsed() < Duration::from_secs(5));
    assert_eq!(cmd::<i64>(&mut cb, &["LLEN", &key]), 0);
    wait_blocked(&mut ca, 0);
}
