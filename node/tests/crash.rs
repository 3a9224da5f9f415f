//! kill -9 during a write load: every acknowledged write survives, the incarnation stays and log
//! offsets are never handed out twice.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill9() {
    let mut node = NodeProc::start("crash", "a", "127.0.1.12");
    install(&placement(&["a"]), &[&node]).await;
    let before = node.admin().status().await.unwrap();

    // Several writes of one key in one group commit: the last one wins, also after recovery.
    let mut c = node.redis();
    let (v,): (String,) = redis::pipe()
        .cmd("SET")
        .arg("same")
        .arg("1")
        .ignore()
        .cmd("DEL")
        .arg("same")
        .ignore()
        .cmd("SET")
        .arg("same")
        .arg("2")
        .ignore()
        .cmd("SET")
        .arg("gone")
        .arg("x")
        .ignore()
        .cmd("DEL")
        .arg("gone")
        .ignore()
        .cmd("GET")
        .arg("same")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "2");

    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop, addr) = (acked.clone(), stop.clone(), node.data_addr());
            std::thread::spawn(move || {
                let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                let Ok(mut c) = client.get_connection() else {
                    return;
                };
                let mut i: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}:{}", i % 300);
                    // Pipelined pairs exercise group commit of several writes at once.
                    let r: redis::RedisResult<()> = redis::pipe()
                        .cmd("SET")
                        .arg(&key)
                        .arg(i)
                        .ignore()
                        .cmd("INCR")
                        .arg(format!("w{w}:count"))
                        .ignore()
                        .query(&mut c);
                    match r {
                        Ok(()) => {
                            let mut m = acked.lock().unwrap();
                            m.insert(key, i);
                            m.insert(format!("w{w}:count"), i + 1);
                        }
                        Err(_) => return,
                    }
                    i += 1;
                }
            })
        })
        .collect();

    // Offsets the node exposed as durable before the crash.
    let mut max_head = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        max_head = max_head.max(node.admin().status().await.unwrap().log_head.sequence);
    }
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    node.spawn();

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} keys acknowledged", acked.len());
    let mut c = node.redis();
    assert_eq!(redis_cli(&node.data_addr(), &["GET", "same"]), "2");
    assert_eq!(redis_cli(&node.data_addr(), &["EXISTS", "gone"]), "0");
    for (k, v) in &acked {
        let got: i64 = redis::cmd("GET").arg(k).query(&mut c).unwrap();
        // A write sent but not acknowledged may have landed too, never an older value.
        assert!(got >= *v, "{k}: acknowledged {v}, found {got}");
    }
    let after = node.admin().status().await.unwrap();
    assert_eq!(after.incarnation, before.incarnation);
    assert!(
        after.log_head.sequence >= max_head,
        "{} < {max_head}",
        after.log_head.sequence
    );
    let head = after.log_head.sequence;
    let _: () = redis::cmd("SET")
        .arg("after-crash")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(
        node.admin().status().await.unwrap().log_head.sequence,
        head + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_data_directory_owning_ranges_is_degraded() {
    let mut node = NodeProc::start("degraded", "a", "127.0.1.13");
    let p = placement(&["a"]);
    install(&p, &[&node]).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(1)
        .query(&mut node.redis())
        .unwrap();
    let old = node.admin().status().await.unwrap().incarnation;
    // The volume comes back empty.
    node.kill9();
    std::fs::remove_dir_all(node.dir.join("data")).unwrap();
    node.spawn();
    let mut body = install_body(&p, &[&node]);
    body.incarnations.insert("a".into(), old.clone());
    let accepted = node.admin().put_placement(&body).await.unwrap();
    assert_ne!(accepted.incarnation, old);
    assert!(accepted.degraded.unwrap().contains(&old));
    let out = redis_cli(&node.data_addr(), &["GET", "k"]);
    assert!(out.starts_with("DEGRADED"), "{out}");
    // Still degraded after a restart.
    node.kill9();
    node.spawn();
    assert!(node.admin().status().await.unwrap().degraded.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_fsync_a_crash_starts_a_new_incarnation_and_a_clean_stop_does_not() {
    let mut node = NodeProc::start_with("nofsync", "a", "127.0.1.17", &["--durability", "none"]);
    install(&placement(&["a"]), &[&node]).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(1)
        .query(&mut node.redis())
        .unwrap();
    let first = node.admin().status().await.unwrap().incarnation;

    // SIGTERM: everything is flushed, same incarnation.
    let pid = node.child.as_ref().unwrap().id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = node.child.as_mut().unwrap().wait();
    node.child = None;
    node.spawn();
    let st = node.admin().status().await.unwrap();
    assert_eq!(st.incarnation, first);
    assert_eq!(redis_cli(&node.data_addr(), &["GET", "k"]), "1");

    // kill -9: offsets may have been lost, so the node must not hand them out again.
    node.kill9();
    node.spawn();
    assert_ne!(node.admin().status().await.unwrap().incarnation, first);
}
