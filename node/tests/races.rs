//! Races between moves on one node (issue 13): drops against pulls, failed applies during
//! catch-up, cancelled copies, re-copies, orphan fences and pulls across other commits. Node
//! failpoints (`--failpoints`, see node/README.md) make each interleaving happen on purpose.

mod common;

use std::time::{Duration, Instant};

use common::moves::*;
use common::*;
use ringshift_node_api::client::ClientError;
use ringshift_node_api::*;

fn reason(r: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorReason> {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.reason(),
    }
}

/// Waits until the node's log shows `n` hits of a failpoint.
async fn wait_hits(node: &NodeProc, name: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let needle = format!("failpoint=\"{name}\"");
    while node
        .log()
        .lines()
        .filter(|l| l.contains("failpoint hit") && l.contains(&needle))
        .count()
        < n
    {
        assert!(
            Instant::now() < deadline,
            "failpoint {name} not hit {n} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn set_all(node: &NodeProc, prefix: &str, n: usize, value: &str) {
    let mut c = node.redis();
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:{i}"))
            .arg(value)
            .query(&mut c)
            .unwrap();
    }
}

/// Finding 1: M1 moved R from a to c and a is dropping R (slowly) when M2 starts pulling R back
/// into a. The drop and the pull exclude each other, so the pulled copy survives; and once a
/// owns R again, no retried drop passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_drop_in_progress_never_wipes_a_pull_of_the_same_range() {
    let a = NodeProc::start_with(
        "race-drop",
        "a",
        "127.0.3.1",
        &["--failpoints", "slow-drop-chunk=1500ms"],
    );
    let c = NodeProc::start("race-drop", "c", "127.0.3.2");
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &c]).await;
    set_all(&a, "key", 400, "old");
    // M1 committed: c owns R (c holds newer values of R's keys; a's copy is stale).
    let p2 = p1.set_target(evolve(&p1, &["a", "c"])).unwrap();
    let r: Vec<HashRange> = p2.pending_transfers().unwrap()[0]
        .ranges
        .iter()
        .copied()
        .collect();
    let p3 = commit_all(&p2);
    install(&p3, &[&a, &c]).await;
    set_all(&c, "key", 400, "new");
    let on_c = checksum(&c, &r).await;
    assert!(on_c.1 > 0);

    // a drops R (each clear chunk and the final clear wait 1.5 s) ...
    let drop_req = DropRequest {
        caller: caller(p3.epoch(), "m1", 1),
        ranges: r.clone(),
        ownership_ended_epoch: p3.epoch(),
    };
    let dropping = {
        let (admin, req) = (a.admin(), drop_req.clone());
        tokio::spawn(async move { admin.drop_ranges(&req).await })
    };
    wait_hits(&a, "slow-drop-chunk", 1).await;
    // ... while M2 pulls R back into a: refused until the drop is over, then it copies.
    let start = StartPull {
        caller: caller(p3.epoch(), "m2", 1),
        source: c.endpoint(),
        ranges: r.clone(),
        bytes_per_sec: None,
        verify: true,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match a.admin().start_pull(&start).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.reason(), Some(ErrorReason::Conflict), "{e}");
                assert!(Instant::now() < deadline, "pull never accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    wait_pull(&a, "m2", |s| s.phase == PullPhase::CatchingUp).await;
    dropping.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        checksum(&a, &r).await,
        on_c,
        "the drop wiped the pulled copy"
    );

    // While a's pull runs, a drop of R is refused.
    assert_eq!(
        reason(a.admin().drop_ranges(&drop_req).await),
        Some(ErrorReason::Conflict)
    );
    // M2 commits; the push to a is late: a drop carrying the committed epoch waits for it ...
    let p4 = p3.set_target(evolve(&p3, &["a"])).unwrap();
    let p5 = commit_all(&p4);
    install(&p5, &[&c]).await;
    let retried = DropRequest {
        caller: caller(p5.epoch(), "m1", 1),
        ranges: r.clone(),
        ownership_ended_epoch: p5.epoch(),
    };
    assert_eq!(
        reason(a.admin().drop_ranges(&retried).await),
        Some(ErrorReason::StaleEpoch)
    );
    // ... and once a has it, a owns R: refused.
    install(&p5, &[&a]).await;
    assert_eq!(
        reason(a.admin().drop_ranges(&retried).await),
        Some(ErrorReason::Owned)
    );
    assert_eq!(checksum(&a, &r).await, on_c);
}

