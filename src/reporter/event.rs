//! What a build tells its reporters: [`Event`]s that borrow from the plan, each [`Stamped`]
//! once with the time it was made (so every reporter shows the same time), the [`Summary`]
//! at the end, and the [`Reporter`] trait every view implements.

use std::io;
use std::time::{Duration, SystemTime};

use crate::agent::{Activity, Usage};

#[derive(Debug, Clone)]
pub struct TaskRef<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub agent_id: &'a str,
    /// `shell`, `sim`, `claude`...
    pub runner: &'a str,
}

#[derive(Debug, Clone)]
pub enum Event<'a> {
    BuildStarted {
        tasks: usize,
        jobs: usize,
    },
    TaskStarted {
        task: TaskRef<'a>,
        attempt: u32,
    },
    TaskRetrying {
        task: TaskRef<'a>,
        attempt: u32,
        reason: &'a str,
        delay: Duration,
        /// What the failed attempt cost.
        usage: &'a Usage,
    },
    /// A running agent called a tool (`Write reports/security.json`, `Bash: npm test`).
    TaskActivity {
        task: TaskRef<'a>,
        activity: &'a Activity,
    },
    TaskSkipped {
        task: TaskRef<'a>,
        /// Deps that re-ran in this build and handed over the outputs and result this task
        /// was built on, so it did not run (early cutoff).
        deps_reran: &'a [&'a str],
        /// Those of `deps_reran` that were restored from the output cache, not run.
        deps_restored: &'a [&'a str],
    },
    TaskSucceeded {
        task: TaskRef<'a>,
        duration: Duration,
        retries: u32,
        /// Every attempt's, failed ones included.
        usage: &'a Usage,
        why: &'a str,
        /// What a shell task printed on stderr though it succeeded, a few lines at most.
        warnings: Option<&'a str>,
        /// The agent session of its last attempt.
        session: Option<&'a str>,
    },
    /// Found in the output cache and restored instead of run.
    TaskRestored {
        task: TaskRef<'a>,
        /// The restore's own time.
        duration: Duration,
        /// What the run it restores had cost.
        saved: &'a Usage,
        /// `local` or `remote`.
        source: &'a str,
        /// Why it was due (as a run's `why`).
        why: &'a str,
        /// The session the restored answer was given in.
        session: Option<&'a str>,
    },
    TaskFailed {
        task: TaskRef<'a>,
        duration: Duration,
        retries: u32,
        reason: &'a str,
        /// Its change did not merge (a worktree task): it ends as `conflict`.
        conflict: bool,
        /// It did not start in this build: its change from an earlier one is kept with a
        /// merge conflict, waiting for `orch merge`.
        not_started: bool,
        usage: &'a Usage,
        session: Option<&'a str>,
    },
    /// Stopped before it finished: the build was cancelled while it ran.
    TaskInterrupted {
        task: TaskRef<'a>,
        duration: Duration,
        retries: u32,
        /// What its attempts cost until then.
        usage: &'a Usage,
        /// The agent session it was in: the next build continues it.
        session: Option<&'a str>,
    },
    /// Where a task's batch job (a Slurm job or step) is: its id and state.
    TaskJob {
        task: TaskRef<'a>,
        job: &'a str,
        state: JobState<'a>,
    },
    /// Not run because a dep failed.
    TaskBlocked {
        task: TaskRef<'a>,
        failed_dep: &'a str,
    },
    Aggregated {
        path: &'a str,
        strategy: &'a str,
        up_to_date: bool,
    },
    AggregateFailed {
        reason: &'a str,
    },
    /// The build was told to stop (`reason`: `SIGINT`, `output closed`, ...) while these
    /// tasks run: each gets `signal` now, SIGKILL after `grace`, then a `TaskInterrupted`.
    BuildInterrupted {
        reason: &'a str,
        signal: &'a str,
        stopping: &'a [TaskRef<'a>],
        grace: Duration,
    },
    /// The budget stops the build: `task`, projected to cost `projected` (unknown: `None`),
    /// does not start, nor anything after it; running tasks finish.
    BudgetReached {
        task: TaskRef<'a>,
        projected: Option<f64>,
        /// What finished attempts cost so far.
        spent: f64,
        /// What the running tasks are projected to cost.
        running: f64,
        limit: f64,
    },
    /// A provider's concurrency changed: halved after a transient failure, one more after a
    /// run of successes.
    ProviderLimit {
        provider: &'a str,
        limit: usize,
        /// `-j` or the agent's `max_parallel`: never more.
        max: usize,
        reason: &'a str,
    },
    /// A provider's calls wait until `until`: its usage limit resets then (`quota`), or it
    /// asked to be called again then (a retry-after). `tasks`: those waiting on it now.
    ProviderWaiting {
        provider: &'a str,
        until: SystemTime,
        quota: bool,
        reason: &'a str,
        tasks: &'a [&'a str],
    },
    /// A provider's wait is over: its tasks start again.
    ProviderResumed {
        provider: &'a str,
        quota: bool,
    },
    /// Free-form notice (recovered state, stale processes stopped, ...).
    Notice {
        message: &'a str,
    },
    BuildFinished {
        summary: &'a Summary,
    },
}

/// What a batch job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState<'a> {
    /// Waiting in the queue, for Slurm's reason (`Resources`, `Priority`...; may be empty).
    Queued { reason: &'a str },
    /// Running, on this node (may be empty).
    Running { node: &'a str },
}

impl JobState<'_> {
    pub fn word(&self) -> &'static str {
        match self {
            JobState::Queued { .. } => "queued",
            JobState::Running { .. } => "running",
        }
    }
}

