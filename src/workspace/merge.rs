//! A task's change merged into the person's checkout, so that a crash at any point leaves
//! the merge either not started or complete:
//!
//! 1. the merged tree is computed with `git merge-tree --write-tree` (objects only: a
//!    conflict, or a file the merge needs that the person has uncommitted changes to,
//!    stops here, with nothing touched);
//! 2. the merge commit is made (still objects only), and a record naming the old and new
//!    commit and the paths to write or remove is written and fsynced (temp file, fsync,
//!    rename, fsync of the directory, as the state files are);
//! 3. the files: `git checkout <new> -- <paths>` and `git rm` of the removed ones, index
//!    and working tree of just those paths, so the person's other uncommitted changes stay;
//! 4. `git update-ref HEAD <new> <old>` (the old value checked: a commit the person made
//!    meanwhile is never overwritten);
//! 5. the record is removed by the caller ([`Repo::drop_record`]), once the task's success
//!    is in the journal: a kill before that finds the record, which carries the success.
//!
//! Records are one per task (`merges/<task>.json`): merges go one at a time, but the task
//! whose merge is done may not have its success recorded before the next task merges.
//! A build that finds records ([`Repo::recover`]) finishes each merge: with HEAD still at
//! the old commit it does 3 and 4 again (both are idempotent: they set paths and a ref to
//! given values), with the new commit in HEAD's history only 5. Rolling forward rather than
//! back keeps the work a task was paid for. With the old commit in HEAD's history but not
//! the new one (a merge that failed half way, then later merges of the same build moved
//! HEAD on), the record's change is merged again onto HEAD as a task's change is, or kept
//! as a conflict for `orch merge`. If HEAD is at none of these, the person has moved on;
//! the record is dropped and that said.

use std::io;
use std::path::PathBuf;

use super::worktree::{commit_tree, identity, merge_tree, Change, Kept, KeptAs, TreeMerge};
use super::{git, git_shielded, nul_split, pathspecs, Repo};

/// How a merge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Merged: the new commit of the checkout and the paths written (relative to the top).
    Clean { commit: String, paths: Vec<String> },
    /// Nothing to merge: the change is empty, or already in the checkout.
    Unchanged,
    /// Not merged: these files (relative to the top), for this reason.
    Conflict { files: Vec<String>, why: String },
}

/// What a merge in progress is about (see the module's steps).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    task: String,
    old: String,
    new: String,
    write: Vec<String>,
    remove: Vec<String>,
    /// Whose commits these are (older records have none: a merge carried forward is then
    /// signed as `orch merge` signs one it knows no agent of).
    #[serde(default)]
    agent_id: Option<String>,
    /// What the build records as the task's success once the merge is in (opaque here):
    /// a build that finishes the merge records it, so the task does not run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success: Option<serde_json::Value>,
}

/// Whose change a merge is: the task, the agent id its commits are signed with, and the
/// success to record once it is in.
pub struct MergeOf<'a> {
    pub task: &'a str,
    pub agent_id: &'a str,
    pub success: Option<serde_json::Value>,
}

/// A merge a killed build left, finished (or found complete) by [`Repo::recover`].
#[derive(Debug, PartialEq)]
pub struct Recovered {
    /// What was done, to say.
    pub said: String,
    pub task: String,
    /// The success its record carried, when the merge is now in the tree.
    pub success: Option<serde_json::Value>,
}

/// Set by tests only: the merge waits up to this many seconds between writing its record
/// and touching any file (after creating `merge.paused` in the state directory, until
/// `merge.resume` appears there), so that a test can SIGKILL orch exactly there, or change
/// something before it goes on.
pub const PAUSE_ENV: &str = "ORCH_TEST_MERGE_PAUSE";

/// Set by tests only: as [`PAUSE_ENV`], once the merge is in the tree and HEAD moved, before
/// the task's success is recorded.
pub const PAUSE_AFTER_ENV: &str = "ORCH_TEST_MERGE_PAUSE_AFTER";

/// Where orch before per-task records kept the one merge in progress; read on recovery.
const LEGACY_RECORD: &str = "merge.json";

