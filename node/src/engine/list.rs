//! Lists in the collection layout, as Kvrocks keeps them: the metadata record appends the
//! list's `head` and `tail` (8 bytes BE each; the elements sit at indices `head..tail`), and
//! each element is a sub-key whose field is its index (8 bytes BE), so a range of a list is one
//! ordered scan and a push or a pop at either end is one element record. Both ends start in the
//! middle of the index space, so either can grow for 2^63 pushes.
//!
//! This module holds the pure parts: the metadata, the commands the writer evaluates, Redis'
//! index arithmetic, and the plans of the commands that rewrite the middle of a list (which
//! elements change and where the ends move).

use super::collection::{CollMeta, CollType, Held, WRONGTYPE};
use crate::keys::Stored;

/// Where the first element of a new list goes.
pub const START: u64 = 1 << 63;

/// A list's metadata: the collection record plus its ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListMeta {
    pub coll: CollMeta,
    /// Index of the first element.
    pub head: u64,
    /// One past the index of the last element.
    pub tail: u64,
}

const ENDS_AT: usize = 17;
const LIST_META_LEN: usize = ENDS_AT + 16;

impl ListMeta {
    /// The list metadata of a stored value; None for anything else (or a truncated record).
    pub fn of(s: &Stored) -> Option<ListMeta> {
        let coll = CollMeta::of(s).filter(|m| m.ty == CollType::List)?;
        let ends = s.value.get(ENDS_AT..LIST_META_LEN)?;
        Some(ListMeta {
            coll,
            head: u64::from_be_bytes(ends[..8].try_into().ok()?),
            tail: u64::from_be_bytes(ends[8..].try_into().ok()?),
        })
    }

    /// An empty list of `version` (the caller pushes before storing it).
    pub fn new(version: u64) -> ListMeta {
        ListMeta {
            coll: CollMeta {
                ty: CollType::List,
                version,
                count: 0,
                expires_at: None,
            },
            head: START,
            tail: START,
        }
    }

    pub fn len(&self) -> u64 {
        self.tail.saturating_sub(self.head)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored record (the count is kept equal to the length).
    pub fn to_stored(&self) -> Stored {
        let mut coll = self.coll.clone();
        coll.count = self.len();
        let mut s = coll.to_stored();
        s.value.extend_from_slice(&self.head.to_be_bytes());
        s.value.extend_from_slice(&self.tail.to_be_bytes());
        s
    }

    /// Storage index of the element at list position `pos` (0 = first).
    pub fn index(&self, pos: u64) -> u64 {
        self.head.wrapping_add(pos)
    }
}

/// The field (sub-key suffix) of the element at storage index `index`.
pub fn field(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// What a key holds, seen by a list command: None absent, Err(WRONGTYPE) another type.
pub fn list_of(s: Option<&Stored>) -> Result<Option<ListMeta>, &'static str> {
    match Held::of(s).expect(CollType::List)? {
        None => Ok(None),
        // A list record we cannot read is refused rather than misread.
        Some(_) => s.and_then(ListMeta::of).map(Some).ok_or(WRONGTYPE),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    /// LEFT / RIGHT (any case).
    pub fn parse(raw: &[u8]) -> Option<End> {
        if raw.eq_ignore_ascii_case(b"left") {
            Some(End::Left)
        } else if raw.eq_ignore_ascii_case(b"right") {
            Some(End::Right)
        } else {
            None
        }
    }
}

/// The reply shape of a pop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopReply {
    /// LPOP/RPOP without a count: the element, or nil.
    One,
    /// LPOP/RPOP with a count: an array, or a null array when the key is absent.
    Many,
    /// BLPOP/BRPOP: `[key, element]`, or a null array.
    KeyElement,
    /// LMPOP/BLMPOP: `[key, [elements]]`, or a null array.
    KeyElements,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListCmd {
    /// LPUSH/RPUSH; `existing`: LPUSHX/RPUSHX (only onto an existing list).
    Push {
        key: Vec<u8>,
        values: Vec<Vec<u8>>,
        end: End,
        existing: bool,
    },
    /// Pops up to `count` elements from the first of `keys` holding a list.
    Pop {
        keys: Vec<Vec<u8>>,
        end: End,
        count: u64,
        reply: PopReply,
    },
    /// LMOVE/RPOPLPUSH; `blocking`: the attempt of BLMOVE/BRPOPLPUSH (an empty source answers
    /// a null array, as Redis does when they time out).
    Move {
        src: Vec<u8>,
        dst: Vec<u8>,
        from: End,
        to: End,
        blocking: bool,
    },
    Set {
        key: Vec<u8>,
        index: i64,
        value: Vec<u8>,
    },
    Insert {
        key: Vec<u8>,
        before: bool,
        pivot: Vec<u8>,
        value: Vec<u8>,
    },
    Rem {
        key: Vec<u8>,
        count: i64,
        value: Vec<u8>,
    },
    Trim {
        key: Vec<u8>,
        start: i64,
        stop: i64,
    },
}

impl ListCmd {
    /// Calls `f` on each key while it returns true.
    pub fn all_keys(&self, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            ListCmd::Push { key, .. }
            | ListCmd::Set { key, .. }
            | ListCmd::Insert { key, .. }
            | ListCmd::Rem { key, .. }
            | ListCmd::Trim { key, .. } => f(key),
            ListCmd::Pop { keys, .. } => keys.iter().all(|k| f(k)),
            ListCmd::Move { src, dst, .. } => f(src) && f(dst),
        }
    }

    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            ListCmd::Push { key, .. }
            | ListCmd::Set { key, .. }
            | ListCmd::Insert { key, .. }
            | ListCmd::Rem { key, .. }
            | ListCmd::Trim { key, .. } => vec![key],
            ListCmd::Pop { keys, .. } => keys.iter().map(Vec::as_slice).collect(),
            ListCmd::Move { src, dst, .. } => vec![src, dst],
        }
    }
}

