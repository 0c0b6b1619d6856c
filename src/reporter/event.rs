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
    TaskFailed {
        task: TaskRef<'a>,
        duration: Duration,
        retries: u32,
        reason: &'a str,
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub ran: usize,
    pub skipped: usize,
    pub failed: usize,
    pub blocked: usize,
    pub not_started: usize,
    /// Stopped while they ran.
    pub interrupted_tasks: usize,
    pub retries: u32,
    /// Every agent attempt's usage (the aggregation's merge too), failed ones included.
    pub usage: Usage,
    pub duration: Duration,
    pub interrupted: bool,
}

impl Summary {
    pub fn success(&self) -> bool {
        self.failed == 0
            && self.blocked == 0
            && self.not_started == 0
            && self.interrupted_tasks == 0
            && !self.interrupted
    }

    pub fn line(&self) -> String {
        let mut parts = vec![
            format!("{} ran", self.ran),
            format!("{} up to date", self.skipped),
        ];
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
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
        if let Some(c) = self.usage.cost_usd.filter(|&c| c > 0.0) {
            parts.push(format!("${c:.4}"));
        }
        format!(
            "{}{} in {}",
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