/// Finding 1: a drop must carry the operator's committed epoch; 0 passes every epoch check.
#[tokio::test(flavor = "multi_thread")]
async fn a_drop_without_a_committed_epoch_is_refused() {
    let a = NodeProc::start("race-drop0", "a", "127.0.3.3");
    let p1 = placement(&["a"]);
    install(&p1, &[&a]).await;
    set_all(&a, "key", 50, "v");
    let p2 = commit_all(&p1.set_target(evolve(&p1, &["b"])).unwrap());
    install(&p2, &[&a]).await;
    let all = vec![HashRange {
        start: 0,
        end: u64::MAX,
    }];
    let req = DropRequest {
        caller: caller(p2.epoch(), "m1", 1),
        ranges: all.clone(),
        ownership_ended_epoch: 0,
    };
    assert_eq!(
        reason(a.admin().drop_ranges(&req).await),
        Some(ErrorReason::BadRequest)
    );
    assert_eq!(checksum(&a, &all).await.1, 50);
}

/// Finding 3: one pulled batch fails in the writer during catch-up (failpoint `fail-apply`);
/// the pull retries it from the same offset, so every record arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_apply_during_catch_up_loses_no_record() {
    let a = NodeProc::start("race-apply", "a", "127.0.3.4");
    let b = NodeProc::start_with(
        "race-apply",
        "b",
        "127.0.3.5",
        &["--failpoints", "fail-apply=1"],
    );
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    set_all(&a, "key", 100, "before");
    let (p2, r) = split_to_b(&p1);
    install(&p2, &[&a, &b]).await;
    let mig = caller(p2.epoch(), "m1", 1);
    start_pull(&b, &a, &mig, &r).await;
    wait_pull(&b, "m1", |s| s.phase == PullPhase::CatchingUp).await;
    // One pipeline: its records reach the tail together, as one pulled batch.
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg("after")
            .ignore();
    }
    let _: () = pipe.query(&mut a.redis()).unwrap();
    wait_hits(&b, "fail-apply", 1).await;
    let f = fence(&a, &mig, &r).await;
    wait_pull(&b, "m1", |s| applied_up_to(s, &f)).await;
    assert_eq!(checksum(&b, &r).await, checksum(&a, &r).await);
}

/// Starts a pull of the ranges a pending a -> b transfer moves and waits until its (paused)
/// ingestion has written its tables. Returns the ranges and the placement.
async fn pull_until_ingestion_paused(
    a: &NodeProc,
    b: &NodeProc,
) -> (Vec<HashRange>, ringshift_ring::Placement) {
    let p1 = placement(&["a"]);
    install(&p1, &[a, b]).await;
    set_all(a, "key", 300, "old");
    let (p2, r) = split_to_b(&p1);
    install(&p2, &[a, b]).await;
    start_pull(b, a, &caller(p2.epoch(), "m1", 1), &r).await;
    wait_hits(b, "pause-ingest-finish", 1).await;
    (r, p2)
}

/// b now owns the moved ranges and takes new writes of every key; they must stay.
async fn newer_writes_stay(
    a: &NodeProc,
    b: &NodeProc,
    r: &[HashRange],
    p2: &ringshift_ring::Placement,
) {
    let p3 = commit_all(p2);
    install(&p3, &[a, b]).await;
    set_all(b, "key", 300, "new");
    let fresh = checksum(b, r).await;
    assert!(fresh.1 > 0);
    // Past the ingestion's pause (3 s): a late registration of the copy would show now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        checksum(b, r).await,
        fresh,
        "the old copy landed over newer writes"
    );
    let mut cb = b.redis();
    for i in 0..300 {
        let v: String = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut cb)
            .unwrap();
        assert_eq!(v, "new", "key:{i}");
    }
}

