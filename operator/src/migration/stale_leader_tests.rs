//! A stale leader's delayed ShardPlacement write fails its precondition (rule 4).
//!
//! A small in-process stand-in for the API server keeps one ShardPlacement with a
//! resourceVersion and applies optimistic concurrency to status writes the way the real one
//! does (a write carrying an older resourceVersion gets 409 Conflict). The old leader reads,
//! its write is held in flight, the new leader commits, and then the old write arrives.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::api::{Api, ObjectMeta};
use kube::client::Body;
use tokio::sync::{Notify, oneshot};

use super::placement_io::{
    Writer, Written, claim, set_record, update, update_known, update_returning,
};
use super::{Error, convert::cutover_of, record_acks};
use crate::crd::{CutoverState, ShardPlacement, ShardPlacementSpec};
use ringshift_node_api::PlacementAccepted;

const NAME: &str = "demo";

#[derive(Default)]
struct Store {
    version: u64,
    object: Option<ShardPlacement>,
    /// The next status write waits for this before it is looked at (a delayed request).
    hold: Option<oneshot::Receiver<()>>,
}

struct FakeApi {
    store: Mutex<Store>,
    /// GET requests served.
    reads: std::sync::atomic::AtomicUsize,
    /// Signalled when a held write has arrived.
    held: Notify,
}

fn json(code: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
}

fn conflict() -> Response<Body> {
    json(
        StatusCode::CONFLICT,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "Conflict", "code": 409,
            "message": "the object has been modified; please apply your changes to the latest version and try again",
        }),
    )
}

impl FakeApi {
    fn new() -> Arc<FakeApi> {
        let object = ShardPlacement {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some("ns".into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: ShardPlacementSpec {
                cluster: NAME.into(),
                cluster_uid: "uid".into(),
                ring: serde_json::json!({}),
            },
            status: None,
        };
        Arc::new(FakeApi {
            store: Mutex::new(Store {
                version: 1,
                object: Some(object),
                hold: None,
            }),
            held: Notify::new(),
            reads: Default::default(),
        })
    }

    fn current(&self) -> ShardPlacement {
        let s = self.store.lock().unwrap();
        s.object.clone().unwrap()
    }

    async fn serve(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        assert!(
            path.ends_with(&format!("/shardplacements/{NAME}"))
                || path.ends_with(&format!("/shardplacements/{NAME}/status")),
            "unexpected request {} {path}",
            parts.method
        );
        match parts.method {
            Method::GET => {
                self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                json(StatusCode::OK, &self.current())
            }
            Method::PUT => {
                let bytes = body.collect_bytes().await.unwrap();
                let sent: ShardPlacement = serde_json::from_slice(&bytes).unwrap();
                let hold = self.store.lock().unwrap().hold.take();
                if let Some(rx) = hold {
                    self.held.notify_one();
                    let _ = rx.await;
                }
                let mut s = self.store.lock().unwrap();
                if sent.metadata.resource_version != Some(s.version.to_string()) {
                    return conflict();
                }
                s.version += 1;
                let mut obj = s.object.clone().unwrap();
                obj.status = sent.status;
                obj.metadata.resource_version = Some(s.version.to_string());
                s.object = Some(obj.clone());
                json(StatusCode::OK, &obj)
            }
            m => panic!("unexpected method {m}"),
        }
    }
}

/// Status writes as the leader of `generation`.
fn writer_at(fake: &Arc<FakeApi>, generation: Option<i64>) -> Writer {
    Writer {
        api: api_of(fake),
        name: NAME.into(),
        generation,
    }
}

fn api_of(fake: &Arc<FakeApi>) -> Api<ShardPlacement> {
    let fake = fake.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let fake = fake.clone();
        async move { Ok::<_, std::convert::Infallible>(fake.serve(req).await) }
    });
    Api::namespaced(kube::Client::new(svc, "ns"), "ns")
}

#[tokio::test]
async fn a_stale_leaders_delayed_abort_fails_after_the_new_leader_committed() {
    let fake = FakeApi::new();
    let (release, held) = oneshot::channel();
    fake.store.lock().unwrap().hold = Some(held);

    // The old leader decides to abort attempt 1 and writes it; the request is delayed.
    let old = writer_at(&fake, None);
    let stale = tokio::spawn(async move {
        update(&old, |st| {
            let _ = set_record(st, "m1", 1, CutoverState::Aborted);
            Ok(true)
        })
        .await
    });
    fake.held.notified().await;

    // Meanwhile the new leader re-reads and commits attempt 1.
    let new = writer_at(&fake, None);
    let done = update(&new, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Committed);
        Ok(true)
    })
    .await
    .unwrap();
    assert!(matches!(done, Written::Done));

    // The old leader's write arrives with the resourceVersion it read: refused.
    release.send(()).unwrap();
    let result = stale.await.unwrap();
    assert!(
        matches!(result, Err(ref e) if e.is_conflict()),
        "the stale write must fail its precondition, got {:?}",
        result.err()
    );
    let st = fake.current().status.unwrap();
    assert_eq!(
        cutover_of(&st.cutovers, "m1", 1),
        Some(ringshift_planner::CutoverState::Committed),
        "the commit stands"
    );
}

