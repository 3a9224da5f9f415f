//! In-process tests of the writer: group commit, fences in the log's critical section, tails.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::changelog::LogOp;
use crate::engine::ops::{SetCond, SetExpiry};
use crate::routing::{Installed, OwnerTable, Route};

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringshift-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config() -> EngineConfig {
    EngineConfig {
        member: "a".into(),
        durable: true,
        retention_bytes: 1 << 30,
        retention_age_ms: 3_600_000,
        pin_cap_bytes: 1 << 31,
        cache_bytes: 1 << 20,
        memtable_bytes: 1 << 20,
    }
}

fn no_placement(_: &[u8]) -> Result<Installed, String> {
    Err("no placement in these tests".into())
}

fn owns_everything() -> Arc<Installed> {
    Arc::new(Installed {
        cluster_uid: "c".into(),
        epoch: 1,
        owners: OwnerTable::new(vec![(
            HashRange {
                start: 0,
                end: u64::MAX,
            },
            Arc::from("a"),
        )]),
        members: HashMap::new(),
        write_pause_budget_ms: 100,
        placement_json: "{}".into(),
    })
}

fn set(key: &str, value: &str) -> Op {
    Op::Data(DataCmd::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        expiry: SetExpiry::Clear,
        cond: SetCond::Always,
        get: false,
    })
}