/// Position of index `i` (negative counts from the end) in a list of `len`; None outside.
pub fn position(len: u64, i: i64) -> Option<u64> {
    let p = if i < 0 {
        i128::from(len) + i128::from(i)
    } else {
        i128::from(i)
    };
    (0..i128::from(len)).contains(&p).then_some(p as u64)
}

/// LRANGE's positions `start..=stop` (negative from the end, clamped as Redis does) as a
/// half-open range of positions; empty when nothing is selected.
pub fn span(len: u64, start: i64, stop: i64) -> std::ops::Range<u64> {
    let len_i = i128::from(len);
    let norm = |i: i64| {
        if i < 0 {
            len_i + i128::from(i)
        } else {
            i128::from(i)
        }
    };
    let start = norm(start).max(0);
    let stop = norm(stop).min(len_i - 1);
    if start > stop || start >= len_i {
        return 0..0;
    }
    start as u64..(stop + 1) as u64
}

/// A list's element record changes: (storage index, new value or None = removed).
pub type Changes = Vec<(u64, Option<Vec<u8>>)>;

/// Where a list's elements go when a command rewrites its middle: the new head and the element
/// records that change (storage index, new value or None = removed). The new contents are laid
/// out either from the old head or up to the old tail, whichever rewrites fewer records, so an
/// edit near one end moves only the elements between it and that end.
pub fn relayout(head: u64, old: &[Vec<u8>], new: &[Vec<u8>]) -> (u64, Changes) {
    let tail = head + old.len() as u64;
    let left = changes(head, old, head, new);
    let right_head = tail - new.len() as u64;
    let right = changes(head, old, right_head, new);
    if right.len() < left.len() {
        (right_head, right)
    } else {
        (head, left)
    }
}

fn changes(head: u64, old: &[Vec<u8>], new_head: u64, new: &[Vec<u8>]) -> Changes {
    let lo = head.min(new_head);
    let hi = (head + old.len() as u64).max(new_head + new.len() as u64);
    let at = |base: u64, v: &[Vec<u8>], i: u64| -> Option<Vec<u8>> {
        i.checked_sub(base).and_then(|p| v.get(p as usize)).cloned()
    };
    (lo..hi)
        .filter_map(|i| {
            let (o, n) = (at(head, old, i), at(new_head, new, i));
            (o != n).then_some((i, n))
        })
        .collect()
}

/// LREM: which positions go. `count` > 0 removes the first `count` matches, < 0 the last
/// `|count|`, 0 all of them.
pub fn rem_positions(elements: &[Vec<u8>], count: i64, value: &[u8]) -> Vec<usize> {
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
    };
    let matches = elements
        .iter()
        .enumerate()
        .filter(|(_, e)| e.as_slice() == value);
    let mut out: Vec<usize> = if count < 0 {
        matches.rev().take(limit).map(|(i, _)| i).collect()
    } else {
        matches.take(limit).map(|(i, _)| i).collect()
    };
    out.sort_unstable();
    out
}

