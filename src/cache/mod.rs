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

mod blob_io;
mod key;
mod local;
mod record;
mod remote;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::disk::SyncBatch;
pub use crate::disk::TempFile;
pub use blob_io::{CopyError, Hashes, BUFFER};
pub use key::{is_hex64, ActionKey, BlobDigests};
pub use local::{LocalStore, StagedBlob, Stats};
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
    /// Restored files, synced together at the build's end rather than one by one.
    restored: SyncBatch,
}

/// `<state_dir>/cache`.
pub fn dir_of(state_dir: &Path) -> PathBuf {
    state_dir.join("cache")
}

impl Cache {
    /// The cache of a build, which starts by removing the temp files a killed build left in
    /// the store's `tmp/` (one small directory, read once).
    pub fn open(settings: &CacheSettings, state_dir: &Path) -> Cache {
        let local = LocalStore::new(dir_of(state_dir));
        local.sweep_left_overs(false);
        Cache {
            local,
            remote: settings.remote.as_ref().map(Remote::new),
            max_size: settings.max_size,
            stored: AtomicU64::new(0),
            restored: SyncBatch::default(),
        }
    }

    /// The local store alone, for looking without asking the network.
    pub fn local_only(settings: &CacheSettings, state_dir: &Path) -> Cache {
        Cache {
            local: LocalStore::new(dir_of(state_dir)),
            remote: None,
            max_size: settings.max_size,
            stored: AtomicU64::new(0),
            restored: SyncBatch::default(),
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

    /// Makes sure the blob `f` names is in the local store: a record found remotely has its
    /// blobs fetched (each checked against its digests while it streams in).
    pub fn ensure_local(&self, f: &CachedFile, source: Source) -> Result<(), BlobError> {
        if self.local.has_blob(&f.blake3) {
            return Ok(());
        }
        match (&self.remote, source) {
            (Some(r), Source::Remote) => r.fetch_into(f, &self.local),
            // A local record whose blob was evicted: a miss.
            _ => Err(BlobError::Missing),
        }
    }

    /// Copies the stored blob `f` names into a temp file beside `dest`, with `f`'s mode,
    /// checking it against its blake3 and size on the way (a damaged blob is removed);
    /// renaming the temp file over `dest` is the caller's, once every file of the entry
    /// checks out, and so is [`Cache::restored`] after it.
    pub fn stage_restore(&self, f: &CachedFile, dest: &Path) -> Result<TempFile, BlobError> {
        let Some(mut blob) = self.local.open_blob(&f.blake3) else {
            return Err(BlobError::Missing);
        };
        let mut tmp = TempFile::beside(dest).map_err(BlobError::Unwritable)?;
        let damaged = || {
            self.local.remove_blob(&f.blake3);
            BlobError::Corrupt(format!(
                "blob {} in the local cache does not hash to its name (removed)",
                &f.blake3[..12]
            ))
        };
        match blob_io::copy_hashing(&mut blob, &mut tmp.file, f.size, Hashes::Blake3) {
            Ok(c) if c.digests.blake3 == f.blake3 && c.size == f.size => {}
            Ok(_) | Err(CopyError::TooLong) | Err(CopyError::Read(_)) => return Err(damaged()),
            Err(CopyError::Write(e)) | Err(CopyError::Interrupted(e)) => {
                return Err(BlobError::Unwritable(e))
            }
        }
        // Permission bits only: a record from a remote may not make a setuid file.
        tmp.file
            .set_permissions(std::fs::Permissions::from_mode(f.mode & 0o777))
            .map_err(BlobError::Unwritable)?;
        Ok(tmp)
    }

    /// `path` was written by a restore: it is synced, with its directory, before the build
    /// ends ([`Cache::finish`]), so the state that closes the build never names a restored
    /// file a power loss could tear. Synced together, the files of a thousand restores
    /// cost a few journal commits instead of two each.
    pub fn restored(&self, path: PathBuf) {
        self.restored.add(path);
    }

    /// Copies a file of the project into the store's temp directory, hashed (both digests)
    /// on the way, for [`Cache::store`].
    pub fn stage_file(&self, path: &Path) -> Result<StagedBlob, CopyError> {
        let mut file = crate::fingerprint::open_regular(path).map_err(CopyError::Read)?;
        self.local.stage_blob(&mut file, u64::MAX, Hashes::Both)
    }

    /// Keeps a run: its blobs, then its record, locally; queued for the remote when it
    /// takes uploads. `blobs` are the record's files, staged, in its order.
    pub fn store(
        &self,
        key: &ActionKey,
        record: &ActionRecord,
        blobs: Vec<StagedBlob>,
    ) -> io::Result<()> {
        for staged in blobs {
            self.local.commit_blob(staged)?;
        }
        self.local.put_record(key, record)?;
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.upload(key, record);
        Ok(())
    }

    /// Keeps in the local store the record of a remote hit (its blobs were fetched into
    /// it), so the next build does not ask the network again.
    pub fn keep_remote_hit(&self, key: &ActionKey, record: &ActionRecord) {
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

    /// The build's end: restored files synced, queued uploads drained (bounded), the local
    /// store pruned to its cap if anything was added. What there is to say.
    pub fn finish(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Err(e) = self.restored.sync() {
            notes.push(format!("restored files not synced to disk: {e}"));
        }
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

/// A file's permission bits, for its record.
pub fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::CacheSettings;

    fn cache(dir: &Path) -> Cache {
        let settings = CacheSettings {
            enabled: true,
            max_size: u64::MAX,
            remote: None,
        };
        Cache::open(&settings, dir)
    }

    fn file_of(d: &BlobDigests, size: u64, mode: u32) -> CachedFile {
        CachedFile {
            path: "out".into(),
            blake3: d.blake3.clone(),
            sha256: d.sha256.clone(),
            size,
            mode,
        }
    }

    #[test]
    fn an_interrupt_during_a_restore_is_not_a_damaged_blob() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let bytes = b"an answer that cost money\n";
        let d = local::tests::put(&c.local, bytes);
        let dest = dir.path().join("out/answer.md");
        let f = file_of(&d, bytes.len() as u64, 0o644);
        {
            let _stop = crate::interrupt::tests::interrupt_this_thread();
            match c.stage_restore(&f, &dest) {
                Err(BlobError::Unwritable(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::Interrupted)
                }
                other => panic!("an interrupt, not {other:?}"),
            }
        }
        // The good blob stays, nothing is left beside the destination, and the next
        // restore (not interrupted) works.
        assert!(c.local.has_blob(&d.blake3));
        assert_eq!(
            std::fs::read_dir(dir.path().join("out")).unwrap().count(),
            0
        );
        c.stage_restore(&f, &dest).unwrap().persist(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    }

    #[test]
    fn a_restore_copies_out_with_its_mode_and_never_a_damaged_blob() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let bytes = b"#!/bin/sh\n";
        let d = local::tests::put(&c.local, bytes);
        let dest = dir.path().join("sub/run.sh");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, "old").unwrap();
        let f = file_of(&d, bytes.len() as u64, 0o4755);
        let tmp = c.stage_restore(&f, &dest).unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"old",
            "not in place before the rename"
        );
        tmp.persist(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        assert_eq!(mode_of(&dest), 0o755, "permission bits only");
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1
        );
        // Damaged in the store: reported, removed, nothing left beside the destination.
        std::fs::write(c.local.blob_file(&d.blake3).unwrap(), "#!/bin/sh\nrm").unwrap();
        let f = file_of(&d, bytes.len() as u64, 0o644);
        assert!(matches!(
            c.stage_restore(&f, &dest),
            Err(BlobError::Corrupt(_))
        ));
        assert!(!c.local.has_blob(&d.blake3));
        assert!(matches!(
            c.stage_restore(&f, &dest),
            Err(BlobError::Missing)
        ));
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
