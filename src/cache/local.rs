//! The local store: a content-addressed directory in the state directory.
//!
//! ```text
//! cache/cas/ab/ab12...   one blob per content, named by its blake3 (64 hex digits)
//! cache/ac/cd34....json  one action record per task fingerprint (see `record`)
//! cache/tmp/             blobs being copied in, renamed into cas/ once hashed
//! ```
//!
//! Entries are written to a temp file and renamed in, so a reader sees a whole file or none;
//! a blob is checked against its name when read, so a torn or edited one is a miss, never a
//! restore. Reading an entry sets its mtime to now: `prune` evicts by that time, least
//! recently used first, until the store fits `cache_max_size`. Evicting a blob an action
//! still names makes that action a miss (its task runs again), which is the price of not
//! keeping an index that a crash could tear.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::blob_io::{copy_hashing, Copied, CopyError, Hashes};
use super::key::{is_hex64, ActionKey};
use super::record::ActionRecord;
use crate::disk::{replace_unsynced, sweep_left_over_temps, Swept, TempFile};

#[derive(Debug, Clone)]
pub struct LocalStore {
    pub dir: PathBuf,
}

/// A blob copied into the store's temp directory, hashed, not yet named.
#[derive(Debug)]
pub struct StagedBlob {
    tmp: TempFile,
    pub copied: Copied,
}

