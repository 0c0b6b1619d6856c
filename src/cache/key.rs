//! Cache keys and blob digests. An action key is a task's fingerprint under a cache-format
//! tag, widened to the 64 hex digits a Bazel HTTP cache takes for `/ac/<key>`; a blob is
//! named by its whole blake3 hash locally and by its SHA-256 on a remote (bazel-remote
//! checks `/cas/<digest>` uploads against SHA-256), and both are checked on every read.

use sha2::Digest as _;

use crate::disk::Digest;

/// Bumped when what an action record holds changes meaning: old entries are then misses,
/// never misread.
const FORMAT: &[u8] = b"orch-cache-v1\0";

/// What a task's cache entry is found by: its fingerprint, which holds nothing of the
/// machine (see the README, "What a fingerprint is made of").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionKey([u8; 32]);

impl ActionKey {
    pub fn of(fingerprint: &Digest) -> ActionKey {
        let mut h = blake3::Hasher::new();
        h.update(FORMAT);
        h.update(fingerprint.as_bytes());
        ActionKey(*h.finalize().as_bytes())
    }

    /// 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<ActionKey> {
        let bytes = unhex(s)?;
        Some(ActionKey(bytes.try_into().ok()?))
    }
}

/// A blob's two names: its blake3 (the local store's) and its SHA-256 (a remote's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDigests {
    pub blake3: String,
    pub sha256: String,
}

impl BlobDigests {
    pub fn of(bytes: &[u8]) -> BlobDigests {
        BlobDigests {
            blake3: blake3::hash(bytes).to_hex().to_string(),
            sha256: hex(&sha2::Sha256::digest(bytes)),
        }
    }
}

/// Whether `s` is 64 lowercase hex digits: a key or digest that is safe as a file name and
/// in a URL (a record from a remote is not trusted to hold one).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_64_hex_digits_and_round_trip() {
        let k = ActionKey::of(&Digest::of(b"fp"));
        assert!(is_hex64(&k.hex()));
        assert_eq!(ActionKey::from_hex(&k.hex()), Some(k));
        assert_ne!(k, ActionKey::of(&Digest::of(b"fp2")));
    }

    #[test]
    fn blob_digests_are_the_standard_ones() {
        let d = BlobDigests::of(b"abc");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.blake3, blake3::hash(b"abc").to_hex().to_string());
        assert!(is_hex64(&d.blake3) && is_hex64(&d.sha256));
        assert!(!is_hex64("../../etc/passwd"));
    }
}
