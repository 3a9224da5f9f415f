//! Moving ranges between two nodes with writes going on: snapshot copy, verification, catch-up,
//! fence, commit, drop. Every acknowledged write is on the target after catch-up to the fence.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::moves::*;
use common::*;
use ringshift_node_api::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_range_moves_with_writes_going_on() {
    let a = NodeProc::start("pull", "a", "127.0.1.9");
    let b = NodeProc::start("pull", "b", "127.0.1.11");
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;

    // Write load through a, recording the last acknowledged value of each key.
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), a.data_addr());
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut c = client.get_connection().unwrap();
            let mut i: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key:{}", i % 700);
                let r: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(i).query(&mut c);
                if r.is_ok() {
                    acked.lock().unwrap().insert(key, i);
                }
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Epoch 2: the change to [a, b] starts; a still owns everything until the commit.
    let (p2, ranges) = split_to_b(&p1);
    install(&p2, &[&a, &b]).await;
    let mig = caller(p2.epoch(), "mig-1", 1);
    let started = start_pull(&b, &a, &mig, &ranges).await;
    assert_eq!(started.phase, PullPhase::Starting);
    let s = wait_pull(&b, "mig-1", |s| s.phase == PullPhase::CatchingUp).await;
    assert_eq!(s.verified, Some(true));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Cutover: fence at a, wait until b applied up to F.
    let f = fence(&a, &mig, &ranges).await;
    stop.store(true, Ordering::Relaxed);
    let writes = load.join().unwrap();
    assert!(writes > 100, "load made {writes} writes");
    wait_pull(&b, "mig-1", |s| applied_up_to(s, &f)).await;

    // Same data on both sides for the moved ranges.
    let sum_a = checksum(&a, &ranges).await;
    assert_eq!(sum_a, checksum(&b, &ranges).await);
    assert!(sum_a.1 > 0);

    // Commit: b owns the ranges; a's fence lifts with the placement; every acknowledged write
    // reads back through either node.
    let p3 = p2.commit("a", "b").unwrap();
    install(&p3, &[&a, &b]).await;
    assert!(a.admin().status().await.unwrap().fences.is_empty());
    let mut ca = a.redis();
    let mut cb = b.redis();
    let acked = acked.lock().unwrap().clone();
    for (k, v) in &acked {
        let got_a: i64 = redis::cmd("GET").arg(k).query(&mut ca).unwrap();
        let got_b: i64 = redis::cmd("GET").arg(k).query(&mut cb).unwrap();
        assert_eq!((got_a, got_b), (*v, *v), "{k}");
    }
    let s = b
        .admin()
        .cancel_pull(&caller(p3.epoch(), "mig-1", 1))
        .await
        .unwrap();
    assert!(
        matches!(s.phase, PullPhase::Cancelled | PullPhase::Completed),
        "{s:?}"
    );

    // The source drops what it no longer owns; b's copy is untouched.
    let before: i64 = redis::cmd("DBSIZE").query(&mut cb).unwrap();
    a.admin()
        .drop_ranges(&DropRequest {
            caller: caller(p3.epoch(), "mig-1", 1),
            ranges: ranges.clone(),
            ownership_ended_epoch: p3.epoch(),
        })
        .await
        .unwrap();
    assert_eq!(checksum(&a, &ranges).await.1, 0);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut cb).unwrap(), before);
    let total: i64 = redis::cmd("DBSIZE").query::<i64>(&mut ca).unwrap() + before;
    assert_eq!(total as usize, acked.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_copy_resumes_after_the_target_is_killed() {
    let a = NodeProc::start("resume", "a", "127.0.1.15");
    let mut b = NodeProc::start("resume", "b", "127.0.1.16");
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    let mut ca = a.redis();
    let value = "v".repeat(200);
    for i in 0..3000 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(&value)
            .query(&mut ca)
            .unwrap();
    }
    let (p2, ranges) = split_to_b(&p1);
    install(&p2, &[&a, &b]).await;
    let mig = caller(p2.epoch(), "mig-r", 1);
    let start = StartPull {
        caller: mig.clone(),
        source: a.endpoint(),
        ranges: ranges.clone(),
        bytes_per_sec: Some(200_000),
        verify: true,
    };
    b.admin().start_pull(&start).await.unwrap();
    // Kill the target in the middle of the (throttled) copy.
    let s = wait_pull(&b, "mig-r", |s| {
        s.phase == PullPhase::Copying && s.keys_copied > 0
    })
    .await;
    assert!(s.keys_copied < 3000, "copy not throttled: {s:?}");
    b.kill9();
    b.spawn();
    let resumed = b.admin().pull("mig-r").await.unwrap();
    assert!(resumed.keys_copied > 0, "{resumed:?}");
    let s = wait_pull(&b, "mig-r", |s| s.phase == PullPhase::CatchingUp).await;
    assert_eq!(s.verified, Some(true));
    assert_eq!(checksum(&a, &ranges).await, checksum(&b, &ranges).await);
    // Starting the same attempt again is idempotent.
    assert_eq!(
        b.admin().start_pull(&start).await.unwrap().phase,
        PullPhase::CatchingUp
    );
}
