//! Admin API: authentication, strict bodies, placement epochs, fences (durable, idempotent,
//! holding reads and writes), drops.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringshift_node_api::*;

async fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_requires_token_and_strict_bodies() {
    let node = NodeProc::start("admin", "a", "127.0.1.4");
    let base = format!("http://{}", node.admin_addr());
    for (m, p) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/placement"),
        ("PUT", "/v1/placement"),
        ("POST", "/v1/fence"),
        ("POST", "/v1/unfence"),
        ("POST", "/v1/drop"),
        ("POST", "/v1/checksum"),
        ("GET", "/v1/pulls"),
        ("POST", "/v1/pulls"),
        ("GET", "/v1/pulls/x"),
        ("DELETE", "/v1/pulls/x"),
        ("POST", "/v1/snapshots"),
        ("GET", "/v1/snapshots/x/chunk"),
        ("GET", "/v1/log?incarnation=x&after=0&ranges="),
    ] {
        let (status, _) = http(m, &format!("{base}{p}"), None, Some("{}")).await;
        assert_eq!(status, 401, "{m} {p}");
        let (status, _) = http(m, &format!("{base}{p}"), Some("wrong"), Some("{}")).await;
        assert_eq!(status, 401, "{m} {p} with a wrong token");
    }
    for p in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http("GET", &format!("{base}{p}"), None, None).await.0,
            200,
            "{p}"
        );
    }

    let (status, body) = http(
        "PUT",
        &format!("{base}/v1/placement"),
        Some(TOKEN),
        Some("{not json"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let mut good = serde_json::to_value(install_body(&placement(&["a"]), &[&node])).unwrap();
    good["surprise"] = serde_json::json!(1);
    let (status, body) = http(
        "PUT",
        &format!("{base}/v1/placement"),
        Some(TOKEN),
        Some(&good.to_string()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("surprise"), "{body}");
    // Nothing was applied by the refused calls.
    assert_eq!(node.admin().status().await.unwrap().epoch, 0);
    assert_eq!(
        redis_cli(&node.data_addr(), &["GET", "k"]),
        "CLUSTERDOWN no placement installed on this node"
    );

    // Epochs: install 2, refuse 1 and another cluster, re-PUT of 2 is fine.
    let p1 = placement(&["a"]);
    let p2 = p1.set_target(spec(&["a"])).unwrap(); // no change: settles at a higher epoch
    let admin = node.admin();
    let epoch2 = if p2.epoch() > p1.epoch() {
        p2.clone()
    } else {
        p1.set_target(spec(&["a", "b"])).unwrap()
    };
    admin
        .put_placement(&install_body(&epoch2, &[&node]))
        .await
        .unwrap();
    admin
        .put_placement(&install_body(&epoch2, &[&node]))
        .await
        .unwrap();
    let err = admin
        .put_placement(&install_body(&p1, &[&node]))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::StaleEpoch));
    let other = ringshift_node_api::Placement::new("other-cluster", spec(&["a"])).unwrap();
    let err = admin
        .put_placement(&install_body(&other, &[&node]))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::OtherCluster));
    assert_eq!(admin.placement().await.unwrap().placement, epoch2);
}

