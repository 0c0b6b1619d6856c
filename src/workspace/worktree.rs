//! A task's worktree: created under `<state>/worktrees/<task>` (detached, so no branch is
//! checked out twice) at a start commit, the build's base commit with the task's deps'
//! commits merged in dependency order; its change committed (plumbing: `add`, `write-tree`,
//! `commit-tree`, no hooks) and named `orch/<task-id>`. The worktrees of tasks that failed
//! or conflicted are kept, each with a small record beside it for `orch status`, `orch diff`,
//! `orch merge` and `orch clean`; one with no record is what a killed build left, reclaimed
//! by the next one.

use std::io;
use std::path::{Path, PathBuf};

use super::{git, git_output, git_with, nul_split, pathspecs, Repo};

/// A task's change: its commit and the commit it started from (its parent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub start: String,
    pub commit: String,
}

/// A task's worktree, as it runs.
#[derive(Debug, Clone)]
pub struct TaskTree {
    /// The top of the worktree.
    pub dir: PathBuf,
    /// The project root inside it (the task's working directory).
    pub root: PathBuf,
    /// The commit it was created at.
    pub start: String,
}

/// What a kept worktree is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptAs {
    /// Its change did not merge: the files in `files`.
    Conflict,
    /// The task failed; its worktree shows how far it got.
    Failed,
    /// The task did not start: the changes of its deps do not merge with each other (the
    /// files in `files`, the deps in `deps`). Each of those changes merged into the person's
    /// tree on its own; no worktree or branch is kept.
    DepsConflict,
}

/// The record beside a kept worktree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    pub task: String,
    pub branch: String,
    pub kept_as: KeptAs,
    /// The change on the branch when it was kept (`None`: the task changed nothing).
    pub change: Option<Change>,
    /// Conflicting files (relative to the project root), or none.
    pub files: Vec<String>,
    pub reason: String,
    /// The success a clean `orch merge` records, as the build would have (opaque here).
    #[serde(default)]
    pub success: Option<serde_json::Value>,
    /// For [`KeptAs::DepsConflict`]: the dep whose change did not merge, then those merged
    /// before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
}

/// Why a task's start could not be made: merging `dep`'s change onto `onto`'s (and the
/// build's base) conflicts in `files` (relative to the top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartConflict {
    pub files: Vec<String>,
    pub dep: String,
    pub onto: Vec<String>,
}

/// A name for `id` that is a safe file name and ref component: ids of fan-out instances
/// (`review[src/a.ts]`) hold characters neither allows; those get a hash of the id.
pub fn safe_name(id: &str) -> String {
    let plain = !id.is_empty()
        && !id.starts_with(['.', '-'])
        && !id.ends_with(['.'])
        && !id.ends_with(".lock")
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        return id.to_string();
    }
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    s.push('-');
    s.push_str(&blake3::hash(id.as_bytes()).to_hex()[..8]);
    s
}

/// The branch a task's change is kept on.
pub fn branch(id: &str) -> String {
    format!("orch/{}", safe_name(id))
}

