//! The seam between a build and where its processes run. A [`Backend`] starts a job from a
//! [`ProcessSpec`]; the [`Job`] is then waited for (and stopped on cancel or timeout), telling
//! its caller what happens to it as [`JobEvent`]s; and its [`JobRecord`] is what survives a
//! crash: the journal keeps it from the moment the job exists, so that the next run can stop
//! whatever this one left running ([`Backend::reap_stale`]).
//!
//! Two backends implement it: [`Local`](super::Local), child processes in their own process
//! groups with the crash guard, and [`Slurm`](super::slurm::Slurm), jobs of a Slurm cluster;
//! [`Executors`](super::Executors) routes each spec to one of them.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::slurm::spec::SlurmJobSpec;
use crate::cancel::Cancel;
use crate::clock::StartWindow;

/// Where the processes of a build run.
pub trait Backend: Send + Sync {
    /// Starts a job running `spec`. A local job is running (and known to the crash guard, if
    /// any) when this returns; a batch system's may still wait in its queue.
    fn start<'a>(&'a self, spec: &'a ProcessSpec) -> io::Result<Box<dyn Job + 'a>>;

    /// Stops what a run that died left running, from the records its journal kept. Returns
    /// how many processes (or batch jobs) were stopped.
    fn reap_stale(&self, left: &[JobRecord]) -> usize;

    /// Called now and then (every 100 ms at most) while jobs run: the backend may release
    /// what it holds and no job uses. Returns the records of what it released.
    fn tick(&self) -> Vec<JobRecord> {
        Vec::new()
    }

    /// The build is over: whatever this backend started to watch over its jobs, or held for
    /// them ([`JobEvent::Holding`]), ends too. Returns the records of what it released.
    fn finish(&mut self) -> Vec<JobRecord> {
        Vec::new()
    }

    /// Whether a job of `spec` can start before its turn and wait at its stdin for it
    /// ([`Job::wait_lines_admitted`]): a local child can; a batch job, which waits in its own
    /// queue and reads its input when it runs, cannot.
    fn holds_stdin(&self, _spec: &ProcessSpec) -> bool {
        false
    }

    /// Starts `spec` and waits for it; `on_event` hears what happens to the job meanwhile
    /// (first of all its record, so the caller can journal it while the job runs).
    fn run(
        &self,
        spec: &ProcessSpec,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> io::Result<ProcessOutput> {
        self.start(spec)?.wait(cancel, on_event)
    }

    /// As [`Backend::run`], handing each line of stdout to `on_line` (see
    /// [`Job::wait_lines`]): how a streaming agent's progress is read while it runs.
    fn run_lines(
        &self,
        spec: &ProcessSpec,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ProcessOutput> {
        self.start(spec)?.wait_lines(cancel, on_event, on_line)
    }
}

/// One started job.
pub trait Job {
    /// Waits for the job to end, feeding its stdin and collecting its output; stops it (the
    /// whole of it) when `cancel` is set or its timeout passes: the signal orch received
    /// (SIGTERM on a timeout), the grace period, SIGKILL. The timeout runs on the active
    /// clock, which stands still while orch is stopped. Its record reaches `on_event`
    /// ([`JobEvent::Started`]) before anything else.
    fn wait(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> io::Result<ProcessOutput>;

    /// As [`Job::wait`], and each complete line of stdout (without its newline; the last one
    /// at EOF even without) goes to `on_line`. A local job hands each line over as soon as
    /// it is read, on the waiting thread (the capture limit holds: a line past it is not
    /// seen). A job whose output is only read at its end (a Slurm job's file) hands them
    /// all over then: the activity arrives late, the reply is the same.
    fn wait_lines(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ProcessOutput> {
        let out = self.wait(cancel, on_event)?;
        for line in out.stdout.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                on_line(line);
            }
        }
        Ok(out)
    }

    /// As [`Job::wait_lines`] for a job started before its turn (its backend
    /// [`holds_stdin`](Backend::holds_stdin)): all of its stdin but the last byte goes in at
    /// once (a CLI that gives up on a silent stdin, as `gemini` does after 0.5 s and
    /// `claude` after 3 s, has started reading and waits for the end), the last byte and
    /// EOF once `admit` says [`Admission::Go`]; its timeout runs from then. On
    /// [`Admission::GiveUp`] it is stopped as on a cancel. A job that cannot hold its stdin
    /// waits for the go before it is waited for.
    fn wait_lines_admitted(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
        on_line: &mut dyn FnMut(&[u8]),
        admit: &mut dyn FnMut() -> Admission,
    ) -> io::Result<ProcessOutput> {
        for _ in 0.. {
            match admit() {
                Admission::Wait => std::thread::sleep(ADMISSION_POLL),
                Admission::Go | Admission::GiveUp => break,
            }
        }
        self.wait_lines(cancel, on_event, on_line)
    }
}

/// How often a job held at its stdin asks whether it may go on.
pub const ADMISSION_POLL: Duration = Duration::from_millis(10);

/// What a job started before its turn hears when it asks whether it may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Wait,
    /// Its turn: the rest of its stdin, and its timeout starts.
    Go,
    /// It will not get one (the build is cancelled, its provider stopped): stop it.
    GiveUp,
}

/// What a job's caller hears while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// A job of this attempt exists: keep its record until the attempt ends.
    Started(JobRecord),
    /// The backend holds something for the jobs that follow too (the allocation Slurm steps
    /// run in): keep its record until [`Backend::finish`] hands it back.
    Holding(JobRecord),
    /// The batch system queued the job and it waits (`reason`: Slurm's, e.g. `Resources`).
    Queued { job: String, reason: String },
    /// The job runs (`node`: where, when known).
    Running { job: String, node: String },
}

