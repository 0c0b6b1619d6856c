//! `orch build`: load state, schedule the wanted tasks, run them on workers, record every state
//! change (journal, status table, execution log), then aggregate the results.

pub mod aggregate;
pub mod dry_run;
pub mod explain;
pub mod prompt;
pub mod readonly;
pub mod runner;
pub mod up_to_date;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use miette::{miette, IntoDiagnostic, Result};

use crate::agent::FailureKind;
use crate::clock::Stamp;
use crate::disk::FileStamp;
use crate::executor::guard::Guard;
use crate::executor::procgroup;
use crate::fingerprint::StatCache;
use crate::graph::TaskGraph;
use crate::master_plan::LogEntry;
use crate::master_plan::{PlanDoc, RowState};
use crate::plan::{OnMissing, Plan, ResultSpec};
use crate::redact::Redactor;
use crate::reporter::{Event, Reporter, Summary, TaskRef};
use crate::scheduler::{self, Coordinator, SchedTask, Scheduler};
use crate::state::lock::{LockWait, RunLock};
use crate::state::preload::{Preloaded, PreloadedSnapshot};
use crate::state::Status;
use crate::state::{JournalEntry, StateLayout, StateStore, StatusRecord};
pub use runner::{BuildContext, DoneInfo, TaskDone, TaskMsg};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `-j`; defaults to settings.jobs, then the number of CPUs.
    pub jobs: Option<usize>,
    /// `-k`; defaults to settings.keep_going.
    pub keep_going: Option<bool>,
    /// `--agent NAME`: every agent task uses this agent.
    pub agent_override: Option<String>,
    /// Build only these tasks and what they need; empty means all.
    pub targets: Vec<String>,
    /// `sim` agent time scale: an estimate is divided by this.
    pub sim_speed: f64,
    /// `-B`: run wanted tasks even when up to date.
    pub force: bool,
    pub wait_for_lock: bool,
    /// The orch binary, to start the crash guard (`orch __guard`); `None` runs without one.
    pub guard_program: Option<std::path::PathBuf>,
    /// Where a build that finds everything up to date leaves its record for the fast path
    /// ([`up_to_date`]), and under which key; `None` leaves none.
    pub up_to_date_key: Option<crate::disk::Digest>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            jobs: None,
            keep_going: None,
            agent_override: None,
            targets: Vec::new(),
            sim_speed: crate::agent::sim::DEFAULT_SPEED,
            force: false,
            wait_for_lock: false,
            guard_program: None,
            up_to_date_key: None,
        }
    }
}

impl BuildOptions {
    pub fn jobs(&self, plan: &Plan) -> usize {
        self.jobs_with(plan.settings.jobs)
    }

    /// `-j`, else the plan's `settings.jobs`, else the CPU count.
    pub fn jobs_with(&self, setting: Option<usize>) -> usize {
        self.jobs
            .or(setting)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1)
    }
}

#[derive(Debug)]
pub struct BuildOutcome {
    pub summary: Summary,
    pub aggregate_error: Option<String>,
}

impl BuildOutcome {
    /// 0 success, 1 a task or the aggregation failed, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        if self.summary.interrupted {
            130
        } else if self.summary.success() && self.aggregate_error.is_none() {
            0
        } else {
            1
        }
    }
}

/// Resolves target ids to task indexes, all tasks when none are given.
pub fn wanted_tasks(plan: &Plan, graph: &TaskGraph, targets: &[String]) -> Result<Vec<bool>> {
    Ok(wanted_of(plan, graph, &target_indexes(plan, targets)?))
}

/// Every task when no target is named, else the targets and everything upstream of them.
fn wanted_of(plan: &Plan, graph: &TaskGraph, targets: &[usize]) -> Vec<bool> {
    if targets.is_empty() {
        vec![true; plan.tasks.len()]
    } else {
        graph.upstream_closure(targets)
    }
}

