//! The scheduling thread's side of a build: every state change a task goes through is
//! recorded here (journal, status row, execution log) and reported as an event.

use crate::agent::{FailureKind, Usage};
use crate::cancel::{signal_name, CancelReason};
use crate::clock::{Active, Stamp};
use crate::executor::JobEvent;
use crate::master_plan::{LogEntry, PlanDoc, RowState};
use crate::plan::Plan;
use crate::reporter::{Event, Events, JobState, Summary, TaskRef};
use crate::scheduler::Coordinator;
use crate::state::{JournalEntry, StateStore, Status, StatusRecord};

use super::context::BuildContext;
use super::exchange::{TaskDone, TaskMsg};

/// Final per-task result of this build, for the summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Outcome {
    Ran,
    /// Restored from the output cache: for its dependents, as good as a run.
    Restored,
    UpToDate,
    Failed,
    /// Failed as a conflict: its change did not merge.
    Conflict,
    Cancelled,
    Blocked,
}

pub(super) struct BuildCoordinator<'a, 'c> {
    pub(super) ctx: &'a BuildContext<'c>,
    pub(super) store: &'a mut StateStore,
    pub(super) events: &'a mut dyn Events,
    pub(super) doc: PlanDoc,
    pub(super) rows: Vec<RowState>,
    pub(super) outcome: Vec<Option<Outcome>>,
    pub(super) retries: u32,
    /// Every agent attempt's usage so far (failed ones, the aggregation's merge too).
    pub(super) usage: Usage,
    /// What the runs restored from the cache had cost: saved in this build.
    pub(super) saved: Usage,
    /// Each task's agent session id, as last reported.
    pub(super) sessions: Vec<Option<String>>,
    /// Tool calls written to the execution log, per task: a chatty agent is cut short.
    logged_activity: Vec<u32>,
    pub(super) batch_no: u32,
    pub(super) io_error: Option<String>,
    /// Something beyond up-to-date checks happened: master_plan.md needs a rewrite.
    pub(super) eventful: bool,
    /// Tasks found up to date, in the order reported.
    pub(super) skipped: Vec<usize>,
    /// The budget, the cost history and what stopped the build.
    pub(super) money: super::budget::Money,
    /// The scheduler class of each provider, and the limits last handed to them.
    pub(super) provider_classes: Vec<usize>,
    pub(super) sent_limits: Vec<usize>,
    /// The provider the aggregation's merge calls, while it does: its waits name it.
    pub(super) merge_waits_on: Option<usize>,
    /// Which providers' CLIs start before their turn (see `early_start::starts_early`).
    pub(super) provider_early: Vec<bool>,
}

pub(super) fn task_ref<'x>(ctx: &'x BuildContext, t: usize) -> TaskRef<'x> {
    let task = ctx.task(t);
    TaskRef {
        id: &task.id,
        title: &task.title,
        agent_id: &ctx.agent_ids[t],
        runner: ctx.runner_name(t),
    }
}

impl<'a, 'c> BuildCoordinator<'a, 'c> {
    pub(super) fn new(
        ctx: &'a BuildContext<'c>,
        store: &'a mut StateStore,
        events: &'a mut dyn Events,
        doc: PlanDoc,
        rows: Vec<RowState>,
    ) -> Self {
        BuildCoordinator {
            ctx,
            store,
            events,
            doc,
            rows,
            outcome: vec![None; ctx.plan.tasks.len()],
            retries: 0,
            usage: Usage::default(),
            saved: Usage::default(),
            sessions: vec![None; ctx.plan.tasks.len()],
            logged_activity: vec![0; ctx.plan.tasks.len()],
            batch_no: 0,
            io_error: None,
            eventful: false,
            skipped: Vec::new(),
            money: super::budget::Money::new(ctx),
            provider_classes: Vec::new(),
            sent_limits: Vec::new(),
            merge_waits_on: None,
            provider_early: super::early_start::starts_early(ctx),
        }
    }

