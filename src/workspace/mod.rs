//! Isolation (`isolation = "worktree"`): a task that edits the code runs in a git worktree of
//! its own, and what it changed comes back into the person's tree as a merge, in dependency
//! order. Coding agents side by side on one tree step on each other (two agents in
//! `src/lib.rs` at once, one running the tests while another is half-way through an edit);
//! every parallel-agent tool gives each one a worktree.
//!
//! - [`worktree`]: a task's worktree under `<state>/worktrees/<task>` at the build's base
//!   commit plus its deps' commits, its change committed to `orch/<task-id>`, and the kept
//!   worktrees of failed or conflicting tasks (listed, cleaned, reclaimed after a crash);
//! - [`merge`]: a change merged into the person's checkout so that a crash leaves the merge
//!   either not started or complete (a fsynced record, then the files, then the ref);
//! - [`landing`]: the marker a finished run leaves until its change is committed and its
//!   merge recorded, so that a build stopped in between lands it rather than re-run it;
//! - [`include`]: the untracked files a worktree gets from the project (`worktree_include`).
//!
//! Everything goes through the `git` CLI rather than a library: the merge must be the one
//! the person's own git would make (their config, `.gitattributes` merge drivers and
//! renormalisation, the `ort` strategy), and git 2.40's `merge-tree --write-tree
//! --merge-base` computes a 3-way merge into objects without touching any tree or index,
//! which is what lets a conflict leave the person's tree as it was. A git command costs a
//! few milliseconds; a worktree task runs a dozen of them, next to an agent run of minutes.
//! Hooks are off (`core.hooksPath=/dev/null`): orch's own commits are bookkeeping, and a
//! pre-commit hook that runs the test suite must not run once per task. This module knows
//! nothing of plans: it gets paths, ids and commits.

pub mod include;
pub mod landing;
pub mod merge;
pub mod worktree;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The person's git checkout that the project lives in, as one build sees it.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The top of the person's working tree.
    pub top: PathBuf,
    /// The project root relative to `top`, `""` or ending in `/`.
    pub prefix: String,
    /// The state directory relative to the project root (left out of every change).
    pub state_rel: String,
    /// The state directory itself.
    pub state_dir: PathBuf,
}

/// Why a project cannot use worktrees.
#[derive(Debug)]
pub enum OpenError {
    /// Not inside a git working tree (or git is missing).
    NotARepo(String),
    /// A repository with no commit yet: there is nothing to branch a worktree from.
    NoCommit,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NotARepo(why) => write!(f, "not a git repository ({why})"),
            OpenError::NoCommit => write!(f, "the git repository has no commit yet"),
        }
    }
}

/// `git <args>` in `dir`, with the person's config but no hooks, and none of the GIT_*
/// variables an outer git (a hook running orch) may have set; stdout on success.
pub(crate) fn git(dir: &Path, args: &[&str]) -> io::Result<String> {
    git_with(dir, args, None, &[])
}

/// [`git`] with stdin and extra environment; the error holds git's stderr.
pub(crate) fn git_with(
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> io::Result<String> {
    checked(args, git_output(dir, args, stdin, env)?)
}

/// [`git_with`] in a process group of its own, out of reach of a Ctrl-C at the terminal
/// (which goes to orch's group): for the commands that write the person's tree, which must
/// not stop half way.
pub(crate) fn git_shielded(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> io::Result<String> {
    checked(args, run_git(dir, args, stdin, &[], true)?)
}

/// Stdout of a git command that succeeded; else an error with the first line of its stderr.
fn checked(args: &[&str], out: std::process::Output) -> io::Result<String> {
    if !out.status.success() {
        // The first line says what went wrong; a usage text after it would not help.
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!(
            "git {}: {}",
            args.first().copied().unwrap_or(""),
            err.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The whole output of a git command, whatever its exit status.
pub(crate) fn git_output(
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> io::Result<std::process::Output> {
    run_git(dir, args, stdin, env, false)
}

fn run_git(
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
    own_group: bool,
) -> io::Result<std::process::Output> {
    let mut cmd = Command::new("git");
    if own_group {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_PREFIX",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run git: {e}")))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        // A git that exits early closes its end: its status says why, not this write.
        let _ = pipe.write_all(bytes);
    }
    child.wait_with_output()
}

/// NUL-separated pathspecs for `--pathspec-from-file=- --pathspec-file-nul`, each literal and
/// from the top of the tree.
pub(crate) fn pathspecs<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(b":(top,literal)");
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// Splits `-z` output into its entries.
pub(crate) fn nul_split(s: &str) -> impl Iterator<Item = &str> {
    s.split('\0').filter(|p| !p.is_empty())
}

impl Repo {
    /// The checkout holding `root` (the project root), with its state directory.
    pub fn open(root: &Path, state_dir: &Path) -> Result<Repo, OpenError> {
        let top = git(root, &["rev-parse", "--show-toplevel"])
            .map_err(|e| OpenError::NotARepo(e.to_string()))?;
        let prefix = git(root, &["rev-parse", "--show-prefix"])
            .map_err(|e| OpenError::NotARepo(e.to_string()))?;
        let top = PathBuf::from(top.trim_end_matches('\n'));
        git(root, &["rev-parse", "--verify", "-q", "HEAD^{commit}"])
            .map_err(|_| OpenError::NoCommit)?;
        let state_rel = state_dir
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Repo {
            top,
            prefix: prefix.trim_end_matches('\n').to_string(),
            state_rel,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// The commit the person's checkout is at now.
    pub fn head(&self) -> io::Result<String> {
        Ok(git(&self.top, &["rev-parse", "--verify", "HEAD^{commit}"])?
            .trim()
            .to_string())
    }

    /// A path relative to the project root, relative to the top of the checkout.
    pub fn from_top(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// A path relative to the top of the checkout, relative to the project root (`None`
    /// outside it).
    pub fn from_root<'a>(&self, top_rel: &'a str) -> Option<&'a str> {
        top_rel.strip_prefix(self.prefix.as_str())
    }

    /// Of `paths` (relative to the top), those with uncommitted changes in the person's
    /// checkout: staged, unstaged, or an untracked file in the way.
    pub fn dirty(&self, paths: &[String]) -> io::Result<Vec<String>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        // `git status` takes no pathspec file: the paths as arguments, a thousand at a time.
        let mut out = String::new();
        for chunk in paths.chunks(1000) {
            let mut args = vec![
                "status".to_string(),
                "--porcelain=v1".into(),
                "-z".into(),
                "--untracked-files=all".into(),
                "--no-renames".into(),
                "--".into(),
            ];
            args.extend(chunk.iter().map(|p| format!(":(top,literal){p}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            out.push_str(&git(&self.top, &args)?);
        }
        // Each entry is `XY path`.
        Ok(nul_split(&out)
            .filter_map(|e| e.get(3..).map(str::to_string))
            .collect())
    }
}

#[cfg(test)]
mod tests;
