//! Sorted-set write commands as pure functions, and the algebra of ZUNION/ZINTER/ZDIFF.
//!
//! A sorted set is a collection (`CollType::ZSet`) with two families of sub-keys: members
//! (family 0, value = the score's 8 bytes) and a score index (family 1, field =
//! `zscore::index_field(score, member)`, empty value). Every change to a member writes both, so
//! a range by score or rank is an ordered scan of the index and a lookup by member is one get.

use std::collections::HashMap;

use super::collection::{self, Effect};
use super::ops::DataReply;
use super::zrange::{self, RangeBy, RangeQuery, Seek, Step, Walk};
use super::zscore::{self, NAN_RESULT};

/// A member and its score.
pub type Scored = (Vec<u8>, f64);

/// Family of the score index (members are `collection::FAMILY_ELEMENTS`).
pub const FAMILY_SCORES: u8 = 1;

/// ZADD's options (validated by the parser: the incompatible ones never reach here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
    pub ch: bool,
    pub incr: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregate {
    #[default]
    Sum,
    Min,
    Max,
}

/// How a pop answers: ZPOPMIN/ZPOPMAX (a flat array), ZMPOP (nil, or [key, [[m, s], ...]]),
/// or the blocking BZPOPMIN/BZPOPMAX form ([key, member, score], nil when nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopReply {
    Flat,
    Multi,
    Blocking,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ZsetCmd {
    /// ZADD / ZINCRBY (= ZADD INCR): scores already parsed.
    Add {
        key: Vec<u8>,
        flags: AddFlags,
        pairs: Vec<(f64, Vec<u8>)>,
    },
    Rem {
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    },
    /// ZREMRANGEBYRANK / BYSCORE / BYLEX.
    RemRange {
        key: Vec<u8>,
        by: RangeBy,
    },
    /// ZPOPMIN/ZPOPMAX/ZMPOP (and the one non-blocking attempt of their blocking forms): pops
    /// from the first key holding a sorted set. `count` None: one member (ZPOPMIN's default).
    Pop {
        keys: Vec<Vec<u8>>,
        max: bool,
        count: Option<u64>,
        reply: PopReply,
    },
    /// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE.
    Store {
        dst: Vec<u8>,
        op: ZOp,
        keys: Vec<Vec<u8>>,
        weights: Vec<f64>,
        agg: Aggregate,
    },
    /// ZRANGESTORE.
    RangeStore {
        dst: Vec<u8>,
        src: Vec<u8>,
        query: RangeQuery,
    },
}

// Scores in commands are never NaN (the parser refuses it), so equality is total.
impl Eq for ZsetCmd {}

impl ZsetCmd {
    /// Calls `f` on each key while it returns true.
    pub fn all_keys(&self, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            ZsetCmd::Add { key, .. } | ZsetCmd::Rem { key, .. } | ZsetCmd::RemRange { key, .. } => {
                f(key)
            }
            ZsetCmd::Pop { keys, .. } => keys.iter().all(|k| f(k)),
            ZsetCmd::Store { dst, keys, .. } => f(dst) && keys.iter().all(|k| f(k)),
            ZsetCmd::RangeStore { dst, src, .. } => f(dst) && f(src),
        }
    }

    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            ZsetCmd::Add { key, .. } | ZsetCmd::Rem { key, .. } | ZsetCmd::RemRange { key, .. } => {
                vec![key]
            }
            ZsetCmd::Pop { keys, .. } => keys.iter().map(Vec::as_slice).collect(),
            ZsetCmd::Store { dst, keys, .. } => std::iter::once(dst.as_slice())
                .chain(keys.iter().map(Vec::as_slice))
                .collect(),
            ZsetCmd::RangeStore { dst, src, .. } => vec![dst, src],
        }
    }
}