    /// The build's counts, once it is over.
    pub(super) fn summary(&self, interrupted: bool, unstarted: usize, started: Active) -> Summary {
        let mut summary = Summary {
            retries: self.retries,
            usage: self.usage.clone(),
            saved: self.saved.clone(),
            interrupted,
            stopped_by: self.money.stop.clone(),
            ..Default::default()
        };
        for o in &self.outcome {
            match o {
                Some(Outcome::Ran) => summary.ran += 1,
                Some(Outcome::Restored) => summary.restored += 1,
                Some(Outcome::UpToDate) => summary.skipped += 1,
                Some(Outcome::Failed) => summary.failed += 1,
                Some(Outcome::Conflict) => {
                    summary.failed += 1;
                    summary.conflicts += 1;
                }
                Some(Outcome::Blocked) => summary.blocked += 1,
                Some(Outcome::Cancelled) => summary.interrupted_tasks += 1,
                None => {}
            }
        }
        summary.not_started += unstarted;
        summary.duration = started.elapsed();
        summary
    }
}

impl BuildCoordinator<'_, '_> {
    pub(super) fn log(&mut self, title: String, lines: Vec<String>) {
        self.doc.log(LogEntry {
            stamp: Stamp::now().date_time(),
            title,
            lines,
        });
    }

    pub(super) fn journal(&mut self, r: std::io::Result<()>) {
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
        self.events.emit(Event::TaskStarted {
            task: task_ref(self.ctx, task),
            attempt,
        });
    }

    /// A task's batch job changed state: its row shows it, and the reporters hear it.
    fn job_state(&mut self, task: usize, event: JobEvent) {
        let (status, job, state) = match &event {
            JobEvent::Queued { job, reason } => (Status::Queued, job, JobState::Queued { reason }),
            JobEvent::Running { job, node } => (Status::Running, job, JobState::Running { node }),
            JobEvent::Started(_) | JobEvent::Holding(_) => return,
        };
        self.rows[task].status = status;
        self.events.emit(Event::TaskJob {
            task: task_ref(self.ctx, task),
            job,
            state,
        });
        self.doc.touch();
    }

    /// A worktree task's merge record goes once the journal holds how the task ended: until
    /// then it is what a killed build's successor records the task's success from (the
    /// change is in the tree; running the task again would pay for it twice). A merge that
    /// failed half way (a git command killed or refused) keeps its record, so that the next
    /// build finishes it and records the success, rather than leave the tree half merged.
    /// A failed task's merged change keeps its record too unless the failure is a `verdict`
    /// on the run (an output missing, `verify` failed): after a cancel or an I/O error the
    /// next build records the success rather than pay for the run again.
    pub(super) fn drop_merge_record(&mut self, t: usize, succeeded: bool, verdict: bool) {
        let ctx = self.ctx;
        let Some(iso) = ctx.isolation.as_ref().filter(|i| i.isolated[t]) else {
            return;
        };
        let id = &ctx.task(t).id;
        if !iso.repo.has_record(id) || !(succeeded || (verdict && iso.repo.record_merged(id))) {
            return;
        }
        let flushed = self.store.flush_journal();
        if flushed.is_ok() {
            if let Err(e) = iso.repo.drop_record(id) {
                self.io_error
                    .get_or_insert(format!("cannot remove {id}'s merge record: {e}"));
            }
        }
        self.journal(flushed);
    }