#[tokio::test]
async fn fenced_writes_are_not_applied_and_never_get_an_offset_above_the_fence() {
    let d = dir("fence");
    let (e, fresh) = open(&d, config(), no_placement).unwrap();
    assert!(fresh);
    // Without a placement nothing is served.
    assert!(matches!(
        e.run(set("k", "1")).await.unwrap(),
        Outcome::NotServed(Route::NoPlacement, _)
    ));
    let installed = owns_everything();
    assert!(matches!(
        e.run(Op::Install {
            installed,
            raw: b"{}".to_vec(),
            degraded: None
        })
        .await
        .unwrap(),
        Outcome::Done
    ));
    // Concurrent submissions share group commits and get consecutive sequences.
    let rxs: Vec<_> = (0..50)
        .map(|i| e.submit(set(&format!("k{i}"), "v")))
        .collect();
    for rx in rxs {
        assert!(matches!(rx.await.unwrap(), Outcome::Data(DataReply::Ok)));
    }
    assert_eq!(e.head(), 50);
    let full = vec![HashRange {
        start: 0,
        end: u64::MAX,
    }];
    let fence = e.submit(Op::Fence {
        migration_uid: "m".into(),
        attempt: 1,
        ranges: full.clone(),
    });
    let after = e.submit(set("k0", "late"));
    assert!(matches!(
        fence.await.unwrap(),
        Outcome::Fenced { offset: 50 }
    ));
    assert!(matches!(
        after.await.unwrap(),
        Outcome::NotServed(Route::Fenced { .. }, _)
    ));
    assert_eq!(e.head(), 50);
    assert_eq!(e.get(b"k0").unwrap().unwrap().value, b"v");
    // A stale attempt cannot fence or unfence; the right one can.
    assert!(matches!(
        e.run(Op::Fence {
            migration_uid: "m".into(),
            attempt: 0,
            ranges: full
        })
        .await
        .unwrap(),
        Outcome::Refused(_)
    ));
    assert!(matches!(
        e.run(Op::Unfence {
            migration_uid: "m".into(),
            attempt: 2
        })
        .await
        .unwrap(),
        Outcome::Refused(_)
    ));
    assert!(matches!(
        e.run(Op::Unfence {
            migration_uid: "m".into(),
            attempt: 1
        })
        .await
        .unwrap(),
        Outcome::Done
    ));
    assert!(matches!(
        e.run(set("k0", "late")).await.unwrap(),
        Outcome::Data(DataReply::Ok)
    ));
    assert_eq!(e.head(), 51);

    // The tail sees every record once, in order, with post-images.
    let t = e
        .tail(
            &e.incarnation,
            0,
            &[HashRange {
                start: 0,
                end: u64::MAX,
            }],
            1000,
        )
        .unwrap();
    assert_eq!(t.records.len(), 51);
    assert_eq!(t.watermark, 51);
    assert!(t.records.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    match &t.records[50].1.op {
        LogOp::Put { value, .. } => assert_eq!(value, b"late"),
        other => panic!("unexpected {other:?}"),
    }
    // An empty filter still moves the watermark to the head.
    let t = e.tail(&e.incarnation, 10, &[], 1000).unwrap();
    assert!(t.records.is_empty());
    assert_eq!(t.watermark, 51);
    assert!(matches!(
        e.tail("other", 0, &[], 10),
        Err(EngineError::WrongIncarnation { .. })
    ));
    assert!(matches!(
        e.tail(&e.incarnation, 99, &[], 10),
        Err(EngineError::Ahead { .. })
    ));
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn incr_and_conditional_sets_see_earlier_writes_of_the_same_batch() {
    let d = dir("batch");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(Op::Install {
        installed: owns_everything(),
        raw: b"{}".to_vec(),
        degraded: None,
    })
    .await
    .unwrap();
    let incr = |n| {
        Op::Data(DataCmd::IncrBy {
            key: b"n".to_vec(),
            delta: n,
        })
    };
    let nx = Op::Data(DataCmd::Set {
        key: b"n".to_vec(),
        value: b"x".to_vec(),
        expiry: SetExpiry::Clear,
        cond: SetCond::IfAbsent,
        get: false,
    });
    let rxs = vec![
        e.submit(incr(1)),
        e.submit(incr(2)),
        e.submit(nx),
        e.submit(incr(3)),
    ];
    let mut replies = Vec::new();
    for rx in rxs {
        match rx.await.unwrap() {
            Outcome::Data(r) => replies.push(r),
            _ => panic!("not applied"),
        }
    }
    assert_eq!(
        replies,
        vec![
            DataReply::Int(1),
            DataReply::Int(3),
            DataReply::Nil,
            DataReply::Int(6)
        ]
    );
    assert_eq!(e.get(b"n").unwrap().unwrap().value, b"6");
    let _ = std::fs::remove_dir_all(&d);
}

/// Batches overlap in the pipeline (one commits while the next is evaluated): every INCR must
/// still see every earlier one, and a fence taken meanwhile covers exactly the earlier records.
#[tokio::test(flavor = "multi_thread")]
async fn evaluation_sees_the_batch_being_committed() {
    let d = dir("pipeline");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(Op::Install {
        installed: owns_everything(),
        raw: b"{}".to_vec(),
        degraded: None,
    })
    .await
    .unwrap();
    let head0 = e.head();
    let mut rxs = Vec::new();
    for round in 0..40 {
        for _ in 0..50 {
            rxs.push(e.submit(Op::Data(DataCmd::IncrBy {
                key: b"n".to_vec(),
                delta: 1,
            })));
        }
        if round % 8 == 0 {
            // Let a batch reach the committer so the next ones are evaluated during its fsync.
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
    }
    let fence = e.submit(Op::Fence {
        migration_uid: "m".into(),
        attempt: 1,
        ranges: vec![HashRange {
            start: 0,
            end: u64::MAX,
        }],
    });
    let after = e.submit(Op::Data(DataCmd::IncrBy {
        key: b"n".to_vec(),
        delta: 1,
    }));
    for (i, rx) in rxs.into_iter().enumerate() {
        match rx.await.unwrap() {
            Outcome::Data(DataReply::Int(n)) => assert_eq!(n, i as i64 + 1),
            _ => panic!("INCR {i} not applied"),
        }
    }
    match fence.await.unwrap() {
        Outcome::Fenced { offset } => assert_eq!(offset, head0 + 2000),
        _ => panic!("fence refused"),
    }
    assert!(matches!(
        after.await.unwrap(),
        Outcome::NotServed(Route::Fenced { .. }, _)
    ));
    assert_eq!(e.get(b"n").unwrap().unwrap().value, b"2000");
    let _ = std::fs::remove_dir_all(&d);
}

/// A connection's pipelined writes: once one is refused (its range got fenced after the
/// connection routed it), the later ones are refused too instead of being applied first.
#[tokio::test]
async fn a_refused_write_holds_back_the_connection_s_later_writes() {
    let d = dir("ordered");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(Op::Install {
        installed: owns_everything(),
        raw: b"{}".to_vec(),
        degraded: None,
    })
    .await
    .unwrap();
    let h = keys::key_hash(b"a");
    let fence = e.submit(Op::Fence {
        migration_uid: "m".into(),
        attempt: 1,
        ranges: vec![HashRange { start: h, end: h }],
    });
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = e.submit_ordered(set("a", "1"), gate.clone());
    let b = e.submit_ordered(set("b", "1"), gate.clone());
    // Another connection's write is not held back.
    let other = e.submit(set("c", "1"));
    assert!(matches!(fence.await.unwrap(), Outcome::Fenced { .. }));
    assert!(matches!(
        a.await.unwrap(),
        Outcome::NotServed(Route::Fenced { .. }, _)
    ));
    assert!(matches!(
        b.await.unwrap(),
        Outcome::NotServed(Route::Local, _)
    ));
    assert!(matches!(other.await.unwrap(), Outcome::Data(DataReply::Ok)));
    assert!(e.get(b"b").unwrap().is_none());
    assert!(e.get(b"c").unwrap().is_some());
    // Once the connection has answered everything it reopens the gate.
    gate.store(false, std::sync::atomic::Ordering::Release);
    let b = e.submit_ordered(set("b", "2"), gate.clone());
    assert!(matches!(b.await.unwrap(), Outcome::Data(DataReply::Ok)));
    let _ = std::fs::remove_dir_all(&d);
}
