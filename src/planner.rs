//! `orch plan`: ask an agent to break a request into atomic tasks, read its reply however it
//! comes (plain JSON, fenced, wrapped in chatter), check the plan against the seed's
//! atomicity checklist, and ask again with the problems listed until it is valid or the
//! attempts run out. A valid plan becomes `master_plan.md` (and, if asked, `Orchfile.toml`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use crate::agent::{self, Failure, FailureKind};
use crate::disk::persist_atomic;
use crate::duration::{format_exact, parse_duration};
use crate::executor::{Backend, Local, ProcessSpec};
use crate::graph::TaskGraph;
use crate::plan::orchfile::{check_inside_root, valid_task_id};
use crate::plan::{Action, AgentKind, AgentSpec, Plan, Priority, Settings, Task};
use crate::redact::Redactor;

/// One task as the planner proposed it, after tolerant reading.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    pub id: String,
    pub title: String,
    pub prompt: Option<String>,
    pub run: Option<String>,
    pub agent: Option<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub deps: Vec<String>,
    pub priority: Priority,
    pub estimate: Option<Duration>,
    pub verify: Option<String>,
}

/// The reply format the planner is asked for.
pub const SCHEMA: &str = r#"{
  "tasks": [
    {
      "id": "T-01",
      "title": "Read code",
      "prompt": "Complete, self-contained instructions for the agent that does this task.",
      "inputs": ["src/**/*.ts"],
      "outputs": ["reports/inventory.md"],
      "deps": [],
      "priority": "P0",
      "estimate": "2m",
      "verify": "test -s reports/inventory.md"
    }
  ]
}"#;

/// The prompt for one planning attempt. `retry` carries the previous reply and its problems.
pub fn build_prompt(request: &str, files: &[String], retry: Option<(&str, &[String])>) -> String {
    let mut s = String::new();
    s.push_str(
        "You are the planner of a build tool that runs AI agents like `make` runs commands. \
         Break the request below into atomic tasks that agents (or shell commands) can run in \
         parallel where their dependencies allow.\n\n",
    );
    let _ = writeln!(s, "## Request\n\n{}\n", request.trim());
    s.push_str(
        "## Rules\n\n\
         - Each task is atomic: it does one thing, runs on its own (its agent sees only its \
         prompt, its input files and the results of its deps), has a verifiable result, and \
         is safe to retry.\n\
         - Every task has `outputs` (files it must write, relative to the project root) or a \
         `verify` shell command that exits 0 when it succeeded, or both.\n\
         - `deps` lists the ids of tasks whose results this task needs. Deps must name tasks \
         of this plan and must not form a cycle. Tasks without a dependency between them run \
         in parallel, so do not chain tasks that are independent.\n\
         - `id`: unique, letters, digits, `-`, `_` or `.` only (T-01, T-02, ...). `title`: a \
         few words. `priority`: P0 (critical path) to P3 (low). `estimate`: like 30s, 2m, 1h.\n\
         - `prompt` is the full instruction for the agent. For a plain shell command use \
         `\"run\": \"command\"` instead of `prompt`.\n\
         - `inputs` are files the task reads (globs allowed); paths stay inside the project.\n\
         - Usually 2 to 12 tasks; end with a task that combines the results if the request \
         asks for one deliverable.\n\n",
    );
    if !files.is_empty() {
        s.push_str("## Files in the project\n\n");
        for f in files {
            let _ = writeln!(s, "- {f}");
        }
        s.push('\n');
    }
    s.push_str(
        "## Reply format\n\nReply with one JSON object and nothing else (no prose, no code \
         fence), of this shape:\n\n",
    );
    s.push_str(SCHEMA);
    s.push('\n');
    if let Some((previous, problems)) = retry {
        s.push_str("\n## Your previous reply\n\n");
        let shown = if previous.len() > 16_000 {
            let mut cut = 16_000;
            while !previous.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}\n[... cut ...]", &previous[..cut])
        } else {
            previous.to_string()
        };
        s.push_str(&shown);
        s.push_str("\n\n## Problems with it\n\n");
        for p in problems {
            let _ = writeln!(s, "- {p}");
        }
        s.push_str("\nReply again with the complete, corrected plan as one JSON object.\n");
    }
    s
}