#[tokio::test(flavor = "multi_thread")]
async fn fences_hold_writes_survive_kill9_and_lift_only_for_their_attempt() {
    let mut node = NodeProc::start("fence", "a", "127.0.1.5");
    let p = placement(&["a"]);
    install(&p, &[&node]).await;
    let epoch = p.epoch();
    let mut c = node.redis();
    for i in 0..20 {
        let _: () = redis::Commands::set(&mut c, format!("k{i}"), i).unwrap();
    }
    let admin = node.admin();
    let full = vec![HashRange::FULL];
    let req = FenceRequest {
        caller: caller(epoch, "m1", 1),
        ranges: full.clone(),
    };
    let f = admin.fence(&req).await.unwrap().fence_offset;
    assert_eq!(f.sequence, 20);
    // Same attempt: same offset.
    assert_eq!(admin.fence(&req).await.unwrap().fence_offset, f);

    // Kill right after the fence: it is still there, with the same offset.
    node.kill9();
    node.spawn();
    let admin = node.admin();
    let st = admin.status().await.unwrap();
    assert_eq!(st.fences.len(), 1);
    assert_eq!(st.fences[0].fence_offset, f);
    assert_eq!(admin.fence(&req).await.unwrap().fence_offset, f);

    // Writes and reads of the range are held for the write-pause budget, then refused as
    // not applied (TRYAGAIN); the log did not move past F.
    let started = Instant::now();
    let out = redis_cli(&node.data_addr(), &["SET", "k1", "new"]);
    assert!(out.starts_with("TRYAGAIN"), "{out}");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let out = redis_cli(&node.data_addr(), &["GET", "k1"]);
    assert!(out.starts_with("TRYAGAIN"), "{out}");
    assert_eq!(admin.status().await.unwrap().log_head.sequence, 20);

    // Older attempt cannot fence or unfence; another attempt cannot unfence.
    let stale = FenceRequest {
        caller: caller(epoch, "m1", 0),
        ranges: full.clone(),
    };
    assert_eq!(
        admin.fence(&stale).await.unwrap_err().reason(),
        Some(ErrorReason::StaleAttempt)
    );
    let wrong = UnfenceRequest {
        caller: caller(epoch, "m1", 0),
    };
    assert!(admin.unfence(&wrong).await.is_err());
    // A write waiting on the fence goes through once the right attempt unfences.
    let addr = node.data_addr();
    let waiter = std::thread::spawn(move || redis_cli(&addr, &["SET", "k1", "after"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin
        .unfence(&UnfenceRequest {
            caller: caller(epoch, "m1", 1),
        })
        .await
        .unwrap();
    assert_eq!(waiter.join().unwrap(), "OK");
    assert_eq!(redis_cli(&node.data_addr(), &["GET", "k1"]), "after");

    // Drops are refused for owned ranges.
    let err = admin
        .drop_ranges(&DropRequest {
            caller: caller(epoch, "m1", 1),
            ranges: full,
            ownership_ended_epoch: epoch,
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::Owned));
    // Calls from an older epoch are refused.
    let err = admin
        .fence(&FenceRequest {
            caller: caller(epoch - 1, "m2", 1),
            ranges: vec![HashRange::FULL],
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::StaleEpoch));
}

#[tokio::test(flavor = "multi_thread")]
async fn change_log_retention_is_bounded_and_old_offsets_must_recopy() {
    let node = NodeProc::start_with(
        "retention",
        "a",
        "127.0.1.14",
        &[
            "--log-retention-bytes",
            "2000",
            "--log-pin-cap-bytes",
            "4000",
        ],
    );
    install(&placement(&["a"]), &[&node]).await;
    let mut c = node.redis();
    for i in 0..300 {
        let _: () = redis::Commands::set(&mut c, format!("k{i}"), "some value bytes").unwrap();
    }
    let admin = node.admin();
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = admin.status().await.unwrap();
        if st.log_oldest > 1 || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(st.log_oldest > 1, "nothing trimmed: {st:?}");
    assert!(st.log_oldest <= st.log_head.sequence);
    let path = format!(
        "/v1/log?incarnation={}&after=0&ranges=0-18446744073709551615",
        st.incarnation
    );
    let err = admin.get_raw(&path).await.unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::Recopy));
    assert!(err.to_string().contains("re-copy"), "{err}");
    // A reader at the head is served (and sees a watermark at the head).
    let path = format!(
        "/v1/log?incarnation={}&after={}&ranges=0-18446744073709551615",
        st.incarnation, st.log_head.sequence
    );
    assert!(admin.get_raw(&path).await.is_ok());
    // Another incarnation's offset is refused the same way.
    let err = admin
        .get_raw("/v1/log?incarnation=other&after=0&ranges=0-1")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::Recopy));
}