/// The tasks named on the command line, or an error naming the one that does not exist.
fn target_indexes(plan: &Plan, targets: &[String]) -> Result<Vec<usize>> {
    targets
        .iter()
        .map(|t| {
            plan.index.get(t).copied().ok_or_else(|| {
                let known: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).take(20).collect();
                miette!(
                    help = format!("tasks: {}", known.join(", ")),
                    "no task named `{t}` in {}",
                    plan.source_path.display()
                )
            })
        })
        .collect()
}

/// Final per-task result of this build, for the summary.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ran,
    UpToDate,
    Failed,
    Cancelled,
    Blocked,
}

struct BuildCoordinator<'a, 'c> {
    ctx: &'a BuildContext<'c>,
    store: &'a mut StateStore,
    reporter: &'a mut dyn Reporter,
    doc: PlanDoc,
    rows: Vec<RowState>,
    outcome: Vec<Option<Outcome>>,
    retries: u32,
    cost: f64,
    batch_no: u32,
    io_error: Option<String>,
    /// Something beyond up-to-date checks happened: master_plan.md needs a rewrite.
    eventful: bool,
    /// Tasks found up to date, in the order reported.
    skipped: Vec<usize>,
}

fn task_ref<'x>(ctx: &'x BuildContext, t: usize) -> TaskRef<'x> {
    let task = ctx.task(t);
    TaskRef {
        id: &task.id,
        title: &task.title,
        agent_id: &ctx.agent_ids[t],
        runner: ctx.runner_name(t),
    }
}

impl BuildCoordinator<'_, '_> {
    fn log(&mut self, title: String, lines: Vec<String>) {
        self.doc.log(LogEntry {
            stamp: Stamp::now().date_time(),
            title,
            lines,
        });
    }

    fn journal(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.io_error
                .get_or_insert(format!("cannot write state journal: {e}"));
        }
    }

    fn attempt_started(&mut self, task: usize, attempt: u32) {
        let row = &mut self.rows[task];
        row.status = Status::Running;
        if attempt == 1 {
            row.start = Some(Stamp::now().time());
            row.end = None;
        }
        row.retries = attempt - 1;
        self.reporter.report(&Event::TaskStarted {
            task: task_ref(self.ctx, task),
            attempt,
        });
    }

    fn save_status(&mut self, t: usize) {
        let row = &self.rows[t];
        let id = &self.ctx.task(t).id;
        let old = self.store.snapshot.statuses.get(id);
        // Up to date after a completion is still "completed": keep the record of the run
        // that did the work, so a no-op build changes nothing on disk.
        let unchanged = match old {
            Some(o) if row.status == Status::Skipped => {
                matches!(o.status, Status::Completed | Status::Skipped)
            }
            Some(o) => o.status == row.status && o.start == row.start && o.end == row.end,
            None => false,
        };
        if unchanged {
            return;
        }
        let status = StatusRecord {
            status: row.status,
            start: row.start.clone(),
            end: row.end.clone(),
            retries: row.retries,
        };
        let r = self.store.record_status(id, status);
        self.journal(r);
    }
}

impl Coordinator<TaskMsg, TaskDone> for BuildCoordinator<'_, '_> {
    fn started(&mut self, batch: &[usize]) {
        self.eventful = true;
        self.batch_no += 1;
        let mut in_order = batch.to_vec();
        in_order.sort_unstable();
        let agents: Vec<String> = in_order
            .iter()
            .map(|&t| self.ctx.agent_ids[t].clone())
            .collect();
        let line = if batch.len() == 1 {
            format!("{} started on {}", agents[0], self.ctx.task(in_order[0]).id)
        } else {
            format!("{} launched in parallel", agents.join(", "))
        };
        let title = format!("Batch #{} Started", self.batch_no);
        self.log(title, vec![line]);
        // A task handed out starts at once (the pool has a thread per job), so its first
        // attempt is announced here rather than by a message from the worker: the watch
        // needs to know at once which tasks run.
        for &t in batch {
            self.attempt_started(t, 1);
        }
        self.doc.touch();
    }