/// Whether a JSON value looks like a plan: `{"tasks": [...]}` or an array of objects.
fn plan_like(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("tasks").is_some_and(Value::is_array)
                || m.get("plan").is_some_and(|p| p.get("tasks").is_some())
        }
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    }
}

/// Finds the plan's JSON in a reply: the whole reply, a fenced code block, or the first JSON
/// object or array in surrounding text that looks like a plan.
pub fn extract_json(reply: &str) -> Result<Value, String> {
    let text = reply.trim();
    if text.is_empty() {
        return Err("the reply is empty".into());
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if plan_like(&v) {
            return Ok(v);
        }
    }
    // Fenced blocks, found with the markdown parser.
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut in_block = false;
    let mut block = String::new();
    for e in Parser::new(text) {
        match e {
            Event::Start(Tag::CodeBlock(_)) => {
                in_block = true;
                block.clear();
            }
            Event::Text(t) if in_block => block.push_str(&t),
            Event::End(TagEnd::CodeBlock) => {
                in_block = false;
                if let Ok(v) = serde_json::from_str::<Value>(block.trim()) {
                    if plan_like(&v) {
                        return Ok(v);
                    }
                }
            }
            _ => {}
        }
    }
    // The first `{` or `[` from which a whole plan-like JSON value parses.
    for (i, c) in text.char_indices() {
        if c != '{' && c != '[' {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next() {
            if plan_like(&v) {
                return Ok(v);
            }
        }
    }
    Err("no JSON plan found in the reply (expected an object with a \"tasks\" array)".into())
}

fn string_field(o: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn list_field(
    o: &serde_json::Map<String, Value>,
    key: &str,
    who: &str,
    problems: &mut Vec<String>,
) -> Vec<String> {
    match o.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("none"))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => {
                    problems.push(format!("{who}: `{key}` must be a list of strings"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            problems.push(format!("{who}: `{key}` must be a list of strings"));
            Vec::new()
        }
    }
}

/// Reads the tasks out of the plan JSON, tolerating loose types; what cannot be read is a
/// problem.
pub fn read_tasks(v: &Value) -> (Vec<PlannedTask>, Vec<String>) {
    let mut problems = Vec::new();
    let list = match v {
        Value::Array(a) => a.as_slice(),
        Value::Object(m) => match m.get("tasks").or_else(|| v.pointer("/plan/tasks")) {
            Some(Value::Array(a)) => a.as_slice(),
            _ => {
                return (
                    Vec::new(),
                    vec!["the reply has no \"tasks\" array".to_string()],
                )
            }
        },
        _ => {
            return (
                Vec::new(),
                vec!["the reply is not a JSON object".to_string()],
            )
        }
    };
    let mut tasks = Vec::new();
    for (n, item) in list.iter().enumerate() {
        let Value::Object(o) = item else {
            problems.push(format!("task #{} is not a JSON object", n + 1));
            continue;
        };
        let Some(id) = string_field(o, &["id"]).map(|s| s.trim().to_string()) else {
            problems.push(format!("task #{} has no `id`", n + 1));
            continue;
        };
        let who = format!("task `{id}`");
        let prompt = string_field(o, &["prompt", "instructions", "description"]);
        let run = string_field(o, &["run", "command"]);
        let title = string_field(o, &["title", "name"])
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| {
                let from = prompt.as_deref().or(run.as_deref()).unwrap_or(&id);
                let line = from.lines().next().unwrap_or("").trim();
                line.chars().take(60).collect()
            });
        let priority = match o.get("priority") {
            None | Some(Value::Null) => Priority::default(),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p @ 0..=3) => Priority(p as u8),
                _ => {
                    problems.push(format!("{who}: priority must be one of P0, P1, P2, P3"));
                    Priority::default()
                }
            },
            Some(Value::String(s)) => {
                let t = s.trim();
                match t.strip_prefix(['P', 'p']).unwrap_or(t).parse::<u8>() {
                    Ok(p) if p <= 3 => Priority(p),
                    _ => {
                        problems.push(format!(
                            "{who}: priority `{t}` must be one of P0, P1, P2, P3"
                        ));
                        Priority::default()
                    }
                }
            }
            Some(_) => {
                problems.push(format!("{who}: priority must be one of P0, P1, P2, P3"));
                Priority::default()
            }
        };
        let estimate = match o.get("estimate") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n
                .as_f64()
                .and_then(|f| crate::duration::from_seconds(f, &n.to_string()).ok()),
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(format!("{who}: estimate: {e}"));
                    None
                }
            },
            Some(_) => {
                problems.push(format!("{who}: estimate must be like \"2m\""));
                None
            }
        };
        tasks.push(PlannedTask {
            inputs: list_field(o, "inputs", &who, &mut problems),
            outputs: list_field(o, "outputs", &who, &mut problems),
            deps: list_field(o, "deps", &who, &mut problems),
            verify: string_field(o, &["verify"]),
            agent: string_field(o, &["agent"]),
            id,
            title,
            prompt,
            run,
            priority,
            estimate,
        });
    }
    if list.is_empty() {
        problems.push("the plan has no tasks".into());
    }
    (tasks, problems)
}

