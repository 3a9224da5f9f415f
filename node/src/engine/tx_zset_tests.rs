//! Sorted-set reads queued in a transaction see its own earlier writes (the writer's batch
//! view), and answer as the committed data answers once the transaction has committed.

use super::collection::CollType;
use super::ops::{DataCmd, Outcome};
use super::tests::{config, dir, install, no_placement, owns_everything};
use super::tx::{Transaction, TxItem, TxReply};
use super::view::KeyView;
use super::zrange::{RangeBy, RangeQuery, ScoreRange};
use super::zset::{AddFlags, ZsetCmd};
use super::*;

fn zadd(pairs: &[(f64, &str)]) -> DataCmd {
    DataCmd::ZSet(ZsetCmd::Add {
        key: b"z".to_vec(),
        flags: AddFlags::default(),
        pairs: pairs
            .iter()
            .map(|(s, m)| (*s, m.as_bytes().to_vec()))
            .collect(),
    })
}

/// What the reads under test answer from `view`: the whole set by rank, the set by score
/// descending with a LIMIT, and the ranks of a few members.
fn reads(view: &dyn KeyView) -> String {
    let m = match view.collection(b"z", CollType::ZSet) {
        Ok(Ok(Some(m))) => m,
        other => return format!("no sorted set: {other:?}"),
    };
    let all = RangeQuery::new(RangeBy::Rank { start: 0, end: -1 }, false);
    let mut by_score = RangeQuery::new(
        RangeBy::Score(ScoreRange {
            min: 1.0,
            min_excl: false,
            max: f64::INFINITY,
            max_excl: false,
        }),
        true,
    );
    (by_score.offset, by_score.count) = (1, 2);
    let names = |v: Vec<(Vec<u8>, f64)>| -> Vec<(String, f64)> {
        v.into_iter()
            .map(|(m, s)| (String::from_utf8_lossy(&m).into_owned(), s))
            .collect()
    };
    let ranks: Vec<_> = ["d", "a", "b", "c"]
        .iter()
        .map(|x| view.zset_rank(b"z", &m, x.as_bytes()).ok().flatten())
        .collect();
    format!(
        "count {} all {:?} by score {:?} ranks {ranks:?}",
        m.count,
        view.zset_range(b"z", &m, &all).map(names),
        view.zset_range(b"z", &m, &by_score).map(names),
    )
}

#[tokio::test]
async fn sorted_set_reads_in_a_transaction_see_its_earlier_writes() {
    let d = dir("tx-zset");
    let (e, _) = open(&d, config(), no_placement).unwrap();
    e.run(install(owns_everything())).await.unwrap();
    let committed = e
        .submit(Op::Data(zadd(&[(1.0, "a"), (2.0, "b"), (3.0, "c")])))
        .await
        .unwrap();
    assert!(matches!(committed, Outcome::Data(_)));

    // In the transaction: a moves to the top, d joins at the bottom, b leaves; then the reads.
    let rem = DataCmd::ZSet(ZsetCmd::Rem {
        key: b"z".to_vec(),
        members: vec![b"b".to_vec()],
    });
    let tx = Transaction {
        items: vec![
            TxItem::Write(zadd(&[(10.0, "a"), (0.0, "d")])),
            TxItem::Write(rem),
            TxItem::Read(Box::new(|v: &dyn KeyView| reads(v).into_bytes())),
        ],
        keys: vec![b"z".to_vec()],
        watched: Vec::new(),
        deadline_ms: None,
    };
    let Outcome::Transaction(replies) = e.transaction(tx).await.unwrap() else {
        panic!("transaction not applied");
    };
    let Some(TxReply::Raw(inside)) = replies.last() else {
        panic!("no read reply");
    };
    let inside = String::from_utf8_lossy(inside).into_owned();
    assert_eq!(
        inside,
        "count 3 all Ok([(\"d\", 0.0), (\"c\", 3.0), (\"a\", 10.0)]) \
         by score Ok([(\"c\", 3.0)]) ranks [Some((0, 0.0)), Some((2, 10.0)), None, Some((1, 3.0))]"
    );
    // The committed data answers the same.
    assert_eq!(reads(&*e), inside);
    let _ = std::fs::remove_dir_all(&d);
}