    fn message(&mut self, msg: TaskMsg) {
        self.eventful = true;
        match msg {
            TaskMsg::AttemptStarted { task, attempt } => {
                self.attempt_started(task, attempt);
                self.doc.touch();
            }
            TaskMsg::Spawned { task, pgid, window } => {
                let id = self.ctx.task(task).id.clone();
                let r = self.store.append(&JournalEntry::spawned(id, pgid, window));
                self.journal(r);
            }
            TaskMsg::ProcessEnded { pgid } => {
                let r = self.store.append(&JournalEntry::Reaped { pgid });
                self.journal(r);
            }
            TaskMsg::Retrying {
                task,
                attempt,
                reason,
                delay,
            } => {
                self.retries += 1;
                self.rows[task].retries = attempt;
                let agent = self.ctx.agent_ids[task].clone();
                let id = self.ctx.task(task).id.clone();
                self.log(
                    format!("{agent} Retrying"),
                    vec![format!(
                        "{id} attempt {attempt} failed: {}; retry in {}",
                        one_line(&reason),
                        crate::duration::format_duration(delay)
                    )],
                );
                self.reporter.report(&Event::TaskRetrying {
                    task: task_ref(self.ctx, task),
                    attempt,
                    reason: &reason,
                    delay,
                });
                self.doc.touch();
            }
        }
    }

    fn finished(&mut self, t: usize, done: TaskDone) -> bool {
        let ctx = self.ctx;
        let agent = &ctx.agent_ids[t];
        let id = &ctx.task(t).id;
        if !matches!(done, TaskDone::UpToDate(_)) {
            self.eventful = true;
            self.doc.touch();
        }
        let ok = match done {
            TaskDone::UpToDate(_) => {
                self.rows[t].status = Status::Skipped;
                self.outcome[t] = Some(Outcome::UpToDate);
                self.skipped.push(t);
                self.reporter.report(&Event::TaskSkipped {
                    task: task_ref(self.ctx, t),
                });
                true
            }
            TaskDone::Ran {
                record,
                usage,
                duration,
                retries,
                why,
            } => {
                let r = self.store.record_success(id, record);
                self.journal(r);
                if !ctx.task(t).action.is_shell() {
                    // An agent's work costs money: on disk now, not at the end of this
                    // step, which a second Ctrl-C (an immediate exit) could cut short.
                    self.idle();
                }
                self.cost += usage.cost_usd.unwrap_or(0.0);
                let row = &mut self.rows[t];
                row.status = Status::Completed;
                row.end = Some(Stamp::now().time());
                row.retries = retries;
                self.outcome[t] = Some(Outcome::Ran);
                let mut lines = vec![
                    format!(
                        "{id} completed, duration {}",
                        crate::duration::format_duration(duration)
                    ),
                    format!("Why it ran: {why}"),
                    format!("Output saved to {}", self.ctx.result_rel(t)),
                ];
                if let Some(c) = usage.cost_usd {
                    lines.push(format!("Cost: ${c:.4}"));
                }
                self.log(format!("{agent} Completed"), lines);
                self.reporter.report(&Event::TaskSucceeded {
                    task: task_ref(self.ctx, t),
                    duration,
                    retries,
                    usage: &usage,
                    why: &why,
                });
                true
            }
            TaskDone::Failed {
                failure,
                duration,
                retries,
            } => {
                self.rows[t].retries = retries;
                if failure.kind == FailureKind::Cancelled {
                    self.rows[t].status = Status::Ready;
                    self.rows[t].end = None;
                    self.outcome[t] = Some(Outcome::Cancelled);
                    self.log(
                        format!("{agent} Cancelled"),
                        vec![format!("{id} was stopped before it finished")],
                    );
                } else {
                    let r = self.store.invalidate(id);
                    self.journal(r);
                    self.rows[t].status = Status::Failed;
                    self.rows[t].end = Some(Stamp::now().time());
                    self.outcome[t] = Some(Outcome::Failed);
                    self.log(
                        format!("{agent} Failed"),
                        vec![format!(
                            "{id} failed after {}: {}",
                            crate::duration::format_duration(duration),
                            one_line(&failure.message)
                        )],
                    );
                    self.reporter.report(&Event::TaskFailed {
                        task: task_ref(self.ctx, t),
                        duration,
                        retries,
                        reason: &failure.message,
                    });
                }
                false
            }
        };
        self.save_status(t);
        ok
    }

