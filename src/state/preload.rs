//! The state files of a build, read while its plan loads.
//!
//! Decoding `state.bin` and the stat cache is a third of a no-op build's fixed cost; both
//! only need the state directory, which for an Orchfile is known before the plan is. The
//! read is optimistic and takes no lock: under the lock, [`StateStore`](super::StateStore)
//! uses the preloaded snapshot only if `state.bin` is still the very file that was read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::layout::StateLayout;
use super::snapshot::Snapshot;
use crate::disk::codec::DecodeError;
use crate::disk::FileStamp;
use crate::fingerprint::StatCache;

/// What was read ahead from one state directory.
pub struct Preloaded {
    dir: PathBuf,
    snapshot: Option<PreloadedSnapshot>,
    pub stat_cache: StatCache,
}

/// `state.bin` as read ahead. The file stays open until the check under the lock, so its
/// inode cannot be reused by a newer `state.bin` in the meantime: the same inode with the
/// same stamp is then the same content (the file is only ever replaced, never rewritten).
pub struct PreloadedSnapshot {
    _file: File,
    stamp: FileStamp,
    decoded: Result<Snapshot, DecodeError>,
}

impl Preloaded {
    /// Reads what exists of `dir`'s snapshot and stat cache; never fails (a missing or
    /// unreadable file is simply read again, under the lock, the usual way).
    pub fn read(dir: &Path) -> Preloaded {
        let layout = StateLayout::new(dir);
        let (snapshot, stat_cache) = rayon::join(
            || read_snapshot(&layout.snapshot()),
            || StatCache::load(&layout.stat_cache()),
        );
        Preloaded {
            dir: dir.to_path_buf(),
            snapshot,
            stat_cache,
        }
    }

    /// The state directory this was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn into_parts(self) -> (Option<PreloadedSnapshot>, StatCache) {
        (self.snapshot, self.stat_cache)
    }
}

fn read_snapshot(path: &Path) -> Option<PreloadedSnapshot> {
    let mut file = File::open(path).ok()?;
    // The stamp of the open file, not of the path: the two may differ already.
    let stamp = FileStamp::of(&file.metadata().ok()?);
    let mut bytes = Vec::with_capacity(stamp.size as usize);
    file.read_to_end(&mut bytes).ok()?;
    Some(PreloadedSnapshot {
        _file: file,
        stamp,
        decoded: Snapshot::decode(&bytes),
    })
}

impl PreloadedSnapshot {
    /// The decoded snapshot if `path` (stat'ed now, under the lock) is still the file that
    /// was read; `None` when it was replaced or removed since.
    pub fn take_if_current(self, path: &Path) -> Option<Result<Snapshot, DecodeError>> {
        (FileStamp::of_path(path)? == self.stamp).then_some(self.decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::tests::record;
    use crate::state::StateStore;

    fn store_with(dir: &Path, tasks: &[&str]) {
        let mut s = StateStore::open(StateLayout::new(dir)).unwrap();
        for t in tasks {
            s.record_success(t, record("f")).unwrap();
        }
        s.compact().unwrap();
    }

    #[test]
    fn a_preloaded_snapshot_is_used_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        store_with(dir.path(), &["a"]);
        let (snapshot, _) = Preloaded::read(dir.path()).into_parts();
        let layout = StateLayout::new(dir.path());
        let decoded = snapshot.unwrap().take_if_current(&layout.snapshot());
        assert!(decoded.unwrap().unwrap().records.contains_key("a"));
    }

    #[test]
    fn a_snapshot_replaced_after_the_preload_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        store_with(dir.path(), &["a"]);
        let (snapshot, _) = Preloaded::read(dir.path()).into_parts();
        // Another build (holding the lock) finishes in between: same size, new file.
        let mut s = StateStore::open(StateLayout::new(dir.path())).unwrap();
        s.snapshot.records.clear();
        s.record_success("b", record("f")).unwrap();
        s.compact().unwrap();
        drop(s);
        let layout = StateLayout::new(dir.path());
        let store = StateStore::open_preloaded(layout, snapshot).unwrap();
        assert!(store.snapshot.records.contains_key("b"));
        assert!(!store.snapshot.records.contains_key("a"));
    }

    #[test]
    fn nothing_to_preload_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let (snapshot, _) = Preloaded::read(&dir.path().join("missing")).into_parts();
        assert!(snapshot.is_none());
    }
}
