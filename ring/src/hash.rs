//! The key hash: XXH3-64 (seed 0) over the key's Redis hash tag.

use xxhash_rust::xxh3::xxh3_64;

/// The part of `key` that is hashed: the bytes between the first `{` and the next `}` after it
/// when that is non-empty (as Redis Cluster does), else the whole key.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = find_byte(key, b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = find_byte(rest, b'}')
            && close > 0
        {
            return &rest[..close];
        }
    }
    key
}

/// Index of the first `needle` in `hay`, eight bytes at a time (a byte loop costs more than
/// the hash itself on short keys).
#[inline]
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let pattern = LOW * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0usize;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // Lowest set bit marks the first zero byte of x (false positives only above it).
        let zero = x.wrapping_sub(LOW) & !x & HIGH;
        if zero != 0 {
            return Some(base + (zero.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| base + p)
}

/// The ring hash of a key: XXH3-64 with seed 0 of [`hash_tag`]`(key)`.
/// Fixed forever for ring algorithm 1; pinned by test vectors.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(hash_tag(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_follow_redis_cluster_rules() {
        assert_eq!(hash_tag(b"{user42}:cart"), b"user42");
        assert_eq!(hash_tag(b"foo{bar}baz"), b"bar");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no-tag"), b"no-tag");
        assert_eq!(hash_tag(b"open{only"), b"open{only");
        assert_eq!(hash_tag(b""), b"");
    }

    #[test]
    fn word_search_agrees_with_byte_search() {
        let hay: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x55).collect();
        for needle in [b'{', b'}', 0, 0x55, 0xff, 0x80, 0x01] {
            for start in 0..hay.len() {
                for end in start..=hay.len() {
                    let h = &hay[start..end];
                    assert_eq!(find_byte(h, needle), h.iter().position(|&b| b == needle));
                }
            }
        }
        let mut k = *b"0123456789abcdef{x}";
        for i in 0..k.len() {
            let saved = k[i];
            k[i] = b'{';
            assert_eq!(find_byte(&k, b'{'), Some(i.min(16)));
            k[i] = saved;
        }
    }

    #[test]
    fn tagged_keys_share_a_hash() {
        assert_eq!(key_hash(b"{user42}:cart"), key_hash(b"{user42}:profile"));
        assert_eq!(key_hash(b"{user42}:cart"), key_hash(b"user42"));
        assert_ne!(key_hash(b"user41"), key_hash(b"user42"));
    }
}