    fn blocked(&mut self, t: usize, failed_dep: usize) {
        self.eventful = true;
        self.rows[t].status = Status::Waiting;
        self.outcome[t] = Some(Outcome::Blocked);
        let dep = self.ctx.task(failed_dep).id.clone();
        let id = self.ctx.task(t).id.clone();
        self.log(
            format!("{} Blocked", self.ctx.agent_ids[t]),
            vec![format!("{id} will not run: dep {dep} failed")],
        );
        self.reporter.report(&Event::TaskBlocked {
            task: task_ref(self.ctx, t),
            failed_dep: &dep,
        });
        self.save_status(t);
    }

    fn idle(&mut self) {
        let r = self.store.flush_journal();
        self.journal(r);
    }

    fn tick(&mut self) {
        if let Err(e) = self
            .doc
            .maybe_write(self.ctx.plan, &self.ctx.agent_ids, &self.rows)
        {
            self.io_error
                .get_or_insert(format!("cannot write master_plan.md: {e}"));
        }
    }
}

fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        format!("{}…", flat.chars().take(300).collect::<String>())
    } else {
        flat
    }
}

/// Opens the state directory for a run: lock, journal replay, cleanup after a crash, agent ids.
pub fn open_state(
    plan: &Plan,
    wait: bool,
    preloaded: Option<PreloadedSnapshot>,
    reporter: &mut dyn Reporter,
) -> Result<(RunLock, StateStore)> {
    let layout = StateLayout::new(plan.state_dir());
    layout
        .create_dirs()
        .map_err(|e| miette!("cannot create {}: {e}", layout.dir.display()))?;
    let lock = RunLock::acquire(
        &layout.lock(),
        if wait {
            LockWait::Wait
        } else {
            LockWait::Refuse
        },
    )
    .map_err(|e| miette!("{e}"))?;
    let mut store = StateStore::open_preloaded(layout, preloaded).map_err(|e| miette!("{e}"))?;
    let recovered = store.interrupted;
    if !store.stale_groups.is_empty() {
        let groups: Vec<(i32, crate::clock::StartWindow)> = store
            .stale_groups
            .iter()
            .map(|(_, g, t)| (*g, *t))
            .collect();
        let n = procgroup::reap_stale(&groups);
        if n > 0 {
            reporter.report(&Event::Notice {
                message: &format!("stopped {n} process(es) left running by an interrupted run"),
            });
        }
    }
    if recovered {
        reporter.report(&Event::Notice {
            message: "resuming after an interrupted run: finished tasks are kept",
        });
    }
    let new_ids = store.assign_agent_ids(plan);
    if recovered || new_ids || store.legacy {
        store.compact().into_diagnostic()?;
    }
    Ok((lock, store))
}

