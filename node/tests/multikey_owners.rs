//! Multi-key string and keyspace commands over two owners: one owner (hash tags, or keys that
//! happen to share one) is served, forwarded if need be; across owners the answer is CROSSSLOT
//! and nothing changes. FLUSHALL removes only what the node it reached owns.

mod common;

use common::*;

fn keys_owned_by(p: &ringshift_node_api::Placement, member: &str, count: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("mk:{i}"))
        .filter(|k| p.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap() == member)
        .take(count)
        .collect()
}

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same owner";

#[tokio::test(flavor = "multi_thread")]
async fn multi_key_commands_need_one_owner() {
    let a = NodeProc::start("multikey", "a", "127.0.1.62");
    let b = NodeProc::start("multikey", "b", "127.0.1.63");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let on_a = keys_owned_by(&p, "a", 2);
    let on_b = keys_owned_by(&p, "b", 3);
    let cli = |args: &[&str]| redis_cli(&a.data_addr(), args);

    assert_eq!(cli(&["SET", &on_a[0], "va"]), "OK");
    assert_eq!(cli(&["RENAME", &on_a[0], &on_b[0]]), CROSSSLOT);
    assert_eq!(cli(&["COPY", &on_a[0], &on_b[0]]), CROSSSLOT);
    assert_eq!(cli(&["MSETNX", &on_a[1], "1", &on_b[1], "2"]), CROSSSLOT);
    assert_eq!(cli(&["LCS", &on_a[0], &on_b[0]]), CROSSSLOT);
    assert_eq!(cli(&["GET", &on_a[0]]), "va");
    assert_eq!(cli(&["EXISTS", &on_b[0], &on_b[1], &on_a[1]]), "0");

    // Both keys on the other owner: forwarded and applied there.
    assert_eq!(cli(&["SET", &on_b[0], "vb"]), "OK");
    assert_eq!(cli(&["RENAME", &on_b[0], &on_b[1]]), "OK");
    assert_eq!(redis_cli(&b.data_addr(), &["GET", &on_b[1]]), "vb");
    assert_eq!(cli(&["COPY", &on_b[1], &on_b[2]]), "1");
    assert_eq!(cli(&["APPEND", &on_b[2], "!"]), "3");
    assert_eq!(redis_cli(&b.data_addr(), &["GET", &on_b[2]]), "vb!");
    // Hash tags put keys on one owner.
    assert_eq!(cli(&["MSETNX", "{t}1", "x", "{t}2", "y"]), "1");
    assert_eq!(cli(&["RENAMENX", "{t}1", "{t}3"]), "1");
    assert_eq!(cli(&["GET", "{t}3"]), "x");
    assert_eq!(cli(&["EXISTS", "{t}1"]), "0");

    // FLUSHALL on a clears a's ranges only; TOUCH splits across owners.
    assert_eq!(cli(&["TOUCH", &on_a[0], &on_b[1], &on_b[2]]), "3");
    assert_eq!(cli(&["FLUSHALL"]), "OK");
    assert_eq!(cli(&["EXISTS", &on_a[0]]), "0");
    assert_eq!(cli(&["EXISTS", &on_b[1], &on_b[2]]), "2");
}
