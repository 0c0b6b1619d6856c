//! What a build with worktree tasks shares (see `isolation` for how a task uses it):
//! the checks before the build, each task's worktree and merged change; and `orch merge`.
//! Apart from `isolation`, which works on the build context, so that the context can hold
//! this without the two files importing each other.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use miette::{miette, Result};

use super::options::BuildOptions;
use crate::plan::{Isolation, Plan};
use crate::reporter::{Event, Events};
use crate::state::{StateLayout, StateStore, Status, StatusRecord, TaskRecord};
use crate::workspace::merge::{MergeOf, Merged};
use crate::workspace::worktree::{Change, Kept, KeptAs, TaskTree};
use crate::workspace::{OpenError, Repo};

/// A running task's worktree, and what was brought into it that is not its change.
pub(super) struct InTree {
    pub(super) tree: TaskTree,
    pub(super) included: Vec<String>,
}

/// What a build with worktree tasks shares.
pub(crate) struct Isolated {
    pub(crate) repo: Repo,
    /// The person's commit when the build began: every worktree starts from it.
    pub(super) base: String,
    /// Which tasks run in worktrees.
    pub(super) isolated: Vec<bool>,
    pub(super) trees: Vec<Mutex<Option<InTree>>>,
    /// Each worktree task's merged change (`None` inside: it changed nothing), for its
    /// dependents to start from.
    pub(super) changes: Vec<OnceLock<Option<Change>>>,
    /// Merges go one at a time.
    pub(super) merging: Mutex<()>,
    /// The declared outputs of tasks that are not isolated, by path: a change must not
    /// touch them.
    pub(super) guarded: HashMap<String, usize>,
    /// When the build began, for commit messages.
    pub(super) started: String,
}

/// The tasks of `plan` that run in worktrees.
pub(crate) fn isolated_tasks(plan: &Plan, opts: &BuildOptions) -> Vec<bool> {
    plan.tasks
        .iter()
        .map(|t| plan.isolation(t, opts.agent_override.as_deref()) == Isolation::Worktree)
        .collect()
}

/// Before a build: `None` when no wanted task runs in a worktree; else the checkout, with
/// an interrupted merge finished, a killed build's worktrees reclaimed, and the refusal
/// (exit 2) of a tree whose files the worktree tasks write have uncommitted changes.
pub(crate) fn setup(
    plan: &Plan,
    opts: &BuildOptions,
    wanted: &[bool],
    store: &mut StateStore,
    events: &mut dyn Events,
) -> Result<Option<Isolated>> {
    let isolated = isolated_tasks(plan, opts);
    let ids: Vec<&str> = (0..plan.tasks.len())
        .filter(|&t| wanted[t] && isolated[t])
        .map(|t| plan.tasks[t].id.as_str())
        .collect();
    if ids.is_empty() {
        // A merge a killed build left is finished whatever this build runs: the tree must
        // not stay half merged, nor the paid-for success unrecorded, until the next build
        // of a worktree task.
        if crate::workspace::merge::records_pending(&store.layout.dir) {
            let repo = Repo::open(&plan.root, &store.layout.dir)
                .map_err(|e| miette!("finishing an interrupted merge: {e}"))?;
            finish_merges(plan, store, &repo, events)?;
        }
        return Ok(None);
    }
    let repo = Repo::open(&plan.root, &store.layout.dir).map_err(|e| match e {
        OpenError::NotARepo(_) => miette!(
            code = "orch::not_a_git_repository",
            help = "worktrees are git's: run `git init && git add -A && git commit -m start` \
                    there, or set isolation = \"none\"",
            "isolation = \"worktree\" (task {}) needs a git repository, and {} is not in one",
            shortlist(&ids),
            plan.root.display()
        ),
        OpenError::NoCommit => miette!(
            code = "orch::not_a_git_repository",
            help = "commit something first (`git add -A && git commit -m start`)",
            "isolation = \"worktree\" (task {}) starts each worktree from the checkout's \
             commit, and the repository at {} has none yet",
            shortlist(&ids),
            plan.root.display()
        ),
    })?;
    let io = |e: std::io::Error| miette!("isolation: {e}");
    finish_merges(plan, store, &repo, events)?;
    let guarded = guarded_outputs(plan, &isolated, &repo);
    finish_landings(plan, store, &repo, &guarded, events).map_err(io)?;
    let reclaimed = repo.reclaim();
    if !reclaimed.is_empty() {
        events.emit(Event::Notice {
            message: &format!(
                "removed {} worktree(s) an interrupted run left: {}",
                reclaimed.len(),
                reclaimed.join(", ")
            ),
        });
    }
    let writes: Vec<String> = (0..plan.tasks.len())
        .filter(|&t| wanted[t] && isolated[t])
        .flat_map(|t| plan.tasks[t].outputs.iter())
        .map(|o| repo.from_top(&crate::plan::normalize(o)))
        .collect();
    let dirty = repo.dirty(&writes).map_err(io)?;
    if !dirty.is_empty() {
        let shown: Vec<&str> = dirty
            .iter()
            .map(|p| repo.from_root(p).unwrap_or(p))
            .collect();
        return Err(miette!(
            code = "orch::dirty_tree",
            help = "commit or stash them (`git stash`), so that merging the tasks' changes \
                    cannot overwrite your own",
            "cannot start: uncommitted changes to {} file(s) that worktree tasks write: {}",
            shown.len(),
            shortlist(&shown)
        ));
    }
    let base = repo.head().map_err(io)?;
    let n = plan.tasks.len();
    Ok(Some(Isolated {
        repo,
        base,
        isolated,
        trees: (0..n).map(|_| Mutex::new(None)).collect(),
        changes: (0..n).map(|_| OnceLock::new()).collect(),
        merging: Mutex::new(()),
        guarded,
        started: crate::clock::Stamp::now().date_time(),
    }))
}

