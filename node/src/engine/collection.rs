//! Collections (hash, set, list, and later sorted set) on the LSM tree, in the manner of
//! Kvrocks: one metadata record per key in the data keyspace, at the key's storage key, and one
//! record per element ("sub-key") in the `sub` keyspace.
//!
//! - Metadata: a typed stored value (`keys::TYPED_BIT` set in the expiry word) whose bytes are
//!   `type (1) ++ version (8 BE) ++ count (8 BE)` (types may append fields, e.g. a list's ends).
//! - Sub-key: `hash (8 BE) ++ key length (4 BE) ++ key ++ version (8 BE) ++ family (1) ++ field`,
//!   value = the element's value (empty for set members). Sub-keys sort by the key's ring hash
//!   first, so a hash range is one ordered scan of each keyspace; the length prefix keeps one
//!   key's elements apart from another key's.
//!
//! A sub-key is live only while its key's metadata carries its version, so DEL drops just the
//! metadata (O(1)); the maintenance task removes stale versions' sub-keys in bounded chunks.
//! Copies and checksums skip stale sub-keys. Versions come from the writer's clock
//! (`now ms << 16`, strictly increasing), so a key re-created anywhere gets a fresh version.

use super::ops::DataReply;
use crate::keys::{self, Stored};

/// Redis's exact WRONGTYPE reply.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollType {
    Hash = 1,
    Set = 2,
    ZSet = 4,
    List = 3,
}

impl CollType {
    fn from_byte(b: u8) -> Option<CollType> {
        match b {
            1 => Some(CollType::Hash),
            2 => Some(CollType::Set),
            4 => Some(CollType::ZSet),
            3 => Some(CollType::List),
            _ => None,
        }
    }

    /// TYPE's answer.
    pub fn name(self) -> &'static str {
        match self {
            CollType::Hash => "hash",
            CollType::Set => "set",
            CollType::ZSet => "zset",
            CollType::List => "list",
        }
    }
}

/// A collection's metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollMeta {
    pub ty: CollType,
    pub version: u64,
    /// Number of elements (never 0: an emptied collection is deleted).
    pub count: u64,
    pub expires_at: Option<u64>,
}

const META_LEN: usize = 17;

impl CollMeta {
    /// The metadata of a stored value; None for a string or an unknown record.
    pub fn of(s: &Stored) -> Option<CollMeta> {
        if !s.typed {
            return None;
        }
        let v = s.value.get(..META_LEN)?;
        Some(CollMeta {
            ty: CollType::from_byte(v[0])?,
            version: u64::from_be_bytes(v[1..9].try_into().ok()?),
            count: u64::from_be_bytes(v[9..17].try_into().ok()?),
            expires_at: s.expires_at,
        })
    }

    pub fn to_stored(&self) -> Stored {
        let mut value = Vec::with_capacity(META_LEN);
        value.push(self.ty as u8);
        value.extend_from_slice(&self.version.to_be_bytes());
        value.extend_from_slice(&self.count.to_be_bytes());
        Stored {
            value,
            expires_at: self.expires_at,
            typed: true,
        }
    }

    /// Prefix of this version's sub-keys.
    pub fn prefix(&self, key: &[u8]) -> Vec<u8> {
        version_prefix(key, self.version)
    }
}

/// What a collection write does: element post-images (None = removed), the change in the
/// element count, and the reply. Nothing changes when `subs` is empty.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effect {
    pub subs: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Writes of a sorted set's score index (family 1), beside its members in `subs`.
    pub index: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub added: i64,
    pub reply: Option<DataReply>,
}

impl Effect {
    pub fn only(reply: DataReply) -> Effect {
        Effect {
            reply: Some(reply),
            ..Effect::default()
        }
    }
}

/// A small random-number source for HRANDFIELD/SRANDMEMBER/SPOP (not for anything secret).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(crate::keys::now_ms());
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

