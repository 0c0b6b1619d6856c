//! One attempt at a task: run its action (a shell command, the sim agent, or an agent CLI),
//! then check what it left: its declared outputs written by this attempt, no undeclared
//! writes (agent tasks), and its `verify` command. An agent's whole output goes to the log
//! on any failure of the attempt.

use std::time::{Duration, Instant};

use super::context::BuildContext;
use super::exchange::{AttemptEnd, TaskMsg, Try};
use super::place::TakePlace;
use crate::agent::{self, sim, Failure, FailureKind, Reply, Usage};
use crate::cancel::Cancel;
use crate::disk::persist_atomic;
use crate::executor::{self, ExecutorKind, Exit, JobEvent, ProcessSpec};
use crate::fingerprint;
use crate::plan::{fanout, Action, AgentKind, AgentSpec, ResultSpec};

impl BuildContext<'_> {
    pub(super) fn process_spec(
        &self,
        t: usize,
        argv: Vec<String>,
        stdin: Option<Vec<u8>>,
        agent: Option<&AgentSpec>,
    ) -> ProcessSpec {
        ProcessSpec {
            argv,
            cwd: self.task_root(t),
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

    /// Runs `spec` for task `t`, its stdout lines to `on_line` as they come; the journal
    /// keeps the job while it runs.
    pub(super) fn run_process(
        &self,
        t: usize,
        spec: &ProcessSpec,
        send: &dyn Fn(TaskMsg),
        on_line: &mut dyn FnMut(&[u8]),
    ) -> std::io::Result<executor::ProcessOutput> {
        self.run_process_in_place(t, spec, send, on_line, None)
    }

    /// As [`BuildContext::run_process`], the call taking `place` first: while the process,
    /// started early, waits at its stdin where the backend can hold it there (the prompt
    /// goes on stdin), else before it starts, and so while the provider is held (a usage
    /// limit may keep it for hours). Without a place, an error.
    pub(super) fn run_process_in_place(
        &self,
        t: usize,
        spec: &ProcessSpec,
        send: &dyn Fn(TaskMsg),
        on_line: &mut dyn FnMut(&[u8]),
        place: Option<&dyn TakePlace>,
    ) -> std::io::Result<executor::ProcessOutput> {
        let held =
            place.filter(|p| spec.stdin.is_some() && self.backend.holds_stdin(spec) && !p.held());
        if let Some(place) = place.filter(|_| held.is_none()) {
            if !place.take() {
                return Err(std::io::Error::other("cancelled before its call"));
            }
        }
        let mut started = Vec::new();
        let mut on_event = |event| match event {
            JobEvent::Started(job) => {
                started.push(job);
                send(TaskMsg::Spawned { task: t, job });
            }
            // Ends with the build (or sooner, told by a tick), not with this attempt.
            JobEvent::Holding(job) => send(TaskMsg::Spawned { task: t, job }),
            state => send(TaskMsg::JobState { task: t, state }),
        };
        let out = match held {
            Some(place) => self.backend.start(spec).and_then(|job| {
                job.wait_lines_admitted(self.cancel, &mut on_event, on_line, &mut || {
                    place.try_take()
                })
            }),
            None => self
                .backend
                .run_lines(spec, self.cancel, &mut on_event, on_line),
        };
        for job in started {
            send(TaskMsg::ProcessEnded { job });
        }
        out
    }

    /// One attempt at task `t`.
    pub(super) fn attempt(&self, t: usize, try_: &Try, send: &dyn Fn(TaskMsg)) -> AttemptEnd {
        let task = self.task(t);
        let (attempt, task_file) = (try_.number, try_.task_file);
        // What the declared outputs look like before the run, to tell a file this attempt
        // wrote from one an earlier run left behind.
        let before: Vec<Option<OutputStamp>> = task
            .outputs
            .iter()
            .map(|o| self.output_stamp(t, o))
            .collect();
        wait_until_writes_show(&before, self.cancel);
        let mut end = AttemptEnd::failed(Failure::new(FailureKind::Launch, "not run"));
        // For an agent: its output (logged if the attempt fails) and the tree's look before.
        let mut agent_out = None;
        let mut tree = None;
        let reply = match (&task.action, self.agent(t)) {
            (Action::Shell(script), _) => {
                let span = self.attempts.begin(t);
                let r = self.run_shell(t, attempt, script, send);
                self.attempts.end(span);
                r.map(|(reply, warnings)| {
                    end.warnings = warnings;
                    reply
                })
            }
            (_, Some(a)) if a.kind == AgentKind::Sim => match try_.place {
                Some(place) if !place.take() => {
                    Err(Failure::new(FailureKind::Cancelled, "cancelled"))
                }
                _ => self.run_sim(t, task_file),
            },
            (_, Some(a)) => {
                let a = self.with_result_path(t, a);
                if let ResultSpec::File(rel) = &a.result {
                    // A result file from an earlier call must not pass for this one's.
                    let _ = std::fs::remove_file(self.task_root(t).join(rel));
                }
                let before_tree = self.tree_before(t, &a);
                let span = self.attempts.begin(t);
                let run = self.run_agent(t, &a, span, try_, send);
                self.attempts.end(span);
                let run = match run {
                    Ok(run) => run,
                    Err(f) => return AttemptEnd::failed(f),
                };
                end.usage = run.usage.clone();
                end.session = run.session.clone();
                let judged = run.judged.result.clone();
                match judged {
                    Ok(text) => {
                        tree = before_tree.map(|b| (a, span, b));
                        agent_out = Some(run.out);
                        Ok(Reply {
                            text,
                            usage: end.usage.clone(),
                        })
                    }
                    Err(f) => {
                        self.log_attempt(t, attempt, &run.out, &f.message);
                        Err(self.masked_failure(&a, &run, f))
                    }
                }
            }
            (_, None) => Err(Failure::new(FailureKind::Launch, "no agent for this task")),
        };
        end.result = reply.and_then(|reply| {
            let checked = self.check_outputs(t, &before).and_then(|()| {
                if let Some((a, span, b)) = tree {
                    for message in self.undeclared_writes(t, &a, span, b)? {
                        send(TaskMsg::Notice { task: t, message });
                    }
                }
                self.verify(t, send)?;
                if fanout::is_source(self.plan, &task.id) {
                    self.record_answer(t, &reply)?;
                }
                Ok(())
            });
            if let (Err(f), Some(out)) = (&checked, &agent_out) {
                self.log_attempt(t, attempt, out, &f.message);
            }
            checked.map(|()| reply)
        });
        end
    }

    /// A shell task's run: its reply and, when it succeeded but wrote on stderr, that
    /// stderr cut for showing.
    fn run_shell(
        &self,
        t: usize,
        attempt: u32,
        script: &str,
        send: &dyn Fn(TaskMsg),
    ) -> Result<(Reply, Option<String>), Failure> {
        let spec = self.process_spec(
            t,
            vec!["sh".into(), "-c".into(), script.to_string()],
            None,
            None,
        );
        let out = self
            .run_process(t, &spec, send, &mut |_| {})
            .map_err(|e| Failure::new(FailureKind::Launch, e.to_string()))?;
        // Both streams of an attempt that failed or warned are kept, as make would have
        // shown them; a quiet success writes no log (thousands of files).
        if out.exit != Exit::Code(0) || !out.stderr.is_empty() {
            let why = match out.exit {
                Exit::Code(0) => "succeeded, with output on stderr".to_string(),
                exit => exit.to_string(),
            };
            self.log_attempt(t, attempt, &out, &why);
        }
        match out.exit {
            Exit::Code(0) => {
                let warnings = (!out.stderr.is_empty()).then(|| {
                    let err = self.redactor.redact(&String::from_utf8_lossy(&out.stderr));
                    self.shown_lines(t, &err)
                });
                let reply = Reply {
                    text: String::from_utf8_lossy(&out.stdout).into_owned(),
                    usage: Usage::default(),
                };
                Ok((reply, warnings))
            }
            exit @ Exit::TimedOut(_) => Err(Failure::new(FailureKind::Timeout, exit.to_string())),
            Exit::Cancelled => Err(Failure::new(FailureKind::Cancelled, "cancelled")),
            exit => {
                // What it said last: on stderr, or on stdout for a script that reports there.
                let said = if out.stderr.trim_ascii().is_empty() {
                    &out.stdout
                } else {
                    &out.stderr
                };
                let said = self.redactor.redact(&String::from_utf8_lossy(said));
                let said = agent::tail(&said, 500);
                Err(Failure::new(
                    FailureKind::Exit,
                    if said.is_empty() {
                        format!("{exit}")
                    } else {
                        format!("{exit}: {said}")
                    },
                ))
            }
        }
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

    fn run_sim(&self, t: usize, task_file: &str) -> Result<Reply, Failure> {
        let task = self.task(t);
        if !sim::wait(task.estimate, self.opts.sim_speed, self.cancel) {
            return Err(Failure::new(FailureKind::Cancelled, "cancelled"));
        }
        let digest = blake3::hash(task_file.as_bytes()).to_hex();
        let root = self.task_root(t);
        for o in &task.outputs {
            let path = root.join(o);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            persist_atomic(
                &path,
                sim::output_content(&task.id, o, &digest[..12]).as_bytes(),
            )
            .map_err(|e| Failure::new(FailureKind::Launch, format!("writing {o}: {e}")))?;
        }
        Ok(Reply {
            text: sim::reply(&task.id, &task.title, &self.agent_ids[t], task_file),
            usage: Usage::default(),
        })
    }

    /// Every declared output exists, as a file, written by this attempt.
    fn check_outputs(&self, t: usize, before: &[Option<OutputStamp>]) -> Result<(), Failure> {
        let task = self.task(t);
        // A Slurm job wrote its outputs on another machine: the shared filesystem may show
        // them (or their new times) a little later here. Waited for, bounded.
        let on_slurm = !matches!(&self.agent(t), Some(a) if a.kind == AgentKind::Sim)
            && self.plan.executor_of(
                task,
                self.opts.agent_override.as_deref(),
                self.opts.executor,
            ) == ExecutorKind::Slurm;
        let wait = self.plan.settings.slurm.output_wait;
        let deadline = on_slurm.then(|| Instant::now() + wait);
        let (missing, stale) = loop {
            let after: Vec<Option<OutputStamp>> = task
                .outputs
                .iter()
                .map(|o| self.output_stamp(t, o))
                .collect();
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
            if settled || deadline.is_none_or(|d| Instant::now() >= d) || self.cancel.is_cancelled()
            {
                break (missing, stale);
            }
            for o in missing.iter().chain(&stale) {
                // Reading a directory makes an NFS client look again, past its caches.
                if let Some(dir) = self.task_root(t).join(o).parent() {
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
        Ok(())
    }

    /// The task's `verify` command, if it has one, succeeds.
    fn verify(&self, t: usize, send: &dyn Fn(TaskMsg)) -> Result<(), Failure> {
        let Some(v) = &self.task(t).verify else {
            return Ok(());
        };
        let mut spec = self.process_spec(t, vec!["sh".into(), "-c".into(), v.clone()], None, None);
        // orch's own check of what the task left on the shared filesystem: here, not one
        // more job in the queue.
        spec.slurm = None;
        let out = self
            .run_process(t, &spec, send, &mut |_| {})
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
        Ok(())
    }

    /// A `foreach_from` source's answer (its declared `.json` output, else its result) as the
    /// items of the fan-outs naming it, recorded for the next expansion of the plan; an
    /// answer that is not such a list fails the task.
    fn record_answer(&self, t: usize, reply: &Reply) -> Result<(), Failure> {
        let task = self.task(t);
        let json_output = task.outputs.iter().find(|o| o.ends_with(".json"));
        let text = match json_output {
            Some(o) => std::fs::read_to_string(self.task_root(t).join(o))
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

    /// How the declared output `rel` looks now, if it exists: by the open project root, so
    /// the kernel does not walk the root's own path on every call.
    fn output_stamp(&self, t: usize, rel: &str) -> Option<OutputStamp> {
        let in_tree = self.worktree_root(t);
        let (stamp, is_file) = match (&self.root_dir, in_tree) {
            (_, Some(root)) => {
                let m = std::fs::metadata(root.join(rel)).ok()?;
                (crate::disk::FileStamp::of(&m), m.is_file())
            }
            (Some(dir), None) => dir
                .stat_kind(rel)
                .ok()
                .flatten()
                .map(|(stamp, kind)| (stamp, kind == fingerprint::FileKind::File))?,
            (None, None) => {
                let m = std::fs::metadata(self.plan.root.join(rel)).ok()?;
                (crate::disk::FileStamp::of(&m), m.is_file())
            }
        };
        Some(OutputStamp { stamp, is_file })
    }
}

/// Enough of a file's metadata to see whether anything wrote it.
#[derive(Debug, Clone, PartialEq)]
struct OutputStamp {
    stamp: crate::disk::FileStamp,
    is_file: bool,
}

/// How much of a successful shell task's stderr a terminal is shown.
const SHOWN_LINES: usize = 20;
const SHOWN_LINE_CHARS: usize = 300;

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