/// The `task` (and `agent_id`) of events about the aggregation's merge, which is no task:
/// agent ids are `Agent-NN`, so no task's is this.
pub const MERGE_ID: &str = "aggregate";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub ran: usize,
    /// Restored from the output cache instead of run.
    pub restored: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Of the failed, those whose change did not merge.
    pub conflicts: usize,
    pub blocked: usize,
    pub not_started: usize,
    /// Stopped while they ran.
    pub interrupted_tasks: usize,
    pub retries: u32,
    /// Every agent attempt's usage (the aggregation's merge too), failed ones included.
    pub usage: Usage,
    /// What the restored tasks' runs had cost: not spent again.
    pub saved: Usage,
    pub duration: Duration,
    pub interrupted: bool,
    /// What stopped the build before its end, when not a signal or a failure.
    pub stopped_by: Option<Stop>,
    /// final_output.md was due and not written: results missing, the merge failed, or the
    /// budget or a usage limit refused the merge agent (`aggregate_failed` says why).
    pub not_aggregated: bool,
}

/// Why a build stopped starting tasks though nothing failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// `max_cost_usd` / `--max-cost`: the next task's projected cost would pass it.
    Budget { limit_usd: f64 },
    /// A provider's usage limit resets later than `max_quota_wait` allows.
    Quota { provider: String, until: SystemTime },
}

impl Stop {
    /// `budget`, `quota`: the `--json` summary's `stopped_by`.
    pub fn word(&self) -> &'static str {
        match self {
            Stop::Budget { .. } => "budget",
            Stop::Quota { .. } => "quota",
        }
    }

    /// The distinct exit status of a build it stopped (README, "Exit status").
    pub fn exit_code(&self) -> i32 {
        match self {
            Stop::Budget { .. } => 3,
            Stop::Quota { .. } => 4,
        }
    }

    /// What the summary line says.
    pub fn describe(&self, spent: f64) -> String {
        match self {
            Stop::Budget { limit_usd } => format!(
                "stopped by the budget (${spent:.4} of ${limit_usd:.4} spent, ${:.4} left)",
                (limit_usd - spent).max(0.0)
            ),
            Stop::Quota { provider, until } => format!(
                "stopped: {provider}'s usage limit resets at {}, past max_quota_wait",
                crate::clock::local_hh_mm(*until)
            ),
        }
    }
}

impl Summary {
    pub fn success(&self) -> bool {
        self.failed == 0
            && self.blocked == 0
            && self.not_started == 0
            && self.interrupted_tasks == 0
            && !self.interrupted
            && !self.not_aggregated
    }

    pub fn line(&self) -> String {
        let mut parts = vec![format!("{} ran", self.ran)];
        if self.restored > 0 {
            let mut p = format!("{} restored from cache", self.restored);
            if let Some(c) = self.saved.cost_usd.filter(|&c| c > 0.0) {
                p.push_str(&format!(" (saved ${c:.4})"));
            }
            parts.push(p);
        }
        parts.push(format!("{} up to date", self.skipped));
        if self.failed > 0 {
            parts.push(match self.conflicts {
                0 => format!("{} failed", self.failed),
                n => format!("{} failed ({n} conflict)", self.failed),
            });
        }
        if self.blocked > 0 {
            parts.push(format!("{} blocked", self.blocked));
        }
        if self.interrupted_tasks > 0 {
            parts.push(format!("{} interrupted", self.interrupted_tasks));
        }
        if self.not_started > 0 {
            parts.push(format!("{} not started", self.not_started));
        }
        if self.retries > 0 {
            parts.push(plural(self.retries as u64, "retry", "retries"));
        }
        if self.not_aggregated {
            parts.push("final_output.md not aggregated".into());
        }
        if let Some(c) = self.usage.cost_usd.filter(|&c| c > 0.0) {
            parts.push(format!("${c:.4}"));
        }
        let stopped = match &self.stopped_by {
            Some(stop) => format!("{}: ", stop.describe(self.usage.cost_usd.unwrap_or(0.0))),
            None => String::new(),
        };
        format!(
            "{}{stopped}{} in {}",
            if self.interrupted {
                "interrupted: "
            } else {
                ""
            },
            parts.join(", "),
            crate::duration::format_duration(self.duration)
        )
    }
}

/// An event with the wall-clock time it was made, taken once: every reporter that gets it
/// gets that same time.
#[derive(Debug, Clone, Copy)]
pub struct Stamped<'e, 'a> {
    pub at: SystemTime,
    pub event: &'e Event<'a>,
}

impl<'e, 'a> Stamped<'e, 'a> {
    pub fn now(event: &'e Event<'a>) -> Self {
        Stamped {
            at: SystemTime::now(),
            event,
        }
    }

    /// `at` in Unix milliseconds.
    pub fn unix_ms(&self) -> u64 {
        self.at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

pub trait Reporter {
    /// Shows one event. An error means the output is gone (a closed pipe, a full disk): the
    /// build is then cancelled (see [`Emitter`](super::Emitter)).
    fn report(&mut self, event: &Stamped) -> io::Result<()>;

    /// Whether the output is still there, asked about once per scheduling tick: a reader
    /// that went away is noticed between events too, not only at the next write.
    fn check(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends every event to several reporters; the first error, after all have had it.
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn report(&mut self, event: &Stamped) -> io::Result<()> {
        let mut first = Ok(());
        for r in &mut self.0 {
            let r = r.report(event);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn check(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|r| r.check())
    }
}

/// `1 retry`, `2 retries`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