/// The sub-key bounds of the scan answering `q` over `key`'s set of `version`: (prefix of the
/// family walked, lower bound, upper bound (exclusive; None: none)).
pub fn scan_bounds(
    key: &[u8],
    version: u64,
    q: &RangeQuery,
) -> (Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
    let family = if zrange::walks_members(q) {
        collection::FAMILY_ELEMENTS
    } else {
        FAMILY_SCORES
    };
    let prefix = collection::family_prefix(key, version, family);
    let end = collection::prefix_end(&prefix);
    let (lo, hi) = match zrange::seek(q) {
        Seek::Whole => (prefix.clone(), end),
        Seek::Lower(f) => ([prefix.as_slice(), &f].concat(), end),
        Seek::Upper(f) => (prefix.clone(), Some([prefix.as_slice(), &f].concat())),
    };
    (prefix, lo, hi)
}

/// Feeds one scanned record (its field after the family prefix, and value) to a walk.
pub fn offer(walk: &mut Walk, q_members: bool, field: &[u8], value: &[u8]) -> Step {
    if q_members {
        walk.offer(field, stored_score(value))
    } else {
        match zscore::split_index_field(field) {
            Some((s, m)) => walk.offer(m, s),
            None => Step::Continue,
        }
    }
}

/// Redis's WRONGTYPE-free reading of a member's stored score.
pub fn stored_score(raw: &[u8]) -> f64 {
    zscore::value_score(raw).unwrap_or(0.0)
}

/// The records that move `member` from score `old` to `new` (None: absent).
fn move_member(e: &mut Effect, member: &[u8], old: Option<f64>, new: Option<f64>) {
    if let Some(o) = old {
        e.index.push((zscore::index_field(o, member), None));
    }
    match new {
        Some(n) => {
            e.subs.push((member.to_vec(), Some(zscore::score_value(n))));
            e.index
                .push((zscore::index_field(n, member), Some(Vec::new())));
        }
        None => e.subs.push((member.to_vec(), None)),
    }
}

/// ZADD given the current score of each pair's member (None = absent), in pair order. Pairs
/// apply in order, so a member named twice sees its first pair's result.
pub fn add(flags: AddFlags, pairs: Vec<(f64, Vec<u8>)>, current: Vec<Option<f64>>) -> Effect {
    // member -> (score before the command, score now), in first-seen order.
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut state: HashMap<Vec<u8>, (Option<f64>, Option<f64>)> = HashMap::new();
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0;
    for ((score, member), cur) in pairs.into_iter().zip(current) {
        let entry = state.entry(member.clone()).or_insert_with(|| {
            order.push(member);
            (cur, cur)
        });
        match entry.1 {
            Some(c) => {
                if flags.nx {
                    continue;
                }
                let new = if flags.incr { c + score } else { score };
                if new.is_nan() {
                    return Effect::only(DataReply::Err(NAN_RESULT.into()));
                }
                let new = if new == 0.0 { 0.0 } else { new };
                if flags.lt && new >= c || flags.gt && new <= c {
                    continue;
                }
                processed += 1;
                last = new;
                if new != c {
                    updated += 1;
                    entry.1 = Some(new);
                }
            }
            None => {
                if flags.xx {
                    continue;
                }
                added += 1;
                processed += 1;
                last = score;
                entry.1 = Some(score);
            }
        }
    }
    let mut e = Effect::default();
    for member in order {
        let Some(&(old, new)) = state.get(&member) else {
            continue;
        };
        if old != new {
            move_member(&mut e, &member, old, new);
        }
    }
    e.added = added;
    e.reply = Some(if flags.incr {
        if processed > 0 {
            DataReply::Bulk(zscore::format_score(last).into_bytes())
        } else {
            DataReply::Nil
        }
    } else {
        DataReply::Int(if flags.ch { added + updated } else { added })
    });
    e
}

/// ZREM given each member's current score.
pub fn rem(members: Vec<Vec<u8>>, current: Vec<Option<f64>>) -> Effect {
    let mut seen = std::collections::HashSet::new();
    let gone: Vec<(Vec<u8>, f64)> = members
        .into_iter()
        .zip(current)
        .filter_map(|(m, s)| Some((m, s?)))
        .filter(|(m, _)| seen.insert(m.clone()))
        .collect();
    let mut e = remove(&gone);
    e.reply = Some(DataReply::Int(gone.len() as i64));
    e
}

