//! Three nodes: every node coordinates (forwards to the owner), multi-key commands split across
//! owners, MSET across owners refused, a node learns a newer epoch from a peer's rejection.

mod common;

use common::*;
use redis::Commands;

#[tokio::test(flavor = "multi_thread")]
async fn any_node_serves_any_key_through_its_owner() {
    let a = NodeProc::start("cluster", "a", "127.0.1.6");
    let b = NodeProc::start("cluster", "b", "127.0.1.7");
    let c = NodeProc::start("cluster", "c", "127.0.1.8");
    let p1 = placement(&["a", "b", "c"]);
    install(&p1, &[&a, &b, &c]).await;

    let mut ca = a.redis();
    let mut cb = b.redis();
    let mut cc = c.redis();
    for i in 0..300 {
        let _: () = ca.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..300 {
        let v: i64 = if i % 2 == 0 {
            cb.get(format!("key:{i}")).unwrap()
        } else {
            cc.get(format!("key:{i}")).unwrap()
        };
        assert_eq!(v, i);
    }
    // Each node stores only what it owns; together they hold every key once.
    let sizes: Vec<i64> = [&mut ca, &mut cb, &mut cc]
        .into_iter()
        .map(|conn| redis::cmd("DBSIZE").query(conn).unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<i64>(), 300, "{sizes:?}");
    assert!(sizes.iter().all(|s| *s > 0), "{sizes:?}");
    let scanned: Vec<String> = cb.scan::<String>().unwrap().map(|k| k.unwrap()).collect();
    let mut scanned = scanned;
    scanned.sort();
    scanned.dedup();
    assert_eq!(scanned.len() as i64, sizes[1]);

    // MGET/EXISTS/DEL span owners and come back in order.
    let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
    let mut with_missing = keys.clone();
    with_missing.insert(5, "missing".into());
    let got: Vec<Option<i64>> = cc.mget(&with_missing).unwrap();
    assert_eq!(got[5], None);
    let expected: Vec<Option<i64>> = (0..40).map(Some).collect();
    let mut without: Vec<Option<i64>> = got.clone();
    without.remove(5);
    assert_eq!(without, expected);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&with_missing)
            .query::<i64>(&mut cc)
            .unwrap(),
        40
    );
    assert_eq!(cb.del::<_, i64>(&keys[..10]).unwrap(), 10);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&keys[..10])
            .query::<i64>(&mut ca)
            .unwrap(),
        0
    );

    // MSET across owners is refused; hash tags co-locate keys so MSET works.
    let err = redis_cli(
        &c.data_addr(),
        &[
            "MSET", "key:100", "1", "key:101", "2", "key:102", "3", "key:103", "4",
        ],
    );
    assert!(err.starts_with("CROSSSLOT"), "{err}");
    assert_eq!(
        redis_cli(
            &c.data_addr(),
            &["MSET", "{user1}:a", "1", "{user1}:b", "2"]
        ),
        "OK"
    );
    assert_eq!(redis_cli(&a.data_addr(), &["GET", "{user1}:b"]), "2");

    // INCR through a coordinator is applied once.
    for _ in 0..10 {
        let _: i64 = cc.incr("counter", 1).unwrap();
    }
    assert_eq!(ca.get::<_, i64>("counter").unwrap(), 10);

    // A forwarded command for a key the receiver does not own is rejected, not forwarded again.
    let owner_of_k0 = p1.owner(ringshift_ring::key_hash(b"key:200")).unwrap();
    let not_owner = [&a, &b, &c]
        .into_iter()
        .find(|n| n.name != owner_of_k0)
        .unwrap();
    let out = redis_cli(
        &not_owner.data_addr(),
        &["RSFWD", UID, "1", "x", "GET", "key:200"],
    );
    assert!(
        out.starts_with(&format!("RINGMOVED 1 {owner_of_k0} ")),
        "{out}"
    );

    // While the owner has the key's range fenced, a coordinator holds the command and retries
    // once the fence lifts (the client sees a pause, not an error).
    let owner_name = p1.owner(ringshift_ring::key_hash(b"key:250")).unwrap();
    let (owner, coordinator) = match owner_name.as_str() {
        "a" => (&a, &b),
        "b" => (&b, &c),
        _ => (&c, &a),
    };
    let mig = caller(p1.epoch(), "fence-test", 1);
    owner
        .admin()
        .fence(&ringshift_node_api::FenceRequest {
            caller: mig.clone(),
            ranges: vec![ringshift_ring::HashRange::new(0, u64::MAX).unwrap()],
        })
        .await
        .expect_err("a node cannot fence ranges it does not own");
    let owned = owner.admin().status().await.unwrap().owned_ranges;
    owner
        .admin()
        .fence(&ringshift_node_api::FenceRequest {
            caller: mig.clone(),
            ranges: owned,
        })
        .await
        .unwrap();
    let addr = coordinator.data_addr();
    let waiter = std::thread::spawn(move || redis_cli(&addr, &["SET", "key:250", "during-fence"]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    owner
        .admin()
        .unfence(&ringshift_node_api::UnfenceRequest { caller: mig })
        .await
        .unwrap();
    assert_eq!(waiter.join().unwrap(), "OK");
    assert_eq!(
        redis_cli(&owner.data_addr(), &["GET", "key:250"]),
        "during-fence"
    );

    // c learns a newer placement (epoch 4: a owns nothing) from a peer's rejection.
    let p4 = commit_all(&p1.set_target(evolve(&p1, &["b", "c"])).unwrap());
    assert!(p4.current().unwrap().ranges_of("a").is_empty());
    let newest = install_body(&p4, &[&a, &b, &c]);
    a.admin().put_placement(&newest).await.unwrap();
    b.admin().put_placement(&newest).await.unwrap();
    // A key c forwards to a under epoch 1; a answers RINGMOVED at epoch 4.
    let key = (0..10_000)
        .map(|i| format!("probe:{i}"))
        .find(|k| p1.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap() == "a")
        .expect("a key owned by a at epoch 1");
    assert_eq!(redis_cli(&c.data_addr(), &["SET", &key, "v"]), "OK");
    assert_eq!(c.admin().status().await.unwrap().epoch, p4.epoch());
    let owner = p4.owner(ringshift_ring::key_hash(key.as_bytes())).unwrap();
    let owner_node = if owner == "b" { &b } else { &c };
    assert_eq!(redis_cli(&owner_node.data_addr(), &["GET", &key]), "v");
}

/// Keys of `count` owned by `member` under `p`.
fn keys_owned_by(p: &ringshift_node_api::Placement, member: &str, count: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("split:{i}"))
        .filter(|k| p.owner(ringshift_ring::key_hash(k.as_bytes())).unwrap() == member)
        .take(count)
        .collect()
}