/// The identity of orch's commits: author and committer both, so that a checkout with no
/// `user.email` works too; the name says which task and agent made the change.
pub fn identity(task: &str, agent_id: &str) -> [(&'static str, String); 4] {
    let name = format!("orch ({task}, {agent_id})");
    [
        ("GIT_AUTHOR_NAME", name.clone()),
        ("GIT_AUTHOR_EMAIL", "orch@localhost".to_string()),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", "orch@localhost".to_string()),
    ]
}

/// The outcome of a 3-way merge into objects only.
pub(crate) enum TreeMerge {
    Clean(String),
    Conflict(Vec<String>),
}

/// `git merge-tree --write-tree`: `theirs` merged into `ours` over `base`, touching no tree
/// or index; the files that conflict (relative to the top) if it does not merge.
pub(crate) fn merge_tree(
    top: &Path,
    base: Option<&str>,
    ours: &str,
    theirs: &str,
) -> io::Result<TreeMerge> {
    let base_arg = base.map(|b| format!("--merge-base={b}"));
    let mut args = vec![
        "merge-tree",
        "--write-tree",
        "-z",
        "--name-only",
        "--no-messages",
    ];
    if let Some(b) = &base_arg {
        args.push(b);
    }
    args.extend([ours, theirs]);
    let out = git_output(top, &args, None, &[])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split('\0');
    let tree = fields.next().unwrap_or("").trim().to_string();
    match out.status.code() {
        Some(0) => Ok(TreeMerge::Clean(tree)),
        Some(1) => {
            let mut files: Vec<String> = fields
                .take_while(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            files.dedup();
            Ok(TreeMerge::Conflict(files))
        }
        _ => Err(io::Error::other(format!(
            "git merge-tree: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// A commit of `tree` with these parents and message, by `who`.
pub(crate) fn commit_tree(
    top: &Path,
    tree: &str,
    parents: &[&str],
    message: &str,
    who: &[(&str, String)],
) -> io::Result<String> {
    let mut args = vec!["commit-tree", tree];
    for p in parents {
        args.extend(["-p", p]);
    }
    args.extend(["-F", "-"]);
    let env: Vec<(&str, &str)> = who.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(git_with(top, &args, Some(message.as_bytes()), &env)?
        .trim()
        .to_string())
}

/// The tree of a commit.
pub(crate) fn tree_of(top: &Path, commit: &str) -> io::Result<String> {
    Ok(git(top, &["rev-parse", &format!("{commit}^{{tree}}")])?
        .trim()
        .to_string())
}

impl Repo {
    pub fn worktrees_dir(&self) -> PathBuf {
        self.state_dir.join("worktrees")
    }

    pub fn tree_dir(&self, id: &str) -> PathBuf {
        self.worktrees_dir().join(safe_name(id))
    }

    fn kept_path(&self, id: &str) -> PathBuf {
        self.worktrees_dir().join(format!("{}.json", safe_name(id)))
    }

    /// The commit a task starts from: `base` with each dep's change merged in, in the order
    /// given (dependency order); which of them do not merge, and where, if two do not.
    pub fn start(
        &self,
        base: &str,
        task: &str,
        agent_id: &str,
        deps: &[(&str, &Change)],
    ) -> io::Result<Result<String, StartConflict>> {
        let mut current = base.to_string();
        for (i, (dep, change)) in deps.iter().enumerate() {
            if current == change.start {
                // Nothing between: the dep's own commit is where this task starts.
                current = change.commit.clone();
                continue;
            }
            match merge_tree(&self.top, Some(&change.start), &current, &change.commit)? {
                TreeMerge::Clean(tree) => {
                    current = commit_tree(
                        &self.top,
                        &tree,
                        &[&current, &change.commit],
                        &format!("orch: {dep}'s change, for {task} to start from"),
                        &identity(task, agent_id),
                    )?;
                }
                TreeMerge::Conflict(files) => {
                    return Ok(Err(StartConflict {
                        files,
                        dep: dep.to_string(),
                        onto: deps[..i].iter().map(|(d, _)| d.to_string()).collect(),
                    }))
                }
            }
        }
        Ok(Ok(current))
    }

    /// A fresh worktree for `id` at `start`; whatever an earlier build left there is
    /// reclaimed first.
    pub fn create(&self, id: &str, start: &str) -> io::Result<TaskTree> {
        let dir = self.tree_dir(id);
        if dir.exists() || self.kept_path(id).exists() {
            self.remove(id, false);
        }
        std::fs::create_dir_all(self.worktrees_dir())?;
        let d = dir.to_string_lossy();
        let _admin = worktree_admin();
        git(
            &self.top,
            &["worktree", "add", "--detach", "--quiet", &d, start],
        )?;
        Ok(TaskTree {
            root: dir.join(&self.prefix),
            dir,
            start: start.to_string(),
        })
    }

    /// Everything in the worktree except the state directory and `excluded` (relative to
    /// the project root) staged in its own index; the tree it comes to.
    fn stage(&self, tt: &TaskTree, excluded: &[String]) -> io::Result<String> {
        git(&tt.dir, &["add", "-A", ":/"])?;
        // Then out again (an exclude pathspec naming an ignored file makes `add` fail).
        let out: Vec<String> = std::iter::once(self.from_top(&self.state_rel))
            .chain(excluded.iter().map(|e| self.from_top(e)))
            .filter(|p| !p.is_empty())
            .collect();
        git_with(
            &tt.dir,
            &[
                "rm",
                "-r",
                "-q",
                "--cached",
                "--ignore-unmatch",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
            ],
            Some(&pathspecs(out.iter().map(String::as_str))),
            &[],
        )?;
        Ok(git(&tt.dir, &["write-tree"])?.trim().to_string())
    }

    /// Commits what the worktree holds (but `excluded`) on top of its start; `None` when it
    /// holds nothing new. The worktree moves on to the commit.
    pub fn commit(
        &self,
        tt: &mut TaskTree,
        excluded: &[String],
        message: &str,
        who: &[(&str, String)],
    ) -> io::Result<Option<String>> {
        let tree = self.stage(tt, excluded)?;
        if tree == tree_of(&self.top, &tt.start)? {
            return Ok(None);
        }
        let commit = commit_tree(&self.top, &tree, &[&tt.start], message, who)?;
        // The worktree's HEAD follows, so `git status` in it shows what is left.
        git(&tt.dir, &["update-ref", "HEAD", &commit])?;
        Ok(Some(commit))
    }

    /// Those of `paths` (relative to the project root) the commit does not hold: a task's
    /// declared outputs its change lacks. (`ls-tree` takes no pathspec file: the whole
    /// listing, one git process, looked up.)
    pub fn missing_from<'p>(&self, commit: &str, paths: &'p [String]) -> io::Result<Vec<&'p str>> {
        let out = git(
            &self.top,
            &["ls-tree", "-r", "-z", "--name-only", "--full-tree", commit],
        )?;
        let listed: std::collections::HashSet<&str> = nul_split(&out).collect();
        Ok(paths
            .iter()
            .filter(|p| !listed.contains(self.from_top(&crate::plan::normalize(p)).as_str()))
            .map(String::as_str)
            .collect())
    }

    /// Names the task's change `orch/<task-id>`.
    pub fn set_branch(&self, id: &str, commit: &str) -> io::Result<()> {
        git(
            &self.top,
            &["update-ref", &format!("refs/heads/{}", branch(id)), commit],
        )
        .map(drop)
    }

    /// The commit `orch/<task-id>` names, if the branch exists.
    pub fn branch_commit(&self, id: &str) -> Option<String> {
        git(
            &self.top,
            &[
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{}^{{commit}}", branch(id)),
            ],
        )
        .ok()
        .map(|s| s.trim().to_string())
    }

    /// Removes the task's worktree, its record, its landing marker and (unless
    /// `keep_branch`) its branch.
    /// Best effort: what git cannot remove is removed from the disk, and `worktree prune`
    /// forgets it.
    pub fn remove(&self, id: &str, keep_branch: bool) {
        let dir = self.tree_dir(id);
        {
            let _admin = worktree_admin();
            if dir.exists() {
                let d = dir.to_string_lossy();
                if git(&self.top, &["worktree", "remove", "--force", "--force", &d]).is_err() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            let _ = git(&self.top, &["worktree", "prune"]);
        }
        let _ = std::fs::remove_file(self.kept_path(id));
        self.drop_landing(id);
        if !keep_branch {
            let _ = git(
                &self.top,
                &["update-ref", "-d", &format!("refs/heads/{}", branch(id))],
            );
        }
    }

    /// Keeps the task's worktree and branch, with this record.
    pub fn keep(&self, kept: &Kept) -> io::Result<()> {
        std::fs::create_dir_all(self.worktrees_dir())?;
        let json = serde_json::to_vec_pretty(kept).map_err(io::Error::other)?;
        crate::disk::persist_atomic(&self.kept_path(&kept.task), &json)
    }

    /// The kept worktrees, by task id.
    pub fn kept(&self) -> Vec<Kept> {
        kept_in(&self.worktrees_dir())
    }

    /// The worktree directories that have no record: what a killed build left (its tasks
    /// were running). Each is removed, with its branch; their names are returned.
    pub fn reclaim(&self) -> Vec<String> {
        let kept: std::collections::HashSet<String> =
            self.kept().iter().map(|k| safe_name(&k.task)).collect();
        let mut reclaimed = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.worktrees_dir()) else {
            return reclaimed;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !kept.contains(&name) {
                self.remove(&name, false);
                reclaimed.push(name);
            }
        }
        reclaimed.sort();
        reclaimed
    }
}

/// The kept worktrees' records in a state directory's `worktrees/`, without git.
pub fn kept_in(worktrees: &Path) -> Vec<Kept> {
    let mut out: Vec<Kept> = std::fs::read_dir(worktrees)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a: &Kept, b| a.task.cmp(&b.task));
    out
}

/// Held around `git worktree add`, `remove` and `prune`, one at a time in this process: a
/// prune while another task's `add` is half done removes the new entry's admin files
/// (seen as "failed to read .git/worktrees/a/commondir" with two tasks starting at once).
/// One build runs per project (the run lock), so a process-wide lock is enough.
fn worktree_admin() -> std::sync::MutexGuard<'static, ()> {
    static ADMIN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ADMIN.lock().unwrap_or_else(|e| e.into_inner())
}
