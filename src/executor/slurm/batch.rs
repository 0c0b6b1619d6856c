//! One attempt as its own batch job: submitted by `sbatch` with the job script on stdin,
//! then waited for. Its end is the exit file the script leaves (looked for every 50 ms);
//! the shared `squeue` view says whether it is still pending or running, and how a job that
//! left no exit code ended (cancelled, node failure, ...). orch's timeout counts from when the
//! job is first seen running, not from the submit: time in the queue is not the task's.

use std::io;
use std::time::{Duration, Instant};

use super::cli::{self, Ending, State};
use super::cluster::Cluster;
use super::monitor::Seen;
use super::script::{job_script, AttemptFiles};
use super::spec::SlurmJobSpec;
use crate::cancel::Cancel;
use crate::executor::backend::{
    Exit, Job, JobEnd, JobEvent, JobRecord, ProcessOutput, ProcessSpec, Stopped,
};
use crate::executor::guard::Guard;
use crate::executor::local::Local;

/// How often the exit file is looked for: a `stat` on the shared filesystem.
const EXIT_FILE_EVERY: Duration = Duration::from_millis(50);

pub(super) struct BatchJob<'a> {
    cluster: &'a Cluster,
    spec: &'a ProcessSpec,
    guard: Option<&'a Guard>,
    job: u64,
    files: AttemptFiles,
    submitted: Instant,
    /// Taken by the wait; still here on drop only if nobody waited.
    waiting: bool,
}