/// A DEL split across owners where one owner fails after another applied its part: the
/// answer is an error that says the DEL was applied in part (how many keys, on whom, and
/// which owner failed), not a plain error a client would take as "nothing happened".
#[tokio::test(flavor = "multi_thread")]
async fn a_del_split_across_owners_says_when_it_was_applied_in_part() {
    let a = NodeProc::start("del-partial", "a", "127.0.1.60");
    let mut b = NodeProc::start("del-partial", "b", "127.0.1.61");
    let p = placement(&["a", "b"]);
    install(&p, &[&a, &b]).await;
    let on_a = keys_owned_by(&p, "a", 3);
    let on_b = keys_owned_by(&p, "b", 2);
    let mut all: Vec<&str> = Vec::new();
    for (x, y) in on_a
        .iter()
        .zip(on_b.iter().chain(std::iter::repeat(&on_b[0])))
    {
        all.push(x);
        all.push(y);
    }
    all.truncate(5);
    for k in &all {
        assert_eq!(redis_cli(&a.data_addr(), &["SET", k, "v"]), "OK");
    }
    b.kill9();
    let mut args = vec!["DEL"];
    args.extend(all.iter().copied());
    let out = redis_cli(&a.data_addr(), &args);
    assert!(out.starts_with("ERR DEL partially applied"), "{out}");
    assert!(out.contains("3 keys deleted on a"), "{out}");
    assert!(out.contains("owner b failed"), "{out}");
    assert!(out.contains("not applied there"), "{out}");
    let mut exists = vec!["EXISTS"];
    exists.extend(on_a.iter().map(String::as_str));
    assert_eq!(redis_cli(&a.data_addr(), &exists), "0");
    // Nothing applied anywhere: the owner's own error, unchanged.
    let out = redis_cli(&a.data_addr(), &["DEL", &on_b[0], &on_b[1]]);
    assert!(out.starts_with("CLUSTERDOWN"), "{out}");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `RSFWD2` carries the coordinator's deadline (absolute unix ms). A forwarded write that
/// arrives after it, or that waits (a fenced range) past it, is refused as not applied and
/// never lands afterwards; the old `RSFWD` form is still served during a rolling upgrade.
#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_write_past_its_deadline_is_refused_and_not_applied() {
    let a = NodeProc::start("fwd-deadline", "a", "127.0.1.62");
    let p = placement(&["a"]);
    install(&p, &[&a]).await;
    let addr = a.data_addr();
    let past = (unix_ms() - 1000).to_string();
    let out = redis_cli(&addr, &["RSFWD2", UID, "1", "x", &past, "SET", "late", "v"]);
    assert!(out.starts_with("DEADLINE"), "{out}");
    assert_eq!(redis_cli(&addr, &["EXISTS", "late"]), "0");

    // Held by a fence past its deadline: refused, and not applied once the fence lifts.
    let mig = caller(p.epoch(), "deadline-fence", 1);
    let owned = a.admin().status().await.unwrap().owned_ranges;
    a.admin()
        .fence(&ringshift_node_api::FenceRequest {
            caller: mig.clone(),
            ranges: owned,
        })
        .await
        .unwrap();
    let soon = (unix_ms() + 300).to_string();
    let held_addr = addr.clone();
    let waiter = std::thread::spawn(move || {
        redis_cli(
            &held_addr,
            &["RSFWD2", UID, "1", "x", &soon, "SET", "held", "v"],
        )
    });
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    a.admin()
        .unfence(&ringshift_node_api::UnfenceRequest { caller: mig })
        .await
        .unwrap();
    let out = waiter.join().unwrap();
    assert!(out.starts_with("DEADLINE"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(redis_cli(&addr, &["EXISTS", "held"]), "0");

    // In time: applied. The old form still works.
    let later = (unix_ms() + 5000).to_string();
    assert_eq!(
        redis_cli(&addr, &["RSFWD2", UID, "1", "x", &later, "SET", "ok", "v"]),
        "OK"
    );
    assert_eq!(
        redis_cli(&addr, &["RSFWD", UID, "1", "x", "SET", "old", "v"]),
        "OK"
    );
    assert_eq!(redis_cli(&addr, &["GET", "ok"]), "v");
}
