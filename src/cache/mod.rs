//! The output cache (contract v2, "Cache"): each successful task's outputs, result and
//! reply metadata kept by its fingerprint, so a task whose fingerprint was seen before is
//! restored instead of run: a reverted input costs nothing, and neither does a teammate's
//! identical build when a remote cache is shared.
//!
//! - `key`: action keys (a fingerprint under a format tag) and blob digests;
//! - `record`: the action record, JSON, the same bytes locally and remotely;
//! - `local`: the content-addressed store in the state directory, LRU-pruned;
//! - `remote`: a Bazel HTTP cache (`/ac/`, `/cas/`), uploads in the background.
//!
//! The cache knows nothing of plans or builds beyond its settings: the engine
//! (`engine/cached.rs`) decides what to look up and store, and writes restored files.

mod key;
mod local;
mod record;
mod remote;

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use key::{is_hex64, ActionKey, BlobDigests};
pub use local::{LocalStore, Stats};
pub use record::{ActionRecord, CachedFile, RECORD_VERSION};
pub use remote::{BlobError, Remote, DRAIN_LIMIT};

use crate::plan::{CacheSettings, RemoteMode};

/// Where an entry was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Remote,
}

impl Source {
    pub fn word(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Remote => "remote",
        }
    }
}

/// One build's cache: the local store and, if configured, the remote.
pub struct Cache {
    pub local: LocalStore,
    pub remote: Option<Remote>,
    max_size: u64,
    stored: AtomicU64,
}

/// `<state_dir>/cache`.
pub fn dir_of(state_dir: &Path) -> PathBuf {
    state_dir.join("cache")
}

impl Cache {
    pub fn open(settings: &CacheSettings, state_dir: &Path) -> Cache {
        Cache {
            local: LocalStore::new(dir_of(state_dir)),
            remote: settings.remote.as_ref().map(Remote::new),
            max_size: settings.max_size,
            stored: AtomicU64::new(0),
        }
    }

    /// The local store alone, for looking without asking the network.
    pub fn local_only(settings: &CacheSettings, state_dir: &Path) -> Cache {
        Cache {
            local: LocalStore::new(dir_of(state_dir)),
            remote: None,
            max_size: settings.max_size,
            stored: AtomicU64::new(0),
        }
    }

    /// The record of `key`: the local store's, else the remote's. A remote record that is
    /// not one is reported (in `notes`) and is a miss.
    pub fn lookup(&self, key: &ActionKey) -> (Option<(ActionRecord, Source)>, Option<String>) {
        if let Some(r) = self.local.record(key) {
            return (Some((r, Source::Local)), None);
        }
        match self.remote.as_ref().map(|r| r.record(key)) {
            Some(Ok(Some(r))) => (Some((r, Source::Remote)), None),
            Some(Err(e)) => (
                None,
                Some(format!("remote record /ac/{} ignored: {e}", key.hex())),
            ),
            _ => (None, None),
        }
    }

    /// Whether the local store has `key` (the dry run's question: no network).
    pub fn has_local(&self, key: &ActionKey) -> bool {
        self.local.has_record(key)
    }

    /// A blob of a record found at `source`, checked against its digests.
    pub fn blob(&self, f: &CachedFile, source: Source) -> Result<Vec<u8>, BlobError> {
        match self.local.blob(&f.blake3) {
            Ok(Some(b)) => return Ok(b),
            Err(why) => return Err(BlobError::Corrupt(why)),
            Ok(None) => {}
        }
        match (&self.remote, source) {
            (Some(r), Source::Remote) => r.blob(f),
            // A local record whose blob was evicted: a miss.
            _ => Err(BlobError::Missing),
        }
    }

    /// Keeps a run: its blobs, then its record, locally; queued for the remote when it
    /// takes uploads. `blobs` are the bytes of the record's files, in its order.
    pub fn store(&self, key: &ActionKey, record: &ActionRecord, blobs: &[&[u8]]) -> io::Result<()> {
        for (f, bytes) in record.files().zip(blobs) {
            self.local.put_blob(&f.blake3, bytes)?;
        }
        self.local.put_record(key, record)?;
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.upload(key, record);
        Ok(())
    }

    /// Keeps in the local store what a remote hit brought (its blobs are stored already
    /// by the restore), so the next build does not ask the network again.
    pub fn keep_remote_hit(&self, key: &ActionKey, record: &ActionRecord, blobs: &[&[u8]]) {
        for (f, bytes) in record.files().zip(blobs) {
            let _ = self.local.put_blob(&f.blake3, bytes);
        }
        let _ = self.local.put_record(key, record);
        self.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues a locally stored entry for the remote (read-write only).
    fn upload(&self, key: &ActionKey, record: &ActionRecord) {
        let Some(remote) = self
            .remote
            .as_ref()
            .filter(|r| r.mode() == RemoteMode::ReadWrite)
        else {
            return;
        };
        let blobs = record
            .files()
            .filter_map(|f| Some((f.sha256.clone(), self.local.blob_file(&f.blake3)?)))
            .collect();
        remote.upload(*key, record, blobs);
    }

    /// What the remote has to say since the last call (each once).
    pub fn take_notes(&self) -> Vec<String> {
        self.remote
            .as_ref()
            .map(|r| r.take_notes())
            .unwrap_or_default()
    }

    /// The build's end: queued uploads drained (bounded), the local store pruned to its cap
    /// if anything was added. What there is to say.
    pub fn finish(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(r) = &self.remote {
            r.drain(DRAIN_LIMIT);
            notes.extend(r.take_notes());
        }
        if self.stored.load(Ordering::Relaxed) > 0 {
            self.local.prune(self.max_size);
        }
        notes
    }
}

/// Writes a restored file so that a reader sees the old content or the new, never a mix,
/// with the mode it was stored with: a temp file beside it, mode set, fsync, rename over,
/// fsync of the directory. A restore stands in for money spent, so it is made durable like
/// an agent's own result.
pub fn write_restored(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static N: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.restore.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        // Permission bits only: a record from a remote may not make a setuid file.
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A file's permission bits, for its record.
pub fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_files_keep_their_mode_and_replace_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/run.sh");
        write_restored(&p, b"#!/bin/sh\n", 0o755).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode_of(&p), 0o755);
        write_restored(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&p), 0o600);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left");
    }
}
