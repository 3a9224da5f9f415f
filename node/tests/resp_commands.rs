//! One node owning everything: the command set, expiry, errors in Redis' wording, pipelining,
//! redis-cli, and malformed input.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use redis::Commands;

fn raw(addr: &str, input: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(input).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_behave_like_redis() {
    let node = NodeProc::start("resp", "a", "127.0.1.1");
    // Before a placement is installed data commands are refused clearly.
    assert_eq!(
        redis_cli(&node.data_addr(), &["GET", "k"]),
        "CLUSTERDOWN no placement installed on this node"
    );
    install(&placement(&["a"]), &[&node]).await;

    let mut c = node.redis();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    assert_eq!(c.strlen::<_, i64>("k").unwrap(), 1);
    assert!(c.exists::<_, bool>("k").unwrap());
    let nx: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(nx, None);
    let xx: Option<String> = redis::cmd("SET")
        .arg("missing")
        .arg("w")
        .arg("XX")
        .query(&mut c)
        .unwrap();
    assert_eq!(xx, None);
    let old: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(old.as_deref(), Some("v"));
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(
        redis::cmd("INCRBY")
            .arg("n")
            .arg(41)
            .query::<i64>(&mut c)
            .unwrap(),
        42
    );
    assert_eq!(
        redis::cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(),
        41
    );
    let not_int = redis::cmd("INCR")
        .arg("k")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(
        not_int
            .to_string()
            .contains("value is not an integer or out of range"),
        "{not_int}"
    );
    let _: () = c.mset(&[("m1", "1"), ("m2", "2")]).unwrap();
    let got: Vec<Option<String>> = c.mget(&["m1", "nope", "m2"]).unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg("m1")
            .arg("m2")
            .arg("nope")
            .query::<i64>(&mut c)
            .unwrap(),
        2
    );
    assert_eq!(c.del::<_, i64>(&["m1", "m2", "nope"]).unwrap(), 2);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 2);

    // Expiry: TTL/PTTL, lazy (reads) and active (DBSIZE drops without reads).
    let _: () = redis::cmd("SET")
        .arg("e")
        .arg("x")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let ttl: i64 = c.ttl("e").unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(c.ttl::<_, i64>("k").unwrap(), -1);
    assert_eq!(c.ttl::<_, i64>("nope").unwrap(), -2);
    assert_eq!(
        redis::cmd("PEXPIRE")
            .arg("k")
            .arg(150)
            .query::<i64>(&mut c)
            .unwrap(),
        1
    );
    assert!(c.pttl::<_, i64>("k").unwrap() <= 150);
    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("x")
        .arg("PX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get::<_, Option<String>>("k").unwrap(), None);
    let mut dbsize = 99;
    for _ in 0..50 {
        dbsize = redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap();
        if dbsize == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dbsize, 2, "n and e remain after active expiry");
    assert_eq!(
        redis::cmd("EXPIRE")
            .arg("e")
            .arg(-1)
            .query::<i64>(&mut c)
            .unwrap(),
        1
    );
    assert!(!c.exists::<_, bool>("e").unwrap());

    // SCAN covers everything, with MATCH.
    for i in 0..50 {
        let _: () = c.set(format!("scan:{i}"), i).unwrap();
    }
    let mut keys: Vec<String> = c
        .scan_match::<_, String>("scan:*")
        .unwrap()
        .map(|k| k.unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 50);

    // Pipelining keeps order and read-your-writes.
    let (a, b, n): (String, String, i64) = redis::pipe()
        .cmd("SET")
        .arg("p1")
        .arg("1")
        .ignore()
        .cmd("SET")
        .arg("p1")
        .arg("2")
        .ignore()
        .cmd("GET")
        .arg("p1")
        .cmd("SET")
        .arg("p2")
        .arg("x")
        .ignore()
        .cmd("GET")
        .arg("p2")
        .cmd("INCR")
        .arg("pn")
        .query(&mut c)
        .unwrap();
    assert_eq!((a.as_str(), b.as_str(), n), ("2", "x", 1));

    // Redis' error wording.
    let out = redis_cli(&node.data_addr(), &["FOO", "a", "b"]);
    assert_eq!(
        out,
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b'"
    );
    assert_eq!(
        redis_cli(&node.data_addr(), &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        redis_cli(&node.data_addr(), &["SET", "k", "v", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        redis_cli(&node.data_addr(), &["SET", "k", "v", "BOGUS"]),
        "ERR syntax error"
    );
    assert_eq!(
        redis_cli(&node.data_addr(), &["HELLO", "4"]),
        "NOPROTO sorry, this protocol version is not supported"
    );
    assert!(redis_cli(&node.data_addr(), &["HELLO", "3"]).contains("proto"));
    assert!(redis_cli(&node.data_addr(), &["HELLO", "2"]).contains("proto"));
    assert_eq!(redis_cli(&node.data_addr(), &["ECHO", "hi"]), "hi");
    assert_eq!(
        redis_cli(&node.data_addr(), &["CLIENT", "SETNAME", "me"]),
        "OK"
    );
    assert!(redis_cli(&node.data_addr(), &["INFO"]).contains("redis_version"));
    assert!(
        redis_cli(&node.data_addr(), &["COMMAND", "COUNT"])
            .parse::<i64>()
            .unwrap()
            > 20
    );
    // redis-cli without a command runs its interactive start-up (COMMAND DOCS for hints) and
    // then reads commands from stdin.
    let out = std::process::Command::new("redis-cli")
        .args(["-h", &node.ip, "-p", "6379"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"SET cli 1\nGET cli\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK\n1");
    assert!(!redis_cli(&node.data_addr(), &["COMMAND", "DOCS"]).starts_with("ERR"));

    // Inline commands and a protocol error closing only that connection.
    let out = raw(&node.data_addr(), b"PING\r\nSET inl 'a b'\r\nGET inl\r\n");
    assert!(
        out.starts_with(b"+PONG\r\n+OK\r\n$3\r\na b\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let out = raw(&node.data_addr(), b"*1\r\n$4\r\nPING\r\n*x\r\n");
    assert_eq!(
        out,
        b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert_eq!(c.get::<_, String>("inl").unwrap(), "a b");
}

#[test]
fn oversized_and_random_frames_get_errors_and_the_server_survives() {
    let node = NodeProc::start_with("fuzz", "a", "127.0.1.2", &["--max-frame-bytes", "1024"]);
    let out = raw(&node.data_addr(), b"*2\r\n$3\r\nGET\r\n$5000\r\n");
    assert!(
        String::from_utf8_lossy(&out).starts_with("-ERR Protocol error"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Deterministic pseudo-random garbage, including partial and binary frames.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..200 {
        let len = (round * 7) % 300 + 1;
        let mut input = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            input.push(match x % 8 {
                0 => b'*',
                1 => b'$',
                2 => b'\r',
                3 => b'\n',
                4 => b'0' + (x % 10) as u8,
                _ => (x >> 8) as u8,
            });
        }
        let mut s = std::net::TcpStream::connect(node.data_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let _ = s.write_all(&input);
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
    }
    assert_eq!(redis_cli(&node.data_addr(), &["PING"]), "PONG");
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    let dir = temp_dir("auth-secret");
    std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
    let pw = dir.join("pw").display().to_string();
    let node = NodeProc::start_with("auth", "a", "127.0.1.3", &["--password-file", &pw]);
    assert_eq!(
        redis_cli(&node.data_addr(), &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert!(redis_cli(&node.data_addr(), &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    assert_eq!(
        redis_cli(
            &node.data_addr(),
            &["-a", "s3cret", "--no-auth-warning", "PING"]
        ),
        "PONG"
    );
}

/// CLIENT REPLY OFF / SKIP / ON in one pipeline, also around pipelined writes: the node sends
/// exactly the bytes redis-server sends.
#[tokio::test(flavor = "multi_thread")]
async fn client_reply_silences_replies_like_redis_server() {
    let (server, server_addr) = common::script::start_redis("reply-server", "127.0.1.4");
    let node = NodeProc::start("reply", "a", "127.0.1.5");
    install(&placement(&["a"]), &[&node]).await;
    let input = b"SET a 1\r\nCLIENT REPLY OFF\r\nSET b 2\r\nSET c 3\r\nGET a\r\n\
        CLIENT REPLY ON\r\nGET b\r\nCLIENT REPLY SKIP\r\nSET d 4\r\nGET d\r\n\
        CLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\nCLIENT REPLY maybe\r\nCLIENT REPLY\r\n\
        CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nGET c\r\nCLIENT REPLY ON\r\nQUIT\r\n";
    let want = raw(&server_addr, input);
    assert!(want.starts_with(b"+OK\r\n+OK\r\n$1\r\n2\r\n$1\r\n4\r\n+OK\r\n-ERR syntax error"));
    assert_eq!(
        String::from_utf8_lossy(&raw(&node.data_addr(), input)),
        String::from_utf8_lossy(&want)
    );
    drop(server);
}
