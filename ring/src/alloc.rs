//! Token allocation, algorithm 1: replays membership operations into tokens.
//!
//! Every member owns the ranges `(pred(t), t]` of its tokens `t`. The allocator keeps per
//! member its tokens with their range spans and its load (sum of spans), and applies:
//!
//! * the first owner gets `vnodes` evenly spaced tokens (whenever one member owns everything);
//! * a join (or weight increase) *carves*: it takes exactly its target share from the members
//!   with the highest load per weight (water-filling them down to a common level, at most
//!   `vnodes` donors), cutting a prefix `(p, p + a]` out of each donor's largest ranges with a new
//!   token of the joiner (at most `vnodes` pieces);
//! * a leave (or weight decrease) *hands off*: each of the giver's ranges is split between the
//!   owners of its two neighbouring ranges by moving boundaries, which creates no token, and
//!   pieces from the middle for other least loaded members; the amounts water-fill the least
//!   loaded of those;
//! * adjacent tokens of one owner are merged.
//!
//! So data only moves to a joiner and from a leaver, and a joiner gets exactly its share. A
//! member holds at most `vnodes` tokens unless its weight was raised or keeping the cap would
//! leave a member more than 5% off its fair share. Integer
//! arithmetic only; ties broken by member join order, so the result is a pure function of the
//! history.
//!
//! Speed (a 1000-member build makes about 63 000 cuts): tokens live in a linked list addressed
//! by node id ([`TokenList`]), so that splitting, moving and merging a range needs no search;
//! each member keeps its ranges sorted largest first ([`MemberRanges`]), so that a donor's
//! largest ranges are a prefix (a joiner's new ranges are appended and sorted once per join);
//! the members owning tokens are kept ordered by load per weight ([`LoadOrder`]), updated only
//! for the members an operation changed; and the sums the rules need per operation (total and
//! lightest weight, how many members own tokens) are kept up to date instead of recounted. The
//! list's nodes are scattered in memory, so a join loads the nodes its cuts will read in one pass
//! first (see [`TokenList::warm`]). None of this changes a decision: `tests/pinned_layouts.rs`
//! pins the tokens of both algorithms.

use crate::error::{Error, Result};
use crate::load_order::{LoadOrder, Norm};
use crate::member_ranges::{MemberRanges, Range};
use crate::range::FULL_SPAN;
use crate::spec::RingOp;
use crate::token_list::{NodeId, TokenList};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

pub(crate) struct MemberState {
    pub name: String,
    pub weight: u32,
    pub active: bool,
    pub load: u128,
    pub ranges: MemberRanges,
}

pub(crate) struct Allocator {
    /// The algorithm version being replayed (see [`crate::spec::ALGORITHMS`]).
    algorithm: u32,
    vnodes: u16,
    pub tokens: TokenList,
    pub members: Vec<MemberState>,
    by_name: BTreeMap<String, u32>,
    /// Sum of the active members' weights.
    total_weight: u128,
    /// How many active members have each positive weight (the lightest is the first key).
    weights: BTreeMap<u32, usize>,
    /// How many active members own at least one token.
    owners: usize,
    /// Members owning tokens, most loaded first (the donors of a join).
    order: LoadOrder,
    /// The taker of the join in progress: its new ranges are appended unsorted and sorted
    /// once the join has cut them all (see [`MemberRanges::push`]).
    collecting: Option<u32>,
}

/// One of a giver's ranges during a hand-off: `(p, t]`, neighbours x (owns p) and y (owns the
/// successor of t), amounts given to x (from the left) and y (from the right).
struct Cut {
    p: u64,
    p_node: NodeId,
    t: u64,
    t_node: NodeId,
    span: u128,
    x: u32,
    y: u32,
    gx: u128,
    gy: u128,
    /// Pieces from the middle for non-neighbours.
    mid: Vec<(u32, u128)>,
}

impl Cut {
    /// What is neither given to a neighbour nor to a middle recipient yet.
    fn room(&self) -> u128 {
        self.span - self.gx - self.gy - self.mid.iter().map(|m| m.1).sum::<u128>()
    }
}

/// The token cap (`vnodes` per member) gives way when keeping it would leave a member more than
/// 1/SLACK (5%) off its fair share.
const SLACK: u128 = 20;

/// Algorithm 2 grants a member at most this many times `vnodes` tokens, however heavy.
const MAX_WEIGHT_RATIO: u32 = 16;

/// The low bits of a [`drop_rank`]: the donor's position.
const DROP_INDEX: u128 = (1 << 31) - 1;

/// The order in which a join drops donors to keep its pieces within budget, as one integer
/// (smallest first): most pieces first, then smallest part, then position. Packed because the
/// heap of a join compares these about a thousand times: pieces in the top 32 bits (a donor
/// cannot need more pieces than there are tokens, which node ids count in 32 bits), the part
/// (at most 2^64) in the next 65, the position (below 2^31: at most one donor per member) in
/// the low 31.
fn drop_rank(pieces: usize, part: u128, position: usize) -> u128 {
    debug_assert!(part <= FULL_SPAN && (position as u128) <= DROP_INDEX);
    let pieces = u32::try_from(pieces).unwrap_or(u32::MAX);
    (u128::from(!pieces) << 96) | (part << 31) | position as u128
}