/// Whether the state directory holds a merge record (a merge a killed build left, or one
/// whose task's success is not yet recorded), without git: a build must then finish it
/// before it may say that everything is up to date.
pub fn records_pending(state_dir: &std::path::Path) -> bool {
    state_dir.join(LEGACY_RECORD).exists()
        || std::fs::read_dir(state_dir.join("merges")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
}

impl Repo {
    fn records_dir(&self) -> PathBuf {
        self.state_dir.join("merges")
    }

    /// Whether task `task`'s recorded merge is in the tree (its new commit in HEAD's
    /// history); false without a record.
    pub fn record_merged(&self, task: &str) -> bool {
        let Ok(Some(r)) = self.read_record(&self.record_path(task)) else {
            return false;
        };
        self.head()
            .is_ok_and(|head| is_ancestor(self, &r.new, &head))
    }

    fn record_path(&self, task: &str) -> PathBuf {
        self.records_dir()
            .join(format!("{}.json", super::worktree::safe_name(task)))
    }

    /// Whether task `task` has a merge record (its merge done or under way, its success not
    /// yet dropped by [`Self::drop_record`]).
    pub fn has_record(&self, task: &str) -> bool {
        self.record_path(task).exists()
    }

    /// A test's pause at a point of the merge (see [`PAUSE_ENV`]).
    pub(crate) fn pause_for_tests(&self, env: &str, task: &str) {
        if let Some(secs) = std::env::var(env).ok().and_then(|s| s.parse::<u64>().ok()) {
            let _ = std::fs::write(self.state_dir.join("merge.paused"), task);
            let resume = self.state_dir.join("merge.resume");
            for _ in 0..secs * 50 {
                if resume.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }

    /// Merges `change` of task `of.task` into the checkout. `merge_base` is the change's start
    /// (`None`: git's own merge base, once the person has reworked the branch). `guarded`
    /// names, for a path the merge would write, why it must not (the declared output of a
    /// task that is not isolated).
    pub fn merge(
        &self,
        of: MergeOf,
        change: &Change,
        merge_base: Option<&str>,
        message: &str,
        guarded: &dyn Fn(&str) -> Option<String>,
    ) -> io::Result<Merged> {
        let old = self.head()?;
        if is_ancestor(self, &change.commit, &old) {
            return Ok(Merged::Unchanged);
        }
        let tree = match merge_tree(&self.top, merge_base, &old, &change.commit)? {
            TreeMerge::Clean(tree) => tree,
            TreeMerge::Conflict(files) => {
                return Ok(Merged::Conflict {
                    files,
                    why: "the task and the tree it merges into both changed them".into(),
                })
            }
        };
        let (write, remove) = changed_paths(self, &old, &tree)?;
        if write.is_empty() && remove.is_empty() {
            return Ok(Merged::Unchanged);
        }
        let all: Vec<String> = write.iter().chain(&remove).cloned().collect();
        let guarded: Vec<String> = all
            .iter()
            .filter_map(|p| guarded(p).map(|why| format!("{p} ({why})")))
            .collect();
        if !guarded.is_empty() {
            return Ok(Merged::Conflict {
                files: guarded,
                why: "a task that is not isolated declares them".into(),
            });
        }
        let dirty = self.dirty(&all)?;
        if !dirty.is_empty() {
            return Ok(Merged::Conflict {
                files: dirty,
                why: "you have uncommitted changes to them".into(),
            });
        }
        let new = commit_tree(
            &self.top,
            &tree,
            &[&old, &change.commit],
            message,
            &identity(of.task, of.agent_id),
        )?;
        let record = Record {
            task: of.task.to_string(),
            old,
            new: new.clone(),
            write,
            remove,
            agent_id: Some(of.agent_id.to_string()),
            success: of.success,
        };
        let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
        std::fs::create_dir_all(self.records_dir())?;
        crate::disk::persist_atomic(&self.record_path(of.task), &json)?;
        self.pause_for_tests(PAUSE_ENV, of.task);
        self.apply(&record)?;
        // The record stays: the caller drops it once the task's success is recorded.
        self.pause_for_tests(PAUSE_AFTER_ENV, of.task);
        Ok(Merged::Clean {
            commit: new,
            paths: all,
        })
    }

    /// A record whose merge failed half way, carried onto the HEAD later merges moved on
    /// (the old commit is in its history): its change (old to new) merged as a task's is,
    /// a new record replacing this one; or, when it does not merge, kept as a conflict on
    /// the task's branch for `orch merge`, so that the task is not run (and paid) again.
    fn merge_forward(&self, r: Record) -> io::Result<Recovered> {
        let change = Change {
            start: r.old.clone(),
            commit: r.new.clone(),
        };
        let of = MergeOf {
            task: &r.task,
            agent_id: r.agent_id.as_deref().unwrap_or("Agent-00"),
            success: r.success.clone(),
        };
        let message = format!(
            "orch: merge {}\n\nA merge that failed half way, carried onto the later ones.\n",
            r.task
        );
        let merged = self.merge(of, &change, Some(&r.old), &message, &|_| None)?;
        let (said, success) = match merged {
            Merged::Clean { paths, .. } => (
                format!(
                    "finished merging {} into your tree, onto the merges made since it was \
                     started ({} file(s))",
                    r.task,
                    paths.len()
                ),
                r.success,
            ),
            Merged::Unchanged => (
                format!("the change of {} was in your tree already", r.task),
                r.success,
            ),
            Merged::Conflict { files, why } => {
                let reason = self.keep_conflict(&r.task, change, &files, &why, r.success)?;
                (
                    format!(
                        "an interrupted merge of {} no longer merges onto your tree: {reason}",
                        r.task
                    ),
                    None,
                )
            }
        };
        Ok(Recovered {
            said,
            task: r.task,
            success,
        })
    }

    /// A task's change that does not merge (`files`, relative to the top, and git's `why`),
    /// kept on its branch with `success` for `orch merge`; the conflict's reason. The kept
    /// record goes first: it names the change `orch merge` needs, while a worktree without
    /// one is what the next build reclaims (and runs again).
    pub fn keep_conflict(
        &self,
        task: &str,
        change: Change,
        files: &[String],
        why: &str,
        success: Option<serde_json::Value>,
    ) -> io::Result<String> {
        let files: Vec<String> = files
            .iter()
            .map(|p| self.from_root(p).unwrap_or(p).to_string())
            .collect();
        let branch = super::worktree::branch(task);
        let reason = format!(
            "conflict: {} ({why}); the change is kept on branch {branch}: `orch diff {task}` \
             shows it, `orch merge {task}` merges it once resolved",
            files.join(", "),
        );
        let commit = change.commit.clone();
        self.keep(&Kept {
            task: task.to_string(),
            branch,
            kept_as: KeptAs::Conflict,
            change: Some(change),
            files,
            reason: reason.clone(),
            success,
            deps: Vec::new(),
        })?;
        self.set_branch(task, &commit)?;
        Ok(reason)
    }

    /// Steps 3 and 4: the record's paths set to the new commit's, then HEAD moved. The git
    /// commands run in a process group of their own: a Ctrl-C at the terminal (sent to
    /// orch's group) must not stop a checkout half way; orch stops after the merge.
    fn apply(&self, r: &Record) -> io::Result<()> {
        if !r.write.is_empty() {
            git_retried(
                &self.top,
                &[
                    "checkout",
                    &r.new,
                    "--pathspec-from-file=-",
                    "--pathspec-file-nul",
                ],
                Some(&pathspecs(r.write.iter().map(String::as_str))),
            )?;
        }
        if !r.remove.is_empty() {
            git_retried(
                &self.top,
                &[
                    "rm",
                    "-q",
                    "-f",
                    "--ignore-unmatch",
                    "--pathspec-from-file=-",
                    "--pathspec-file-nul",
                ],
                Some(&pathspecs(r.remove.iter().map(String::as_str))),
            )?;
        }
        git_shielded(
            &self.top,
            &[
                "update-ref",
                "-m",
                &format!("orch: merge {}", r.task),
                "HEAD",
                &r.new,
                &r.old,
            ],
            None,
        )
        .map(drop)
    }

    /// Removes task `task`'s merge record: once its success is recorded (a kill before that
    /// finds the record again, and recording twice is harmless).
    pub fn drop_record(&self, task: &str) -> io::Result<()> {
        match std::fs::remove_file(self.record_path(task)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                // The removal lasts only once the directory is synced.
                if let Ok(d) = std::fs::File::open(self.records_dir()) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
        }
    }

    /// Finishes the merges a killed build left, done or half done: for each, what was done,
    /// to say, and the success to record when the merge is in. The caller removes each
    /// record (`drop_record`) once it has recorded that success.
    pub fn recover(&self) -> io::Result<Vec<Recovered>> {
        let mut records = Vec::new();
        let legacy = self.state_dir.join(LEGACY_RECORD);
        if let Some(r) = self.read_record(&legacy)? {
            // Moved where this version keeps it, so that `drop_record` finds it.
            std::fs::create_dir_all(self.records_dir())?;
            std::fs::rename(&legacy, self.record_path(&r.task))?;
        }
        let entries = match std::fs::read_dir(self.records_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "json") {
                if let Some(r) = self.read_record(&path)? {
                    records.push(r);
                }
            }
        }
        // At most one merge was under way (they go one at a time), the others are complete:
        // those first, so that each is judged against the HEAD the kill left.
        let head = self.head()?;
        records.sort_by_cached_key(|r| !is_ancestor(self, &r.new, &head));
        records.into_iter().map(|r| self.finish(r)).collect()
    }

    /// A record on disk; a file that does not read as one is not orch's, and is removed (a
    /// record is renamed into place whole).
    fn read_record(&self, path: &std::path::Path) -> io::Result<Option<Record>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) => Ok(Some(r)),
            Err(_) => {
                std::fs::remove_file(path)?;
                Ok(None)
            }
        }
    }

    /// One record's merge finished, or found complete.
    fn finish(&self, r: Record) -> io::Result<Recovered> {
        let head = self.head()?;
        let (said, merged) = if is_ancestor(self, &r.new, &head) {
            (
                format!(
                    "the merge of {} an interrupted run made was complete",
                    r.task
                ),
                true,
            )
        } else if head == r.old {
            self.apply(&r)?;
            (
                format!(
                    "finished merging {} into your tree: an interrupted run had started it ({} \
                     file(s))",
                    r.task,
                    r.write.len() + r.remove.len()
                ),
                true,
            )
        } else if is_ancestor(self, &r.old, &head) {
            return self.merge_forward(r);
        } else {
            (
                format!(
                    "an interrupted run was merging {}, but HEAD has moved since: left as it \
                     is (the merge commit is {})",
                    r.task, r.new
                ),
                false,
            )
        };
        // The record stays until the caller has recorded the success (`drop_record`): a kill
        // in between must not lose it.
        Ok(Recovered {
            said,
            task: r.task,
            success: r.success.filter(|_| merged),
        })
    }
}