#[tokio::test]
async fn every_status_write_carries_the_resource_version_it_read() {
    let fake = FakeApi::new();
    let api = writer_at(&fake, None);
    for attempt in 1..=3 {
        update(&api, |st| {
            let _ = set_record(st, "m1", attempt, CutoverState::Committing);
            Ok(true)
        })
        .await
        .unwrap();
    }
    assert_eq!(
        fake.current().metadata.resource_version.as_deref(),
        Some("4")
    );
    // An edit that changes nothing writes nothing.
    let r = update(&api, |_| Ok(false)).await.unwrap();
    assert!(matches!(r, Written::Unchanged));
    assert_eq!(
        fake.current().metadata.resource_version.as_deref(),
        Some("4")
    );
}

fn reads(fake: &FakeApi) -> usize {
    fake.reads.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn a_commit_on_the_object_just_written_needs_no_second_read() {
    let fake = FakeApi::new();
    let api = writer_at(&fake, None);
    let (_, recorded) = update_returning(&api, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Committing);
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(reads(&fake), 1);
    let w = update_known(&api, recorded, |st| {
        assert_eq!(
            cutover_of(&st.cutovers, "m1", 1),
            Some(ringshift_planner::CutoverState::Committing)
        );
        let _ = set_record(st, "m1", 1, CutoverState::Committed);
        Ok(true)
    })
    .await
    .unwrap();
    assert!(matches!(w, Written::Done));
    assert_eq!(reads(&fake), 1, "the commit reused the written object");
    assert_eq!(
        fake.current().metadata.resource_version.as_deref(),
        Some("3")
    );
}

#[tokio::test]
async fn a_commit_on_an_object_that_moved_on_decides_again_on_a_fresh_read() {
    let fake = FakeApi::new();
    let api = writer_at(&fake, None);
    let (_, recorded) = update_returning(&api, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Committing);
        Ok(true)
    })
    .await
    .unwrap();
    // Someone (a newer leader) aborts attempt 1 meanwhile.
    update(&api, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Aborted);
        Ok(true)
    })
    .await
    .unwrap();
    let mut seen = Vec::new();
    let w = update_known(&api, recorded, |st| {
        let state = cutover_of(&st.cutovers, "m1", 1);
        seen.push(state);
        if state != Some(ringshift_planner::CutoverState::Committing) {
            return Ok(false);
        }
        let _ = set_record(st, "m1", 1, CutoverState::Committed);
        Ok(true)
    })
    .await
    .unwrap();
    assert!(matches!(w, Written::Unchanged), "no commit over an abort");
    assert_eq!(
        seen,
        vec![
            Some(ringshift_planner::CutoverState::Committing),
            Some(ringshift_planner::CutoverState::Aborted)
        ],
        "the stale copy was refused, the fresh one decided"
    );
    assert_eq!(
        cutover_of(&fake.current().status.unwrap().cutovers, "m1", 1),
        Some(ringshift_planner::CutoverState::Aborted)
    );
}

/// Finding 2 of issue 13: a stale leader at attempt 1 re-reads (so its precondition passes),
/// finds attempt 2 Committed by the new leader, and must not record its own abort over it.
#[tokio::test]
async fn the_old_leader_aborts_attempt_1_after_the_new_leader_committed_attempt_2_the_record_stays_committed()
 {
    let fake = FakeApi::new();
    let api = writer_at(&fake, None);
    // The new leader aborted attempt 1, retried, and committed attempt 2.
    update(&api, |st| {
        let _ = set_record(st, "m1", 2, CutoverState::Committed);
        Ok(true)
    })
    .await
    .unwrap();
    // The old leader, still at attempt 1, gives up its cutover now. Its source is unreachable
    // (port 9 on the loopback refuses at once): the record decides, not the node.
    let source = ringshift_node_api::client::AdminClient::new(
        reqwest::Client::new(),
        "127.0.0.1:9",
        "token",
    );
    let who = ringshift_node_api::Caller {
        cluster_uid: "uid".into(),
        epoch: 3,
        migration_uid: "m1".into(),
        attempt: 1,
    };
    let r = super::cutover::abort(&api, "m1", 1, &source, &who, "budget".into()).await;
    assert!(r.is_err(), "a committed move rolls forward, got {r:?}");
    let st = fake.current().status.unwrap();
    assert_eq!(
        cutover_of(&st.cutovers, "m1", 2),
        Some(ringshift_planner::CutoverState::Committed),
        "the newer attempt's commit stands: {:?}",
        st.cutovers
    );
}

