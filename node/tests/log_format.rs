//! `--log-format json`: every line the node writes is one JSON object in the operator's shape,
//! and the events an operator investigates carry their cluster, migration, epoch and ranges
//! (placement install, fence, unfence, a pull).

mod common;

use std::time::{Duration, Instant};

use common::moves::*;
use common::*;
use ringshift_node_api::*;
use serde_json::Value;

/// The node's output as JSON objects; panics on a line that is not one, or lacks the
/// operator's fields (`timestamp`, `level`, `fields.message`). The harness sends stdout and
/// stderr into the same log.
fn json_lines(node: &NodeProc) -> Vec<Value> {
    let log = node.log();
    // A line still being written (no newline yet) is checked on the next read.
    log.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nwhole log:\n{log}"));
            assert!(v["timestamp"].is_string(), "no timestamp: {line}");
            assert!(v["level"].is_string(), "no level: {line}");
            assert!(v["fields"]["message"].is_string(), "no message: {line}");
            v
        })
        .collect()
}

/// The first event whose message is `message`, waiting up to 10 s for it to be written.
fn event(node: &NodeProc, message: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = json_lines(node)
            .into_iter()
            .find(|v| v["fields"]["message"] == message);
        match found {
            Some(v) => return v,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => panic!("no {message:?} event; log:\n{}", node.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_carry_level_time_message_and_the_events_context() {
    let node = NodeProc::start_with("logjson", "a", "127.0.20.1", &["--log-format", "json"]);
    let serving = event(&node, "serving");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["target"], "ringshift_node");
    assert_eq!(serving["fields"]["data"], node.data_addr());

    let p = placement(&["a"]);
    install(&p, &[&node]).await;
    let installed = event(&node, "placement installed");
    assert_eq!(installed["fields"]["epoch"], p.epoch());
    assert_eq!(installed["fields"]["cluster"], UID);

    let admin = node.admin();
    let fence = FenceRequest {
        caller: caller(p.epoch(), "m1", 2),
        ranges: vec![HashRange { start: 0, end: 99 }],
    };
    admin.fence(&fence).await.unwrap();
    let fenced = event(&node, "fenced");
    assert_eq!(fenced["fields"]["cluster"], UID);
    assert_eq!(fenced["fields"]["migration"], "m1");
    assert_eq!(fenced["fields"]["attempt"], 2);
    assert_eq!(fenced["fields"]["epoch"], p.epoch());
    assert_eq!(fenced["fields"]["ranges"], "0-99");

    admin
        .unfence(&UnfenceRequest {
            caller: caller(p.epoch(), "m1", 2),
        })
        .await
        .unwrap();
    let unfenced = event(&node, "unfenced");
    assert_eq!(unfenced["fields"]["migration"], "m1");
    assert_eq!(unfenced["fields"]["epoch"], p.epoch());
    // Every line so far (start-up, install, fence, unfence) passed json_lines' checks.
    assert!(json_lines(&node).len() >= 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pulls_events_carry_its_migration_and_epoch() {
    let json = ["--log-format", "json"];
    let a = NodeProc::start_with("logjson-pull", "a", "127.0.20.2", &json);
    let b = NodeProc::start_with("logjson-pull", "b", "127.0.20.3", &json);
    let p1 = placement(&["a"]);
    install(&p1, &[&a, &b]).await;
    let (p2, ranges) = split_to_b(&p1);
    install(&p2, &[&a, &b]).await;
    start_pull(&b, &a, &caller(p2.epoch(), "mig-7", 3), &ranges).await;
    wait_pull(&b, "mig-7", |s| s.phase == PullPhase::CatchingUp).await;

    let started = event(&b, "pull started");
    assert_eq!(started["fields"]["migration"], "mig-7");
    assert_eq!(started["fields"]["attempt"], 3);
    assert_eq!(started["fields"]["epoch"], p2.epoch());
    assert_eq!(started["fields"]["source"], "a");
    let logged: Vec<&str> = started["fields"]["ranges"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(logged.len(), ranges.len());
    assert_eq!(logged[0], format!("{}-{}", ranges[0].start, ranges[0].end));
    // A later event of the pull's task carries the pull's span.
    let verified = event(&b, "copy verified; catching up");
    assert_eq!(verified["span"]["name"], "pull");
    assert_eq!(verified["span"]["cluster"], UID);
    assert_eq!(verified["span"]["migration"], "mig-7");
    assert_eq!(verified["span"]["epoch"], p2.epoch());
}
