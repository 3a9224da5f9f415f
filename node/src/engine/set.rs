//! Set write commands as pure functions (members are sub-keys with empty values), and the set
//! algebra shared by SINTER/SUNION/SDIFF, their STORE forms and SINTERCARD.

use std::collections::BTreeSet;

use super::collection::Effect;
use super::ops::DataReply;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    Inter,
    Union,
    Diff,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetCmd {
    Add {
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    },
    Rem {
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    },
    /// SPOP; `count` None answers one member (or nil), Some an array.
    Pop {
        key: Vec<u8>,
        count: Option<u64>,
    },
    Move {
        src: Vec<u8>,
        dst: Vec<u8>,
        member: Vec<u8>,
    },
    /// SINTERSTORE / SUNIONSTORE / SDIFFSTORE.
    Store {
        op: SetOp,
        dst: Vec<u8>,
        keys: Vec<Vec<u8>>,
    },
}

impl SetCmd {
    /// Calls `f` on each key while it returns true.
    pub fn all_keys(&self, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            SetCmd::Add { key, .. } | SetCmd::Rem { key, .. } | SetCmd::Pop { key, .. } => f(key),
            SetCmd::Move { src, dst, .. } => f(src) && f(dst),
            SetCmd::Store { dst, keys, .. } => f(dst) && keys.iter().all(|k| f(k)),
        }
    }

    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            SetCmd::Add { key, .. } | SetCmd::Rem { key, .. } | SetCmd::Pop { key, .. } => {
                vec![key]
            }
            SetCmd::Move { src, dst, .. } => vec![src, dst],
            SetCmd::Store { dst, keys, .. } => std::iter::once(dst.as_slice())
                .chain(keys.iter().map(Vec::as_slice))
                .collect(),
        }
    }
}

/// SADD given which of `members` are present now.
pub fn add(members: Vec<Vec<u8>>, present: Vec<bool>) -> Effect {
    let mut e = Effect::default();
    let mut seen = BTreeSet::new();
    for (m, here) in members.into_iter().zip(present) {
        if !here && seen.insert(m.clone()) {
            e.added += 1;
            e.subs.push((m, Some(Vec::new())));
        }
    }
    e.reply = Some(DataReply::Int(e.added));
    e
}

/// SREM given which of `members` are present now.
pub fn rem(members: Vec<Vec<u8>>, present: Vec<bool>) -> Effect {
    let mut e = Effect::default();
    let mut seen = BTreeSet::new();
    for (m, here) in members.into_iter().zip(present) {
        if here && seen.insert(m.clone()) {
            e.added -= 1;
            e.subs.push((m, None));
        }
    }
    e.reply = Some(DataReply::Int(-e.added));
    e
}

/// SPOP's effect once the popped members are chosen.
pub fn pop(chosen: Vec<Vec<u8>>, count: Option<u64>) -> Effect {
    let reply = match count {
        None => chosen
            .first()
            .map_or(DataReply::Nil, |m| DataReply::Bulk(m.clone())),
        Some(_) => DataReply::Array(chosen.iter().cloned().map(DataReply::Bulk).collect()),
    };
    Effect {
        added: -(chosen.len() as i64),
        subs: chosen.into_iter().map(|m| (m, None)).collect(),
        reply: Some(reply),
        ..Effect::default()
    }
}

/// The members of `op` over `sets` (in key order; a missing key is an empty set).
pub fn combine(op: SetOp, sets: Vec<BTreeSet<Vec<u8>>>) -> BTreeSet<Vec<u8>> {
    let mut it = sets.into_iter();
    let Some(first) = it.next() else {
        return BTreeSet::new();
    };
    match op {
        SetOp::Union => it.fold(first, |mut acc, s| {
            acc.extend(s);
            acc
        }),
        SetOp::Inter => it.fold(first, |acc, s| acc.intersection(&s).cloned().collect()),
        SetOp::Diff => it.fold(first, |acc, s| acc.difference(&s).cloned().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn sadd_counts_new_members_once() {
        let e = add(
            vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()],
            vec![false, true, false],
        );
        assert_eq!(e.added, 1);
        assert_eq!(e.subs, vec![(b"a".to_vec(), Some(Vec::new()))]);
        assert_eq!(e.reply, Some(DataReply::Int(1)));
    }

    #[test]
    fn srem_counts_present_members_once() {
        let e = rem(
            vec![b"a".to_vec(), b"a".to_vec(), b"z".to_vec()],
            vec![true, true, false],
        );
        assert_eq!(e.added, -1);
        assert_eq!(e.reply, Some(DataReply::Int(1)));
    }

    #[test]
    fn set_algebra_follows_key_order() {
        let sets = || vec![set(&["a", "b", "c"]), set(&["b", "c", "d"]), set(&["c"])];
        assert_eq!(combine(SetOp::Inter, sets()), set(&["c"]));
        assert_eq!(combine(SetOp::Union, sets()), set(&["a", "b", "c", "d"]));
        assert_eq!(combine(SetOp::Diff, sets()), set(&["a"]));
        assert_eq!(combine(SetOp::Diff, vec![]), set(&[]));
    }

    #[test]
    fn spop_without_count_answers_one_member_or_nil() {
        assert_eq!(pop(vec![], None).reply, Some(DataReply::Nil));
        let e = pop(vec![b"x".to_vec()], None);
        assert_eq!(e.reply, Some(DataReply::Bulk(b"x".to_vec())));
        assert_eq!(e.added, -1);
        assert_eq!(
            pop(vec![], Some(3)).reply,
            Some(DataReply::Array(Vec::new()))
        );
    }
}
