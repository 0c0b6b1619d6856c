//! Moving blobs without holding them: every copy into or out of the cache goes through one
//! bounded buffer, hashing as it goes, into a temp file that is renamed into place only once
//! what went through checks out. An output of gigabytes costs the build [`BUFFER`] bytes of
//! memory, not its size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A file being written under a temp name in the directory it will be renamed within;
/// removed unless [`TempFile::persist`]ed.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    pub file: File,
    kept: bool,
}

impl TempFile {
    /// A new temp file in `dir` (created if need be), named after `name`.
    pub fn new_in(dir: &Path, name: &str) -> io::Result<TempFile> {
        static N: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(
            ".{name}.orch-tmp.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok(TempFile {
            path,
            file,
            kept: false,
        })
    }

    /// One beside `path`, so it can be renamed over it.
    pub fn beside(path: &Path) -> io::Result<TempFile> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        TempFile::new_in(dir, &name)
    }

    /// Renames it to `to`: whole or not at all for a reader there.
    pub fn persist(mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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

    #[test]
    fn a_temp_file_is_gone_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.txt");
        let mut t = TempFile::beside(&target).unwrap();
        t.file.write_all(b"x").unwrap();
        drop(t);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );
        let mut t = TempFile::beside(&target).unwrap();
        t.file.write_all(b"y").unwrap();
        t.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"y");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
