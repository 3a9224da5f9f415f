//! String, keyspace and connection commands against redis-server and a node: the same script
//! on both, replies compared (values, nulls, integers and error texts). `<empty>` stands for
//! an empty argument; a line starting with `sorted` compares its array reply as a set.

mod common;

use common::script::*;
use common::*;

const STRINGS: &str = "
SET s1 hello
SET s1 world NX
SET s1 world XX GET
SET s1 v EX 100 KEEPTTL
SET s1 v EX 0
SET s1 v EX x
SET s1 v EX 0 BAD
SET s1 v PX -5
SET s1 v EXAT 0
SET s1 v NX XX
SET s1 v NX NX
SET s1 v EX 10 EX 20 PX 5
SET s1 v GET NX
SET s1 v ex
SET s2 v EXAT 4102444800
EXPIRETIME s2
PEXPIRETIME s2
SET s2 w KEEPTTL
EXPIRETIME s2
SET s2 w
EXPIRETIME s2
EXPIRETIME nokey
SET s9 v PXAT 1
EXISTS s9
SETNX s3 a
SETNX s3 b
GET s3
SETEX s4 0 v
SETEX s4 -1 v
SETEX s4 x v
SETEX s4 100 v
PSETEX s4 0 v
PSETEX s5 100000 v
GET s5
GETSET s3 c
GETSET nokey2 d
GET nokey2
GETDEL s3
GETDEL s3
EXISTS s3
GETEX s2
GETEX s2 EXAT 4102444800
EXPIRETIME s2
GETEX s2 PERSIST
EXPIRETIME s2
GETEX s2 EX 0
GETEX s2 EX 10 PX 10
GETEX s2 FOO
GETEX s2 PERSIST EX 10
GETEX nokey
GETEX s2 PXAT 1
EXISTS s2
APPEND a1 foo
APPEND a1 bar
GET a1
STRLEN a1
GETRANGE a1 0 2
GETRANGE a1 -3 -1
GETRANGE a1 5 1
GETRANGE a1 0 -100
GETRANGE a1 -1 -5
GETRANGE nokey 0 -1
GETRANGE a1 x 1
SUBSTR a1 1 3
SETRANGE a1 3 XYZ
GET a1
SETRANGE r1 5 hi
GET r1
SETRANGE r2 0 <empty>
EXISTS r2
SETRANGE a1 0 <empty>
SETRANGE a1 -1 x
SETRANGE a1 x y
SETRANGE a1 536870911 xx
INCRBYFLOAT f1 1.5
INCRBYFLOAT f1 0.1
INCRBYFLOAT f1 -1.6
INCRBYFLOAT f1 abc
INCRBYFLOAT a1 1
INCRBYFLOAT f1 +inf
INCRBYFLOAT f2 5.0e3
INCRBYFLOAT f3 10.5
INCRBYFLOAT f3 0.1
GET f2
MSETNX m1 1 m2 2
MSETNX m2 x m3 3
MGET m1 m2 m3
MSETNX m1
SETNX s3
GETDEL
";

const KEYSPACE: &str = "
SET k1 v
SET k2 v
SET k3 v
EXPIREAT k1 4102444800
EXPIRETIME k1
PEXPIREAT k2 4102444800123
PEXPIRETIME k2
EXPIREAT k1 4102444801 NX
EXPIREAT k1 4102444801 GT
EXPIRETIME k1
EXPIREAT k3 1
EXISTS k3
EXPIREAT k1 x
EXPIREAT k1 10 FOO
EXPIREAT nokey 10
PEXPIREAT k1 10 NX XX
TOUCH k1 k2 nokey
TYPE k1
TYPE nokey
OBJECT REFCOUNT k1
OBJECT FREQ k1
OBJECT ENCODING nokey
OBJECT FOO k1
OBJECT ENCODING
OBJECT ENCODING k1 k2
sorted KEYS k*
KEYS nomatch*
SELECT 0
SELECT x
CONFIG GET maxmemory
CONFIG GET maxmemory-policy
CONFIG GET nosuchsetting
CLIENT SETNAME foo
CLIENT GETNAME
CLIENT SETNAME a<empty>b
CLIENT SETNAME <empty>
CLIENT GETNAME
CLIENT NO-EVICT on
CLIENT NO-EVICT maybe
CLIENT KILL ID 999999
CLIENT KILL 1.2.3.4:5
CLIENT KILL ID x
CLIENT FOO
SET r1 v EXAT 4102444800
RENAME r1 r2
EXPIRETIME r2
EXISTS r1
RENAME nokey r3
RENAME r2 r2
RENAMENX r2 r2
RENAMENX nokey r2
SET r4 w
RENAMENX r2 r4
RENAMENX r2 r5
GET r5
COPY r5 r6
EXPIRETIME r6
COPY r5 r6
COPY r5 r6 REPLACE
COPY r5 r5
COPY nokey r7
COPY r5 r8 DB 0
COPY r5 r9 DB x
COPY r5 r9 FOO
SETBIT b1 7 1
SETBIT b1 7 0
SETBIT b1 9 1
GET b1
SETBIT b1 -1 1
SETBIT b1 0 2
SETBIT b1 x 1
SETBIT b1 4294967296 1
GETBIT b1 9
GETBIT b1 100
GETBIT nokey 0
GETBIT b1 -1
SET l1 ohmytext
SET l2 mynewtext
LCS l1 l2
LCS l1 l2 LEN
LCS l1 l2 IDX
LCS l1 l2 IDX WITHMATCHLEN MINMATCHLEN 4
LCS l1 l2 LEN IDX
LCS l1 nokey
LCS l1 l2 FOO
LCS l1 l2 MINMATCHLEN x
FLUSHALL
DBSIZE
RANDOMKEY
SET k1 v
RANDOMKEY
FLUSHDB ASYNC
FLUSHALL BAD
DBSIZE
";

