//! Asking the agent: one call per attempt, the reply checked, and again with the problems
//! listed until the plan is valid or the attempts run out. The `sim` agent's deterministic
//! plan, for offline use.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::check::check_reply;
use super::prompt::{build_prompt, project_files};
use super::reply::PlannedTask;
use crate::agent::{self, Failure, FailureKind};
use crate::disk::persist_atomic;
use crate::executor::{Backend, Local, ProcessSpec};
use crate::plan::{AgentKind, AgentSpec};
use crate::redact::Redactor;

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
    pub cancel: &'a crate::cancel::Cancel,
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
        let mut env: Vec<(String, String)> =
            vec![("ORCH_ROOT".into(), self.root.to_string_lossy().into_owned())];
        env.extend(self.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        // As for a build's agents: the CLI's own retries are turned down (orch asks again).
        let knobs = agent::internal_retry_knobs(self.agent, &|k| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        });
        let call = agent::Call {
            level: crate::plan::Permission::Read,
            resume: None,
            extra_args: &knobs.args,
        };
        let (argv, stdin) = agent::invocation(self.agent, &call, prompt, &prompt_path);
        env.extend(knobs.env);
        let spec = ProcessSpec {
            argv,
            cwd: self.root.to_path_buf(),
            env,
            unset: Vec::new(),
            stdin,
            timeout: Some(self.agent.timeout.unwrap_or(self.timeout)),
            grace: Duration::from_secs(5),
            max_output: 16 << 20,
            slurm: None,
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
        agent::judge(self.agent, call.level, &out, self.root).result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::presets::builtin_agents;

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
}
