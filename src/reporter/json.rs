//! One JSON object per line on stdout, for CI and other tools (`orch build --json`): a stable
//! interface, documented in the README ("the event stream") with every event and field.
//!
//! [`FORMAT_VERSION`] is in every `build_started`. Additive changes keep it: a new event, a
//! new field, a new value of a field that names a reason. Anything a reader relying on the
//! documented stream could trip over bumps it: an event or field removed or renamed, a
//! field's type or meaning changed.

use std::io::{self, Write};

use serde_json::json;

use super::emit::reader_gone;
use super::event::{Event, JobState, Reporter, Stamped, Stop};

/// The version of the event stream, in `build_started`; see the module doc for the rule.
pub const FORMAT_VERSION: u32 = 1;

pub struct JsonReporter<W: Write> {
    out: W,
    /// The descriptor behind `out`, to notice a reader that went away between events.
    fd: Option<i32>,
}

impl<W: Write> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        JsonReporter { out, fd: None }
    }
}

impl JsonReporter<io::Stdout> {
    pub fn stdout() -> Self {
        JsonReporter {
            out: io::stdout(),
            fd: Some(libc::STDOUT_FILENO),
        }
    }
}

/// Adds a usage's fields to an event: `cost_usd` and the tokens (null where unknown).
fn with_usage(mut v: serde_json::Value, u: &crate::agent::Usage) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("cost_usd".into(), json!(u.cost_usd));
        o.insert("input_tokens".into(), json!(u.input_tokens));
        o.insert("cache_read_tokens".into(), json!(u.cache_read_tokens));
        o.insert("cache_write_tokens".into(), json!(u.cache_write_tokens));
        o.insert("output_tokens".into(), json!(u.output_tokens));
    }
    v
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn to_json(event: &Event) -> serde_json::Value {
    let ms = |d: &std::time::Duration| d.as_millis() as u64;
    match event {
        Event::BuildStarted { tasks, jobs } => json!({
            "event": "build_started", "format_version": FORMAT_VERSION, "tasks": tasks,
            "jobs": jobs,
        }),
        Event::TaskStarted { task, attempt } => json!({
            "event": "task_started", "task": task.id, "agent_id": task.agent_id,
            "agent": task.runner, "attempt": attempt,
        }),
        Event::TaskRetrying {
            task,
            attempt,
            reason,
            delay,
            usage,
        } => with_usage(
            json!({
                "event": "task_retried", "task": task.id, "agent_id": task.agent_id,
                "attempt": attempt, "reason": reason, "delay_ms": ms(delay),
            }),
            usage,
        ),
        Event::TaskActivity { task, activity } => json!({
            "event": "task_activity", "task": task.id, "agent_id": task.agent_id,
            "agent": task.runner, "tool": activity.tool, "detail": activity.detail,
            "text": activity.to_string(),
        }),
        Event::TaskSkipped {
            task,
            deps_reran,
            deps_restored,
        } => json!({
            "event": "task_skipped", "task": task.id, "agent_id": task.agent_id,
            "reason": "up to date", "deps_reran": deps_reran, "deps_restored": deps_restored,
        }),
        Event::TaskSucceeded {
            task,
            duration,
            retries,
            usage,
            why,
            warnings,
            session,
        } => with_usage(
            json!({
                "event": "task_finished", "task": task.id, "agent_id": task.agent_id,
                "agent": task.runner, "duration_ms": ms(duration), "retries": retries,
                "why": why, "session_id": session, "warnings": warnings,
            }),
            usage,
        ),
        Event::TaskRestored {
            task,
            duration,
            saved,
            source,
            why,
            session,
        } => {
            // What the restored run had cost, under the same names as a run's usage, with
            // `saved_` in front: none of it was spent in this build.
            let mut v = json!({
                "event": "task_restored", "task": task.id, "agent_id": task.agent_id,
                "agent": task.runner, "duration_ms": ms(duration), "source": source,
                "why": why, "session_id": session,
            });
            if let Some(o) = v.as_object_mut() {
                o.insert("saved_cost_usd".into(), json!(saved.cost_usd));
                o.insert("saved_input_tokens".into(), json!(saved.input_tokens));
                o.insert("saved_output_tokens".into(), json!(saved.output_tokens));
            }
            v
        }
        Event::TaskFailed {
            task,
            duration,
            retries,
            reason,
            conflict,
            not_started,
            usage,
            session,
        } => with_usage(
            json!({
                "event": "task_failed", "task": task.id, "agent_id": task.agent_id,
                "agent": task.runner, "duration_ms": ms(duration), "retries": retries,
                "reason": reason, "session_id": session,
                "status": if *conflict { "conflict" } else { "failed" },
                "not_started": not_started,
            }),
            usage,
        ),
        Event::TaskInterrupted {
            task,
            duration,
            retries,
            usage,
            session,
        } => with_usage(
            json!({
                "event": "task_interrupted", "task": task.id, "agent_id": task.agent_id,
                "agent": task.runner, "duration_ms": ms(duration), "retries": retries,
                "session_id": session,
            }),
            usage,
        ),
        Event::BuildInterrupted {
            reason,
            signal,
            stopping,
            grace,
        } => json!({
            "event": "build_interrupted", "reason": reason, "signal": signal,
            "stopping": stopping.iter().map(|t| t.id).collect::<Vec<_>>(),
            "grace_ms": ms(grace),
        }),
        Event::TaskJob { task, job, state } => {
            let mut v = json!({
                "event": "task_job", "task": task.id, "agent_id": task.agent_id,
                "job": job, "state": state.word(),
            });
            match state {
                JobState::Queued { reason } => v["reason"] = json!(reason),
                JobState::Running { node } => v["node"] = json!(node),
            }
            v
        }
        Event::TaskBlocked { task, failed_dep } => json!({
            "event": "task_blocked", "task": task.id, "agent_id": task.agent_id,
            "failed_dep": failed_dep,
        }),
        Event::Aggregated {
            path,
            strategy,
            up_to_date,
        } => json!({
            "event": "aggregated", "path": path, "strategy": strategy, "up_to_date": up_to_date,
        }),
        Event::AggregateFailed { reason } => {
            json!({"event": "aggregate_failed", "reason": reason})
        }
        Event::BudgetReached {
            task,
            projected,
            spent,
            running,
            limit,
        } => json!({
            "event": "budget_reached", "task": task.id, "agent_id": task.agent_id,
            "projected_usd": projected, "spent_usd": spent, "running_usd": running,
            "max_cost_usd": limit,
        }),
        Event::ProviderLimit {
            provider,
            limit,
            max,
            reason,
        } => json!({
            "event": "provider_limit", "provider": provider, "limit": limit, "max": max,
            "reason": reason,
        }),
        Event::ProviderWaiting {
            provider,
            until,
            quota,
            reason,
            tasks,
        } => json!({
            "event": "provider_waiting", "provider": provider,
            "until_ms": unix_ms(*until), "until": crate::clock::local_hh_mm(*until),
            "quota": quota, "reason": reason, "tasks": tasks,
        }),
        Event::ProviderResumed { provider, quota } => json!({
            "event": "provider_resumed", "provider": provider, "quota": quota,
        }),
        Event::Notice { message } => json!({"event": "notice", "message": message}),
        Event::BuildFinished { summary } => {
            let u = &summary.usage;
            json!({
                "event": "build_finished", "success": summary.success(), "ran": summary.ran,
                "restored": summary.restored,
                "saved_cost_usd": summary.saved.cost_usd.unwrap_or(0.0),
                "skipped": summary.skipped, "failed": summary.failed,
                "conflicts": summary.conflicts,
                "blocked": summary.blocked, "not_started": summary.not_started,
                "interrupted_tasks": summary.interrupted_tasks,
                "retries": summary.retries, "cost_usd": u.cost_usd.unwrap_or(0.0),
                "input_tokens": u.input_tokens.unwrap_or(0),
                "cache_read_tokens": u.cache_read_tokens.unwrap_or(0),
                "cache_write_tokens": u.cache_write_tokens.unwrap_or(0),
                "output_tokens": u.output_tokens.unwrap_or(0),
                "duration_ms": ms(&summary.duration), "interrupted": summary.interrupted,
                "not_aggregated": summary.not_aggregated,
                "stopped_by": summary.stopped_by.as_ref().map(|s| s.word()),
                "max_cost_usd": match &summary.stopped_by {
                    Some(Stop::Budget { limit_usd }) => json!(limit_usd),
                    _ => json!(null),
                },
                "budget_remaining_usd": match &summary.stopped_by {
                    Some(Stop::Budget { limit_usd }) => {
                        json!((limit_usd - u.cost_usd.unwrap_or(0.0)).max(0.0))
                    }
                    _ => json!(null),
                },
                "quota_until_ms": match &summary.stopped_by {
                    Some(Stop::Quota { until, .. }) => json!(unix_ms(*until)),
                    _ => json!(null),
                },
            })
        }
    }
}

/// An event as a line of the stream: [`to_json`] with `ts_ms`, when it was made (Unix
/// milliseconds), for timelines in CI tools and the run records of `orch report`.
pub fn stamped_json(stamped: &Stamped) -> serde_json::Value {
    let mut v = to_json(stamped.event);
    if let Some(o) = v.as_object_mut() {
        o.insert("ts_ms".into(), stamped.unix_ms().into());
    }
    v
}

impl<W: Write> Reporter for JsonReporter<W> {
    fn report(&mut self, stamped: &Stamped) -> io::Result<()> {
        let v = stamped_json(stamped);
        writeln!(self.out, "{v}")?;
        self.out.flush()
    }

    fn check(&mut self) -> io::Result<()> {
        match self.fd {
            Some(fd) if reader_gone(fd) => Err(io::ErrorKind::BrokenPipe.into()),
            _ => Ok(()),
        }
    }
}
