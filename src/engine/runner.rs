//! The worker side of a build: decide whether a task is up to date, and if not run it (shell,
//! sim or agent CLI) with retries, check its outputs and verify command, and record hashes.

use std::io;
use std::time::{Duration, Instant};

use super::context::{BuildContext, DoneInfo};
use super::prompt::{render_task_file, DepResult};
use crate::agent::{self, sim, Failure, FailureKind, Reply, Usage};
use crate::cancel::Cancel;
use crate::clock::{unix_now, Active};
use crate::disk::{persist_atomic, replace_unsynced, IoResultExt, PathError};
use crate::executor::{self, ExecutorKind, Exit, JobEvent, JobRecord, ProcessSpec};
use crate::fingerprint::{self, FieldName};
use crate::plan::fanout;
use crate::plan::{Action, AgentKind, AgentSpec, ResultSpec, Task};
use crate::scheduler::Runner;
use crate::state::TaskRecord;

#[derive(Debug)]
pub enum TaskMsg {
    AttemptStarted {
        task: usize,
        attempt: u32,
    },
    /// A job started (or something held for jobs, a Slurm allocation); the journal keeps
    /// its record until it ends.
    Spawned {
        task: usize,
        job: JobRecord,
    },
    ProcessEnded {
        job: JobRecord,
    },
    /// Where a task's batch job is: queued or running.
    JobState {
        task: usize,
        state: JobEvent,
    },
    Retrying {
        task: usize,
        attempt: u32,
        reason: String,
        delay: Duration,
    },
}

// One per finished task, moved once through a channel: boxing would not pay.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TaskDone {
    UpToDate(DoneInfo),
    Ran {
        record: TaskRecord,
        usage: Usage,
        duration: Duration,
        retries: u32,
        why: String,
        /// What a shell task printed on stderr though it succeeded (compiler warnings),
        /// cut to a few lines for the terminal; the whole of it is in its log.
        warnings: Option<String>,
    },
    Failed {
        failure: Failure,
        duration: Duration,
        retries: u32,
    },
}

