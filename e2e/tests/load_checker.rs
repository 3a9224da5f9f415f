//! The load checker against a real redis-server: a healthy store passes, and a store that
//! loses data is caught. Needs `redis-server` (Debian's redis-server; `.ci/run` installs it).

use ringshift_e2e::load::{Addrs, LoadConfig, Stats, StopFlag, drive, finish};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct Redis {
    child: Child,
    addr: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(port: u16) -> Redis {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis { child, addr }
}

fn config(addr: &str) -> LoadConfig {
    LoadConfig {
        addrs: Addrs::Static(vec![addr.to_string()]),
        workers: 4,
        keys_per_worker: 50,
        duration: Duration::from_millis(600),
        ..LoadConfig::default()
    }
}

#[tokio::test]
async fn healthy_store_passes() {
    let redis = start_redis(16391);
    let cfg = config(&redis.addr);
    let stats = Arc::new(Stats::default());
    let out = drive(&cfg, stats.clone(), StopFlag::default()).await;
    let report = finish(&cfg, &stats, out).await;
    assert!(report.stats.writes_acked > 100, "{report:?}");
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.keys_verified, 200);
}

#[tokio::test]
async fn store_that_loses_data_is_caught() {
    let redis = start_redis(16392);
    let cfg = config(&redis.addr);
    let stats = Arc::new(Stats::default());
    let out = drive(&cfg, stats.clone(), StopFlag::default()).await;
    // Lose everything behind the clients' backs.
    let client = redis::Client::open(format!("redis://{}/", redis.addr)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let report = finish(&cfg, &stats, out).await;
    assert!(!report.is_clean());
    assert_eq!(report.lost_writes, 200, "{:?}", report.violations);
}

#[tokio::test]
async fn unreachable_store_counts_errors_not_losses() {
    let cfg = LoadConfig {
        op_timeout: Duration::from_millis(200),
        ..config("127.0.0.1:1")
    };
    let stats = Arc::new(Stats::default());
    let out = drive(&cfg, stats.clone(), StopFlag::default()).await;
    let snap = stats.snapshot();
    assert_eq!(snap.writes_acked, 0);
    assert!(snap.errors() > 0);
    drop(out);
}
