//! MULTI / EXEC / DISCARD / WATCH / UNWATCH through RESP: Redis 7's replies and errors, reads
//! that see the transaction's own writes, no other client's write between its commands,
//! WATCH aborts (another connection's write, expiry, FLUSHALL, a fenced or moved range), and
//! transactions and WATCHes sent to a node that does not own the keys.

mod common;

use std::time::Duration;

use common::resp::Resp;
use common::*;
use ringshift_node_api::Placement;

/// A key (with `prefix`) that `member` owns under `p`.
fn key_of(p: &Placement, member: &str, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| p.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap() == member)
        .expect("a key owned by the member")
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_answer_as_redis_does() {
    let node = NodeProc::start("tx-basics", "a", "127.0.5.1");
    install(&placement(&["a"]), &[&node]).await;
    let mut c = Resp::connect(&node.data_addr());

    // Replies in order; a runtime error is that command's reply, the others still apply.
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", "a", "x"]), "QUEUED");
    assert_eq!(c.call(&["INCR", "a"]), "QUEUED");
    assert_eq!(c.call(&["SET", "n", "1"]), "QUEUED");
    assert_eq!(c.call(&["INCR", "n"]), "QUEUED");
    // Reads inside see the transaction's own earlier writes.
    assert_eq!(c.call(&["GET", "n"]), "QUEUED");
    assert_eq!(c.call(&["HSET", "h", "f", "v"]), "QUEUED");
    assert_eq!(c.call(&["HGET", "h", "f"]), "QUEUED");
    assert_eq!(c.call(&["SET", "k", "v", "BADOPT"]), "QUEUED");
    assert_eq!(c.call(&["PING"]), "QUEUED");
    assert_eq!(c.call(&["UNWATCH"]), "QUEUED");
    assert_eq!(
        c.call(&["EXEC"]),
        "[OK, (error) ERR value is not an integer or out of range, OK, 2, \"2\", 1, \"v\", \
         (error) ERR syntax error, PONG, OK]"
    );
    assert_eq!(c.call(&["GET", "n"]), "\"2\"");

    // List and sorted-set reads inside see the transaction's own writes.
    assert_eq!(c.call(&["RPUSH", "l", "a", "b"]), "2");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["RPUSH", "l", "c"]), "QUEUED");
    assert_eq!(c.call(&["LPOP", "l"]), "QUEUED");
    assert_eq!(c.call(&["LRANGE", "l", "0", "-1"]), "QUEUED");
    assert_eq!(c.call(&["LINDEX", "l", "-1"]), "QUEUED");
    assert_eq!(c.call(&["LPOS", "l", "b"]), "QUEUED");
    assert_eq!(c.call(&["LLEN", "l"]), "QUEUED");
    assert_eq!(c.call(&["ZADD", "z", "1", "m"]), "QUEUED");
    assert_eq!(c.call(&["ZSCORE", "z", "m"]), "QUEUED");
    assert_eq!(
        c.call(&["EXEC"]),
        "[3, \"a\", [\"b\", \"c\"], \"c\", 0, 2, 1, \"1\"]"
    );
    assert_eq!(c.call(&["ZSCORE", "z", "m"]), "\"1\"");

    // Errors outside and inside a transaction, with Redis's texts.
    assert_eq!(c.call(&["EXEC"]), "(error) ERR EXEC without MULTI");
    assert_eq!(c.call(&["DISCARD"]), "(error) ERR DISCARD without MULTI");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(
        c.call(&["MULTI"]),
        "(error) ERR MULTI calls can not be nested"
    );
    assert_eq!(
        c.call(&["WATCH", "x"]),
        "(error) ERR WATCH inside MULTI is not allowed"
    );
    assert_eq!(c.call(&["EXEC"]), "[]");

    // A queueing error (unknown command, wrong arity) aborts the whole transaction.
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", "q", "1"]), "QUEUED");
    assert!(
        c.call(&["NOSUCH"])
            .starts_with("(error) ERR unknown command 'NOSUCH'")
    );
    assert_eq!(
        c.call(&["SET", "q"]),
        "(error) ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        c.call(&["EXEC"]),
        "(error) EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(c.call(&["EXISTS", "q"]), "0");

    // DISCARD drops the queue.
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["DEL", "n"]), "QUEUED");
    assert_eq!(c.call(&["DISCARD"]), "OK");
    assert_eq!(c.call(&["GET", "n"]), "\"2\"");

    // RESP3: a map reply inside EXEC is a map; an aborted EXEC is a null.
    assert!(c.call(&["HELLO", "3"]).starts_with("%["));
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["HGETALL", "h"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "[%[\"f\", \"v\"]]");
    assert_eq!(c.call(&["WATCH", "n"]), "OK");
    let mut other = Resp::connect(&node.data_addr());
    assert_eq!(other.call(&["SET", "n", "9"]), "OK");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["PING"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "(nil)");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_aborts_exec_when_a_watched_key_changes() {
    let node = NodeProc::start("tx-watch", "a", "127.0.5.2");
    install(&placement(&["a"]), &[&node]).await;
    let mut c = Resp::connect(&node.data_addr());
    let mut other = Resp::connect(&node.data_addr());
    let exec_ping = |c: &mut Resp| {
        assert_eq!(c.call(&["MULTI"]), "OK");
        assert_eq!(c.call(&["PING"]), "QUEUED");
        c.call(&["EXEC"])
    };

    // Not modified: applied.
    assert_eq!(c.call(&["SET", "x", "1"]), "OK");
    assert_eq!(c.call(&["WATCH", "x", "y"]), "OK");
    assert_eq!(exec_ping(&mut c), "[PONG]");

    // Another connection writes a watched key: null array, nothing applied.
    assert_eq!(c.call(&["WATCH", "y", "x"]), "OK");
    assert_eq!(other.call(&["SET", "x", "2"]), "OK");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", "x", "mine"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "(nil-array)");
    assert_eq!(c.call(&["GET", "x"]), "\"2\"");
    // EXEC ends the WATCH either way.
    assert_eq!(other.call(&["SET", "x", "3"]), "OK");
    assert_eq!(exec_ping(&mut c), "[PONG]");

    // UNWATCH and DISCARD forget the watched keys.
    assert_eq!(c.call(&["WATCH", "x"]), "OK");
    assert_eq!(other.call(&["SET", "x", "4"]), "OK");
    assert_eq!(c.call(&["UNWATCH"]), "OK");
    assert_eq!(exec_ping(&mut c), "[PONG]");
    assert_eq!(c.call(&["WATCH", "x"]), "OK");
    assert_eq!(other.call(&["SET", "x", "5"]), "OK");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["DISCARD"]), "OK");
    assert_eq!(exec_ping(&mut c), "[PONG]");

    // A write to a collection's elements only (count unchanged) is a modification too.
    assert_eq!(c.call(&["HSET", "h", "f", "1"]), "1");
    assert_eq!(c.call(&["WATCH", "h"]), "OK");
    assert_eq!(other.call(&["HSET", "h", "f", "2"]), "0");
    assert_eq!(exec_ping(&mut c), "(nil-array)");

    // Expiry: a live watched key that expires aborts; one already expired at WATCH does not.
    assert_eq!(c.call(&["SET", "e", "1", "PX", "100"]), "OK");
    assert_eq!(c.call(&["WATCH", "e"]), "OK");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(exec_ping(&mut c), "(nil-array)");
    assert_eq!(c.call(&["SET", "s", "1", "PX", "1"]), "OK");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(c.call(&["WATCH", "s"]), "OK");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(exec_ping(&mut c), "[PONG]");

    // FLUSHALL touches watched keys that exist, not missing ones.
    assert_eq!(c.call(&["SET", "x", "1"]), "OK");
    assert_eq!(c.call(&["WATCH", "x"]), "OK");
    assert_eq!(other.call(&["FLUSHALL"]), "OK");
    assert_eq!(exec_ping(&mut c), "(nil-array)");
    assert_eq!(c.call(&["WATCH", "x"]), "OK");
    assert_eq!(other.call(&["FLUSHALL"]), "OK");
    assert_eq!(exec_ping(&mut c), "[PONG]");
}