/// The merges a killed build left, finished (or found complete), each said, and their
/// successes recorded.
fn finish_merges(
    plan: &Plan,
    store: &mut StateStore,
    repo: &Repo,
    events: &mut dyn Events,
) -> Result<()> {
    let io = |e: std::io::Error| miette!("isolation: {e}");
    for done in repo.recover().map_err(io)? {
        events.emit(Event::Notice {
            message: &done.said,
        });
        let pending = pending_success(done.success);
        let succeeded = pending.is_some();
        record_and_drop(plan, store, repo, &done.task, pending).map_err(io)?;
        if succeeded {
            // A worktree kept when the merge failed half way is of no use now.
            repo.remove(&done.task, false);
        }
    }
    Ok(())
}

/// The declared outputs of the tasks that are not isolated, by path from the top: a
/// change must not touch them.
fn guarded_outputs(plan: &Plan, isolated: &[bool], repo: &Repo) -> HashMap<String, usize> {
    let mut guarded = HashMap::new();
    for (t, task) in plan.tasks.iter().enumerate().filter(|(t, _)| !isolated[*t]) {
        for o in &task.outputs {
            guarded.insert(repo.from_top(&crate::plan::normalize(o)), t);
        }
    }
    guarded
}

/// The changes of runs a stopped build left finished but not landed (a landing marker
/// beside the worktree), landed as that build would have: committed and merged, the
/// success recorded, so that the task does not run (and is not paid for) again; or kept as
/// a conflict for `orch merge`, or as failed when a declared output is not in the change.
fn finish_landings(
    plan: &Plan,
    store: &mut StateStore,
    repo: &Repo,
    guarded: &HashMap<String, usize>,
    events: &mut dyn Events,
) -> std::io::Result<()> {
    let kept: Vec<String> = repo.kept().into_iter().map(|k| k.task).collect();
    for landing in repo.landings() {
        let id = landing.task.clone();
        // Taken over already (a merge record finished above, a kept record), or its task
        // is gone from the plan: the marker has nothing left to say.
        if !repo.tree_dir(&id).is_dir() || kept.contains(&id) || plan.task(&id).is_none() {
            repo.drop_landing(&id);
            continue;
        }
        let said = land_left(plan, store, repo, guarded, landing)?;
        events.emit(Event::Notice { message: &said });
    }
    Ok(())
}

