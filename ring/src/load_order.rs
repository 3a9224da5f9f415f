//! The members owning tokens, kept sorted most loaded (per weight) first.
//!
//! A join takes from the most loaded members. Selecting them anew among all members was the
//! largest step of a join in a 1000-member ring, yet one operation changes the load of at
//! most `vnodes` donors and the joiner (a leave: the leaver and its recipients). So the order
//! is kept, and after an operation only the members it changed are taken out, sorted and
//! merged back in: linear in the members, with a cheap comparison per step.

use std::cmp::Ordering;

/// A member's (positive) load and weight, to order members by load per weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Norm {
    /// The load less one (loads run from 1 to 2^64): 16-byte entries halve the memory an
    /// operation moves when it merges the changed members back in.
    load_less_one: u64,
    pub weight: u32,
    pub id: u32,
}

impl Norm {
    /// Member `id` with `load` (1 ..= 2^64) and `weight`.
    pub fn new(load: u128, weight: u32, id: u32) -> Norm {
        debug_assert!((1..=1 << 64).contains(&load));
        Norm {
            load_less_one: (load - 1) as u64,
            weight,
            id,
        }
    }

    pub fn load(&self) -> u128 {
        u128::from(self.load_less_one) + 1
    }

    /// Compare load per weight by cross-multiplying (exact; a weight of 0 with a load counts
    /// as infinitely loaded).
    pub fn cmp_norm(&self, other: &Norm) -> Ordering {
        if self.weight == other.weight && self.weight > 0 {
            // The common case, without the two 128-bit products (same order).
            return self.load_less_one.cmp(&other.load_less_one);
        }
        (self.load() * u128::from(other.weight)).cmp(&(other.load() * u128::from(self.weight)))
    }
}

/// Most loaded (per weight) first, ties by id. A total order among members with a load, so the
/// members selected and their order do not depend on how they are selected or sorted.
pub(crate) fn most_loaded_first(a: &Norm, b: &Norm) -> Ordering {
    b.cmp_norm(a).then(a.id.cmp(&b.id))
}

#[derive(Debug, Default)]
pub(crate) struct LoadOrder {
    /// Members with a load, as of the last [`LoadOrder::refresh`], most loaded first.
    sorted: Vec<Norm>,
    /// Members whose load, weight or activity changed since then.
    changed: Vec<u32>,
    is_changed: Vec<bool>,
    /// The previous `sorted`, reused as the next merge's output.
    spare: Vec<Norm>,
}

impl LoadOrder {
    /// Record that member `id`'s load, weight or activity changed.
    pub fn mark(&mut self, id: u32) {
        let i = id as usize;
        if i >= self.is_changed.len() {
            self.is_changed.resize(i + 1, false);
        }
        if !self.is_changed[i] {
            self.is_changed[i] = true;
            self.changed.push(id);
        }
    }

    /// Bring the order up to date; `current(id)` is a changed member's state, `None` when it is
    /// inactive or owns nothing.
    pub fn refresh(&mut self, current: impl Fn(u32) -> Option<Norm>) {
        if self.changed.is_empty() {
            return;
        }
        let mut fresh: Vec<Norm> = self.changed.iter().filter_map(|&id| current(id)).collect();
        fresh.sort_unstable_by(most_loaded_first);
        let is_changed = &self.is_changed;
        self.sorted.retain(|n| !is_changed[n.id as usize]);
        merge(&self.sorted, &fresh, &mut self.spare);
        std::mem::swap(&mut self.sorted, &mut self.spare);
        for id in self.changed.drain(..) {
            self.is_changed[id as usize] = false;
        }
    }

    /// Every member with a load, most loaded first (call [`LoadOrder::refresh`] first).
    pub fn sorted(&self) -> &[Norm] {
        debug_assert!(self.changed.is_empty());
        &self.sorted
    }
}

/// Merge `few` into `many` (both sorted most loaded first) into `out`: a binary search per
/// entry of `few` and block copies of `many` in between.
fn merge(many: &[Norm], few: &[Norm], out: &mut Vec<Norm>) {
    out.clear();
    let mut rest = many;
    for f in few {
        let k = rest.partition_point(|x| most_loaded_first(x, f).is_lt());
        out.extend_from_slice(&rest[..k]);
        out.push(*f);
        rest = &rest[k..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_keeps_members_most_loaded_per_weight_first() {
        let mut state = vec![(10u128, 1u32), (30, 2), (5, 1), (0, 1), (7, 0)];
        let current = |s: &Vec<(u128, u32)>| {
            let s = s.clone();
            move |id: u32| {
                let (load, weight) = s[id as usize];
                (load > 0).then(|| Norm::new(load, weight, id))
            }
        };
        let mut order = LoadOrder::default();
        for id in 0..5 {
            order.mark(id);
        }
        order.refresh(current(&state));
        let ids = |o: &LoadOrder| o.sorted().iter().map(|n| n.id).collect::<Vec<_>>();
        // 7 / 0 is infinite; 30 / 2 = 15; 10; 5; member 3 owns nothing.
        assert_eq!(ids(&order), vec![4, 1, 0, 2]);
        state[2] = (20, 1);
        state[4] = (0, 0);
        state[3] = (15, 1); // ties with member 1 (30 / 2): lower id first
        for id in [2, 4, 3] {
            order.mark(id);
        }
        order.mark(2);
        order.refresh(current(&state));
        assert_eq!(ids(&order), vec![2, 1, 3, 0]);
    }
}
