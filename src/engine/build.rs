//! One build, phase by phase: load the graph and the state ([`load`]), check master_plan.md
//! for a person's resets, set up the shared [`context`], schedule and run, aggregate
//! ([`aggregated`]), record how it ended ([`recorded`]), save the state. [`run_build`] reads
//! as that list; the `ORCH_PROFILE` marks (see [`crate::profile`]) name where each phase ends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use miette::{miette, IntoDiagnostic, Result};

use crate::cancel::Cancel;
use crate::clock::Active;
use crate::disk::FileStamp;
use crate::executor::guard::Guard;
use crate::executor::{AllocationSpec, Backend, ExecutorKind, Executors, SlurmConfig};
use crate::fingerprint::StatCache;
use crate::graph::TaskGraph;
use crate::master_plan::PlanDoc;
use crate::plan::{OnMissing, Plan};
use crate::redact::Redactor;
use crate::reporter::{Emitter, Event, Events, Reporter, Summary};
use crate::scheduler;
use crate::state::lock::{LockWait, RunLock};
use crate::state::preload::{Preloaded, PreloadedSnapshot};
use crate::state::{JournalEntry, StateLayout, StateStore};

use super::aggregate;
use super::context::{BuildContext, DoneInfo};
use super::coordinator::{initial_rows, one_line, BuildCoordinator, Outcome};
use super::options::{target_indexes, wanted_of, BuildOptions, BuildOutcome};
use super::queue::Queue;
use super::up_to_date;

