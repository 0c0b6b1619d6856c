//! The Slurm client commands orch runs (`sbatch`, `squeue`, `scontrol`, `scancel`) and what
//! their output means. Each is a bounded child process (the local backend's, without the crash
//! guard: none outlives its call), with the environment of a job orch itself may run in taken
//! away. Everything here works without accounting (`sacct`): `squeue --states=all` and
//! `scontrol show job` know an ended job for `MinJobAge` (300 s by default), and the job
//! script leaves its exit code in a file (see `script.rs`).

use std::io;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::executor::backend::{Backend, JobEnd, ProcessSpec};
use crate::executor::local::Local;

/// How long one client command may take: slurmctld answers in milliseconds, but a busy
/// controller can take seconds (the client retries for `MessageTimeout` itself).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// What a job's comment says when orch submitted it: the run it belongs to.
pub(crate) const COMMENT_PREFIX: &str = "orch-run=";

/// Variables a Slurm job sets for what runs inside it. When orch itself runs in a job, they
/// would make its `sbatch` inherit that job's settings, so its Slurm commands lose them
/// (`SLURM_CONF`, which names the cluster, stays).
pub(crate) fn inherited_job_env() -> Vec<String> {
    if std::env::var_os("SLURM_JOB_ID").is_none() {
        return Vec::new();
    }
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("SLURM_") && k != "SLURM_CONF")
        .collect()
}

/// A client command's result: its exit code and output.
pub(crate) struct Reply {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// `program: stderr` for messages.
    pub fn error(&self, program: &str) -> String {
        let said = self.stderr.trim();
        let said = if said.is_empty() {
            self.stdout.trim()
        } else {
            said
        };
        match self.code {
            Some(c) => format!("{program} failed (exit code {c}): {said}"),
            None => format!("{program} did not finish: {said}"),
        }
    }
}

/// Runs `program args` (stdin from `input`), bounded by [`COMMAND_LIMIT`].
pub(crate) fn run(program: &str, args: &[String], input: Option<&str>) -> io::Result<Reply> {
    run_with_env(program, args, input, Vec::new())
}

