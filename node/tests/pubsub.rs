//! Pub/Sub through RESP: Redis 7's replies (RESP2 arrays, RESP3 pushes), the RESP2
//! subscribed-mode rules, PUBSUB introspection, delivery across members (a PUBLISH on any
//! member reaches subscribers on every member), and a subscriber that stops reading being
//! disconnected without holding up publishers.

mod common;

use std::time::{Duration, Instant};

use common::resp::Resp;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn pubsub_on_one_node_answers_as_redis_does() {
    let node = NodeProc::start("pubsub-one", "a", "127.0.6.1");
    install(&placement(&["a"]), &[&node]).await;
    let mut sub = Resp::connect(&node.data_addr());
    let mut publisher = Resp::connect(&node.data_addr());

    assert_eq!(
        sub.call(&["SUBSCRIBE", "news", "sport"]),
        "[\"subscribe\", \"news\", 1]"
    );
    assert_eq!(sub.read(), "[\"subscribe\", \"sport\", 2]");
    assert_eq!(
        sub.call(&["PSUBSCRIBE", "n*"]),
        "[\"psubscribe\", \"n*\", 3]"
    );
    // RESP2 subscribed mode: only (P)(UN)SUBSCRIBE, PING, QUIT, RESET.
    assert_eq!(
        sub.call(&["GET", "k"]),
        "(error) ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    );
    assert_eq!(sub.call(&["PING"]), "[\"pong\", \"\"]");
    assert_eq!(sub.call(&["PING", "hi"]), "[\"pong\", \"hi\"]");

    // Channel and pattern subscriptions each receive it: 2 receivers.
    assert_eq!(publisher.call(&["PUBLISH", "news", "hello"]), "2");
    assert_eq!(sub.read(), "[\"message\", \"news\", \"hello\"]");
    assert_eq!(sub.read(), "[\"pmessage\", \"n*\", \"news\", \"hello\"]");
    assert_eq!(publisher.call(&["PUBLISH", "nobody", "x"]), "1");
    assert_eq!(sub.read(), "[\"pmessage\", \"n*\", \"nobody\", \"x\"]");
    assert_eq!(publisher.call(&["PUBLISH", "other", "x"]), "0");

    assert_eq!(
        publisher.call(&["PUBSUB", "NUMSUB", "news", "none"]),
        "[\"news\", 1, \"none\", 0]"
    );
    assert_eq!(publisher.call(&["PUBSUB", "NUMPAT"]), "1");
    assert_eq!(publisher.call(&["PUBSUB", "CHANNELS", "s*"]), "[\"sport\"]");
    assert_eq!(
        publisher.call(&["PUBSUB", "NUMPAT", "x"]),
        "(error) ERR wrong number of arguments for 'pubsub|numpat' command"
    );
    assert_eq!(
        publisher.call(&["PUBSUB", "FOO"]),
        "(error) ERR unknown subcommand 'FOO'. Try PUBSUB HELP."
    );

    // UNSUBSCRIBE without arguments: one reply per channel; then none left.
    sub.send(&["UNSUBSCRIBE"]);
    let mut gone = [sub.read(), sub.read()];
    gone.sort();
    assert_eq!(
        gone,
        [
            "[\"unsubscribe\", \"news\", 2]".to_string(),
            "[\"unsubscribe\", \"sport\", 1]".to_string()
        ]
    );
    assert_eq!(sub.call(&["PUNSUBSCRIBE"]), "[\"punsubscribe\", \"n*\", 0]");
    assert_eq!(sub.call(&["UNSUBSCRIBE"]), "[\"unsubscribe\", (nil), 0]");
    // Out of subscribed mode: commands work again.
    assert_eq!(sub.call(&["GET", "k"]), "(nil)");

    // RESP3: pushes, and every command stays allowed.
    assert!(sub.call(&["HELLO", "3"]).starts_with("%["));
    assert_eq!(
        sub.call(&["SUBSCRIBE", "c3"]),
        ">[\"subscribe\", \"c3\", 1]"
    );
    assert_eq!(sub.call(&["PING"]), "PONG");
    assert_eq!(sub.call(&["SET", "k", "v"]), "OK");
    assert_eq!(publisher.call(&["PUBLISH", "c3", "m"]), "1");
    assert_eq!(sub.read(), ">[\"message\", \"c3\", \"m\"]");
    // A message published to itself comes before the PUBLISH reply, as in Redis.
    sub.send(&["PUBLISH", "c3", "self"]);
    assert_eq!(sub.read(), ">[\"message\", \"c3\", \"self\"]");
    assert_eq!(sub.read(), "1");
    assert_eq!(sub.call(&["RESET"]), "RESET");
    assert_eq!(publisher.call(&["PUBLISH", "c3", "m"]), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_on_any_member_reaches_subscribers_on_every_member() {
    let a = NodeProc::start("pubsub-cluster", "a", "127.0.6.11");
    let b = NodeProc::start("pubsub-cluster", "b", "127.0.6.12");
    let c = NodeProc::start("pubsub-cluster", "c", "127.0.6.13");
    install(&placement(&["a", "b", "c"]), &[&a, &b, &c]).await;
    let mut on_b = Resp::connect(&b.data_addr());
    let mut on_c = Resp::connect(&c.data_addr());
    assert_eq!(
        on_b.call(&["SUBSCRIBE", "ch"]),
        "[\"subscribe\", \"ch\", 1]"
    );
    assert_eq!(
        on_c.call(&["PSUBSCRIBE", "c*"]),
        "[\"psubscribe\", \"c*\", 1]"
    );

    // The reply counts receivers cluster-wide: one on b, one on c.
    let mut publisher = Resp::connect(&a.data_addr());
    assert_eq!(publisher.call(&["PUBLISH", "ch", "from-a"]), "2");
    assert_eq!(on_b.read(), "[\"message\", \"ch\", \"from-a\"]");
    assert_eq!(on_c.read(), "[\"pmessage\", \"c*\", \"ch\", \"from-a\"]");
    // In order, from one publisher.
    for i in 0..20 {
        assert_eq!(publisher.call(&["PUBLISH", "ch", &i.to_string()]), "2");
    }
    for i in 0..20 {
        assert_eq!(on_b.read(), format!("[\"message\", \"ch\", \"{i}\"]"));
    }
    // PUBSUB NUMSUB is per node, as in Redis Cluster.
    assert_eq!(publisher.call(&["PUBSUB", "NUMSUB", "ch"]), "[\"ch\", 0]");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_stops_reading_is_disconnected_and_publishers_go_on() {
    let node = NodeProc::start("pubsub-slow", "a", "127.0.6.21");
    install(&placement(&["a"]), &[&node]).await;
    let mut slow = Resp::connect(&node.data_addr());
    assert_eq!(
        slow.call(&["SUBSCRIBE", "big"]),
        "[\"subscribe\", \"big\", 1]"
    );
    let mut fast = Resp::connect(&node.data_addr());
    assert_eq!(
        fast.call(&["SUBSCRIBE", "small"]),
        "[\"subscribe\", \"small\", 1]"
    );

    // 96 MiB to a subscriber that reads nothing: beyond its 32 MiB buffer plus what the
    // sockets hold. Every PUBLISH still answers promptly.
    let payload = "x".repeat(1 << 20);
    let mut publisher = Resp::connect(&node.data_addr());
    let started = Instant::now();
    let mut counts = Vec::new();
    for _ in 0..96 {
        counts.push(publisher.call(&["PUBLISH", "big", &payload]));
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(counts.first().map(String::as_str), Some("1"));
    assert_eq!(
        counts.last().map(String::as_str),
        Some("0"),
        "still a receiver: {counts:?}"
    );
    assert_eq!(publisher.call(&["PUBSUB", "NUMSUB", "big"]), "[\"big\", 0]");

    // The slow one was cut off: after what was in flight, its connection ends.
    slow.set_timeout(Duration::from_secs(5));
    let mut got = 0;
    while let Some(m) = slow.try_read() {
        assert!(m.starts_with("[\"message\", \"big\""));
        got += 1;
    }
    assert!(got < 96, "all {got} messages arrived");

    // Others are unaffected.
    assert_eq!(publisher.call(&["PUBLISH", "small", "ok"]), "1");
    assert_eq!(fast.read(), "[\"message\", \"small\", \"ok\"]");
}

/// A key (with `prefix`) that `member` owns under `p`.
fn key_of(p: &ringshift_node_api::Placement, member: &str, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| p.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap() == member)
        .expect("a key owned by the member")
}

/// Keyspace notifications: the classes CONFIG SET enables, Redis's channel and event names,
/// and delivery to subscribers on every member, for writes local to the node written through,
/// writes it forwards to their owner, and the owner's expiry.
#[tokio::test(flavor = "multi_thread")]
async fn keyspace_notifications_reach_subscribers_on_every_member() {
    let a = NodeProc::start("pubsub-notify", "a", "127.0.6.31");
    let b = NodeProc::start("pubsub-notify", "b", "127.0.6.32");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let (on_a, on_b) = (key_of(&p, "a", "k"), key_of(&p, "b", "k"));
    let mut w = Resp::connect(&a.data_addr());
    let mut sub = Resp::connect(&b.data_addr());
    sub.set_timeout(Duration::from_secs(5));
    assert_eq!(
        sub.call(&["PSUBSCRIBE", "__key*"]),
        "[\"psubscribe\", \"__key*\", 1]"
    );

    // Off by default: nothing is sent.
    assert_eq!(
        w.call(&["CONFIG", "GET", "notify-keyspace-events"]),
        "[\"notify-keyspace-events\", \"\"]"
    );
    assert_eq!(w.call(&["SET", &on_a, "v"]), "OK");
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "Kq"]),
        "(error) ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - \
         Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
    );
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "KEl"]),
        "OK"
    );
    assert_eq!(
        w.call(&["CONFIG", "GET", "notify-keyspace-events"]),
        "[\"notify-keyspace-events\", \"lKE\"]"
    );

    // Only list events (l); a local write and a forwarded one.
    assert_eq!(w.call(&["SET", &on_a, "v"]), "OK");
    assert_eq!(w.call(&["RPUSH", &format!("{on_a}l"), "x"]), "1");
    assert_eq!(w.call(&["LPUSH", &on_b, "x"]), "1");
    let l = format!("{on_a}l");
    for (channel, payload) in [
        (format!("__keyspace@0__:{l}"), "rpush".to_string()),
        ("__keyevent@0__:rpush".to_string(), l.clone()),
        (format!("__keyspace@0__:{on_b}"), "lpush".to_string()),
        ("__keyevent@0__:lpush".to_string(), on_b.clone()),
    ] {
        assert_eq!(
            sub.read(),
            format!("[\"pmessage\", \"__key*\", \"{channel}\", \"{payload}\"]")
        );
    }

    // Generic and expired events; the expiry is the owner's (b, whose flags are set there).
    let mut on_b_conn = Resp::connect(&b.data_addr());
    assert_eq!(
        on_b_conn.call(&["CONFIG", "SET", "notify-keyspace-events", "Egx"]),
        "OK"
    );
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "Eg"]),
        "OK"
    );
    assert_eq!(w.call(&["DEL", &on_a]), "1");
    assert_eq!(w.call(&["EXPIRE", &on_b, "100"]), "1");
    assert_eq!(w.call(&["PEXPIRE", &on_b, "50"]), "1");
    assert_eq!(
        sub.read(),
        format!("[\"pmessage\", \"__key*\", \"__keyevent@0__:del\", \"{on_a}\"]")
    );
    assert_eq!(
        sub.read(),
        format!("[\"pmessage\", \"__key*\", \"__keyevent@0__:expire\", \"{on_b}\"]")
    );
    assert_eq!(
        sub.read(),
        format!("[\"pmessage\", \"__key*\", \"__keyevent@0__:expire\", \"{on_b}\"]")
    );
    let started = Instant::now();
    assert_eq!(
        sub.read(),
        format!("[\"pmessage\", \"__key*\", \"__keyevent@0__:expired\", \"{on_b}\"]")
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Writes inside MULTI send theirs at EXEC (here a transaction forwarded to b); a blocking
    // pop sends the pop of the key that served it.
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "El"]),
        "OK"
    );
    assert_eq!(w.call(&["MULTI"]), "OK");
    assert_eq!(w.call(&["RPUSH", &on_b, "x", "y"]), "QUEUED");
    assert_eq!(w.call(&["RPOP", &on_b]), "QUEUED");
    assert_eq!(w.call(&["EXEC"]), "[2, \"y\"]");
    assert_eq!(
        w.call(&["BLPOP", &on_b, "1"]),
        format!("[\"{on_b}\", \"x\"]")
    );
    for event in ["rpush", "rpop", "lpop"] {
        assert_eq!(
            sub.read(),
            format!("[\"pmessage\", \"__key*\", \"__keyevent@0__:{event}\", \"{on_b}\"]")
        );
    }
}