/// Opens the state directory for a run: lock, journal replay, cleanup after a crash, agent ids.
pub(crate) fn open_state(
    plan: &Plan,
    wait: bool,
    preloaded: Option<PreloadedSnapshot>,
    backend: &dyn Backend,
    events: &mut dyn Events,
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
    if !store.stale_jobs.is_empty() {
        let left: Vec<_> = store.stale_jobs.iter().map(|(_, job)| *job).collect();
        let n = backend.reap_stale(&left);
        if n > 0 {
            events.emit(Event::Notice {
                message: &format!(
                    "stopped {n} process(es) or Slurm job(s) left running by an interrupted run"
                ),
            });
        }
    }
    if recovered {
        events.emit(Event::Notice {
            message: "resuming after an interrupted run: finished tasks are kept",
        });
    }
    let new_ids = store.assign_agent_ids(plan);
    let migrated = super::migrate::records(plan, &mut store);
    if recovered || new_ids || store.legacy || migrated {
        store.compact().into_diagnostic()?;
    }
    Ok((lock, store))
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
    cancel: &Cancel,
) -> Result<BuildOutcome> {
    let started = Active::now();
    let mut emitter = Emitter::new(reporter, cancel);
    let events: &mut dyn Events = &mut emitter;
    // A mistyped target is reported before the state is touched.
    let targets = target_indexes(plan, &opts.targets)?;
    let on_slurm: Vec<bool> = plan
        .tasks
        .iter()
        .map(|t| {
            plan.executor_of(t, opts.agent_override.as_deref(), opts.executor)
                == ExecutorKind::Slurm
        })
        .collect();
    let uses_slurm = on_slurm.contains(&true);
    // The crash guard (this binary in another role) starts with the first child or job.
    let guard = opts.guard_program.clone().map(|prog| {
        let g = Guard::new(prog, plan.settings.kill_grace);
        if uses_slurm {
            g.with_slurm()
        } else {
            g
        }
    });
    let slurm = uses_slurm.then(|| slurm_config(plan));
    let backend: Box<dyn Backend> = Box::new(Executors::new(guard, slurm));
    let Loaded {
        graph,
        wanted,
        lock: _lock,
        mut store,
        stat_cache,
    } = load(plan, opts, preload, &targets, &*backend, events)?;
    crate::profile::mark("graph, state and stat cache loaded");
    refused_up_front(plan, opts, &wanted)?;
    let isolated = super::worktrees::setup(plan, opts, &wanted, &mut store, events)?;
    super::gone::remove_results(plan, &store, events);
    let layout = store.layout.clone();
    let mut doc = PlanDoc::load(plan, &layout, &store);
    let forced_by_person = doc.reset_by_person(plan, &store);
    // Said on every build until it is resolved: a build that says it leaves no record for
    // the fast path, which would replay the verdict without it.
    let uncarried = doc.uncarried_edits(plan, &store);
    let edits_said = !uncarried.is_empty();
    for message in uncarried {
        events.emit(Event::Notice { message: &message });
        doc.log(crate::master_plan::log_entry(
            "Edit Not Kept",
            vec![message],
        ));
    }
    crate::profile::mark("master_plan.md checked");
    let local_jobs = opts.jobs(plan);
    // Slurm jobs wait on the cluster, not on this machine's cores: their own limit, and a
    // worker each, beside the local ones.
    let jobs = if uses_slurm {
        local_jobs + plan.settings.slurm.max_jobs
    } else {
        local_jobs
    };
    let mut ctx = context(
        plan,
        opts,
        &graph,
        &store,
        &wanted,
        &forced_by_person,
        stat_cache,
        backend,
        cancel,
        jobs,
    );
    ctx.isolation = isolated;
    let keep_going = opts.keep_going.unwrap_or(plan.settings.keep_going);
    let wanted_count = wanted.iter().filter(|&&w| w).count();
    events.emit(Event::BuildStarted {
        tasks: wanted_count,
        jobs: local_jobs,
    });
    let rows = initial_rows(plan, &ctx, &store, &wanted);
    doc.log_initialization(
        plan,
        wanted_count,
        local_jobs,
        opts.agent_override.as_deref(),
    );
    let mut coord = BuildCoordinator::new(&ctx, &mut store, events, doc, rows);
    let pools = uses_slurm.then_some((on_slurm.as_slice(), local_jobs));
    let queue = Queue::new(&ctx, pools);
    coord.provider_classes = queue.provider_classes();
    coord.sent_limits = ctx.gate.limits();
    let mut sched = queue.scheduler(&wanted, keep_going);
    coord.hold_kept_conflicts(&mut sched, &wanted);
    crate::profile::mark("status rows, scheduler");
    ctx.precheck(&wanted);
    crate::profile::mark("up-to-date precheck");
    scheduler::drive(&mut sched, &ctx, &mut coord, jobs, cancel);
    crate::profile::mark("scheduled and ran");
    let mut unstarted = sched.not_started();
    let aggregating = opts.targets.is_empty() && aggregate::enabled(plan);
    // A build the budget stopped merges nothing: the results are not all there, and a
    // merge by an agent would cost more.
    let aggregate_error = if aggregating && !cancel.is_cancelled() && coord.money.stop.is_none() {
        aggregated(&ctx, &mut coord, &queue, jobs, &mut unstarted)
    } else {
        None
    };
    crate::profile::mark("aggregated");
    if let Some(cache) = &ctx.cache {
        // Uploads still queued go up now (bounded); the local store is pruned to its cap.
        for message in cache.finish() {
            coord.events.emit(Event::Notice { message: &message });
            coord.log("Cache Notice".into(), vec![message]);
        }
        crate::profile::mark("cache drained and pruned");
    }
    coord.keep_learnt_limits();
    let mut summary = coord.summary(cancel.is_cancelled(), unstarted.len(), started);
    summary.not_aggregated = aggregate_error.is_some();
    let recorded = recorded(&mut coord, &summary, &forced_by_person).into_diagnostic()?;
    let leak = LEAK_ON_RETURN.load(Ordering::Relaxed);
    if leak {
        std::mem::forget(coord);
    } else {
        drop(coord);
    }
    // What the backend held to the end (a Slurm allocation) is released, and journaled so,
    // before the journal closes.
    for job in ctx.backend.finish() {
        store
            .append(&JournalEntry::reaped(&job))
            .into_diagnostic()?;
    }
    store.close().into_diagnostic()?;
    let _ = ctx.stat_cache.save(&layout.stat_cache());
    crate::profile::mark("state saved");
    if let Some(key) = &opts.up_to_date_key {
        let nothing_done = !recorded.eventful
            && recorded.io_error.is_none()
            && aggregate_error.is_none()
            && summary.success()
            && summary.ran == 0
            && recorded.skipped.len() == wanted_count
            && forced_by_person.is_empty()
            && !edits_said;
        if nothing_done {
            // Only a shortcut: the next build does the full check without it.
            let _ = up_to_date::write(&ctx, &store, key, &recorded.skipped, aggregating);
            crate::profile::mark("up-to-date record written");
        }
    }
    if let Some(e) = recorded.io_error {
        return Err(miette!("{e}"));
    }
    events.emit(Event::BuildFinished { summary: &summary });
    if leak {
        std::mem::forget(ctx);
        std::mem::forget(store);
        std::mem::forget(sched);
        std::mem::forget(graph);
    }
    Ok(BuildOutcome {
        summary,
        aggregate_error,
        stopped_by: cancel.reason(),
    })
}

