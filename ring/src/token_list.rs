//! The allocator's tokens as a circular doubly linked list in token order.
//!
//! The allocator always works on a range it already holds (a member's range, or the
//! neighbours of one): it splits it with a token inside it, gives it to another member, or
//! merges it with a neighbour. Addressing tokens by node id makes each of these O(1), where a
//! sorted map needed one or more searches per step (a 1000-member ring has 63 000 tokens and a
//! build makes about that many cuts). Sorted order is kept because a new token is always linked
//! in right before the token whose range it splits. The nodes lie in storage in the order they
//! were made, not in token order, so reading many of them costs memory waits: [`TokenList::warm`]
//! overlaps those of a join's cuts, and [`TokenList::sorted_pairs`] reads the list without
//! following it.

/// No node.
pub(crate) const NIL: u32 = u32::MAX;

/// A node id: stable while the token lives (ids of removed tokens are reused later).
pub(crate) type NodeId = u32;

#[derive(Debug, Clone, Copy)]
struct Node {
    token: u64,
    /// The member owning `(prev.token, token]`; [`NIL`] once removed.
    owner: u32,
    prev: NodeId,
    next: NodeId,
}

#[derive(Debug, Default)]
pub(crate) struct TokenList {
    nodes: Vec<Node>,
    free: Vec<NodeId>,
    len: usize,
}