/// Removes `members` (with their current scores); no reply.
pub fn remove(members: &[(Vec<u8>, f64)]) -> Effect {
    let mut e = Effect::default();
    for (m, s) in members {
        move_member(&mut e, m, Some(*s), None);
    }
    e.added = -(members.len() as i64);
    e
}

/// Writes `members` into a new sorted set (the STORE commands); no reply.
pub fn fill(members: &[(Vec<u8>, f64)]) -> Effect {
    let mut e = Effect::default();
    for (m, s) in members {
        move_member(&mut e, m, None, Some(*s));
    }
    e.added = members.len() as i64;
    e
}

/// A popped or ranged member list as a reply: flat `member, score` pairs.
pub fn pairs_reply(members: &[(Vec<u8>, f64)]) -> Vec<DataReply> {
    members
        .iter()
        .flat_map(|(m, s)| {
            [
                DataReply::Bulk(m.clone()),
                DataReply::Bulk(zscore::format_score(*s).into_bytes()),
            ]
        })
        .collect()
}

/// The reply of a pop that took `popped` from `key` (None: no key held a sorted set).
pub fn pop_reply(form: PopReply, popped: Option<(&[u8], &[Scored])>) -> DataReply {
    match (form, popped) {
        (PopReply::Flat, None) => DataReply::Array(Vec::new()),
        (PopReply::Flat, Some((_, got))) => DataReply::Array(pairs_reply(got)),
        (PopReply::Multi | PopReply::Blocking, None) => DataReply::NullArray,
        (PopReply::Multi, Some((key, got))) => DataReply::Array(vec![
            DataReply::Bulk(key.to_vec()),
            DataReply::Array(
                got.iter()
                    .map(|p| DataReply::Array(pairs_reply(std::slice::from_ref(p))))
                    .collect(),
            ),
        ]),
        (PopReply::Blocking, Some((key, got))) => {
            let mut v = vec![DataReply::Bulk(key.to_vec())];
            v.extend(pairs_reply(got));
            DataReply::Array(v)
        }
    }
}

/// One input's score times its weight (Redis: NaN, as inf * 0, counts as 0).
fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    if v.is_nan() { 0.0 } else { v }
}

/// Folds `v` into `acc` (Redis: a NaN sum, as inf + -inf, counts as 0).
pub fn aggregate(agg: Aggregate, acc: f64, v: f64) -> f64 {
    match agg {
        Aggregate::Sum => {
            let s = acc + v;
            if s.is_nan() { 0.0 } else { s }
        }
        Aggregate::Min => {
            if v < acc {
                v
            } else {
                acc
            }
        }
        Aggregate::Max => {
            if v > acc {
                v
            } else {
                acc
            }
        }
    }
}

/// One input of ZUNION/ZINTER/ZDIFF: its members and scores (a set's members score 1), and
/// its weight.
pub struct Input {
    pub members: HashMap<Vec<u8>, f64>,
    pub weight: f64,
}

/// The result of `op` over `inputs` (in key order), sorted by score then member.
pub fn combine(op: ZOp, mut inputs: Vec<Input>, agg: Aggregate) -> Vec<(Vec<u8>, f64)> {
    let mut out: HashMap<Vec<u8>, f64> = HashMap::new();
    match op {
        ZOp::Diff => {
            let mut it = inputs.into_iter();
            if let Some(first) = it.next() {
                let rest: Vec<Input> = it.collect();
                for (m, s) in first.members {
                    if !rest.iter().any(|r| r.members.contains_key(&m)) {
                        out.insert(m, s);
                    }
                }
            }
        }
        ZOp::Union => {
            // Redis folds the inputs smallest first; sums depend on the order.
            inputs.sort_by_key(|i| i.members.len());
            for input in &inputs {
                for (m, s) in &input.members {
                    let v = weighted(*s, input.weight);
                    out.entry(m.clone())
                        .and_modify(|acc| *acc = aggregate(agg, *acc, v))
                        .or_insert(v);
                }
            }
        }
        ZOp::Inter => {
            inputs.sort_by_key(|i| i.members.len());
            let mut it = inputs.iter();
            if let Some(first) = it.next() {
                let rest: Vec<&Input> = it.collect();
                'members: for (m, s) in &first.members {
                    let mut acc = weighted(*s, first.weight);
                    for r in &rest {
                        match r.members.get(m) {
                            Some(o) => acc = aggregate(agg, acc, weighted(*o, r.weight)),
                            None => continue 'members,
                        }
                    }
                    out.insert(m.clone(), acc);
                }
            }
        }
    }
    let mut v: Vec<(Vec<u8>, f64)> = out.into_iter().collect();
    sort_by_score(&mut v);
    v
}