impl BuildContext<'_> {
    fn env(&self, t: usize, agent: Option<&AgentSpec>) -> Vec<(String, String)> {
        let task = self.task(t);
        let mut env = vec![
            ("ORCH_TASK_ID".to_string(), task.id.clone()),
            ("ORCH_AGENT_ID".to_string(), self.agent_ids[t].clone()),
            (
                "ORCH_ROOT".to_string(),
                self.plan.root.to_string_lossy().into_owned(),
            ),
            (
                "ORCH_RESULT_FILE".to_string(),
                self.layout
                    .result_file(&self.agent_ids[t])
                    .to_string_lossy()
                    .into_owned(),
            ),
            (
                "ORCH_TASK_FILE".to_string(),
                self.layout
                    .task_file(&self.agent_ids[t])
                    .to_string_lossy()
                    .into_owned(),
            ),
        ];
        if let Some(a) = agent {
            env.extend(a.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    fn dep_results(&self, t: usize) -> Vec<DepResult<'_>> {
        let limit = self.plan.settings.inline_result_limit as u64;
        let sizes: Vec<u64> = self.graph.deps[t]
            .iter()
            .map(|&d| {
                let path = self.layout.result_file(&self.agent_ids[d]);
                std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            })
            .collect();
        // The instances of one template are inlined together or not at all: the limit is
        // on what they add to the prompt.
        let mut per_template: std::collections::HashMap<&str, u64> = Default::default();
        for (k, &d) in self.graph.deps[t].iter().enumerate() {
            if let Some(item) = &self.task(d).item {
                *per_template.entry(item.template.as_str()).or_default() += sizes[k];
            }
        }
        self.graph.deps[t]
            .iter()
            .enumerate()
            .map(|(k, &d)| {
                let path = self.layout.result_file(&self.agent_ids[d]);
                let size = sizes[k];
                let template = self.task(d).item.as_ref().map(|i| i.template.as_str());
                let counted = template.map_or(size, |name| per_template[name]);
                let text = if counted <= limit {
                    // An absent result is a shell task that printed nothing.
                    Some(
                        std::fs::read(&path)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default(),
                    )
                } else {
                    None
                };
                DepResult {
                    id: &self.task(d).id,
                    template,
                    title: &self.task(d).title,
                    agent_id: &self.agent_ids[d],
                    path: self.result_rel(d),
                    text,
                    size,
                }
            })
            .collect()
    }

    fn prompt_text(&self, task: &Task) -> io::Result<String> {
        Ok(match &task.action {
            Action::Prompt(p) => p.clone(),
            Action::PromptFile(f) => {
                let bytes =
                    fingerprint::read_regular(&self.plan.resolve(f)).context("prompt_file", f)?;
                String::from_utf8(bytes)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
                    .context("prompt_file", f)?
            }
            Action::Shell(_) => String::new(),
        })
    }

    /// The agent as this task calls it: `{task_id}` and `{agent_id}` in a `file:` result path
    /// are filled in, so tasks of one agent do not share a result file.
    pub(crate) fn with_result_path(&self, t: usize, a: &AgentSpec) -> AgentSpec {
        let mut a = a.clone();
        if let ResultSpec::File(rel) = &a.result {
            a.result = ResultSpec::File(
                rel.replace("{task_id}", &self.task(t).id)
                    .replace("{agent_id}", &self.agent_ids[t].to_ascii_lowercase()),
            );
        }
        a
    }

    fn attempts_allowed(&self, t: usize) -> u32 {
        let task = self.task(t);
        let retries = task
            .retries
            .or_else(|| self.agent(t).map(|a| a.retries))
            .unwrap_or(0);
        retries + 1
    }

    fn timeout(&self, t: usize) -> Option<Duration> {
        self.task(t)
            .timeout
            .or_else(|| self.agent(t).and_then(|a| a.timeout))
    }

    /// Backoff before retry number `n` (1-based): exponential with equal jitter.
    pub(crate) fn backoff(&self, n: u32, seed: u64) -> Duration {
        let s = &self.plan.settings;
        let exp = s
            .retry_backoff
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(s.retry_backoff_max);
        let half = exp / 2;
        half + half.mul_f64(jitter(seed))
    }

    /// Sleeps `d` of active time (a stop of orch does not count); false if cancelled first.
    pub(crate) fn sleep_unless_cancelled(&self, d: Duration) -> bool {
        let end = Active::now() + d;
        while !end.has_passed() {
            if self.cancel.is_cancelled() {
                return false;
            }
            std::thread::sleep(end.remaining().min(Duration::from_millis(20)));
        }
        !self.cancel.is_cancelled()
    }

    /// The task's command as its executor runs it (a Slurm job for a task placed there).
    fn process_spec(
        &self,
        t: usize,
        argv: Vec<String>,
        stdin: Option<Vec<u8>>,
        agent: Option<&AgentSpec>,
    ) -> ProcessSpec {
        ProcessSpec {
            argv,
            cwd: self.plan.root.clone(),
            env: self.env(t, agent),
            unset: Vec::new(),
            stdin,
            timeout: self.timeout(t),
            grace: self.plan.settings.kill_grace,
            max_output: 64 << 20,
            slurm: self.plan.slurm_job(
                self.task(t),
                self.opts.agent_override.as_deref(),
                self.opts.executor,
            ),
        }
    }

    fn run_process(
        &self,
        t: usize,
        spec: &ProcessSpec,
        send: &dyn Fn(TaskMsg),
    ) -> io::Result<executor::ProcessOutput> {
        let mut started = Vec::new();
        let out = self
            .backend
            .run(spec, self.cancel, &mut |event| match event {
                JobEvent::Started(job) => {
                    started.push(job);
                    send(TaskMsg::Spawned { task: t, job });
                }
                // Ends with the build (or sooner, told by a tick), not with this attempt.
                JobEvent::Holding(job) => send(TaskMsg::Spawned { task: t, job }),
                state => send(TaskMsg::JobState { task: t, state }),
            });
        for job in started {
            send(TaskMsg::ProcessEnded { job });
        }
        out
    }

    /// One attempt: run the action, then check outputs and `verify`. With the reply, what a
    /// shell task printed on stderr, cut for showing (see [`TaskDone::Ran`]).
    fn attempt(
        &self,
        t: usize,
        task_file: &str,
        send: &dyn Fn(TaskMsg),
    ) -> Result<(Reply, Option<String>), Failure> {
        let task = self.task(t);
        // What the declared outputs look like before the run, to tell a file this attempt
        // wrote from one an earlier run left behind.
        let before: Vec<Option<OutputStamp>> =
            task.outputs.iter().map(|o| self.output_stamp(o)).collect();
        wait_until_writes_show(&before, self.cancel);
        let mut warnings = None;
        let reply = match (&task.action, self.agent(t)) {
            (Action::Shell(script), _) => {
                let spec = self.process_spec(
                    t,
                    vec!["sh".into(), "-c".into(), script.clone()],
                    None,
                    None,
                );
                let out = self
                    .run_process(t, &spec, send)
                    .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
                // Both streams of an attempt that failed or warned are kept, as make would
                // have shown them; a quiet success writes no log (thousands of files).
                if out.exit != Exit::Code(0) || !out.stderr.is_empty() {
                    self.log_attempt(t, &out);
                }
                match out.exit {
                    Exit::Code(0) => {
                        if !out.stderr.is_empty() {
                            let err = self.redactor.redact(&String::from_utf8_lossy(&out.stderr));
                            warnings = Some(self.shown_lines(t, &err));
                        }
                        Reply {
                            text: String::from_utf8_lossy(&out.stdout).into_owned(),
                            usage: Usage::default(),
                        }
                    }
                    Exit::TimedOut => {
                        let stopped = if spec.slurm.is_some() {
                            "timed out; Slurm job cancelled"
                        } else {
                            "timed out; process group stopped"
                        };
                        return Err(Failure::new(FailureKind::Timeout, stopped));
                    }
                    Exit::Cancelled => {
                        return Err(Failure::new(FailureKind::Cancelled, "cancelled"))
                    }
                    exit => {
                        // What it said last: on stderr, or on stdout for a script that
                        // reports there.
                        let said = if out.stderr.trim_ascii().is_empty() {
                            &out.stdout
                        } else {
                            &out.stderr
                        };
                        let said = self.redactor.redact(&String::from_utf8_lossy(said));
                        let said = agent::tail(&said, 500);
                        return Err(Failure::new(
                            FailureKind::Exit,
                            if said.is_empty() {
                                format!("{exit}")
                            } else {
                                format!("{exit}: {said}")
                            },
                        ));
                    }
                }
            }
            (_, Some(a)) if a.kind == AgentKind::Sim => {
                if !sim::wait(task.estimate, self.opts.sim_speed, self.cancel) {
                    return Err(Failure::new(FailureKind::Cancelled, "cancelled"));
                }
                let digest = blake3::hash(task_file.as_bytes()).to_hex();
                for o in &task.outputs {
                    let path = self.plan.root.join(o);
                    if let Some(parent) = path.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    persist_atomic(
                        &path,
                        sim::output_content(&task.id, o, &digest[..12]).as_bytes(),
                    )
                    .map_err(|e| Failure::new(FailureKind::Launch, format!("writing {o}: {e}")))?;
                }
                Reply {
                    text: sim::reply(&task.id, &task.title, &self.agent_ids[t], task_file),
                    usage: Usage::default(),
                }
            }
            (_, Some(a)) => {
                let task_path = self.layout.task_file(&self.agent_ids[t]);
                let a = &self.with_result_path(t, a);
                if let ResultSpec::File(rel) = &a.result {
                    // A result file from an earlier call must not pass for this one's.
                    let _ = std::fs::remove_file(self.plan.root.join(rel));
                }
                let (argv, stdin) = agent::invocation(a, task_file, &task_path);
                let spec = self.process_spec(t, argv, stdin, Some(a));
                let out = self
                    .run_process(t, &spec, send)
                    .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
                let judged = agent::judge(a, &out, &self.plan.root);
                if let Err(f) = &judged {
                    self.log_attempt(t, &out);
                    // The message quotes a cut of the output: cut after masking, or the cut
                    // can split a secret and show the rest of it.
                    let masked = agent::judge(a, &self.masked(&out), &self.plan.root);
                    let message = masked
                        .err()
                        .map_or_else(|| f.message.clone(), |m| m.message);
                    return Err(Failure::new(f.kind.clone(), message));
                }
                judged?
            }
            (_, None) => {
                return Err(Failure::new(FailureKind::Launch, "no agent for this task"));
            }
        };
        // A Slurm job wrote its outputs on another machine: the shared filesystem may show
        // them (or their new times) a little later here. Waited for, bounded.
        let on_slurm = !matches!(&self.agent(t), Some(a) if a.kind == AgentKind::Sim)
            && self.plan.executor_of(
                task,
                self.opts.agent_override.as_deref(),
                self.opts.executor,
            ) == ExecutorKind::Slurm;
        let wait = self.plan.settings.slurm.output_wait;
        let deadline = on_slurm.then(|| std::time::Instant::now() + wait);
        let (missing, stale) = loop {
            let after: Vec<Option<OutputStamp>> =
                task.outputs.iter().map(|o| self.output_stamp(o)).collect();
            let missing: Vec<&str> = task
                .outputs
                .iter()
                .zip(&after)
                .filter(|(_, now)| !now.as_ref().is_some_and(|s| s.is_file))
                .map(|(o, _)| o.as_str())
                .collect();
            let stale: Vec<&str> = task
                .outputs
                .iter()
                .zip(before.iter().zip(&after))
                .filter(|(_, (was, now))| was.is_some() && now == was)
                .map(|(o, _)| o.as_str())
                .collect();
            let settled = missing.is_empty() && stale.is_empty();
            if settled
                || deadline.is_none_or(|d| std::time::Instant::now() >= d)
                || self.cancel.is_cancelled()
            {
                break (missing, stale);
            }
            for o in missing.iter().chain(&stale) {
                // Reading a directory makes an NFS client look again, past its caches.
                if let Some(dir) = self.plan.root.join(o).parent() {
                    let _ = std::fs::read_dir(dir).map(|d| d.count());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let waited = if on_slurm {
            format!(
                " (waited {} for the shared filesystem)",
                crate::duration::format_duration(wait)
            )
        } else {
            String::new()
        };
        if !missing.is_empty() {
            return Err(Failure::new(
                FailureKind::MissingOutput,
                format!(
                    "declared output missing after run: {}{waited}",
                    missing.join(", ")
                ),
            ));
        }
        if !stale.is_empty() {
            return Err(Failure::new(
                FailureKind::MissingOutput,
                format!(
                    "declared output not written by this run (left from an earlier one): {}{waited}",
                    stale.join(", ")
                ),
            ));
        }
        if let Some(v) = &task.verify {
            let mut spec =
                self.process_spec(t, vec!["sh".into(), "-c".into(), v.clone()], None, None);
            // orch's own check of what the task left on the shared filesystem: here, not one
            // more job in the queue.
            spec.slurm = None;
            let out = self
                .run_process(t, &spec, send)
                .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
            if out.exit == Exit::Cancelled {
                return Err(Failure::new(FailureKind::Cancelled, "cancelled"));
            }
            if !out.exit.success() {
                let detail = String::from_utf8_lossy(if out.stderr.is_empty() {
                    &out.stdout
                } else {
                    &out.stderr
                })
                .into_owned();
                let detail = self.redactor.redact(&detail);
                let detail = agent::tail(&detail, 300);
                let said = if detail.trim().is_empty() {
                    " and printed nothing".to_string()
                } else {
                    format!(": {detail}")
                };
                return Err(Failure::new(
                    FailureKind::Verify,
                    format!("verify `{v}` failed ({}){said}", out.exit),
                ));
            }
        }
        if fanout::is_source(self.plan, &task.id) {
            self.record_answer(t, &reply)?;
        }
        Ok((reply, warnings))
    }

    /// A `foreach_from` source's answer (its declared `.json` output, else its result) as the
    /// items of the fan-outs naming it, recorded for the next expansion of the plan; an
    /// answer that is not such a list fails the task.
    fn record_answer(&self, t: usize, reply: &Reply) -> Result<(), Failure> {
        let task = self.task(t);
        let json_output = task.outputs.iter().find(|o| o.ends_with(".json"));
        let text = match json_output {
            Some(o) => std::fs::read_to_string(self.plan.resolve(o))
                .map_err(|e| Failure::new(FailureKind::MissingOutput, format!("{o}: {e}")))?,
            None => reply.text.clone(),
        };
        let items = fanout::parse_answer(&text).map_err(|e| {
            Failure::new(
                FailureKind::BadOutput,
                format!("foreach_from: {e} (an answer is a JSON array of strings or of objects with `item`)"),
            )
        })?;
        crate::state::items::write_answered(&self.layout, &task.id, &items)
            .map_err(|e| Failure::new(FailureKind::Launch, format!("recording the items: {e}")))
    }

    /// The first lines of `text` for a terminal: at most [`SHOWN_LINES`] lines of at most
    /// [`SHOWN_LINE_CHARS`] characters, then how much more the task's log holds.
    fn shown_lines(&self, t: usize, text: &str) -> String {
        let lines: Vec<&str> = text.trim_end().lines().collect();
        let mut shown: Vec<String> = lines
            .iter()
            .take(SHOWN_LINES)
            .map(|l| match l.char_indices().nth(SHOWN_LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &l[..cut]),
                None => l.to_string(),
            })
            .collect();
        if lines.len() > SHOWN_LINES {
            shown.push(format!(
                "… {} more line(s) in {}",
                lines.len() - SHOWN_LINES,
                self.plan.relative(&self.log_path(t))
            ));
        }
        shown.join("\n")
    }

    /// `logs/agent-XX.log`: what the task's last failed or warning attempt printed.
    fn log_path(&self, t: usize) -> std::path::PathBuf {
        self.layout
            .logs_dir()
            .join(format!("{}.log", self.agent_ids[t].to_ascii_lowercase()))
    }

    /// `out` with secrets masked, for messages that quote part of it.
    fn masked(&self, out: &executor::ProcessOutput) -> executor::ProcessOutput {
        let mask = |b: &[u8]| {
            self.redactor
                .redact(&String::from_utf8_lossy(b))
                .into_bytes()
        };
        executor::ProcessOutput {
            exit: out.exit,
            stdout: mask(&out.stdout),
            stderr: mask(&out.stderr),
            truncated: out.truncated,
            duration: out.duration,
        }
    }

    /// Keeps what a failed (or, for a shell task, warning) attempt printed, for a
    /// post-mortem, with secrets masked.
    fn log_attempt(&self, t: usize, out: &executor::ProcessOutput) {
        let path = self.log_path(t);
        let text = format!(
            "--- {} ({}) ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.task(t).id,
            out.exit,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::create_dir_all(self.layout.logs_dir());
        let _ = std::fs::write(path, self.redactor.redact(&text).as_bytes());
    }

    /// How the declared output `rel` looks now, if it exists: by the open project root, so
    /// the kernel does not walk the root's own path on every call.
    fn output_stamp(&self, rel: &str) -> Option<OutputStamp> {
        let (stamp, is_file) = match &self.root_dir {
            Some(dir) => dir
                .stat_kind(rel)
                .ok()
                .flatten()
                .map(|(stamp, kind)| (stamp, kind == fingerprint::FileKind::File))?,
            None => {
                let m = std::fs::metadata(self.plan.root.join(rel)).ok()?;
                (crate::disk::FileStamp::of(&m), m.is_file())
            }
        };
        Some(OutputStamp { stamp, is_file })
    }

    fn run_task(&self, t: usize, send: &dyn Fn(TaskMsg)) -> TaskDone {
        let started = Active::now();
        let fail = |failure: Failure, retries: u32| TaskDone::Failed {
            failure,
            duration: started.elapsed(),
            retries,
        };
        if self.cancel.is_cancelled() {
            return fail(Failure::new(FailureKind::Cancelled, "cancelled"), 0);
        }
        let checked = self.checked[t].lock().unwrap().take().map(|b| *b);
        let (parts, why) = match checked {
            Some(verdict) => verdict,
            None => match self.check(t) {
                Ok(Ok(info)) => return TaskDone::UpToDate(info),
                Ok(Err(stale)) => stale,
                // An interrupt stops a long hash: the task did not fail, it did not start.
                Err(_) if self.cancel.is_cancelled() => {
                    return fail(Failure::new(FailureKind::Cancelled, "cancelled"), 0)
                }
                Err(e) => return fail(Failure::new(FailureKind::Launch, e.to_string()), 0),
            },
        };
        let task = self.task(t);
        // Agent tasks get their task file written once; every attempt sends the same text.
        let task_file = if task.action.is_shell() {
            String::new()
        } else {
            let prompt = match self.prompt_text(task) {
                Ok(p) => p,
                Err(e) => return fail(Failure::new(FailureKind::Launch, e.to_string()), 0),
            };
            let deps = self.dep_results(t);
            let text = render_task_file(
                task,
                &self.agent_ids[t],
                &prompt,
                &parts
                    .inputs
                    .iter()
                    .map(|(p, _)| p.clone())
                    .collect::<Vec<_>>(),
                &deps,
            );
            let path = self.layout.task_file(&self.agent_ids[t]);
            if let Err(e) = persist_atomic(&path, text.as_bytes()) {
                let e = PathError::wrap("task file", self.plan.relative(&path), e);
                return fail(Failure::new(FailureKind::Launch, e.to_string()), 0);
            }
            text
        };
        let attempts = self.attempts_allowed(t);
        let mut retries = 0;
        let (reply, warnings) = loop {
            let attempt = retries + 1;
            if attempt > 1 {
                // The first attempt was announced when the task was handed out.
                send(TaskMsg::AttemptStarted { task: t, attempt });
            }
            match self.attempt(t, &task_file, send) {
                Ok(done) => break done,
                Err(f) => {
                    let f = Failure::new(f.kind, self.redactor.redact(&f.message));
                    if attempt >= attempts || !f.retryable() || self.cancel.is_cancelled() {
                        return fail(f, retries);
                    }
                    // Load-related failures back off; others are retried at once.
                    let delay = if f.kind == FailureKind::Transient {
                        self.backoff(attempt, started.elapsed().as_nanos() as u64 ^ t as u64)
                    } else {
                        Duration::ZERO
                    };
                    send(TaskMsg::Retrying {
                        task: t,
                        attempt,
                        reason: f.message.clone(),
                        delay,
                    });
                    if !self.sleep_unless_cancelled(delay) {
                        return fail(Failure::new(FailureKind::Cancelled, "cancelled"), retries);
                    }
                    retries += 1;
                }
            }
        };
        // Shell results are cheap to redo, so they skip the fsync; the output-hash check
        // catches a torn one. Agent results cost money and are synced.
        let result_path = self.layout.result_file(&self.agent_ids[t]);
        // A shell task that printed nothing has no result file: creating thousands of empty
        // files is most of the bookkeeping cost of a large shell build.
        let no_result = task.action.is_shell() && reply.text.is_empty();
        let written = if no_result {
            match std::fs::remove_file(&result_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else if task.action.is_shell() {
            replace_unsynced(&result_path, reply.text.as_bytes())
        } else {
            persist_atomic(&result_path, reply.text.as_bytes())
        };
        if let Err(e) = written.context("result", self.result_rel(t)) {
            return fail(Failure::new(FailureKind::Launch, e.to_string()), retries);
        }
        // The hashes that prove this run's work is still there: declared outputs and result.
        let mut proof = task.outputs.clone();
        if !no_result {
            proof.push(self.result_rel(t));
        }
        let mut outputs = Vec::new();
        for o in proof {
            match self.hash_project_file(&o) {
                Ok(Some(h)) => outputs.push((o, h)),
                Ok(None) => {
                    return fail(
                        Failure::new(FailureKind::MissingOutput, format!("output {o} vanished")),
                        retries,
                    )
                }
                Err(e) => {
                    return fail(
                        Failure::new(FailureKind::Launch, format!("hashing {o}: {e}")),
                        retries,
                    )
                }
            }
        }
        let record = TaskRecord {
            fingerprint: parts.value,
            definition: parts.definition,
            definition_fields: parts
                .definition_fields
                .iter()
                .map(|&(name, d)| (FieldName::Borrowed(name), d))
                .collect(),
            inputs: parts.inputs,
            deps: parts.deps,
            outputs: outputs.clone(),
            finished_at: unix_now(),
            duration_ms: started.elapsed().as_millis() as u64,
            retries,
        };
        let _ = self.done[t].set(DoneInfo {
            handoff: self.handoff(t, &parts.value, &outputs),
            ran: true,
            upstream_ran: true,
        });
        TaskDone::Ran {
            record,
            usage: reply.usage,
            duration: started.elapsed(),
            retries,
            why,
            warnings,
        }
    }
}

/// How much of a successful shell task's stderr a terminal is shown.
const SHOWN_LINES: usize = 20;
const SHOWN_LINE_CHARS: usize = 300;

/// Enough of a file's metadata to see whether anything wrote it.
#[derive(Debug, Clone, PartialEq)]
struct OutputStamp {
    stamp: crate::disk::FileStamp,
    is_file: bool,
}

/// Waits until the file clock has moved past the last change of every existing output, so
/// that a write during the attempt cannot leave a stamp equal to the one taken before it.
///
/// A write sets a file's ctime to the clock's current tick, and the clock ticks coarsely (a
/// few ms; a second on filesystems with whole-second times): an output written just before
/// the attempt and again, by it, in the same tick, with the same size, would look untouched.
/// So the stamps are compared only once that tick is over; whether an output counts as
/// written never depends on how long ago it was written (it used to: rebuilt at once, a
/// file the agent never touched passed; 0.3 s later it failed). ctime, not mtime: only the
/// kernel sets it. The wait is the stat cache's racy window at most, and only for outputs
/// changed that recently; bounded, and cut short by an interrupt.
fn wait_until_writes_show(before: &[Option<OutputStamp>], cancel: &Cancel) {
    let until = before
        .iter()
        .flatten()
        .map(|o| {
            o.stamp
                .ctime_ns
                .saturating_add(fingerprint::racy_window_ns(&o.stamp))
        })
        .max();
    let Some(until) = until else { return };
    // A ctime ahead of the wall clock (the clock was set back) is not waited for past this.
    let deadline = Instant::now() + Duration::from_millis(2500);
    while fingerprint::now_ns() <= until && Instant::now() < deadline {
        if cancel.is_cancelled() {
            return;
        }
        let left = (until - fingerprint::now_ns()).max(1_000_000) as u64;
        std::thread::sleep(Duration::from_nanos(left).min(Duration::from_millis(20)));
    }
}

/// A number in [0, 1) from a seed (splitmix64), for backoff jitter.
fn jitter(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Runner for BuildContext<'_> {
    type Message = TaskMsg;
    type Done = TaskDone;

    fn run(&self, task: usize, send: &dyn Fn(TaskMsg)) -> TaskDone {
        self.run_task(task, send)
    }

    /// Up-to-date checks are a few stats and hashes: cheaper on the scheduling thread than a
    /// hop to a worker and back, which makes no-op builds fast.
    fn try_skip(&self, t: usize) -> Option<TaskDone> {
        if self.cancel.is_cancelled() {
            return None;
        }
        match self.check(t) {
            Ok(Ok(info)) => Some(TaskDone::UpToDate(info)),
            Ok(Err(stale)) => {
                *self.checked[t].lock().unwrap() = Some(Box::new(stale));
                None
            }
            // The worker checks again and reports the error as the task's failure.
            Err(_) => None,
        }
    }
}
