//! BZPOPMIN, BZPOPMAX and BZMPOP on a real node: served at once when there is something to pop,
//! woken by a ZADD from another connection, nil on a timeout, Redis's errors.

mod common;

use std::time::{Duration, Instant};

use common::calls::{cmd, err, wait_blocked};
use common::*;
use redis::Value;

#[tokio::test]
async fn blocking_sorted_set_pops_wait_wake_and_time_out() {
    let a = NodeProc::start("zset-block", "a", "127.0.7.6");
    install(&placement(&["a"]), &[&a]).await;
    let mut c = a.redis();

    let t = Instant::now();
    assert_eq!(cmd::<Value>(&mut c, &["BZPOPMIN", "z", "0.2"]), Value::Nil);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        err(&mut c, &["BZPOPMIN", "z", "-1"]),
        "ERR timeout is negative"
    );
    assert_eq!(
        err(&mut c, &["BZPOPMAX", "z", "abc"]),
        "ERR timeout is not a float or out of range"
    );
    assert_eq!(
        err(&mut c, &["BZMPOP", "0", "0", "z", "MIN"]),
        "ERR numkeys should be greater than 0"
    );

    // Something to pop: served at once, lowest or highest, from the first non-empty key.
    cmd::<i64>(&mut c, &["ZADD", "z", "1", "one", "2", "two", "3", "three"]);
    assert_eq!(
        cmd::<(String, String, String)>(&mut c, &["BZPOPMIN", "empty", "z", "0"]),
        ("z".into(), "one".into(), "1".into())
    );
    assert_eq!(
        cmd::<(String, String, String)>(&mut c, &["BZPOPMAX", "z", "0"]),
        ("z".into(), "three".into(), "3".into())
    );
    assert_eq!(
        cmd::<(String, Vec<(String, String)>)>(&mut c, &["BZMPOP", "1", "1", "z", "MIN"]),
        ("z".into(), vec![("two".into(), "2".into())])
    );
    assert_eq!(
        cmd::<i64>(&mut c, &["EXISTS", "z"]),
        0,
        "emptied, so deleted"
    );

    // A ZADD from another connection wakes a client blocked forever.
    let addr = a.data_addr();
    let waiter = std::thread::spawn(move || {
        let mut w = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        cmd::<(String, String, String)>(&mut w, &["BZPOPMAX", "z", "0"])
    });
    wait_blocked(&mut c, 1);
    cmd::<i64>(&mut c, &["ZADD", "z", "5", "five", "7", "seven"]);
    assert_eq!(
        waiter.join().unwrap(),
        ("z".into(), "seven".into(), "7".into())
    );
    wait_blocked(&mut c, 0);
    assert_eq!(
        cmd::<Vec<String>>(&mut c, &["ZRANGE", "z", "0", "-1"]),
        vec!["five".to_string()]
    );

    // A key of another type is an error, not a wait.
    cmd::<()>(&mut c, &["SET", "s", "x"]);
    assert!(err(&mut c, &["BZPOPMIN", "s", "0"]).starts_with("WRONGTYPE"));
}