/// How many of `ranges` (largest first) it takes to cover `amount`.
fn pieces_needed(ranges: &[Range], amount: u128) -> usize {
    if amount == 0 {
        return 0;
    }
    let mut covered = 0u128;
    for (i, r) in ranges.iter().enumerate() {
        covered += r.span();
        if covered >= amount {
            return i + 1;
        }
    }
    ranges.len().max(1)
}

/// The water-fill of `set` (sorted by load per weight, descending) for `amount`: how many of
/// them give (the first `count`: the next one is not above their common level) and those
/// members' total load and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fill {
    count: usize,
    load: u128,
    weight: u128,
}

/// How [`level`] fills `set` for `amount`.
fn fill(set: &[Norm], amount: u128) -> Fill {
    let (mut sum, mut wsum, mut k) = (0u128, 0u128, 0usize);
    while k < set.len() {
        let d = &set[k];
        sum += d.load();
        wsum += u128::from(d.weight);
        k += 1;
        if sum > amount
            && let Some(n) = set.get(k)
            && (sum - amount) * u128::from(n.weight) >= n.load() * wsum
        {
            break;
        }
    }
    Fill {
        count: k,
        load: sum,
        weight: wsum,
    }
}

/// Water-fill `set` (sorted by load per weight, descending) down to a common level so that
/// they give `amount` in total (which their loads must exceed), given its [`fill`] (which a
/// join has computed already for its first donor set). Returns each one's part.
fn level(set: &[Norm], amount: u128, f: Fill) -> Vec<u128> {
    debug_assert_eq!(f, fill(set, amount));
    let (k, num, wsum) = (f.count, f.load.saturating_sub(amount), f.weight);
    // The level share of a weight, divided out once per run of equal weights instead of a
    // 128-bit division per donor.
    let mut share: Option<(u32, u128)> = None;
    let mut gives: Vec<u128> = set
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i >= k {
                return 0;
            }
            let level = match share {
                Some((w, l)) if w == d.weight => l,
                _ => {
                    let l = (num * u128::from(d.weight)).checked_div(wsum).unwrap_or(0);
                    share = Some((d.weight, l));
                    l
                }
            };
            d.load() - level.min(d.load())
        })
        .collect();
    let mut excess = gives.iter().sum::<u128>().saturating_sub(amount);
    for g in &mut gives {
        // Rounding leaves little excess: the first donor or two absorb it.
        if excess == 0 {
            break;
        }
        let d = excess.min(*g);
        *g -= d;
        excess -= d;
    }
    gives
}

fn span_between(p: u64, t: u64) -> u128 {
    if p == t {
        FULL_SPAN
    } else {
        u128::from(t.wrapping_sub(p))
    }
}

impl Allocator {
    pub fn new(algorithm: u32, vnodes: u16) -> Self {
        Allocator {
            algorithm,
            vnodes: vnodes.max(1),
            tokens: TokenList::default(),
            members: Vec::new(),
            by_name: BTreeMap::new(),
            total_weight: 0,
            weights: BTreeMap::new(),
            owners: 0,
            order: LoadOrder::default(),
            collecting: None,
        }
    }

    /// Set an active member's weight, keeping the weight sums current.
    fn set_weight(&mut self, id: u32, weight: u32) {
        let old = self.members[id as usize].weight;
        self.forget_weight(old);
        self.members[id as usize].weight = weight;
        self.order.mark(id);
        self.total_weight += u128::from(weight);
        if weight > 0 {
            *self.weights.entry(weight).or_insert(0) += 1;
        }
    }

    fn forget_weight(&mut self, weight: u32) {
        self.total_weight -= u128::from(weight);
        if let Some(n) = self.weights.get_mut(&weight) {
            *n -= 1;
            if *n == 0 {
                self.weights.remove(&weight);
            }
        }
    }

    /// The active members' ids by name.
    pub fn by_name(&self) -> &BTreeMap<String, u32> {
        &self.by_name
    }

