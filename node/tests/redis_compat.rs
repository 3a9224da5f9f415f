//! The same command script against redis-server and a node: replies must match (EXPIRE's
//! NX/XX/GT/LT options, their errors, expiry in the past; TTLs within a second).

mod common;

use std::process::{Command, Stdio};

use common::*;
use redis::Value;

struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn script() -> Vec<Vec<&'static str>> {
    [
        "SET k1 v",
        "EXPIRE k1 100 XX",
        "EXPIRE k1 100 NX",
        "EXPIRE k1 200 NX",
        "EXPIRE k1 50 GT",
        // (Equal expiry times are not compared: they depend on which millisecond each ran.)
        "EXPIRE k1 200 gt",
        "EXPIRE k1 300 LT",
        "EXPIRE k1 150 LT",
        "TTL k1",
        "SET k2 v",
        "EXPIRE k2 100 GT",
        "EXPIRE k2 100 LT",
        "PEXPIRE k2 5000 XX",
        "EXPIRE k2 10 XX GT",
        "PTTL k2",
        "EXPIRE k2 5 XX GT",
        "EXPIRE missing 10",
        "EXPIRE missing 10 LT",
        "EXPIRE k1 10 NX XX",
        "EXPIRE k1 10 GT LT",
        "EXPIRE k1 10 NX GT",
        "EXPIRE k1 10 BAD",
        "EXPIRE k1 x BAD",
        "PEXPIRE k1 10000 xx lt",
        "EXPIRE k1 -1 GT",
        "EXPIRE k1 -1 LT",
        "EXISTS k1",
        "PERSIST k2",
        "TTL k2",
        "EXPIRE k2 0 NX",
        "EXISTS k2",
    ]
    .iter()
    .map(|l| l.split(' ').collect())
    .collect()
}

fn run(addr: &str) -> Vec<Result<Value, String>> {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut c = client.get_connection().unwrap();
    script()
        .into_iter()
        .map(|words| {
            let mut cmd = redis::cmd(words[0]);
            for w in &words[1..] {
                cmd.arg(*w);
            }
            cmd.query::<Value>(&mut c).map_err(|e| e.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn expire_options_behave_like_redis_server() {
    let dir = temp_dir("redis-compat-server");
    let server_ip = ip("127.0.1.44");
    let server_addr = format!("{server_ip}:6379");
    let server = Redis(
        Command::new("redis-server")
            .args(["--bind", &server_ip, "--port", "6379", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)"),
    );
    let node = NodeProc::start("redis-compat", "a", "127.0.1.45");
    install(&placement(&["a"]), &[&node]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&server_addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let want = run(&server_addr);
    let got = run(&node.data_addr());
    drop(server);
    for ((line, w), g) in script().iter().zip(&want).zip(&got) {
        let close = match (w, g) {
            // TTLs: within a second of each other.
            (Ok(Value::Int(a)), Ok(Value::Int(b))) if line[0] == "TTL" => (a - b).abs() <= 1,
            (Ok(Value::Int(a)), Ok(Value::Int(b))) if line[0] == "PTTL" => (a - b).abs() <= 1000,
            _ => w == g,
        };
        assert!(close, "{}: redis-server {w:?}, node {g:?}", line.join(" "));
    }
}
