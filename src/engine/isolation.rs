//! The engine's side of `isolation = "worktree"` (the git work is [`crate::workspace`]'s;
//! the checks before a build and what the workers share are in `worktrees`): a worktree
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

use super::context::BuildContext;
use super::explain::FingerprintParts;
use super::worktrees::{InTree, PendingSuccess};
use crate::agent::{Failure, FailureKind};
use crate::workspace::landing::Landing;
use crate::workspace::merge::{MergeOf, Merged};
use crate::workspace::worktree::{self, Change, Kept, KeptAs, StartConflict};
use std::path::PathBuf;

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
            Err(c) => return Err(self.keep_deps_conflict(t, c)),
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

    /// Task `t` cannot start: its deps' changes do not merge with each other. Kept as a
    /// record (no worktree: the task has not run) for `orch status` and `orch merge`.
    fn keep_deps_conflict(&self, t: usize, c: StartConflict) -> Failure {
        let Some(iso) = self.isolation.as_ref() else {
            return conflict("conflict: its deps' changes do not merge".into());
        };
        let id = &self.task(t).id;
        let files: Vec<String> = c
            .files
            .iter()
            .map(|p| iso.repo.from_root(p).unwrap_or(p).to_string())
            .collect();
        let which = if c.onto.is_empty() {
            format!("{}'s change does not merge onto the build's start", c.dep)
        } else {
            format!(
                "{}'s change does not merge with {}'s",
                c.dep,
                c.onto.join(", ")
            )
        };
        let reason = format!(
            "conflict: its deps' changes do not merge with each other: {} ({which}; each \
             merged into your tree on its own); check them in your tree, then `orch merge {id}` \
             and the next build runs {id} from your tree",
            files.join(", ")
        );
        // Whatever an earlier build kept for the task is of no use now.
        iso.repo.remove(id, false);
        let kept = Kept {
            task: id.clone(),
            branch: String::new(),
            kept_as: KeptAs::DepsConflict,
            change: None,
            files,
            reason: reason.clone(),
            success: None,
            deps: std::iter::once(c.dep).chain(c.onto).collect(),
        };
        match iso.repo.keep(&kept) {
            Ok(()) => conflict(reason),
            Err(e) => launch("keeping the record of its deps' conflict", e),
        }
    }

    /// After a successful run in a worktree: the change committed to `orch/<task-id>` and
    /// merged into the person's tree. A conflict keeps the worktree and the branch, with
    /// what `orch merge` needs to record the success once it merges. From before the commit
    /// until the merge record (or a kept record) takes over, a landing marker says what to
    /// record, so that a build stopped in between lands the change rather than re-run it.
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
        let message = format!(
            "{}: {}\n\nTask {} of the orch build started {}, run by {} as {}.\n",
            task.id,
            task.title,
            task.id,
            iso.started,
            self.runner_name(t),
            agent_id
        );
        // Recorded by `orch merge` after a conflict, or by the next build when this one is
        // stopped before the merge is recorded: the task's success, outputs hashed then.
        let success = serde_json::to_value(PendingSuccess {
            record: parts.record(Vec::new(), duration_ms, retries),
            result: result.to_string(),
            agent_id: agent_id.clone(),
        })
        .ok();
        let landing = iso.trees[t].lock().unwrap().as_ref().map(|w| Landing {
            task: task.id.clone(),
            agent_id: agent_id.clone(),
            start: w.tree.start.clone(),
            included: w.included.clone(),
            message: message.clone(),
            success: success.clone(),
        });
        let Some(landing) = landing else {
            return Ok(());
        };
        iso.repo
            .begin_landing(&landing)
            .map_err(|e| launch("recording that it finished", e))?;
        let landed = self.land_change(t, &message, success);
        iso.repo.drop_landing(&task.id);
        landed
    }

    fn land_change(
        &self,
        t: usize,
        message: &str,
        success: Option<serde_json::Value>,
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
        let who = worktree::identity(&task.id, agent_id);
        let start = tree.start.clone();
        let commit = iso
            .repo
            .commit(tree, included, message, &who)
            .map_err(|e| launch("committing its change", e))?;
        let tip = commit.clone().unwrap_or_else(|| start.clone());
        let absent = iso
            .repo
            .missing_from(&tip, &task.outputs)
            .map_err(|e| launch("reading its change", e))?;
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
            let of = MergeOf {
                task: &task.id,
                agent_id,
                success: success.clone(),
            };
            let merged = iso
                .repo
                .merge(
                    of,
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
                let reason = iso
                    .repo
                    .keep_conflict(&task.id, change, &files, &why, success)
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
                    deps: Vec::new(),
                });
            }
            _ => iso.repo.remove(&task.id, false),
        }
    }
}
