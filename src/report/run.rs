//! A run record read back: the lines of `runs/<ms>.jsonl` (see `reporter/record.rs`) folded
//! into what the report shows, per task: its attempts (start, end, how each ended, what each
//! cost), its waits, its marks, its final status and usage.
//!
//! The record holds JSON, not Rust events, and is read as JSON: an event of a kind this file
//! does not know (added to the stream after it was written) is never an error. One that
//! names a `task` becomes a mark on that task's lane, or a span when it says how long it
//! lasts (`until_ms`, `wait_ms`, `delay_ms` or `duration_ms`) or when a `<kind>_started` is
//! later closed by a `<kind>_ended`/`_finished`/`_done`; one that names no task goes on the
//! build's own lane and on the lanes of the tasks it lists in `tasks` (a provider's quota
//! wait, `provider_waiting`, holds those), and a `<kind>_resumed` ends `<kind>_...` spans on
//! every lane. A task that ends with a flag saying it was restored (`cached`,
//! `restored`, `from_cache`), or whose event kind says so (`task_restored`,
//! `task_cache_restored`), shows as restored from cache. Lines that are not JSON (a tail torn
//! by a crash) are counted and skipped.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde_json::Value;

/// How a task's build ended, as the report colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Succeeded,
    Restored,
    UpToDate,
    Failed,
    Blocked,
    Interrupted,
    /// Started, never ended in the record (orch was killed).
    Running,
    /// In the plan, not reached by this build.
    NotRun,
}

impl Status {
    /// The CSS class and the word shown.
    pub fn word(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Restored => "restored",
            Status::UpToDate => "up-to-date",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
            Status::Interrupted => "interrupted",
            Status::Running => "unfinished",
            Status::NotRun => "not-run",
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed and was tried again.
    Retried,
    Failed,
    Interrupted,
    Restored,
    /// No end in the record.
    Open,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Restored => "restored",
            Outcome::Open => "unfinished",
        }
    }
}

/// Cost and tokens, each `None` where nothing reported it: the agent's own [`Usage`], read
/// back from an event's JSON.
pub use crate::agent::Usage;

/// The usage an event reports; a field missing or of another type is `None`.
fn usage_of(v: &Value) -> Usage {
    Usage {
        cost_usd: v["cost_usd"].as_f64(),
        input_tokens: v["input_tokens"].as_u64(),
        cache_read_tokens: v["cache_read_tokens"].as_u64(),
        cache_write_tokens: v["cache_write_tokens"].as_u64(),
        output_tokens: v["output_tokens"].as_u64(),
    }
}

/// `total - before`, field by field, never below zero (what the last attempt cost, from the
/// task's total).
fn usage_minus(total: &Usage, before: &Usage) -> Usage {
    fn f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        a.map(|a| (a - b.unwrap_or(0.0)).max(0.0))
    }
    fn n(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        a.map(|a| a.saturating_sub(b.unwrap_or(0)))
    }
    Usage {
        cost_usd: f(total.cost_usd, before.cost_usd),
        input_tokens: n(total.input_tokens, before.input_tokens),
        cache_read_tokens: n(total.cache_read_tokens, before.cache_read_tokens),
        cache_write_tokens: n(total.cache_write_tokens, before.cache_write_tokens),
        output_tokens: n(total.output_tokens, before.output_tokens),
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub number: u64,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub usage: Usage,
}

/// Something that happened at one moment: a tool call, a job state, an event of a kind this
/// renderer does not know.
#[derive(Debug, Clone)]
pub struct Mark {
    pub at_ms: u64,
    /// The event's kind (`task_activity`, `task_job`, ...): its CSS class.
    pub kind: String,
    pub text: String,
}

/// Something that lasted: a retry's backoff, a wait for quota, an unknown event with a length.
#[derive(Debug, Clone)]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct TaskRun {
    pub id: String,
    pub title: String,
    pub agent_id: String,
    pub agent: String,
    pub deps: Vec<String>,
    pub status: Status,
    pub attempts: Vec<Attempt>,
    pub marks: Vec<Mark>,
    pub spans: Vec<Span>,
    /// Every attempt's, from the task's last event.
    pub usage: Usage,
    pub duration_ms: Option<u64>,
    pub retries: u64,
    /// Why it failed, or what it was blocked on.
    pub reason: Option<String>,
}

