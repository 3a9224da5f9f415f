//! In-process tests of the writer: group commit, fences in the log's critical section, tails.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::changelog::LogOp;
use crate::engine::ops::{SetCond, SetExpiry};
use crate::routing::{Installed, OwnerTable, Route};

pub(super) fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringshift-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub(super) fn config() -> EngineConfig {
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

pub(super) fn no_placement(_: &[u8]) -> Result<Installed, super::DecodeError> {
    Err("no placement in these tests".into())
}

pub(super) fn owns_everything() -> Arc<Installed> {
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
    assert!(matches!(
        e.run(install(owns_everything())).await.unwrap(),
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
    let full = RangeSet::full();
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
    let t = e.tail(&e.incarnation, 0, &RangeSet::full(), 1000).unwrap();
    assert_eq!(t.records.len(), 51);
    assert_eq!(t.watermark, 51);
    assert!(t.records.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    match &t.records[50].1.op {
        LogOp::Put { value, .. } => assert_eq!(value, b"late"),
        other => panic!("unexpected {other:?}"),
    }
    // An empty filter still moves the watermark to the head.
    let t = e
        .tail(&e.incarnation, 10, &RangeSet::empty(), 1000)
        .unwrap();
    assert!(t.records.is_empty());
    assert_eq!(t.watermark, 51);
    assert!(matches!(
        e.tail("other", 0, &RangeSet::empty(), 10),
        Err(EngineError::WrongIncarnation { .. })
    ));
    assert!(matches!(
        e.tail(&e.incarnation, 99, &RangeSet::empty(), 10),
        Err(EngineError::Ahead { .. })
    ));
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn incr_and_conditional_sets_see_earlier_writes_of_the_same_batch() {
    let d = dir("batch");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owns_everything())).await.unwrap();
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
    e.run(install(owns_everything())).await.unwrap();
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
        ranges: RangeSet::full(),
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
    e.run(install(owns_everything())).await.unwrap();
    let h = keys::key_hash(b"a");
    let fence = e.submit(Op::Fence {
        migration_uid: "m".into(),
        attempt: 1,
        ranges: RangeSet::single(HashRange { start: h, end: h }),
    });
    let cmd = |k: &str, v: &str| match set(k, v) {
        Op::Data(c) => c,
        _ => unreachable!("set() builds a data command"),
    };
    let pipeline = e.submit_pipeline(vec![cmd("a", "1"), cmd("b", "1")]);
    // Another connection's write is not held back.
    let other = e.submit(set("c", "1"));
    assert!(matches!(fence.await.unwrap(), Outcome::Fenced { .. }));
    let outcomes = pipeline.await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert!(matches!(
        outcomes[0],
        Outcome::NotServed(Route::Fenced { .. }, _)
    ));
    assert!(matches!(outcomes[1], Outcome::NotServed(Route::Local, _)));
    assert!(matches!(other.await.unwrap(), Outcome::Data(DataReply::Ok)));
    assert!(e.get(b"b").unwrap().is_none());
    assert!(e.get(b"c").unwrap().is_some());
    // The connection's next pipeline starts afresh.
    let next = e.submit_pipeline(vec![cmd("b", "2")]).await.unwrap();
    assert!(matches!(next[..], [Outcome::Data(DataReply::Ok)]));
    let _ = std::fs::remove_dir_all(&d);
}

/// Installs a placement (the raw JSON is not read back by these tests).
pub(super) fn install(installed: Arc<Installed>) -> Op {
    Op::Install {
        installed,
        raw: b"{}".to_vec(),
        degraded: None,
    }
}

pub(super) fn owned_by(member: &str, epoch: u64) -> Arc<Installed> {
    Arc::new(Installed {
        cluster_uid: "c".into(),
        epoch,
        owners: OwnerTable::new(vec![(HashRange::FULL, Arc::from(member))]),
        members: HashMap::new(),
        write_pause_budget_ms: 100,
        placement_json: format!("{epoch}"),
    })
}

/// A large range clear runs in bounded, unlogged batches; the logged clear after it is one
/// record, and a node refuses to clear ranges it owns.
#[tokio::test]
async fn large_clears_run_in_bounded_chunks() {
    let d = dir("chunks");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    for chunk in 0..5 {
        let pairs = (0..5000)
            .map(|i| (format!("k{chunk}-{i}").into_bytes(), b"v".to_vec()))
            .collect();
        e.run(Op::Data(DataCmd::MSet { pairs })).await.unwrap();
    }
    let full = [HashRange::FULL];
    assert_eq!(e.count(&full).unwrap(), 25_000);
    assert!(matches!(
        e.clear_in_chunks(&RangeSet::full()).await,
        Err(ClearError::Owned(_))
    ));
    e.run(install(owned_by("b", 2))).await.unwrap();
    let head = e.head();
    let one = e
        .run(Op::ClearChunk {
            ranges: RangeSet::full(),
            after: None,
            max: CLEAR_CHUNK,
        })
        .await
        .unwrap();
    assert!(matches!(one, Outcome::Cleared { done: false }));
    assert_eq!(e.count(&full).unwrap(), 25_000 - CLEAR_CHUNK as u64);
    e.clear_in_chunks(&RangeSet::full()).await.unwrap();
    assert_eq!(e.count(&full).unwrap(), 0);
    assert_eq!(e.head(), head, "chunks are not logged");
    let logged = e
        .run(Op::Clear {
            ranges: RangeSet::full(),
            meta: vec![],
        })
        .await
        .unwrap();
    assert!(matches!(logged, Outcome::Done));
    assert_eq!(e.head(), head + 1, "one range-clear record");
    let _ = std::fs::remove_dir_all(&d);
}

/// DBSIZE's counters follow every kind of write: sets, overwrites, deletes, pulled records,
/// chunked and logged range clears.
#[tokio::test]
async fn key_counts_follow_writes_deletes_and_clears() {
    let d = dir("counts");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    let full = [HashRange::FULL];
    let half = [HashRange {
        start: 1 << 63,
        end: u64::MAX,
    }];
    let check = |e: &Engine| {
        assert_eq!(e.dbsize(&full).unwrap(), e.count(&full).unwrap());
        assert_eq!(e.dbsize(&half).unwrap(), e.count(&half).unwrap());
    };
    let pairs = (0..3000)
        .map(|i| (format!("k{i}").into_bytes(), b"v".to_vec()))
        .collect();
    e.run(Op::Data(DataCmd::MSet { pairs })).await.unwrap();
    check(&e);
    assert_eq!(e.dbsize(&full).unwrap(), 3000);
    // Overwrites (in one batch with their first write too) and deletes.
    let rxs: Vec<_> = (0..500)
        .map(|i| e.submit(set(&format!("k{i}"), "w")))
        .chain((0..200).map(|i| e.submit(set(&format!("new{i}"), "w"))))
        .chain((0..100).map(|i| e.submit(set(&format!("new{i}"), "x"))))
        .collect();
    for rx in rxs {
        rx.await.unwrap();
    }
    let dels = (2500..3200).map(|i| format!("k{i}").into_bytes()).collect();
    e.run(Op::Data(DataCmd::Del { keys: dels })).await.unwrap();
    check(&e);
    assert_eq!(e.dbsize(&full).unwrap(), 2500 + 200);
    // Pulled records and clears of a range this node does not own.
    e.run(install(Arc::new(Installed {
        owners: OwnerTable::new(vec![
            (
                HashRange {
                    start: 0,
                    end: (1 << 63) - 1,
                },
                Arc::from("a"),
            ),
            (half[0], Arc::from("b")),
        ]),
        epoch: 2,
        ..(*owned_by("a", 2)).clone()
    })))
    .await
    .unwrap();
    let pulled: Vec<LogOp> = (0..50)
        .map(|i| LogOp::Put {
            skey: keys::storage_key(format!("p{i}").as_bytes()),
            value: b"v".to_vec(),
            expires_at: None,
            typed: false,
        })
        .filter(|op| match op {
            LogOp::Put { skey, .. } => keys::split_storage_key(skey).unwrap().0 >= 1 << 63,
            _ => false,
        })
        .collect();
    e.run(Op::Apply {
        ops: pulled,
        meta: vec![],
        guard: RangeSet::single(half[0]),
    })
    .await
    .unwrap();
    check(&e);
    e.run(Op::ClearChunk {
        ranges: RangeSet::single(half[0]),
        after: None,
        max: 100,
    })
    .await
    .unwrap();
    check(&e);
    e.run(Op::Clear {
        ranges: RangeSet::single(half[0]),
        meta: vec![],
    })
    .await
    .unwrap();
    check(&e);
    assert_eq!(e.dbsize(&half).unwrap(), 0);
    assert!(e.dbsize(&full).unwrap() > 1000);
    let _ = std::fs::remove_dir_all(&d);
}

/// Active expiry deletes an expired key through the writer: a logged delete, one key fewer.
#[tokio::test]
async fn active_expiry_deletes_and_logs_expired_keys() {
    let d = dir("expiry");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    let at = keys::now_ms() + 30;
    e.run(Op::Data(DataCmd::Set {
        key: b"t".to_vec(),
        value: b"v".to_vec(),
        expiry: SetExpiry::At(at),
        cond: SetCond::Always,
        get: false,
    }))
    .await
    .unwrap();
    let full = [HashRange::FULL];
    assert_eq!(e.dbsize(&full).unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    let head = e.head();
    let skey = keys::storage_key(b"t");
    let mut index_key = at.to_be_bytes().to_vec();
    index_key.extend_from_slice(&skey);
    e.run(Op::Expired(vec![(index_key, skey, at)]))
        .await
        .unwrap();
    assert_eq!(e.head(), head + 1, "the expiry is logged");
    assert_eq!(e.dbsize(&full).unwrap(), 0);
    let _ = std::fs::remove_dir_all(&d);
}

/// A pulled snapshot goes through fjall's bulk ingestion: readable, counted, expiries
/// indexed; out-of-order input is an error, not a panic; a resumed copy removes what lies past
/// its cursor.
#[tokio::test]
async fn bulk_ingestion_of_a_pulled_snapshot() {
    let d = dir("ingest");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("b", 1))).await.unwrap();
    let mut entries: Vec<KvPair> = (0..5000)
        .map(|i| {
            let skey = keys::storage_key(format!("k{i}").as_bytes());
            let at = if i % 10 == 0 {
                keys::now_ms() + 60_000
            } else {
                0
            };
            let mut v = at.to_be_bytes().to_vec();
            v.extend_from_slice(b"value");
            (skey, v)
        })
        .collect();
    entries.sort();
    let mut chunks = entries.chunks(1000).map(<[KvPair]>::to_vec);
    let unit = ingest::ingest(&e, || chunks.next(), 3000, &ingest::UNGUARDED).unwrap();
    // The unit stops once it holds 3000 bytes: after the first chunk.
    assert_eq!(unit.keys, 1000);
    let expiring = entries[..1000]
        .iter()
        .filter(|(_, v)| v[..8] != [0u8; 8])
        .count();
    assert_eq!(unit.index.len(), expiring);
    let cursor = unit.last.clone().unwrap();
    e.run(Op::Ingested {
        meta: vec![],
        index: unit.index,
        counts: unit.counts,
        guard: RangeSet::full(),
    })
    .await
    .unwrap();
    let full = [HashRange::FULL];
    assert_eq!(e.dbsize(&full).unwrap(), 1000);
    let (k, _) = &entries[10];
    let (_, user) = keys::split_storage_key(k).unwrap();
    assert_eq!(e.get(user).unwrap().unwrap().value, b"value");
    // The next unit was ingested but a crash lost its record: the resume removes it.
    let mut rest = entries[1000..2000].chunks(1000).map(<[KvPair]>::to_vec);
    ingest::ingest(&e, || rest.next(), u64::MAX, &ingest::UNGUARDED).unwrap();
    assert_eq!(e.count(&full).unwrap(), 2000);
    e.clear_after_in_chunks(&RangeSet::full(), Some(&cursor), None)
        .await
        .unwrap();
    // (After a real crash the counters are rebuilt from the data when the node opens.)
    assert_eq!(e.count(&full).unwrap(), 1000);
    // Out of order: refused.
    let mut bad = vec![vec![entries[3000].clone(), entries[2999].clone()]].into_iter();
    assert!(matches!(
        ingest::ingest(&e, || bad.next(), u64::MAX, &ingest::UNGUARDED),
        Err(EngineError::Corrupt { .. })
    ));
    let _ = std::fs::remove_dir_all(&d);
}

/// The source's chunk encoder writes exactly what `wire::encode_chunk` would, page by page.
#[tokio::test]
async fn wire_chunks_match_the_reference_encoding() {
    let d = dir("wire-chunks");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    let pairs = (0..700)
        .map(|i| (format!("k{i}").into_bytes(), vec![b'v'; i % 50]))
        .collect();
    e.run(Op::Data(DataCmd::MSet { pairs })).await.unwrap();
    let Outcome::Snapshot(s) = e.run(Op::Snapshot).await.unwrap() else {
        panic!("no snapshot")
    };
    let ranges = [HashRange {
        start: 1 << 62,
        end: u64::MAX - 5,
    }];
    let mut after: Option<crate::engine::CopyCursor> = None;
    loop {
        let (entries, sub_entries, done) = e
            .read_chunk(&s.snapshot, &ranges, after.as_ref(), 100, 4000)
            .unwrap();
        assert!(sub_entries.is_empty());
        let wire = e
            .read_chunk_wire(&s.snapshot, &ranges, after.as_ref(), 100, 4000)
            .unwrap();
        let reference = crate::wire::encode_chunk(&crate::wire::Chunk {
            entries: entries.clone(),
            sub_entries,
            done,
        });
        assert_eq!(wire, reference);
        let (d2, borrowed) = crate::wire::chunk_entries(&wire).unwrap();
        assert_eq!(d2, done);
        assert_eq!(borrowed.len(), entries.len());
        if done {
            break;
        }
        after = entries
            .last()
            .map(|(k, _)| crate::engine::CopyCursor::Data(k.clone()));
    }
    let _ = std::fs::remove_dir_all(&d);
}

fn set_expiring(key: &str, at: u64) -> Op {
    Op::Data(DataCmd::Set {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        expiry: SetExpiry::At(at),
        cond: SetCond::Always,
        get: false,
    })
}

fn index_entries(e: &Engine) -> usize {
    e.expiry.iter().count()
}

/// Only the owner expires, never inside a fenced range: a key that expires while its range is
/// fenced gets no log record above the fence offset (it is hidden from reads); the owner
/// expires it once unfenced; a node that no longer owns the range leaves it (and its index
/// entry) to the owner.
#[tokio::test]
async fn expiry_never_logs_inside_a_fence_and_only_on_the_owner() {
    let d = dir("expiry-fenced");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    // Far enough ahead that the fence comes first even on a loaded machine (a fence logs the
    // deletes of keys already expired, below F, which this test is not about).
    let at = e.now_ms() + 1000;
    e.run(set_expiring("t", at)).await.unwrap();
    let Outcome::Fenced { offset: f } = e
        .run(Op::Fence {
            migration_uid: "m".into(),
            attempt: 1,
            ranges: RangeSet::full(),
        })
        .await
        .unwrap()
    else {
        panic!("not fenced")
    };
    assert!(e.now_ms() < at, "the machine took over a second to fence");
    while e.now_ms() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    maintenance::sweep_expired(&e, &mut None).await.unwrap();
    assert_eq!(e.head(), f, "an expiry was logged above the fence offset");
    assert!(e.get(b"t").unwrap().is_none(), "an expired key is hidden");
    // Unfenced: the owner expires it.
    e.run(Op::Unfence {
        migration_uid: "m".into(),
        attempt: 1,
    })
    .await
    .unwrap();
    maintenance::sweep_expired(&e, &mut None).await.unwrap();
    assert_eq!(e.head(), f + 1, "the owner logs the expiry");
    assert_eq!(index_entries(&e), 0);

    // Not the owner any more: no expiry write, and the index keeps the key for later.
    let at = e.now_ms() + 30;
    e.run(set_expiring("w", at)).await.unwrap();
    e.run(install(owned_by("b", 2))).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    let head = e.head();
    maintenance::sweep_expired(&e, &mut None).await.unwrap();
    assert_eq!(
        e.head(),
        head,
        "a node that does not own the key expired it"
    );
    assert_eq!(index_entries(&e), 1);
    e.run(install(owned_by("a", 3))).await.unwrap();
    maintenance::sweep_expired(&e, &mut None).await.unwrap();
    assert_eq!(e.head(), head + 1);
    assert_eq!(index_entries(&e), 0);
    let _ = std::fs::remove_dir_all(&d);
}

/// A key copied to a target whose clock is behind the source's: once the source's clock has
/// passed its absolute expiry and the source is fenced, the target that takes the range over
/// (catching up to the fence offset) does not serve it again.
#[tokio::test]
async fn a_key_expired_at_the_source_stays_expired_on_a_target_whose_clock_is_behind() {
    let ds = dir("skew-src");
    let dt = dir("skew-dst");
    let (src, _) = open(&ds, config(), no_placement).unwrap();
    let target_config = EngineConfig {
        member: "b".into(),
        ..config()
    };
    let (dst, _) = open(&dt, target_config, no_placement).unwrap();
    dst.clock_skew_ms
        .store(-60_000, std::sync::atomic::Ordering::Relaxed);
    src.run(install(owned_by("a", 1))).await.unwrap();
    dst.run(install(owned_by("a", 1))).await.unwrap();
    src.run(set_expiring("t", src.now_ms() + 50)).await.unwrap();
    src.run(set("k", "v")).await.unwrap();
    // Copy: the snapshot's entries, expiry included, land on the target.
    let Outcome::Snapshot(s) = src.run(Op::Snapshot).await.unwrap() else {
        panic!("no snapshot")
    };
    let (entries, _, done) = src
        .read_chunk(&s.snapshot, &[HashRange::FULL], None, 1000, 1 << 20)
        .unwrap();
    assert!(done);
    let ops = entries
        .into_iter()
        .map(|(skey, raw)| {
            let v = keys::Stored::decode(&raw).unwrap();
            LogOp::Put {
                skey,
                value: v.value,
                expires_at: v.expires_at,
                typed: v.typed,
            }
        })
        .collect();
    let guard = RangeSet::full();
    dst.run(Op::Apply {
        ops,
        meta: vec![],
        guard: guard.clone(),
    })
    .await
    .unwrap();
    // The source's clock passes the expiry (its reads hide the key), then the cutover fences.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(src.get(b"t").unwrap().is_none());
    let Outcome::Fenced { offset: f } = src
        .run(Op::Fence {
            migration_uid: "m".into(),
            attempt: 1,
            ranges: guard.clone(),
        })
        .await
        .unwrap()
    else {
        panic!("not fenced")
    };
    // Catch-up to the fence offset, then the target owns the range.
    let tail = src.tail(&src.incarnation, s.offset, &guard, 1000).unwrap();
    assert_eq!(tail.watermark, f);
    let ops = tail.records.into_iter().map(|(_, r)| r.op).collect();
    dst.run(Op::Apply {
        ops,
        meta: vec![],
        guard,
    })
    .await
    .unwrap();
    dst.run(install(owned_by("b", 2))).await.unwrap();
    assert!(
        dst.get(b"t").unwrap().is_none(),
        "the new owner serves a key the old owner had expired"
    );
    assert_eq!(dst.get(b"k").unwrap().unwrap().value, b"v");
    let _ = std::fs::remove_dir_all(&ds);
    let _ = std::fs::remove_dir_all(&dt);
}

/// A forwarded write is checked against its coordinator's deadline when the writer evaluates
/// it: one whose deadline passed while it queued is refused and leaves nothing in the log.
#[tokio::test]
async fn a_forwarded_write_evaluated_after_its_deadline_is_not_applied() {
    let d = dir("deadline");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owns_everything())).await.unwrap();
    let Op::Data(cmd) = set("k", "late") else {
        unreachable!()
    };
    let head = e.head();
    let late = e
        .run(Op::DataBefore {
            cmd: cmd.clone(),
            deadline_ms: e.now_ms() - 1,
        })
        .await
        .unwrap();
    assert!(matches!(late, Outcome::DeadlinePassed { .. }));
    assert_eq!(e.head(), head);
    assert!(e.get(b"k").unwrap().is_none());
    let in_time = e
        .run(Op::DataBefore {
            cmd,
            deadline_ms: e.now_ms() + 10_000,
        })
        .await
        .unwrap();
    assert!(matches!(in_time, Outcome::Data(DataReply::Ok)));
    assert_eq!(e.head(), head + 1);
    let _ = std::fs::remove_dir_all(&d);
}

