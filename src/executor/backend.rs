//! The seam between a build and where its processes run. A [`Backend`] starts a job from a
//! [`ProcessSpec`]; the [`Job`] is then waited for (and stopped on cancel or timeout); and
//! its [`JobRecord`] is what survives a crash: the journal keeps it from the moment the job
//! exists, so that the next run can stop whatever this one left running
//! ([`Backend::reap_stale`]).
//!
//! Today's one backend is [`Local`](super::Local): child processes in their own process
//! groups, with the crash guard. Another (a batch system such as Slurm) is another
//! implementation of this trait, in a file of its own.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::clock::StartWindow;

/// Where the processes of a build run.
pub trait Backend: Send + Sync {
    /// Starts a job running `spec`; it is running (and known to the crash guard, if any)
    /// when this returns.
    fn start<'a>(&'a self, spec: &'a ProcessSpec) -> io::Result<Box<dyn Job + 'a>>;

    /// Stops what a run that died left running, from the records its journal kept. Returns
    /// how many processes were stopped.
    fn reap_stale(&self, left: &[JobRecord]) -> usize;

    /// The build is over: whatever this backend started to watch over its jobs ends too.
    fn finish(&mut self) {}

    /// Starts `spec` and waits for it. `on_start` gets the job's record before the wait, so
    /// the caller can journal it while the job runs.
    fn run(
        &self,
        spec: &ProcessSpec,
        cancel: &Cancel,
        on_start: &mut dyn FnMut(JobRecord),
    ) -> io::Result<ProcessOutput> {
        self.run_lines(spec, cancel, on_start, &mut |_| {})
    }

    /// As [`Backend::run`], handing each line of stdout to `on_line` as it arrives (see
    /// [`Job::wait_lines`]): how a streaming agent's progress is read while it runs.
    fn run_lines(
        &self,
        spec: &ProcessSpec,
        cancel: &Cancel,
        on_start: &mut dyn FnMut(JobRecord),
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ProcessOutput> {
        let job = self.start(spec)?;
        on_start(job.record());
        job.wait_lines(cancel, on_line)
    }
}

/// One started job.
pub trait Job {
    /// What the journal keeps of it, so a later run can stop it if this one dies.
    fn record(&self) -> JobRecord;

    /// Waits for the job to end, feeding its stdin and collecting its output; stops it (the
    /// whole of it) when `cancel` is set or its timeout passes: the signal orch received
    /// (SIGTERM on a timeout), the grace period, SIGKILL. The timeout runs on the active
    /// clock, which stands still while orch is stopped.
    fn wait(self: Box<Self>, cancel: &Cancel) -> io::Result<ProcessOutput> {
        self.wait_lines(cancel, &mut |_| {})
    }

    /// As [`Job::wait`], and each complete line of stdout (without its newline; the last one
    /// at EOF even without) goes to `on_line` as soon as it is read, on the waiting thread.
    /// The capture limit holds: a line past it is not seen, and nothing is kept twice.
    fn wait_lines(
        self: Box<Self>,
        cancel: &Cancel,
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ProcessOutput>;
}

/// What survives a crash of a started job: for a local process group, its id and the window
/// its leader started in (which tells it from a later group that reuses the id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRecord {
    pub pgid: i32,
    pub window: StartWindow,
}

/// Environment variables never passed to children. `CLAUDECODE` makes a nested `claude`
/// refuse to start.
pub const STRIPPED_ENV: &[&str] = &["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"];

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    /// Bytes of stdout (and separately stderr) kept; the rest is read and dropped.
    pub max_output: usize,
}

impl ProcessSpec {
    pub fn shell(script: &str, cwd: PathBuf) -> ProcessSpec {
        ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd,
            env: Vec::new(),
            stdin: None,
            timeout: None,
            grace: Duration::from_secs(5),
            max_output: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
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
            Exit::TimedOut => write!(f, "timed out"),
            Exit::Cancelled => write!(f, "cancelled"),
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
