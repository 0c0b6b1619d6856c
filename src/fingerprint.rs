//! Content fingerprints: blake3 over a task's definition, its input files and its deps' results.
//!
//! File hashes go through a stat cache keyed by (size, mtime, inode, ctime) so an unchanged file
//! is never read twice across runs; a file modified too recently to trust its mtime is re-read.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use globset::{GlobBuilder, GlobMatcher};

use crate::disk::codec::{DecodeError, Decoder, Encoder};
use crate::disk::{Digest, FileStamp};
use crate::plan::{normalize, Action, AgentSpec, KeptDefinition, Plan, Task};

const STAT_CACHE_MAGIC: &[u8; 8] = b"ORCHSC01";

/// The name of a definition field (`prompt`, `run`, ...): static for the known ones, so the
/// field lists of ten thousand records cost no allocation.
pub type FieldName = std::borrow::Cow<'static, str>;

/// A definition's digest by field, as [`definition_fields`] computes it (no allocation).
pub type DefinitionFields = [(&'static str, Digest); 7];

/// The fields of a definition, in the order [`definition_fields`] lists them.
pub const DEFINITION_FIELDS: [&str; 7] = [
    "prompt", "run", "agent", "env", "verify", "inputs", "outputs",
];

/// The static name for a known field, else an owned copy.
pub fn field_name(name: &str) -> FieldName {
    match DEFINITION_FIELDS.iter().find(|&&f| f == name) {
        Some(&f) => FieldName::Borrowed(f),
        None => FieldName::Owned(name.to_string()),
    }
}

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
fn racy_window_ns(stamp: &FileStamp) -> i64 {
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

    /// The content hash of `path`, or `None` when it does not exist.
    pub fn hash_file(&self, path: &Path) -> io::Result<Option<Digest>> {
        let stat = match std::fs::metadata(path) {
            Ok(m) => Some((FileStamp::of(&m), m.is_dir())),
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
        self.hash_stamped(path, dir.stat(rel)?)
    }

    fn hash_stamped(
        &self,
        path: &Path,
        stat: Option<(FileStamp, bool)>,
    ) -> io::Result<Option<Digest>> {
        use std::os::unix::ffi::OsStrExt;
        let Some((stamp, is_dir)) = stat else {
            return Ok(None);
        };
        if is_dir {
            return Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            )));
        }
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
            _ => FileKind::Other,
        };
        Ok(Some((stamp, kind)))
    }
}

/// What [`OpenDir::stat_kind`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    /// A FIFO, socket or device: never a task's output.
    Other,
}

pub fn hash_file_contents(path: &Path) -> io::Result<Digest> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    // Most inputs and outputs are small: one read and a one-shot hash.
    let mut buf = Vec::with_capacity(16 << 10);
    (&mut file).take(64 << 10).read_to_end(&mut buf)?;
    if buf.len() < 64 << 10 {
        return Ok(Digest::of(&buf));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&buf);
    hasher.update_reader(file)?;
    Ok(Digest::from_hash(hasher.finalize()))
}

/// Collects a digest's few short pieces and hashes them at once: for inputs this small,
/// blake3's one-shot path is far cheaper than its streaming hasher, whose ~2 KB state must
/// be set up and moved each time. The same bytes give the same digest either way. Pieces
/// up to 256 bytes in all stay on the stack.
struct Pieces {
    inline: [u8; 256],
    len: usize,
    spill: Vec<u8>,
}