/// LINSERT: the list with `value` inserted before or after the first `pivot`; None if the
/// pivot is absent.
pub fn insert(
    elements: &[Vec<u8>],
    before: bool,
    pivot: &[u8],
    value: &[u8],
) -> Option<Vec<Vec<u8>>> {
    let at = elements.iter().position(|e| e.as_slice() == pivot)?;
    let at = if before { at } else { at + 1 };
    let mut out = Vec::with_capacity(elements.len() + 1);
    out.extend_from_slice(&elements[..at]);
    out.push(value.to_vec());
    out.extend_from_slice(&elements[at..]);
    Some(out)
}

/// LPOS options: RANK (1-based, negative from the tail), COUNT (None: one match, 0: all),
/// MAXLEN (0: no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LposOpts {
    pub rank: i64,
    pub count: Option<u64>,
    pub maxlen: u64,
}

impl Default for LposOpts {
    fn default() -> Self {
        LposOpts {
            rank: 1,
            count: None,
            maxlen: 0,
        }
    }
}

/// LPOS over elements fed in scan order (from the head if rank > 0, else from the tail).
pub struct Lpos<'a> {
    opts: LposOpts,
    value: &'a [u8],
    len: u64,
    seen: u64,
    skip: u64,
    pub found: Vec<u64>,
}