/// Rule 13: once a new leader stored its generation, a replica of a lower one writes nothing,
/// even on a fresh read whose resourceVersion precondition would pass.
#[tokio::test]
async fn a_stale_generations_write_is_refused() {
    let fake = FakeApi::new();
    let old = writer_at(&fake, Some(1));
    let _ = update(&old, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Committing);
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(fake.current().status.unwrap().leader_generation, Some(1));

    // The new leader claims before it acts.
    let new = writer_at(&fake, Some(2));
    assert!(matches!(claim(&new).await.unwrap(), Written::Done));
    assert!(
        matches!(claim(&new).await.unwrap(), Written::Unchanged),
        "claimed once"
    );
    let version = fake.current().metadata.resource_version;

    // The old leader re-reads (its precondition would pass) and tries to abort: refused.
    let r = update(&old, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Aborted);
        Ok(true)
    })
    .await;
    assert!(
        matches!(r, Err(Error::StaleLeader { mine: 1, stored: 2 })),
        "got {:?}",
        r.err()
    );
    assert_eq!(
        fake.current().metadata.resource_version,
        version,
        "nothing written"
    );
    // The new leader goes on.
    update(&new, |st| {
        let _ = set_record(st, "m1", 1, CutoverState::Aborted);
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(fake.current().status.unwrap().leader_generation, Some(2));
}

/// Rule 13: a replica that loses the lease stops its round at once (before another replica can
/// take the lease), instead of finishing it.
#[tokio::test]
async fn leadership_loss_cancels_a_running_round() {
    use crate::leader::Role;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    for next in [
        Role::Standby,
        // Lost and taken again under a new generation: the old term's work ends too.
        Role::Leading {
            generation: Some(8),
        },
    ] {
        let (tx, rx) = tokio::sync::watch::channel(Role::Leading {
            generation: Some(7),
        });
        let leadership = super::Leadership::new(rx);
        assert_eq!(leadership.generation(), Some(7));
        let dropped = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = oneshot::channel();
        let guard = Dropped(dropped.clone());
        let round = tokio::spawn(async move {
            leadership
                .run(async move {
                    let _guard = guard;
                    let _ = started_tx.send(());
                    // A round that would go on acting (a cutover's wait, a slow node call).
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                    Ok::<_, Error>(())
                })
                .await
        });
        started.await.unwrap();
        tx.send_replace(next);
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), round)
            .await
            .expect("the round stopped")
            .unwrap();
        assert!(matches!(r, Err(Error::LeadershipLost)), "{next:?}: {r:?}");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the round's work was dropped"
        );
    }
}

/// A source drop runs on a task of its own, outside any round: it is aborted when the term
/// ends too, even while no round is running.
#[tokio::test]
async fn leadership_loss_aborts_the_drops_in_flight() {
    use crate::leader::Role;
    let fake = FakeApi::new();
    let client = writer_at(&fake, None).api.into_client();
    let base = Arc::new(crate::k8s::Context::new(
        client,
        "test",
        Arc::new(crate::metrics::Metrics::new()),
        crate::cache::Stores::empty(),
    ));
    let (tx, rx) = tokio::sync::watch::channel(Role::Leading {
        generation: Some(3),
    });
    let dctx = Arc::new(super::DriverCtx::new(base, super::Leadership::new(rx)));
    let drop_task = tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        Ok::<(), super::nodes::NodeCallError>(())
    });
    let handle = drop_task.abort_handle();
    dctx.drops.lock().unwrap().insert("m1".into(), drop_task);
    let watchdog = tokio::spawn(super::abort_drops_when_the_term_ends(dctx.clone()));
    tokio::task::yield_now().await;
    assert!(!handle.is_finished());
    tx.send_replace(Role::Standby);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !handle.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the drop task was aborted");
    assert!(dctx.drops.lock().unwrap().is_empty());
    watchdog.abort();
}

fn accepted(
    epoch: u64,
) -> std::collections::BTreeMap<String, Result<PlacementAccepted, super::nodes::NodeCallError>> {
    std::collections::BTreeMap::from([(
        "demo-1".to_string(),
        Ok(PlacementAccepted {
            epoch,
            incarnation: "i1".into(),
            degraded: None,
        }),
    )])
}

#[tokio::test]
async fn acks_on_the_cached_copy_cost_one_request_and_a_stale_copy_a_conflict_then_a_read() {
    let fake = FakeApi::new();
    let api = writer_at(&fake, None);
    let cached = fake.current();
    record_acks(&api, Some(cached.clone()), &accepted(2))
        .await
        .unwrap();
    assert_eq!(reads(&fake), 0, "written on the cached copy, no read");
    let acks = fake.current().status.unwrap_or_default().acks;
    assert_eq!(
        (acks[0].member.as_str(), acks[0].epoch.as_str()),
        ("demo-1", "2")
    );

    // The same stale copy again (the cache has not seen the first ack yet): the write is
    // refused, the object read afresh, and the newer epoch lands on it.
    record_acks(&api, Some(cached), &accepted(3)).await.unwrap();
    assert_eq!(reads(&fake), 1, "one read after the conflict");
    let acks = fake.current().status.unwrap_or_default().acks;
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].epoch, "3");
}
