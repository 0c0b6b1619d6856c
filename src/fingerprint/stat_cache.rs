//! File hashes through a stat cache keyed by (size, mtime, inode, ctime), saved in the state
//! directory, so an unchanged file is never read twice across runs; a file modified too
//! recently to trust its mtime is re-read. Files are stat'ed relative to an open directory.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::disk::codec::{DecodeError, Decoder, Encoder};
use crate::disk::{Digest, FileStamp};

const STAT_CACHE_MAGIC: &[u8; 8] = b"ORCHSC01";

#[derive(Debug, Clone)]
struct CacheEntry {
    stamp: FileStamp,
    hash: Digest,
}

/// Path -> (stat, hash). Shared by the workers of one build; saved in the state dir.
///
/// What the previous build saved is read without locking, since the up-to-date checks run
/// on all cores and nearly all of them are hits; what this build learns goes to an overlay.
#[derive(Default)]
pub struct StatCache {
    loaded: PathMap<CacheEntry>,
    /// New hashes, and `None` for paths whose saved entry must go.
    fresh: std::sync::Mutex<PathMap<Option<CacheEntry>>>,
}

/// Keyed by the path's bytes, with a fast non-cryptographic hash (keys are local paths).
type PathMap<V> = HashMap<Box<[u8]>, V, std::hash::BuildHasherDefault<FxHasher>>;

/// The multiply-rotate hash of rustc (FxHash), a few cycles per 8 bytes, with a final mix:
/// its raw state varies little in the low bits that pick a bucket (paths that differ in
/// one digit collided), so `finish` spreads every bit over all of them (murmur3's fmix64).
#[derive(Default)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A file changed within this window of being hashed may change again within the same
/// timestamp tick, unseen by its stamp, so its hash is not cached (git's "racy clean"
/// problem). Filesystems with nanosecond timestamps tick in milliseconds (the kernel's coarse
/// clock); ones with whole seconds need the long window.
pub fn racy_window_ns(stamp: &FileStamp) -> i64 {
    let whole_seconds = stamp.mtime_ns % 1_000_000_000 == 0 && stamp.ctime_ns % 1_000_000_000 == 0;
    if whole_seconds {
        2_000_000_000
    } else {
        100_000_000
    }
}

impl StatCache {
    /// The cache saved by a previous build; empty when missing or unreadable (it is only a
    /// cache: every entry it lacks costs one read of the file).
    pub fn load(path: &Path) -> StatCache {
        StatCache {
            loaded: std::fs::read(path)
                .ok()
                .and_then(|b| Self::decode(&b).ok())
                .unwrap_or_default(),
            fresh: Default::default(),
        }
    }