/// A shielded git command that writes the index, tried again a few times while another
/// git holds `index.lock` (an editor's, a prompt's): a short wait, not a half-done merge.
fn git_retried(top: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> io::Result<String> {
    const TRIES: u32 = 5;
    let mut tried = 1;
    loop {
        match git_shielded(top, args, stdin) {
            Err(e) if tried < TRIES && e.to_string().contains("index.lock") => {
                std::thread::sleep(std::time::Duration::from_millis(100 << tried));
                tried += 1;
            }
            done => return done,
        }
    }
}

/// Whether `a` is an ancestor of (or is) `b`.
fn is_ancestor(repo: &Repo, a: &str, b: &str) -> bool {
    git(&repo.top, &["merge-base", "--is-ancestor", a, b]).is_ok()
}

/// The paths that differ between commit `old` and tree `new`: to write (added, changed)
/// and to remove.
fn changed_paths(repo: &Repo, old: &str, new: &str) -> io::Result<(Vec<String>, Vec<String>)> {
    let out = git(
        &repo.top,
        &[
            "diff-tree",
            "-r",
            "-z",
            "--no-renames",
            "--name-status",
            old,
            new,
        ],
    )?;
    let mut fields = nul_split(&out);
    let (mut write, mut remove) = (Vec::new(), Vec::new());
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        if status.starts_with('D') {
            remove.push(path.to_string());
        } else {
            write.push(path.to_string());
        }
    }
    Ok((write, remove))
}