/// What `orch cache stats` shows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub blobs: u64,
    pub bytes: u64,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> LocalStore {
        LocalStore { dir: dir.into() }
    }

    fn record_path(&self, key: &ActionKey) -> PathBuf {
        self.dir.join("ac").join(format!("{}.json", key.hex()))
    }

    fn blob_path(&self, blake3: &str) -> PathBuf {
        self.dir.join("cas").join(&blake3[..2]).join(blake3)
    }

    /// The record stored under `key`, if any (and readable). Marks it used.
    pub fn record(&self, key: &ActionKey) -> Option<ActionRecord> {
        let path = self.record_path(key);
        let bytes = std::fs::read(&path).ok()?;
        match ActionRecord::parse(&bytes) {
            Ok(r) => {
                touch(&path);
                Some(r)
            }
            Err(_) => {
                // Unreadable (another version, torn): as good as absent.
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub fn has_record(&self, key: &ActionKey) -> bool {
        self.record_path(key).is_file()
    }

    pub fn put_record(&self, key: &ActionKey, record: &ActionRecord) -> io::Result<()> {
        let path = self.record_path(key);
        std::fs::create_dir_all(path.parent().unwrap())?;
        replace_unsynced(&path, &record.to_json())
    }

    /// The stored blob with this blake3, unchecked (whoever copies it out checks it on the
    /// way), marked used; `None` when absent.
    pub fn open_blob(&self, blake3: &str) -> Option<std::fs::File> {
        let path = self.blob_file(blake3)?;
        let file = std::fs::File::open(&path).ok()?;
        touch(&path);
        Some(file)
    }

    pub fn has_blob(&self, blake3: &str) -> bool {
        self.blob_file(blake3).is_some_and(|p| p.is_file())
    }

    /// Removes a blob found damaged.
    pub fn remove_blob(&self, blake3: &str) {
        if let Some(p) = self.blob_file(blake3) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The path of a stored blob, unchecked (the uploader reads it; the remote reader checks).
    pub fn blob_file(&self, blake3: &str) -> Option<PathBuf> {
        is_hex64(blake3).then(|| self.blob_path(blake3))
    }

    /// Copies `src` (at most `limit` bytes) into a temp file of the store, hashing it on the
    /// way; [`LocalStore::commit_blob`] names it by its content, dropping it forgets it.
    pub fn stage_blob(
        &self,
        src: &mut dyn Read,
        limit: u64,
        hashes: Hashes,
    ) -> Result<StagedBlob, CopyError> {
        let mut tmp = TempFile::new_in(&self.dir.join("tmp"), "blob").map_err(CopyError::Write)?;
        let copied = copy_hashing(src, &mut tmp.file, limit, hashes)?;
        Ok(StagedBlob { tmp, copied })
    }

    /// A staged blob kept under its blake3; one already there is kept, only marked used.
    pub fn commit_blob(&self, staged: StagedBlob) -> io::Result<()> {
        let path = self.blob_path(&staged.copied.digests.blake3);
        if path.is_file() {
            touch(&path);
            return Ok(());
        }
        std::fs::create_dir_all(path.parent().unwrap())?;
        staged.tmp.persist(&path)
    }

    /// Removes the temp files killed writers left in `tmp/` (blobs being copied in) and,
    /// with `records`, beside the records in `ac/` (a longer look, for `orch cache prune`).
    pub fn sweep_left_overs(&self, records: bool) -> Swept {
        let mut swept = sweep_left_over_temps(&self.dir.join("tmp"));
        if records {
            swept += sweep_left_over_temps(&self.dir.join("ac"));
        }
        swept
    }

    /// Every entry: (last used, size, path).
    fn entries(&self) -> Vec<(std::time::SystemTime, u64, PathBuf, bool)> {
        let mut out = Vec::new();
        for (sub, is_record) in [("ac", true), ("cas", false)] {
            for e in walkdir::WalkDir::new(self.dir.join(sub))
                .min_depth(1)
                .into_iter()
                .flatten()
            {
                if !e.file_type().is_file() {
                    continue;
                }
                if let Ok(m) = e.metadata() {
                    let used = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                    out.push((used, m.len(), e.into_path(), is_record));
                }
            }
        }
        out
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for (_, size, _, is_record) in self.entries() {
            if is_record {
                s.records += 1;
            } else {
                s.blobs += 1;
            }
            s.bytes += size;
        }
        s
    }

    /// Evicts least recently used entries until the store holds at most `max` bytes:
    /// how many entries and bytes went.
    pub fn prune(&self, max: u64) -> (u64, u64) {
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= max {
            return (0, 0);
        }
        entries.sort_by_key(|e| e.0);
        let (mut n, mut freed) = (0, 0);
        for (_, size, path, _) in entries {
            if total <= max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
                freed += size;
                n += 1;
            }
        }
        (n, freed)
    }

    /// Removes every entry: how many there were and their size.
    pub fn clear(&self) -> io::Result<Stats> {
        let s = self.stats();
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(s),
        }
    }
}

/// Sets a file's times to now: the mark `prune` evicts by. A failure only makes the entry
/// look older.
fn touch(path: &Path) {
    if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: a valid C string; a null `times` sets both times to now.
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::key::BlobDigests;
    use crate::cache::record::{CachedFile, RECORD_VERSION};
    use crate::disk::Digest;

    fn record(blob: &BlobDigests) -> ActionRecord {
        ActionRecord {
            orch_cache: RECORD_VERSION,
            task: "a".into(),
            runner: "shell".into(),
            outputs: vec![CachedFile {
                path: "out.txt".into(),
                blake3: blob.blake3.clone(),
                sha256: blob.sha256.clone(),
                size: 3,
                mode: 0o644,
            }],
            result: None,
            cost_usd: Some(0.5),
            input_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            output_tokens: None,
            session: None,
            duration_ms: 10,
            created_unix: 0,
        }
    }

    /// Stores `bytes` as a blob: their digests.
    pub(crate) fn put(store: &LocalStore, bytes: &[u8]) -> BlobDigests {
        let staged = store
            .stage_blob(&mut &bytes[..], u64::MAX, Hashes::Both)
            .unwrap();
        let d = staged.copied.digests.clone();
        store.commit_blob(staged).unwrap();
        d
    }

    fn get(store: &LocalStore, blake3: &str) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        store.open_blob(blake3)?.read_to_end(&mut bytes).unwrap();
        Some(bytes)
    }

    #[test]
    fn blobs_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("cache"));
        let d = put(&store, b"abc");
        assert_eq!(d, BlobDigests::of(b"abc"));
        assert_eq!(get(&store, &d.blake3).as_deref(), Some(&b"abc"[..]));
        // Stored once; a staged copy that is dropped leaves nothing behind.
        assert_eq!(put(&store, b"abc"), d);
        drop(store.stage_blob(&mut &b"xyz"[..], u64::MAX, Hashes::Blake3));
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(store.stats().blobs, 1);
        let key = ActionKey::of(&Digest::of(b"fp"));
        assert!(store.record(&key).is_none());
        store.put_record(&key, &record(&d)).unwrap();
        assert_eq!(store.record(&key), Some(record(&d)));
        assert!(get(&store, "../../etc/passwd").is_none());
        assert_eq!(store.stats().records, 1);
        assert_eq!(store.clear().unwrap().records, 1);
        assert_eq!(store.stats(), Stats::default());
    }

    #[test]
    fn prune_evicts_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let blobs: Vec<BlobDigests> = (0..3).map(|i| put(&store, &vec![i as u8; 1000])).collect();
        // Make the first the oldest, then use it: the second is now the oldest.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (i, b) in blobs.iter().enumerate() {
            let f = std::fs::File::options()
                .write(true)
                .open(store.blob_file(&b.blake3).unwrap())
                .unwrap();
            f.set_modified(old + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        assert!(get(&store, &blobs[0].blake3).is_some());
        assert_eq!(store.prune(2000), (1, 1000));
        assert!(!store.has_blob(&blobs[1].blake3));
        assert!(get(&store, &blobs[0].blake3).is_some());
        assert!(get(&store, &blobs[2].blake3).is_some());
        assert_eq!(store.prune(5000), (0, 0));
    }
}