impl Pieces {
    fn new() -> Pieces {
        Pieces {
            inline: [0; 256],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() && self.len + bytes.len() <= self.inline.len() {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.extend_from_slice(bytes);
        }
    }

    /// A piece with its length in front, so adjacent pieces cannot run into each other.
    fn part(&mut self, bytes: &[u8]) {
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }

    fn finish(&self) -> Digest {
        if self.spill.is_empty() {
            Digest::of(&self.inline[..self.len])
        } else {
            Digest::of(&self.spill)
        }
    }
}

/// Expands input patterns into sorted, de-duplicated paths relative to `root`. A pattern without
/// glob characters names one file (kept even if missing); a glob may match nothing.
pub fn expand_inputs(root: &Path, patterns: &[String], skip_dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for pattern in patterns {
        if !has_glob_meta(pattern) {
            // Named files are not stat'ed here: hashing them next says if one is missing.
            out.push(normalize(pattern));
            continue;
        }
        let matcher = compile_glob(pattern)?;
        let base = literal_prefix(pattern);
        let walk_root = root.join(&base);
        if !walk_root.is_dir() {
            continue;
        }
        for entry in glob_walk(&walk_root, skip_dir) {
            let entry = entry.map_err(io::Error::other)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = match entry.path().strip_prefix(root) {
                Ok(r) => r.to_string_lossy().replace('\\', "/"),
                // An absolute pattern: the path as it is.
                Err(_) => entry.path().to_string_lossy().into_owned(),
            };
            if matcher.is_match(&rel) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What a glob pattern walks: everything under its literal prefix, links followed, but not
/// the state directory nor `.git`.
fn glob_walk<'a>(
    walk_root: &Path,
    skip_dir: &'a Path,
) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> + 'a {
    walkdir::WalkDir::new(walk_root)
        .follow_links(true)
        .into_iter()
        .filter_entry(move |e| e.path() != skip_dir && e.file_name() != ".git")
}

/// The directories [`expand_inputs`] walks for the glob patterns among `patterns`, relative
/// to `root`, with their stamps, and the symlinks it follows in them; `None` for a walk root
/// that does not exist. A file added to, removed from or renamed in any of them changes that
/// directory's stamp, and a symlink's target turning from a file into a directory changes the
/// symlink's (followed) stamp, so while these stamps hold, so does what the globs match.
pub fn glob_dirs(
    root: &Path,
    patterns: &[String],
    skip_dir: &Path,
) -> io::Result<Vec<(String, Option<FileStamp>)>> {
    let rel = |p: &Path| match p.strip_prefix(root) {
        // The root itself, by a name `stat` takes.
        Ok(r) if r.as_os_str().is_empty() => ".".to_string(),
        Ok(r) => r.to_string_lossy().into_owned(),
        Err(_) => p.to_string_lossy().into_owned(),
    };
    let mut out = Vec::new();
    for pattern in patterns.iter().filter(|p| has_glob_meta(p)) {
        let walk_root = root.join(literal_prefix(pattern));
        match std::fs::metadata(&walk_root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                out.push((rel(&walk_root), Some(FileStamp::of(&meta))));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push((rel(&walk_root), None));
                continue;
            }
            Err(e) => return Err(e),
        }
        for entry in glob_walk(&walk_root, skip_dir) {
            let entry = entry.map_err(io::Error::other)?;
            if entry.file_type().is_dir() || entry.path_is_symlink() {
                let meta = entry.metadata().map_err(io::Error::other)?;
                out.push((rel(entry.path()), Some(FileStamp::of(&meta))));
            }
        }
    }
    Ok(out)
}

pub fn has_glob_meta(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

/// Compiles an input pattern the way inputs are matched: `*` stays within one path component.
pub fn compile_glob(pattern: &str) -> io::Result<GlobMatcher> {
    GlobBuilder::new(&normalize(pattern))
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

/// The directory part of a glob before its first wildcard: where the walk starts.
pub fn literal_prefix(pattern: &str) -> String {
    let norm = normalize(pattern);
    let parts: Vec<&str> = norm.split('/').collect();
    let fixed: Vec<&str> = parts
        .iter()
        .take_while(|s| !has_glob_meta(s))
        .copied()
        .collect();
    // The last part is a file name unless a wildcard follows it.
    let n = if fixed.len() == parts.len() {
        fixed.len().saturating_sub(1)
    } else {
        fixed.len()
    };
    fixed[..n].join("/")
}

/// A task's definition: its digest and the per-field digests it is folded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    pub digest: Digest,
    pub fields: DefinitionFields,
}

impl Definition {
    /// Computes a task's definition as `agent` runs it.
    pub fn of(plan: &Plan, task: &Task, agent: Option<&AgentSpec>) -> io::Result<Definition> {
        let fields = definition_fields(plan, task, agent)?;
        Ok(Definition {
            digest: definition_digest(&fields),
            fields,
        })
    }

    /// Rebuilds one from the digests the plan cache kept.
    pub fn from_kept(kept: &KeptDefinition) -> Definition {
        Definition {
            digest: kept.digest,
            fields: std::array::from_fn(|i| (DEFINITION_FIELDS[i], kept.fields[i])),
        }
    }

    /// What the plan cache keeps of it.
    pub fn kept(&self) -> KeptDefinition {
        KeptDefinition {
            digest: self.digest,
            fields: self.fields.map(|(_, d)| d),
        }
    }
}

/// Task `t`'s definition as it runs in this build: from the plan cache when the plan came
/// from there and no `--agent` override changes it, else computed.
pub fn task_definition(
    plan: &Plan,
    t: usize,
    agent_override: Option<&str>,
) -> io::Result<Definition> {
    let task = &plan.tasks[t];
    if agent_override.is_none() || task.action.is_shell() {
        if let Some(Some(kept)) = plan.definitions.get(t) {
            return Ok(Definition::from_kept(kept));
        }
    }
    Definition::of(plan, task, plan.agent_for(task, agent_override))
}

/// Task `t`'s definition as the plan alone fixes it, for the plan cache to keep; `None` for
/// a `prompt_file` task, whose prompt is read at build time.
pub fn memoizable_definition(plan: &Plan, t: usize) -> Option<Definition> {
    let task = &plan.tasks[t];
    if matches!(task.action, Action::PromptFile(_)) {
        return None;
    }
    Definition::of(plan, task, plan.agent_for(task, None)).ok()
}

/// What a task's definition contributes to its fingerprint: everything that changes what it
/// does, nothing that only changes when or how often it runs. Folded from the per-field
/// digests of [`definition_fields`], so the two can never disagree.
pub fn definition_digest(fields: &DefinitionFields) -> Digest {
    let mut h = Pieces::new();
    h.update(b"orch-definition-v1\0");
    for (name, digest) in fields {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
    }
    h.finish()
}

/// The definition split by field (`prompt`, `run`, `agent`, `env`, `verify`, `inputs`,
/// `outputs`), each hashed on its own, so `orch explain` can name the field that changed.
/// Every field is always listed, empty or not.
pub fn definition_fields(
    plan: &Plan,
    task: &Task,
    agent: Option<&AgentSpec>,
) -> io::Result<DefinitionFields> {
    let one = |bytes: &[u8]| {
        let mut h = Pieces::new();
        h.part(bytes);
        h.finish()
    };
    let list = |items: &mut dyn Iterator<Item = &String>| {
        let mut h = Pieces::new();
        for item in items {
            h.part(item.as_bytes());
        }
        h.finish()
    };
    let (run, prompt): (&[u8], std::borrow::Cow<[u8]>) = match &task.action {
        Action::Shell(cmd) => (cmd.as_bytes(), Default::default()),
        Action::Prompt(p) => (b"", p.as_bytes().into()),
        Action::PromptFile(p) => (
            b"",
            std::fs::read(plan.resolve(p))
                .map_err(|e| io::Error::new(e.kind(), format!("prompt_file {}: {e}", p.display())))?
                .into(),
        ),
    };
    let mut agent_digest = Pieces::new();
    if let Some(a) = agent {
        agent_digest.part(a.name.as_bytes());
        agent_digest.part(format!("{:?}", a.kind).as_bytes());
        agent_digest.part(format!("{:?}", a.prompt_via).as_bytes());
        agent_digest.part(format!("{:?}", a.result).as_bytes());
        for c in &a.command {
            agent_digest.part(c.as_bytes());
        }
        for k in a.env.keys() {
            agent_digest.part(format!("env:{k}").as_bytes());
        }
    }
    let digests = [
        one(&prompt),
        one(run),
        agent_digest.finish(),
        list(&mut task.env.keys()),
        one(task.verify.as_deref().unwrap_or("").as_bytes()),
        list(&mut task.inputs.iter()),
        list(&mut task.outputs.iter()),
    ];
    Ok(std::array::from_fn(|i| (DEFINITION_FIELDS[i], digests[i])))
}

/// What one finished dep hands its dependents: its fingerprint and its outputs' hashes.
pub fn dep_digest(fingerprint: &Digest, outputs: &[(String, Digest)]) -> Digest {
    let mut h = Pieces::new();
    h.update(fingerprint.as_bytes());
    for (path, hash) in outputs {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
    }
    h.finish()
}

/// Combines the parts into the task's fingerprint.
pub fn combine<S: AsRef<str>>(
    definition: &Digest,
    inputs: &[(String, Digest)],
    deps: &[(S, Digest)],
) -> Digest {
    let mut h = Pieces::new();
    h.update(b"orch-fingerprint-v1\0");
    h.update(definition.as_bytes());
    for (path, hash) in inputs {
        h.update(b"in\0");
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
    }
    for (id, digest) in deps {
        h.update(b"dep\0");
        h.update(id.as_ref().as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        assert_eq!(literal_prefix("src/**/*.ts"), "src");
        assert_eq!(literal_prefix("./a/b/*.md"), "a/b");
        assert_eq!(literal_prefix("*.md"), "");
        assert_eq!(literal_prefix("a/{b,c}/x"), "a");
    }

    #[test]
    fn expands_globs_sorted_and_skips_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "src/b.ts",
            "src/a.ts",
            "src/deep/c.ts",
            "src/x.md",
            ".orchestrator/s.ts",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let got = expand_inputs(
            root,
            &["src/**/*.ts".into(), "src/a.ts".into()],
            &root.join(".orchestrator"),
        )
        .unwrap();
        assert_eq!(got, vec!["src/a.ts", "src/b.ts", "src/deep/c.ts"]);
        let star = expand_inputs(root, &["src/*.ts".into()], &root.join(".orchestrator")).unwrap();
        assert_eq!(
            star,
            vec!["src/a.ts", "src/b.ts"],
            "* stays within one directory"
        );
        let all = expand_inputs(root, &["**/*.ts".into()], &root.join(".orchestrator")).unwrap();
        assert!(!all.iter().any(|p| p.starts_with(".orchestrator")));
        assert_eq!(
            expand_inputs(root, &["missing.txt".into()], root).unwrap(),
            vec!["missing.txt"]
        );
    }

    #[test]
    fn glob_dirs_are_the_directories_a_glob_walks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "src/a.ts",
            "src/deep/c.ts",
            ".orchestrator/s.ts",
            "other/o.ts",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let state = root.join(".orchestrator");
        let names = |patterns: &[&str]| -> Vec<(String, bool)> {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            glob_dirs(root, &patterns, &state)
                .unwrap()
                .into_iter()
                .map(|(p, stamp)| (p, stamp.is_some()))
                .collect()
        };
        let dirs = names(&["src/**/*.ts", "plain.txt", "gone/*.md"]);
        assert_eq!(
            dirs,
            [
                ("src".to_string(), true),
                ("src/deep".to_string(), true),
                ("gone".to_string(), false)
            ]
        );
        let all = names(&["**/*.ts"]);
        assert_eq!(
            all[0],
            (".".to_string(), true),
            "the root, by a name stat takes"
        );
        assert!(all.iter().any(|(p, _)| p == "other"), "{all:?}");
        assert!(
            !all.iter().any(|(p, _)| p.starts_with(".orchestrator")),
            "the state directory is not walked: {all:?}"
        );
    }

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

    #[test]
    fn pieces_hash_like_one_buffer_on_and_off_the_stack() {
        for sizes in [vec![3, 5], vec![200, 56], vec![250, 10, 1000], vec![0, 300]] {
            let mut p = Pieces::new();
            let mut all = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let piece = vec![i as u8 + 1; *n];
                p.update(&piece);
                all.extend_from_slice(&piece);
            }
            assert_eq!(p.finish(), Digest::of(&all), "{sizes:?}");
        }
    }

    #[test]
    fn combine_depends_on_every_part() {
        let d = |s: &str| Digest::of(s.as_bytes());
        let base = combine(&d("d"), &[("a".into(), d("1"))], &[("t", d("x"))]);
        assert_ne!(
            base,
            combine(&d("e"), &[("a".into(), d("1"))], &[("t", d("x"))])
        );
        assert_ne!(
            base,
            combine(&d("d"), &[("a".into(), d("2"))], &[("t", d("x"))])
        );
        assert_ne!(
            base,
            combine(&d("d"), &[("a".into(), d("1"))], &[("t", d("y"))])
        );
        assert_eq!(
            base,
            combine(&d("d"), &[("a".into(), d("1"))], &[("t", d("x"))])
        );
    }
}
