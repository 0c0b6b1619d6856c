//! A small binary encoding for the state files read on every build (the snapshot, the stat
//! cache and the plan cache). JSON costs more to parse than a whole no-op build of a large
//! plan spends on everything else; this format is read with no allocation beyond the strings
//! it holds.
//!
//! A file is `MAGIC (8 bytes) | body | blake3 of body (16 bytes)`. Integers are LEB128
//! varints, strings are a length and UTF-8 bytes, digests are 16 raw bytes. A file whose
//! magic, checksum or shape is wrong is rejected as a whole: it is never half-read.

use std::fmt;

use super::{Digest, FileStamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not this kind of file, or written by another format version.
    Magic,
    /// Truncated or altered after it was written.
    Checksum,
    /// The body does not have the expected shape.
    Shape(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Magic => write!(f, "unknown format or version"),
            DecodeError::Checksum => write!(f, "checksum mismatch (truncated or altered)"),
            DecodeError::Shape(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new(magic: &[u8; 8]) -> Encoder {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(magic);
        Encoder { buf }
    }

    pub fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn u32(&mut self, v: u32) {
        self.u64(v.into());
    }

    pub fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    /// Zig-zag, so small negative numbers stay short.
    pub fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.usize(b.len());
        self.buf.extend_from_slice(b);
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.str(s);
        }
    }

    pub fn digest(&mut self, d: &Digest) {
        self.buf.extend_from_slice(d.as_bytes());
    }

    pub fn opt_digest(&mut self, d: Option<&Digest>) {
        self.bool(d.is_some());
        if let Some(d) = d {
            self.digest(d);
        }
    }

    pub fn stamp(&mut self, s: &FileStamp) {
        self.u64(s.size);
        self.i64(s.mtime_ns);
        self.i64(s.ctime_ns);
        self.u64(s.inode);
    }

    pub fn opt_stamp(&mut self, s: Option<&FileStamp>) {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.stamp(s);
        }
    }

    /// A list of `(name, digest)` pairs, the shape of most record fields.
    pub fn pairs(&mut self, pairs: &[(String, Digest)]) {
        self.usize(pairs.len());
        for (name, d) in pairs {
            self.str(name);
            self.digest(d);
        }
    }

    /// The finished file: magic, body, checksum.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = Digest::of(&self.buf[8..]);
        self.buf.extend_from_slice(sum.as_bytes());
        self.buf
    }
}

pub struct Decoder<'a> {
    body: &'a [u8],
    pos: usize,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl<'a> Decoder<'a> {
    /// Checks magic and checksum; the decoder then reads the body.
    pub fn new(magic: &[u8; 8], bytes: &'a [u8]) -> Result<Decoder<'a>> {
        if bytes.len() < 8 + 16 || &bytes[..8] != magic {
            return Err(DecodeError::Magic);
        }
        let (body, sum) = bytes[8..].split_at(bytes.len() - 8 - 16);
        if Digest::of(body).as_bytes() != sum {
            return Err(DecodeError::Checksum);
        }
        Ok(Decoder { body, pos: 0 })
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.body.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or(DecodeError::Shape(what))?;
        let s = &self.body[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u64(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .body
                .get(self.pos)
                .ok_or(DecodeError::Shape("integer"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Shape("integer"))
    }

    pub fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::Shape("integer"))
    }

    /// A count of items still to read: bounded by the bytes left, so a corrupt count cannot
    /// make a reader reserve gigabytes.
    pub fn count(&mut self) -> Result<usize> {
        let n = self.u64()?;
        if n > (self.body.len() - self.pos) as u64 {
            return Err(DecodeError::Shape("length"));
        }
        Ok(n as usize)
    }

    pub fn i64(&mut self) -> Result<i64> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.take(1, "flag")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Shape("flag")),
        }
    }

    pub fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Shape("string"))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.count()?;
        self.take(n, "string")
    }

    pub fn string(&mut self) -> Result<String> {
        self.str().map(str::to_owned)
    }

    pub fn opt_string(&mut self) -> Result<Option<String>> {
        Ok(if self.bool()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    pub fn digest(&mut self) -> Result<Digest> {
        let mut d = [0; 16];
        d.copy_from_slice(self.take(16, "digest")?);
        Ok(Digest(d))
    }

    pub fn opt_digest(&mut self) -> Result<Option<Digest>> {
        Ok(if self.bool()? {
            Some(self.digest()?)
        } else {
            None
        })
    }

    pub fn stamp(&mut self) -> Result<FileStamp> {
        Ok(FileStamp {
            size: self.u64()?,
            mtime_ns: self.i64()?,
            ctime_ns: self.i64()?,
            inode: self.u64()?,
        })
    }

    pub fn opt_stamp(&mut self) -> Result<Option<FileStamp>> {
        Ok(if self.bool()? {
            Some(self.stamp()?)
        } else {
            None
        })
    }

    pub fn pairs(&mut self) -> Result<Vec<(String, Digest)>> {
        let n = self.count()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push((self.string()?, self.digest()?));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"ORCHTEST";

    #[test]
    fn round_trips_every_kind_of_value() {
        let d = Digest::of(b"x");
        let mut e = Encoder::new(MAGIC);
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            e.u64(v);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            e.i64(v);
        }
        e.str("héllo");
        e.opt_str(None);
        e.opt_str(Some(""));
        e.digest(&d);
        e.opt_digest(None);
        e.pairs(&[("a".into(), d)]);
        e.bool(true);
        let bytes = e.finish();

        let mut r = Decoder::new(MAGIC, &bytes).unwrap();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.u64().unwrap(), v);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(r.i64().unwrap(), v);
        }
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.opt_string().unwrap(), None);
        assert_eq!(r.opt_string().unwrap(), Some(String::new()));
        assert_eq!(r.digest().unwrap(), d);
        assert_eq!(r.opt_digest().unwrap(), None);
        assert_eq!(r.pairs().unwrap(), vec![("a".to_string(), d)]);
        assert!(r.bool().unwrap());
        assert!(r.at_end());
    }

    #[test]
    fn rejects_other_magic_truncation_and_bit_flips() {
        let mut e = Encoder::new(MAGIC);
        e.str("payload");
        let bytes = e.finish();
        assert_eq!(
            Decoder::new(b"ORCHXXXX", &bytes).err(),
            Some(DecodeError::Magic)
        );
        assert!(Decoder::new(MAGIC, &bytes[..bytes.len() - 1]).is_err());
        for i in 8..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                Decoder::new(MAGIC, &bad).is_err(),
                "flip at {i} went unseen"
            );
        }
    }

    #[test]
    fn a_corrupt_length_is_an_error_not_an_allocation() {
        let mut e = Encoder::new(MAGIC);
        e.u64(u64::MAX / 2);
        let bytes = e.finish();
        let mut r = Decoder::new(MAGIC, &bytes).unwrap();
        assert_eq!(r.count(), Err(DecodeError::Shape("length")));
        let mut r = Decoder::new(MAGIC, &bytes).unwrap();
        assert!(r.str().is_err());
    }
}