    /// Active members (in join order).
    pub fn active(&self) -> impl Iterator<Item = (u32, &MemberState)> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.active)
            .map(|(i, m)| (i as u32, m))
    }

    pub fn apply(&mut self, op: &RingOp) -> Result<()> {
        match op {
            RingOp::Join { member, weight } => {
                if member.is_empty() {
                    return Err(Error::InvalidMemberName {
                        member: member.clone(),
                    });
                }
                if self.by_name.contains_key(member) {
                    return Err(Error::DuplicateMember {
                        member: member.clone(),
                    });
                }
                let id = self.members.len() as u32;
                self.members.push(MemberState {
                    name: member.clone(),
                    weight: 0,
                    active: true,
                    load: 0,
                    ranges: MemberRanges::default(),
                });
                self.set_weight(id, *weight);
                self.by_name.insert(member.clone(), id);
                self.rebalance(id);
            }
            RingOp::Leave { member } => {
                let id = self.id(member)?;
                self.set_weight(id, 0);
                self.rebalance(id);
                let m = &mut self.members[id as usize];
                m.active = false;
                self.order.mark(id);
                if !m.ranges.is_empty() {
                    self.owners -= 1;
                }
                self.by_name.remove(member);
            }
            RingOp::Reweight { member, weight } => {
                let id = self.id(member)?;
                let unchanged = self.members[id as usize].weight == *weight;
                self.set_weight(id, *weight);
                // Algorithm 2: re-stating a weight moves nothing (algorithm 1 topped the
                // member up to its exact share, past its token cap).
                if !(unchanged && self.algorithm >= 2) {
                    self.rebalance(id);
                }
            }
        }
        self.reseed_sole_owner();
        Ok(())
    }

    fn id(&self, member: &str) -> Result<u32> {
        self.by_name
            .get(member)
            .copied()
            .ok_or_else(|| Error::UnknownMember {
                member: member.to_owned(),
            })
    }

    /// Move member `id` to its target share after its weight changed, moving data only to or
    /// from it.
    fn rebalance(&mut self, id: u32) {
        let total = self.total_weight;
        let m = &self.members[id as usize];
        let load = m.load;
        let target = (FULL_SPAN * u128::from(m.weight))
            .checked_div(total)
            .unwrap_or(0);
        if self.tokens.is_empty() {
            if target > 0 {
                self.seed(id);
            }
        } else if target > load {
            if load < FULL_SPAN {
                self.take(id, target - load);
            }
        } else if target < load {
            self.hand_off(id, load - target);
        }
    }

    /// Whenever exactly one member owns everything, give it `vnodes` evenly spaced tokens so the
    /// next joiner can take interleaved pieces.
    fn reseed_sole_owner(&mut self) {
        if self.owners != 1 {
            return;
        }
        let sole = self
            .active()
            .find(|(_, m)| !m.ranges.is_empty())
            .map(|(i, _)| i);
        if let Some(only) = sole {
            self.seed(only);
        }
    }

    fn seed(&mut self, id: u32) {
        self.clear_tokens();
        let v = u128::from(self.vnodes);
        let mut prev = u64::MAX;
        let mut first = None;
        for i in 0..v {
            let token = ((i + 1) * FULL_SPAN / v - 1) as u64;
            let span = if v == 1 {
                FULL_SPAN
            } else {
                span_between(prev, token)
            };
            // Ascending tokens: each goes last, i.e. right before the first on the circle.
            let node = match first {
                None => self.tokens.push_first(token, id),
                Some(head) => self.tokens.insert_before(head, token, id),
            };
            first.get_or_insert(node);
            self.add_range(id, Range::new(span, token, node));
            prev = token;
        }
    }

    fn clear_tokens(&mut self) {
        for (id, m) in self.members.iter_mut().enumerate() {
            m.load = 0;
            m.ranges.clear();
            self.order.mark(id as u32);
        }
        self.tokens.clear();
        self.owners = 0;
    }

    // ---- token primitives: keep member spans, loads, the owner count and the load order
    // exact ----

    /// The span of the range ended by node `t`.
    fn span_of(&self, t: NodeId) -> u128 {
        span_between(self.tokens.token(self.tokens.prev(t)), self.tokens.token(t))
    }

    fn add_range(&mut self, owner: u32, r: Range) {
        let m = &mut self.members[owner as usize];
        if m.ranges.is_empty() && m.active {
            self.owners += 1;
        }
        m.load += r.span();
        if self.collecting == Some(owner) {
            // Marked once when the join started collecting (not once per piece).
            m.ranges.push(r);
        } else {
            m.ranges.insert(r);
            self.order.mark(owner);
        }
    }

    fn drop_range(&mut self, owner: u32, span: u128, token: u64) -> Option<Range> {
        let m = &mut self.members[owner as usize];
        let r = m.ranges.remove(span, token)?;
        m.load -= span;
        if m.ranges.is_empty() && m.active {
            self.owners -= 1;
        }
        self.order.mark(owner);
        Some(r)
    }

    /// Insert token `n` owned by `owner` right before node `t` (`n` lies strictly inside
    /// `t`'s range): it takes `(pred(t), n]` from `t`'s owner. Returns the new node.
    fn insert_before(&mut self, t: NodeId, n: u64, owner: u32) -> NodeId {
        let p = self.tokens.token(self.tokens.prev(t));
        let span_n = span_between(p, n);
        let span_t = self.span_of(t);
        let owner_t = self.tokens.owner(t);
        let m = &mut self.members[owner_t as usize];
        m.ranges
            .resize(span_t, self.tokens.token(t), span_t - span_n);
        m.load -= span_n;
        self.order.mark(owner_t);
        let node = self.tokens.insert_before(t, n, owner);
        self.add_range(owner, Range::new(span_n, n, node));
        node
    }

    /// [`Allocator::insert_before`] for a join's cut, which knows what that recomputes: give
    /// the first `piece` of `r` (the `i`-th largest range of `donor`, shorter than it) to
    /// `taker`. Returns the new node.
    fn cut_front(&mut self, donor: u32, i: usize, r: Range, piece: u128, taker: u32) -> NodeId {
        let p = self.tokens.token(self.tokens.prev(r.node));
        let m = &mut self.members[donor as usize];
        m.ranges.resize_at(i, r.span() - piece);
        m.load -= piece;
        self.order.mark(donor);
        let node = self
            .tokens
            .insert_before(r.node, p.wrapping_add(piece as u64), taker);
        self.add_range(taker, Range::new(piece, p.wrapping_add(piece as u64), node));
        node
    }

    /// Remove token `a` (with at least two tokens): its range goes to the successor's owner.
    fn remove(&mut self, a: NodeId) {
        let s = self.tokens.next(a);
        if s == a {
            return;
        }
        let (span_a, span_s) = (self.span_of(a), self.span_of(s));
        let (owner_a, owner_s) = (self.tokens.owner(a), self.tokens.owner(s));
        if self
            .drop_range(owner_a, span_a, self.tokens.token(a))
            .is_none()
        {
            return;
        }
        let m = &mut self.members[owner_s as usize];
        m.ranges
            .resize(span_s, self.tokens.token(s), span_s + span_a);
        m.load += span_a;
        self.order.mark(owner_s);
        self.tokens.remove(a);
    }

    /// Give node `t`'s range to `new_owner`.
    fn reassign(&mut self, t: NodeId, new_owner: u32) {
        let old = self.tokens.owner(t);
        if old == new_owner {
            return;
        }
        let Some(r) = self.drop_range(old, self.span_of(t), self.tokens.token(t)) else {
            return;
        };
        self.add_range(new_owner, r);
        self.tokens.set_owner(t, new_owner);
    }

    /// Merge runs of adjacent same-owner tokens around `touched` (needs two owners or more).
    fn merge_around(&mut self, touched: &[NodeId]) {
        for &start in touched {
            let mut a = start;
            while self.tokens.is_live(a) {
                let o = self.tokens.owner(a);
                let p = self.tokens.prev(a);
                if p != a && self.tokens.owner(p) == o {
                    self.remove(p);
                    continue;
                }
                let s = self.tokens.next(a);
                if s != a && self.tokens.owner(s) == o {
                    self.remove(a);
                    a = s;
                    continue;
                }
                break;
            }
        }
    }

    /// Compare load per weight (a "higher" member is more loaded relative to its weight).
    fn cmp_norm(&self, a: u32, b: u32) -> Ordering {
        let (ma, mb) = (&self.members[a as usize], &self.members[b as usize]);
        if ma.weight == mb.weight && ma.weight > 0 {
            // The common case, without the two 128-bit products (same order).
            return ma.load.cmp(&mb.load);
        }
        (ma.load * u128::from(mb.weight)).cmp(&(mb.load * u128::from(ma.weight)))
    }

    // ---- join / weight increase ----

    /// Member `taker` takes `amount` from the most loaded members (per weight).
    ///
    /// Donors are the members with the highest load per weight, cut down to a common level
    /// (water-filling). Each donor's part is cut from its largest ranges; the number of pieces
    /// is kept within `vnodes` (the taker's new tokens) by dropping the donors that would need
    /// the most pieces and re-levelling the others.
    fn take(&mut self, taker: u32, amount: u128) {
        if amount == 0 {
            return;
        }
        let budget = self.piece_budget(taker);
        // The `budget` most loaded donors, most loaded first; all of them only if those cannot
        // cover `amount`.
        self.refresh_order();
        let ranked = self.order.sorted();
        let is_donor = |d: &&Norm| d.id != taker;
        // Sized up front: collecting a filtered iterator grows the vector step by step.
        let mut donors: Vec<Norm> = Vec::with_capacity(budget.min(ranked.len()));
        donors.extend(ranked.iter().filter(is_donor).take(budget).copied());
        if donors.is_empty() {
            return;
        }
        let count = ranked.len() - usize::from(self.members[taker as usize].load > 0);
        let mut sorted = donors.len();

        // Natural water-fill count, at most `budget` donors unless more are needed to cover.
        let (mut sum, mut wsum, mut k) = (0u128, 0u128, 0usize);
        loop {
            if k == sorted {
                if sorted < count && sum <= amount {
                    donors = self
                        .order
                        .sorted()
                        .iter()
                        .filter(is_donor)
                        .copied()
                        .collect();
                    sorted = donors.len();
                } else {
                    break;
                }
            }
            let d = &donors[k];
            sum += d.load();
            wsum += u128::from(d.weight);
            k += 1;
            if sum > amount && k < sorted {
                let next = &donors[k];
                let above = (sum - amount) * u128::from(next.weight) < next.load() * wsum;
                if !above {
                    break;
                }
            }
        }
        let amount = amount.min(sum);
        let total_weight = self.total_weight;
        // The donors' loads and weights as of the refresh above (nothing changes them before
        // the cuts), contiguous rather than read from the members.
        donors.truncate(k);
        let mut set = donors;
        // The walk above is the first set's fill: all of it gives (each one above the level).
        let mut filled = Fill {
            count: k,
            load: sum,
            weight: wsum,
        };
        // Fresh vectors per pass: reusing buffers kept across joins cut allocations and
        // instructions but made the build 10-15% slower in CPU time (round 4 in the README).
        let (gives, needs) = loop {
            let gives = level(&set, amount, filled);
            // Each donor's part is cut from its largest ranges.
            let needs: Vec<usize> = set
                .iter()
                .zip(&gives)
                .map(|(d, &g)| pieces_needed(self.members[d.id as usize].ranges.by_size(), g))
                .collect();
            let total: usize = needs.iter().sum();
            if total <= budget || set.len() == 1 {
                break (gives, needs);
            }
            // Drop the donors needing the most pieces (their amount goes to the others), but only
            // those that stay within 5% of their fair share: balance wins over the token cap.
            // Most pieces first, then smallest part, then position: a total order, taken from a
            // heap because the loop usually stops after a few.
            let mut order: BinaryHeap<Reverse<u128>> = (0..set.len())
                .map(|i| Reverse(drop_rank(needs[i], gives[i], i)))
                .collect();
            let mut freed = 0usize;
            let mut dropped = 0usize;
            let mut drop = vec![false; set.len()];
            // All of `set` gives (see below), so its fill's sums are its totals.
            let (mut kept_load, mut kept_weight) = (filled.load, filled.weight);
            while let Some(Reverse(rank)) = order.pop() {
                let i = (rank & DROP_INDEX) as usize;
                if total - freed <= budget || set.len() - dropped == 1 {
                    break;
                }
                let (load, weight) = (set[i].load(), u128::from(set[i].weight));
                let fair = FULL_SPAN * weight / total_weight.max(1);
                if kept_load - load <= amount || load * SLACK > fair * (SLACK + 1) {
                    continue;
                }
                // Algorithm 2: the donors that stay must not be levelled under 90% of their
                // fair share either (algorithm 1 dropped donors until a few gave all).
                if self.algorithm >= 2
                    && (kept_load - load - amount) * total_weight * 10
                        < FULL_SPAN * (kept_weight - weight) * 9
                {
                    continue;
                }
                kept_load -= load;
                kept_weight -= weight;
                freed += needs[i];
                dropped += 1;
                drop[i] = true;
            }
            if freed == 0 {
                break (gives, needs);
            }
            let mut i = 0;
            set.retain(|_| {
                i += 1;
                !drop[i - 1]
            });
            // No second walk: every donor of `set` was above its level, and dropping donors
            // (each above it too) only lowers the level the others must reach to give
            // `amount`, so all those kept still give. (`level` checks this in debug builds.)
            filled = Fill {
                count: set.len(),
                load: kept_load,
                weight: kept_weight,
            };
        };

        let total: usize = needs.iter().sum();
        let spare = budget.saturating_sub(total) as u128;
        let mut touched = Vec::with_capacity(budget + set.len());
        // The token nodes the cuts will read (see `TokenList::warm`).
        let cuts = set.iter().zip(&needs).flat_map(|(d, &need)| {
            let ranges = self.members[d.id as usize].ranges.by_size();
            ranges[..need.min(ranges.len())].iter().map(|r| r.node)
        });
        self.tokens.warm(cuts, &mut touched);
        touched.clear();
        // Cutting reads and changes only the donors' range lists, so the taker's new ranges
        // can wait unsorted until all are cut.
        self.collecting = Some(taker);
        self.order.mark(taker);
        self.members[taker as usize]
            .ranges
            .reserve(budget.min(total + 1));
        for ((d, &give), &need) in set.iter().zip(&gives).zip(&needs) {
            if give == 0 {
                continue;
            }
            let extra = if spare > 0 { spare * give / amount } else { 0 };
            self.carve(d.id, taker, give, need as u128 + extra, &mut touched);
        }
        self.collecting = None;
        self.members[taker as usize].ranges.settle();
        self.merge_around(&touched);
    }

    /// Bring the load order up to date with the members changed since the last operation.
    fn refresh_order(&mut self) {
        let members = &self.members;
        self.order.refresh(|id| {
            let m = &members[id as usize];
            (m.active && m.load > 0).then(|| Norm::new(m.load, m.weight, id))
        });
    }

    /// How many new tokens (pieces) a taker may get: `vnodes` in algorithm 1; in algorithm 2 its
    /// token cap less what it holds (at least one).
    fn piece_budget(&self, taker: u32) -> usize {
        if self.algorithm < 2 {
            return usize::from(self.vnodes);
        }
        let m = &self.members[taker as usize];
        self.token_cap(self.lightest_weight(), m.weight)
            .saturating_sub(m.ranges.len())
            .max(1)
    }

    /// Algorithm 2's token cap of a member of `weight`: `vnodes` per multiple of the lightest
    /// active member's weight (rounded up, at most [`MAX_WEIGHT_RATIO`]), so a member of twice
    /// the weight stands for two members. With a flat cap a heavy joiner could take its share
    /// only from a few donors, leaving them with a sliver of theirs. Relative to the lightest
    /// member so that weights 100 and 200 mean what 1 and 2 do.
    fn token_cap(&self, lightest: u32, weight: u32) -> usize {
        let ratio = weight.div_ceil(lightest.max(1)).clamp(1, MAX_WEIGHT_RATIO);
        usize::from(self.vnodes) * ratio as usize
    }

    /// The lightest positive weight among active members (1 if none): one scan per operation,
    /// not one per capped member.
    fn lightest_weight(&self) -> u32 {
        self.weights.keys().next().copied().unwrap_or(1)
    }

    /// Cut `amount` out of `donor`'s `pieces` largest ranges (more if those cannot cover it),
    /// water-filling the chosen ranges, for `taker`.
    fn carve(
        &mut self,
        donor: u32,
        taker: u32,
        amount: u128,
        pieces: u128,
        touched: &mut Vec<NodeId>,
    ) {
        let ranges = self.members[donor as usize].ranges.by_size();
        let want = usize::try_from(pieces).unwrap_or(usize::MAX).max(1);
        let mut k = 0usize;
        let mut covered = 0u128;
        while k < ranges.len() && (k < want || covered < amount) {
            covered += ranges[k].span();
            k += 1;
        }
        self.water_fill_largest(donor, k, taker, amount.min(covered), touched);
    }

    /// Cut exactly `amount` (at most their total span) out of `donor`'s `k` largest ranges for
    /// `taker`, smallest first, each range giving at most an equal share of what is left (so the
    /// cut is spread evenly).
    ///
    /// No copy of the chosen ranges is needed: cutting the `i`-th largest range only shrinks it
    /// (moving it later in the list) or removes it, so the ranges before it stay in place.
    fn water_fill_largest(
        &mut self,
        donor: u32,
        k: usize,
        taker: u32,
        amount: u128,
        touched: &mut Vec<NodeId>,
    ) {
        let mut left = amount;
        for i in (0..k).rev() {
            if left == 0 {
                break;
            }
            let r = self.members[donor as usize].ranges.by_size()[i];
            let (t, span) = (r.node, r.span());
            let remaining = (i + 1) as u128;
            let piece = if remaining == 1 {
                span.min(left)
            } else {
                span.min(left.div_ceil(remaining))
            };
            if piece >= span {
                self.reassign(t, taker);
                touched.push(t);
            } else {
                let n = self.cut_front(donor, i, r, piece, taker);
                touched.push(n);
            }
            left -= piece;
        }
    }

    // ---- leave / weight decrease ----

    /// Member `giver` gives `amount` of its ranges away. Recipients are water-filled from the
    /// least loaded (per weight) among the owners of its neighbouring ranges (who receive by
    /// moving a boundary, creating no token) and the `vnodes` least loaded other members (who
    /// receive a piece from the middle of a range, a new token: only while they hold fewer than
    /// `vnodes` tokens, unless they would otherwise stay more than 5% under their fair share).
    fn hand_off(&mut self, giver: u32, amount: u128) {
        let mut own = self.members[giver as usize].ranges.by_size().to_vec();
        own.sort_unstable_by_key(|r| r.token);
        let mut cuts: Vec<Cut> = own
            .iter()
            .map(|r| {
                let p_node = self.tokens.prev(r.node);
                Cut {
                    p: self.tokens.token(p_node),
                    p_node,
                    t: r.token,
                    t_node: r.node,
                    span: r.span(),
                    x: self.tokens.owner(p_node),
                    y: self.tokens.owner(self.tokens.next(r.node)),
                    gx: 0,
                    gy: 0,
                    mid: Vec::new(),
                }
            })
            .collect();
        let weighted = |s: &Self, c: u32| {
            c != giver
                && s.members
                    .get(c as usize)
                    .is_some_and(|m| m.weight > 0 && m.active)
        };
        let mut neighbours: Vec<u32> = cuts
            .iter()
            .flat_map(|c| [c.x, c.y])
            .filter(|&c| weighted(self, c))
            .collect();
        neighbours.sort_unstable();
        neighbours.dedup();
        let cap = usize::from(self.vnodes);
        let mut others: Vec<u32> = self
            .active()
            .filter(|&(i, _)| weighted(self, i) && neighbours.binary_search(&i).is_err())
            .map(|(i, _)| i)
            .collect();
        let asc = |s: &Self, a: &u32, b: &u32| s.cmp_norm(*a, *b).then(a.cmp(b));
        if others.len() > cap {
            others.select_nth_unstable_by(cap, |a, b| asc(self, a, b));
            others.truncate(cap);
        }
        let mut cands = neighbours;
        cands.extend(others);
        if cands.is_empty() {
            self.give_whole_ranges(giver, amount);
            return;
        }

        // Water-fill the candidates from below: need[c] = level * weight - load.
        cands.sort_by(|a, b| asc(self, a, b));
        let (mut sum, mut wsum, mut k) = (0u128, 0u128, 0usize);
        while k < cands.len() {
            let m = &self.members[cands[k] as usize];
            sum += m.load;
            wsum += u128::from(m.weight);
            k += 1;
            if let Some(&next) = cands.get(k) {
                let n = &self.members[next as usize];
                // Stop when the next candidate is already at or above the level.
                if (amount + sum) * u128::from(n.weight) <= n.load * wsum {
                    break;
                }
            }
        }
        let mut need: BTreeMap<u32, u128> = BTreeMap::new();
        let mut planned = 0u128;
        for &c in &cands[..k] {
            let m = &self.members[c as usize];
            let want = ((amount + sum) * u128::from(m.weight) / wsum).saturating_sub(m.load);
            planned += want;
            need.insert(c, want);
        }
        let mut short = amount.saturating_sub(planned);
        for &c in &cands[..k] {
            if short == 0 {
                break;
            }
            if let Some(n) = need.get_mut(&c) {
                *n += 1;
                short -= 1;
            }
        }

        // Pass 1: neighbours take what they need from the ends of adjacent ranges, the most
        // constrained (least adjacent room beyond their need) first.
        let mut adjacent: BTreeMap<u32, (u128, Vec<usize>)> = BTreeMap::new();
        for (i, cut) in cuts.iter().enumerate() {
            for c in [cut.x, cut.y] {
                let e = adjacent.entry(c).or_default();
                if e.1.last() != Some(&i) {
                    e.0 += cut.span;
                    e.1.push(i);
                }
            }
        }
        let mut order: Vec<(u32, u128, i128)> = need
            .iter()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(&c, &n)| {
                let cap_adj = adjacent.get(&c)?.0;
                Some((c, n, cap_adj as i128 - n as i128))
            })
            .collect();
        order.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        let mut given = 0u128;
        for (c, _, _) in order {
            let Some((_, idxs)) = adjacent.get(&c) else {
                continue;
            };
            // Ranges only this candidate borders first, so shared ones stay for the other side.
            let mut idxs = idxs.clone();
            idxs.sort_by_key(|&i| (cuts[i].x != cuts[i].y, i));
            for i in idxs {
                let n = need.get(&c).copied().unwrap_or(0);
                if n == 0 || given >= amount {
                    break;
                }
                let cut = &mut cuts[i];
                let g = n.min(cut.room()).min(amount - given);
                if cut.x == c {
                    cut.gx += g;
                } else {
                    cut.gy += g;
                }
                given += g;
                if let Some(n) = need.get_mut(&c) {
                    *n -= g;
                }
            }
        }
        // Pass 2: other needs get pieces from the middle of the roomiest ranges.
        let mut needy: Vec<(u32, u128)> = need
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(&c, &n)| (c, n))
            .collect();
        needy.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total_weight = self.total_weight;
        let lightest = self.lightest_weight();
        for (c, mut n) in needy {
            // Members at `vnodes` tokens get a piece only if they would otherwise stay more
            // than 5% under their fair share: balance wins over the token cap.
            let m = &self.members[c as usize];
            let fair = FULL_SPAN * u128::from(m.weight) / total_weight.max(1);
            // Algorithm 2: weighted caps, given way only below 90% of the share.
            let (cap, slack) = if self.algorithm >= 2 {
                (self.token_cap(lightest, m.weight), 10)
            } else {
                (cap, SLACK)
            };
            let mut room = match cap.saturating_sub(m.ranges.len()) {
                0 if n * slack > fair => usize::MAX,
                r => r,
            };
            while n > 0 && given < amount && room > 0 {
                room -= 1;
                let Some(cut) = cuts
                    .iter_mut()
                    .max_by(|a, b| a.room().cmp(&b.room()).then(b.t.cmp(&a.t)))
                else {
                    break;
                };
                let piece = n.min(cut.room()).min(amount - given);
                if piece == 0 {
                    break;
                }
                cut.mid.push((c, piece));
                n -= piece;
                given += piece;
            }
        }
        // Pass 3: a remainder (rounding) goes to the less loaded neighbour.
        let mut got: BTreeMap<u32, u128> = BTreeMap::new();
        for cut in &cuts {
            *got.entry(cut.x).or_insert(0) += cut.gx;
            *got.entry(cut.y).or_insert(0) += cut.gy;
            for &(c, g) in &cut.mid {
                *got.entry(c).or_insert(0) += g;
            }
        }
        for cut in &mut cuts {
            if given >= amount {
                break;
            }
            let rest = cut.room().min(amount - given);
            if rest == 0 {
                continue;
            }
            let load_of = |c: u32, got: &BTreeMap<u32, u128>| {
                let m = &self.members[c as usize];
                (
                    m.load + got.get(&c).copied().unwrap_or(0),
                    u128::from(m.weight),
                )
            };
            let (lx, wx) = load_of(cut.x, &got);
            let (ly, wy) = load_of(cut.y, &got);
            let to_x = wy == 0 || (wx > 0 && lx * wy <= ly * wx);
            if to_x {
                cut.gx += rest;
                *got.entry(cut.x).or_insert(0) += rest;
            } else {
                cut.gy += rest;
                *got.entry(cut.y).or_insert(0) += rest;
            }
            given += rest;
        }

        let mut touched = Vec::new();
        for cut in &cuts {
            let keep = cut.room();
            let mut segs = vec![(cut.x, cut.gx)];
            segs.extend(cut.mid.iter().copied());
            segs.push((giver, keep));
            segs.push((cut.y, cut.gy));
            self.relabel(cut, &segs, &mut touched);
        }
        self.merge_around(&touched);
    }

    /// Split the cut's range `(p, t]` into consecutive segments `(owner, length)` (lengths sum
    /// to the span; empty ones skipped) by inserting tokens at segment ends and reassigning `t`.
    fn relabel(&mut self, cut: &Cut, segs: &[(u32, u128)], touched: &mut Vec<NodeId>) {
        let after = self.tokens.next(cut.t_node);
        touched.extend([cut.p_node, after]);
        let segs: Vec<(u32, u128)> = segs.iter().copied().filter(|s| s.1 > 0).collect();
        let mut pos = cut.p;
        for (i, &(owner, len)) in segs.iter().enumerate() {
            if i + 1 == segs.len() {
                self.reassign(cut.t_node, owner);
                touched.push(cut.t_node);
            } else {
                pos = pos.wrapping_add(len as u64);
                let n = self.insert_before(cut.t_node, pos, owner);
                touched.push(n);
            }
        }
    }

    /// Fallback when the giver has no weighted neighbour: whole ranges go to the least loaded
    /// weighted members, largest range first.
    fn give_whole_ranges(&mut self, giver: u32, amount: u128) {
        // Largest first, ties by token.
        let ranges = self.members[giver as usize].ranges.by_size().to_vec();
        let mut left = amount;
        let mut touched = Vec::new();
        for r in ranges {
            let (t, span) = (r.node, r.span());
            if left == 0 {
                break;
            }
            let recipient = self
                .active()
                .filter(|&(i, m)| i != giver && m.weight > 0)
                .map(|(i, _)| i)
                .min_by(|&a, &b| self.cmp_norm(a, b).then(a.cmp(&b)));
            let Some(r) = recipient else {
                // Nobody can own anything: the ring becomes empty.
                self.clear_tokens();
                return;
            };
            self.reassign(t, r);
            touched.push(t);
            left = left.saturating_sub(span);
        }
        self.merge_around(&touched);
    }
}

