//! The key hash: XXH3-64 (seed 0) over the key's Redis hash tag.

use xxhash_rust::xxh3::xxh3_64;

/// The part of `key` that is hashed: the bytes between the first `{` and the next `}` after it
/// when that is non-empty (as Redis Cluster does), else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}')
            && close > 0
        {
            return &rest[..close];
        }
    }
    key
}

/// The ring hash of a key: XXH3-64 with seed 0 of [`hash_tag`]`(key)`.
/// Fixed forever for ring algorithm 1; pinned by test vectors.
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
    fn tagged_keys_share_a_hash() {
        assert_eq!(key_hash(b"{user42}:cart"), key_hash(b"{user42}:profile"));
        assert_eq!(key_hash(b"{user42}:cart"), key_hash(b"user42"));
        assert_ne!(key_hash(b"user41"), key_hash(b"user42"));
    }
}
