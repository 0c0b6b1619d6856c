//! Replacing a file whole, so that readers see the old content or the new, never a mix: a
//! [`TempFile`] beside it, renamed over it once written (the cache streams blobs through one).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` so that readers see the old content or the new, never a mix:
/// a temp file beside it, fsync, rename over, fsync the directory.
pub fn persist_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes, true)
}

/// As [`persist_atomic`], without the fsyncs: for files that are cheap to redo, whose torn
/// copy after a power loss the output-hash check catches (shell results, the periodic
/// master_plan.md, the plan cache).
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes, false)
}

fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut tmp = TempFile::beside_in_place(path)?;
    tmp.file.write_all(bytes)?;
    if sync {
        tmp.file.sync_all()?;
    }
    tmp.persist(path)?;
    if sync {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
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
        std::fs::create_dir_all(dir)?;
        TempFile::open_in(dir, name)
    }

    /// A new temp file in `dir`, which must exist.
    fn open_in(dir: &Path, name: &str) -> io::Result<TempFile> {
        static N: AtomicU64 = AtomicU64::new(0);
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

    /// One beside `path`, so it can be renamed over it (its directory created if need be).
    pub fn beside(path: &Path) -> io::Result<TempFile> {
        let (dir, name) = dir_and_name(path);
        TempFile::new_in(dir, &name)
    }

    /// As [`TempFile::beside`], in a directory that must already exist.
    fn beside_in_place(path: &Path) -> io::Result<TempFile> {
        let (dir, name) = dir_and_name(path);
        TempFile::open_in(dir, &name)
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

fn dir_and_name(path: &Path) -> (&Path, String) {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_atomic_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        persist_atomic(&p, b"first").unwrap();
        persist_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
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