/// The transaction's commands run with no other client's write between them: a counter
/// hammered by another connection moves by exactly one per INCR inside the transaction.
#[tokio::test(flavor = "multi_thread")]
async fn no_other_write_lands_inside_a_transaction() {
    let node = NodeProc::start("tx-atomic", "a", "127.0.5.3");
    install(&placement(&["a"]), &[&node]).await;
    let addr = node.data_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut h = Resp::connect(&addr);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(h.call(&["INCR", "ctr"]).parse::<i64>().is_ok());
                n += 1;
            }
            n
        })
    };
    let mut c = Resp::connect(&addr);
    for _ in 0..20 {
        assert_eq!(c.call(&["MULTI"]), "OK");
        assert_eq!(c.call(&["GET", "ctr"]), "QUEUED");
        for _ in 0..50 {
            assert_eq!(c.call(&["INCR", "ctr"]), "QUEUED");
        }
        let r = c.call(&["EXEC"]);
        let items: Vec<i64> = r
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|s| s.trim_matches('"').parse().unwrap_or(0))
            .collect();
        for w in items.windows(2) {
            assert_eq!(w[1], w[0] + 1, "another write landed inside: {r}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(hammer.join().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_on_a_non_owner_are_forwarded_and_keys_must_share_an_owner() {
    let a = NodeProc::start("tx-fwd", "a", "127.0.5.11");
    let b = NodeProc::start("tx-fwd", "b", "127.0.5.12");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let kb = key_of(&p, "b", "kb");
    let ka = key_of(&p, "a", "ka");
    let mut c = Resp::connect(&a.data_addr());

    // Keys of two owners: CROSSSLOT while queueing, then EXECABORT.
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &ka, "1"]), "QUEUED");
    assert_eq!(
        c.call(&["SET", &kb, "1"]),
        "(error) CROSSSLOT Keys in request don't hash to the same owner"
    );
    assert_eq!(
        c.call(&["EXEC"]),
        "(error) EXECABORT Transaction discarded because of previous errors."
    );

    // A transaction of b's keys sent to a runs on b as a unit; PING is answered by a.
    let tagged = format!("{{{kb}}}:n");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &kb, "v"]), "QUEUED");
    assert_eq!(c.call(&["PING"]), "QUEUED");
    assert_eq!(c.call(&["INCRBY", &tagged, "5"]), "QUEUED");
    assert_eq!(c.call(&["GET", &kb]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "[OK, PONG, 5, \"v\"]");
    let mut on_b = Resp::connect(&b.data_addr());
    assert_eq!(on_b.call(&["GET", &tagged]), "\"5\"");

    // WATCH through the non-owner: taken on b, checked on b at EXEC.
    assert_eq!(c.call(&["WATCH", &kb]), "OK");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &kb, "w1"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "[OK]");
    assert_eq!(c.call(&["WATCH", &kb]), "OK");
    assert_eq!(on_b.call(&["SET", &kb, "theirs"]), "OK");
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &kb, "w2"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "(nil-array)");
    assert_eq!(on_b.call(&["GET", &kb]), "\"theirs\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_aborts_when_the_key_range_is_fenced_or_moves() {
    let a = NodeProc::start("tx-move", "a", "127.0.5.21");
    let b = NodeProc::start("tx-move", "b", "127.0.5.22");
    let p1 = placement(&["a", "b"]);
    install(&p1, &[&a, &b]).await;
    let ka = key_of(&p1, "a", "m");
    let mut c = Resp::connect(&a.data_addr());
    assert_eq!(c.call(&["SET", &ka, "1"]), "OK");

    // Fenced and unfenced meanwhile (an aborted cutover): EXEC aborts.
    assert_eq!(c.call(&["WATCH", &ka]), "OK");
    let mig = caller(p1.epoch(), "tx-fence", 1);
    let owned = a.admin().status().await.unwrap().owned_ranges;
    a.admin()
        .fence(&ringshift_node_api::FenceRequest {
            caller: mig.clone(),
            ranges: owned,
        })
        .await
        .unwrap();
    a.admin()
        .unfence(&ringshift_node_api::UnfenceRequest { caller: mig })
        .await
        .unwrap();
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &ka, "2"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "(nil-array)");
    assert_eq!(c.call(&["GET", &ka]), "\"1\"");

    // Moved to b (a placement where a owns nothing): EXEC aborts, and applies nowhere.
    assert_eq!(c.call(&["WATCH", &ka]), "OK");
    let p2 = commit_all(&p1.set_target(evolve(&p1, &["b"])).unwrap());
    install(&p2, &[&a, &b]).await;
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &ka, "3"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "(nil-array)");
    let mut on_b = Resp::connect(&b.data_addr());
    assert_eq!(on_b.call(&["GET", &ka]), "(nil)");

    // Without a WATCH the transaction follows the key to its new owner.
    assert_eq!(c.call(&["MULTI"]), "OK");
    assert_eq!(c.call(&["SET", &ka, "4"]), "QUEUED");
    assert_eq!(c.call(&["EXEC"]), "[OK]");
    assert_eq!(on_b.call(&["GET", &ka]), "\"4\"");
}
