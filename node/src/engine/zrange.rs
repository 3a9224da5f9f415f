//! Sorted-set ranges (by rank, score or member), parsed with Redis 7's rules, and the walk
//! that picks a range's members from an ordered scan. The walk is a small state machine fed one
//! (member, score) at a time, so the node's reads (committed records) and the writer (records
//! plus its pending batches) share it, and a scan stops as soon as the range is done.

use super::zscore;

pub const NOT_FLOAT_RANGE: &str = "ERR min or max is not a float";
pub const NOT_LEX_RANGE: &str = "ERR min or max not valid string range item";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRange {
    pub min: f64,
    pub min_excl: bool,
    pub max: f64,
    pub max_excl: bool,
}

impl ScoreRange {
    pub fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, &'static str> {
        let bound = |v: &[u8]| -> Option<(f64, bool)> {
            match v.strip_prefix(b"(") {
                Some(rest) => Some((zscore::parse_bound_value(rest)?, true)),
                None => Some((zscore::parse_bound_value(v)?, false)),
            }
        };
        let (min, min_excl) = bound(min).ok_or(NOT_FLOAT_RANGE)?;
        let (max, max_excl) = bound(max).ok_or(NOT_FLOAT_RANGE)?;
        Ok(ScoreRange {
            min,
            min_excl,
            max,
            max_excl,
        })
    }

    pub fn above_min(&self, s: f64) -> bool {
        if self.min_excl {
            s > self.min
        } else {
            s >= self.min
        }
    }

    pub fn below_max(&self, s: f64) -> bool {
        if self.max_excl {
            s < self.max
        } else {
            s <= self.max
        }
    }

    /// No score can be inside.
    pub fn is_empty(&self) -> bool {
        self.min > self.max || self.min == self.max && (self.min_excl || self.max_excl)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LexBound {
    NegInf,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
    PosInf,
}

impl LexBound {
    fn parse(v: &[u8]) -> Option<LexBound> {
        match v.split_first() {
            Some((b'-', [])) => Some(LexBound::NegInf),
            Some((b'+', [])) => Some(LexBound::PosInf),
            Some((b'[', rest)) => Some(LexBound::Incl(rest.to_vec())),
            Some((b'(', rest)) => Some(LexBound::Excl(rest.to_vec())),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    pub fn parse(min: &[u8], max: &[u8]) -> Result<LexRange, &'static str> {
        Ok(LexRange {
            min: LexBound::parse(min).ok_or(NOT_LEX_RANGE)?,
            max: LexBound::parse(max).ok_or(NOT_LEX_RANGE)?,
        })
    }

    pub fn above_min(&self, m: &[u8]) -> bool {
        match &self.min {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Incl(b) => m >= b.as_slice(),
            LexBound::Excl(b) => m > b.as_slice(),
        }
    }

    pub fn below_max(&self, m: &[u8]) -> bool {
        match &self.max {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Incl(b) => m <= b.as_slice(),
            LexBound::Excl(b) => m < b.as_slice(),
        }
    }
}

/// What a range command selects.
#[derive(Clone, Debug, PartialEq)]
pub enum RangeBy {
    /// Ranks as given (negative: from the end), both inclusive.
    Rank {
        start: i64,
        end: i64,
    },
    Score(ScoreRange),
    Lex(LexRange),
}

/// A whole range query: what, which direction, and LIMIT offset/count (count < 0: all).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeQuery {
    pub by: RangeBy,
    pub rev: bool,
    pub offset: i64,
    pub count: i64,
}

impl RangeQuery {
    pub fn new(by: RangeBy, rev: bool) -> RangeQuery {
        RangeQuery {
            by,
            rev,
            offset: 0,
            count: -1,
        }
    }
}

/// Ranks `start..=end` (Redis's normalisation of negative and out-of-range ranks) as (skip,
/// take) over a set of `len` members; None when empty.
pub fn rank_window(start: i64, end: i64, len: u64) -> Option<(u64, u64)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        return None;
    }
    let end = end.min(len - 1);
    Some((start as u64, (end - start + 1) as u64))
}

/// Whether the walk goes on after an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    Stop,
}

/// Picks a query's members from a scan in the query's direction (by score and member for rank
/// and score queries, by member for lex ones), starting at or before the range.
pub struct Walk {
    query: RangeQuery,
    /// Rank queries: members still to skip, and to take.
    skip: u64,
    take: u64,
    out: Vec<(Vec<u8>, f64)>,
    done: bool,
}

