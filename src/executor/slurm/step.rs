//! Steps: each attempt is `srun --jobid=<allocation> --overlap` run as a local child (stdin,
//! stdout, stderr and exit code through srun; a timeout or cancel stops srun, which ends the
//! step), in an allocation orch holds, asked for when the first step wants it: granted at once
//! by `salloc --no-shell --immediate` if the cluster has room, else a batch job that only
//! sleeps, queued. Every step waits (shown as queued) until that job runs. The allocation is
//! cancelled when the build ends, and released sooner when no step has run in it for
//! [`AllocationSpec::idle`], so that the build's batch jobs never wait behind an allocation
//! nobody uses. One that dies (its node failed) is replaced by the next step that needs it;
//! the step that was running in it ends as a lost job, retried like a failed attempt.

use std::io;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::cli::{self, Ending, State};
use super::cluster::{wait_gone, Cluster};
use super::monitor::{Monitor, Seen};
use super::spec::{AllocationSpec, SlurmJobSpec};
use crate::cancel::Cancel;
use crate::executor::backend::{
    Exit, Job, JobEnd, JobEvent, JobRecord, ProcessOutput, ProcessSpec, Stopped,
};
use crate::executor::guard::Guard;
use crate::executor::local::Local;

/// What the allocation job runs: nothing, for as long as it is allowed to.
const HOLDER_SCRIPT: &str =
    "#!/bin/sh\n# orch: an allocation for steps\nwhile :; do sleep 86400; done\n";

/// The allocation's job name.
const ALLOCATION_NAME: &str = "orch-allocation";

/// How often the queue is asked whether the allocation runs yet, while steps wait for it,
/// for the first `FAST_START_WINDOW` after it was submitted (a holder job with room starts
/// within a second or two). A holder still queued after that may wait hours for room: it is
/// asked at the executor's `poll`, like any job.
const ALLOCATION_START_POLL: Duration = Duration::from_millis(100);
const FAST_START_WINDOW: Duration = Duration::from_secs(5);

pub(super) struct Allocation {
    spec: AllocationSpec,
    state: Mutex<AllocState>,
    changed: Condvar,
}

#[derive(Default)]
struct AllocState {
    held: Option<Held>,
    submitting: bool,
    /// Allocations that ended or were released, not yet handed back for the journal.
    released: Vec<JobRecord>,
}

struct Held {
    job: u64,
    /// Where it runs, once it does.
    node: Option<String>,
    /// Steps running in it now.
    active: usize,
    idle_since: Option<Instant>,
    /// When it was submitted: the steps waiting for it poll fast only at first.
    submitted: Instant,
}

impl Allocation {
    pub fn new(spec: AllocationSpec) -> Allocation {
        Allocation {
            spec,
            state: Mutex::new(AllocState::default()),
            changed: Condvar::new(),
        }
    }