    /// Writes the cache back if this build learned anything.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let fresh = self.fresh.lock().unwrap();
        let changed = fresh.iter().any(|(k, v)| match (v, self.loaded.get(k)) {
            (Some(new), Some(old)) => new.stamp != old.stamp || new.hash != old.hash,
            (Some(_), None) => true,
            (None, old) => old.is_some(),
        });
        if !changed {
            return Ok(());
        }
        let mut entries: Vec<(&[u8], &CacheEntry)> = self
            .loaded
            .iter()
            .filter(|(k, _)| !fresh.contains_key(*k))
            .map(|(k, v)| (&**k, v))
            .collect();
        entries.extend(fresh.iter().filter_map(|(k, v)| Some((&**k, v.as_ref()?))));
        // Only a cache: a torn copy fails its checksum and costs one re-read of each file.
        crate::disk::replace_unsynced(path, &Self::encode(&entries))
    }

    fn encode(entries: &[(&[u8], &CacheEntry)]) -> Vec<u8> {
        let mut e = Encoder::new(STAT_CACHE_MAGIC);
        e.usize(entries.len());
        for (path, entry) in entries {
            e.bytes(path);
            e.stamp(&entry.stamp);
            e.digest(&entry.hash);
        }
        e.finish()
    }

    fn decode(bytes: &[u8]) -> Result<PathMap<CacheEntry>, DecodeError> {
        let mut d = Decoder::new(STAT_CACHE_MAGIC, bytes)?;
        let n = d.count()?;
        let mut entries = PathMap::with_capacity_and_hasher(n, Default::default());
        for _ in 0..n {
            let path: Box<[u8]> = d.bytes()?.into();
            let stamp = d.stamp()?;
            entries.insert(
                path,
                CacheEntry {
                    stamp,
                    hash: d.digest()?,
                },
            );
        }
        Ok(entries)
    }

    /// The content hash of `path`, or `None` when it does not exist. Anything but a
    /// regular file (a directory, FIFO, socket or device) is an error, and never opened.
    /// Errors name no path: the caller knows what the file is to it, and says.
    pub fn hash_file(&self, path: &Path) -> io::Result<Option<Digest>> {
        let stat = match std::fs::metadata(path) {
            Ok(m) => Some((FileStamp::of(&m), FileKind::of(&m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.hash_stamped(path, stat)
    }

    /// As [`Self::hash_file`] for `path` = `dir` + `rel`, stat'ed relative to the open `dir`.
    pub fn hash_file_in(
        &self,
        dir: &OpenDir,
        rel: &str,
        path: &Path,
    ) -> io::Result<Option<Digest>> {
        self.hash_stamped(path, dir.stat_kind(rel)?)
    }

    fn hash_stamped(
        &self,
        path: &Path,
        stat: Option<(FileStamp, FileKind)>,
    ) -> io::Result<Option<Digest>> {
        use std::os::unix::ffi::OsStrExt;
        let Some((stamp, kind)) = stat else {
            return Ok(None);
        };
        kind.regular()?;
        let key = path.as_os_str().as_bytes();
        // A saved entry whose stamp still matches is right whatever this build saw before:
        // a file cannot get an old stamp back (its ctime only moves forward).
        if let Some(e) = self.loaded.get(key).filter(|e| e.stamp == stamp) {
            return Ok(Some(e.hash));
        }
        if let Some(Some(e)) = self.fresh.lock().unwrap().get(key) {
            if e.stamp == stamp {
                return Ok(Some(e.hash));
            }
        }
        let hash = hash_file_contents(path)?;
        let trusted = !stamp_is_racy(&stamp, now_ns());
        self.fresh
            .lock()
            .unwrap()
            .insert(key.into(), trusted.then_some(CacheEntry { stamp, hash }));
        Ok(Some(hash))
    }

    /// The stamp and hash this cache vouches for at `path`: what this build hashed, else
    /// what an earlier one saved. `None` when it has no entry, or when this build found the
    /// file too recently changed to trust its stamp.
    pub fn vouched(&self, path: &Path) -> Option<(FileStamp, Digest)> {
        use std::os::unix::ffi::OsStrExt;
        let key = path.as_os_str().as_bytes();
        let entry = match self.fresh.lock().unwrap().get(key) {
            Some(fresh) => fresh.clone()?,
            None => self.loaded.get(key)?.clone(),
        };
        Some((entry.stamp, entry.hash))
    }
}

/// Whether a file last changed at `stamp` may still change within the same timestamp tick
/// unseen by its stamp, as of `now_ns`; see [`racy_window_ns`].
pub fn stamp_is_racy(stamp: &FileStamp, now_ns: i64) -> bool {
    now_ns - stamp.mtime_ns.max(stamp.ctime_ns) <= racy_window_ns(stamp)
}

/// Nanoseconds since the Unix epoch, as file stamps count them.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A directory kept open so that files under it are stat'ed by their relative path: the
/// kernel then walks a component or two instead of the whole absolute path, which is a
/// fifth of a no-op build's stat cost.
pub struct OpenDir(std::fs::File);

impl OpenDir {
    pub fn open(path: &Path) -> Option<OpenDir> {
        std::fs::File::open(path).ok().map(OpenDir)
    }

    /// The stamp of `rel` and whether it is a directory, or `None` when it does not exist.
    pub fn stat(&self, rel: &str) -> io::Result<Option<(FileStamp, bool)>> {
        Ok(self
            .stat_kind(rel)?
            .map(|(stamp, kind)| (stamp, kind == FileKind::Dir)))
    }

    /// The stamp of `rel` (symlinks followed) and what kind of file it is, or `None` when it
    /// does not exist.
    pub fn stat_kind(&self, rel: &str) -> io::Result<Option<(FileStamp, FileKind)>> {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 512];
        let owned;
        let c_path: &std::ffi::CStr = if rel.len() < buf.len() {
            buf[..rel.len()].copy_from_slice(rel.as_bytes());
            std::ffi::CStr::from_bytes_until_nul(&buf).map_err(io::Error::other)?
        } else {
            owned = std::ffi::CString::new(rel).map_err(io::Error::other)?;
            &owned
        };
        if c_path.to_bytes().len() != rel.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {rel:?} contains a NUL byte"),
            ));
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: c_path is NUL-terminated and st is large enough for the kernel to fill.
        let r = unsafe { libc::fstatat(self.0.as_raw_fd(), c_path.as_ptr(), st.as_mut_ptr(), 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: fstatat succeeded, so it filled st.
        let st = unsafe { st.assume_init() };
        let stamp = FileStamp {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
            inode: st.st_ino,
        };
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFIFO => FileKind::Other("a FIFO"),
            libc::S_IFSOCK => FileKind::Other("a socket"),
            libc::S_IFCHR => FileKind::Other("a character device"),
            libc::S_IFBLK => FileKind::Other("a block device"),
            _ => FileKind::Other("not a regular file"),
        };
        Ok(Some((stamp, kind)))
    }
}

/// What [`OpenDir::stat_kind`] found (symlinks followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    /// A FIFO, socket or device (named for messages): never hashed, never a task's output.
    Other(&'static str),
}

impl FileKind {
    pub fn of(t: &std::fs::FileType) -> FileKind {
        use std::os::unix::fs::FileTypeExt;
        match () {
            _ if t.is_file() => FileKind::File,
            _ if t.is_dir() => FileKind::Dir,
            _ if t.is_fifo() => FileKind::Other("a FIFO"),
            _ if t.is_socket() => FileKind::Other("a socket"),
            _ if t.is_char_device() => FileKind::Other("a character device"),
            _ if t.is_block_device() => FileKind::Other("a block device"),
            _ => FileKind::Other("not a regular file"),
        }
    }

    /// `Ok` for a regular file, else an error saying what it is instead.
    pub fn regular(self) -> io::Result<()> {
        match self {
            FileKind::File => Ok(()),
            FileKind::Dir => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a directory, not a file",
            )),
            FileKind::Other(what) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}, not a regular file"),
            )),
        }
    }
}

