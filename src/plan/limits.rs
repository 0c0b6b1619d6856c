//! The range of every number a plan or the command line sets, in one place: a value means
//! the same and is refused the same way wherever it is written (`-j 0` and `jobs = 0`, an
//! Orchfile and master_plan.md), with a message that says the range.
//!
//! The bounds are where a value stops making sense, not where it becomes unusual: 100
//! retries of a failing task is already a loop, 1,024 tasks at once is past any machine's
//! process table for agent CLIs, and a result inlined into a prompt cannot be larger than the
//! 64 MiB orch captures of a process's output.

use std::time::Duration;

use crate::duration::{format_exact, MAX_DURATION};

/// A whole number with its range.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub name: &'static str,
    pub min: u64,
    pub max: u64,
}

/// Tasks at once: `settings.jobs` and `-j`.
pub const JOBS: Count = Count {
    name: "jobs",
    min: 1,
    max: 1024,
};

/// An agent's `max_parallel`.
pub const MAX_PARALLEL: Count = Count {
    name: "max_parallel",
    min: 1,
    max: 1024,
};

/// `retries` of a task or an agent: more than this is a loop, not a retry.
pub const RETRIES: Count = Count {
    name: "retries",
    min: 0,
    max: 100,
};

/// `settings.inline_result_limit`, in bytes: up to the output capture limit.
pub const INLINE_RESULT_LIMIT: Count = Count {
    name: "inline_result_limit",
    min: 0,
    max: 64 << 20,
};

/// `settings.slurm.max_jobs`: Slurm jobs of one build at once, each waited for by a worker
/// thread of orch's, so not unbounded.
pub const SLURM_MAX_JOBS: Count = Count {
    name: "max_jobs",
    min: 1,
    max: 4096,
};

/// A Slurm job's `cpus` (`--cpus-per-task`).
pub const SLURM_CPUS: Count = Count {
    name: "cpus",
    min: 1,
    max: 65_536,
};

/// `orch plan --attempts`.
pub const PLAN_ATTEMPTS: Count = Count {
    name: "attempts",
    min: 1,
    max: 100,
};

impl Count {
    /// The value if it is in range, else a message naming the field and the range.
    pub fn check(&self, value: i64) -> Result<u64, String> {
        let name = self.name;
        match u64::try_from(value) {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ if value < self.min as i64 => {
                Err(format!("{name} must be at least {}, not {value}", self.min))
            }
            _ => Err(format!("{name} must be at most {}, not {value}", self.max)),
        }
    }

    /// As [`Count::check`], for a command-line value (clap's `value_parser`).
    pub fn parse_arg(&self, text: &str) -> Result<u64, String> {
        let v: i64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number"))?;
        self.check(v)
    }

    /// `min..=max`, for documentation and messages.
    pub fn range(&self) -> String {
        format!("{}..={}", self.min, self.max)
    }
}

/// `-j N`: as `settings.jobs`.
pub fn jobs_arg(text: &str) -> Result<usize, String> {
    JOBS.parse_arg(text).map(|v| v as usize)
}

/// `orch plan --attempts N`.
pub fn attempts_arg(text: &str) -> Result<u32, String> {
    PLAN_ATTEMPTS.parse_arg(text).map(|v| v as u32)
}

/// A duration with its range; `positive` refuses zero.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub name: &'static str,
    pub positive: bool,
    pub max: Duration,
}

/// A task's or agent's `timeout` (and `orch plan --timeout`): zero would fail every attempt
/// at once.
pub const TIMEOUT: Span = Span {
    name: "timeout",
    positive: true,
    max: MAX_DURATION,
};

/// `settings.max_quota_wait`: zero stops at the first usage limit.
pub const MAX_QUOTA_WAIT: Span = Span {
    name: "max_quota_wait",
    positive: false,
    max: Duration::from_secs(7 * 24 * 3600),
};

/// `settings.remote_cache_connect_timeout`: zero would refuse every server.
pub const REMOTE_CACHE_CONNECT_TIMEOUT: Span = Span {
    name: "remote_cache_connect_timeout",
    positive: true,
    max: Duration::from_secs(3600),
};

/// `settings.remote_cache_stall_timeout`: zero would fail every request.
pub const REMOTE_CACHE_STALL_TIMEOUT: Span = Span {
    name: "remote_cache_stall_timeout",
    positive: true,
    max: Duration::from_secs(3600),
};