/// The sweep resumes where it stopped: expired keys this node keeps for another owner (more
/// than one tick examines) do not starve the keys it owns that expire after them.
#[tokio::test]
async fn the_sweep_resumes_past_keys_kept_for_another_owner() {
    let d = dir("expiry-cursor");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    let half = 1u64 << 63;
    // (Far enough ahead that every key below is written before it expires.)
    let at = e.now_ms() + 3000;
    let mut kept = 0;
    let mut rxs = Vec::new();
    for i in 0.. {
        let key = format!("other:{i}");
        if keys::key_hash(key.as_bytes()) >= half {
            rxs.push(e.submit(set_expiring(&key, at)));
            kept += 1;
            if kept > 2 * maintenance::SWEEP_PER_TICK {
                break;
            }
        }
    }
    for rx in rxs {
        rx.await.unwrap();
    }
    let mine = (0..)
        .map(|i| format!("mine:{i}"))
        .find(|k| keys::key_hash(k.as_bytes()) < half)
        .unwrap();
    e.run(set_expiring(&mine, at + 1)).await.unwrap();
    // "a" keeps the lower half only.
    e.run(install(Arc::new(Installed {
        cluster_uid: "c".into(),
        epoch: 2,
        owners: OwnerTable::new(vec![
            (
                HashRange {
                    start: 0,
                    end: half - 1,
                },
                Arc::from("a"),
            ),
            (
                HashRange {
                    start: half,
                    end: u64::MAX,
                },
                Arc::from("b"),
            ),
        ]),
        members: HashMap::new(),
        write_pause_budget_ms: 100,
        placement_json: "2".into(),
    })))
    .await
    .unwrap();
    let wait = (at + 2).saturating_sub(e.now_ms());
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let head = e.head();
    let mut cursor = None;
    for _ in 0..4 {
        maintenance::sweep_expired(&e, &mut cursor).await.unwrap();
    }
    assert_eq!(e.head(), head + 1, "the owned key was not expired");
    assert_eq!(index_entries(&e), kept);
    let _ = std::fs::remove_dir_all(&d);
}