/// Each task's row as this build starts: the status of its last run, or what it waits for.
fn initial_rows(
    plan: &Plan,
    ctx: &BuildContext,
    store: &StateStore,
    wanted: &[bool],
) -> Vec<RowState> {
    plan.tasks
        .iter()
        .enumerate()
        .map(|(t, task)| {
            // A task keeps the status of its last run until this build dispatches it, so
            // a build that stops early never leaves 🟡 on a task a person did not reset
            // (which the next build would take as "run it again").
            let prev = store
                .snapshot
                .statuses
                .get(&task.id)
                .filter(|_| !ctx.forced[t])
                .filter(|p| {
                    matches!(
                        p.status,
                        Status::Completed | Status::Skipped | Status::Failed
                    )
                });
            let status = match prev {
                Some(p) => p.status,
                None if ctx.forced[t] || wanted[t] => {
                    if ctx.graph.deps[t].iter().any(|&d| wanted[d]) {
                        Status::Waiting
                    } else {
                        Status::Ready
                    }
                }
                None if store.snapshot.records.contains_key(&task.id) => Status::Completed,
                None => Status::Waiting,
            };
            RowState {
                status,
                start: prev.and_then(|p| p.start.clone()),
                end: prev.and_then(|p| p.end.clone()),
                retries: prev.map(|p| p.retries).unwrap_or(0),
            }
        })
        .collect()
}

