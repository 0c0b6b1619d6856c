//! The context every worker of one build shares: the plan, graph, previous records and what
//! each finished task hands its dependents; and the up-to-date check (fingerprints, stale
//! reasons, the precheck on all cores).

use std::io;
use std::sync::OnceLock;

use super::explain::FingerprintParts;
use super::options::BuildOptions;
use crate::cancel::Cancel;
use crate::disk::{Digest, IoResultExt, PathError};
use crate::executor::Backend;
use crate::fingerprint::{self, DefinitionFields, OpenDir, StatCache};
use crate::graph::TaskGraph;
use crate::plan::{AgentSpec, Plan, Task};
use crate::redact::Redactor;
use crate::state::{SessionRecord, StateLayout, TaskRecord};

use super::attempts::Attempts;

/// What a finished (or up-to-date) task hands its dependents.
#[derive(Debug, Clone, Copy)]
pub struct DoneInfo {
    /// Its outputs' and result's hashes in one digest (see [`fingerprint::handoff`]), part of
    /// each dependent's fingerprint.
    pub(crate) handoff: Digest,
    /// Ran in this build (rather than being up to date).
    pub(crate) ran: bool,
    /// Of those that ran: restored from the output cache rather than run.
    pub(crate) restored: bool,
    /// It or a task upstream of it ran in this build: what its dependents hashed before
    /// the build began may be out of date (an input of theirs may be a file such a task
    /// wrote), so they hash again, even when early cutoff leaves them up to date.
    pub(crate) upstream_ran: bool,
}

/// Whether `path` is the result file of the task with `agent_id`, with the results directory
/// at `results_rel` (both as records name them, relative to the project root).
pub(crate) fn is_result_path(results_rel: &str, agent_id: &str, path: &str) -> bool {
    path.strip_prefix(results_rel)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_suffix("-result.md"))
        .is_some_and(|id| id.eq_ignore_ascii_case(agent_id))
}

/// The task-local parts of a fingerprint (see [`BuildContext::precheck`]).
pub(crate) struct LocalParts {
    pub(super) definition: Digest,
    definition_fields: DefinitionFields,
    pub(super) inputs: Vec<(String, Digest)>,
}

/// What [`BuildContext::precheck`] keeps of a task that will be stale even if no dep runs.
pub(crate) struct Precheck {
    local: LocalParts,
    /// Why the recorded outputs no longer stand, if they do not.
    outputs: Option<String>,
}

/// A value handed from one thread to another once, per task.
pub(crate) type Slot<T> = std::sync::Mutex<Option<Box<T>>>;

