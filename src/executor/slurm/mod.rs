//! The Slurm backend: each attempt is a Slurm job named `orch-<task-id>`, run by the cluster
//! instead of as a local child, either as
//!
//! - a **batch job** (`sbatch`, [`Launch::Batch`]): the command runs from a job script with
//!   its stdin, stdout and stderr in files on the shared filesystem and its exit code left in
//!   a file; orch learns the end from that file (a `stat` every 50 ms, no controller round
//!   trip) and the rest (pending, running, how a job that left no code ended) from one shared
//!   `squeue` per poll interval ([`monitor`]). Measured here: submit 6–20 ms, start ~0.9 s
//!   after submit, ~0.5 s of the cluster's own scheduling between one job's end and the next
//!   one's start. Nothing of it lives on orch's machine while it runs: the right shape for
//!   agent tasks, which run for minutes;
//! - a **step** ([`Launch::Step`]) of an allocation orch holds for the build (granted at once
//!   by `salloc --no-shell` when the cluster has room, else a queued batch job that only
//!   sleeps; asked for when the first step wants it and cancelled when the build ends or no
//!   step has run for a while): `srun --jobid=<allocation> --overlap` as a local child,
//!   with stdin, stdout and exit code through srun. Measured here: 51–119 ms a step, against
//!   95–200 ms for an `srun` with its own allocation and ~0.5 s for a batch job: the shape
//!   for many short shell tasks.
//!
//! Timeouts are orch's own (`scancel`): Slurm's time limits are whole minutes checked every
//! 30 s. Cancelling waits until the controller no longer lists the job as running, and the
//! build ends only when its jobs that ended lately have left the queue. Every job
//! carries `--comment=orch-run=<run id>`, and its id is listed with the crash guard, so a
//! SIGKILLed orch's jobs are cancelled ([`cancel_run`]); the journal keeps the ids too, for
//! the next build ([`reap_stale`]). A job is submitted with `--no-requeue`: a node failure or
//! preemption ends it, and orch retries it as it would a failed local attempt.

mod batch;
pub(crate) mod cli;
mod cluster;
mod monitor;
mod script;
pub(crate) mod spec;
mod step;

use std::io;
use std::time::Duration;

use super::backend::{Job, JobRecord, ProcessSpec};
use super::guard::Guard;
use super::local::Local;
use cluster::{wait_gone, Cluster};
pub use spec::{AllocationSpec, Launch, SlurmConfig, SlurmJobSpec};

/// Jobs of a Slurm cluster, through its client commands.
pub struct Slurm {
    cluster: Cluster,
    allocation: step::Allocation,
}

impl Slurm {
    /// With `guard`, the run id is the guard's, so that it finds the jobs it must cancel.
    pub fn new(config: SlurmConfig, guard: Option<&Guard>) -> Slurm {
        Slurm {
            allocation: step::Allocation::new(config.allocation.clone()),
            cluster: Cluster::new(config, guard),
        }
    }

    /// Starts `spec` as `job` says: a batch job is submitted now; a step starts when its
    /// job is waited for (the allocation may have to be queued for first).
    pub(super) fn start<'a>(
        &'a self,
        spec: &'a ProcessSpec,
        job: &'a SlurmJobSpec,
        local: &'a Local,
    ) -> io::Result<Box<dyn Job + 'a>> {
        match job.launch {
            Launch::Batch => Ok(Box::new(batch::BatchJob::submit(
                &self.cluster,
                spec,
                job,
                local,
            )?)),
            Launch::Step => Ok(Box::new(step::StepJob::new(
                &self.cluster,
                &self.allocation,
                spec,
                job,
                local,
            ))),
        }
    }

    /// Releases the allocation if no step has run in it for a while; its record if so.
    pub(super) fn tick(&self, local: &Local) -> Vec<JobRecord> {
        self.allocation.release_if_idle(local.guard())
    }

    /// Cancels the allocation (waited for) and waits for the jobs that ended lately to
    /// leave the queue; the records of every allocation this build held.
    pub(super) fn finish(&mut self, local: &Local) -> Vec<JobRecord> {
        let released = self
            .allocation
            .release_all(local.guard(), &self.cluster.monitor);
        self.cluster.settle();
        released
    }
}

/// Cancels what a run that died left in the queue, from the job ids its journal kept: those
/// still pending or running that orch submitted (its comment), so a reused id is left alone.
/// Returns how many were cancelled. Needs no configuration: the build that reaps may have no
/// Slurm task of its own.
pub fn reap_stale(jobs: &[u64]) -> usize {
    if jobs.is_empty() {
        return 0;
    }
    let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
    let Ok(listed) = cli::list(&[format!("--jobs={}", ids.join(","))]) else {
        return 0;
    };
    let ours: Vec<u64> = listed
        .iter()
        .filter(|l| l.comment.starts_with(cli::COMMENT_PREFIX))
        .map(|l| l.id)
        .collect();
    if ours.is_empty() || cli::cancel(&ours).is_err() {
        return 0;
    }
    wait_gone(&ours, Duration::from_secs(60));
    ours.len()
}

/// In the crash guard, once orch is gone: cancels the jobs orch listed, then any other job
/// of this run (submitted, but orch died before listing it), found by its comment.
pub fn cancel_run(run_id: Option<&str>, listed: &[u64]) {
    let _ = cli::cancel(listed);
    let Some(run_id) = run_id else { return };
    let tag = format!("{}{run_id}", cli::COMMENT_PREFIX);
    if let Ok(jobs) = cli::list(&["--me".to_string()]) {
        let left: Vec<u64> = jobs
            .iter()
            .filter(|j| j.comment == tag)
            .map(|j| j.id)
            .collect();
        let _ = cli::cancel(&left);
    }
}