/// Finding 4: a pull is cancelled while its copy's ingestion is under way (paused before it
/// registers its tables). Cancel waits for the puller, and the copy never lands afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_copy_never_lands_afterwards() {
    let a = NodeProc::start("race-cancel", "a", "127.0.3.6");
    let b = NodeProc::start_with(
        "race-cancel",
        "b",
        "127.0.3.7",
        &["--failpoints", "pause-ingest-finish=3s"],
    );
    let (r, p2) = pull_until_ingestion_paused(&a, &b).await;
    let s = b
        .admin()
        .cancel_pull(&caller(p2.epoch(), "m1", 1))
        .await
        .unwrap();
    assert_eq!(s.phase, PullPhase::Cancelled);
    newer_writes_stay(&a, &b, &r, &p2).await;
}

/// Finding 4: the move commits (the target owns the ranges) while the copy's ingestion is
/// under way: the ingestion must not register its tables over the owner's writes.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_never_lands_in_ranges_the_node_owns() {
    let a = NodeProc::start("race-owned", "a", "127.0.3.8");
    let b = NodeProc::start_with(
        "race-owned",
        "b",
        "127.0.3.9",
        &["--failpoints", "pause-ingest-finish=3s"],
    );
    let (r, p2) = pull_until_ingestion_paused(&a, &b).await;
    newer_writes_stay(&a, &b, &r, &p2).await;
}

/// Finding 5: a re-copy (here: the source came back with a new incarnation) starts over from
/// phase Starting; the offsets and verification of the abandoned copy must not be reported
/// with it (a cutover would take the old applied offset for the new copy's).
#[tokio::test(flavor = "multi_thread")]
async fn a_recopy_forgets_the_old_copy_s_offsets() {
    let mut a = NodeProc::start("race-recopy", "a", "127.0.3.10");
    let b = NodeProc::start_with(
        "race-recopy",
        "b",
        "127.0.3.11",
        &["--failpoints", "slow-pull-clear=3s"],
    );
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    set_all(&a, "key", 100, "v");
    let (p2, r) = split_to_b(&p1);
    install(&p2, &[&a, &b]).await;
    start_pull(&b, &a, &caller(p2.epoch(), "m1", 1), &r).await;
    let s = wait_pull(&b, "m1", |s| s.phase == PullPhase::CatchingUp).await;
    assert!(s.applied_offset.is_some() && s.verified == Some(true));
    // The source loses its data directory: its log answers "re-copy".
    a.kill9();
    std::fs::remove_dir_all(a.dir.join("data")).unwrap();
    a.spawn();
    install(&p2, &[&a]).await;
    wait_hits(&b, "slow-pull-clear", 2).await;
    let s = b.admin().pull("m1").await.unwrap();
    assert_eq!(s.phase, PullPhase::Starting, "{s:?}");
    assert_eq!(
        (&s.applied_offset, &s.snapshot_offset, s.verified),
        (&None, &None, None),
        "{s:?}"
    );
}

/// Orphan fence: the new leader aborted attempt 1 (unfence: nothing to lift yet), then the old
/// leader's delayed fence of attempt 1 arrives. It must be refused, also after a restart, or the
/// range could stay fenced forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_fence_of_a_released_attempt_is_refused() {
    let mut a = NodeProc::start("race-orphan", "a", "127.0.3.12");
    let p1 = placement(&["a"]);
    install(&p1, &[&a]).await;
    let all = vec![HashRange {
        start: 0,
        end: u64::MAX,
    }];
    let mig = caller(p1.epoch(), "m1", 1);
    a.admin()
        .unfence(&UnfenceRequest {
            caller: mig.clone(),
        })
        .await
        .unwrap();
    let fence = FenceRequest {
        caller: mig.clone(),
        ranges: all.clone(),
    };
    assert_eq!(
        reason(a.admin().fence(&fence).await),
        Some(ErrorReason::StaleAttempt)
    );
    a.restart();
    assert_eq!(
        reason(a.admin().fence(&fence).await),
        Some(ErrorReason::StaleAttempt)
    );
    assert!(a.admin().status().await.unwrap().fences.is_empty());
    // A later attempt fences as usual.
    a.admin()
        .fence(&FenceRequest {
            caller: caller(p1.epoch(), "m1", 2),
            ranges: all,
        })
        .await
        .unwrap();
}

