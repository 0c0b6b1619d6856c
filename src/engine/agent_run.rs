//! One run of a task's agent CLI: its command at the task's permission level (continuing a
//! session when one is handed over), the knobs that leave retrying to orch, its stdout read
//! line by line as it streams (tool calls become activity, the session id is recorded as
//! soon as it shows), and the run judged, with its own usage.

use std::path::Path;

use super::context::BuildContext;
use super::exchange::{TaskMsg, Try};
use crate::agent::reply::Stream;
use crate::agent::{self, Call, Failure, FailureKind, Judged, Usage};
use crate::executor::ProcessOutput;
use crate::plan::{AgentSpec, Permission};
use crate::state::SessionRecord;

/// What one run of the agent gave.
pub(super) struct AgentRun {
    pub(super) judged: Judged,
    /// This run's own usage (a resumed codex thread reports its running total).
    pub(super) usage: Usage,
    /// The session it ran in, resumable until the caller says otherwise.
    pub(super) session: Option<SessionRecord>,
    pub(super) out: ProcessOutput,
    pub(super) level: Permission,
}

/// A session's token counts as kept in its record.
pub(super) fn tokens_of(u: &Usage) -> [u64; 4] {
    [
        u.input_tokens.unwrap_or(0),
        u.cache_read_tokens.unwrap_or(0),
        u.cache_write_tokens.unwrap_or(0),
        u.output_tokens.unwrap_or(0),
    ]
}

fn usage_of(tokens: &[u64; 4]) -> Usage {
    Usage {
        cost_usd: None,
        input_tokens: Some(tokens[0]),
        cache_read_tokens: Some(tokens[1]),
        cache_write_tokens: Some(tokens[2]),
        output_tokens: Some(tokens[3]),
    }
}

