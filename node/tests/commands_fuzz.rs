//! Every command of the table with generated arguments (numbers at and past their limits,
//! option words, empty and binary strings) against a real node: each request gets exactly one
//! well-formed reply, and afterwards the process still answers PING with no panic in its log.
//!
//! `RINGSHIFT_FUZZ_CASES=N` scales the number of generated commands (default 256, times 8).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ringshift_node::command::table::COMMANDS;
use ringshift_node::resp::reply::{command, reply_len};

/// Arguments drawn from: boundary numbers, option words of the string and keyspace commands,
/// keys (some sharing a hash tag), empty and binary strings. (Offsets stay small enough that
/// SETBIT/SETRANGE cannot build a large value.)
const WORDS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "4095",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "4294967295",
    "1.5",
    "-0.1",
    "inf",
    "+inf",
    "nan",
    "1e400",
    "",
    "k",
    "k2",
    "{t}a",
    "{t}b",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "NX",
    "XX",
    "GT",
    "LT",
    "GET",
    "KEEPTTL",
    "PERSIST",
    "LEN",
    "IDX",
    "MINMATCHLEN",
    "WITHMATCHLEN",
    "REPLACE",
    "DB",
    "MATCH",
    "COUNT",
    "TYPE",
    "ID",
    "ADDR",
    "SKIPME",
    "no",
    "USAGE",
    "SAMPLES",
    "ENCODING",
    "FREQ",
    "REFCOUNT",
    "IDLETIME",
    "HELP",
    "*",
    "*?*?",
    "[a-",
    "\u{0}\u{ff}",
    "ASYNC",
    "SETNAME",
    "GETNAME",
    "LIST",
    "INFO",
    "NO-EVICT",
    "on",
    "maxmemory",
    "FLUSH",
];

/// Commands left out: they end or change the connection (QUIT, HELLO, CLIENT KILL, MULTI,
/// RESET), answer several replies to one request ((P)(UN)SUBSCRIBE with several channels), are
/// the peer protocol, or may wait forever (the blocking commands, with a timeout of 0).
fn fuzzed(name: &str) -> bool {
    !matches!(
        name,
        "quit"
            | "hello"
            | "client"
            | "rsfwd"
            | "rsfwd2"
            | "rsfwdtx"
            | "rswatch"
            | "rspublish"
            | "auth"
            | "multi"
            | "reset"
            | "subscribe"
            | "psubscribe"
            | "unsubscribe"
            | "punsubscribe"
    ) && !ringshift_node::command::blocking::is_blocking(name)
}

fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(n) = reply_len(buf).expect("a well-formed reply") {
            return buf.drain(..n).collect();
        }
        let n = s.read(&mut chunk).expect("an answer in time");
        assert!(n > 0, "the node closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_answers_generated_arguments() {
    let node = NodeProc::start("commands-fuzz", "a", "127.0.1.64");
    install(&placement(&["a"]), &[&node]).await;
    let names: Vec<&'static str> = COMMANDS
        .iter()
        .map(|c| c.name)
        .filter(|n| fuzzed(n))
        .collect();
    let s = TcpStream::connect(node.data_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // (The runner's closure is `Fn`.)
    let s = std::cell::RefCell::new(s);
    let pending = std::cell::RefCell::new(Vec::new());
    let cases = std::env::var("RINGSHIFT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256u32);
    let mut runner = TestRunner::new(Config {
        cases: cases * 8,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..names.len(), prop::collection::vec(0..WORDS.len(), 0..6));
    runner
        .run(&strategy, |(n, words)| {
            let mut args: Vec<&[u8]> = vec![names[n].as_bytes()];
            args.extend(words.iter().map(|&w| WORDS[w].as_bytes()));
            let mut frame = Vec::new();
            command(&mut frame, &args);
            s.borrow_mut().write_all(&frame).unwrap();
            let reply = read_reply(&mut s.borrow_mut(), &mut pending.borrow_mut());
            prop_assert!(!reply.is_empty());
            Ok(())
        })
        .unwrap();
    let mut frame = Vec::new();
    command(&mut frame, &[b"PING"]);
    s.borrow_mut().write_all(&frame).unwrap();
    assert_eq!(
        read_reply(&mut s.borrow_mut(), &mut pending.borrow_mut()),
        b"+PONG\r\n"
    );
    assert!(!node.log().contains("panicked"), "{}", node.log());
}