impl Walk {
    /// `len`: the set's size (rank queries need it).
    pub fn new(query: RangeQuery, len: u64) -> Walk {
        let mut w = Walk {
            skip: 0,
            take: u64::MAX,
            out: Vec::new(),
            done: false,
            query,
        };
        match &w.query.by {
            RangeBy::Rank { start, end } => match rank_window(*start, *end, len) {
                Some((s, t)) => (w.skip, w.take) = (s, t),
                None => w.done = true,
            },
            RangeBy::Score(r) if r.is_empty() => w.done = true,
            _ => {}
        }
        // Redis: a negative offset, or one past the set, selects nothing; LIMIT x 0 too.
        let q = &w.query;
        if q.offset < 0 || q.offset > 0 && q.offset as u64 >= len || q.count == 0 {
            w.done = true;
        }
        if q.count > 0 {
            w.take = w.take.min(q.count as u64);
        }
        w.skip = w.skip.saturating_add(q.offset.max(0) as u64);
        w
    }

    /// True once nothing more can be selected (the scan need not start).
    pub fn done(&self) -> bool {
        self.done
    }

    /// Feeds the next element of the scan.
    pub fn offer(&mut self, member: &[u8], score: f64) -> Step {
        if self.done {
            return Step::Stop;
        }
        let rev = self.query.rev;
        // Before the range (skipped) or past it (stop)?
        let (before, past) = match &self.query.by {
            RangeBy::Rank { .. } => (false, false),
            RangeBy::Score(r) => {
                if rev {
                    (!r.below_max(score), !r.above_min(score))
                } else {
                    (!r.above_min(score), !r.below_max(score))
                }
            }
            RangeBy::Lex(r) => {
                if rev {
                    (!r.below_max(member), !r.above_min(member))
                } else {
                    (!r.above_min(member), !r.below_max(member))
                }
            }
        };
        if past {
            self.done = true;
            return Step::Stop;
        }
        if before {
            return Step::Continue;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Step::Continue;
        }
        self.out.push((member.to_vec(), score));
        if self.out.len() as u64 >= self.take {
            self.done = true;
            return Step::Stop;
        }
        Step::Continue
    }

    pub fn finish(self) -> Vec<(Vec<u8>, f64)> {
        self.out
    }
}

/// Where a scan for `q` starts, as a field of the family it walks (score index for rank and
/// score queries, members for lex ones): forward scans seek to `Lower(field)` and walk up;
/// reverse scans walk down from just below `Upper(field)`; `Whole` walks the family from its end.
#[derive(Debug, PartialEq, Eq)]
pub enum Seek {
    Whole,
    Lower(Vec<u8>),
    Upper(Vec<u8>),
}

pub fn seek(q: &RangeQuery) -> Seek {
    match (&q.by, q.rev) {
        (RangeBy::Rank { .. }, _) => Seek::Whole,
        (RangeBy::Score(r), false) => Seek::Lower(zscore::encode_score(r.min).to_vec()),
        (RangeBy::Score(r), true) => {
            // Every field of score max sorts below encode(max) ++ 0xFF.. : the bound is the
            // next encoding up (none past +inf).
            let e = u64::from_be_bytes(zscore::encode_score(r.max));
            match e.checked_add(1) {
                Some(n) => Seek::Upper(n.to_be_bytes().to_vec()),
                None => Seek::Whole,
            }
        }
        (RangeBy::Lex(r), false) => match &r.min {
            LexBound::Incl(b) | LexBound::Excl(b) => Seek::Lower(b.clone()),
            _ => Seek::Whole,
        },
        (RangeBy::Lex(r), true) => match &r.max {
            LexBound::Incl(b) => {
                let mut u = b.clone();
                u.push(0);
                Seek::Upper(u)
            }
            LexBound::Excl(b) => Seek::Upper(b.clone()),
            _ => Seek::Whole,
        },
    }
}

