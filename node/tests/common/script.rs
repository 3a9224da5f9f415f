//! Scripts of commands run against redis-server and a node, replies compared (values, nulls,
//! integers and error texts). `<empty>` stands for an empty argument; a line starting with
//! `sorted` compares its array reply as a set.

use std::process::{Command, Stdio};

use redis::Value;

use super::{ip, temp_dir};

pub struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_redis(test: &str, ip_addr: &str) -> (Redis, String) {
    let dir = temp_dir(test);
    let server_ip = ip(ip_addr);
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
    let addr = format!("{server_ip}:6379");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, addr)
}

pub fn lines(script: &str) -> Vec<Vec<String>> {
    script
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(' ')
                .map(|w| w.replace("<empty>", ""))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn run(addr: &str, script: &str, resp3: bool) -> Vec<Result<Value, String>> {
    let proto = if resp3 { "?protocol=resp3" } else { "" };
    let client = redis::Client::open(format!("redis://{addr}/{proto}")).unwrap();
    let mut c = client.get_connection().unwrap();
    lines(script)
        .into_iter()
        .map(|words| {
            let words = if words[0] == "sorted" {
                &words[1..]
            } else {
                &words[..]
            };
            let mut cmd = redis::cmd(&words[0]);
            for w in &words[1..] {
                cmd.arg(w.as_str());
            }
            cmd.query::<Value>(&mut c).map_err(|e| e.to_string())
        })
        .collect()
}

pub fn sorted(v: &Result<Value, String>) -> Result<Value, String> {
    match v {
        Ok(Value::Array(items)) => {
            let mut items = items.clone();
            items.sort_by_key(|i| format!("{i:?}"));
            Ok(Value::Array(items))
        }
        other => other.clone(),
    }
}

pub fn compare(script: &str, want: &[Result<Value, String>], got: &[Result<Value, String>]) {
    let mut diffs = Vec::new();
    for ((line, w), g) in lines(script).iter().zip(want).zip(got) {
        let same = if line[0] == "sorted" {
            sorted(w) == sorted(g)
        } else {
            w == g
        };
        if !same {
            diffs.push(format!(
                "{}: redis-server {w:?}, node {g:?}",
                line.join(" ")
            ));
        }
    }
    assert!(diffs.is_empty(), "replies differ:\n{}", diffs.join("\n"));
}

/// Empties the server at `addr` (FLUSHALL).
pub fn flushall(addr: &str) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut c = client.get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap();
}

/// Runs `script` on an emptied redis-server and an emptied node and fails on the first lines
/// whose replies differ.
pub fn compare_from_empty(server_addr: &str, node_addr: &str, script: &str, resp3: bool) {
    flushall(server_addr);
    flushall(node_addr);
    let want = run(server_addr, script, resp3);
    let got = run(node_addr, script, resp3);
    compare(script, &want, &got);
}
