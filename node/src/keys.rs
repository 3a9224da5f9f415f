//! Storage key layout: `hash (8 bytes, big endian) ++ user key`, so that every hash range is one
//! ordered scan of the data keyspace, and stored value layout: `expiry word (8 bytes BE) ++ value
//! bytes`. The expiry word is the expiry in unix ms (0 = none); its top bit marks a collection's
//! metadata record (`engine::collection`) instead of a string (expiry ms never reaches 2^63).

use ringshift_ring::HashRange;

/// Ring hash of a user key (XXH3-64 over the Redis hash tag), as the ring crate defines it.
pub fn key_hash(key: &[u8]) -> u64 {
    ringshift_ring::key_hash(key)
}

/// Hashes storage keys for in-memory maps (read cache, batch overlay): one-shot XXH3 over the
/// whole key with a per-process random seed. (The streaming `Xxh3Default` hasher copies its
/// state on every hash and cost a quarter of a GET; the ring-hash prefix alone would put
/// every key of one hash tag in one bucket.)
#[derive(Clone, Copy)]
pub struct KeyHashBuilder {
    seed: u64,
}

impl Default for KeyHashBuilder {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
        });
        KeyHashBuilder { seed }
    }
}

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Storage key for a user key.
pub fn storage_key(key: &[u8]) -> Vec<u8> {
    storage_key_with_hash(key_hash(key), key)
}

pub fn storage_key_with_hash(hash: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&hash.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits a storage key into (hash, user key); `None` for a key shorter than the hash prefix.
pub fn split_storage_key(skey: &[u8]) -> Option<(u64, &[u8])> {
    let (h, k) = skey.split_at_checked(8)?;
    let hash = u64::from_be_bytes(h.try_into().ok()?);
    Some((hash, k))
}

/// Bounds of the storage keys whose hash lies in `range`: inclusive lower bound and exclusive
/// upper bound (`None` = unbounded, when the range ends at the top of the hash space).
pub fn range_bounds(range: HashRange) -> (Vec<u8>, Option<Vec<u8>>) {
    let lo = range.start.to_be_bytes().to_vec();
    let hi = range
        .end
        .checked_add(1)
        .map(|next| next.to_be_bytes().to_vec());
    (lo, hi)
}

/// Top bit of the stored expiry word: the record is a collection's metadata.
pub const TYPED_BIT: u64 = 1 << 63;

/// The stored expiry word of an expiry and kind.
pub fn expiry_word(expires_at: Option<u64>, typed: bool) -> u64 {
    (expires_at.unwrap_or(0) & !TYPED_BIT) | if typed { TYPED_BIT } else { 0 }
}

/// (expiry, typed) of a stored expiry word.
pub fn split_expiry_word(word: u64) -> (Option<u64>, bool) {
    let exp = word & !TYPED_BIT;
    ((exp != 0).then_some(exp), word & TYPED_BIT != 0)
}

/// A stored value: bytes plus absolute expiry in unix milliseconds (`None` = no expiry). A
/// `typed` value is a collection's metadata record (its elements are sub-keys), never a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub value: Vec<u8>,
    pub expires_at: Option<u64>,
    pub typed: bool,
}

impl Stored {
    /// A string value.
    pub fn string(value: Vec<u8>, expires_at: Option<u64>) -> Stored {
        Stored {
            value,
            expires_at,
            typed: false,
        }
    }

    pub fn expiry_word(&self) -> u64 {
        expiry_word(self.expires_at, self.typed)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.value.len());
        out.extend_from_slice(&self.expiry_word().to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    pub fn decode(raw: &[u8]) -> Option<Stored> {
        let (e, v) = raw.split_at_checked(8)?;
        let (expires_at, typed) = split_expiry_word(u64::from_be_bytes(e.try_into().ok()?));
        Some(Stored {
            value: v.to_vec(),
            expires_at,
            typed,
        })
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|e| e <= now_ms)
    }
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {

    #[test]
    fn map_hashes_spread_keys_of_one_hash_tag() {
        use std::hash::BuildHasher;
        let b = super::KeyHashBuilder::default();
        // Same ring hash (one tag), different keys: the map hash must still tell them apart.
        let hashes: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| b.hash_one(super::storage_key(format!("{{user}}:{i}").as_bytes())))
            .collect();
        assert_eq!(hashes.len(), 10_000);
    }

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn storage_key_round_trips(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            let sk = storage_key(&key);
            let (h, k) = split_storage_key(&sk).unwrap();
            prop_assert_eq!(h, key_hash(&key));
            prop_assert_eq!(k, &key[..]);
        }

        #[test]
        fn key_in_range_sorts_inside_bounds(
            key in proptest::collection::vec(any::<u8>(), 0..64), a in any::<u64>(), b in any::<u64>()
        ) {
            let (start, end) = if a <= b { (a, b) } else { (b, a) };
            let sk = storage_key(&key);
            let h = key_hash(&key);
            let (lo, hi) = range_bounds(HashRange { start, end });
            let inside = lo.as_slice() <= sk.as_slice() && hi.is_none_or(|hi| sk.as_slice() < hi.as_slice());
            prop_assert_eq!(inside, start <= h && h <= end);
        }

        #[test]
        fn stored_round_trips(
            value in proptest::collection::vec(any::<u8>(), 0..64),
            exp in proptest::option::of(1u64..TYPED_BIT),
            typed in any::<bool>(),
        ) {
            let s = Stored { value, expires_at: exp, typed };
            prop_assert_eq!(Stored::decode(&s.encode()), Some(s));
        }
    }

    #[test]
    fn strings_stored_before_collections_still_decode_as_strings() {
        // The layout every existing value has: expiry ms (or 0) ++ bytes.
        let mut raw = 1_700_000_000_000u64.to_be_bytes().to_vec();
        raw.extend_from_slice(b"hello");
        let s = Stored::decode(&raw).unwrap();
        assert_eq!(
            s,
            Stored::string(b"hello".to_vec(), Some(1_700_000_000_000))
        );
        let mut raw = 0u64.to_be_bytes().to_vec();
        raw.extend_from_slice(b"x");
        assert!(!Stored::decode(&raw).unwrap().typed);
    }

    #[test]
    fn full_range_bounds_cover_max_hash() {
        let (lo, hi) = range_bounds(HashRange {
            start: 0,
            end: u64::MAX,
        });
        let sk = storage_key_with_hash(u64::MAX, &[0xFF; 20]);
        assert!(lo.as_slice() <= sk.as_slice());
        assert!(hi.is_none());
    }
}