/// The atomicity checklist and the DAG rules, as problems a person and the agent can act on.
pub fn validate(tasks: &[PlannedTask], agents: &IndexMap<String, AgentSpec>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut index: IndexMap<&str, usize> = IndexMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if !valid_task_id(&t.id) {
            problems.push(format!(
                "task id `{}` may only use letters, digits, `-`, `_` and `.`",
                t.id
            ));
        }
        if index.insert(t.id.as_str(), i).is_some() {
            problems.push(format!(
                "task id `{}` is used twice; ids must be unique",
                t.id
            ));
        }
    }
    let mut writers: IndexMap<&str, &str> = IndexMap::new();
    for t in tasks {
        let who = format!("task `{}`", t.id);
        match (&t.prompt, &t.run) {
            (None, None) => problems.push(format!("{who} has neither a `prompt` nor a `run`")),
            (Some(_), Some(_)) => {
                problems.push(format!("{who} has both a `prompt` and a `run`; give one"))
            }
            _ => {}
        }
        if t.outputs.is_empty() && t.verify.is_none() {
            problems.push(format!(
                "{who} has no `outputs` and no `verify`: an atomic task needs a verifiable \
                 result (a file it writes or a check that it succeeded)"
            ));
        }
        if let Some(a) = &t.agent {
            if t.run.is_some() {
                problems.push(format!(
                    "{who} runs a shell command, so it takes no `agent`"
                ));
            } else if !agents.contains_key(a) {
                problems.push(format!(
                    "{who}: unknown agent `{a}` (known: {})",
                    agents.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for d in &t.deps {
            if d == &t.id {
                problems.push(format!("{who} depends on itself"));
            } else if !index.contains_key(d.as_str()) {
                problems.push(format!("{who} depends on unknown task `{d}`"));
            }
        }
        let mut seen = Vec::new();
        for d in &t.deps {
            if seen.contains(&d) {
                problems.push(format!("{who} lists dep `{d}` twice"));
            }
            seen.push(d);
        }
        for i in &t.inputs {
            if let Err(why) = check_inside_root(i) {
                problems.push(format!("{who}: input `{i}` {why}"));
            } else if let Err(e) = globset::Glob::new(i) {
                problems.push(format!(
                    "{who}: input `{i}` is not a valid glob: {}",
                    e.kind()
                ));
            }
        }
        for o in &t.outputs {
            if let Err(why) = check_inside_root(o) {
                problems.push(format!("{who}: output `{o}` {why}"));
            }
            if o.contains(['*', '?', '[', '{']) {
                problems.push(format!(
                    "{who}: output `{o}` must be a file path, not a glob"
                ));
            }
            if let Some(other) = writers.insert(o.as_str(), t.id.as_str()) {
                if other != t.id {
                    problems.push(format!(
                        "output `{o}` is written by both `{other}` and `{}`; give each file \
                         one writer",
                        t.id
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| t.deps.iter().map(|d| index[d.as_str()]).collect())
            .collect();
        if let Err(cycle) = TaskGraph::new(deps, &[]) {
            let names: Vec<&str> = cycle.iter().map(|&i| tasks[i].id.as_str()).collect();
            problems.push(format!(
                "the deps form a cycle: {} (each task needs the one before it)",
                names.join(" -> ")
            ));
        }
    }
    problems
}

/// Extracts, reads and validates one reply.
pub fn check_reply(
    reply: &str,
    agents: &IndexMap<String, AgentSpec>,
) -> Result<Vec<PlannedTask>, Vec<String>> {
    let v = extract_json(reply).map_err(|e| vec![e])?;
    let (tasks, mut problems) = read_tasks(&v);
    problems.extend(validate(&tasks, agents));
    if problems.is_empty() {
        Ok(tasks)
    } else {
        Err(problems)
    }
}

/// The `sim` planner: a small, deterministic, valid plan from the request's own parts, so
/// `orch plan --agent sim` works offline. Up to three parallel tasks, one per clause of the
/// request, then one that combines them; a request with one clause becomes a chain of
/// analyse, do and review.
pub fn sim_reply(request: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for piece in request.split([';', '\n', '.', ',']) {
        for p in piece.split(" and ").flat_map(|p| p.split(" then ")) {
            let p = p.trim().trim_matches(|c: char| !c.is_alphanumeric());
            if p.split_whitespace().count() >= 2 && !parts.iter().any(|q| q.eq_ignore_ascii_case(p))
            {
                parts.push(p.to_string());
            }
        }
    }
    let title = |s: &str| -> String {
        let mut t: String = s.chars().take(50).collect();
        if let Some(c) = t.get(..1) {
            t = c.to_uppercase() + &t[1..];
        }
        t
    };
    let mut tasks: Vec<Value> = Vec::new();
    let request = request.trim();
    if parts.len() >= 2 {
        parts.truncate(3);
        let mut ids = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let id = format!("T-{:02}", i + 1);
            tasks.push(serde_json::json!({
                "id": id, "title": title(p),
                "prompt": format!("{}.\n\nThis is part of: {request}\nWrite your findings to out/{}.md.", title(p), id.to_lowercase()),
                "outputs": [format!("out/{}.md", id.to_lowercase())],
                "deps": [], "priority": "P1", "estimate": "1m",
            }));
            ids.push(id);
        }
        let id = format!("T-{:02}", ids.len() + 1);
        tasks.push(serde_json::json!({
            "id": id, "title": "Combine the results",
            "prompt": format!("Combine the results of {} into one answer to: {request}", ids.join(", ")),
            "outputs": ["out/summary.md"], "deps": ids, "priority": "P2", "estimate": "1m",
            "verify": "test -s out/summary.md",
        }));
    } else {
        let subject = request.lines().next().unwrap_or("").trim();
        let steps = [
            (
                "T-01",
                "Analyse",
                "Work out what is needed for",
                "out/analysis.md",
            ),
            ("T-02", "Carry out", "Do the work for", "out/result.md"),
            (
                "T-03",
                "Review",
                "Check the result and list any gaps for",
                "out/review.md",
            ),
        ];
        for (i, (id, verb, what, out)) in steps.iter().enumerate() {
            let deps: Vec<&str> = if i == 0 { vec![] } else { vec![steps[i - 1].0] };
            tasks.push(serde_json::json!({
                "id": id, "title": title(&format!("{verb}: {subject}")),
                "prompt": format!("{what}: {request}\nWrite it to {out}."),
                "outputs": [out], "deps": deps, "priority": format!("P{i}"), "estimate": "1m",
            }));
        }
    }
    serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks })).unwrap_or_default()
}

/// Project files to show the planner: up to `limit`, skipping hidden and build directories.
pub fn project_files(root: &Path, limit: usize) -> Vec<String> {
    const SKIP: &[&str] = &[
        "target",
        "node_modules",
        "dist",
        "build",
        "__pycache__",
        "venv",
    ];
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .max_depth(4)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || SKIP.contains(&name.as_ref()))
        });
    for e in walker.flatten() {
        if e.file_type().is_file() {
            if let Ok(rel) = e.path().strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
                if out.len() >= limit {
                    break;
                }
            }
        }
    }
    out
}