impl TaskRun {
    fn new(id: &str) -> TaskRun {
        TaskRun {
            id: id.to_string(),
            title: String::new(),
            agent_id: String::new(),
            agent: String::new(),
            deps: Vec::new(),
            status: Status::NotRun,
            attempts: Vec::new(),
            marks: Vec::new(),
            spans: Vec::new(),
            usage: Usage::default(),
            duration_ms: None,
            retries: 0,
            reason: None,
        }
    }

    /// Drawn on the timeline: something happened to it in this build.
    pub fn has_lane(&self) -> bool {
        !self.attempts.is_empty() || !self.marks.is_empty() || !self.spans.is_empty()
    }
}

/// One build, as its record tells it.
#[derive(Debug, Default)]
pub struct Run {
    /// The record's first line (options, settings, orch version).
    pub header: Value,
    /// Tasks in plan order, then any only events named.
    pub tasks: IndexMap<String, TaskRun>,
    /// Whether the record holds the plan's tasks (a record cut short, or written by hand,
    /// may not).
    pub has_plan: bool,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// `build_started`.
    pub build_started: Option<Value>,
    /// `build_finished`: the totals.
    pub finished: Option<Value>,
    /// The build's own lane: interruptions, events that name no task.
    pub marks: Vec<Mark>,
    pub spans: Vec<Span>,
    pub notices: Vec<String>,
    /// `aggregated` or `aggregate_failed`.
    pub aggregate: Option<Value>,
    /// Events of kinds this renderer does not know, by kind.
    pub unknown: BTreeMap<String, usize>,
    /// Lines that were not JSON objects.
    pub bad_lines: usize,
    /// The latest time in the record.
    pub last_ms: u64,
}

const KNOWN: &[&str] = &[
    "build_started",
    "task_started",
    "task_retried",
    "task_activity",
    "task_skipped",
    "task_finished",
    "task_failed",
    "task_interrupted",
    "task_job",
    "task_blocked",
    "aggregated",
    "aggregate_failed",
    "build_interrupted",
    "notice",
    "build_finished",
];

/// The fields of an unknown event worth a tooltip: all but the ones every event has.
fn describe(v: &Value) -> String {
    let mut parts = vec![v["event"].as_str().unwrap_or("?").replace('_', " ")];
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            if matches!(
                k.as_str(),
                "event" | "ts_ms" | "task" | "agent_id" | "agent"
            ) {
                continue;
            }
            match x {
                Value::Null => {}
                Value::String(s) => parts.push(format!("{k}: {s}")),
                x => parts.push(format!("{k}: {x}")),
            }
        }
    }
    parts.join(" · ")
}

fn is_restore(v: &Value) -> bool {
    ["cached", "restored", "from_cache"]
        .iter()
        .any(|k| v[k].as_bool() == Some(true))
}