/// One change a stopped build left finished and not landed, landed; what happened, to say.
fn land_left(
    plan: &Plan,
    store: &mut StateStore,
    repo: &Repo,
    guarded: &HashMap<String, usize>,
    landing: crate::workspace::landing::Landing,
) -> std::io::Result<String> {
    let id = landing.task.as_str();
    let Some(task) = plan.task(id) else {
        return Ok(String::new());
    };
    let dir = repo.tree_dir(id);
    let mut tree = TaskTree {
        root: dir.join(&repo.prefix),
        dir,
        start: landing.start.clone(),
    };
    let who = crate::workspace::worktree::identity(id, &landing.agent_id);
    let commit = repo.commit(&mut tree, &landing.included, &landing.message, &who)?;
    let pending = pending_success(landing.success.clone());
    let Some(commit) = commit else {
        // It changed nothing: its outputs are the tree's, as they are.
        record_and_drop(plan, store, repo, id, pending)?;
        repo.remove(id, false);
        return Ok(format!(
            "{id}: an interrupted run had finished it, with no change to merge; recorded as \
             completed"
        ));
    };
    let change = Change {
        start: landing.start.clone(),
        commit,
    };
    let absent = repo.missing_from(&change.commit, &task.outputs)?;
    let branch = crate::workspace::worktree::branch(id);
    let keep = |kept_as, files: Vec<String>, reason: String, success| {
        repo.keep(&Kept {
            task: id.to_string(),
            branch: branch.clone(),
            kept_as,
            change: Some(change.clone()),
            files,
            reason,
            success,
            deps: Vec::new(),
        })
        .and_then(|()| repo.set_branch(id, &change.commit))
        .map(|()| repo.drop_landing(id))
    };
    if !absent.is_empty() {
        let reason = format!(
            "declared output not in the task's change (ignored by git?): {}",
            absent.join(", ")
        );
        keep(KeptAs::Failed, Vec::new(), reason.clone(), None)?;
        return Ok(format!(
            "{id}: an interrupted run had finished it, but {reason}; kept as failed"
        ));
    }
    let of = MergeOf {
        task: id,
        agent_id: &landing.agent_id,
        success: landing.success.clone(),
    };
    let guard = |p: &str| {
        guarded
            .get(p)
            .map(|&o| format!("a declared output of {}", plan.tasks[o].id))
    };
    let merged = repo.merge(
        of,
        &change,
        Some(&change.start),
        &format!("orch: merge {id}\n\n{}", landing.message),
        &guard,
    )?;
    match merged {
        Merged::Clean { .. } => {
            // The merge record carries the success now: the worktree may go first.
            repo.remove(id, false);
            record_and_drop(plan, store, repo, id, pending)?;
        }
        Merged::Unchanged => {
            record_and_drop(plan, store, repo, id, pending)?;
            repo.remove(id, false);
        }
        Merged::Conflict { files, why } => {
            let files: Vec<String> = files
                .iter()
                .map(|p| repo.from_root(p).unwrap_or(p).to_string())
                .collect();
            let reason = format!(
                "conflict: {} ({why}); the change is kept on branch {branch}: `orch diff {id}` \
                 shows it, `orch merge {id}` merges it once resolved",
                files.join(", ")
            );
            keep(
                KeptAs::Conflict,
                files,
                reason.clone(),
                landing.success.clone(),
            )?;
            return Ok(format!(
                "{id}: an interrupted run had finished it; its change is kept, as it does not \
                 merge: {reason}"
            ));
        }
    }
    Ok(format!(
        "landed {id}'s change, which an interrupted run had finished, into your tree; recorded \
         as completed"
    ))
}

/// Up to five items, and how many more.
fn shortlist(items: &[&str]) -> String {
    let mut s = items.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(&format!(" and {} more", items.len() - 5));
    }
    s
}

/// What `orch merge` records once a conflicting change merges: the success the build
/// would have recorded, but for the outputs, hashed after that merge.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PendingSuccess {
    pub record: TaskRecord,
    pub result: String,
    pub agent_id: String,
}

