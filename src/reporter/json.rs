//! One JSON object per line on stdout, for CI and other tools (`orch build --json`).

use std::io::Write;

use serde_json::json;

use super::event::{Event, Reporter};

pub struct JsonReporter<W: Write> {
    out: W,
}

impl<W: Write> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        JsonReporter { out }
    }
}

pub fn to_json(event: &Event) -> serde_json::Value {
    let ms = |d: &std::time::Duration| d.as_millis() as u64;
    match event {
        Event::BuildStarted { tasks, jobs } => {
            json!({"event": "build_started", "tasks": tasks, "jobs": jobs})
        }
        Event::TaskStarted { task, attempt } => json!({
            "event": "task_started", "task": task.id, "agent_id": task.agent_id,
            "agent": task.runner, "attempt": attempt,
        }),
        Event::TaskRetrying {
            task,
            attempt,
            reason,
            delay,
        } => json!({
            "event": "task_retried", "task": task.id, "agent_id": task.agent_id,
            "attempt": attempt, "reason": reason, "delay_ms": ms(delay),
        }),
        Event::TaskSkipped { task, deps_reran } => json!({
            "event": "task_skipped", "task": task.id, "agent_id": task.agent_id,
            "reason": "up to date", "deps_reran": deps_reran,
        }),
        Event::TaskSucceeded {
            task,
            duration,
            retries,
            usage,
            why,
        } => json!({
            "event": "task_finished", "task": task.id, "agent_id": task.agent_id,
            "agent": task.runner, "duration_ms": ms(duration), "retries": retries,
            "why": why, "cost_usd": usage.cost_usd, "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        }),
        Event::TaskFailed {
            task,
            duration,
            retries,
            reason,
        } => json!({
            "event": "task_failed", "task": task.id, "agent_id": task.agent_id,
            "agent": task.runner, "duration_ms": ms(duration), "retries": retries,
            "reason": reason,
        }),
        Event::TaskInterrupted {
            task,
            duration,
            retries,
        } => json!({
            "event": "task_interrupted", "task": task.id, "agent_id": task.agent_id,
            "agent": task.runner, "duration_ms": ms(duration), "retries": retries,
        }),
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
        Event::Notice { message } => json!({"event": "notice", "message": message}),
        Event::BuildFinished { summary } => json!({
            "event": "build_finished", "success": summary.success(), "ran": summary.ran,
            "skipped": summary.skipped, "failed": summary.failed, "blocked": summary.blocked,
            "not_started": summary.not_started, "interrupted_tasks": summary.interrupted_tasks,
            "retries": summary.retries,
            "cost_usd": summary.cost_usd, "duration_ms": ms(&summary.duration),
            "interrupted": summary.interrupted,
        }),
    }
}

impl<W: Write> Reporter for JsonReporter<W> {
    fn report(&mut self, event: &Event) {
        let mut v = to_json(event);
        // Wall-clock time of every event (Unix milliseconds), for timelines in CI tools.
        if let Some(o) = v.as_object_mut() {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            o.insert("ts_ms".into(), ms.into());
        }
        let _ = writeln!(self.out, "{v}");
        let _ = self.out.flush();
    }
}