/// What a key holds, for commands that care about its type.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    Nothing,
    Str,
    Coll(CollMeta),
}

impl Held {
    /// Classifies a live stored value (None = absent).
    pub fn of(s: Option<&Stored>) -> Held {
        match s {
            None => Held::Nothing,
            Some(s) if !s.typed => Held::Str,
            // A typed record we cannot read is refused like a collection of another type.
            Some(s) => CollMeta::of(s).map_or(Held::Str, Held::Coll),
        }
    }

    /// The collection of type `ty`, None when absent, WRONGTYPE otherwise.
    pub fn expect(self, ty: CollType) -> Result<Option<CollMeta>, &'static str> {
        match self {
            Held::Nothing => Ok(None),
            Held::Coll(m) if m.ty == ty => Ok(Some(m)),
            _ => Err(WRONGTYPE),
        }
    }
}

/// TYPE's answer for a live stored value.
pub fn type_name(s: &Stored) -> &'static str {
    match CollMeta::of(s) {
        Some(m) => m.ty.name(),
        None => "string",
    }
}

/// `hash ++ key length ++ key`: prefix of every version's sub-keys of `key`.
pub fn key_prefix(key: &[u8]) -> Vec<u8> {
    key_prefix_with_room(key, 0)
}

/// `key_prefix` in a buffer with room for `extra` more bytes (a version, family and field
/// follow on the write path: one allocation, no regrowth).
fn key_prefix_with_room(key: &[u8], extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.len() + extra);
    out.extend_from_slice(&keys::key_hash(key).to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// `version_prefix` with room for a family byte and `field_len` more bytes.
fn version_prefix_with_room(key: &[u8], version: u64, field_len: usize) -> Vec<u8> {
    let mut out = key_prefix_with_room(key, 9 + field_len);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Prefix of one version's sub-keys (all families).
pub fn version_prefix(key: &[u8], version: u64) -> Vec<u8> {
    version_prefix_with_room(key, version, 0)
}

/// Family of the element records of hashes, sets (and lists); sorted sets add a score index.
pub const FAMILY_ELEMENTS: u8 = 0;

/// Prefix of a version's elements (family 0).
pub fn elements_prefix(key: &[u8], version: u64) -> Vec<u8> {
    family_prefix(key, version, FAMILY_ELEMENTS)
}

/// The sub-key of `field` in `key`'s collection of `version`.
pub fn sub_key(key: &[u8], version: u64, field: &[u8]) -> Vec<u8> {
    family_key(key, version, FAMILY_ELEMENTS, field)
}

/// The sub-key of `field` in `family` of `key`'s collection of `version`.
pub fn family_key(key: &[u8], version: u64, family: u8, field: &[u8]) -> Vec<u8> {
    let mut out = version_prefix_with_room(key, version, field.len());
    out.push(family);
    out.extend_from_slice(field);
    out
}

/// Prefix of a version's sub-keys of `family`.
pub fn family_prefix(key: &[u8], version: u64, family: u8) -> Vec<u8> {
    family_key(key, version, family, &[])
}

/// The parts of a sub-key.
#[derive(Debug, PartialEq, Eq)]
pub struct SubKey<'a> {
    pub hash: u64,
    pub key: &'a [u8],
    pub version: u64,
    pub family: u8,
    pub field: &'a [u8],
}

impl SubKey<'_> {
    /// Length of the `version_prefix` part of the sub-key.
    pub fn version_prefix_len(&self) -> usize {
        8 + 4 + self.key.len() + 8
    }
}

/// Splits a sub-key; None if it is malformed.
pub fn split_sub_key(raw: &[u8]) -> Option<SubKey<'_>> {
    let (hash, rest) = raw.split_first_chunk::<8>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let (key, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
    let (version, rest) = rest.split_first_chunk::<8>()?;
    let (&family, field) = rest.split_first()?;
    Some(SubKey {
        hash: u64::from_be_bytes(*hash),
        key,
        version: u64::from_be_bytes(*version),
        family,
        field,
    })
}

