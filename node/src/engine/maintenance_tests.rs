//! Background upkeep on an idle node: the garbage walk and the log retention do no repeated
//! work once there is nothing to do, and still do it when there is.

use super::list::{End, ListCmd, PopReply};
use super::maintenance::{GcStep, GcWalk, collect_garbage, enforce_retention};
use super::tests::{config, dir, install, no_placement, owned_by};
use super::*;

fn push(key: &str, n: usize) -> Op {
    Op::Data(DataCmd::List(ListCmd::Push {
        key: key.as_bytes().to_vec(),
        values: (0..n).map(|i| format!("v{i}").into_bytes()).collect(),
        end: End::Right,
        existing: false,
    }))
}

fn pop(key: &str, count: u64) -> Op {
    Op::Data(DataCmd::List(ListCmd::Pop {
        keys: vec![key.as_bytes().to_vec()],
        end: End::Left,
        count,
        reply: PopReply::Many,
    }))
}

/// Runs the walk until a pass ends; what it did in total.
async fn full_pass(e: &Engine, walk: &mut GcWalk) -> GcStep {
    let mut total = GcStep::default();
    loop {
        let step = collect_garbage(e, walk).await.unwrap();
        total.groups += step.groups;
        total.removed += step.removed;
        if !walk.in_pass() {
            return total;
        }
    }
}

#[tokio::test]
async fn the_garbage_walk_rests_after_finding_nothing_and_resumes_after_a_delete() {
    let d = dir("gc-rest");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    e.run(push("live", 50)).await.unwrap();
    e.run(push("doomed", 30)).await.unwrap();
    e.run(pop("live", 20)).await.unwrap();
    let mut walk = GcWalk::default();
    let first = full_pass(&e, &mut walk).await;
    assert_eq!(first.removed, 0, "nothing is stale yet");
    assert!(first.groups >= 2, "both lists looked at: {first:?}");
    // Nothing deleted since: the walk rests instead of stepping over every list (and every
    // popped element's tombstone) again on each tick.
    for _ in 0..5 {
        assert_eq!(
            collect_garbage(&e, &mut walk).await.unwrap(),
            GcStep::default()
        );
    }
    e.run(Op::Data(DataCmd::Del {
        keys: vec![b"doomed".to_vec()],
    }))
    .await
    .unwrap();
    let after = full_pass(&e, &mut walk).await;
    assert_eq!(after.removed, 30, "the deleted list's elements: {after:?}");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn log_retention_resumes_after_what_it_removed() {
    let d = dir("retention-cursor");
    let mut cfg = config();
    cfg.retention_bytes = 0;
    cfg.retention_age_ms = 0;
    let (e, _) = open(&d, cfg, no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    for i in 0..5 {
        e.run(push(&format!("l{i}"), 3)).await.unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut cursor = None;
    enforce_retention(&e, &mut cursor).unwrap();
    let removed_to = cursor.clone().expect("records over budget were removed");
    assert!(
        e.log.first_key_value().is_none(),
        "every record was over budget"
    );
    // New records are removed in turn, from after the last removed one.
    e.run(push("later", 3)).await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    enforce_retention(&e, &mut cursor).unwrap();
    assert!(e.log.first_key_value().is_none());
    assert!(cursor.expect("moved") > removed_to);
    let _ = std::fs::remove_dir_all(&d);
}