impl Run {
    pub fn parse(text: &str) -> Run {
        let mut run = Run::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v.is_object() => run.line(v),
                _ => run.bad_lines += 1,
            }
        }
        run
    }

    fn plan(&mut self, tasks: &Value) {
        let Some(list) = tasks.as_array() else {
            return;
        };
        self.has_plan = true;
        for t in list {
            let Some(id) = t["id"].as_str() else { continue };
            let task = self
                .tasks
                .entry(id.to_string())
                .or_insert_with(|| TaskRun::new(id));
            task.title = t["title"].as_str().unwrap_or("").to_string();
            task.agent = t["agent"].as_str().unwrap_or("").to_string();
            task.deps = t["deps"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
        }
    }

    fn task(&mut self, v: &Value) -> Option<&mut TaskRun> {
        let id = v["task"].as_str()?;
        let t = self
            .tasks
            .entry(id.to_string())
            .or_insert_with(|| TaskRun::new(id));
        if let Some(a) = v["agent_id"].as_str() {
            t.agent_id = a.to_string();
        }
        if let Some(a) = v["agent"].as_str() {
            t.agent = a.to_string();
        }
        Some(t)
    }

    fn line(&mut self, v: Value) {
        if v["record"] == "run" {
            self.started_ms = v["started_ms"].as_u64();
            self.plan(&v["tasks"]);
            self.header = v;
            return;
        }
        if v["record"] == "plan" {
            self.plan(&v["tasks"]);
            return;
        }
        let Some(kind) = v["event"].as_str().map(String::from) else {
            self.bad_lines += 1;
            return;
        };
        let at = v["ts_ms"].as_u64().unwrap_or(self.last_ms);
        self.last_ms = self.last_ms.max(at);
        match kind.as_str() {
            "build_started" => {
                self.started_ms = Some(at);
                self.build_started = Some(v);
            }
            "build_finished" => {
                self.finished_ms = Some(at);
                self.finished = Some(v);
            }
            "notice" => self
                .notices
                .push(v["message"].as_str().unwrap_or("").to_string()),
            "aggregated" | "aggregate_failed" => self.aggregate = Some(v),
            "build_interrupted" => self.marks.push(Mark {
                at_ms: at,
                kind,
                text: describe(&v),
            }),
            _ => self.task_event(&kind, at, &v),
        }
    }

    fn task_event(&mut self, kind: &str, at: u64, v: &Value) {
        let known = KNOWN.contains(&kind);
        if !known {
            *self.unknown.entry(kind.to_string()).or_default() += 1;
        }
        let restored_kind = kind.contains("restored") || kind.contains("cache_hit");
        let Some(t) = self.task(v) else {
            if !known {
                self.build_wide(kind, at, v);
            }
            return;
        };
        match kind {
            "task_started" => t.attempts.push(Attempt {
                number: v["attempt"].as_u64().unwrap_or(t.attempts.len() as u64 + 1),
                start_ms: at,
                end_ms: None,
                outcome: Outcome::Open,
                reason: None,
                usage: Usage::default(),
            }),
            "task_retried" => {
                let usage = usage_of(v);
                let reason = v["reason"].as_str().map(String::from);
                if let Some(a) = open_attempt(t) {
                    a.end_ms = Some(at);
                    a.outcome = Outcome::Retried;
                    a.reason = reason.clone();
                    a.usage = usage;
                }
                t.retries += 1;
                if let Some(d) = v["delay_ms"].as_u64().filter(|&d| d > 0) {
                    t.spans.push(Span {
                        start_ms: at,
                        end_ms: Some(at + d),
                        kind: "backoff".into(),
                        text: format!(
                            "backoff {} before the next attempt",
                            crate::duration::format_duration(std::time::Duration::from_millis(d))
                        ),
                    });
                }
            }
            "task_finished" | "task_failed" | "task_interrupted" => {
                let restored = is_restore(v) || restored_kind;
                let (status, outcome) = match kind {
                    "task_finished" if restored => (Status::Restored, Outcome::Restored),
                    "task_finished" => (Status::Succeeded, Outcome::Succeeded),
                    "task_failed" => (Status::Failed, Outcome::Failed),
                    _ => (Status::Interrupted, Outcome::Interrupted),
                };
                t.status = status;
                t.usage = usage_of(v);
                t.duration_ms = v["duration_ms"].as_u64();
                t.retries = v["retries"].as_u64().unwrap_or(t.retries);
                t.reason = v["reason"].as_str().map(String::from);
                let mut before = Usage::default();
                for a in t.attempts.iter().filter(|a| a.outcome != Outcome::Open) {
                    before.add(&a.usage);
                }
                let last = usage_minus(&t.usage, &before);
                let reason = t.reason.clone();
                match open_attempt(t) {
                    Some(a) => {
                        a.end_ms = Some(at);
                        a.outcome = outcome;
                        a.reason = reason;
                        a.usage = last;
                    }
                    // Restored without a start: one bar for the restore itself.
                    None if restored => t.attempts.push(Attempt {
                        number: 1,
                        start_ms: at.saturating_sub(t.duration_ms.unwrap_or(0)),
                        end_ms: Some(at),
                        outcome: Outcome::Restored,
                        reason: None,
                        usage: last,
                    }),
                    None => {}
                }
            }
            "task_skipped" => t.status = Status::UpToDate,
            "task_blocked" => {
                t.status = Status::Blocked;
                t.reason = v["failed_dep"].as_str().map(|d| format!("dep {d} failed"));
            }
            "task_activity" => t.marks.push(Mark {
                at_ms: at,
                kind: kind.into(),
                text: v["text"].as_str().unwrap_or("").to_string(),
            }),
            "task_job" => t.marks.push(Mark {
                at_ms: at,
                kind: kind.into(),
                text: describe(v),
            }),
            _ if restored_kind => {
                t.status = Status::Restored;
                t.usage = usage_of(v);
                // A moment: its `duration_ms` is the restored run's, not this build's.
                t.attempts.push(Attempt {
                    number: t.attempts.len() as u64 + 1,
                    start_ms: at,
                    end_ms: Some(at),
                    outcome: Outcome::Restored,
                    reason: Some(describe(v)),
                    usage: Usage::default(),
                });
            }
            _ => unknown_event(&mut t.marks, &mut t.spans, kind, at, v),
        }
    }

    /// An unknown event that names no task: on the build's lane, and on the lane of each
    /// task it lists in `tasks` (a provider's wait holds those). One that ends something
    /// (`provider_resumed`) ends it on every lane.
    fn build_wide(&mut self, kind: &str, at: u64, v: &Value) {
        if let Some(base) = closed_by(kind) {
            let lanes = std::iter::once(&mut self.spans)
                .chain(self.tasks.values_mut().map(|t| &mut t.spans));
            let mut closed = false;
            for spans in lanes {
                closed |= close(spans, base, at);
            }
            if closed {
                return;
            }
        }
        let named: Vec<String> = v["tasks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for id in named {
            if let Some(t) = self.tasks.get_mut(&id) {
                unknown_event(&mut t.marks, &mut t.spans, kind, at, v);
            }
        }
        unknown_event(&mut self.marks, &mut self.spans, kind, at, v);
    }

    /// Where the timeline ends: the build's end, else the last event.
    pub fn end_ms(&self) -> u64 {
        self.finished_ms.unwrap_or(self.last_ms)
    }

    /// Where it starts.
    pub fn start_ms(&self) -> u64 {
        self.started_ms
            .into_iter()
            .chain(
                self.tasks
                    .values()
                    .flat_map(|t| t.attempts.first().map(|a| a.start_ms)),
            )
            .min()
            .unwrap_or(self.last_ms)
    }

    /// What the tasks' own events add up to (the build's total also has the merge agent).
    pub fn tasks_usage(&self) -> Usage {
        let mut u = Usage::default();
        for t in self.tasks.values() {
            u.add(&t.usage);
        }
        u
    }

    /// The build's totals, from `build_finished`.
    pub fn total_usage(&self) -> Option<Usage> {
        self.finished.as_ref().map(usage_of)
    }
}