/// [`run`] with these variables added to orch's environment.
fn run_with_env(
    program: &str,
    args: &[String],
    input: Option<&str>,
    env: Vec<(String, String)>,
) -> io::Result<Reply> {
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(program.to_string());
    argv.extend(args.iter().cloned());
    let mut spec = ProcessSpec::shell("", std::env::temp_dir());
    spec.argv = argv;
    spec.env = env;
    spec.unset = inherited_job_env();
    spec.stdin = input.map(|s| s.as_bytes().to_vec());
    spec.timeout = Some(COMMAND_LIMIT);
    spec.grace = Duration::from_secs(1);
    spec.max_output = 16 << 20;
    let out = Local::new(None).run(&spec, &Cancel::new(), &mut |_| {})?;
    Ok(Reply {
        code: match out.exit {
            crate::executor::Exit::Code(c) => Some(c),
            _ => None,
        },
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `sbatch --parsable ARGS` with `script` on stdin; the new job's id.
pub(crate) fn submit(args: &[String], script: &str) -> io::Result<u64> {
    let mut all = vec!["--parsable".to_string()];
    all.extend(args.iter().cloned());
    let reply = run("sbatch", &all, Some(script))?;
    if !reply.ok() {
        return Err(io::Error::other(reply.error("sbatch")));
    }
    parse_job_id(&reply.stdout).ok_or_else(|| {
        io::Error::other(format!(
            "sbatch --parsable printed {:?}, not a job id",
            reply.stdout.trim()
        ))
    })
}

/// What `salloc --no-shell --immediate` answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Granted now: the allocation's id.
    Granted(u64),
    /// Not granted at once (or salloc failed): the caller queues a batch job instead.
    NotNow,
    /// salloc succeeded but did not say which allocation it granted: what it said.
    Unreadable(String),
}

/// `salloc --no-shell --immediate ARGS`: an allocation granted now, if the cluster has room
/// for it now, as an interactive allocation is (in the request, not at the batch scheduler's
/// next pass, ~0.9 s or more later). salloc reads `SALLOC_*` where sbatch reads `SBATCH_*`:
/// the user's `SBATCH_*` of [`SALLOC_FROM_SBATCH`] are passed on as their `SALLOC_*`, so the
/// allocation lands where the holder batch job (and every batch job) would.
pub(crate) fn allocate_now(args: &[String]) -> io::Result<Grant> {
    let mut all = vec!["--no-shell".to_string(), "--immediate".to_string()];
    all.extend(args.iter().cloned());
    let env = salloc_env_from_sbatch(|k| std::env::var(k).ok());
    let reply = run_with_env("salloc", &all, None, env)?;
    if !reply.ok() {
        return Ok(Grant::NotNow);
    }
    Ok(match parse_granted(&reply.stderr) {
        Some(job) => Grant::Granted(job),
        None => Grant::Unreadable(reply.stderr.trim().to_string()),
    })
}

/// The `SBATCH_*` variables that decide where a job runs and whom it is charged to, each with
/// the `SALLOC_*` that means the same to salloc.
pub(crate) const SALLOC_FROM_SBATCH: &[(&str, &str)] = &[
    ("SBATCH_ACCOUNT", "SALLOC_ACCOUNT"),
    ("SBATCH_PARTITION", "SALLOC_PARTITION"),
    ("SBATCH_QOS", "SALLOC_QOS"),
    ("SBATCH_RESERVATION", "SALLOC_RESERVATION"),
    ("SBATCH_CONSTRAINT", "SALLOC_CONSTRAINT"),
    ("SBATCH_WCKEY", "SALLOC_WCKEY"),
    ("SBATCH_TIMELIMIT", "SALLOC_TIMELIMIT"),
];

/// `SALLOC_X=value` for each `SBATCH_X` set (as `lookup` finds it) whose `SALLOC_X` is not:
/// a `SALLOC_*` the user set still wins, and options on the command line win over both, as
/// they do over `SBATCH_*` for sbatch.
pub(crate) fn salloc_env_from_sbatch(
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    SALLOC_FROM_SBATCH
        .iter()
        .filter(|(_, salloc)| lookup(salloc).is_none())
        .filter_map(|(sbatch, salloc)| Some((salloc.to_string(), lookup(sbatch)?)))
        .collect()
}

/// The id in salloc's `salloc: Granted job allocation ID`.
pub(crate) fn parse_granted(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("Granted job allocation ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `ID` or `ID;cluster`, as `sbatch --parsable` prints it (after any warnings).
pub(crate) fn parse_job_id(out: &str) -> Option<u64> {
    let last = out.lines().rev().find(|l| !l.trim().is_empty())?;
    last.trim().split(';').next()?.parse().ok()
}

/// `scancel` of these jobs; a job already gone is not an error.
pub(crate) fn cancel(jobs: &[u64]) -> io::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let args: Vec<String> = jobs.iter().map(u64::to_string).collect();
    let reply = run("scancel", &args, None)?;
    // scancel says "Invalid job id specified" (exit 1) for a job that already ended and was
    // forgotten: that is what we wanted.
    if reply.ok() || reply.stderr.contains("Invalid job id") {
        Ok(())
    } else {
        Err(io::Error::other(reply.error("scancel")))
    }
}

/// A job's state as `squeue` or `scontrol` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting in the queue (also requeued, held, configuring), with Slurm's reason.
    Pending(String),
    /// Running (or suspended, completing) on these nodes.
    Running(String),
    /// Ended.
    Ended(Ending),
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `COMPLETED` or `FAILED`: the job script ran to its end and wrote its exit code.
    Finished,
    Cancelled,
    Lost(JobEnd),
}

impl State {
    /// The state named `name` (`PENDING`, `RUNNING`, `NODE_FAIL`...), with the nodes or
    /// the reason squeue gave; `None` for a name not known here.
    pub fn parse(name: &str, nodes: &str, reason: &str) -> Option<State> {
        let reason = reason.trim();
        let reason = if reason == "None" || reason == "(null)" {
            ""
        } else {
            reason
        };
        Some(match name.trim() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "CONFIGURING"
            | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => State::Pending(reason.to_string()),
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
            | "RESIZING" => State::Running(nodes.trim().to_string()),
            "COMPLETED" | "FAILED" => State::Ended(Ending::Finished),
            "CANCELLED" => State::Ended(Ending::Cancelled),
            "NODE_FAIL" => State::Ended(Ending::Lost(JobEnd::NodeFail)),
            "PREEMPTED" => State::Ended(Ending::Lost(JobEnd::Preempted)),
            "BOOT_FAIL" => State::Ended(Ending::Lost(JobEnd::BootFail)),
            "OUT_OF_MEMORY" => State::Ended(Ending::Lost(JobEnd::OutOfMemory)),
            "TIMEOUT" | "DEADLINE" => State::Ended(Ending::Lost(JobEnd::TimeLimit)),
            "REVOKED" => State::Ended(Ending::Cancelled),
            _ => return None,
        })
    }
}

/// One job of a `squeue` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub id: u64,
    pub name: String,
    pub comment: String,
    pub state: Option<State>,
}

/// The `--format` [`parse_listing`] reads: free text (the reason) last.
pub(crate) const LISTING_FORMAT: &str = "--format=%i|%T|%j|%k|%N|%r";

