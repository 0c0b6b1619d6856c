//! The worker side of a build: decide whether a task is up to date, and if not run it (one
//! [`attempt`](super::attempt) after another while retries last, an agent's session
//! continued after a transient failure or an interrupted build), and record hashes.

use std::io;
use std::time::Duration;

use super::context::{BuildContext, DoneInfo};
use super::exchange::{Resume, TaskDone, TaskMsg, Try};
use super::place::{Place, TakePlace};
use super::prompt::{render_task_file, DepResult};
use crate::agent::{Failure, FailureKind, Pushback, Usage};
use crate::clock::Active;
use crate::disk::{persist_atomic, replace_unsynced, IoResultExt, PathError};
use crate::fingerprint;
use crate::plan::{Action, AgentSpec, ResultSpec, Task};
use crate::scheduler::{CallEnd, Next, NoPermit, Runner};
use crate::state::SessionRecord;

impl BuildContext<'_> {
    pub(super) fn env(&self, t: usize, agent: Option<&AgentSpec>) -> Vec<(String, String)> {
        let task = self.task(t);
        let mut env = vec![
            ("ORCH_TASK_ID".to_string(), task.id.clone()),
            ("ORCH_AGENT_ID".to_string(), self.agent_ids[t].clone()),
            (
                "ORCH_ROOT".to_string(),
                self.task_root(t).to_string_lossy().into_owned(),
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

    pub(super) fn timeout(&self, t: usize) -> Option<Duration> {
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

    /// Runs task `t`; a worktree task's worktree is kept or removed after a run that did
    /// not land (see [`BuildContext::leave_worktree`]).
    fn run_task(&self, t: usize, send: &dyn Fn(TaskMsg)) -> TaskDone {
        let done = self.run_task_here(t, send);
        if self.is_isolated(t) {
            match &done {
                TaskDone::Failed { failure, .. } => self.leave_worktree(t, Some(failure)),
                _ => self.leave_worktree(t, None),
            }
        }
        done
    }

    fn run_task_here(&self, t: usize, send: &dyn Fn(TaskMsg)) -> TaskDone {
        let started = Active::now();
        // Every attempt's usage, failed ones too: they were paid for.
        let total = std::cell::RefCell::new(Usage::default());
        let fail = |failure: Failure, retries: u32| TaskDone::Failed {
            failure,
            duration: started.elapsed(),
            retries,
            usage: total.borrow().clone(),
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
        if !self.forced[t] && self.caches(t) {
            if let Some(done) = self.restore(t, &parts, &why, send) {
                return done;
            }
        }
        // Agent tasks get their task file written once; every attempt sends the same text.
        let task_file = match self.write_task_file(t, &parts) {
            Ok(text) => text,
            Err(f) => return fail(f, 0),
        };
        let inputs: Vec<String> = parts.inputs.iter().map(|(p, _)| p.clone()).collect();
        if let Err(f) = self.enter_worktree(t, &inputs) {
            return fail(f, 0);
        }
        let attempts = self.attempts_allowed(t);
        let mut retries = 0;
        // The session the next attempt continues, and why the last one stopped: at first
        // what an interrupted build left, then what each transient failure leaves.
        let mut session = self.session_to_resume(t, &parts.value);
        let mut reason = String::from("the build running it was interrupted");
        let mut fresh_retry_used = false;
        let mut after_quota = false;
        let (reply, warnings, session_id) = loop {
            let attempt = retries + 1;
            let resume = session.as_ref().map(|record| Resume {
                record,
                reason: &reason,
            });
            // An agent call waits for its provider to take one more (see `scheduler::Gate`):
            // the attempt takes the place, its CLI started or not (see `place`).
            let place = self.provider_of[t].map(|p| Place::new(&self.gate, p, self.cancel));
            if let Some(place) = place.as_ref().filter(|_| std::mem::take(&mut after_quota)) {
                // The wait is over when the place comes: the same attempt starts again.
                place.on_taken(Box::new(move || {
                    send(TaskMsg::AttemptStarted {
                        task: t,
                        attempt: retries + 1,
                    })
                }));
            }
            let end = self.attempt(
                t,
                &Try {
                    number: attempt,
                    task_file: &task_file,
                    fingerprint: &parts.value,
                    resume: resume.as_ref(),
                    place: place.as_ref().map(|p| p as &dyn TakePlace),
                },
                send,
            );
            match place.as_ref().and_then(Place::refused) {
                Some(NoPermit::Cancelled) => {
                    return fail(Failure::new(FailureKind::Cancelled, "cancelled"), retries)
                }
                Some(NoPermit::Stopped) => return fail(quota_stopped(), retries),
                None => {}
            }
            let next = place.and_then(|p| p.end(call_end(&end.result)));
            let resumed = resume.is_some();
            total.borrow_mut().add(&end.usage);
            let mut last = end.session;
            let (result, warnings) = (end.result, end.warnings);
            if let Some(r) = &mut last {
                // Continued after a failure that was no one's fault (or a build stopped
                // midway); anything else starts afresh.
                r.resumable = matches!(
                    &result,
                    Err(f) if matches!(f.kind, FailureKind::Transient | FailureKind::Cancelled)
                );
                send(TaskMsg::Session {
                    task: t,
                    session: r.clone(),
                });
            }
            match result {
                Ok(r) => break (r, warnings, last.map(|s| s.id)),
                Err(f) if f.kind == FailureKind::UnknownSession && resumed && !fresh_retry_used => {
                    // The CLI no longer has the session: once, the same attempt afresh.
                    fresh_retry_used = true;
                    session = None;
                    send(TaskMsg::Notice {
                        task: t,
                        message: format!("{}; starting a new session", f.message),
                    });
                }
                Err(_) if next == Some(Next::QuotaStop) => {
                    return fail(quota_stopped(), retries);
                }
                Err(f) if next == Some(Next::QuotaWait) && !self.cancel.is_cancelled() => {
                    // The usage limit resets at a known time: the next permit comes then.
                    // Waiting is not an attempt, so it costs none of the task's retries.
                    session = last.filter(|r| r.resumable);
                    reason = self.redactor.redact(&f.message);
                    after_quota = true;
                }
                Err(f) => {
                    let f = Failure {
                        message: self.redactor.redact(&f.message),
                        ..f
                    };
                    if attempt >= attempts || !f.retryable() || self.cancel.is_cancelled() {
                        return fail(f, retries);
                    }
                    // Load-related failures back off, unless the provider's limiter now
                    // paces the retry (its limit was cut, or it said when to call again);
                    // others are retried at once.
                    let delay = if f.kind == FailureKind::Transient && next != Some(Next::Paced) {
                        self.backoff(attempt, started.elapsed().as_nanos() as u64 ^ t as u64)
                    } else {
                        Duration::ZERO
                    };
                    send(TaskMsg::Retrying {
                        task: t,
                        attempt,
                        reason: f.message.clone(),
                        delay,
                        usage: end.usage,
                    });
                    if !self.sleep_unless_cancelled(delay) {
                        return fail(Failure::new(FailureKind::Cancelled, "cancelled"), retries);
                    }
                    session = last.filter(|r| r.resumable);
                    reason = f.message;
                    retries += 1;
                    // The first attempt was announced when the task was handed out.
                    send(TaskMsg::AttemptStarted {
                        task: t,
                        attempt: retries + 1,
                    });
                }
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        if let Err(f) = self.land(t, &parts, &reply.text, retries, ms) {
            return fail(f, retries);
        }
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
                // An interrupt stops a long hash: the run is not failed, the build stopped.
                Err(_) if self.cancel.is_cancelled() => {
                    return fail(Failure::new(FailureKind::Cancelled, "cancelled"), retries)
                }
                Err(e) => {
                    return fail(
                        Failure::new(FailureKind::Launch, format!("hashing {o}: {e}")),
                        retries,
                    )
                }
            }
        }
        let record = parts.record(
            outputs.clone(),
            started.elapsed().as_millis() as u64,
            retries,
        );
        let usage = total.into_inner();
        if self.caches(t) {
            let facts = super::cached::RunFacts {
                usage: &usage,
                session: session_id,
                duration: started.elapsed(),
            };
            self.keep(t, &parts.value, &outputs, facts, send);
        }
        let _ = self.done[t].set(DoneInfo {
            handoff: self.handoff(t, &parts.value, &outputs),
            ran: true,
            restored: false,
            upstream_ran: true,
        });
        TaskDone::Ran {
            record,
            usage,
            duration: started.elapsed(),
            retries,
            why,
            warnings,
        }
    }
}

impl BuildContext<'_> {
    /// Writes an agent task's task file (`agent_tasks/agent-XX.md`, the exact prompt it is
    /// sent) and returns its text; empty for a shell task.
    pub(super) fn write_task_file(
        &self,
        t: usize,
        parts: &super::explain::FingerprintParts,
    ) -> Result<String, Failure> {
        let Some((path, text)) = self.task_file(t, parts)? else {
            return Ok(String::new());
        };
        self.put_task_file(&path, &text, persist_atomic)?;
        Ok(text)
    }

    /// As [`Self::write_task_file`], unsynced, for a restore (whose files are synced
    /// together later): the file's path, `None` for a shell task.
    pub(super) fn write_task_file_unsynced(
        &self,
        t: usize,
        parts: &super::explain::FingerprintParts,
    ) -> Result<Option<std::path::PathBuf>, Failure> {
        let Some((path, text)) = self.task_file(t, parts)? else {
            return Ok(None);
        };
        self.put_task_file(&path, &text, replace_unsynced)?;
        Ok(Some(path))
    }

    /// An agent task's task file: where it goes and its text; `None` for a shell task.
    fn task_file(
        &self,
        t: usize,
        parts: &super::explain::FingerprintParts,
    ) -> Result<Option<(std::path::PathBuf, String)>, Failure> {
        let task = self.task(t);
        if task.action.is_shell() {
            return Ok(None);
        }
        let prompt = self
            .prompt_text(task)
            .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
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
        Ok(Some((self.layout.task_file(&self.agent_ids[t]), text)))
    }

    fn put_task_file(
        &self,
        path: &std::path::Path,
        text: &str,
        write: fn(&std::path::Path, &[u8]) -> io::Result<()>,
    ) -> Result<(), Failure> {
        write(path, text.as_bytes()).map_err(|e| {
            let e = PathError::wrap("task file", self.plan.relative(path), e);
            Failure::new(FailureKind::Launch, e.to_string())
        })
    }

    /// The session a task's first attempt continues: the one an interrupted build (or a
    /// transient failure in the last build) left, if it is the same agent's, the task has
    /// not changed since, and the agent can resume.
    fn session_to_resume(
        &self,
        t: usize,
        fingerprint: &crate::disk::Digest,
    ) -> Option<SessionRecord> {
        let agent = self.agent(t)?;
        let record = self.sessions[t].as_ref()?;
        (record.resumable
            && agent.can_resume()
            && record.agent == agent.name
            && &record.fingerprint == fingerprint)
            .then(|| record.clone())
    }
}

/// What a call's result says to its provider's limiter.
pub(super) fn call_end<T>(result: &Result<T, Failure>) -> CallEnd<'_> {
    match result {
        Ok(_) => CallEnd::Succeeded,
        Err(f) => match f.pushback {
            Some(Pushback::Refused { retry_after }) => CallEnd::Refused {
                retry_after,
                reason: &f.message,
            },
            Some(Pushback::Quota { until }) => CallEnd::Quota {
                until,
                reason: &f.message,
            },
            None => CallEnd::Other,
        },
    }
}

fn quota_stopped() -> Failure {
    Failure::new(
        FailureKind::QuotaStop,
        "stopped: its provider's usage limit resets past max_quota_wait",
    )
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
            // Interrupted while hashing: the worker says it was cancelled.
            Err(_) if self.cancel.is_cancelled() => None,
            // Its inputs cannot be read: it fails here, never handed out nor announced as
            // started.
            Err(e) => Some(TaskDone::Failed {
                failure: Failure::new(FailureKind::Launch, e.to_string()),
                duration: Duration::ZERO,
                retries: 0,
                usage: Usage::default(),
            }),
        }
    }
}