    /// The running allocation for one more step (submitting it, or waiting for it to start,
    /// first): its id and node. `None` if `cancel` was set meanwhile.
    fn acquire(
        &self,
        cluster: &Cluster,
        guard: Option<&Guard>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> io::Result<Option<(u64, String)>> {
        let mut said: Option<String> = None;
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let mut st = self.state.lock().unwrap();
            if let Some(h) = &mut st.held {
                if let Some(node) = &h.node {
                    h.active += 1;
                    h.idle_since = None;
                    return Ok(Some((h.job, node.clone())));
                }
                let job = h.job;
                let waited = h.submitted.elapsed();
                drop(st);
                // Every step waits on this one job: learn its start sooner than the poll
                // interval would (one `squeue` of the build's jobs each time), but only while
                // a start soon is likely.
                let fresh = if waited < FAST_START_WINDOW {
                    cluster.monitor.poll().min(ALLOCATION_START_POLL)
                } else {
                    cluster.monitor.poll()
                };
                match cluster.monitor.state(job, fresh) {
                    Seen::Is(State::Running(node)) => {
                        let mut st = self.state.lock().unwrap();
                        if let Some(h) = st.held.as_mut().filter(|h| h.job == job) {
                            h.node = Some(node);
                        }
                        continue;
                    }
                    Seen::Is(State::Pending(reason)) => {
                        if said.as_ref() != Some(&reason) {
                            on_event(JobEvent::Queued {
                                job: job.to_string(),
                                reason: reason.clone(),
                            });
                            said = Some(reason);
                        }
                    }
                    Seen::Is(State::Ended(_)) | Seen::Gone => {
                        // Ended before it ran (cancelled by someone, a bad node): submit anew.
                        self.forget(job, guard, &cluster.monitor);
                        continue;
                    }
                    Seen::Unknown => {}
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if st.submitting {
                let _ = self
                    .changed
                    .wait_timeout(st, Duration::from_millis(50))
                    .unwrap();
                continue;
            }
            st.submitting = true;
            drop(st);
            if let Some(g) = guard {
                g.start_if_needed();
            }
            let submitted = self.request(cluster);
            let mut st = self.state.lock().unwrap();
            st.submitting = false;
            self.changed.notify_all();
            let job = submitted?;
            if let Some(g) = guard {
                g.watch_job(job);
            }
            cluster.monitor.watch(job);
            st.held = Some(Held {
                job,
                node: None,
                active: 0,
                idle_since: None,
                submitted: Instant::now(),
            });
            drop(st);
            on_event(JobEvent::Holding(JobRecord::Slurm { job }));
        }
    }

    /// A new allocation: granted at once by `salloc` when the cluster has room now (the batch
    /// scheduler would start a holder job a second or more later, and every step waits for
    /// it), else a holder batch job, queued until there is room.
    fn request(&self, cluster: &Cluster) -> io::Result<u64> {
        let mut common = vec![format!("--job-name={ALLOCATION_NAME}"), cluster.comment()];
        if let Some(p) = &self.spec.partition {
            common.push(format!("--partition={p}"));
        }
        if let Some(t) = self.spec.time_minutes {
            common.push(format!("--time={t}"));
        }
        common.extend(self.spec.args.iter().cloned());
        match cli::allocate_now(&common)? {
            cli::Grant::Granted(job) => return Ok(job),
            cli::Grant::Unreadable(said) => return Err(self.unreadable_grant(cluster, &said)),
            cli::Grant::NotNow => {}
        }
        let mut args = vec![
            format!("--chdir={}", cluster.config.work_dir.display()),
            "--output=/dev/null".to_string(),
            "--no-requeue".to_string(),
        ];
        args.extend(common);
        cli::submit(&args, HOLDER_SCRIPT)
    }

    /// salloc granted an allocation without saying which (the plan refuses `--quiet`, but
    /// the salloc orch finds may be another's): none of this run's allocations is held now,
    /// so every one the queue lists is cancelled rather than left to its time limit.
    fn unreadable_grant(&self, cluster: &Cluster, said: &str) -> io::Error {
        let comment = format!("{}{}", cli::COMMENT_PREFIX, cluster.run_id);
        let listed = cli::list(&[format!("--name={ALLOCATION_NAME}")]).unwrap_or_default();
        let strays: Vec<u64> = listed
            .iter()
            .filter(|j| j.comment == comment)
            .map(|j| j.id)
            .collect();
        let cancelled = match cli::cancel(&strays) {
            Ok(()) if strays.is_empty() => String::new(),
            Ok(()) => format!("; cancelled {strays:?}"),
            Err(e) => format!("; cancelling {strays:?} failed: {e}"),
        };
        io::Error::other(format!(
            "salloc said {said:?}, not the allocation it granted{cancelled}"
        ))
    }

    /// A step of `job` ended.
    fn release(&self, job: u64) {
        let mut st = self.state.lock().unwrap();
        if let Some(h) = st.held.as_mut().filter(|h| h.job == job) {
            h.active = h.active.saturating_sub(1);
            if h.active == 0 {
                h.idle_since = Some(Instant::now());
            }
        }
    }

    /// `job` is no longer usable (it ended): the next step gets a new allocation.
    fn forget(&self, job: u64, guard: Option<&Guard>, monitor: &Monitor) {
        let mut st = self.state.lock().unwrap();
        if st.held.as_ref().is_some_and(|h| h.job == job) {
            st.held = None;
            st.released.push(JobRecord::Slurm { job });
            drop(st);
            // It may still be listed as running on a node that stopped answering.
            let _ = cli::cancel(&[job]);
            monitor.unwatch(job);
            if let Some(g) = guard {
                g.release_job(job);
            }
        }
    }

    /// Releases the allocation if it has been idle for long enough; the records of the
    /// allocations released since the last call.
    pub fn release_if_idle(&self, guard: Option<&Guard>) -> Vec<JobRecord> {
        let mut st = self.state.lock().unwrap();
        let idle = st.held.as_ref().is_some_and(|h| {
            h.active == 0 && h.idle_since.is_some_and(|t| t.elapsed() >= self.spec.idle)
        });
        if idle {
            let job = st.held.take().expect("held").job;
            // Only a sleep runs in it: no need to wait for it to go.
            let _ = cli::cancel(&[job]);
            if let Some(g) = guard {
                g.release_job(job);
            }
            st.released.push(JobRecord::Slurm { job });
        }
        std::mem::take(&mut st.released)
    }

    /// Cancels the allocation held, if any, and waits for it to go; every record not yet
    /// handed back.
    pub fn release_all(&self, guard: Option<&Guard>, monitor: &Monitor) -> Vec<JobRecord> {
        let mut st = self.state.lock().unwrap();
        if let Some(h) = st.held.take() {
            if cli::cancel(&[h.job]).is_ok() {
                wait_gone(&[h.job], Duration::from_secs(60));
            }
            monitor.unwatch(h.job);
            if let Some(g) = guard {
                g.release_job(h.job);
            }
            st.released.push(JobRecord::Slurm { job: h.job });
        }
        std::mem::take(&mut st.released)
    }
}

/// One attempt as a step; it starts when waited for.
pub(super) struct StepJob<'a> {
    cluster: &'a Cluster,
    allocation: &'a Allocation,
    spec: &'a ProcessSpec,
    opts: &'a SlurmJobSpec,
    local: &'a Local,
}

impl<'a> StepJob<'a> {
    pub fn new(
        cluster: &'a Cluster,
        allocation: &'a Allocation,
        spec: &'a ProcessSpec,
        opts: &'a SlurmJobSpec,
        local: &'a Local,
    ) -> StepJob<'a> {
        StepJob {
            cluster,
            allocation,
            spec,
            opts,
            local,
        }
    }