    pub(super) fn save_status(&mut self, t: usize) {
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
            TaskMsg::Spawned { task, job } => {
                let id = self.ctx.task(task).id.clone();
                let r = self.store.append(&JournalEntry::spawned(id, &job));
                self.journal(r);
            }
            TaskMsg::ProcessEnded { job } => {
                let r = self.store.append(&JournalEntry::reaped(&job));
                self.journal(r);
            }
            TaskMsg::JobState { task, state } => self.job_state(task, state),
            TaskMsg::Retrying {
                task,
                attempt,
                reason,
                delay,
                usage,
            } => {
                self.retries += 1;
                self.attempt_paid(task, usage.cost_usd);
                self.rows[task].retries = attempt;
                let agent = self.ctx.agent_ids[task].clone();
                let id = self.ctx.task(task).id.clone();
                let mut line = format!(
                    "{id} attempt {attempt} failed: {}; retry in {}",
                    one_line(&reason),
                    crate::duration::format_duration(delay)
                );
                if let Some(c) = usage.cost_usd {
                    line.push_str(&format!(" (it cost ${c:.4})"));
                }
                self.log(format!("{agent} Retrying"), vec![line]);
                self.events.emit(Event::TaskRetrying {
                    task: task_ref(self.ctx, task),
                    attempt,
                    reason: &reason,
                    delay,
                    usage: &usage,
                });
                self.doc.touch();
            }
            TaskMsg::Activity { task, activity } => {
                self.events.emit(Event::TaskActivity {
                    task: task_ref(self.ctx, task),
                    activity: &activity,
                });
                let n = &mut self.logged_activity[task];
                *n += 1;
                if *n <= MAX_LOGGED_ACTIVITY {
                    let agent = self.ctx.agent_ids[task].clone();
                    let id = &self.ctx.task(task).id;
                    let mut lines = vec![format!("{id}: {activity}")];
                    if *n == MAX_LOGGED_ACTIVITY {
                        lines.push(format!(
                            "(later tool calls of {id} are left out of this log; `orch build \
                             --json` streams them all)"
                        ));
                    }
                    self.log(format!("{agent} Activity"), lines);
                    self.doc.touch();
                }
            }
            TaskMsg::Session { task, session } => {
                self.sessions[task] = Some(session.id.clone());
                let id = self.ctx.task(task).id.clone();
                let r = self.store.record_session(&id, session);
                self.journal(r);
            }
            TaskMsg::BuildNotice { message } => {
                self.events.emit(Event::Notice { message: &message });
                self.log("Cache Notice".into(), vec![one_line(&message)]);
                self.doc.touch();
            }
            TaskMsg::Notice { task, message } => {
                let id = &self.ctx.task(task).id;
                let message = format!("{id}: {message}");
                self.events.emit(Event::Notice { message: &message });
                let agent = self.ctx.agent_ids[task].clone();
                self.log(format!("{agent} Notice"), vec![one_line(&message)]);
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
        // A verdict on the run (not a cancel or an I/O error) settles a merged change.
        let verdict = matches!(
            &done,
            TaskDone::Failed { failure, .. }
                if matches!(failure.kind, FailureKind::MissingOutput | FailureKind::Verify)
        );
        let ok = match done {
            TaskDone::UpToDate(_) => {
                self.rows[t].status = Status::Skipped;
                self.outcome[t] = Some(Outcome::UpToDate);
                self.skipped.push(t);
                let (mut deps_reran, mut deps_restored) = (Vec::new(), Vec::new());
                for &d in &ctx.graph.deps[t] {
                    if let Some(i) = ctx.done[d].get().filter(|i| i.ran) {
                        deps_reran.push(ctx.task(d).id.as_str());
                        if i.restored {
                            deps_restored.push(ctx.task(d).id.as_str());
                        }
                    }
                }
                if !deps_reran.is_empty() {
                    self.log(
                        format!("{agent} Up To Date"),
                        vec![format!(
                            "{id} not run: {} and handed over the same outputs and result",
                            crate::reporter::how_deps_came(&deps_reran, &deps_restored)
                        )],
                    );
                }
                self.events.emit(Event::TaskSkipped {
                    task: task_ref(self.ctx, t),
                    deps_reran: &deps_reran,
                    deps_restored: &deps_restored,
                });
                true
            }
            TaskDone::Ran {
                record,
                usage,
                duration,
                retries,
                why,
                warnings,
            } => {
                self.task_paid(t, usage.cost_usd, Some(&record));
                let r = self.store.record_success(id, record);
                self.journal(r);
                if !ctx.task(t).action.is_shell() {
                    // An agent's work costs money: on disk now, not at the end of this
                    // step, which a second Ctrl-C (an immediate exit) could cut short.
                    self.idle();
                }
                self.usage.add(&usage);
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
                lines.extend(usage_lines(&usage, self.sessions[t].as_deref()));
                if let Some(w) = &warnings {
                    lines.push(format!("Warnings: {}", one_line(w)));
                }
                self.log(format!("{agent} Completed"), lines);
                self.events.emit(Event::TaskSucceeded {
                    task: task_ref(self.ctx, t),
                    duration,
                    retries,
                    usage: &usage,
                    why: &why,
                    warnings: warnings.as_deref(),
                    session: self.sessions[t].as_deref(),
                });
                true
            }
            TaskDone::Restored {
                record,
                duration,
                why,
                restored,
            } => {
                let r = self.store.record_success(id, record);
                self.journal(r);
                self.saved.add(&restored.saved);
                let row = &mut self.rows[t];
                row.status = Status::Completed;
                row.end = Some(Stamp::now().time());
                row.retries = 0;
                self.outcome[t] = Some(Outcome::Restored);
                let mut line = format!(
                    "{id} restored from the {} cache (its run took {})",
                    restored.source.word(),
                    crate::duration::format_duration(restored.original)
                );
                if let Some(c) = restored.saved.cost_usd {
                    line.push_str(&format!(", saving ${c:.4}"));
                }
                let lines = vec![
                    line,
                    format!("Why it was due: {why}"),
                    format!("Output saved to {}", self.ctx.result_rel(t)),
                ];
                self.log(format!("{agent} Restored"), lines);
                self.events.emit(Event::TaskRestored {
                    task: task_ref(self.ctx, t),
                    duration,
                    saved: &restored.saved,
                    source: restored.source.word(),
                    why: &why,
                    session: restored.session.as_deref(),
                });
                true
            }
            TaskDone::Failed {
                failure,
                duration,
                retries,
                usage,
            } => {
                if failure.kind == FailureKind::QuotaStop {
                    // Its provider stopped: said (and the build stopped) before this ends.
                    self.provider_news();
                }
                self.task_paid(t, usage.cost_usd, None);
                self.usage.add(&usage);
                self.rows[t].retries = retries;
                if matches!(
                    failure.kind,
                    FailureKind::Cancelled | FailureKind::QuotaStop
                ) {
                    self.rows[t].status = Status::Ready;
                    self.rows[t].end = None;
                    self.rows[t].waiting_until = None;
                    self.outcome[t] = Some(Outcome::Cancelled);
                    let why = if failure.kind == FailureKind::QuotaStop {
                        format!(": {}", failure.message)
                    } else {
                        String::new()
                    };
                    self.log(
                        format!("{agent} Cancelled"),
                        vec![format!("{id} was stopped before it finished{why}")],
                    );
                    self.events.emit(Event::TaskInterrupted {
                        task: task_ref(self.ctx, t),
                        duration,
                        retries,
                        usage: &usage,
                        session: self.sessions[t].as_deref(),
                    });
                } else {
                    let r = self.store.invalidate(id);
                    self.journal(r);
                    let conflict = failure.kind == FailureKind::Conflict;
                    self.rows[t].status = if conflict {
                        Status::Conflict
                    } else {
                        Status::Failed
                    };
                    self.rows[t].end = Some(Stamp::now().time());
                    self.outcome[t] = Some(if conflict {
                        Outcome::Conflict
                    } else {
                        Outcome::Failed
                    });
                    let mut lines = vec![format!(
                        "{id} failed after {}: {}",
                        crate::duration::format_duration(duration),
                        one_line(&failure.message)
                    )];
                    lines.extend(usage_lines(&usage, self.sessions[t].as_deref()));
                    self.log(
                        format!("{agent} {}", if conflict { "Conflict" } else { "Failed" }),
                        lines,
                    );
                    self.events.emit(Event::TaskFailed {
                        task: task_ref(self.ctx, t),
                        duration,
                        retries,
                        reason: &failure.message,
                        conflict,
                        not_started: false,
                        usage: &usage,
                        session: self.sessions[t].as_deref(),
                    });
                }
                false
            }
        };
        self.save_status(t);
        self.drop_merge_record(t, ok, verdict);
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
        self.events.emit(Event::TaskBlocked {
            task: task_ref(self.ctx, t),
            failed_dep: &dep,
        });
        self.save_status(t);
    }

    fn admit(&mut self, t: usize) -> crate::scheduler::Admit {
        self.admit_task(t)
    }

    fn limits(&mut self) -> Vec<(usize, Option<usize>)> {
        self.provider_limits()
    }

    fn stopping(&self) -> bool {
        matches!(self.money.stop, Some(crate::reporter::Stop::Quota { .. }))
    }

    fn cancelling(&mut self, running: &[usize]) {
        self.eventful = true;
        let why = self.ctx.cancel.reason().unwrap_or(CancelReason::Bug);
        let reason = why.describe();
        let signal = signal_name(why.forwarded_signal());
        let grace = self.ctx.plan.settings.kill_grace;
        let stopping: Vec<TaskRef> = running.iter().map(|&t| task_ref(self.ctx, t)).collect();
        let ids: Vec<&str> = stopping.iter().map(|t| t.id).collect();
        self.log(
            "Stopping".into(),
            vec![format!(
                "{reason}: {signal} sent to {}, SIGKILL after {}",
                ids.join(", "),
                crate::duration::format_duration(grace)
            )],
        );
        self.events.emit(Event::BuildInterrupted {
            reason: &reason,
            signal: &signal,
            stopping: &stopping,
            grace,
        });
    }

    fn idle(&mut self) {
        let r = self.store.flush_journal();
        self.journal(r);
    }

    fn tick(&mut self) {
        // An allocation nobody used for a while is released; the journal hears of it.
        for job in self.ctx.backend.tick() {
            let r = self.store.append(&JournalEntry::reaped(&job));
            self.journal(r);
        }
        self.events.check_output();
        if let Err(e) = self
            .doc
            .maybe_write(self.ctx.plan, &self.ctx.agent_ids, &self.rows)
        {
            self.io_error
                .get_or_insert(format!("cannot write master_plan.md: {e}"));
        }
    }
}

/// Tool calls of one task written to the execution log in one build, at most.
const MAX_LOGGED_ACTIVITY: u32 = 20;

/// The execution log's lines for what a task's attempts cost, and its agent session.
fn usage_lines(usage: &Usage, session: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(c) = usage.cost_usd {
        lines.push(format!("Cost: ${c:.4}"));
    }
    if let (Some(input), Some(output)) = (usage.input_tokens, usage.output_tokens) {
        lines.push(format!(
            "Tokens: {input} in ({} cache read, {} cache written), {output} out",
            usage.cache_read_tokens.unwrap_or(0),
            usage.cache_write_tokens.unwrap_or(0)
        ));
    }
    if let Some(s) = session {
        lines.push(format!("Session: {s}"));
    }
    lines
}

pub(super) fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        format!("{}…", flat.chars().take(300).collect::<String>())
    } else {
        flat
    }
}

/// Each task's row as this build starts: the status of its last run, or what it waits for.
pub(super) fn initial_rows(
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
                        Status::Completed | Status::Skipped | Status::Failed | Status::Conflict
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
                waiting_until: None,
            }
        })
        .collect()
}

impl BuildCoordinator<'_, '_> {
    /// Which tasks ended with their result in place, this run.
    pub(super) fn outcome_ok(&self) -> Vec<bool> {
        self.outcome
            .iter()
            .map(|o| {
                matches!(
                    o,
                    Some(Outcome::Ran | Outcome::Restored | Outcome::UpToDate)
                )
            })
            .collect()
    }
}