impl TokenList {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.nodes.clear();
        self.free.clear();
        self.len = 0;
    }

    pub fn token(&self, id: NodeId) -> u64 {
        self.nodes[id as usize].token
    }

    pub fn owner(&self, id: NodeId) -> u32 {
        self.nodes[id as usize].owner
    }

    /// Whether `id` still holds a token (it may have been merged away).
    pub fn is_live(&self, id: NodeId) -> bool {
        self.nodes.get(id as usize).is_some_and(|n| n.owner != NIL)
    }

    pub fn set_owner(&mut self, id: NodeId, owner: u32) {
        self.nodes[id as usize].owner = owner;
    }

    /// The preceding token (itself when it is the only one).
    pub fn prev(&self, id: NodeId) -> NodeId {
        self.nodes[id as usize].prev
    }

    /// The following token (itself when it is the only one).
    pub fn next(&self, id: NodeId) -> NodeId {
        self.nodes[id as usize].next
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        self.len += 1;
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as NodeId
            }
        }
    }

    /// The first token of an empty list.
    pub fn push_first(&mut self, token: u64, owner: u32) -> NodeId {
        debug_assert!(self.is_empty());
        let id = self.nodes.len() as NodeId;
        self.alloc(Node {
            token,
            owner,
            prev: id,
            next: id,
        })
    }

    /// Link `token` in right before `at`; the caller guarantees it lies strictly between
    /// `prev(at)` and `at` on the circle, so the list stays sorted.
    pub fn insert_before(&mut self, at: NodeId, token: u64, owner: u32) -> NodeId {
        let prev = self.prev(at);
        let id = self.alloc(Node {
            token,
            owner,
            prev,
            next: at,
        });
        self.nodes[prev as usize].next = id;
        self.nodes[at as usize].prev = id;
        id
    }

    /// Unlink `id` (its range is then part of its successor's).
    pub fn remove(&mut self, id: NodeId) {
        let Node { prev, next, .. } = self.nodes[id as usize];
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
        self.nodes[id as usize].owner = NIL;
        self.free.push(id);
        self.len -= 1;
    }

    /// Load the nodes `ids` and their predecessors into the cache, all at once. A join's cuts
    /// each read a node and the one before it, scattered over the list; read cut by cut, every
    /// one of those reads waited for memory in turn (a third of a 1000-member build's time).
    /// Read here in two passes of independent loads, their waits overlap. Changes nothing.
    pub fn warm(&self, ids: impl IntoIterator<Item = NodeId>, prevs: &mut Vec<NodeId>) {
        prevs.clear();
        let mut sum = 0u64;
        for id in ids {
            if let Some(n) = self.nodes.get(id as usize) {
                sum = sum.wrapping_add(n.token);
                prevs.push(n.prev);
            }
        }
        for &p in prevs.iter() {
            if let Some(n) = self.nodes.get(p as usize) {
                sum = sum.wrapping_add(n.token);
            }
        }
        std::hint::black_box(sum);
    }

    /// Every (token, owner) in ascending token order, by walking the list from the lowest
    /// token (the definition [`TokenList::sorted_pairs`] is tested against).
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<(u64, u32)> {
        let mut id = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.owner != NIL)
            .min_by_key(|(_, n)| n.token)
            .map_or(NIL, |(i, _)| i as NodeId);
        (0..self.len)
            .map(|_| {
                let n = &self.nodes[id as usize];
                id = n.next;
                (n.token, n.owner)
            })
            .collect()
    }

    /// Every (token, owner) in ascending token order, without walking the list: its nodes lie
    /// in storage in no particular order, so following `next` waited on memory at almost
    /// every step (a seventh of a 1000-member build). Instead the nodes are read in storage
    /// order and placed by the top bits of their token (a counting sort: the allocator spreads
    /// tokens evenly, so a bucket holds about one), then each bucket is sorted.
    pub fn sorted_pairs(&self) -> Vec<(u64, u32)> {
        let n = self.len;
        if n == 0 {
            return Vec::new();
        }
        let bits = n.next_power_of_two().trailing_zeros();
        let bucket = |t: u64| t.checked_shr(64 - bits).unwrap_or(0) as usize;
        // starts[b]: where bucket b begins in the output (then its next free slot).
        let mut starts = vec![0u32; (1usize << bits) + 1];
        let live = || self.nodes.iter().filter(|node| node.owner != NIL);
        for node in live() {
            starts[bucket(node.token) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut out = vec![(0u64, 0u32); n];
        for node in live() {
            let at = &mut starts[bucket(node.token)];
            out[*at as usize] = (node.token, node.owner);
            *at += 1;
        }
        // Now starts[b] is where bucket b ends, and so where bucket b + 1 begins.
        let mut begin = 0;
        for &end in &starts[..starts.len() - 1] {
            let end = end as usize;
            if end - begin > 1 {
                out[begin..end].sort_unstable_by_key(|p| p.0);
            }
            begin = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_and_removes_keep_circular_order() {
        let mut l = TokenList::default();
        let a = l.push_first(100, 0);
        assert_eq!((l.prev(a), l.next(a)), (a, a));
        let b = l.insert_before(a, 50, 1); // wraps: 50 lies between 100 and 100
        let c = l.insert_before(a, 70, 2); // between 50 and 100
        let d = l.insert_before(b, 200, 3); // between 100 and 50, past the top
        assert_eq!(l.sorted(), vec![(50, 1), (70, 2), (100, 0), (200, 3)]);
        assert_eq!((l.prev(b), l.next(d)), (d, b));
        l.remove(c);
        assert!(!l.is_live(c));
        assert_eq!(l.sorted(), vec![(50, 1), (100, 0), (200, 3)]);
        assert_eq!(l.prev(a), b);
        // The freed id is reused.
        assert_eq!(l.insert_before(b, 10, 4), c);
        assert_eq!(l.sorted(), vec![(10, 4), (50, 1), (100, 0), (200, 3)]);
        assert_eq!(l.len(), 4);
        assert_eq!(l.sorted_pairs(), l.sorted());
    }

    proptest::proptest! {
        /// The counting sort by top bits gives the list's own order, for evenly spread tokens
        /// and for tokens crowded into a few buckets (small, or equal in their top bits).
        #[test]
        fn sorted_pairs_follow_the_list(
            raw in proptest::collection::vec((proptest::num::u64::ANY, 0u8..3), 1..300),
            removals in proptest::collection::vec(0usize..300, 0..100),
        ) {
            let mut tokens: Vec<u64> = raw
                .iter()
                .map(|&(t, crowd)| match crowd {
                    0 => t,
                    1 => t >> 50,
                    _ => (7 << 58) | (t >> 10),
                })
                .collect();
            tokens.sort_unstable();
            tokens.dedup();
            let mut l = TokenList::default();
            // Linked in descending order, each before the previous one.
            let mut ids = Vec::new();
            for (i, &t) in tokens.iter().rev().enumerate() {
                let id = match ids.last() {
                    None => l.push_first(t, i as u32),
                    Some(&next) => l.insert_before(next, t, i as u32),
                };
                ids.push(id);
            }
            for r in removals {
                if l.len() > 1 && r < ids.len() && l.is_live(ids[r]) {
                    l.remove(ids[r]);
                }
            }
            proptest::prop_assert_eq!(l.sorted_pairs(), l.sorted());
        }
    }
}
