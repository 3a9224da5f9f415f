//! The string commands' log records are post-images: replaying a tail on another node
//! reproduces the values and absolute expiries, whatever the commands were.

use super::ops::{SetCond, SetExpiry};
use super::strings::{GetExExpiry, StrCmd};
use super::tests::{config, dir, install, no_placement, owned_by};
use super::*;
use crate::changelog::LogOp;

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn data(e: &Engine, cmd: DataCmd) -> DataReply {
    match e.run(Op::Data(cmd)).await.unwrap() {
        Outcome::Data(r) => r,
        _ => panic!("not applied"),
    }
}

#[tokio::test]
async fn string_commands_log_post_images_that_replay_to_the_same_state() {
    let d = dir("strings-src");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owned_by("a", 1))).await.unwrap();
    let far = e.now_ms() + 3_600_000;
    let str_cmd = |c| DataCmd::Str(c);
    data(
        &e,
        DataCmd::Set {
            key: k("a"),
            value: k("x"),
            expiry: SetExpiry::At(far),
            cond: SetCond::Always,
            get: false,
        },
    )
    .await;
    let appended = str_cmd(StrCmd::Append {
        key: k("a"),
        value: k("yz"),
    });
    assert_eq!(data(&e, appended).await, DataReply::Int(3));
    let setrange = str_cmd(StrCmd::SetRange {
        key: k("a"),
        offset: 5,
        value: k("!"),
    });
    assert_eq!(data(&e, setrange).await, DataReply::Int(6));
    let incr = str_cmd(StrCmd::IncrByFloat {
        key: k("f"),
        delta: k("2.5"),
    });
    assert_eq!(data(&e, incr).await, DataReply::Bulk(k("2.5")));
    let msetnx = DataCmd::MSetNx {
        pairs: vec![(k("m1"), k("1")), (k("m2"), k("2"))],
    };
    assert_eq!(data(&e, msetnx.clone()).await, DataReply::Int(1));
    assert_eq!(data(&e, msetnx).await, DataReply::Int(0));
    let getex = str_cmd(StrCmd::GetEx {
        key: k("m1"),
        expiry: GetExExpiry::At(far),
    });
    assert_eq!(data(&e, getex).await, DataReply::Bulk(k("1")));
    let getdel = str_cmd(StrCmd::GetDel { key: k("m2") });
    assert_eq!(data(&e, getdel).await, DataReply::Bulk(k("2")));

    // Every record is a whole post-image with the absolute expiry.
    let t = e.tail(&e.incarnation, 0, &RangeSet::full(), 1000).unwrap();
    let puts: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = t
        .records
        .iter()
        .filter_map(|(_, r)| match &r.op {
            LogOp::Put {
                skey,
                value,
                expires_at,
                ..
            } => Some((skey.clone(), value.clone(), *expires_at)),
            _ => None,
        })
        .collect();
    let a = keys::storage_key(b"a");
    assert!(puts.contains(&(a.clone(), k("xyz"), Some(far))));
    assert!(puts.contains(&(a, k("xyz\0\0!"), Some(far))));
    assert!(puts.contains(&(keys::storage_key(b"m1"), k("1"), Some(far))));
    assert!(t.records.iter().any(|(_, r)| r.op
        == LogOp::Del {
            skey: keys::storage_key(b"m2")
        }));

    // Replayed on a node that does not own the keys (as a catch-up does), the state matches.
    let d2 = dir("strings-dst");
    let (e2, _) = open(&d2, config(), no_placement).unwrap();
    e2.run(install(owned_by("b", 1))).await.unwrap();
    let ops = t.records.into_iter().map(|(_, r)| r.op).collect();
    let applied = e2
        .run(Op::Apply {
            ops,
            meta: Vec::new(),
            guard: RangeSet::full(),
        })
        .await
        .unwrap();
    assert!(matches!(applied, Outcome::Done));
    for key in ["a", "f", "m1", "m2"] {
        assert_eq!(
            e.get(key.as_bytes()).unwrap(),
            e2.get(key.as_bytes()).unwrap()
        );
    }

    // FLUSHALL clears what the node owns, logged as range clears; refused while fenced.
    assert!(matches!(e.run(Op::Flush).await.unwrap(), Outcome::Done));
    assert_eq!(e.get(b"a").unwrap(), None);
    let t = e.tail(&e.incarnation, 0, &RangeSet::full(), 1000).unwrap();
    assert!(
        t.records
            .iter()
            .any(|(_, r)| matches!(r.op, LogOp::ClearRange { .. }))
    );
    e.run(Op::Fence {
        migration_uid: "m".into(),
        attempt: 1,
        ranges: RangeSet::full(),
    })
    .await
    .unwrap();
    match e.run(Op::Flush).await.unwrap() {
        Outcome::Refused(msg) => assert!(msg.starts_with("TRYAGAIN"), "{msg}"),
        _ => panic!("a flush inside a fence was applied"),
    }
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&d2);
}
