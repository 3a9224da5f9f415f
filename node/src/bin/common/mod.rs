//! Process helpers shared by the bench binaries: flags, child processes, node start-up.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Admin token of the nodes the benches start.
pub const TOKEN: &str = "bench-token";

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--name N` from the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `127.K.a.b` for this checkout's test block (RINGSHIFT_TEST_NET=K, 0-7, default 0), as the
/// node's tests use, so runs of several checkouts on one machine never bind the same address.
pub fn test_net_ip(a: u8, b: u8) -> String {
    let net = std::env::var("RINGSHIFT_TEST_NET")
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|k| *k < 8)
        .unwrap_or(0);
    format!("127.{net}.{a}.{b}")
}

pub fn wait_port(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{addr} did not come up"))
}

/// Waits for the child's port, then checks the child still runs: a leftover server on the same
/// address would otherwise answer in its place and be measured instead.
pub fn wait_child_port(child: &mut Proc, addr: &str) -> Result<(), String> {
    wait_port(addr)?;
    std::thread::sleep(Duration::from_millis(200));
    match child.0.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(format!(
            "the server for {addr} exited ({status}); is another process listening there?"
        )),
        Err(e) => Err(format!("the server for {addr}: {e}")),
    }
}

/// Starts `bin` as node `name` on `ip` (data port 6379, admin port 8080) with its data under
/// `dir`, and waits until both ports answer. Its stderr is passed through when
/// `RINGSHIFT_BENCH_NODE_STDERR` is set.
pub fn start_node(bin: &Path, dir: &Path, name: &str, ip: &str) -> Result<Proc, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("token"), TOKEN).map_err(|e| e.to_string())?;
    let stderr = if std::env::var_os("RINGSHIFT_BENCH_NODE_STDERR").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--listen",
            &format!("{ip}:6379"),
            "--admin-listen",
            &format!("{ip}:8080"),
            "--member-name",
            name,
            "--admin-token-file",
        ])
        .arg(dir.join("token"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut child = Proc(child);
    wait_child_port(&mut child, &format!("{ip}:6379"))?;
    wait_port(&format!("{ip}:8080"))?;
    Ok(child)
}