fn open_attempt(t: &mut TaskRun) -> Option<&mut Attempt> {
    t.attempts.last_mut().filter(|a| a.outcome == Outcome::Open)
}

/// An event this renderer does not know, on a lane's marks or spans.
fn unknown_event(marks: &mut Vec<Mark>, spans: &mut Vec<Span>, kind: &str, at: u64, v: &Value) {
    let text = describe(v);
    let length = ["wait_ms", "delay_ms", "duration_ms"]
        .iter()
        .find_map(|k| v[k].as_u64());
    let end = v["until_ms"].as_u64().or(length.map(|d| at + d));
    if let Some(end) = end.filter(|&e| e > at) {
        spans.push(Span {
            start_ms: at,
            end_ms: Some(end),
            kind: kind.into(),
            text,
        });
        return;
    }
    if let Some(base) = kind.strip_suffix("_started") {
        spans.push(Span {
            start_ms: at,
            end_ms: None,
            kind: base.into(),
            text,
        });
        return;
    }
    if let Some(base) = closed_by(kind) {
        if close(spans, base, at) {
            return;
        }
    }
    marks.push(Mark {
        at_ms: at,
        kind: kind.into(),
        text,
    });
}

/// `quota_wait` for `quota_wait_ended`, `provider` for `provider_resumed`: what an event of
/// this kind ends.
fn closed_by(kind: &str) -> Option<&str> {
    ["_ended", "_finished", "_done", "_resumed", "_stopped"]
        .iter()
        .find_map(|s| kind.strip_suffix(s))
}

