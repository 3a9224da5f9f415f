//! Writer operations are all or nothing: a pulled batch that fails part-way (failpoint
//! `fail-apply`, standing for a storage read error) leaves none of its records, log entries or
//! metadata behind. (Its own test binary: failpoints are armed for the whole process.)

use std::collections::HashMap;
use std::sync::Arc;

use ringshift_node::changelog::LogOp;
use ringshift_node::engine::{EngineConfig, Op, Outcome, open};
use ringshift_node::keys;
use ringshift_node::routing::{Installed, OwnerTable};
use ringshift_ring::{HashRange, RangeSet};

#[tokio::test]
async fn a_pulled_batch_that_fails_part_way_leaves_nothing_behind() {
    ringshift_node::failpoints::arm("fail-apply=1").unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("writer-atomic");
    let _ = std::fs::remove_dir_all(&dir);
    let config = EngineConfig {
        member: "a".into(),
        durable: true,
        retention_bytes: 1 << 30,
        retention_age_ms: 3_600_000,
        pin_cap_bytes: 1 << 31,
        cache_bytes: 1 << 20,
        memtable_bytes: 1 << 20,
    };
    let (e, _) = open(&dir, config, |_| Err("none".into())).unwrap();
    let full = HashRange {
        start: 0,
        end: u64::MAX,
    };
    // Another member owns everything: this node may apply pulled records.
    let installed = Arc::new(Installed {
        cluster_uid: "c".into(),
        epoch: 1,
        owners: OwnerTable::new(vec![(full, Arc::from("b"))]),
        members: HashMap::new(),
        write_pause_budget_ms: 100,
        placement_json: "1".into(),
    });
    let done = e
        .run(Op::Install {
            installed,
            raw: b"{}".to_vec(),
            degraded: None,
        })
        .await
        .unwrap();
    assert!(matches!(done, Outcome::Done));
    let head = e.head();
    let ops: Vec<LogOp> = (0..3)
        .map(|i| LogOp::Put {
            skey: keys::storage_key(format!("k{i}").as_bytes()),
            value: b"v".to_vec(),
            expires_at: None,
            typed: false,
        })
        .collect();
    let failed = e
        .run(Op::Apply {
            ops: ops.clone(),
            meta: vec![(b"pull/x".to_vec(), Some(b"cursor".to_vec()))],
            guard: RangeSet::single(full),
        })
        .await
        .unwrap();
    assert!(matches!(failed, Outcome::Failed(_)));
    // A later batch commits; the failed one's writes must not ride along with it.
    let meta = e
        .run(Op::Meta(vec![(b"other".to_vec(), Some(b"1".to_vec()))]))
        .await
        .unwrap();
    assert!(matches!(meta, Outcome::Done));
    for i in 0..3 {
        let got = e.get(format!("k{i}").as_bytes()).unwrap();
        assert!(got.is_none(), "k{i} of the failed batch was applied");
    }
    assert_eq!(e.head(), head, "the failed batch logged records");
    assert_eq!(e.meta_get(b"pull/x").unwrap(), None);
    assert_eq!(e.dbsize(&[full]).unwrap(), 0);
    // The failpoint is spent: the same batch applies whole.
    let ok = e
        .run(Op::Apply {
            ops,
            meta: vec![],
            guard: RangeSet::single(full),
        })
        .await
        .unwrap();
    assert!(matches!(ok, Outcome::Done));
    assert_eq!(e.head(), head + 3);
    assert_eq!(e.dbsize(&[full]).unwrap(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
