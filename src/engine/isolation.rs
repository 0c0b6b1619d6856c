//! The engine's side of `isolation = "worktree"` (the git work is [`crate::workspace`]'s):
//! before a build, the project must be a git checkout whose files the plan's worktree tasks
//! write are committed, and what a killed build left is finished or reclaimed; a worktree
//! task that is not up to date gets a worktree at the build's base commit plus its deps'
//! changes (so it sees what it depends on) and runs there; on success its change is
//! committed and merged into the person's tree before its dependents start, which is what
//! makes merges go in dependency order. A task that is up to date needs no worktree.
//!
//! The up-to-date rules are the usual ones: the fingerprint hashes inputs in the project
//! tree, whose copy the worktree gets where it differs (so the two agree), and outputs are
//! hashed after the merge. The undeclared-write check does not apply between worktree tasks
//! (the merge decides); a change that touches a declared output of a task that is not
//! isolated is a conflict, and the files a merge writes are not blamed on a task that is
//! not isolated and runs meanwhile.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use miette::{miette, Result};

use super::context::BuildContext;
use super::explain::FingerprintParts;
use super::options::BuildOptions;
use crate::agent::{Failure, FailureKind};
use crate::fingerprint::FieldName;
use crate::plan::{Isolation, Plan};
use crate::reporter::{Event, Events};
use crate::state::{StateLayout, TaskRecord};
use crate::workspace::merge::Merged;
use crate::workspace::worktree::{self, Change, Kept, KeptAs, TaskTree};
use crate::workspace::{OpenError, Repo};

/// A running task's worktree, and what was brought into it that is not its change.
struct InTree {
    tree: TaskTree,
    included: Vec<String>,
}