/// Stuck pull: another move commits (a newer epoch on both nodes) while this pull has not
/// opened its snapshot yet. The pull must still complete: it speaks to the source at the
/// target's current epoch, not at the epoch it was started with.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_completes_across_another_commit() {
    let a = NodeProc::start("race-epoch", "a", "127.0.3.13");
    let b = NodeProc::start_with(
        "race-epoch",
        "b",
        "127.0.3.14",
        &["--failpoints", "slow-pull-clear=1500ms"],
    );
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    set_all(&a, "key", 100, "v");
    // Two moves: a -> b (this pull) and a -> c (commits elsewhere meanwhile).
    let p2 = p1.set_target(evolve(&p1, &["a", "b", "c"])).unwrap();
    install(&p2, &[&a, &b]).await;
    let transfers = p2.pending_transfers().unwrap();
    let to_b = transfers.iter().find(|t| t.target == "b").unwrap();
    let r: Vec<HashRange> = to_b.ranges.iter().copied().collect();
    start_pull(&b, &a, &caller(p2.epoch(), "m1", 1), &r).await;
    wait_hits(&b, "slow-pull-clear", 1).await;
    let p3 = p2.commit("a", "c").unwrap();
    install(&p3, &[&a, &b]).await;
    let s = wait_pull(&b, "m1", |s| s.phase == PullPhase::CatchingUp).await;
    assert_eq!(s.verified, Some(true));
    assert_eq!(checksum(&b, &r).await, checksum(&a, &r).await);
}

/// Found by the protocol model (operator/model): a pull that has to re-copy after its move
/// committed, before the target installed the commit, must not clear the target, which is the
/// owner now. The source refuses a snapshot of ranges it no longer owns (or has fenced), and a
/// pull opens its snapshot before it clears anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_recopy_after_the_commit_never_clears_the_new_owner() {
    let mut a = NodeProc::start("race-recopy-commit", "a", "127.0.3.30");
    let b = NodeProc::start("race-recopy-commit", "b", "127.0.3.31");
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    set_all(&a, "key", 200, "v");
    let (p2, r) = split_to_b(&p1);
    install(&p2, &[&a, &b]).await;
    let mig = caller(p2.epoch(), "m1", 1);
    start_pull(&b, &a, &mig, &r).await;
    wait_pull(&b, "m1", |s| s.phase == PullPhase::CatchingUp).await;
    let f = fence(&a, &mig, &r).await;
    wait_pull(&b, "m1", |s| applied_up_to(s, &f)).await;
    let moved = checksum(&a, &r).await;
    assert!(moved.1 > 0, "the moved ranges hold keys");
    // Committed: the source installs the new placement; the push to the target is delayed.
    let p3 = commit_all(&p2);
    install(&p3, &[&a]).await;
    // The source loses its data directory and comes back with the committed placement: its
    // log answers "re-copy" to the target's tail.
    a.kill9();
    std::fs::remove_dir_all(a.dir.join("data")).unwrap();
    a.spawn();
    install(&p3, &[&a]).await;
    // Let the pull meet the re-copy answer and try to start over.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = b.admin().pull("m1").await.unwrap();
        if s.phase != PullPhase::CatchingUp || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The delayed push arrives: the target owns the ranges with every key the source had.
    install(&p3, &[&b]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = b.admin().pull("m1").await.unwrap();
        if matches!(s.phase, PullPhase::Completed | PullPhase::Failed) {
            break s;
        }
        assert!(Instant::now() < deadline, "pull did not end: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        checksum(&b, &r).await,
        moved,
        "the new owner lost keys to a re-copy after the commit (pull: {:?}, {:?})",
        s.phase,
        s.error
    );
    assert_eq!(s.phase, PullPhase::Completed, "{s:?}");
}
