//! Per-connection order: a pipelined write must not be applied before an earlier write of the
//! same connection has been answered, even when the earlier one waits on a fence.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use redis::Commands;
use ringshift_node_api::{FenceRequest, HashRange, UnfenceRequest};

#[tokio::test(flavor = "multi_thread")]
async fn a_write_held_by_a_fence_holds_back_the_connection_s_later_writes() {
    let a = NodeProc::start("ordering", "a", "127.0.1.43");
    let p = placement(&["a"]);
    install(&p, &[&a]).await;
    let h = ringshift_ring::key_hash(b"first");
    let fence = FenceRequest {
        caller: caller(p.epoch(), "m1", 1),
        ranges: vec![HashRange { start: h, end: h }],
    };
    a.admin().fence(&fence).await.unwrap();

    // One connection pipelines a write to the fenced range, then one to another range.
    let mut raw = std::net::TcpStream::connect(a.data_addr()).unwrap();
    raw.write_all(b"SET first 1\r\nSET second 2\r\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut other = a.redis();
    let second: Option<String> = other.get("second").unwrap();
    assert_eq!(
        second, None,
        "the later write was applied before the earlier one"
    );

    a.admin()
        .unfence(&UnfenceRequest {
            caller: caller(p.epoch(), "m1", 1),
        })
        .await
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 10 {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"+OK\r\n+OK\r\n");
    let values: Vec<String> = other.mget(&["first", "second"]).unwrap();
    assert_eq!(values, ["1", "2"]);
}
