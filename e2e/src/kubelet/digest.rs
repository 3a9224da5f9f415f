//! Content digests: every blob pulled from a registry is checked against the digest that named
//! it before it is used.

use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("unsupported digest {0:?} (only sha256)")]
    Unsupported(String),
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    Mismatch { expected: String, actual: String },
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let sum = Sha256::digest(data);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in sum {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks `data` against `expected` (`sha256:<64 hex>`).
pub fn verify(expected: &str, data: &[u8]) -> Result<(), DigestError> {
    let hex = expected
        .strip_prefix("sha256:")
        .ok_or_else(|| DigestError::Unsupported(expected.to_string()))?;
    if hex.len() != 64 {
        return Err(DigestError::Unsupported(expected.to_string()));
    }
    let actual = sha256(data);
    if actual == expected {
        Ok(())
    } else {
        Err(DigestError::Mismatch {
            expected: expected.to_string(),
            actual,
        })
    }
}

/// The hex part of a digest, for file names (`sha256:ab..` -> `ab..`).
pub fn hex_part(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // sha256("abc"), FIPS 180-2.
        assert_eq!(
            sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn matching_content_verifies_and_tampered_content_does_not() {
        let d = sha256(b"layer bytes");
        assert_eq!(verify(&d, b"layer bytes"), Ok(()));
        assert!(matches!(
            verify(&d, b"layer bytez"),
            Err(DigestError::Mismatch { .. })
        ));
    }

    #[test]
    fn other_algorithms_are_refused() {
        assert!(matches!(
            verify("sha512:00", b""),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            verify("sha256:00", b""),
            Err(DigestError::Unsupported(_))
        ));
    }
}