/// What the planner tells the person as it goes.
#[derive(Debug)]
pub enum PlanEvent<'a> {
    Asking {
        attempt: u32,
        of: u32,
    },
    AgentFailed {
        attempt: u32,
        message: &'a str,
    },
    Invalid {
        attempt: u32,
        problems: &'a [String],
    },
}

#[derive(Debug)]
pub enum PlanFailure {
    /// The agent could not be run at all (not installed, cancelled).
    Agent(String),
    /// Every attempt gave an invalid plan (or failed); the last problems.
    Invalid {
        attempts: u32,
        problems: Vec<String>,
    },
}

pub struct Planner<'a> {
    pub agent: &'a AgentSpec,
    pub agents: &'a IndexMap<String, AgentSpec>,
    pub root: &'a Path,
    /// Where the planner's prompt file and reply logs go.
    pub state_dir: &'a Path,
    pub attempts: u32,
    pub timeout: Duration,
    pub cancel: &'a AtomicBool,
}

impl Planner<'_> {
    /// Asks for a plan until one is valid. Returns the tasks and how many attempts it took.
    pub fn run(
        &self,
        request: &str,
        on_event: &mut dyn FnMut(PlanEvent),
    ) -> Result<(Vec<PlannedTask>, u32), PlanFailure> {
        let files = if self.agent.kind == AgentKind::Sim {
            Vec::new()
        } else {
            project_files(self.root, 200)
        };
        let redactor = Redactor::from_vars(
            std::env::vars().chain(self.agent.env.iter().map(|(k, v)| (k.clone(), v.clone()))),
        );
        let mut last: Option<(String, Vec<String>)> = None;
        let attempts = self.attempts.max(1);
        for attempt in 1..=attempts {
            on_event(PlanEvent::Asking {
                attempt,
                of: attempts,
            });
            let prompt = build_prompt(
                request,
                &files,
                last.as_ref().map(|(r, p)| (r.as_str(), p.as_slice())),
            );
            let reply = match self.ask(&prompt, request, attempt, &redactor) {
                Ok(r) => r,
                Err(f) if matches!(f.kind, FailureKind::Launch | FailureKind::Cancelled) => {
                    return Err(PlanFailure::Agent(f.message));
                }
                Err(f) => {
                    on_event(PlanEvent::AgentFailed {
                        attempt,
                        message: &f.message,
                    });
                    if attempt == attempts {
                        return Err(PlanFailure::Invalid {
                            attempts,
                            problems: vec![format!("the agent failed: {}", f.message)],
                        });
                    }
                    if f.kind == FailureKind::Transient {
                        std::thread::sleep(Duration::from_secs(2u64 << attempt.min(4)));
                    }
                    continue;
                }
            };
            match check_reply(&reply, self.agents) {
                Ok(tasks) => return Ok((tasks, attempt)),
                Err(problems) => {
                    on_event(PlanEvent::Invalid {
                        attempt,
                        problems: &problems,
                    });
                    if attempt == attempts {
                        return Err(PlanFailure::Invalid { attempts, problems });
                    }
                    last = Some((reply, problems));
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// One agent call; the reply text (the agent's result, read per its `result` spec).
    fn ask(
        &self,
        prompt: &str,
        request: &str,
        attempt: u32,
        redactor: &Redactor,
    ) -> Result<String, Failure> {
        if self.agent.kind == AgentKind::Sim {
            return Ok(sim_reply(request));
        }
        let tasks_dir = self.state_dir.join("agent_tasks");
        let logs = self.state_dir.join("logs");
        let launch = |e: std::io::Error| Failure::new(FailureKind::Launch, e.to_string());
        std::fs::create_dir_all(&tasks_dir).map_err(launch)?;
        std::fs::create_dir_all(&logs).map_err(launch)?;
        let prompt_path = tasks_dir.join("planner.md");
        persist_atomic(&prompt_path, prompt.as_bytes()).map_err(launch)?;
        let (argv, stdin) = agent::invocation(self.agent, prompt, &prompt_path);
        let mut env: Vec<(String, String)> =
            vec![("ORCH_ROOT".into(), self.root.to_string_lossy().into_owned())];
        env.extend(self.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let spec = ProcessSpec {
            argv,
            cwd: self.root.to_path_buf(),
            env,
            stdin,
            timeout: Some(self.agent.timeout.unwrap_or(self.timeout)),
            grace: Duration::from_secs(5),
            max_output: 16 << 20,
        };
        let out = Local::new(None)
            .run(&spec, self.cancel, &mut |_| {})
            .map_err(launch)?;
        let log = format!(
            "--- planner attempt {attempt} ({}) ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            out.exit,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::write(
            logs.join(format!("planner-attempt-{attempt}.log")),
            redactor.redact(&log).as_bytes(),
        );
        agent::judge(self.agent, &out, self.root).map(|r| r.text)
    }
}

/// The plan the tasks describe, rooted at `root` with the given settings and agents.
pub fn to_plan(
    tasks: &[PlannedTask],
    request: &str,
    root: PathBuf,
    source_path: PathBuf,
    settings: Settings,
    agents: IndexMap<String, AgentSpec>,
) -> Plan {
    let tasks: Vec<Task> = tasks
        .iter()
        .map(|t| Task {
            id: t.id.clone(),
            title: t.title.clone(),
            action: match (&t.run, &t.prompt) {
                (Some(r), _) => Action::Shell(r.clone()),
                (None, p) => Action::Prompt(p.clone().unwrap_or_default()),
            },
            agent: t.agent.clone().filter(|_| t.run.is_none()),
            inputs: t.inputs.clone(),
            outputs: t.outputs.clone(),
            deps: t.deps.clone(),
            priority: t.priority,
            retries: None,
            timeout: None,
            locks: Vec::new(),
            verify: t.verify.clone(),
            estimate: t.estimate,
            env: IndexMap::new(),
        })
        .collect();
    let index = Plan::index_of(&tasks);
    Plan {
        root,
        source_path,
        settings,
        agents,
        tasks,
        index,
        aggregate: None,
        request: Some(request.trim().to_string()),
        definitions: Vec::new(),
    }
}

#[derive(serde::Serialize)]
struct TomlTask<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    inputs: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    outputs: &'a [String],
    deps: &'a [String],
    priority: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<&'a str>,
}

/// An `Orchfile.toml` for the planned tasks. `existing` is the text of an Orchfile being
/// replaced: its settings, agents and aggregate tables are kept (its comments are not).
pub fn render_toml(
    tasks: &[PlannedTask],
    request: &str,
    existing: Option<&str>,
) -> Result<String, String> {
    let mut doc = toml::Table::new();
    doc.insert("request".into(), toml::Value::String(request.trim().into()));
    if let Some(text) = existing {
        let old: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for key in ["settings", "agents", "aggregate"] {
            if let Some(v) = old.get(key) {
                doc.insert(key.into(), v.clone());
            }
        }
    }
    let mut table = toml::Table::new();
    for t in tasks {
        let row = TomlTask {
            title: &t.title,
            prompt: if t.run.is_some() {
                None
            } else {
                Some(t.prompt.as_deref().unwrap_or(""))
            },
            run: t.run.as_deref(),
            agent: t.agent.as_deref().filter(|_| t.run.is_none()),
            inputs: &t.inputs,
            outputs: &t.outputs,
            deps: &t.deps,
            priority: t.priority.to_string(),
            estimate: t.estimate.map(format_exact),
            verify: t.verify.as_deref(),
        };
        let v = toml::Value::try_from(&row).map_err(|e| e.to_string())?;
        table.insert(t.id.clone(), v);
    }
    doc.insert("tasks".into(), toml::Value::Table(table));
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by `orch plan`. Edit freely: `orch build` runs what is not up to date.\n\
         # Offline try-out: orch build --agent sim\n\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::presets::builtin_agents;

    const GOOD: &str = r#"{"tasks": [
        {"id": "T-01", "title": "Read", "prompt": "Read it", "outputs": ["a.md"], "priority": "P0", "estimate": "1m"},
        {"id": "T-02", "title": "Write", "prompt": "Write it", "deps": ["T-01"], "verify": "test -s b.md", "priority": 1}
    ]}"#;

    #[test]
    fn finds_json_however_it_comes() {
        assert!(extract_json(GOOD).is_ok());
        let fenced = format!("Sure! Here is the plan:\n\n```json\n{GOOD}\n```\n\nGood luck.");
        assert!(plan_like(&extract_json(&fenced).unwrap()));
        let chatty = format!("Plan [v1] follows {GOOD} -- that's it {{not json}}");
        assert!(plan_like(&extract_json(&chatty).unwrap()));
        let bare = r#"[{"id": "a", "run": "true", "verify": "true"}]"#;
        assert!(extract_json(bare).is_ok());
        assert!(extract_json("no plan here [1, 2]").is_err());
        assert!(extract_json("").is_err());
    }

    #[test]
    fn good_plan_passes() {
        let tasks = check_reply(GOOD, &builtin_agents()).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1].priority, Priority(1));
        assert_eq!(tasks[0].estimate, Some(Duration::from_secs(60)));
    }

    #[test]
    fn problems_are_named() {
        let bad = r#"{"tasks": [
            {"id": "a", "prompt": "x", "outputs": ["o.md"], "deps": ["zz"]},
            {"id": "b", "prompt": "y"},
            {"id": "a", "run": "z", "verify": "true"},
            {"title": "no id"}
        ]}"#;
        let p = check_reply(bad, &builtin_agents()).unwrap_err();
        let all = p.join("\n");
        assert!(all.contains("task #4 has no `id`"), "{all}");
        assert!(all.contains("`a` is used twice"), "{all}");
        assert!(all.contains("unknown task `zz`"), "{all}");
        assert!(
            all.contains("task `b` has no `outputs` and no `verify`"),
            "{all}"
        );
        let cyclic = r#"{"tasks": [
            {"id": "a", "prompt": "x", "verify": "true", "deps": ["b"]},
            {"id": "b", "prompt": "y", "verify": "true", "deps": ["a"]}
        ]}"#;
        let p = check_reply(cyclic, &builtin_agents()).unwrap_err();
        assert!(p[0].contains("cycle"), "{p:?}");
    }

    #[test]
    fn sim_plans_are_valid_and_deterministic() {
        for req in [
            "Review the code for style, check security and measure performance",
            "Write a haiku",
            "",
            "summarise the README; list open TODOs in src",
        ] {
            let reply = sim_reply(req);
            assert_eq!(reply, sim_reply(req));
            let tasks = check_reply(&reply, &builtin_agents()).unwrap();
            assert!((2..=4).contains(&tasks.len()), "{req}: {}", tasks.len());
        }
    }

    #[test]
    fn toml_reads_back_as_the_same_plan() {
        let tasks = check_reply(GOOD, &builtin_agents()).unwrap();
        let text = render_toml(&tasks, "Do \"it\"\nwell", None).unwrap();
        let plan = crate::plan::orchfile::parse(Path::new("/p/Orchfile.toml"), &text).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[1].deps, vec!["T-01"]);
        assert_eq!(plan.tasks[1].verify.as_deref(), Some("test -s b.md"));
        assert_eq!(plan.request.as_deref(), Some("Do \"it\"\nwell"));
        let again = render_toml(
            &tasks,
            "x",
            Some("[settings]\njobs = 2\n[tasks.old]\nrun = \"x\"\n"),
        )
        .unwrap();
        assert!(again.contains("jobs = 2"));
        assert!(!again.contains("old"));
    }
}