/// A copied collection's metadata is indexed for active expiry by its expiry, not by its raw
/// expiry word (whose top bit marks it typed): a hash without expiry gets no index entry, one
/// with an expiry gets the entry the sweeper looks for.
#[tokio::test]
async fn ingested_collections_are_indexed_by_their_expiry() {
    use super::collection::{CollMeta, CollType};
    let d = dir("ingest-typed");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("b", 1))).await.unwrap();
    let at = keys::now_ms() + 60_000;
    let mut entries: Vec<KvPair> = [("h1", None), ("h2", Some(at))]
        .into_iter()
        .map(|(k, exp)| {
            let m = CollMeta {
                ty: CollType::Hash,
                version: 7,
                count: 1,
                expires_at: exp,
            };
            (keys::storage_key(k.as_bytes()), m.to_stored().encode())
        })
        .collect();
    entries.sort();
    let mut chunks = vec![entries.clone()].into_iter();
    let unit = ingest::ingest(&e, || chunks.next(), u64::MAX, &ingest::UNGUARDED).unwrap();
    let mut want = at.to_be_bytes().to_vec();
    want.extend_from_slice(&keys::storage_key(b"h2"));
    assert_eq!(unit.index, vec![want]);
    let _ = std::fs::remove_dir_all(&d);
}