/// Sorted-set order: score, then member bytes.
pub fn sort_by_score(v: &mut [(Vec<u8>, f64)]) {
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(f64, &str)]) -> Vec<(f64, Vec<u8>)> {
        p.iter().map(|(s, m)| (*s, m.as_bytes().to_vec())).collect()
    }

    #[test]
    fn zadd_counts_added_and_changed() {
        let e = add(
            AddFlags::default(),
            pairs(&[(1.0, "a"), (2.0, "b"), (3.0, "a")]),
            vec![None, Some(2.0), None],
        );
        assert_eq!(e.reply, Some(DataReply::Int(1)));
        assert_eq!(e.added, 1);
        // b unchanged: only a's member and index records.
        assert_eq!(
            e.subs,
            vec![(b"a".to_vec(), Some(zscore::score_value(3.0)))]
        );
        let ch = AddFlags {
            ch: true,
            ..AddFlags::default()
        };
        let e = add(ch, pairs(&[(5.0, "b"), (1.0, "c")]), vec![Some(2.0), None]);
        assert_eq!(e.reply, Some(DataReply::Int(2)));
        // The old index record of b goes, the new one comes.
        assert!(e.index.contains(&(zscore::index_field(2.0, b"b"), None)));
        assert!(
            e.index
                .contains(&(zscore::index_field(5.0, b"b"), Some(vec![])))
        );
    }

    #[test]
    fn zadd_conditions() {
        let f = |nx, xx, gt, lt| AddFlags {
            nx,
            xx,
            gt,
            lt,
            ch: true,
            incr: false,
        };
        let run = |flags, cur| add(flags, pairs(&[(5.0, "a")]), vec![cur]).reply;
        assert_eq!(
            run(f(true, false, false, false), Some(1.0)),
            Some(DataReply::Int(0))
        );
        assert_eq!(
            run(f(true, false, false, false), None),
            Some(DataReply::Int(1))
        );
        assert_eq!(
            run(f(false, true, false, false), None),
            Some(DataReply::Int(0))
        );
        assert_eq!(
            run(f(false, false, true, false), Some(1.0)),
            Some(DataReply::Int(1))
        );
        assert_eq!(
            run(f(false, false, true, false), Some(9.0)),
            Some(DataReply::Int(0))
        );
        assert_eq!(
            run(f(false, false, false, true), Some(9.0)),
            Some(DataReply::Int(1))
        );
        assert_eq!(
            run(f(false, false, false, true), Some(1.0)),
            Some(DataReply::Int(0))
        );
        // GT/LT never stop a new member.
        assert_eq!(
            run(f(false, false, true, false), None),
            Some(DataReply::Int(1))
        );
    }

    #[test]
    fn zadd_incr_answers_the_score_or_nil_and_refuses_nan() {
        let incr = AddFlags {
            incr: true,
            ..AddFlags::default()
        };
        let e = add(incr, pairs(&[(1.5, "a")]), vec![Some(1.0)]);
        assert_eq!(e.reply, Some(DataReply::Bulk(b"2.5".to_vec())));
        let e = add(
            AddFlags { nx: true, ..incr },
            pairs(&[(1.5, "a")]),
            vec![Some(1.0)],
        );
        assert_eq!(e.reply, Some(DataReply::Nil));
        assert!(e.subs.is_empty());
        let e = add(
            incr,
            pairs(&[(f64::NEG_INFINITY, "a")]),
            vec![Some(f64::INFINITY)],
        );
        assert_eq!(e.reply, Some(DataReply::Err(NAN_RESULT.into())));
        assert!(e.subs.is_empty() && e.index.is_empty());
    }

    #[test]
    fn zrem_counts_each_present_member_once() {
        let e = rem(
            vec![b"a".to_vec(), b"a".to_vec(), b"z".to_vec()],
            vec![Some(1.0), Some(1.0), None],
        );
        assert_eq!(e.reply, Some(DataReply::Int(1)));
        assert_eq!(e.added, -1);
        assert_eq!(e.index, vec![(zscore::index_field(1.0, b"a"), None)]);
    }

    fn input(items: &[(&str, f64)], weight: f64) -> Input {
        Input {
            members: items
                .iter()
                .map(|(m, s)| (m.as_bytes().to_vec(), *s))
                .collect(),
            weight,
        }
    }

    fn names(v: &[(Vec<u8>, f64)]) -> Vec<(String, f64)> {
        v.iter()
            .map(|(m, s)| (String::from_utf8(m.clone()).unwrap(), *s))
            .collect()
    }

    #[test]
    fn union_inter_diff_with_weights_and_aggregates() {
        let a = || input(&[("a", 1.0), ("b", 2.0), ("c", 3.0)], 1.0);
        let b = || input(&[("b", 1.0), ("c", 2.0), ("d", 3.0)], 2.0);
        let u = combine(ZOp::Union, vec![a(), b()], Aggregate::Sum);
        let want = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
            v.iter().map(|(m, s)| (m.to_string(), *s)).collect()
        };
        assert_eq!(
            names(&u),
            want(&[("a", 1.0), ("b", 4.0), ("d", 6.0), ("c", 7.0)])
        );
        let i = combine(ZOp::Inter, vec![a(), b()], Aggregate::Max);
        assert_eq!(names(&i), want(&[("b", 2.0), ("c", 4.0)]));
        let i = combine(ZOp::Inter, vec![a(), b()], Aggregate::Min);
        assert_eq!(names(&i), want(&[("b", 2.0), ("c", 3.0)]));
        let d = combine(ZOp::Diff, vec![a(), b()], Aggregate::Sum);
        assert_eq!(names(&d), want(&[("a", 1.0)]));
        // Ties in score sort by member.
        let t = combine(
            ZOp::Union,
            vec![input(&[("y", 1.0), ("x", 1.0)], 1.0)],
            Aggregate::Sum,
        );
        assert_eq!(names(&t), want(&[("x", 1.0), ("y", 1.0)]));
    }

    #[test]
    fn nan_from_weights_or_sums_counts_as_zero() {
        assert_eq!(
            aggregate(Aggregate::Sum, f64::INFINITY, f64::NEG_INFINITY),
            0.0
        );
        assert_eq!(aggregate(Aggregate::Min, 1.0, -2.0), -2.0);
        assert_eq!(aggregate(Aggregate::Max, 1.0, -2.0), 1.0);
        let u = combine(
            ZOp::Union,
            vec![input(&[("a", f64::INFINITY)], 0.0)],
            Aggregate::Sum,
        );
        assert_eq!(u[0].1, 0.0);
        let u = combine(
            ZOp::Union,
            vec![
                input(&[("a", f64::INFINITY)], 1.0),
                input(&[("a", f64::NEG_INFINITY)], 1.0),
            ],
            Aggregate::Sum,
        );
        assert_eq!(u[0].1, 0.0);
    }

    #[test]
    fn pops_answer_in_each_form() {
        let got = vec![(b"a".to_vec(), 1.5)];
        assert_eq!(
            pop_reply(PopReply::Flat, Some((b"k", &got))),
            DataReply::Array(vec![
                DataReply::Bulk(b"a".to_vec()),
                DataReply::Bulk(b"1.5".to_vec())
            ])
        );
        assert_eq!(pop_reply(PopReply::Flat, None), DataReply::Array(vec![]));
        assert_eq!(pop_reply(PopReply::Multi, None), DataReply::NullArray);
        let DataReply::Array(m) = pop_reply(PopReply::Multi, Some((b"k", &got))) else {
            panic!("ZMPOP answers an array")
        };
        assert_eq!(m[0], DataReply::Bulk(b"k".to_vec()));
    }
}
