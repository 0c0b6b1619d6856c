//! Input patterns: expanding globs into the sorted files they match (never in the state
//! directory or `.git`), and the directories a glob walks, whose stamps tell whether its
//! matches can have changed.

use std::io;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use super::stat_cache::FileKind;
use crate::disk::{FileStamp, IoResultExt, PathError};
use crate::plan::normalize;

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
        let rel = |p: &Path| match p.strip_prefix(root) {
            Ok(r) => r.to_string_lossy().replace('\\', "/"),
            // An absolute pattern: the path as it is.
            Err(_) => p.to_string_lossy().into_owned(),
        };
        for entry in glob_walk(&walk_root, skip_dir) {
            crate::interrupt::check()?;
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => match walk_error(e, &rel, &matcher) {
                    Some(e) => return Err(e),
                    None => continue,
                },
            };
            let kind = FileKind::of(&entry.file_type());
            if kind == FileKind::Dir {
                continue;
            }
            let rel = rel(entry.path());
            if matcher.is_match(&rel) {
                // A FIFO, socket or device it matched is an input that cannot be hashed.
                kind.regular().context("input", &rel)?;
                out.push(rel);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The error a glob's walk met, naming the path, or `None` when it concerns a path the glob
/// does not match (a dangling symlink beside the files it wants). A directory that cannot be
/// read or a symlink loop is an error: what it holds may match.
fn walk_error(
    e: walkdir::Error,
    rel: &dyn Fn(&Path) -> String,
    matcher: &GlobMatcher,
) -> Option<io::Error> {
    let path = e.path().map(rel).unwrap_or_default();
    if e.loop_ancestor().is_some() {
        return Some(PathError::wrap(
            "input",
            &path,
            io::Error::from_raw_os_error(libc::ELOOP),
        ));
    }
    let source = e
        .into_io_error()
        .unwrap_or_else(|| io::Error::other("cannot walk"));
    let dangling = source.kind() == io::ErrorKind::NotFound;
    if dangling && !matcher.is_match(&path) {
        return None;
    }
    let source = if dangling {
        io::Error::new(io::ErrorKind::NotFound, "a symlink to nothing")
    } else {
        source
    };
    Some(PathError::wrap("input", &path, source))
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
}