/// Everything the workers of one build share.
pub struct BuildContext<'a> {
    /// Where the tasks' processes run (and what stops them if orch dies without cleaning
    /// up).
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) plan: &'a Plan,
    pub(crate) graph: &'a TaskGraph,
    pub(crate) layout: StateLayout,
    pub(crate) opts: &'a BuildOptions,
    pub(crate) agent_ids: Vec<String>,
    pub(crate) previous: Vec<Option<std::sync::Arc<TaskRecord>>>,
    pub(crate) forced: Vec<bool>,
    /// Set once per task when it is done (ran or up to date); read by its dependents.
    pub(crate) done: Vec<OnceLock<DoneInfo>>,
    pub(crate) stat_cache: StatCache,
    /// The project root, open, for stat calls by relative path.
    pub(crate) root_dir: Option<OpenDir>,
    /// A stale verdict from `try_skip`, so the worker does not fingerprint the task again.
    /// Boxed: one slot per task, mostly empty, so the vector itself stays small.
    pub(crate) checked: Vec<Slot<(FingerprintParts, String)>>,
    /// Task-local parts of the up-to-date check done ahead, with the verdict on the
    /// recorded outputs (see [`BuildContext::precheck`]).
    pub(crate) prechecked: Vec<Slot<Precheck>>,
    /// Set by the precheck for a task that is up to date if no dep runs (each dep then hands
    /// over what its record says): what it hands its own dependents.
    pub(crate) up_to_date_if_quiet: Vec<OnceLock<Digest>>,
    pub(crate) cancel: &'a Cancel,
    pub(crate) redactor: Redactor,
    /// The results directory as result paths are recorded (relative to the project root),
    /// to tell a task's result from its declared outputs in a record.
    pub(crate) results_rel: String,
    /// Each task's last agent session, as the previous build left it.
    pub(crate) sessions: Vec<Option<SessionRecord>>,
    /// This build's attempts in flight, for telling whose a changed file is.
    pub(crate) attempts: Attempts,
    /// The output cache, unless it is off (`cache = false`, `--no-cache`).
    pub(crate) cache: Option<crate::cache::Cache>,
    /// The worktrees of `isolation = "worktree"` tasks, when the build has any.
    pub(crate) isolation: Option<super::worktrees::Isolated>,
    /// The providers' limiters: every agent call takes a permit here.
    pub(crate) gate: crate::scheduler::Gate,
    /// Each task's provider in the gate (`None`: a shell or sim task).
    pub(crate) provider_of: Vec<Option<usize>>,
    /// The aggregation's merge agent's provider in the gate (`None`: no merge by an agent
    /// that calls one).
    pub(crate) merge_provider: Option<usize>,
}

