//! What one agent run comes to: its [`Usage`], its [`Reply`] or a classified [`Failure`],
//! and the text helpers that judging and messages share.

use std::time::{Duration, SystemTime};

/// What one call (or several, summed) cost. Tokens are `None` where the agent reports none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cost_usd: Option<f64>,
    /// Every input token: new ones, cache reads and cache writes.
    pub input_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl Usage {
    /// Adds `other` in: a sum is known where either part is.
    pub fn add(&mut self, other: &Usage) {
        fn sum<T: std::ops::Add<Output = T> + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            }
        }
        self.cost_usd = sum(self.cost_usd, other.cost_usd);
        self.input_tokens = sum(self.input_tokens, other.input_tokens);
        self.cache_read_tokens = sum(self.cache_read_tokens, other.cache_read_tokens);
        self.cache_write_tokens = sum(self.cache_write_tokens, other.cache_write_tokens);
        self.output_tokens = sum(self.output_tokens, other.output_tokens);
    }

    /// What `self` (a running total) adds to `before` (an earlier total of the same session).
    pub fn since(&self, before: &Usage) -> Usage {
        fn minus<T: std::ops::Sub<Output = T> + PartialOrd + Copy>(
            a: Option<T>,
            b: Option<T>,
        ) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) if a >= b => Some(a - b),
                (a, _) => a,
            }
        }
        Usage {
            cost_usd: minus(self.cost_usd, before.cost_usd),
            input_tokens: minus(self.input_tokens, before.input_tokens),
            cache_read_tokens: minus(self.cache_read_tokens, before.cache_read_tokens),
            cache_write_tokens: minus(self.cache_write_tokens, before.cache_write_tokens),
            output_tokens: minus(self.output_tokens, before.output_tokens),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// The cost in dollars, 0 where none was reported.
    pub fn cost(&self) -> f64 {
        self.cost_usd.unwrap_or(0.0)
    }

    /// Input and output tokens, counting an unreported count as 0.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.unwrap_or(0) + self.output_tokens.unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// Overload, rate limit, a server error: retried with backoff.
    Transient,
    Timeout,
    /// Non-zero exit or death by signal.
    Exit,
    /// The agent said it failed (`is_error: true`) while exiting 0.
    AgentError,
    /// The agent stopped at its turn limit.
    MaxTurns,
    /// The CLI refused a tool call the permission level does not allow.
    PermissionDenied,
    /// `--resume` named a session the CLI no longer has.
    UnknownSession,
    /// The output could not be read as the configured result.
    BadOutput,
    /// A declared output file is missing after the run.
    MissingOutput,
    /// The agent changed files that are not declared outputs.
    UndeclaredWrite,
    /// The `verify` command failed.
    Verify,
    Cancelled,
    /// A worktree task's change did not merge into the project (`isolation = "worktree"`).
    Conflict,
    /// The provider's usage limit resets later than `max_quota_wait`: stopped, as the
    /// build stops, not failed.
    QuotaStop,
    /// orch could not start or drive the process.
    Launch,
}

/// What a failure says (read by [`super::limits`]) of its provider's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pushback {
    /// Refused for load: the provider wants fewer calls; `retry_after` if it said when.
    Refused { retry_after: Option<Duration> },
    /// The account's usage limit is reached until `until`.
    Quota { until: SystemTime },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// What it says of its provider's limits (see [`super::limits`]).
    pub pushback: Option<Pushback>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            pushback: None,
        }
    }

    /// Whether trying again could help. A refusal, a turn limit or an undeclared write is
    /// what the same call would do again.
    pub fn retryable(&self) -> bool {
        !matches!(
            self.kind,
            FailureKind::Cancelled
                | FailureKind::QuotaStop
                | FailureKind::Launch
                | FailureKind::PermissionDenied
                | FailureKind::MaxTurns
                | FailureKind::UndeclaredWrite
                | FailureKind::Conflict
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The first `retry_on` pattern found in `text` (case-insensitive). A pattern of digits only
/// matches a whole number: `429` is not found in `a4291c` (a session id) or `14290`.
pub fn transient_match<'a>(patterns: &'a [String], text: &str) -> Option<&'a str> {
    let lower = text.to_lowercase();
    patterns
        .iter()
        .find(|p| {
            if p.is_empty() {
                return false;
            }
            let p = p.to_lowercase();
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return lower.contains(&p);
            }
            let bytes = lower.as_bytes();
            lower.match_indices(&p).any(|(i, m)| {
                let before = i.checked_sub(1).map(|j| bytes[j]);
                let after = bytes.get(i + m.len()).copied();
                !before.is_some_and(|b| b.is_ascii_alphanumeric())
                    && !after.is_some_and(|b| b.is_ascii_alphanumeric())
            })
        })
        .map(String::as_str)
}

/// The last `n` bytes of `text`, on a char boundary, for error messages.
pub fn tail(text: &str, n: usize) -> &str {
    let t = text.trim_end();
    if t.len() <= n {
        return t;
    }
    let mut start = t.len() - n;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    &t[start..]
}