impl<'a> Lpos<'a> {
    pub fn new(opts: LposOpts, value: &'a [u8], len: u64) -> Lpos<'a> {
        Lpos {
            opts,
            value,
            len,
            seen: 0,
            skip: opts.rank.unsigned_abs() - 1,
            found: Vec::new(),
        }
    }

    /// Whether the scan runs from the tail.
    pub fn reverse(&self) -> bool {
        self.opts.rank < 0
    }

    /// Feeds the next element; false when the scan may stop.
    pub fn feed(&mut self, element: &[u8]) -> bool {
        if self.opts.maxlen != 0 && self.seen >= self.opts.maxlen {
            return false;
        }
        let pos = if self.reverse() {
            self.len - 1 - self.seen
        } else {
            self.seen
        };
        self.seen += 1;
        if element == self.value {
            if self.skip > 0 {
                self.skip -= 1;
            } else {
                self.found.push(pos);
                let want = self.opts.count.unwrap_or(1);
                if want != 0 && self.found.len() as u64 >= want {
                    return false;
                }
            }
        }
        self.opts.maxlen == 0 || self.seen < self.opts.maxlen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Applies a relayout to a model of the stored records and reads the list back.
    fn apply(head: u64, old: &[Vec<u8>], new: &[Vec<u8>]) -> (Vec<Vec<u8>>, usize) {
        let mut store: std::collections::BTreeMap<u64, Vec<u8>> = old
            .iter()
            .enumerate()
            .map(|(i, e)| (head + i as u64, e.clone()))
            .collect();
        let (nh, subs) = relayout(head, old, new);
        let n = subs.len();
        for (i, val) in subs {
            match val {
                Some(val) => store.insert(i, val),
                None => store.remove(&i),
            };
        }
        let got: Vec<Vec<u8>> = (nh..nh + new.len() as u64)
            .map(|i| store.get(&i).cloned().unwrap_or_default())
            .collect();
        assert_eq!(store.len(), new.len(), "no stray records");
        (got, n)
    }

    #[test]
    fn positions_count_from_either_end() {
        assert_eq!(position(3, 0), Some(0));
        assert_eq!(position(3, -1), Some(2));
        assert_eq!(position(3, -3), Some(0));
        assert_eq!(position(3, -4), None);
        assert_eq!(position(3, 3), None);
        assert_eq!(position(0, 0), None);
        assert_eq!(position(3, i64::MIN), None);
    }

    #[test]
    fn spans_clamp_like_lrange() {
        assert_eq!(span(5, 0, -1), 0..5);
        assert_eq!(span(5, -100, 100), 0..5);
        assert_eq!(span(5, 1, 2), 1..3);
        assert_eq!(span(5, -2, -1), 3..5);
        assert_eq!(span(5, 3, 1), 0..0);
        assert_eq!(span(5, 5, 10), 0..0);
        assert_eq!(span(5, -1, -2), 0..0);
        assert_eq!(span(0, 0, -1), 0..0);
        assert_eq!(span(5, i64::MIN, i64::MAX), 0..5);
    }

    #[test]
    fn an_insert_near_the_head_moves_only_the_head_side() {
        let old = v(&["a", "b", "c", "d", "e", "f"]);
        let new = insert(&old, true, b"b", b"x").unwrap();
        assert_eq!(new, v(&["a", "x", "b", "c", "d", "e", "f"]));
        let (got, n) = apply(START, &old, &new);
        assert_eq!(got, new);
        // "a" moves one left and "x" takes its place: two records, not six.
        assert_eq!(n, 2);
    }

    #[test]
    fn an_insert_near_the_tail_moves_only_the_tail_side() {
        let old = v(&["a", "b", "c", "d", "e", "f"]);
        let new = insert(&old, false, b"e", b"x").unwrap();
        let (got, n) = apply(START, &old, &new);
        assert_eq!(got, new);
        assert_eq!(n, 2);
    }

    #[test]
    fn linsert_misses_an_absent_pivot() {
        assert_eq!(insert(&v(&["a"]), true, b"z", b"x"), None);
        assert_eq!(
            insert(&v(&["a", "a"]), false, b"a", b"x").unwrap(),
            v(&["a", "x", "a"])
        );
    }

    #[test]
    fn lrem_counts_from_the_chosen_end() {
        let l = v(&["a", "b", "a", "c", "a"]);
        assert_eq!(rem_positions(&l, 0, b"a"), vec![0, 2, 4]);
        assert_eq!(rem_positions(&l, 2, b"a"), vec![0, 2]);
        assert_eq!(rem_positions(&l, -2, b"a"), vec![2, 4]);
        assert_eq!(rem_positions(&l, i64::MIN, b"a"), vec![0, 2, 4]);
        assert!(rem_positions(&l, 0, b"z").is_empty());
    }

    #[test]
    fn lpos_rank_count_and_maxlen() {
        let l = v(&["a", "b", "c", "1", "2", "3", "c", "c"]);
        let run = |opts: LposOpts| {
            let mut p = Lpos::new(opts, b"c", l.len() as u64);
            let order: Vec<&Vec<u8>> = if p.reverse() {
                l.iter().rev().collect()
            } else {
                l.iter().collect()
            };
            for e in order {
                if !p.feed(e) {
                    break;
                }
            }
            p.found
        };
        let o = LposOpts::default();
        assert_eq!(run(o), vec![2]);
        assert_eq!(run(LposOpts { rank: 2, ..o }), vec![6]);
        assert_eq!(run(LposOpts { rank: -1, ..o }), vec![7]);
        assert_eq!(run(LposOpts { rank: -3, ..o }), vec![2]);
        assert_eq!(run(LposOpts { rank: 4, ..o }), Vec::<u64>::new());
        assert_eq!(
            run(LposOpts {
                count: Some(0),
                ..o
            }),
            vec![2, 6, 7]
        );
        assert_eq!(
            run(LposOpts {
                count: Some(2),
                rank: -1,
                ..o
            }),
            vec![7, 6]
        );
        assert_eq!(
            run(LposOpts {
                count: Some(0),
                maxlen: 7,
                ..o
            }),
            vec![2, 6]
        );
        assert_eq!(
            run(LposOpts {
                count: Some(0),
                maxlen: 1,
                rank: -1,
            }),
            vec![7]
        );
    }

    #[test]
    fn metadata_keeps_its_ends_and_the_count() {
        let mut m = ListMeta::new(42);
        m.head = START - 3;
        m.tail = START + 2;
        m.coll.expires_at = Some(99);
        let s = m.to_stored();
        let back = ListMeta::of(&Stored::decode(&s.encode()).unwrap()).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.coll.count, 5);
        assert_eq!(back.head, START - 3);
        assert_eq!(back.coll.expires_at, Some(99));
        assert_eq!(list_of(Some(&s)), Ok(Some(back)));
        let string = Stored::string(b"x".to_vec(), None);
        assert_eq!(list_of(Some(&string)), Err(WRONGTYPE));
        assert_eq!(list_of(None), Ok(None));
    }

    #[test]
    fn fields_sort_in_list_order() {
        assert!(field(START - 1) < field(START));
        assert!(field(START) < field(START + 1));
    }

    proptest! {
        /// Any rewrite lands the new contents intact and never touches more records than the
        /// naive "rewrite everything" would.
        #[test]
        fn relayout_produces_the_new_list(
            old in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..2), 0..12),
            new in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..2), 0..12),
        ) {
            let (got, n) = apply(START, &old, &new);
            prop_assert_eq!(&got, &new);
            prop_assert!(n <= old.len().max(new.len()) + old.len().min(new.len()));
        }

        #[test]
        fn lrem_then_relayout_keeps_the_rest_in_order(
            old in proptest::collection::vec(0u8..3, 0..16),
            count in -3i64..3,
        ) {
            let old: Vec<Vec<u8>> = old.into_iter().map(|b| vec![b]).collect();
            let gone = rem_positions(&old, count, &[0]);
            let new: Vec<Vec<u8>> = old
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, e)| e.clone())
                .collect();
            let (got, _) = apply(START, &old, &new);
            prop_assert_eq!(got, new);
        }
    }
}
