//! Commands through the redis crate, for tests that compare replies: `cmd` expects a reply of
//! type T, `err` expects an error and returns `CODE detail`; and INFO's blocked_clients.

use std::time::{Duration, Instant};

use redis::Value;

/// Runs `args` and returns its reply as T; panics with the command on an error.
pub fn cmd<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut k = redis::cmd(args[0]);
    for a in &args[1..] {
        k.arg(*a);
    }
    k.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs `args`, which must fail; returns `CODE detail` as Redis wrote it.
pub fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut k = redis::cmd(args[0]);
    for a in &args[1..] {
        k.arg(*a);
    }
    match k.query::<Value>(c) {
        Ok(v) => panic!("{args:?} answered {v:?}, expected an error"),
        Err(e) => {
            let code = e.code().unwrap_or("").to_string();
            let detail = e.detail().unwrap_or("").to_string();
            format!("{code} {detail}").trim().to_string()
        }
    }
}

/// INFO's blocked_clients.
pub fn blocked_clients(c: &mut redis::Connection) -> u64 {
    let info: String = cmd(c, &["INFO"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO has blocked_clients")
}

/// Waits until INFO reports `want` blocked clients (10 s at most).
pub fn wait_blocked(c: &mut redis::Connection, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked_clients(c) != want {
        assert!(Instant::now() < deadline, "blocked_clients never {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