/// Runs a build to the end (or until `cancel`). Plan errors and state I/O errors are `Err`;
/// task failures are reported in the outcome.
///
/// `preload` is what [`Preloaded::read`] read of the state directory while the plan loaded;
/// it is used if it is this plan's state directory.
pub fn run_build(
    plan: &Plan,
    opts: &BuildOptions,
    preload: Option<Preloaded>,
    reporter: &mut dyn Reporter,
    cancel: &AtomicBool,
) -> Result<BuildOutcome> {
    let started = Instant::now();
    // A mistyped target is reported before the state is touched.
    let targets = target_indexes(plan, &opts.targets)?;
    let (preloaded_snapshot, mut stat_cache) = match preload {
        Some(p) if p.dir() == plan.state_dir() => {
            let (snapshot, stat_cache) = p.into_parts();
            (snapshot, Some(stat_cache))
        }
        _ => (None, None),
    };
    // Up to three independent loads, side by side: the graph and the stat cache (unless
    // preloaded) on the worker pool, which the up-to-date precheck uses next; the state on
    // this thread, which may wait for the lock.
    let mut graph_and_wanted = None;
    let state = rayon::in_place_scope(|s| {
        s.spawn(|_| {
            graph_and_wanted = Some((|| -> Result<(TaskGraph, Vec<bool>)> {
                let graph = TaskGraph::from_plan(plan)
                    .map_err(|_| miette!("the plan has a dependency cycle"))?;
                let wanted = wanted_of(plan, &graph, &targets);
                Ok((graph, wanted))
            })());
        });
        if stat_cache.is_none() {
            s.spawn(|_| {
                stat_cache = Some(StatCache::load(
                    &StateLayout::new(plan.state_dir()).stat_cache(),
                ));
            });
        }
        open_state(plan, opts.wait_for_lock, preloaded_snapshot, reporter)
    });
    // A scope returns only after its jobs have run (a panic in one is raised here).
    let (graph_and_wanted, stat_cache) = (
        graph_and_wanted.expect("scope ran the job"),
        stat_cache.expect("scope ran the job"),
    );
    let (graph, wanted) = graph_and_wanted?;
    let (_lock, mut store) = state?;
    let layout = store.layout.clone();
    crate::profile::mark("graph, state and stat cache loaded");
    let mut doc = PlanDoc::load(plan, &layout, &store);
    let forced_by_person = doc.reset_by_person(plan, &store);
    crate::profile::mark("master_plan.md checked");
    let agent_ids: Vec<String> = plan
        .tasks
        .iter()
        .map(|t| store.agent_id_of(&t.id))
        .collect();
    let previous: Vec<_> = plan
        .tasks
        .iter()
        .map(|t| store.snapshot.records.get(&t.id).cloned())
        .collect();
    crate::profile::mark("agent ids, previous records");
    let forced: Vec<bool> = (0..plan.tasks.len())
        .map(|t| wanted[t] && (opts.force || forced_by_person.contains(&t)))
        .collect();
    let done: Vec<OnceLock<DoneInfo>> = (0..plan.tasks.len()).map(|_| OnceLock::new()).collect();
    for t in 0..plan.tasks.len() {
        if !wanted[t] {
            if let Some(r) = &previous[t] {
                let _ = done[t].set(DoneInfo::from_record(r));
            }
        }
    }
    let guard = opts
        .guard_program
        .clone()
        .map(|prog| Guard::new(prog, plan.settings.kill_grace));
    crate::executor::forget_resolved_programs();
    let mut ctx = BuildContext {
        guard,
        plan,
        graph: &graph,
        layout: layout.clone(),
        opts,
        agent_ids,
        previous,
        forced,
        done,
        stat_cache,
        root_dir: crate::fingerprint::OpenDir::open(&plan.root),
        checked: (0..plan.tasks.len()).map(|_| Default::default()).collect(),
        prechecked: (0..plan.tasks.len()).map(|_| Default::default()).collect(),
        up_to_date_if_quiet: (0..plan.tasks.len()).map(|_| OnceLock::new()).collect(),
        cancel,
        redactor: Redactor::for_plan(plan),
    };
    let jobs = opts.jobs(plan);
    let keep_going = opts.keep_going.unwrap_or(plan.settings.keep_going);
    let wanted_count = wanted.iter().filter(|&&w| w).count();
    reporter.report(&Event::BuildStarted {
        tasks: wanted_count,
        jobs,
    });
    let rows = initial_rows(plan, &ctx, &store, &wanted);
    doc.log_initialization(plan, wanted_count, jobs, opts.agent_override.as_deref());
    let mut coord = BuildCoordinator {
        ctx: &ctx,
        store: &mut store,
        reporter,
        doc,
        rows,
        outcome: vec![None; plan.tasks.len()],
        retries: 0,
        cost: 0.0,
        batch_no: 0,
        io_error: None,
        eventful: false,
        skipped: Vec::new(),
    };

    let (classes, class_limit) = agent_classes(&ctx);
    let (lock_ids, lock_count) = lock_indexes(plan);
    let sched_tasks = || -> Vec<SchedTask> {
        (0..plan.tasks.len())
            .map(|t| SchedTask {
                priority: plan.tasks[t].priority.0,
                critical: graph.critical[t],
                agent_class: classes[t],
                locks: lock_ids[t].clone(),
            })
            .collect()
    };
    let mut sched = Scheduler::new(
        &graph,
        sched_tasks(),
        &wanted,
        class_limit.clone(),
        lock_count,
        keep_going,
    );
    crate::profile::mark("status rows, scheduler");
    ctx.precheck(&wanted);
    crate::profile::mark("up-to-date precheck");
    scheduler::drive(&mut sched, &ctx, &mut coord, jobs, cancel);
    crate::profile::mark("scheduled and ran");
    let mut unstarted = sched.not_started();

    // Phase 4: every result must exist before merging; re-run what is missing once if asked.
    let mut aggregate_error = None;
    let aggregating = opts.targets.is_empty() && aggregate::enabled(plan);
    if aggregating && !cancel.load(Ordering::Relaxed) {
        let mut missing = aggregate::missing_results(&ctx, &coord.outcome_ok());
        let on_missing = plan
            .aggregate
            .as_ref()
            .map(|a| a.on_missing)
            .unwrap_or(OnMissing::Rerun);
        // A failed task already spent its retries; re-run only results missing for other
        // reasons (never started, vanished) whose upstream did not fail.
        let rerunnable: Vec<usize> = missing
            .iter()
            .copied()
            .filter(|&t| {
                let up = graph.upstream_closure(&[t]);
                !(0..plan.tasks.len()).any(|u| up[u] && coord.outcome[u] == Some(Outcome::Failed))
            })
            .collect();
        if !rerunnable.is_empty() && on_missing == OnMissing::Rerun {
            let ids: Vec<&str> = rerunnable
                .iter()
                .map(|&t| ctx.agent_ids[t].as_str())
                .collect();
            let msg = format!("results missing for {}; re-running them", ids.join(", "));
            coord.reporter.report(&Event::Notice { message: &msg });
            coord.log("Missing Results".into(), vec![msg.clone()]);
            let closure = graph.upstream_closure(&rerunnable);
            let rerun: Vec<bool> = (0..plan.tasks.len())
                .map(|t| closure[t] && ctx.done[t].get().is_none())
                .collect();
            let mut second =
                Scheduler::new(&graph, sched_tasks(), &rerun, class_limit, lock_count, true);
            scheduler::drive(&mut second, &ctx, &mut coord, jobs, cancel);
            unstarted = second.not_started();
            missing = aggregate::missing_results(&ctx, &coord.outcome_ok());
        }
        if cancel.load(Ordering::Relaxed) {
            // Interrupted: say nothing about aggregation.
        } else if missing.is_empty() {
            let before = coord.store.snapshot.aggregate_digest;
            match aggregate::run(&ctx, coord.store, coord.reporter) {
                Ok(line) => {
                    if let Some(digest) = coord
                        .store
                        .snapshot
                        .aggregate_digest
                        .filter(|d| before.as_ref() != Some(d))
                    {
                        let r = coord.store.append(&JournalEntry::Aggregated { digest });
                        coord.journal(r);
                        coord.eventful = true;
                        coord.log("Result Aggregation Completed".into(), vec![line]);
                    }
                }
                Err(e) => {
                    coord
                        .reporter
                        .report(&Event::AggregateFailed { reason: &e });
                    coord.log("Result Aggregation Failed".into(), vec![one_line(&e)]);
                    aggregate_error = Some(e);
                }
            }
        } else {
            let ids: Vec<String> = missing
                .iter()
                .map(|&t| format!("{} ({})", ctx.agent_ids[t], plan.tasks[t].id))
                .collect();
            let e = format!(
                "results missing for {}; final_output.md not written",
                ids.join(", ")
            );
            let _ = std::fs::remove_file(layout.final_output());
            coord
                .reporter
                .report(&Event::AggregateFailed { reason: &e });
            coord.log("Result Aggregation Failed".into(), vec![e.clone()]);
            aggregate_error = Some(e);
        }
    }

    crate::profile::mark("aggregated");
    let interrupted = cancel.load(Ordering::Relaxed);
    let mut summary = Summary {
        retries: coord.retries,
        cost_usd: coord.cost,
        interrupted,
        ..Default::default()
    };
    for o in &coord.outcome {
        match o {
            Some(Outcome::Ran) => summary.ran += 1,
            Some(Outcome::UpToDate) => summary.skipped += 1,
            Some(Outcome::Failed) => summary.failed += 1,
            Some(Outcome::Blocked) => summary.blocked += 1,
            Some(Outcome::Cancelled) => summary.not_started += 1,
            None => {}
        }
    }
    summary.not_started += unstarted.len();
    summary.duration = started.elapsed();
    // A build that only found everything up to date leaves master_plan.md as it was.
    let eventful = coord.eventful || interrupted || !layout.master_plan().exists();
    if eventful && summary.skipped > 0 {
        let n = summary.skipped;
        coord.log(
            "Up-To-Date Check".into(),
            vec![format!("{n} task(s) up to date, skipped")],
        );
    }
    if eventful {
        coord.log(
            if interrupted {
                "Build Interrupted".into()
            } else {
                "Build Finished".into()
            },
            vec![summary.line()],
        );
    }
    for t in 0..plan.tasks.len() {
        if coord.outcome[t].is_some() {
            coord.save_status(t);
        }
    }
    if eventful {
        let rows = std::mem::take(&mut coord.rows);
        coord
            .doc
            .write(plan, &ctx.agent_ids, &rows, true)
            .into_diagnostic()?;
        // A reset a person made that this build did not get to is still only in the file:
        // the next build must read it, so the file is not vouched for then.
        let resets_pending = forced_by_person.iter().any(|&t| coord.outcome[t].is_none());
        let stamp = if resets_pending {
            None
        } else {
            FileStamp::of_path(&layout.master_plan())
        };
        let r = coord.store.record_plan_doc(stamp);
        coord.journal(r);
    }
    let io_error = coord.io_error.take();
    let skipped = std::mem::take(&mut coord.skipped);
    let leak = LEAK_ON_RETURN.load(Ordering::Relaxed);
    if leak {
        std::mem::forget(coord);
    } else {
        drop(coord);
    }
    store.close().into_diagnostic()?;
    if let Some(g) = ctx.guard.take() {
        g.finish();
    }
    let _ = ctx.stat_cache.save(&layout.stat_cache());
    crate::profile::mark("state saved");
    if let Some(key) = &opts.up_to_date_key {
        let nothing_done = !eventful
            && io_error.is_none()
            && aggregate_error.is_none()
            && summary.success()
            && summary.ran == 0
            && skipped.len() == wanted_count
            && forced_by_person.is_empty();
        if nothing_done {
            // Only a shortcut: the next build does the full check without it.
            let _ = up_to_date::write(&ctx, &store, key, &skipped, aggregating);
            crate::profile::mark("up-to-date record written");
        }
    }
    if let Some(e) = io_error {
        return Err(miette!("{e}"));
    }
    reporter.report(&Event::BuildFinished { summary: &summary });
    if leak {
        std::mem::forget(ctx);
        std::mem::forget(store);
        std::mem::forget(sched);
        std::mem::forget(graph);
    }
    Ok(BuildOutcome {
        summary,
        aggregate_error,
    })
}

