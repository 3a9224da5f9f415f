//! The order in which blocked clients are served, as Redis serves them: first come, first
//! served per key, a command that arrives later never overtakes an older blocked client on the
//! same key, and a write's reply comes after the clients it fed (and the clients those fed, as
//! chained BLMOVEs do) have been served. Each race is run for many rounds, since the node's
//! connections run in parallel and a misorder shows only in some interleavings.

mod common;

use std::time::Duration;

use common::calls::{cmd, wait_blocked};
use common::*;
use redis::Value;

/// Rounds of each race (a misorder showed in most runs of a few rounds before the fix).
const ROUNDS: usize = 40;

/// How long a client may take to be served before the test calls it a hang.
const SERVED_WITHIN: Duration = Duration::from_secs(3);

/// A client that sends without waiting for the reply (the suite's "deferring client").
struct Deferred(redis::Connection);

impl Deferred {
    fn open(node: &NodeProc) -> Deferred {
        let c = node.redis();
        c.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
        Deferred(c)
    }

    fn send(&mut self, args: &[&str]) {
        let mut k = redis::cmd(args[0]);
        for a in &args[1..] {
            k.arg(*a);
        }
        self.0.send_packed_command(&k.get_packed_command()).unwrap();
    }

    /// The reply, `Err` text for an error reply; panics on a hang.
    fn read(&mut self, what: &str) -> Result<Value, String> {
        match self.0.recv_response() {
            Ok(Value::ServerError(e)) => Err(redis::RedisError::from(e).to_string()),
            Ok(v) => Ok(v),
            Err(e) if e.is_timeout() => panic!("{what}: no reply within {SERVED_WITHIN:?}"),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn lrange(c: &mut redis::Connection, key: &str) -> Vec<String> {
    cmd(c, &["LRANGE", key, "0", "-1"])
}

/// Redis' "BRPOPLPUSH with multiple blocked clients", as the suite sends it: two clients block
/// on one list (the first with a destination of the wrong type) and a push follows at once,
/// none of them waiting for the others. The first must get WRONGTYPE and the second the
/// element; a second client that took the element first left the first blocked forever.
#[test]
fn the_older_of_two_blocked_clients_is_served_first() {
    let a = NodeProc::start("block-order-two", "a", "127.0.21.1");
    futures_block_on(install(&placement(&["a"]), &[&a]));
    let mut c = a.redis();
    for round in 0..ROUNDS {
        let mut rd1 = Deferred::open(&a);
        let mut rd2 = Deferred::open(&a);
        cmd::<()>(&mut c, &["DEL", "blist{t}", "target1{t}", "target2{t}"]);
        cmd::<()>(&mut c, &["SET", "target1{t}", "nolist"]);
        rd1.send(&["BRPOPLPUSH", "blist{t}", "target1{t}", "0"]);
        // (Back to back, as the suite sends them: the two often arrive microseconds apart
        // and are handled in reverse.)
        rd2.send(&["BRPOPLPUSH", "blist{t}", "target2{t}", "0"]);
        cmd::<i64>(&mut c, &["LPUSH", "blist{t}", "foo"]);
        let got1 = rd1.read(&format!("round {round}: the first client"));
        assert!(
            got1.as_ref().is_err_and(|e| e.contains("WRONGTYPE")),
            "round {round}: the first client got {got1:?}"
        );
        assert_eq!(
            rd2.read(&format!("round {round}: the second client")),
            Ok(bulk("foo")),
            "round {round}"
        );
        assert_eq!(lrange(&mut c, "target2{t}"), ["foo"], "round {round}");
    }
}

/// A blocking command that arrives right after a push, while the client the push woke has not
/// retried yet, must not take the element from it.
#[test]
fn a_blocking_command_after_the_push_does_not_overtake_the_woken_client() {
    let a = NodeProc::start("block-order-late", "a", "127.0.21.2");
    futures_block_on(install(&placement(&["a"]), &[&a]));
    let mut c = a.redis();
    for round in 0..ROUNDS {
        let mut old = Deferred::open(&a);
        let mut late = Deferred::open(&a);
        cmd::<()>(&mut c, &["DEL", "q{t}", "dst{t}"]);
        old.send(&["BLPOP", "q{t}", "0"]);
        wait_blocked(&mut c, 1);
        cmd::<i64>(&mut c, &["RPUSH", "q{t}", "one"]);
        late.send(&["BRPOPLPUSH", "q{t}", "dst{t}", "0"]);
        assert_eq!(
            old.read(&format!("round {round}: the blocked client")),
            Ok(Value::Array(vec![bulk("q{t}"), bulk("one")])),
            "round {round}"
        );
        // The late client keeps waiting and takes the next element.
        cmd::<i64>(&mut c, &["RPUSH", "q{t}", "two"]);
        assert_eq!(
            late.read(&format!("round {round}: the late client")),
            Ok(bulk("two")),
            "round {round}"
        );
    }
}

/// Redis' "Linked LMOVEs" and "Circular BRPOPLPUSH": the push's reply comes after the whole
/// chain of blocked moves it set off, so the lists read right after it hold the final state.
#[test]
fn a_push_answers_after_the_chain_of_blocked_moves_it_feeds() {
    let a = NodeProc::start("block-order-chain", "a", "127.0.21.3");
    futures_block_on(install(&placement(&["a"]), &[&a]));
    let mut c = a.redis();
    for round in 0..ROUNDS / 4 {
        let mut rd1 = Deferred::open(&a);
        let mut rd2 = Deferred::open(&a);
        cmd::<()>(&mut c, &["DEL", "list1{t}", "list2{t}", "list3{t}"]);
        rd1.send(&["BLMOVE", "list1{t}", "list2{t}", "RIGHT", "LEFT", "0"]);
        wait_blocked(&mut c, 1);
        rd2.send(&["BLMOVE", "list2{t}", "list3{t}", "LEFT", "RIGHT", "0"]);
        wait_blocked(&mut c, 2);
        cmd::<i64>(&mut c, &["RPUSH", "list1{t}", "foo"]);
        assert!(lrange(&mut c, "list1{t}").is_empty(), "round {round}");
        assert!(lrange(&mut c, "list2{t}").is_empty(), "round {round}");
        assert_eq!(lrange(&mut c, "list3{t}"), ["foo"], "linked, round {round}");
        assert_eq!(rd1.read("rd1"), Ok(bulk("foo")));
        assert_eq!(rd2.read("rd2"), Ok(bulk("foo")));

        let mut rd1 = Deferred::open(&a);
        let mut rd2 = Deferred::open(&a);
        cmd::<()>(&mut c, &["DEL", "list1{t}", "list2{t}"]);
        rd1.send(&["BRPOPLPUSH", "list1{t}", "list2{t}", "0"]);
        wait_blocked(&mut c, 1);
        rd2.send(&["BRPOPLPUSH", "list2{t}", "list1{t}", "0"]);
        wait_blocked(&mut c, 2);
        cmd::<i64>(&mut c, &["RPUSH", "list1{t}", "foo"]);
        assert_eq!(
            lrange(&mut c, "list1{t}"),
            ["foo"],
            "circular, round {round}"
        );
        assert!(lrange(&mut c, "list2{t}").is_empty(), "round {round}");
        wait_blocked(&mut c, 0);
    }
}

/// The integration helpers are async; these tests drive plain blocking connections.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