impl<'a> BatchJob<'a> {
    pub fn submit(
        cluster: &'a Cluster,
        spec: &'a ProcessSpec,
        opts: &'a SlurmJobSpec,
        local: &'a Local,
    ) -> io::Result<BatchJob<'a>> {
        let guard = local.guard();
        if let Some(g) = guard {
            // Before the job exists, so that orch dying right after the submit still has a
            // guard to cancel it (it finds the job by its comment).
            g.start_if_needed();
        }
        let files = cluster.attempt_files(&opts.name)?;
        if let Some(input) = &spec.stdin {
            std::fs::write(&files.stdin, input)?;
        }
        let script = job_script(spec, &files, &cluster.run_id, &opts.name);
        let mut args = vec![
            format!("--job-name={}", opts.name),
            cluster.comment(),
            format!("--chdir={}", spec.cwd.display()),
            format!("--output={}", files.stdout.display()),
            format!("--error={}", files.stderr.display()),
            // A node failure or preemption ends the job; orch retries it, counted, at once,
            // rather than Slurm running it again under the same id after its credential
            // expires (120 s here).
            "--no-requeue".to_string(),
        ];
        if let Some(p) = &opts.partition {
            args.push(format!("--partition={p}"));
        }
        args.extend(opts.resource_args());
        args.extend(opts.args.iter().cloned());
        let submitted = Instant::now();
        let job = match cli::submit(&args, &script) {
            Ok(job) => job,
            Err(e) => {
                files.remove();
                return Err(e);
            }
        };
        if let Some(g) = guard {
            g.watch_job(job);
        }
        cluster.monitor.watch(job);
        Ok(BatchJob {
            cluster,
            spec,
            guard,
            job,
            files,
            submitted,
            waiting: true,
        })
    }

    /// Cancels the job and waits until it is gone; the exit that says why.
    fn stop(&self, why: Exit) -> io::Result<Exit> {
        self.cluster.cancel_and_wait(self.job)?;
        Ok(why)
    }

    /// The job script left `code`. One past 128 is a signal's: the command's own doing, or
    /// Slurm's ending the job (a node failure, preemption, someone's scancel) with the shell
    /// living just long enough to write the code. The controller's final state tells which.
    fn exited(&self, code: i32) -> Exit {
        if code <= 128 {
            return Exit::Code(code);
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match cli::show_job(self.job) {
                Some((Some(State::Ended(ending)), _)) => {
                    return match ending {
                        Ending::Finished => Exit::Code(code),
                        Ending::Cancelled => Exit::Ended(JobEnd::CancelledElsewhere),
                        Ending::Lost(end) => Exit::Ended(end),
                    }
                }
                // Forgotten already, or never answering: the code is all there is.
                None => return Exit::Code(code),
                Some(_) if Instant::now() >= end => return Exit::Code(code),
                Some(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The job ended as the queue says (or left it unseen): its exit code from the exit file,
    /// which a shared filesystem may show a little late, else from the controller.
    fn ended(&self, ending: Option<Ending>) -> Exit {
        let wait = match ending {
            // The script ran to its end: the file is there, if perhaps not yet visible.
            Some(Ending::Finished) | None => self.cluster.config.file_wait,
            // Killed: a code is there only if the command ended just before.
            Some(_) => self.cluster.monitor.poll().min(Duration::from_secs(1)),
        };
        let end = Instant::now() + wait;
        loop {
            if let Some(code) = self.files.exit_code() {
                return self.exited(code);
            }
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(EXIT_FILE_EVERY);
        }
        let (state, code) = cli::show_job(self.job).unwrap_or((None, None));
        let ending = match state {
            Some(State::Ended(e)) => Some(e),
            _ => ending,
        };
        match ending {
            Some(Ending::Finished) => Exit::Code(code.unwrap_or(1)),
            Some(Ending::Cancelled) => Exit::Ended(JobEnd::CancelledElsewhere),
            Some(Ending::Lost(end)) => Exit::Ended(end),
            None => Exit::Ended(JobEnd::Vanished),
        }
    }

    fn supervise(&self, cancel: &Cancel, on_event: &mut dyn FnMut(JobEvent)) -> io::Result<Exit> {
        let id = self.job.to_string();
        let mut phase: Option<State> = None;
        let mut running_since: Option<Instant> = None;
        loop {
            if let Some(code) = self.files.exit_code() {
                return Ok(self.exited(code));
            }
            if cancel.is_cancelled() {
                return self.stop(Exit::Cancelled);
            }
            if let (Some(limit), Some(since)) = (self.spec.timeout, running_since) {
                if since.elapsed() >= limit {
                    return self.stop(Exit::TimedOut(Stopped::SlurmJob));
                }
            }
            match self
                .cluster
                .monitor
                .state(self.job, self.cluster.monitor.poll())
            {
                Seen::Is(State::Ended(ending)) => return Ok(self.ended(Some(ending))),
                Seen::Gone => return Ok(self.ended(None)),
                Seen::Is(state) => {
                    let changed = match (&phase, &state) {
                        (Some(State::Pending(a)), State::Pending(b)) => a != b,
                        (Some(State::Running(_)), State::Running(_)) => false,
                        _ => true,
                    };
                    if changed {
                        match &state {
                            State::Pending(reason) => {
                                // Requeued: its time in the queue again is not the task's.
                                running_since = None;
                                on_event(JobEvent::Queued {
                                    job: id.clone(),
                                    reason: reason.clone(),
                                });
                            }
                            State::Running(node) => {
                                running_since = Some(Instant::now());
                                on_event(JobEvent::Running {
                                    job: id.clone(),
                                    node: node.clone(),
                                });
                            }
                            State::Ended(_) => {}
                        }
                        phase = Some(state);
                    }
                }
                Seen::Unknown => {}
            }
            std::thread::sleep(EXIT_FILE_EVERY);
        }
    }

    /// At most `max` bytes of `path`, and whether there was more.
    fn read_capped(path: &std::path::Path, max: usize) -> (Vec<u8>, bool) {
        use std::io::Read;
        let Ok(f) = std::fs::File::open(path) else {
            return (Vec::new(), false);
        };
        let mut kept = Vec::new();
        let _ = f.take(max as u64 + 1).read_to_end(&mut kept);
        let truncated = kept.len() > max;
        kept.truncate(max);
        (kept, truncated)
    }

    fn finish(&mut self) {
        self.waiting = false;
        self.cluster.monitor.unwatch(self.job);
        self.cluster.ended(self.job);
        if let Some(g) = self.guard {
            g.release_job(self.job);
        }
        self.files.remove();
    }
}

impl Job for BatchJob<'_> {
    fn wait(
        mut self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> io::Result<ProcessOutput> {
        on_event(JobEvent::Started(JobRecord::Slurm { job: self.job }));
        let exit = self.supervise(cancel, on_event);
        let exit = match exit {
            Ok(e) => e,
            Err(e) => {
                // Could not stop it through scancel: the guard and the next build's reaping
                // are what is left; say so.
                self.finish();
                return Err(e);
            }
        };
        let (stdout, out_cut) = Self::read_capped(&self.files.stdout, self.spec.max_output);
        let (stderr, err_cut) = Self::read_capped(&self.files.stderr, self.spec.max_output);
        let duration = self.submitted.elapsed();
        self.finish();
        Ok(ProcessOutput {
            exit,
            stdout,
            stderr,
            truncated: out_cut || err_cut,
            duration,
        })
    }
}

impl Drop for BatchJob<'_> {
    /// A job dropped unwaited (its caller panicked in between) is cancelled, not left queued.
    fn drop(&mut self) {
        if self.waiting {
            let _ = cli::cancel(&[self.job]);
            self.finish();
        }
    }
}
