//! What a fresh worktree lacks that the task needs: the untracked files of
//! `worktree_include` (`.env`, `node_modules`, build caches), and the project's own copy of
//! files the plan says the task reads (its inputs, the outputs of deps that are not
//! isolated) where it differs from the commit's.
//!
//! `worktree_include`: a file is **copied**, a directory is **symlinked**. A copied `.env`
//! or config the agent edits stays the worktree's, never the person's; but copying a
//! `node_modules` of 100,000 files would cost each task seconds and its size in disk, and
//! such directories are read by the task, not edited (an agent that runs `npm install`
//! writes through the link into the person's copy: say `node_modules/**` in a glob to copy
//! it instead). Included paths are never part of the task's change.

use std::io;
use std::path::Path;

/// Brings `globs` (relative to `root`) into the worktree's project root `tree_root`; the
/// paths brought in. A path the worktree already has (a tracked file) is left as it is.
pub fn include(
    root: &Path,
    tree_root: &Path,
    globs: &[String],
    state_dir: &Path,
) -> io::Result<Vec<String>> {
    let mut brought = Vec::new();
    for g in globs {
        let files = if crate::fingerprint::has_glob_meta(g) {
            crate::fingerprint::expand_inputs(root, std::slice::from_ref(g), state_dir)?
        } else {
            let rel = crate::plan::normalize(g);
            let from = root.join(&rel);
            match std::fs::metadata(&from) {
                Ok(m) if m.is_dir() => {
                    let to = tree_root.join(&rel);
                    if to.symlink_metadata().is_err() {
                        if let Some(parent) = to.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::os::unix::fs::symlink(&from, &to)?;
                        brought.push(rel);
                    }
                    continue;
                }
                Ok(_) => vec![rel],
                Err(_) => continue,
            }
        };
        for rel in files {
            let to = tree_root.join(&rel);
            if to.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(root.join(&rel), &to)?;
            brought.push(rel);
        }
    }
    Ok(brought)
}

/// Copies each of `rels` from `root` into `tree_root` where the worktree's copy is missing
/// or differs (an uncommitted edit, a file a shell task wrote); the paths copied.
pub fn sync(root: &Path, tree_root: &Path, rels: &[String]) -> io::Result<Vec<String>> {
    let mut copied = Vec::new();
    for rel in rels {
        let from = root.join(rel);
        let Ok(theirs) = std::fs::read(&from) else {
            continue;
        };
        let to = tree_root.join(rel);
        if std::fs::read(&to).is_ok_and(|ours| ours == theirs) {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&to, &theirs)?;
        copied.push(rel.clone());
    }
    Ok(copied)
}