/// The wanted tasks whose agent is known to refuse to run as asked (claude's `full` as
/// root): one error naming them all, before anything starts or costs money.
fn refused_up_front(plan: &Plan, opts: &BuildOptions, wanted: &[bool]) -> Result<()> {
    let mut refused: Vec<(String, String)> = Vec::new();
    for (t, task) in plan.tasks.iter().enumerate() {
        if !wanted[t] {
            continue;
        }
        let Some(agent) = plan.agent_for(task, opts.agent_override.as_deref()) else {
            continue;
        };
        let env: Vec<(&String, &String)> = agent.env.iter().chain(task.env.iter()).collect();
        let var = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
                .or_else(|| std::env::var(k).ok())
        };
        if let Some(why) = crate::agent::refused_as_root(agent, plan.permission(task, agent), &var)
        {
            refused.push((task.id.clone(), why));
        }
    }
    match refused.first() {
        None => Ok(()),
        Some((_, why)) => {
            let ids: Vec<&str> = refused.iter().map(|(id, _)| id.as_str()).collect();
            Err(miette!("task {} cannot run: {why}", ids.join(", ")))
        }
    }
}

/// How the build's Slurm backend works, from `[settings.slurm]`.
fn slurm_config(plan: &Plan) -> SlurmConfig {
    let s = &plan.settings.slurm;
    SlurmConfig {
        // The state directory is in the project, which the nodes must share anyway.
        work_dir: plan.state_dir().join("slurm"),
        poll: s.poll,
        file_wait: s.output_wait,
        allocation: AllocationSpec {
            partition: plan.settings.placement.slurm.partition.clone(),
            time_minutes: None,
            args: s.allocation.clone(),
            idle: s.allocation_idle,
        },
    }
}

/// What the first phase loads.
struct Loaded {
    graph: TaskGraph,
    wanted: Vec<bool>,
    lock: RunLock,
    store: StateStore,
    stat_cache: StatCache,
}

