//! [`Digest`]: the 128-bit blake3 digest every fingerprint, record and checksum is made of.

use serde::{Deserialize, Serialize};

/// The first 128 bits of a blake3 hash: ample to detect a change, and small enough to keep
/// by value (no allocation) in every record and cache entry. Shown and serialized as hex.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    pub fn from_hash(h: blake3::Hash) -> Digest {
        let mut d = [0; 16];
        d.copy_from_slice(&h.as_bytes()[..16]);
        Digest(d)
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hash(blake3::hash(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn to_hex(self) -> String {
        self.to_string()
    }

    /// 32 hex digits; of 64 (a whole blake3 hash, as orch 0.1 first stored digests) the
    /// first 32.
    pub fn from_hex(s: &str) -> Option<Digest> {
        if !(s.len() == 32 || s.len() == 64) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut d = [0; 16];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(d))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written into the journal for every task: one write, not 16 formatted ones.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        f.write_str(std::str::from_utf8(&out).expect("hex is ASCII"))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_round_trips() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_hex(), &blake3::hash(b"x").to_hex()[..32]);
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
        assert_eq!(Digest::from_hex(&format!("+f{}", &d.to_hex()[2..])), None);
        let whole = blake3::hash(b"x").to_hex();
        assert_eq!(
            Digest::from_hex(&whole),
            Some(d),
            "a whole blake3 hex is cut to 128 bits"
        );
        assert_eq!(Digest::from_hex(&"g".repeat(32)), None);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