/// Opens `path` for reading only if it is a regular file. A FIFO would block the open (and
/// the build, which SIGTERM could not end) until some writer came, a device could be read
/// forever: it is stat'ed first and never opened if it is anything else, opened with
/// O_NONBLOCK as a second guard, and the open file checked again, in case the path changed
/// in between.
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    FileKind::of(&std::fs::metadata(path)?.file_type()).regular()?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    FileKind::of(&file.metadata()?.file_type()).regular()?;
    Ok(file)
}

/// The whole of a regular file (see [`open_regular`]), read in chunks that an interrupt
/// stops.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = open_regular(path)?;
    let mut out = Vec::new();
    loop {
        crate::interrupt::check()?;
        let n = (&mut file).take(4 << 20).read_to_end(&mut out)?;
        if n == 0 {
            return Ok(out);
        }
    }
}

pub fn hash_file_contents(path: &Path) -> io::Result<Digest> {
    use std::io::Read;
    let mut file = open_regular(path)?;
    // Most inputs and outputs are small: one read and a one-shot hash.
    let mut buf = Vec::with_capacity(16 << 10);
    (&mut file).take(64 << 10).read_to_end(&mut buf)?;
    if buf.len() < 64 << 10 {
        return Ok(Digest::of(&buf));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&buf);
    // A huge file is hashed a few MB at a time, so an interrupt ends it within one chunk.
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        crate::interrupt::check()?;
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&chunk[..n]);
    }
    Ok(Digest::from_hash(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cache_sees_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.txt");
        std::fs::write(&f, "one").unwrap();
        let cache = StatCache::default();
        let a = cache.hash_file(&f).unwrap().unwrap();
        assert_eq!(cache.hash_file(&f).unwrap().unwrap(), a);
        std::fs::write(&f, "two").unwrap();
        assert_ne!(cache.hash_file(&f).unwrap().unwrap(), a);
        assert_eq!(cache.hash_file(&dir.path().join("nope")).unwrap(), None);
    }
    #[test]
    fn stat_cache_survives_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.txt");
        std::fs::write(&f, "one").unwrap();
        let cache = StatCache::default();
        let d = cache.hash_file(&f).unwrap().unwrap();
        let stamp = FileStamp::of(&std::fs::metadata(&f).unwrap());
        {
            use std::os::unix::ffi::OsStrExt;
            cache.fresh.lock().unwrap().insert(
                f.as_os_str().as_bytes().into(),
                Some(CacheEntry {
                    stamp,
                    hash: Digest::of(b"remembered"),
                }),
            );
        }
        let saved = dir.path().join("cache.bin");
        cache.save(&saved).unwrap();
        let back = StatCache::load(&saved);
        assert_eq!(
            back.hash_file(&f).unwrap(),
            Some(Digest::of(b"remembered")),
            "a loaded entry with a matching stamp is trusted"
        );
        assert_ne!(d, Digest::of(b"remembered"));
        // Nothing new learned: nothing written.
        std::fs::remove_file(&saved).unwrap();
        back.save(&saved).unwrap();
        assert!(!saved.exists());
        std::fs::write(&saved, b"garbage").unwrap();
        assert!(StatCache::load(&saved).loaded.is_empty());
    }
    #[test]
    fn path_hashes_spread_over_the_low_bits() {
        use std::hash::BuildHasher;
        let hasher = std::hash::BuildHasherDefault::<FxHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..4096)
            .map(|i| {
                let key: Box<[u8]> = format!("/tmp/project/out/t_{i}.txt").into_bytes().into();
                hasher.hash_one(&key) & 4095
            })
            .collect();
        // Uniform hashing fills about 63% of 4096 buckets with 4096 keys.
        assert!(buckets.len() > 2400, "only {} buckets used", buckets.len());
    }
    #[test]
    fn a_stat_relative_to_an_open_dir_matches_std() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f.txt"), "content").unwrap();
        let open = OpenDir::open(dir.path()).unwrap();
        let (stamp, is_dir) = open.stat("sub/f.txt").unwrap().unwrap();
        let meta = std::fs::metadata(dir.path().join("sub/f.txt")).unwrap();
        assert_eq!(stamp, FileStamp::of(&meta));
        assert!(!is_dir);
        assert!(open.stat("sub").unwrap().unwrap().1);
        assert_eq!(open.stat("sub/none").unwrap(), None);
        assert!(open.stat("sub/f.txt/x").is_err(), "not a directory");
        assert!(open.stat("a\0b").is_err());
        let long = "x/".repeat(400);
        assert!(open.stat(&long).unwrap().is_none() || open.stat(&long).is_err());
        let cache = StatCache::default();
        assert_eq!(
            cache
                .hash_file_in(&open, "sub/f.txt", &dir.path().join("sub/f.txt"))
                .unwrap(),
            Some(Digest::of(b"content"))
        );
    }
}