    /// The local child that runs the step: `srun` in `allocation`, then the command.
    fn srun(&self, allocation: u64) -> ProcessSpec {
        let mut argv = vec![
            "srun".to_string(),
            format!("--jobid={allocation}"),
            // Steps share the allocation's CPUs: orch's own limit (`max_jobs`) decides how
            // many run at once, as it does for batch jobs.
            "--overlap".to_string(),
            format!("--job-name={}", self.opts.name),
            "--nodes=1".to_string(),
            "--ntasks=1".to_string(),
            "--quiet".to_string(),
            format!("--chdir={}", self.spec.cwd.display()),
        ];
        argv.extend(self.opts.resource_args());
        argv.extend(self.opts.args.iter().cloned());
        argv.push("--".to_string());
        argv.extend(self.spec.argv.iter().cloned());
        let mut spec = self.spec.clone();
        spec.argv = argv;
        spec.unset.extend(cli::inherited_job_env());
        spec.slurm = None;
        spec
    }
}

/// What srun says when the step could not even be created in the allocation.
fn step_not_created(stderr: &[u8]) -> bool {
    let s = String::from_utf8_lossy(stderr);
    s.contains("Unable to create step")
        || s.contains("already completing or completed")
        || s.contains("Invalid job id")
}

impl Job for StepJob<'_> {
    fn wait(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> io::Result<ProcessOutput> {
        let began = Instant::now();
        let guard = self.local.guard();
        let allocation = self.allocation;
        // A step that could not be created in an allocation that just ended gets one more
        // try in a new one: its command never ran.
        for tries_left in (0..2).rev() {
            let Some((alloc, node)) = allocation.acquire(self.cluster, guard, cancel, on_event)?
            else {
                return Ok(ProcessOutput {
                    exit: Exit::Cancelled,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    truncated: false,
                    duration: began.elapsed(),
                });
            };
            let started = self.local.start_owned(self.srun(alloc));
            let job = match started {
                Ok(job) => job,
                Err(e) => {
                    allocation.release(alloc);
                    return Err(e);
                }
            };
            on_event(JobEvent::Running {
                job: alloc.to_string(),
                node,
            });
            let out = job.wait(cancel, on_event);
            allocation.release(alloc);
            let mut out = out?;
            if let Exit::TimedOut(_) = out.exit {
                // orch stopped the srun: that ended the step, not the allocation.
                out.exit = Exit::TimedOut(Stopped::SlurmStep);
            }
            if matches!(
                out.exit,
                Exit::Code(0) | Exit::Cancelled | Exit::TimedOut(_)
            ) {
                return Ok(out);
            }
            // A failed step: the command's own failure, or its allocation's end?
            let lost = match self.cluster.monitor.state(alloc, Duration::ZERO) {
                Seen::Is(State::Ended(Ending::Lost(end))) => Some(end),
                Seen::Is(State::Ended(Ending::Cancelled)) => Some(JobEnd::CancelledElsewhere),
                Seen::Is(State::Ended(Ending::Finished)) | Seen::Gone => Some(JobEnd::Vanished),
                _ => None,
            };
            if let Some(end) = lost {
                allocation.forget(alloc, guard, &self.cluster.monitor);
                if step_not_created(&out.stderr) && tries_left > 0 {
                    continue;
                }
                out.exit = Exit::Ended(end);
            }
            return Ok(out);
        }
        unreachable!("the last try returns")
    }
}