/// The success a merge record or a kept worktree carried, as the build wrote it.
fn pending_success(value: Option<serde_json::Value>) -> Option<PendingSuccess> {
    value.and_then(|v| serde_json::from_value(v).ok())
}

/// The end of a merge done outside the build's own flow (finished after a kill, or by
/// `orch merge`): task `id`'s success recorded, the journal flushed, then its merge record
/// dropped. In that order: a kill before the drop finds the record again and records the
/// success twice, which is harmless (outputs hashed as they are then either way).
fn record_and_drop(
    plan: &Plan,
    store: &mut StateStore,
    repo: &Repo,
    id: &str,
    pending: Option<PendingSuccess>,
) -> std::io::Result<()> {
    if let Some(p) = pending {
        record_merged_success(plan, store, id, p)?;
    }
    store.flush_journal()?;
    repo.drop_record(id)
}

/// Records the success of task `id` once its change is merged: its result written, its
/// outputs (and result) hashed as they are now, its status completed.
fn record_merged_success(
    plan: &Plan,
    store: &mut StateStore,
    id: &str,
    p: PendingSuccess,
) -> std::io::Result<()> {
    let Some(task) = plan.task(id) else {
        return Ok(());
    };
    let mut record = p.record;
    let result = store.layout.result_file(&p.agent_id);
    crate::disk::persist_atomic(&result, p.result.as_bytes())?;
    let mut proof: Vec<String> = task.outputs.clone();
    proof.push(plan.relative(&result));
    for o in proof {
        if let Ok(h) = crate::fingerprint::hash_file_contents(&plan.root.join(&o)) {
            record.outputs.push((o, h));
        }
    }
    store.record_success(id, record)?;
    let now = crate::clock::Stamp::now().time();
    store.record_status(
        id,
        StatusRecord {
            status: Status::Completed,
            start: Some(now.clone()),
            end: Some(now),
            retries: 0,
        },
    )
}

/// How `orch merge TASK` ended.
pub enum MergeReport {
    /// Merged (or found already in the tree), and recorded as the task's success.
    Merged { commit: Option<String> },
    /// Still does not merge: these files, for this reason.
    Conflict { files: Vec<String>, why: String },
    /// The task had not started, as its deps' changes (these) did not merge with each
    /// other: its record is removed, and the next build starts it from the person's tree.
    DepsCleared { deps: Vec<String> },
}

/// What `orch merge --discard TASK` dropped: the branch and the commit it named (still in
/// git's objects until they are pruned), if the task had a change.
pub struct Discarded {
    pub branch: String,
    pub commit: Option<String>,
}

/// The run lock (refused while a build goes on) and the project's repository, for `orch
/// merge` doing `what` to a kept change.
fn locked_repo(
    plan: &Plan,
    what: &str,
) -> Result<(crate::state::lock::RunLock, StateLayout, Repo)> {
    use crate::state::lock::{LockWait, RunLock};
    let layout = StateLayout::new(plan.state_dir());
    let lock = RunLock::acquire(&layout.lock(), LockWait::Refuse)
        .map_err(|e| miette!("cannot {what} while a build is going on: {e}"))?;
    let repo = Repo::open(&plan.root, &layout.dir).map_err(|e| miette!("orch merge: {e}"))?;
    Ok((lock, layout, repo))
}

/// Task `id`'s kept change, or the error `orch merge` gives when it has none to `what`.
fn kept_change(repo: &Repo, id: &str, what: &str) -> Result<Kept> {
    repo.kept()
        .into_iter()
        .find(|k| k.task == id)
        .ok_or_else(|| {
            miette!(
                help = "`orch status` lists the kept worktrees",
                "task {id} has no kept change to {what}"
            )
        })
}

