//! Content fingerprints: blake3 over a task's definition, its input files and its deps' results.
//!
//! File hashes go through a stat cache keyed by (size, mtime, inode, ctime) so an unchanged file
//! is never read twice across runs; a file modified too recently to trust its mtime is re-read.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::plan::{Action, AgentSpec, Plan, Task};

/// A blake3 digest as lowercase hex, the form stored in state files.
pub type Digest = String;

/// 128 bits of the hash: ample to detect a change, and half the size in state files.
pub fn hex(h: blake3::Hash) -> Digest {
    h.to_hex()[..32].to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    stamp: FileStamp,
    hash: Digest,
}

/// Path -> (stat, hash). Shared by the workers of one build; saved in the state dir.
#[derive(Default)]
pub struct StatCache {
    entries: RwLock<HashMap<PathBuf, CacheEntry>>,
    changed: std::sync::atomic::AtomicBool,
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
    pub fn load(path: &Path) -> StatCache {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache {
            entries: RwLock::new(entries),
            changed: Default::default(),
        }
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        if !self.changed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let entries = self.entries.read().unwrap();
        let bytes = serde_json::to_vec(&*entries).map_err(io::Error::other)?;
        crate::state::persist_atomic(path, &bytes)
    }

    /// The content hash of `path`, or `None` when it does not exist.
    pub fn hash_file(&self, path: &Path) -> io::Result<Option<Digest>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            )));
        }
        let stamp = FileStamp::of(&meta);
        if let Some(e) = self.entries.read().unwrap().get(path) {
            if e.stamp == stamp {
                return Ok(Some(e.hash.clone()));
            }
        }
        let hash = hash_file_contents(path)?;
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let mut entries = self.entries.write().unwrap();
        if now_ns - stamp.mtime_ns.max(stamp.ctime_ns) > racy_window_ns(&stamp) {
            entries.insert(
                path.to_path_buf(),
                CacheEntry {
                    stamp,
                    hash: hash.clone(),
                },
            );
        } else {
            entries.remove(path);
        }
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(hash))
    }
}

pub fn hash_file_contents(path: &Path) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path)?;
    hasher.update_reader(file)?;
    Ok(hex(hasher.finalize()))
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
        let walker = walkdir::WalkDir::new(&walk_root)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| {
                let p = e.path();
                p != skip_dir && e.file_name() != ".git"
            });
        for entry in walker {
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

/// `./src//a.txt` -> `src/a.txt`, so the same file always has one name. An absolute path
/// (allowed with `allow_outside_root`) stays absolute.
pub fn normalize(p: &str) -> String {
    let rel = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/");
    if p.starts_with('/') {
        format!("/{rel}")
    } else {
        rel
    }
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

/// What a task's definition contributes to its fingerprint: everything that changes what it
/// does, nothing that only changes when or how often it runs. Folded from the per-field
/// digests of [`definition_fields`], so the two can never disagree.
pub fn definition_digest(fields: &[(String, Digest)]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"orch-definition-v1\0");
    for (name, digest) in fields {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
    }
    hex(h.finalize())
}

/// The definition split by field (`prompt`, `run`, `agent`, `env`, `verify`, `inputs`,
/// `outputs`), each hashed on its own, so `orch explain` can name the field that changed.
/// Every field is always listed, empty or not.
pub fn definition_fields(
    plan: &Plan,
    task: &Task,
    agent: Option<&AgentSpec>,
) -> io::Result<Vec<(String, Digest)>> {
    fn digest(parts: &[&[u8]]) -> Digest {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        hex(h.finalize())
    }
    let (run, prompt): (&[u8], Vec<u8>) = match &task.action {
        Action::Shell(cmd) => (cmd.as_bytes(), Vec::new()),
        Action::Prompt(p) => (b"", p.as_bytes().to_vec()),
        Action::PromptFile(p) => (
            b"",
            std::fs::read(plan.resolve(p)).map_err(|e| {
                io::Error::new(e.kind(), format!("prompt_file {}: {e}", p.display()))
            })?,
        ),
    };
    let agent_parts: Vec<Vec<u8>> = match agent {
        None => Vec::new(),
        Some(a) => {
            let mut v = vec![
                a.name.as_bytes().to_vec(),
                format!("{:?}", a.kind).into_bytes(),
                format!("{:?}", a.prompt_via).into_bytes(),
                format!("{:?}", a.result).into_bytes(),
            ];
            v.extend(a.command.iter().map(|c| c.as_bytes().to_vec()));
            v.extend(a.env.keys().map(|k| format!("env:{k}").into_bytes()));
            v
        }
    };
    let list = |items: &mut dyn Iterator<Item = &String>| -> Digest {
        let parts: Vec<&[u8]> = items.map(|s| s.as_bytes()).collect();
        digest(&parts)
    };
    Ok(vec![
        ("prompt".into(), digest(&[&prompt])),
        ("run".into(), digest(&[run])),
        (
            "agent".into(),
            digest(&agent_parts.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        ),
        ("env".into(), list(&mut task.env.keys())),
        (
            "verify".into(),
            digest(&[task.verify.as_deref().unwrap_or("").as_bytes()]),
        ),
        ("inputs".into(), list(&mut task.inputs.iter())),
        ("outputs".into(), list(&mut task.outputs.iter())),
    ])
}

/// What one finished dep hands its dependents: its fingerprint and its outputs' hashes.
pub fn dep_digest(fingerprint: &str, outputs: &[(String, Digest)]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(fingerprint.as_bytes());
    for (path, hash) in outputs {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
    }
    hex(h.finalize())
}

/// Combines the parts into the task's fingerprint.
pub fn combine(definition: &str, inputs: &[(String, Digest)], deps: &[(String, Digest)]) -> Digest {
    let mut h = blake3::Hasher::new();
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
        h.update(id.as_bytes());
        h.update(b"\0");
        h.update(digest.as_bytes());
    }
    hex(h.finalize())
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
    fn combine_depends_on_every_part() {
        let base = combine(
            "d",
            &[("a".into(), "1".into())],
            &[("t".into(), "x".into())],
        );
        assert_ne!(
            base,
            combine(
                "e",
                &[("a".into(), "1".into())],
                &[("t".into(), "x".into())]
            )
        );
        assert_ne!(
            base,
            combine(
                "d",
                &[("a".into(), "2".into())],
                &[("t".into(), "x".into())]
            )
        );
        assert_ne!(
            base,
            combine(
                "d",
                &[("a".into(), "1".into())],
                &[("t".into(), "y".into())]
            )
        );
        assert_eq!(
            base,
            combine(
                "d",
                &[("a".into(), "1".into())],
                &[("t".into(), "x".into())]
            )
        );
    }
}