/// Ends at `at` the spans of `base` (`quota_wait`, or `provider_waiting` for `provider`)
/// still going then; whether there was one.
fn close(spans: &mut [Span], base: &str, at: u64) -> bool {
    let mut closed = false;
    for s in spans.iter_mut().filter(|s| {
        (s.kind == base
            || s.kind
                .strip_prefix(base)
                .is_some_and(|r| r.starts_with('_')))
            && s.start_ms <= at
            && s.end_ms.is_none_or(|e| e > at)
    }) {
        s.end_ms = Some(at);
        closed = true;
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"record":"run","started_ms":1000,"tasks":[{"id":"a","title":"A","agent":"claude","deps":[]},{"id":"b","title":"B","agent":"shell","deps":["a"]}]}
{"event":"build_started","tasks":2,"jobs":2,"ts_ms":1000}
{"event":"task_started","task":"a","agent_id":"Agent-01","agent":"claude","attempt":1,"ts_ms":1010}
{"event":"task_retried","task":"a","agent_id":"Agent-01","attempt":1,"reason":"529","delay_ms":50,"cost_usd":0.5,"input_tokens":10,"output_tokens":1,"ts_ms":1100}
{"event":"quota_wait_started","provider":"anthropic","until":"15:00","ts_ms":1120}
{"event":"task_started","task":"a","agent_id":"Agent-01","agent":"claude","attempt":2,"ts_ms":1150}
{"event":"quota_wait_ended","provider":"anthropic","ts_ms":1160}
{"event":"task_waiting_for_quota","task":"a","wait_ms":30,"ts_ms":1170}
{"event":"task_finished","task":"a","agent_id":"Agent-01","agent":"claude","duration_ms":290,"retries":1,"cost_usd":0.75,"input_tokens":30,"output_tokens":3,"ts_ms":1300}
{"event":"task_restored","task":"b","agent_id":"Agent-02","cost_saved_usd":0.2,"ts_ms":1310}
{"event":"budget_reached","spent_usd":0.75,"ts_ms":1320}
{"event":"task_started","task":"
{"event":"build_finished","success":true,"cost_usd":0.75,"input_tokens":30,"output_tokens":3,"duration_ms":400,"ts_ms":1400}
"#;

    #[test]
    fn attempts_costs_and_unknown_events_are_folded_per_task() {
        let run = Run::parse(RECORD);
        assert_eq!(run.bad_lines, 1, "the torn line");
        assert!(run.has_plan);
        let a = &run.tasks["a"];
        assert_eq!(a.status, Status::Succeeded);
        assert_eq!(a.attempts.len(), 2);
        assert_eq!(a.attempts[0].outcome, Outcome::Retried);
        assert_eq!(a.attempts[0].usage.cost_usd, Some(0.5));
        assert_eq!(
            a.attempts[1].usage.cost_usd,
            Some(0.25),
            "the total less the first"
        );
        assert_eq!(a.attempts[1].usage.input_tokens, Some(20));
        assert_eq!(a.spans.len(), 2, "the backoff and the quota wait");
        assert_eq!(a.spans[1].end_ms, Some(1200));
        let b = &run.tasks["b"];
        assert_eq!(b.status, Status::Restored);
        assert_eq!(b.attempts.len(), 1);
        assert_eq!(b.deps, ["a"]);
        // The build lane: the quota wait as a span closed by its end, the budget as a mark.
        assert_eq!(run.spans.len(), 1);
        assert_eq!(run.spans[0].kind, "quota_wait");
        assert_eq!(run.spans[0].end_ms, Some(1160));
        assert_eq!(run.marks.len(), 1);
        assert!(
            run.marks[0].text.contains("spent_usd: 0.75"),
            "{:?}",
            run.marks
        );
        assert_eq!(run.unknown.len(), 5);
        assert_eq!(run.total_usage().unwrap().cost_usd, Some(0.75));
        assert_eq!(run.start_ms(), 1000);
        assert_eq!(run.end_ms(), 1400);
    }
}