/// What survives a crash of a started job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRecord {
    /// A local process group: its id and the window its leader started in (which tells it
    /// from a later group that reuses the id).
    Local { pgid: i32, window: StartWindow },
    /// A Slurm job: one attempt's batch job, or the allocation steps run in.
    Slurm { job: u64 },
}

/// Environment variables never passed to children. `CLAUDECODE` makes a nested `claude`
/// refuse to start.
pub const STRIPPED_ENV: &[&str] = &["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"];

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// Inherited variables the child must not see (on top of [`STRIPPED_ENV`]).
    pub unset: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    /// Bytes of stdout (and separately stderr) kept; the rest is read and dropped.
    pub max_output: usize,
    /// Run as a Slurm job (or step) with these options instead of as a local child.
    pub slurm: Option<SlurmJobSpec>,
}

impl ProcessSpec {
    pub fn shell(script: &str, cwd: PathBuf) -> ProcessSpec {
        ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd,
            env: Vec::new(),
            unset: Vec::new(),
            stdin: None,
            timeout: None,
            grace: Duration::from_secs(5),
            max_output: 64 << 20,
            slurm: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Outlived its timeout, and was stopped so.
    TimedOut(Stopped),
    Cancelled,
    /// A batch system ended the job before its command could say how it went.
    Ended(JobEnd),
}

/// How a run that outlived its timeout was stopped, said wherever the timeout is reported
/// (a shell task's failure, an agent's, the attempt log), so each backend says it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM to its process group, SIGKILL after the grace.
    ProcessGroup,
    /// `scancel` of its batch job, waited for until the controller no longer lists it.
    SlurmJob,
    /// Its `srun` stopped, which ends the step; the allocation stays for the next.
    SlurmStep,
}

impl Stopped {
    pub fn describe(self) -> &'static str {
        match self {
            Stopped::ProcessGroup => "process group stopped",
            Stopped::SlurmJob => "Slurm job cancelled",
            Stopped::SlurmStep => "Slurm step stopped",
        }
    }
}

/// How a batch system ended a job that has no exit code of its own to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Its node failed (`NODE_FAIL`), or its allocation went with it.
    NodeFail,
    /// Preempted by other work (`PREEMPTED`).
    Preempted,
    /// Its node could not boot (`BOOT_FAIL`).
    BootFail,
    /// Over its memory limit (`OUT_OF_MEMORY`).
    OutOfMemory,
    /// The batch system's own time limit (`TIMEOUT`, `DEADLINE`).
    TimeLimit,
    /// Cancelled by someone other than orch (`scancel`, an administrator).
    CancelledElsewhere,
    /// Gone from the queue with no trace of how it ended.
    Vanished,
}

impl JobEnd {
    /// Slurm's name of the state, as `squeue`/`scontrol` print it, or a description.
    pub fn describe(self) -> &'static str {
        match self {
            JobEnd::NodeFail => "NODE_FAIL: its node failed",
            JobEnd::Preempted => "PREEMPTED by other work",
            JobEnd::BootFail => "BOOT_FAIL: its node did not boot",
            JobEnd::OutOfMemory => "OUT_OF_MEMORY",
            JobEnd::TimeLimit => "TIMEOUT: Slurm's time limit",
            JobEnd::CancelledElsewhere => "CANCELLED, not by orch",
            JobEnd::Vanished => "gone from the queue without an exit code",
        }
    }
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::TimedOut(how) => write!(f, "timed out; {}", how.describe()),
            Exit::Cancelled => write!(f, "cancelled"),
            Exit::Ended(end) => write!(f, "Slurm ended the job ({})", end.describe()),
        }
    }
}

#[derive(Debug)]
pub struct ProcessOutput {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub duration: Duration,
}