/// Set by a one-shot `orch build`, whose process exits right after: the build's large
/// structures are then left to the OS instead of being freed piece by piece, which at
/// 10,000 tasks is a noticeable share of a no-op build.
pub static LEAK_ON_RETURN: AtomicBool = AtomicBool::new(false);

impl BuildCoordinator<'_, '_> {
    /// Which tasks ended with their result in place, this run.
    fn outcome_ok(&self) -> Vec<bool> {
        self.outcome
            .iter()
            .map(|o| matches!(o, Some(Outcome::Ran | Outcome::UpToDate)))
            .collect()
    }
}

/// Per-agent concurrency classes: tasks of an agent with `max_parallel` share a class.
fn agent_classes(ctx: &BuildContext) -> (Vec<Option<usize>>, Vec<Option<usize>>) {
    let mut names: Vec<String> = Vec::new();
    let mut limits = Vec::new();
    let classes = (0..ctx.plan.tasks.len())
        .map(|t| {
            let a = ctx.agent(t)?;
            // Tasks of an agent whose result is one fixed file must take turns with it.
            let shared_file = matches!(&a.result, ResultSpec::File(p) if !p.contains('{'));
            let limit = if shared_file {
                Some(a.max_parallel.unwrap_or(1).min(1))
            } else {
                a.max_parallel
            };
            limit?;
            Some(match names.iter().position(|n| n == &a.name) {
                Some(i) => i,
                None => {
                    names.push(a.name.clone());
                    limits.push(limit);
                    names.len() - 1
                }
            })
        })
        .collect();
    (classes, limits)
}

fn lock_indexes(plan: &Plan) -> (Vec<Vec<usize>>, usize) {
    let mut names: Vec<&str> = Vec::new();
    let ids = plan
        .tasks
        .iter()
        .map(|t| {
            t.locks
                .iter()
                .map(|l| match names.iter().position(|n| n == l) {
                    Some(i) => i,
                    None => {
                        names.push(l);
                        names.len() - 1
                    }
                })
                .collect()
        })
        .collect();
    (ids, names.len())
}