/// The smallest byte string above every string that starts with `prefix` (None: no bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Next collection version after `last` at `now_ms`: strictly increasing, and (clock permitting)
/// unlike any version another node handed out for the same key before.
pub fn next_version(last: u64, now_ms: u64) -> u64 {
    (now_ms << 16).max(last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn metadata_round_trips(
            version in any::<u64>(),
            count in 1u64..,
            exp in proptest::option::of(1u64..keys::TYPED_BIT),
            set in any::<bool>(),
        ) {
            let m = CollMeta {
                ty: if set { CollType::Set } else { CollType::Hash },
                version,
                count,
                expires_at: exp,
            };
            let raw = m.to_stored().encode();
            let back = Stored::decode(&raw).unwrap();
            prop_assert!(back.typed);
            prop_assert_eq!(CollMeta::of(&back), Some(m));
        }

        #[test]
        fn sub_keys_split_back(
            key in proptest::collection::vec(any::<u8>(), 0..16),
            field in proptest::collection::vec(any::<u8>(), 0..16),
            version in any::<u64>(),
        ) {
            let raw = sub_key(&key, version, &field);
            let s = split_sub_key(&raw).unwrap();
            prop_assert_eq!(s.hash, keys::key_hash(&key));
            prop_assert_eq!(s.key, &key[..]);
            prop_assert_eq!(s.version, version);
            prop_assert_eq!(s.field, &field[..]);
            prop_assert!(raw.starts_with(&version_prefix(&key, version)));
            prop_assert_eq!(s.version_prefix_len(), version_prefix(&key, version).len());
            prop_assert_eq!(
                family_key(&key, version, 1, &field),
                [family_prefix(&key, version, 1), field.clone()].concat()
            );
        }

        /// One key's elements never fall inside another key's prefix, even when one key is a
        /// prefix of the other and both share a hash tag.
        #[test]
        fn keys_of_one_tag_never_share_sub_keys(
            a in proptest::collection::vec(any::<u8>(), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 1..8),
            field in proptest::collection::vec(any::<u8>(), 0..16),
            v in any::<u64>(),
        ) {
            let ka = [b"{t}".as_slice(), &a].concat();
            let kb = [ka.as_slice(), &tail].concat();
            prop_assert!(!sub_key(&kb, v, &field).starts_with(&key_prefix(&ka)));
            prop_assert!(!sub_key(&ka, v, &field).starts_with(&key_prefix(&kb)));
        }

        /// A range of hashes holds exactly the sub-keys whose key hashes into it.
        #[test]
        fn sub_keys_sort_by_ring_hash(
            key in proptest::collection::vec(any::<u8>(), 0..16),
            a in any::<u64>(), b in any::<u64>(),
        ) {
            let (start, end) = (a.min(b), a.max(b));
            let raw = sub_key(&key, 7, b"f");
            let (lo, hi) = keys::range_bounds(ringshift_ring::HashRange { start, end });
            let inside = lo.as_slice() <= raw.as_slice()
                && hi.is_none_or(|hi| raw.as_slice() < hi.as_slice());
            let h = keys::key_hash(&key);
            prop_assert_eq!(inside, start <= h && h <= end);
        }
    }

    #[test]
    fn strings_are_not_collections() {
        let s = Stored::string(b"x".to_vec(), None);
        assert_eq!(Held::of(Some(&s)), Held::Str);
        assert_eq!(type_name(&s), "string");
        assert_eq!(Held::of(Some(&s)).expect(CollType::Hash), Err(WRONGTYPE));
        assert_eq!(Held::of(None).expect(CollType::Hash), Ok(None));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn versions_increase_even_when_the_clock_stalls() {
        let v1 = next_version(0, 1000);
        let v2 = next_version(v1, 1000);
        let v3 = next_version(v2, 999);
        assert!(v1 < v2 && v2 < v3);
    }
}