/// Redis' "Keyspace notifications: new key test": class `n` sends `new` when a write creates a
/// key (not when it overwrites one), for local keys and keys the writer forwards to their owner,
/// before the command's own event.
#[tokio::test(flavor = "multi_thread")]
async fn new_key_events_are_sent_for_the_keys_a_write_creates() {
    let a = NodeProc::start("pubsub-new", "a", "127.0.6.33");
    let b = NodeProc::start("pubsub-new", "b", "127.0.6.34");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let (on_a, on_b) = (key_of(&p, "a", "n"), key_of(&p, "b", "n"));
    let mut w = Resp::connect(&a.data_addr());
    let mut sub = Resp::connect(&a.data_addr());
    sub.set_timeout(Duration::from_secs(5));
    assert_eq!(sub.call(&["PSUBSCRIBE", "*"]), "[\"psubscribe\", \"*\", 1]");
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "En"]),
        "OK"
    );
    assert_eq!(w.call(&["SET", &on_a, "bar"]), "OK");
    // An overwrite creates nothing.
    assert_eq!(w.call(&["SET", &on_a, "baz"]), "OK");
    assert_eq!(w.call(&["SET", &on_b, "bar"]), "OK");
    let list = format!("{on_a}l");
    assert_eq!(w.call(&["RPUSH", &list, "x"]), "1");
    assert_eq!(w.call(&["RPUSH", &list, "y"]), "2");
    // Pipelined writes are told apart too.
    let hash = format!("{on_a}h");
    w.send(&["HSET", &hash, "f", "1"]);
    w.send(&["HSET", &hash, "g", "2"]);
    assert_eq!([w.read(), w.read()], ["1", "1"]);
    for key in [&on_a, &on_b, &list, &hash] {
        assert_eq!(
            sub.read(),
            format!("[\"pmessage\", \"*\", \"__keyevent@0__:new\", \"{key}\"]")
        );
    }
    // With `$` too, `new` comes before the command's own event.
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "E$n"]),
        "OK"
    );
    let fresh = format!("{on_a}f");
    assert_eq!(w.call(&["SET", &fresh, "v"]), "OK");
    for event in ["new", "set"] {
        assert_eq!(
            sub.read(),
            format!("[\"pmessage\", \"*\", \"__keyevent@0__:{event}\", \"{fresh}\"]")
        );
    }
}