impl BuildContext<'_> {
    pub(crate) fn task(&self, t: usize) -> &Task {
        &self.plan.tasks[t]
    }

    pub(crate) fn agent(&self, t: usize) -> Option<&AgentSpec> {
        self.plan
            .agent_for(&self.plan.tasks[t], self.opts.agent_override.as_deref())
    }

    /// `shell`, or the agent's name.
    pub(crate) fn runner_name(&self, t: usize) -> &str {
        self.agent(t).map(|a| a.name.as_str()).unwrap_or("shell")
    }

    /// Result file path relative to the project root, as written in prompts.
    pub(crate) fn result_rel(&self, t: usize) -> String {
        self.plan
            .relative(&self.layout.result_file(&self.agent_ids[t]))
    }

    /// Whether `path`, as a record lists it, is task `t`'s result file: the very text
    /// [`Self::result_rel`] gives, compared without building it (a no-op check does this
    /// for every record).
    pub(crate) fn is_result(&self, t: usize, path: &str) -> bool {
        is_result_path(&self.results_rel, &self.agent_ids[t], path)
    }

    /// What task `t` hands its dependents, having left these outputs (result included).
    pub(crate) fn handoff(
        &self,
        t: usize,
        fingerprint: &Digest,
        outputs: &[(String, Digest)],
    ) -> Digest {
        fingerprint::handoff(fingerprint, outputs, |p| self.is_result(t, p))
    }

    /// Task `t` done as its last recorded success left it.
    pub(crate) fn done_from_record(&self, t: usize, r: &TaskRecord) -> DoneInfo {
        DoneInfo {
            handoff: self.handoff(t, &r.fingerprint, &r.outputs),
            ran: false,
            restored: false,
            upstream_ran: false,
        }
    }

    /// Computes the task's fingerprint from its definition, inputs and finished deps.
    pub(crate) fn fingerprint(&self, t: usize) -> io::Result<FingerprintParts> {
        Ok(self.with_deps(t, self.local_parts(t)?))
    }

    /// A project file's hash through the stat cache; the path is joined in a reused buffer
    /// (up-to-date checks call this twice per task).
    pub(crate) fn hash_project_file(&self, rel: &str) -> io::Result<Option<Digest>> {
        thread_local!(static PATH: std::cell::RefCell<std::path::PathBuf> = Default::default());
        PATH.with_borrow_mut(|path| {
            path.as_mut_os_string().clear();
            path.push(&self.plan.root);
            path.push(rel);
            match &self.root_dir {
                Some(dir) => self.stat_cache.hash_file_in(dir, rel, path),
                None => self.stat_cache.hash_file(path),
            }
        })
    }

    /// The parts of the fingerprint that do not depend on other tasks: definition and inputs.
    pub(super) fn local_parts(&self, t: usize) -> io::Result<LocalParts> {
        let task = self.task(t);
        let fingerprint::Definition {
            digest: definition,
            fields: definition_fields,
        } = fingerprint::task_definition(self.plan, t, self.opts.agent_override.as_deref())?;
        let files = fingerprint::expand_inputs(&self.plan.root, &task.inputs, &self.layout.dir)?;
        let mut inputs = Vec::with_capacity(files.len());
        for f in files {
            let h = match self.hash_project_file(&f).context("input", &f)? {
                Some(h) => h,
                None => return Err(self.missing_input(&f)),
            };
            inputs.push((f, h));
        }
        Ok(LocalParts {
            definition,
            definition_fields,
            inputs,
        })
    }

    /// The error for an input that is not there: a symlink to nothing says where it points.
    fn missing_input(&self, rel: &str) -> io::Error {
        let path = self.plan.root.join(rel);
        let why = match std::fs::read_link(&path) {
            Ok(target) => format!("a symlink to {}, which does not exist", target.display()),
            Err(_) => "does not exist".to_string(),
        };
        PathError::wrap("input", rel, io::Error::new(io::ErrorKind::NotFound, why))
    }

    /// What the task's deps (done by now) hand it, by dep id.
    pub(super) fn dep_handoffs(&self, t: usize) -> Vec<(&str, Digest)> {
        self.graph.deps[t]
            .iter()
            .map(|&d| {
                let digest = self.done[d].get().map(|i| i.handoff).unwrap_or_default();
                (self.task(d).id.as_str(), digest)
            })
            .collect()
    }

    /// Completes the fingerprint with what the task's deps hand it.
    pub(super) fn with_deps(&self, t: usize, local: LocalParts) -> FingerprintParts {
        let deps = self.dep_handoffs(t);
        let value = fingerprint::combine(&local.definition, &local.inputs, &deps);
        FingerprintParts {
            definition: local.definition,
            definition_fields: local.definition_fields,
            inputs: local.inputs,
            deps: deps
                .into_iter()
                .map(|(id, d)| (id.to_string(), d))
                .collect(),
            value,
        }
    }

    /// Why the task must run, or `None` when it is up to date.
    pub(crate) fn stale_reason(
        &self,
        t: usize,
        parts: &FingerprintParts,
    ) -> io::Result<Option<String>> {
        self.stale_reason_with(t, parts, None)
    }

    /// As [`Self::stale_reason`], with the verdict on its recorded outputs when already known.
    pub(super) fn stale_reason_with(
        &self,
        t: usize,
        parts: &FingerprintParts,
        outputs_verdict: Option<Option<String>>,
    ) -> io::Result<Option<String>> {
        if self.forced[t] {
            return Ok(Some("forced".into()));
        }
        let Some(prev) = &self.previous[t] else {
            return Ok(Some("never built".into()));
        };
        // A dep that ran counts only through what it handed over (contract v2): one that
        // left the very outputs and result this task was built on leaves it up to date.
        if prev.fingerprint != parts.value {
            return Ok(Some(super::explain::diff_reason(prev, parts)));
        }
        match outputs_verdict {
            Some(verdict) => Ok(verdict),
            None => self.outputs_stale(t),
        }
    }

    /// Why the outputs recorded for the task's last success no longer stand, if they do not.
    pub(super) fn outputs_stale(&self, t: usize) -> io::Result<Option<String>> {
        let Some(prev) = &self.previous[t] else {
            return Ok(Some("never built".into()));
        };
        for (path, hash) in &prev.outputs {
            match self.hash_project_file(path).context("output", path)? {
                None => return Ok(Some(format!("output {path} is missing"))),
                Some(h) if &h != hash => return Ok(Some(format!("output {path} was modified"))),
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// Does the part of every up-to-date check that needs no other task (definition, input
    /// and output hashes: mostly stat calls) for all wanted tasks at once, on all cores.
    /// Tasks that will run anyway (forced, never built) are left out.
    pub(crate) fn precheck(&self, wanted: &[bool]) {
        use rayon::prelude::*;
        let todo: Vec<usize> = (0..self.plan.tasks.len())
            .filter(|&t| wanted[t] && !self.forced[t] && self.previous[t].is_some())
            .collect();
        // A handful of checks is cheaper done in place than handed to other threads.
        if todo.len() < 64 {
            return;
        }
        // What each task hands its dependents if it turns out up to date: its record's.
        let handoffs: Vec<Digest> = self
            .previous
            .par_iter()
            .enumerate()
            .with_min_len(256)
            .map(|(t, r)| {
                r.as_deref()
                    .map(|r| self.done_from_record(t, r).handoff)
                    .unwrap_or_default()
            })
            .collect();
        todo.par_iter().with_min_len(32).for_each(|&t| {
            // Interrupted: what is left is not checked ahead (nor, then, run).
            if self.cancel.is_cancelled() {
                return;
            }
            // An error is left for the regular check, which reports it.
            let (Ok(local), Ok(outputs)) = (self.local_parts(t), self.outputs_stale(t)) else {
                return;
            };
            let deps: Vec<(&str, Digest)> = self.graph.deps[t]
                .iter()
                .map(|&d| (self.task(d).id.as_str(), handoffs[d]))
                .collect();
            let value_if_quiet = fingerprint::combine(&local.definition, &local.inputs, &deps);
            let unchanged = self.previous[t]
                .as_ref()
                .is_some_and(|p| p.fingerprint == value_if_quiet);
            if unchanged && outputs.is_none() {
                // The common case keeps nothing but the handoff: memory a worker frees here
                // is reused for the next task instead of faulting in new pages.
                let _ = self.up_to_date_if_quiet[t].set(handoffs[t]);
            } else {
                *self.prechecked[t].lock().unwrap() = Some(Box::new(Precheck { local, outputs }));
            }
        });
    }

    /// Fingerprints the task: up to date (recorded as done), or stale with the reason.
    #[allow(clippy::type_complexity)]
    pub(super) fn check(
        &self,
        t: usize,
    ) -> io::Result<Result<DoneInfo, (FingerprintParts, String)>> {
        // Hashes taken ahead are only current if nothing upstream ran since: an input may
        // be a dep's output.
        let upstream_quiet = self.graph.deps[t]
            .iter()
            .all(|&d| self.done[d].get().is_some_and(|i| !i.upstream_ran));
        if upstream_quiet && !self.forced[t] {
            if let Some(&handoff) = self.up_to_date_if_quiet[t].get() {
                let info = DoneInfo {
                    handoff,
                    ran: false,
                    restored: false,
                    upstream_ran: false,
                };
                let _ = self.done[t].set(info);
                return Ok(Ok(info));
            }
        }
        let pre = self.prechecked[t].lock().unwrap().take().map(|b| *b);
        let (local, outputs_verdict) = match pre {
            Some(pre) if upstream_quiet => (pre.local, Some(pre.outputs)),
            _ => (self.local_parts(t)?, None),
        };
        let parts = self.with_deps(t, local);
        Ok(match self.stale_reason_with(t, &parts, outputs_verdict)? {
            None => {
                let info = DoneInfo {
                    upstream_ran: !upstream_quiet,
                    ..self.done_from_record(t, self.previous[t].as_ref().unwrap())
                };
                let _ = self.done[t].set(info);
                Ok(info)
            }
            Some(why) => Err((parts, why)),
        })
    }
}
