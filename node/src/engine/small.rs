//! Short byte strings stored inline: most keys and values fit, so a read-cache lookup touches
//! the map's slot only, not a separate heap allocation per key and per value (each one more
//! cache miss in a map of a million entries).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes kept inline up to this length (the whole type stays 32 bytes).
const INLINE: usize = 30;

#[derive(Clone)]
pub enum SmallBytes {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl SmallBytes {
    pub fn new(b: &[u8]) -> SmallBytes {
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            SmallBytes::Inline(b.len() as u8, buf)
        } else {
            SmallBytes::Heap(b.into())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline(len, buf) => &buf[..*len as usize],
            SmallBytes::Heap(b) => b,
        }
    }

    /// Overwrites in place: no allocation when the new bytes fit inline or have the old length.
    pub fn set(&mut self, b: &[u8]) {
        match self {
            SmallBytes::Heap(old) if old.len() == b.len() => old.copy_from_slice(b),
            _ => *self = SmallBytes::new(b),
        }
    }
}

impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

// Hash and equality are the slice's, so maps keyed by `SmallBytes` are searched by `&[u8]`.
impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &SmallBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallBytes {}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_overwrites_at_every_length() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 32);
        for n in [0, 1, INLINE - 1, INLINE, INLINE + 1, 100] {
            let a: Vec<u8> = (0..n as u8).collect();
            let mut s = SmallBytes::new(&a);
            assert_eq!(s.as_slice(), &a[..]);
            for m in [0, 3, INLINE, INLINE + 5, n] {
                let b: Vec<u8> = (0..m as u8).rev().collect();
                s.set(&b);
                assert_eq!(s.as_slice(), &b[..]);
            }
        }
    }

    #[test]
    fn maps_find_entries_by_slice() {
        let mut m = std::collections::HashMap::new();
        m.insert(SmallBytes::new(b"short"), 1);
        m.insert(SmallBytes::new(&[7u8; 64]), 2);
        assert_eq!(m.get(&b"short"[..]), Some(&1));
        assert_eq!(m.get(&[7u8; 64][..]), Some(&2));
        assert_eq!(m.get(&b"other"[..]), None);
    }
}