/// What a build with worktree tasks shares.
pub(crate) struct Isolated {
    pub(crate) repo: Repo,
    /// The person's commit when the build began: every worktree starts from it.
    base: String,
    /// Which tasks run in worktrees.
    isolated: Vec<bool>,
    trees: Vec<Mutex<Option<InTree>>>,
    /// Each worktree task's merged change (`None` inside: it changed nothing), for its
    /// dependents to start from.
    changes: Vec<OnceLock<Option<Change>>>,
    /// Merges go one at a time.
    merging: Mutex<()>,
    /// The declared outputs of tasks that are not isolated, by path: a change must not
    /// touch them.
    guarded: HashMap<String, usize>,
    /// When the build began, for commit messages.
    started: String,
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
pub(super) fn setup(
    plan: &Plan,
    opts: &BuildOptions,
    wanted: &[bool],
    layout: &StateLayout,
    events: &mut dyn Events,
) -> Result<Option<Isolated>> {
    let isolated = isolated_tasks(plan, opts);
    let ids: Vec<&str> = (0..plan.tasks.len())
        .filter(|&t| wanted[t] && isolated[t])
        .map(|t| plan.tasks[t].id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let repo = Repo::open(&plan.root, &layout.dir).map_err(|e| match e {
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
    if let Some(said) = repo.recover().map_err(io)? {
        events.emit(Event::Notice { message: &said });
    }
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
    let mut guarded = HashMap::new();
    for (t, task) in plan.tasks.iter().enumerate().filter(|(t, _)| !isolated[*t]) {
        for o in &task.outputs {
            guarded.insert(repo.from_top(&crate::plan::normalize(o)), t);
        }
    }
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

/// Up to five items, and how many more.
fn shortlist(items: &[&str]) -> String {
    let mut s = items.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(&format!(" and {} more", items.len() - 5));
    }
    s
}

fn conflict(message: String) -> Failure {
    Failure::new(FailureKind::Conflict, message)
}

fn launch(what: &str, e: std::io::Error) -> Failure {
    Failure::new(FailureKind::Launch, format!("{what}: {e}"))
}

impl BuildContext<'_> {
    /// Whether task `t` runs in a worktree in this build.
    pub(crate) fn is_isolated(&self, t: usize) -> bool {
        self.isolation.as_ref().is_some_and(|i| i.isolated[t])
    }

    /// Where task `t`'s files are while it runs: its worktree's project root, else the
    /// project root.
    pub(crate) fn task_root(&self, t: usize) -> PathBuf {
        self.worktree_root(t)
            .unwrap_or_else(|| self.plan.root.clone())
    }

    /// Task `t`'s worktree root, while it has one.
    pub(crate) fn worktree_root(&self, t: usize) -> Option<PathBuf> {
        let iso = self.isolation.as_ref()?;
        if !iso.isolated[t] {
            return None;
        }
        iso.trees[t]
            .lock()
            .unwrap()
            .as_ref()
            .map(|w| w.tree.root.clone())
    }

    /// Task `t`'s worktree, made before its first attempt: the base commit with its deps'
    /// changes merged in dependency order, the `worktree_include` files, and the project's
    /// copy of what it reads (`inputs`, non-isolated deps' outputs) where that differs.
    pub(super) fn enter_worktree(&self, t: usize, inputs: &[String]) -> Result<(), Failure> {
        let Some(iso) = self.isolation.as_ref().filter(|i| i.isolated[t]) else {
            return Ok(());
        };
        let task = self.task(t);
        let upstream = self.graph.upstream_closure(&[t]);
        let mut deps: Vec<(&str, &Change)> = Vec::new();
        let mut reads: Vec<String> = inputs.to_vec();
        for &d in self.graph.topo.iter().filter(|&&d| d != t && upstream[d]) {
            if iso.isolated[d] {
                if let Some(Some(change)) = iso.changes[d].get() {
                    deps.push((self.task(d).id.as_str(), change));
                }
            } else {
                reads.extend(
                    self.task(d)
                        .outputs
                        .iter()
                        .map(|o| crate::plan::normalize(o)),
                );
            }
        }
        let agent_id = &self.agent_ids[t];
        let start = match iso
            .repo
            .start(&iso.base, &task.id, agent_id, &deps)
            .map_err(|e| launch("worktree start", e))?
        {
            Ok(start) => start,
            Err(files) => {
                return Err(conflict(format!(
                    "conflict: the changes of its deps do not merge with each other: {}",
                    files.join(", ")
                )))
            }
        };
        let mut tree = iso
            .repo
            .create(&task.id, &start)
            .map_err(|e| launch("creating its worktree", e))?;
        let included = crate::workspace::include::include(
            &self.plan.root,
            &tree.root,
            &self.plan.settings.worktree_include,
            &self.layout.dir,
        )
        .map_err(|e| launch("worktree_include", e))?;
        let copied = crate::workspace::include::sync(&self.plan.root, &tree.root, &reads)
            .map_err(|e| launch("copying its inputs into the worktree", e))?;
        if !copied.is_empty() {
            // Part of where it starts, not of its change.
            let message = format!(
                "orch: the project's copy of {} file(s) {} reads",
                copied.len(),
                task.id
            );
            if let Some(c) = iso
                .repo
                .commit(
                    &mut tree,
                    &included,
                    &message,
                    &worktree::identity(&task.id, agent_id),
                )
                .map_err(|e| launch("worktree start", e))?
            {
                tree.start = c;
            }
        }
        *iso.trees[t].lock().unwrap() = Some(InTree { tree, included });
        Ok(())
    }

    /// After a successful run in a worktree: the change committed to `orch/<task-id>` and
    /// merged into the person's tree. A conflict keeps the worktree and the branch, with
    /// what `orch merge` needs to record the success once it merges.
    pub(super) fn land(
        &self,
        t: usize,
        parts: &FingerprintParts,
        result: &str,
        retries: u32,
        duration_ms: u64,
    ) -> Result<(), Failure> {
        let Some(iso) = self.isolation.as_ref().filter(|i| i.isolated[t]) else {
            return Ok(());
        };
        let task = self.task(t);
        let agent_id = &self.agent_ids[t];
        let mut slot = iso.trees[t].lock().unwrap();
        let Some(InTree { tree, included }) = slot.as_mut() else {
            return Ok(());
        };
        let message = format!(
            "{}: {}\n\nTask {} of the orch build started {}, run by {} as {}.\n",
            task.id,
            task.title,
            task.id,
            iso.started,
            self.runner_name(t),
            agent_id
        );
        let who = worktree::identity(&task.id, agent_id);
        let start = tree.start.clone();
        let commit = iso
            .repo
            .commit(tree, included, &message, &who)
            .map_err(|e| launch("committing its change", e))?;
        let tip = commit.clone().unwrap_or_else(|| start.clone());
        let held = iso
            .repo
            .holds(&tip, &task.outputs)
            .map_err(|e| launch("reading its change", e))?;
        let absent: Vec<&str> = task
            .outputs
            .iter()
            .zip(held)
            .filter(|(_, h)| !h)
            .map(|(o, _)| o.as_str())
            .collect();
        if !absent.is_empty() {
            return Err(Failure::new(
                FailureKind::MissingOutput,
                format!(
                    "declared output not in the task's change (ignored by git?): {}",
                    absent.join(", ")
                ),
            ));
        }
        let Some(commit) = commit else {
            let _ = iso.changes[t].set(None);
            iso.repo.remove(&task.id, false);
            *slot = None;
            return Ok(());
        };
        let change = Change { start, commit };
        let guarded = |p: &str| {
            iso.guarded
                .get(p)
                .map(|&o| format!("a declared output of {}", self.task(o).id))
        };
        let merged = {
            let _one = iso.merging.lock().unwrap();
            let merged = iso
                .repo
                .merge(
                    &task.id,
                    agent_id,
                    &change,
                    Some(&change.start),
                    &format!("orch: merge {}\n\n{message}", task.id),
                    &guarded,
                )
                .map_err(|e| launch("merging its change", e))?;
            if let Merged::Clean { paths, .. } = &merged {
                let rel: Vec<String> = paths
                    .iter()
                    .filter_map(|p| iso.repo.from_root(p).map(str::to_string))
                    .collect();
                self.attempts.merged(rel);
            }
            merged
        };
        match merged {
            Merged::Clean { .. } | Merged::Unchanged => {
                let _ = iso.changes[t].set(Some(change));
                iso.repo.remove(&task.id, false);
                *slot = None;
                Ok(())
            }
            Merged::Conflict { files, why } => {
                let files: Vec<String> = files
                    .iter()
                    .map(|p| iso.repo.from_root(p).unwrap_or(p).to_string())
                    .collect();
                let branch = worktree::branch(&task.id);
                let record = TaskRecord {
                    fingerprint: parts.value,
                    definition: parts.definition,
                    definition_fields: parts
                        .definition_fields
                        .iter()
                        .map(|&(name, d)| (FieldName::Borrowed(name), d))
                        .collect(),
                    inputs: parts.inputs.clone(),
                    deps: parts.deps.clone(),
                    outputs: Vec::new(),
                    finished_at: crate::clock::unix_now(),
                    duration_ms,
                    retries,
                };
                let reason = format!(
                    "conflict: {} ({why}); the change is kept on branch {branch}: `orch diff {}` \
                     shows it, `orch merge {}` merges it once resolved",
                    files.join(", "),
                    task.id,
                    task.id
                );
                let kept = Kept {
                    task: task.id.clone(),
                    branch,
                    kept_as: KeptAs::Conflict,
                    change: Some(change.clone()),
                    files,
                    reason: reason.clone(),
                    success: serde_json::to_value(PendingSuccess {
                        record,
                        result: result.to_string(),
                        agent_id: agent_id.clone(),
                    })
                    .ok(),
                };
                iso.repo
                    .set_branch(&task.id, &change.commit)
                    .and_then(|()| iso.repo.keep(&kept))
                    .map_err(|e| launch("keeping its branch", e))?;
                *slot = None;
                Err(conflict(reason))
            }
        }
    }

    /// After a worktree task's run that did not land: a failed task's worktree is kept
    /// (what it got to is committed on its branch, for `orch diff`); a stopped one's is
    /// removed, as the next build starts it afresh.
    pub(super) fn leave_worktree(&self, t: usize, failure: Option<&Failure>) {
        let Some(iso) = self.isolation.as_ref().filter(|i| i.isolated[t]) else {
            return;
        };
        let task = self.task(t);
        let Some(InTree { mut tree, included }) = iso.trees[t].lock().unwrap().take() else {
            return;
        };
        match failure {
            Some(f) if f.kind != FailureKind::Cancelled => {
                let who = worktree::identity(&task.id, &self.agent_ids[t]);
                let start = tree.start.clone();
                let message = format!("{} (failed): {}\n\n{}\n", task.id, task.title, f.message);
                let change = iso
                    .repo
                    .commit(&mut tree, &included, &message, &who)
                    .ok()
                    .flatten()
                    .map(|commit| Change { start, commit });
                let branch = worktree::branch(&task.id);
                if let Some(c) = &change {
                    let _ = iso.repo.set_branch(&task.id, &c.commit);
                }
                let _ = iso.repo.keep(&Kept {
                    task: task.id.clone(),
                    branch,
                    kept_as: KeptAs::Failed,
                    change,
                    files: Vec::new(),
                    reason: f.message.clone(),
                    success: None,
                });
            }
            _ => iso.repo.remove(&task.id, false),
        }
    }
}

/// What `orch merge` records once a conflicting change merges: the success the build
/// would have recorded, but for the outputs, hashed after that merge.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PendingSuccess {
    pub record: TaskRecord,
    pub result: String,
    pub agent_id: String,
}

/// How `orch merge TASK` ended.
pub enum MergeReport {
    /// Merged (or found already in the tree), and recorded as the task's success.
    Merged { commit: Option<String> },
    /// Still does not merge: these files, for this reason.
    Conflict { files: Vec<String>, why: String },
}

/// `orch merge TASK`: the kept change of a task that ended as a conflict, merged into the
/// person's tree now (they resolved it: in the kept worktree, by committing there, or in
/// their own tree), and recorded as the success the build would have recorded, outputs
/// hashed after the merge. Takes the run lock.
pub fn merge_kept(plan: &Plan, id: &str) -> Result<MergeReport> {
    use crate::state::lock::{LockWait, RunLock};
    use crate::state::{StateStore, Status, StatusRecord};
    let layout = StateLayout::new(plan.state_dir());
    let _lock = RunLock::acquire(&layout.lock(), LockWait::Refuse)
        .map_err(|e| miette!("cannot merge while a build is going on: {e}"))?;
    let repo = Repo::open(&plan.root, &layout.dir).map_err(|e| miette!("orch merge: {e}"))?;
    let io = |e: std::io::Error| miette!("orch merge: {e}");
    repo.recover().map_err(io)?;
    let kept = repo
        .kept()
        .into_iter()
        .find(|k| k.task == id)
        .ok_or_else(|| {
            miette!(
                help = "`orch status` lists the kept worktrees",
                "task {id} has no kept change to merge"
            )
        })?;
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
    let pending: Option<PendingSuccess> = kept
        .success
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let agent_id = pending
        .as_ref()
        .map_or_else(|| "Agent-00".to_string(), |p| p.agent_id.clone());
    let merged = repo
        .merge(
            id,
            &agent_id,
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
    if let (Some(p), Some(task)) = (pending, plan.task(id)) {
        let mut record = p.record;
        let result = layout.result_file(&p.agent_id);
        crate::disk::persist_atomic(&result, p.result.as_bytes()).map_err(io)?;
        let mut proof: Vec<String> = task.outputs.clone();
        proof.push(plan.relative(&result));
        for o in proof {
            if let Ok(h) = crate::fingerprint::hash_file_contents(&plan.root.join(&o)) {
                record.outputs.push((o, h));
            }
        }
        let mut store = StateStore::open(layout.clone()).map_err(|e| miette!("{e}"))?;
        store.record_success(id, record).map_err(io)?;
        let now = crate::clock::Stamp::now().time();
        store
            .record_status(
                id,
                StatusRecord {
                    status: Status::Completed,
                    start: Some(now.clone()),
                    end: Some(now),
                    retries: 0,
                },
            )
            .map_err(io)?;
        store.close().map_err(io)?;
    }
    repo.remove(id, false);
    Ok(MergeReport::Merged { commit })
}