/// Up to three independent loads, side by side: the graph and the stat cache (unless
/// preloaded) on the worker pool, which the up-to-date precheck uses next; the state on
/// this thread, which may wait for the lock.
fn load(
    plan: &Plan,
    opts: &BuildOptions,
    preload: Option<Preloaded>,
    targets: &[usize],
    backend: &dyn Backend,
    events: &mut dyn Events,
) -> Result<Loaded> {
    let (preloaded_snapshot, mut stat_cache) = match preload {
        Some(p) if p.dir() == plan.state_dir() => {
            let (snapshot, stat_cache) = p.into_parts();
            (snapshot, Some(stat_cache))
        }
        _ => (None, None),
    };
    let mut graph_and_wanted = None;
    let state = rayon::in_place_scope(|s| {
        s.spawn(|_| {
            graph_and_wanted = Some((|| -> Result<(TaskGraph, Vec<bool>)> {
                let graph = TaskGraph::from_plan(plan)
                    .map_err(|_| miette!("the plan has a dependency cycle"))?;
                let wanted = wanted_of(plan, &graph, targets);
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
        open_state(
            plan,
            opts.wait_for_lock,
            preloaded_snapshot,
            backend,
            events,
        )
    });
    // A scope returns only after its jobs have run (a panic in one is raised here).
    let (graph_and_wanted, stat_cache) = (
        graph_and_wanted.expect("scope ran the job"),
        stat_cache.expect("scope ran the job"),
    );
    let (graph, wanted) = graph_and_wanted?;
    let (lock, store) = state?;
    Ok(Loaded {
        graph,
        wanted,
        lock,
        store,
        stat_cache,
    })
}

/// The context the workers share: agent ids, previous records, what is forced, what the
/// tasks this build does not want hand their dependents, where processes run.
#[allow(clippy::too_many_arguments)]
fn context<'a>(
    plan: &'a Plan,
    opts: &'a BuildOptions,
    graph: &'a TaskGraph,
    store: &StateStore,
    wanted: &[bool],
    forced_by_person: &HashSet<usize>,
    stat_cache: StatCache,
    backend: Box<dyn Backend>,
    cancel: &'a Cancel,
    jobs: usize,
) -> BuildContext<'a> {
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
    crate::executor::forget_resolved_programs();
    let history = super::budget::CostHistory::load(&store.layout.costs());
    // A provider may take as many calls as the build runs tasks (Slurm's included).
    let providers = super::providers::gate(plan, opts.agent_override.as_deref(), jobs, &history);
    let ctx = BuildContext {
        backend,
        plan,
        graph,
        layout: store.layout.clone(),
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
        results_rel: plan.relative(&store.layout.results_dir()),
        sessions: plan
            .tasks
            .iter()
            .map(|t| store.snapshot.sessions.get(&t.id).cloned())
            .collect(),
        attempts: Default::default(),
        cache: opts
            .caching(plan)
            .then(|| crate::cache::Cache::open(&plan.settings.cache, &store.layout.dir)),
        isolation: None,
        gate: providers.gate,
        provider_of: providers.of_task,
        merge_provider: providers.of_merge,
    };
    for (t, _) in wanted.iter().enumerate().filter(|(_, &w)| !w) {
        if let Some(r) = &ctx.previous[t] {
            let _ = ctx.done[t].set(ctx.done_from_record(t, r));
        }
    }
    ctx
}

/// Phase 4: every result must exist before merging; re-runs what is missing once if asked,
/// then merges. The aggregation's error, if any.
fn aggregated(
    ctx: &BuildContext,
    coord: &mut BuildCoordinator,
    queue: &Queue,
    jobs: usize,
    unstarted: &mut Vec<usize>,
) -> Option<String> {
    let plan = ctx.plan;
    let graph = ctx.graph;
    let cancel = ctx.cancel;
    let mut missing = aggregate::missing_results(ctx, &coord.outcome_ok());
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
            !(0..plan.tasks.len()).any(|u| {
                up[u] && matches!(coord.outcome[u], Some(Outcome::Failed | Outcome::Conflict))
            })
        })
        .collect();
    if !rerunnable.is_empty() && on_missing == OnMissing::Rerun {
        let ids: Vec<&str> = rerunnable
            .iter()
            .map(|&t| ctx.agent_ids[t].as_str())
            .collect();
        let msg = format!("results missing for {}; re-running them", ids.join(", "));
        coord.events.emit(Event::Notice { message: &msg });
        coord.log("Missing Results".into(), vec![msg.clone()]);
        let closure = graph.upstream_closure(&rerunnable);
        let rerun: Vec<bool> = (0..plan.tasks.len())
            .map(|t| closure[t] && ctx.done[t].get().is_none())
            .collect();
        let mut second = queue.scheduler(&rerun, true);
        // The new scheduler starts from the providers' first limits: hand it today's.
        coord.sent_limits.clear();
        scheduler::drive(&mut second, ctx, coord, jobs, cancel);
        *unstarted = second.not_started();
        missing = aggregate::missing_results(ctx, &coord.outcome_ok());
    }
    if cancel.is_cancelled() {
        // Interrupted: say nothing about aggregation.
        None
    } else if missing.is_empty() {
        let before = coord.store.snapshot.aggregate_digest;
        match coord.aggregate() {
            Ok(line) => {
                if let Some(digest) = coord
                    .store
                    .snapshot
                    .aggregate_digest
                    .filter(|d| before.as_ref() != Some(d))
                {
                    let r = coord.store.append(&JournalEntry::Aggregated { digest });
                    coord.journal(r);
                    // On disk at once, as a paid task's success is: the remote cache's drain
                    // and the state's close come after, and a kill there would pay the merge
                    // agent again next build.
                    let r = coord.store.flush_journal();
                    coord.journal(r);
                    coord.eventful = true;
                    coord.log("Result Aggregation Completed".into(), vec![line]);
                }
                None
            }
            Err(e) => {
                coord.events.emit(Event::AggregateFailed { reason: &e });
                coord.log("Result Aggregation Failed".into(), vec![one_line(&e)]);
                Some(e)
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
        let _ = std::fs::remove_file(ctx.layout.final_output());
        coord.events.emit(Event::AggregateFailed { reason: &e });
        coord.log("Result Aggregation Failed".into(), vec![e.clone()]);
        Some(e)
    }
}

/// What the last phase hands back from recording the build.
struct Recorded {
    /// Anything beyond up-to-date checks happened (master_plan.md was rewritten).
    eventful: bool,
    io_error: Option<String>,
    /// Tasks found up to date, in the order reported.
    skipped: Vec<usize>,
}

/// Records how the build ended: the log's last entries, every task's status, and (unless
/// the build only found everything up to date) master_plan.md and its stamp.
fn recorded(
    coord: &mut BuildCoordinator,
    summary: &Summary,
    forced_by_person: &HashSet<usize>,
) -> std::io::Result<Recorded> {
    let plan = coord.ctx.plan;
    let layout = &coord.ctx.layout;
    // A build that only found everything up to date leaves master_plan.md as it was.
    let eventful = coord.eventful || summary.interrupted || !layout.master_plan().exists();
    if eventful && summary.skipped > 0 {
        let n = summary.skipped;
        coord.log(
            "Up-To-Date Check".into(),
            vec![format!("{n} task(s) up to date, skipped")],
        );
    }
    if eventful {
        coord.log(
            if summary.interrupted {
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
        coord.doc.write(plan, &coord.ctx.agent_ids, &rows, true)?;
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
    Ok(Recorded {
        eventful,
        io_error: coord.io_error.take(),
        skipped: std::mem::take(&mut coord.skipped),
    })
}

/// Set by a one-shot `orch build`, whose process exits right after: the build's large
/// structures are then left to the OS instead of being freed piece by piece, which at
/// 10,000 tasks is a noticeable share of a no-op build.
pub static LEAK_ON_RETURN: AtomicBool = AtomicBool::new(false);