#[cfg(test)]
impl Allocator {
    /// Recompute spans, loads, the weight sums and the load order from the token list and
    /// compare with the cached ones.
    pub(crate) fn check(&mut self) -> std::result::Result<(), String> {
        self.refresh_order();
        let mut order: Vec<Norm> = self
            .active()
            .filter(|(_, m)| m.load > 0)
            .map(|(id, m)| Norm::new(m.load, m.weight, id))
            .collect();
        order.sort_by(crate::load_order::most_loaded_first);
        if order != self.order.sorted() {
            return Err("load order out of date".into());
        }
        let mut loads = vec![0u128; self.members.len()];
        let mut counts = vec![0usize; self.members.len()];
        let sorted = self.tokens.sorted();
        for (i, &(t, o)) in sorted.iter().enumerate() {
            let p = sorted[(i + sorted.len() - 1) % sorted.len()].0;
            let span = span_between(p, t);
            let m = &self.members[o as usize];
            let cached = m
                .ranges
                .by_size()
                .iter()
                .find(|r| r.token == t)
                .map(|r| r.span());
            if cached != Some(span) {
                return Err(format!(
                    "token {t} of {}: span {span}, cached {cached:?}",
                    m.name
                ));
            }
            loads[o as usize] += span;
            counts[o as usize] += 1;
        }
        for (i, m) in self.members.iter().enumerate() {
            if m.load != loads[i] || m.ranges.len() != counts[i] {
                return Err(format!(
                    "member {}: load {} vs {}, {} ranges vs {} tokens",
                    m.name,
                    m.load,
                    loads[i],
                    m.ranges.len(),
                    counts[i]
                ));
            }
            if !m
                .ranges
                .by_size()
                .is_sorted_by(|a, b| (b.span(), a.token) < (a.span(), b.token))
            {
                return Err(format!("member {}: ranges out of order", m.name));
            }
        }
        let total: u128 = self.active().map(|(_, m)| u128::from(m.weight)).sum();
        let lightest = self
            .active()
            .map(|(_, m)| m.weight)
            .filter(|&w| w > 0)
            .min();
        let owners = self.active().filter(|(_, m)| m.load > 0).count();
        if (total, lightest.unwrap_or(1), owners)
            != (self.total_weight, self.lightest_weight(), self.owners)
        {
            return Err(format!(
                "sums: total weight {total}, lightest {lightest:?}, owners {owners} vs cached {} {} {}",
                self.total_weight,
                self.lightest_weight(),
                self.owners
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The packed drop order is the order it stands for: most pieces first, then the
        /// smallest part, then the position; and it gives the position back.
        #[test]
        fn drop_rank_orders_like_pieces_part_position(
            a in (0usize..1 << 32, 0u128..=FULL_SPAN, 0usize..1 << 31),
            b in (0usize..1 << 32, 0u128..=FULL_SPAN, 0usize..1 << 31),
            same_pieces in proptest::bool::ANY,
        ) {
            let b = if same_pieces { (a.0, b.1, b.2) } else { b };
            let (ra, rb) = (drop_rank(a.0, a.1, a.2), drop_rank(b.0, b.1, b.2));
            let tuple = |(n, g, i): (usize, u128, usize)| (Reverse(n), g, i);
            proptest::prop_assert_eq!(ra.cmp(&rb), tuple(a).cmp(&tuple(b)));
            proptest::prop_assert_eq!((ra & DROP_INDEX) as usize, a.2);
        }
    }

    fn churn(n: usize, ops: usize, seed: u64) -> Vec<RingOp> {
        let mut out: Vec<RingOp> = (0..n)
            .map(|i| RingOp::Join {
                member: format!("m{i}"),
                weight: 1,
            })
            .collect();
        let mut live: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let mut x = seed;
        for j in 0..ops {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (x >> 33).is_multiple_of(2) && live.len() > 2 {
                let v = live.remove(((x >> 40) as usize) % live.len());
                out.push(RingOp::Leave { member: v });
            } else {
                let name = format!("j{j}");
                live.push(name.clone());
                out.push(RingOp::Join {
                    member: name,
                    weight: 1 + (x >> 60) as u32 % 3,
                });
            }
        }
        out
    }

    #[test]
    fn cached_spans_and_loads_stay_exact_under_churn() {
        for (seed, algorithm) in (0..8).zip([1, 2].into_iter().cycle()) {
            let mut a = Allocator::new(algorithm, 16);
            for (step, op) in churn(3, 60, seed).into_iter().enumerate() {
                let mut next = Some(op);
                while let Some(op) = next.take() {
                    a.apply(&op).unwrap();
                    if let Err(e) = a.check() {
                        panic!("after {op:?}: {e}");
                    }
                    // Some reweights too, to 0 and back up.
                    if seed % 4 >= 2
                        && !matches!(op, RingOp::Reweight { .. })
                        && let Some(name) = a.by_name.keys().nth(step % 3)
                    {
                        next = Some(RingOp::Reweight {
                            member: name.clone(),
                            weight: (step % 3) as u32,
                        });
                    }
                }
            }
        }
    }
}