#[tokio::test(flavor = "multi_thread")]
async fn string_keyspace_and_connection_commands_answer_like_redis_server() {
    let (server, server_addr) = start_redis("strings-compat-server", "127.0.1.46");
    let node = NodeProc::start("strings-compat", "a", "127.0.1.47");
    install(&placement(&["a"]), &[&node]).await;
    for (script, resp3) in [(STRINGS, false), (KEYSPACE, false), (STRINGS, true)] {
        compare_from_empty(&server_addr, &node.data_addr(), script, resp3);
    }
    drop(server);
}

/// HELLO 3 switches the connection to RESP3 (a map describing the server, `_` nulls, a map
/// from CONFIG GET); HELLO 2 switches back; an unknown version is refused.
#[tokio::test(flavor = "multi_thread")]
async fn hello_3_speaks_resp3() {
    use std::io::{Read, Write};
    let node = NodeProc::start("hello3", "a", "127.0.1.48");
    install(&placement(&["a"]), &[&node]).await;
    let mut s = std::net::TcpStream::connect(node.data_addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut ask = |req: &str, expect_end: &[u8]| -> String {
        s.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(expect_end) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).to_string()
    };
    let hello = ask("HELLO 3\r\n", b"modules\r\n*0\r\n");
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{hello}"
    );
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(ask("GET nokey\r\n", b"\r\n"), "_\r\n");
    assert_eq!(
        ask("MGET nokey nokey\r\n", b"_\r\n_\r\n"),
        "*2\r\n_\r\n_\r\n"
    );
    assert_eq!(
        ask("CONFIG GET maxmemory\r\n", b"$1\r\n0\r\n"),
        "%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    );
    assert_eq!(ask("SET l1 ohmytext\r\n", b"\r\n"), "+OK\r\n");
    assert_eq!(ask("SET l2 mynewtext\r\n", b"\r\n"), "+OK\r\n");
    let idx = ask("LCS l1 l2 IDX MINMATCHLEN 4\r\n", b"len\r\n:6\r\n");
    assert!(idx.starts_with("%2\r\n$7\r\nmatches\r\n"), "{idx}");
    assert_eq!(ask("COMMAND DOCS\r\n", b"\r\n"), "%0\r\n");
    let hello2 = ask("HELLO 2\r\n", b"modules\r\n*0\r\n");
    assert!(hello2.starts_with("*14\r\n"), "{hello2}");
    assert_eq!(ask("GET nokey\r\n", b"\r\n"), "$-1\r\n");
    assert_eq!(
        ask("HELLO 4\r\n", b"\r\n"),
        "-NOPROTO sorry, this protocol version is not supported\r\n"
    );
}

/// CLIENT LIST shows every connection with its name; CLIENT KILL by id closes another one.
#[tokio::test(flavor = "multi_thread")]
async fn client_list_and_kill() {
    let node = NodeProc::start("client-kill", "a", "127.0.1.49");
    install(&placement(&["a"]), &[&node]).await;
    let mut victim = node.redis();
    let victim_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut victim).unwrap();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("victim")
        .query::<()>(&mut victim)
        .unwrap();
    let mut admin = node.redis();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("id={victim_id} ")) && l.contains(" name=victim ")),
        "{list}"
    );
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut admin).unwrap();
    assert!(info.contains(" cmd=client "), "{info}");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim_id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(redis::cmd("PING").query::<String>(&mut victim).is_err());
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(!list.contains("name=victim"), "{list}");
}