/// Whether `q` walks the member family (lex) rather than the score index.
pub fn walks_members(q: &RangeQuery) -> bool {
    matches!(q.by, RangeBy::Lex(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: RangeQuery, elems: &[(&str, f64)]) -> Vec<String> {
        let mut sorted: Vec<(&str, f64)> = elems.to_vec();
        if walks_members(&q) {
            sorted.sort_by(|a, b| a.0.cmp(b.0));
        } else {
            sorted.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then(a.0.cmp(b.0)));
        }
        if q.rev {
            sorted.reverse();
        }
        let mut w = Walk::new(q, elems.len() as u64);
        for (m, s) in sorted {
            if w.offer(m.as_bytes(), s) == Step::Stop {
                break;
            }
        }
        w.finish()
            .into_iter()
            .map(|(m, _)| String::from_utf8(m).unwrap())
            .collect()
    }

    const Z: &[(&str, f64)] = &[("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0), ("e", 5.0)];

    fn score(min: &str, max: &str) -> RangeBy {
        RangeBy::Score(ScoreRange::parse(min.as_bytes(), max.as_bytes()).unwrap())
    }

    #[test]
    fn ranks_normalise_like_redis() {
        assert_eq!(rank_window(0, -1, 5), Some((0, 5)));
        assert_eq!(rank_window(-2, -1, 5), Some((3, 2)));
        assert_eq!(rank_window(-100, 1, 5), Some((0, 2)));
        assert_eq!(rank_window(3, 100, 5), Some((3, 2)));
        assert_eq!(rank_window(5, 10, 5), None);
        assert_eq!(rank_window(2, 1, 5), None);
        assert_eq!(rank_window(0, -6, 5), None);
        assert_eq!(rank_window(0, 0, 0), None);
    }

    #[test]
    fn rank_ranges_both_directions() {
        let q = |s, e, rev| RangeQuery::new(RangeBy::Rank { start: s, end: e }, rev);
        assert_eq!(run(q(1, 2, false), Z), ["b", "c"]);
        assert_eq!(run(q(0, 1, true), Z), ["e", "d"]);
        assert_eq!(run(q(-1, -1, false), Z), ["e"]);
    }

    #[test]
    fn score_ranges_with_exclusive_bounds_and_limits() {
        assert_eq!(run(RangeQuery::new(score("(1", "3"), false), Z), ["b", "c"]);
        assert_eq!(run(RangeQuery::new(score("2", "(4"), true), Z), ["c", "b"]);
        assert_eq!(
            run(RangeQuery::new(score("-inf", "+inf"), false), Z).len(),
            5
        );
        assert!(run(RangeQuery::new(score("(2", "(2"), false), Z).is_empty());
        assert!(run(RangeQuery::new(score("3", "1"), false), Z).is_empty());
        let mut q = RangeQuery::new(score("-inf", "inf"), false);
        (q.offset, q.count) = (1, 2);
        assert_eq!(run(q.clone(), Z), ["b", "c"]);
        (q.offset, q.count) = (1, -5);
        assert_eq!(run(q.clone(), Z), ["b", "c", "d", "e"]);
        (q.offset, q.count) = (-1, 2);
        assert!(run(q.clone(), Z).is_empty());
        (q.offset, q.count) = (5, 2);
        assert!(run(q.clone(), Z).is_empty());
        (q.offset, q.count) = (0, 0);
        assert!(run(q, Z).is_empty());
    }

    #[test]
    fn lex_ranges_parse_and_select() {
        let lex =
            |a: &str, b: &str| RangeBy::Lex(LexRange::parse(a.as_bytes(), b.as_bytes()).unwrap());
        let same: Vec<(&str, f64)> = ["alpha", "bar", "cool", "down", "elephant"]
            .iter()
            .map(|m| (*m, 0.0))
            .collect();
        assert_eq!(
            run(RangeQuery::new(lex("-", "[cool"), false), &same),
            ["alpha", "bar", "cool"]
        );
        assert_eq!(
            run(RangeQuery::new(lex("(bar", "(down"), false), &same),
            ["cool"]
        );
        assert_eq!(
            run(RangeQuery::new(lex("[cool", "-"), true), &same).len(),
            0
        );
        assert_eq!(
            run(RangeQuery::new(lex("-", "+"), true), &same)[0],
            "elephant"
        );
        assert_eq!(LexRange::parse(b"a", b"+"), Err(NOT_LEX_RANGE));
        assert_eq!(LexRange::parse(b"", b"+"), Err(NOT_LEX_RANGE));
        assert_eq!(LexRange::parse(b"+x", b"+"), Err(NOT_LEX_RANGE));
        assert_eq!(ScoreRange::parse(b"(x", b"1"), Err(NOT_FLOAT_RANGE));
        assert_eq!(ScoreRange::parse(b"nan", b"1"), Err(NOT_FLOAT_RANGE));
    }

    #[test]
    fn reverse_score_seek_covers_every_member_at_max() {
        let q = RangeQuery::new(score("-inf", "2"), true);
        let Seek::Upper(u) = seek(&q) else {
            panic!("reverse score query seeks from above")
        };
        let at_max = zscore::index_field(2.0, &[0xFF; 20]);
        assert!(at_max < u);
        assert!(zscore::index_field(2.000_000_000_000_001, b"") >= u);
        let Seek::Upper(top) = seek(&RangeQuery::new(score("-inf", "+inf"), true)) else {
            panic!("reverse score query seeks from above")
        };
        assert!(zscore::index_field(f64::INFINITY, &[0xFF; 20]) < top);
    }
}
