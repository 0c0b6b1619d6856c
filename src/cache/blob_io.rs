//! Moving blobs without holding them: every copy into or out of the cache goes through one
//! bounded buffer, hashing as it goes, into a temp file that is renamed into place only once
//! what went through checks out. An output of gigabytes costs the build [`BUFFER`] bytes of
//! memory, not its size.

use std::io::{self, Read, Write};

use sha2::Digest as _;

use super::key::{hex, BlobDigests};

/// The one buffer a copy goes through.
pub const BUFFER: usize = 256 << 10;

/// What a copy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub digests: BlobDigests,
    pub size: u64,
}

/// Why a copy stopped.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the source failed (a file, or a server's body).
    Read(io::Error),
    /// Writing the copy failed.
    Write(io::Error),
    /// The source held more than the bytes allowed.
    TooLong,
    /// The build was interrupted: nothing is wrong with the source.
    Interrupted(io::Error),
}

/// Which digests a copy computes: blake3 always; SHA-256 when a remote will name the blob
/// by it or has named it so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashes {
    Blake3,
    Both,
}

/// Copies `src` into `dst` through a [`BUFFER`], hashing what passes; at most `limit` bytes
/// (one more is an error). An interrupt stops it within a buffer.
pub fn copy_hashing(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    limit: u64,
    hashes: Hashes,
) -> Result<Copied, CopyError> {
    let mut buf = vec![0u8; BUFFER];
    let mut blake3 = blake3::Hasher::new();
    let mut sha256 = (hashes == Hashes::Both).then(sha2::Sha256::new);
    let mut size: u64 = 0;
    loop {
        crate::interrupt::check().map_err(CopyError::Interrupted)?;
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        size += n as u64;
        if size > limit {
            return Err(CopyError::TooLong);
        }
        let chunk = &buf[..n];
        blake3.update(chunk);
        if let Some(h) = &mut sha256 {
            h.update(chunk);
        }
        dst.write_all(chunk).map_err(CopyError::Write)?;
    }
    Ok(Copied {
        digests: BlobDigests {
            blake3: blake3.finalize().to_hex().to_string(),
            sha256: sha256.map(|h| hex(&h.finalize())).unwrap_or_default(),
        },
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_hashes_what_passes_through_the_buffer() {
        // Longer than the buffer, not a multiple of it.
        let bytes: Vec<u8> = (0..BUFFER * 3 + 17).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let c = copy_hashing(&mut &bytes[..], &mut out, u64::MAX, Hashes::Both).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(c.digests, BlobDigests::of(&bytes));
        assert_eq!(c.size, bytes.len() as u64);
        let c = copy_hashing(&mut &bytes[..], &mut io::sink(), u64::MAX, Hashes::Blake3).unwrap();
        assert_eq!(c.digests.blake3, BlobDigests::of(&bytes).blake3);
        let limit = bytes.len() as u64 - 1;
        assert!(matches!(
            copy_hashing(&mut &bytes[..], &mut io::sink(), limit, Hashes::Both),
            Err(CopyError::TooLong)
        ));
    }
}
