//! DBSIZE comes from counters kept with every write; they are rebuilt when a node restarts.

mod common;

use common::*;
use redis::Commands;

fn dbsize(c: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE").query(c).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dbsize_is_right_after_writes_deletes_and_a_crash() {
    let mut a = NodeProc::start("dbsize", "a", "127.0.1.46");
    let b = NodeProc::start("dbsize", "b", "127.0.1.47");
    install(&placement(&["a", "b"]), &[&a, &b]).await;
    let mut c = a.redis();
    for i in 0..600 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    let _: i64 = c
        .del((0..150).map(|i| format!("k{i}")).collect::<Vec<_>>())
        .unwrap();
    let _: () = c.set("k200", "again").unwrap();
    let mine = dbsize(&mut c);
    let theirs = dbsize(&mut b.redis());
    assert_eq!(mine + theirs, 450);
    assert!(mine > 0 && theirs > 0);

    a.restart();
    let mut c = a.redis();
    assert_eq!(dbsize(&mut c), mine);
    let _: () = c.set("k0", "back").unwrap();
    assert_eq!(dbsize(&mut c) + dbsize(&mut b.redis()), 451);
}