impl BuildContext<'_> {
    /// What a resumed session is told: carry on, with where the task is if its history
    /// does not hold it, and what it must leave behind.
    fn continuation_prompt(&self, t: usize, why: &str) -> String {
        let task = self.task(t);
        let task_file = self
            .plan
            .relative(&self.layout.task_file(&self.agent_ids[t]));
        let mut s = format!(
            "The previous attempt at this task stopped before it finished ({why}). Continue \
             the task from where it stopped. It is unchanged; if this conversation does not \
             hold it, read it from {task_file}.\n"
        );
        if !task.outputs.is_empty() {
            s.push_str(&format!(
                "Make sure these files are written: {}.\n",
                task.outputs.join(", ")
            ));
        }
        s.push_str("End with your complete answer to the task.\n");
        s
    }

    /// Runs `agent` for task `t` (attempt `span` of the build's [`Attempts`]): the task file,
    /// or a continuation when the try hands over a session.
    ///
    /// [`Attempts`]: super::writes::Attempts
    pub(super) fn run_agent(
        &self,
        t: usize,
        agent: &AgentSpec,
        span: u64,
        try_: &Try,
        send: &dyn Fn(TaskMsg),
    ) -> Result<AgentRun, Failure> {
        let (task_file, fingerprint, resume) = (try_.task_file, try_.fingerprint, try_.resume);
        let task = self.task(t);
        let level = self.plan.permission(task, agent);
        let env = self.env(t, Some(agent));
        let mut knobs = agent::internal_retry_knobs(agent, &|k| lookup(&env, k));
        knobs.args.extend(agent::budget_args(
            agent,
            super::budget::attempt_cap(task, agent),
        ));
        let call = Call {
            level,
            resume: resume.map(|r| r.record.id.as_str()),
            extra_args: &knobs.args,
        };
        let continuation;
        let prompt = match resume {
            Some(r) => {
                continuation = self.continuation_prompt(t, r.reason);
                continuation.as_str()
            }
            None => task_file,
        };
        let task_path = self.layout.task_file(&self.agent_ids[t]);
        let (argv, stdin) = agent::invocation(agent, &call, prompt, &task_path);
        let mut spec = self.process_spec(t, argv, stdin, Some(agent));
        spec.env.extend(knobs.env);
        let base = resume.map(|r| r.record.tokens).unwrap_or_default();
        let record = |id: &str| SessionRecord {
            agent: agent.name.clone(),
            id: id.to_string(),
            fingerprint: *fingerprint,
            resumable: true,
            tokens: base,
        };
        // A worktree task's paths (tool calls, a `file:` result) are its worktree's.
        let task_root = self.task_root(t);
        let root: &Path = &task_root;
        let mut stream = Stream::new(agent.format, root);
        let mut on_line = |line: &[u8]| {
            let news = stream.line(line);
            if let Some(id) = news.session_id {
                // Kept at once: a build killed from here on can continue this session.
                send(TaskMsg::Session {
                    task: t,
                    session: record(&id),
                });
            }
            if let Some(activity) = news.activity {
                self.attempts.record(span, &activity);
                send(TaskMsg::Activity { task: t, activity });
            }
        };
        let out = self
            .run_process_in_place(t, &spec, send, &mut on_line, try_.place)
            .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
        let judged = agent::judge(agent, level, &out, root);
        let usage = if judged.usage_is_session_total {
            judged.usage.since(&usage_of(&base))
        } else {
            judged.usage.clone()
        };
        let session = judged.session_id.as_deref().map(|id| {
            let mut r = record(id);
            let mut total = usage_of(&base);
            total.add(&usage);
            r.tokens = tokens_of(&total);
            r
        });
        Ok(AgentRun {
            judged,
            usage,
            session,
            out,
            level,
        })
    }

    /// The failure's message quoted from output with secrets masked: the cut is made after
    /// masking, or it could split a secret and show the rest of it.
    pub(super) fn masked_failure(&self, agent: &AgentSpec, run: &AgentRun, f: Failure) -> Failure {
        let masked = agent::judge(agent, run.level, &self.masked(&run.out), &self.plan.root);
        let message = masked
            .result
            .err()
            .map_or_else(|| f.message.clone(), |m| m.message);
        Failure { message, ..f }
    }

    /// `out` with secrets masked, for messages that quote part of it.
    pub(super) fn masked(&self, out: &ProcessOutput) -> ProcessOutput {
        let mask = |b: &[u8]| {
            self.redactor
                .redact(&String::from_utf8_lossy(b))
                .into_bytes()
        };
        ProcessOutput {
            exit: out.exit,
            stdout: mask(&out.stdout),
            stderr: mask(&out.stderr),
            truncated: out.truncated,
            duration: out.duration,
        }
    }

    /// `logs/agent-XX.log`: what the task's failed (or, for a shell task, warning) attempts
    /// printed.
    pub(super) fn log_path(&self, t: usize) -> std::path::PathBuf {
        self.layout
            .logs_dir()
            .join(format!("{}.log", self.agent_ids[t].to_ascii_lowercase()))
    }

    /// Keeps what a failed (or, for a shell task, warning) attempt printed, whole, for a
    /// post-mortem, with secrets masked: the task's first attempt of a build starts the log
    /// afresh, later ones add to it.
    pub(super) fn log_attempt(&self, t: usize, attempt: u32, out: &ProcessOutput, why: &str) {
        use std::io::Write;
        let path = self.log_path(t);
        let text = format!(
            "--- {} attempt {attempt} ({}): {why} ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.task(t).id,
            out.exit,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::create_dir_all(self.layout.logs_dir());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(attempt > 1)
            .truncate(attempt <= 1)
            .open(path);
        if let Ok(mut f) = file {
            let _ = f.write_all(self.redactor.redact(&text).as_bytes());
        }
    }
}

/// The value `key` has in a child's environment: `env` (what orch sets, last wins) over
/// orch's own.
pub(super) fn lookup(env: &[(String, String)], key: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(key).ok())
}
