//! A project tree as stat sees it: every file's [`FileStamp`] by relative path, and what
//! changed between two looks. Stamps only, no content: a walk of 10,000 files costs a few
//! milliseconds, so it can be taken before and after every agent run; whoever compares
//! decides which changed files deserve a hash.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::stamp::FileStamp;

/// The files under a root (regular files and symlinks, not followed), by `/`-separated
/// path relative to it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tree {
    pub files: HashMap<String, FileStamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Created,
    Modified,
    Deleted,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Modified => "changed",
            Change::Deleted => "deleted",
        }
    }
}

impl Tree {
    /// Walks `root`, leaving out every directory for whose relative path `skip_dir` says
    /// so (and all below it). Unreadable directories are left out too: what cannot be read
    /// before or after cannot be compared.
    pub fn scan(root: &Path, skip_dir: &dyn Fn(&str) -> bool) -> io::Result<Tree> {
        let mut tree = Tree::default();
        let mut dirs = vec![String::new()];
        // The root itself must be readable; below it, best effort.
        std::fs::read_dir(root)?;
        while let Some(rel) = dirs.pop() {
            let dir = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(&rel)
            };
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let path = if rel.is_empty() {
                    name.into_owned()
                } else {
                    format!("{rel}/{name}")
                };
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if !skip_dir(&path) {
                        dirs.push(path);
                    }
                } else if let Ok(meta) = entry.metadata() {
                    // Not followed: a symlink counts as itself.
                    tree.files.insert(path, FileStamp::of(&meta));
                }
            }
        }
        Ok(tree)
    }

    /// What changed from `self` to `after`, sorted by path. A file whose stat changed only
    /// in its ctime (a chmod, a link count) kept its content and is left out.
    pub fn changes(&self, after: &Tree) -> Vec<(String, Change)> {
        let mut out: Vec<(String, Change)> = Vec::new();
        for (path, now) in &after.files {
            match self.files.get(path) {
                None => out.push((path.clone(), Change::Created)),
                Some(was) if content_may_differ(was, now) => {
                    out.push((path.clone(), Change::Modified))
                }
                Some(_) => {}
            }
        }
        for path in self.files.keys() {
            if !after.files.contains_key(path) {
                out.push((path.clone(), Change::Deleted));
            }
        }
        out.sort();
        out
    }
}

fn content_may_differ(was: &FileStamp, now: &FileStamp) -> bool {
    was.size != now.size || was.mtime_ns != now.mtime_ns || was.inode != now.inode
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_created_changed_and_deleted_files_and_skips_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("src/a.txt"), "a").unwrap();
        std::fs::write(root.join("src/deep/b.txt"), "b").unwrap();
        std::fs::write(root.join("keep.txt"), "k").unwrap();
        std::fs::write(root.join("gone.txt"), "g").unwrap();
        let skip = |p: &str| p == ".git";
        let before = Tree::scan(root, &skip).unwrap();
        assert_eq!(before.files.len(), 4);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("src/a.txt"), "changed").unwrap();
        std::fs::write(root.join("src/deep/new.txt"), "n").unwrap();
        std::fs::remove_file(root.join("gone.txt")).unwrap();
        std::fs::write(root.join(".git/index"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("keep.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let after = Tree::scan(root, &skip).unwrap();
        assert_eq!(
            before.changes(&after),
            [
                ("gone.txt".to_string(), Change::Deleted),
                ("src/a.txt".to_string(), Change::Modified),
                ("src/deep/new.txt".to_string(), Change::Created),
            ]
        );
    }
}