/// `squeue --noheader ARGS` in [`LISTING_FORMAT`]. Jobs unknown to the controller are simply
/// not listed (when every one asked for is unknown, squeue exits 1 saying so: an empty list).
pub(crate) fn list(args: &[String]) -> io::Result<Vec<Listed>> {
    let mut all = vec!["--noheader".to_string(), LISTING_FORMAT.to_string()];
    all.extend(args.iter().cloned());
    let reply = run("squeue", &all, None)?;
    if !reply.ok() {
        if reply.stderr.contains("Invalid job id") {
            return Ok(Vec::new());
        }
        return Err(io::Error::other(reply.error("squeue")));
    }
    Ok(parse_listing(&reply.stdout))
}

pub(crate) fn parse_listing(out: &str) -> Vec<Listed> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(6, '|').collect();
            if f.len() < 6 {
                return None;
            }
            Some(Listed {
                id: f[0].trim().parse().ok()?,
                state: State::parse(f[1], f[4], f[5]),
                name: f[2].trim().to_string(),
                comment: f[3].trim().to_string(),
            })
        })
        .collect()
}

/// What `scontrol show job` says of an ended job: its state and exit code. `None` once the
/// controller has forgotten it.
pub(crate) fn show_job(job: u64) -> Option<(Option<State>, Option<i32>)> {
    let reply = run(
        "scontrol",
        &[
            "show".into(),
            "job".into(),
            "--oneliner".into(),
            job.to_string(),
        ],
        None,
    )
    .ok()?;
    if !reply.ok() {
        return None;
    }
    let field = |key: &str| {
        reply
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let state = field("JobState").and_then(|s| State::parse(&s, "", ""));
    // `ExitCode=<code>:<signal>`.
    let code = field("ExitCode").and_then(|c| c.split(':').next()?.parse().ok());
    Some((state, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_parsable_output_gives_the_id() {
        assert_eq!(parse_job_id("123\n"), Some(123));
        assert_eq!(parse_job_id("123;cluster2\n"), Some(123));
        assert_eq!(
            parse_job_id("sbatch: warning: something\n77\n"),
            Some(77),
            "warnings come first"
        );
        assert_eq!(parse_job_id("nope"), None);
    }

    #[test]
    fn sallocs_grant_gives_the_id() {
        assert_eq!(
            parse_granted(
                "salloc: Granted job allocation 41\nsalloc: Nodes vm are ready for job\n"
            ),
            Some(41)
        );
        assert_eq!(
            parse_granted("salloc: Pending job allocation 42\nsalloc: Granted job allocation 42\n"),
            Some(42)
        );
        assert_eq!(
            parse_granted("salloc: error: Unable to allocate resources\n"),
            None
        );
    }

    #[test]
    fn sbatch_placement_variables_reach_salloc_unless_salloc_has_its_own() {
        let user = |k: &str| match k {
            "SBATCH_ACCOUNT" => Some("lab".to_string()),
            "SBATCH_PARTITION" => Some("gpu".to_string()),
            "SALLOC_PARTITION" => Some("short".to_string()),
            "SBATCH_QOS" => Some("high".to_string()),
            "SBATCH_EXPORT" => Some("NONE".to_string()),
            _ => None,
        };
        assert_eq!(
            salloc_env_from_sbatch(user),
            [
                ("SALLOC_ACCOUNT".to_string(), "lab".to_string()),
                ("SALLOC_QOS".to_string(), "high".to_string()),
            ],
            "SALLOC_PARTITION is the user's own; SBATCH_EXPORT has no salloc twin"
        );
        assert!(salloc_env_from_sbatch(|_| None).is_empty());
    }

    #[test]
    fn a_listing_reads_states_nodes_and_reasons() {
        let out = "12|PENDING|orch-a|orch-run=1-2|(null)|Resources\n\
                   13|RUNNING|orch-b|orch-run=1-2|vm|None\n\
                   14|NODE_FAIL|orch-c||vm|NodeDown\n\
                   15|PENDING|orch-d|x||Nodes required for job are DOWN, DRAINED or reserved\n\
                   garbage\n";
        let jobs = parse_listing(out);
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].state, Some(State::Pending("Resources".into())));
        assert_eq!(jobs[0].comment, "orch-run=1-2");
        assert_eq!(jobs[1].state, Some(State::Running("vm".into())));
        assert_eq!(
            jobs[2].state,
            Some(State::Ended(Ending::Lost(JobEnd::NodeFail)))
        );
        assert_eq!(
            jobs[3].state,
            Some(State::Pending(
                "Nodes required for job are DOWN, DRAINED or reserved".into()
            ))
        );
    }

    #[test]
    fn every_terminal_state_is_an_ending() {
        for name in [
            "BOOT_FAIL",
            "CANCELLED",
            "COMPLETED",
            "DEADLINE",
            "FAILED",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
            "TIMEOUT",
        ] {
            assert!(
                matches!(State::parse(name, "", ""), Some(State::Ended(_))),
                "{name}"
            );
        }
        assert_eq!(State::parse("WEIRD", "", ""), None);
    }
}
