//! What the parts of a build hand each other: the messages a worker sends the scheduling
//! thread while a task runs ([`TaskMsg`]) and when it is done ([`TaskDone`]), and what one
//! attempt at a task is given ([`Try`], [`Resume`]) and comes to ([`AttemptEnd`]).

use std::time::Duration;

use super::context::DoneInfo;
use super::place::TakePlace;
use crate::agent::{Activity, Failure, Reply, Usage};
use crate::disk::Digest;
use crate::executor::{JobEvent, JobRecord};
use crate::state::{SessionRecord, TaskRecord};

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
        /// What the failed attempt cost.
        usage: Usage,
    },
    /// A running agent called a tool.
    Activity {
        task: usize,
        activity: Activity,
    },
    /// The task's agent session, as first seen or as its attempt left it.
    Session {
        task: usize,
        session: SessionRecord,
    },
    /// Something the task's check found worth saying that is not its failure.
    Notice {
        task: usize,
        message: String,
    },
    /// Something worth saying about the build as a whole (a remote cache that failed).
    BuildNotice {
        message: String,
    },
}

// One per finished task, moved once through a channel: boxing would not pay.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TaskDone {
    UpToDate(DoneInfo),
    Ran {
        record: TaskRecord,
        /// Every attempt's, failed ones included.
        usage: Usage,
        duration: Duration,
        retries: u32,
        why: String,
        /// What a shell task printed on stderr though it succeeded (compiler warnings),
        /// cut to a few lines for the terminal; the whole of it is in its log.
        warnings: Option<String>,
    },
    /// Found in the output cache and restored, not run.
    Restored {
        record: TaskRecord,
        /// The restore's own time.
        duration: Duration,
        why: String,
        restored: Restored,
    },
    Failed {
        failure: Failure,
        duration: Duration,
        retries: u32,
        usage: Usage,
    },
}

/// What a restore hands the coordinator besides the record.
#[derive(Debug)]
pub struct Restored {
    /// What the run that is restored cost: saved by not running it again.
    pub saved: Usage,
    /// How long that run took.
    pub original: Duration,
    pub source: crate::cache::Source,
    pub session: Option<String>,
}

/// A session an attempt continues, and why the earlier one stopped.
pub(super) struct Resume<'a> {
    pub(super) record: &'a SessionRecord,
    pub(super) reason: &'a str,
}

/// What one attempt is given: its number in this build, the task file, the task's
/// fingerprint (kept with its session), and the session it continues, if any.
pub(super) struct Try<'a> {
    pub(super) number: u32,
    pub(super) task_file: &'a str,
    pub(super) fingerprint: &'a Digest,
    pub(super) resume: Option<&'a Resume<'a>>,
    /// An agent task's place at its provider, taken by the attempt before its call.
    pub(super) place: Option<&'a dyn TakePlace>,
}

/// How an attempt ended, with what it cost and the agent session it ran in.
pub(super) struct AttemptEnd {
    pub(super) result: Result<Reply, Failure>,
    pub(super) usage: Usage,
    pub(super) session: Option<SessionRecord>,
    /// A successful shell task's stderr, cut for showing (see [`TaskDone::Ran`]).
    pub(super) warnings: Option<String>,
}

impl AttemptEnd {
    pub(super) fn failed(f: Failure) -> AttemptEnd {
        AttemptEnd {
            result: Err(f),
            usage: Usage::default(),
            session: None,
            warnings: None,
        }
    }
}