/// `orch merge --discard TASK`: the task's kept worktree, branch and record removed on
/// purpose, so that the next build runs it again. Takes the run lock.
pub fn discard_kept(plan: &Plan, id: &str) -> Result<Discarded> {
    let (_lock, _, repo) = locked_repo(plan, "discard")?;
    let kept = kept_change(&repo, id, "discard")?;
    let dir = repo.tree_dir(id);
    // A resolution committed in the kept worktree is what is dropped, else the branch's.
    let commit = crate::workspace::git(&dir, &["rev-parse", "--verify", "HEAD^{commit}"])
        .ok()
        .filter(|_| dir.exists())
        .map(|s| s.trim().to_string())
        .or_else(|| repo.branch_commit(id))
        .or_else(|| kept.change.as_ref().map(|c| c.commit.clone()));
    repo.remove(id, false);
    Ok(Discarded {
        branch: kept.branch,
        commit,
    })
}

/// `orch merge TASK`: the kept change of a task that ended as a conflict, merged into the
/// person's tree now (they resolved it: in the kept worktree, by committing there, or in
/// their own tree), and recorded as the success the build would have recorded, outputs
/// hashed after the merge. Takes the run lock.
pub fn merge_kept(plan: &Plan, id: &str) -> Result<MergeReport> {
    let (_lock, layout, repo) = locked_repo(plan, "merge")?;
    let io = |e: std::io::Error| miette!("orch merge: {e}");
    let open_store = || StateStore::open(layout.clone()).map_err(|e| miette!("{e}"));
    let recovered = repo.recover().map_err(io)?;
    if !recovered.is_empty() {
        let mut store = open_store()?;
        for done in recovered {
            let pending = pending_success(done.success);
            record_and_drop(plan, &mut store, &repo, &done.task, pending).map_err(io)?;
        }
        store.close().map_err(io)?;
    }
    let kept = kept_change(&repo, id, "merge")?;
    if kept.kept_as == KeptAs::DepsConflict {
        // Nothing of the task's own to merge (it did not run): each dep's change is in the
        // person's tree, merged there; the person says that tree is right.
        repo.remove(id, false);
        return Ok(MergeReport::DepsCleared { deps: kept.deps });
    }
    let (KeptAs::Conflict, Some(change)) = (kept.kept_as, kept.change.clone()) else {
        return Err(miette!(
            help = "`orch diff` shows how far it got; `orch build` runs it again",
            "task {id} failed; it did not conflict: {}",
            kept.reason
        ));
    };
    // Resolved in the kept worktree, its HEAD moved on; else the branch may have.
    let dir = repo.tree_dir(id);
    let tip = crate::workspace::git(&dir, &["rev-parse", "--verify", "HEAD^{commit}"])
        .ok()
        .filter(|_| dir.exists())
        .map(|s| s.trim().to_string())
        .or_else(|| repo.branch_commit(id))
        .unwrap_or_else(|| change.commit.clone());
    let base = (tip == change.commit).then_some(change.start.as_str());
    let pending = pending_success(kept.success.clone());
    let agent_id = pending
        .as_ref()
        .map_or_else(|| "Agent-00".to_string(), |p| p.agent_id.clone());
    let of = MergeOf {
        task: id,
        agent_id: &agent_id,
        success: kept.success.clone(),
    };
    let merged = repo
        .merge(
            of,
            &Change {
                start: change.start.clone(),
                commit: tip,
            },
            base,
            &format!("orch: merge {id}\n\nMerged by `orch merge {id}` after a conflict.\n"),
            &|_| None,
        )
        .map_err(io)?;
    let commit = match merged {
        Merged::Conflict { files, why } => {
            let files = files
                .iter()
                .map(|p| repo.from_root(p).unwrap_or(p).to_string())
                .collect();
            return Ok(MergeReport::Conflict { files, why });
        }
        Merged::Clean { commit, .. } => Some(commit),
        Merged::Unchanged => None,
    };
    // After a merge, its record carries the success: the kept worktree may go first, so
    // that a kill leaves no stale one listed. With nothing merged (the change was already
    // in), the kept record is what holds the success until it is recorded.
    if commit.is_some() {
        repo.remove(id, false);
    }
    let mut store = open_store()?;
    record_and_drop(plan, &mut store, &repo, id, pending).map_err(io)?;
    store.close().map_err(io)?;
    if commit.is_none() {
        repo.remove(id, false);
    }
    Ok(MergeReport::Merged { commit })
}