/// The largest dollar amount a cost field takes: past it a number is a typo.
pub const MAX_COST_USD: f64 = 1e9;

/// A dollar amount (`max_cost_usd`, `cost_estimate`, `--max-cost`) if it is one.
pub fn check_cost(name: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && (0.0..=MAX_COST_USD).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{name} must be a number of US dollars from 0 to {MAX_COST_USD}, not {value}"
        ))
    }
}

/// `--max-cost USD`.
pub fn cost_arg(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of US dollars"))?;
    check_cost("--max-cost", v)
}

/// A task's `estimate`: zero is allowed (it only weighs the critical path).
pub const ESTIMATE: Span = Span {
    name: "estimate",
    positive: false,
    max: MAX_DURATION,
};

/// `settings.kill_grace`: how long a stopped task may take to exit before SIGKILL; an
/// interrupted build waits this long, so an hour is the most that is still an answer.
pub const KILL_GRACE: Span = Span {
    name: "kill_grace",
    positive: false,
    max: Duration::from_secs(3600),
};

/// `settings.retry_backoff`: the first wait before retrying an overloaded agent.
pub const RETRY_BACKOFF: Span = Span {
    name: "retry_backoff",
    positive: false,
    max: Duration::from_secs(3600),
};

/// `settings.retry_backoff_max`: the longest wait between two attempts.
pub const RETRY_BACKOFF_MAX: Span = Span {
    name: "retry_backoff_max",
    positive: false,
    max: Duration::from_secs(86_400),
};

/// A Slurm job's `time` (`--time`, whole minutes): zero would end every job at once.
pub const SLURM_TIME: Span = Span {
    name: "slurm time",
    positive: true,
    max: MAX_DURATION,
};

/// `settings.slurm.poll`: each poll is one query to slurmctld (at least 100 ms, checked apart).
pub const SLURM_POLL: Span = Span {
    name: "poll",
    positive: true,
    max: Duration::from_secs(3600),
};

/// `settings.slurm.output_wait`: how long a job's outputs may take to show.
pub const SLURM_OUTPUT_WAIT: Span = Span {
    name: "output_wait",
    positive: false,
    max: Duration::from_secs(3600),
};

/// `settings.slurm.allocation_idle`: an idle allocation is released after this long.
pub const SLURM_ALLOCATION_IDLE: Span = Span {
    name: "allocation_idle",
    positive: false,
    max: Duration::from_secs(86_400),
};

impl Span {
    /// The duration if it is in range, else a message naming the field and the range.
    pub fn check(&self, d: Duration) -> Result<Duration, String> {
        if self.positive && d.is_zero() {
            return Err(format!("{} must be more than 0s", self.name));
        }
        if d > self.max {
            return Err(format!(
                "{} must be at most {}, not {}",
                self.name,
                format_exact(self.max),
                format_exact(d)
            ));
        }
        Ok(d)
    }

    /// A command-line duration (clap's `value_parser`).
    pub fn parse_arg(&self, text: &str) -> Result<Duration, String> {
        self.check(crate::duration::parse_duration(text)?)
    }
}

/// `orch plan --timeout DURATION`.
pub fn timeout_arg(text: &str) -> Result<Duration, String> {
    TIMEOUT.parse_arg(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_say_their_range() {
        assert_eq!(JOBS.check(0).unwrap_err(), "jobs must be at least 1, not 0");
        assert_eq!(
            JOBS.check(-3).unwrap_err(),
            "jobs must be at least 1, not -3"
        );
        assert_eq!(
            RETRIES.check(1_000_000_000).unwrap_err(),
            "retries must be at most 100, not 1000000000"
        );
        assert_eq!(RETRIES.check(0), Ok(0));
        assert_eq!(jobs_arg("0").unwrap_err(), "jobs must be at least 1, not 0");
        assert_eq!(jobs_arg("4"), Ok(4));
        assert!(jobs_arg("four").is_err());
    }

    #[test]
    fn spans_refuse_zero_where_it_cannot_work() {
        assert_eq!(
            TIMEOUT.check(Duration::ZERO).unwrap_err(),
            "timeout must be more than 0s"
        );
        assert!(ESTIMATE.check(Duration::ZERO).is_ok());
        assert_eq!(
            KILL_GRACE.check(Duration::from_secs(7200)).unwrap_err(),
            "kill_grace must be at most 1h, not 2h"
        );
        assert!(timeout_arg("0s").is_err());
    }
}
