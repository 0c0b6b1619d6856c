//! The backend a build uses: local children, and a Slurm cluster when the plan sends tasks
//! there. Each spec goes where its `slurm` field says; a crashed run's records go to the
//! backend that made them (a Slurm job id is cancelled even by a build with no Slurm task of
//! its own, in case the last one had some).

use std::io;

use super::backend::{Backend, Job, JobRecord, ProcessSpec};
use super::guard::Guard;
use super::local::Local;
use super::slurm::spec::SlurmConfig;
use super::slurm::{self, Slurm};

pub struct Executors {
    local: Local,
    slurm: Option<Slurm>,
}

impl Executors {
    /// Local children under `guard`; with `slurm`, Slurm jobs too (the guard, if any, then
    /// cancels them should orch die: make it with [`Guard::with_slurm`]).
    pub fn new(guard: Option<Guard>, slurm: Option<SlurmConfig>) -> Executors {
        let slurm = slurm.map(|c| Slurm::new(c, guard.as_ref()));
        Executors {
            local: Local::new(guard),
            slurm,
        }
    }
}

impl Backend for Executors {
    fn start<'a>(&'a self, spec: &'a ProcessSpec) -> io::Result<Box<dyn Job + 'a>> {
        match (&spec.slurm, &self.slurm) {
            (None, _) => self.local.start(spec),
            (Some(job), Some(slurm)) => slurm.start(spec, job, &self.local),
            (Some(job), None) => Err(io::Error::other(format!(
                "{} is meant for Slurm, but this build has no Slurm executor",
                job.name
            ))),
        }
    }

    fn holds_stdin(&self, spec: &ProcessSpec) -> bool {
        spec.slurm.is_none()
    }

    fn reap_stale(&self, left: &[JobRecord]) -> usize {
        let jobs: Vec<u64> = left
            .iter()
            .filter_map(|r| match *r {
                JobRecord::Slurm { job } => Some(job),
                JobRecord::Local { .. } => None,
            })
            .collect();
        // Jobs first: a step's srun, stopped next, would otherwise be the one to end it.
        slurm::reap_stale(&jobs) + self.local.reap_stale(left)
    }

    fn tick(&self) -> Vec<JobRecord> {
        match &self.slurm {
            Some(s) => s.tick(&self.local),
            None => Vec::new(),
        }
    }

    fn finish(&mut self) -> Vec<JobRecord> {
        let mut released = match &mut self.slurm {
            Some(s) => s.finish(&self.local),
            None => Vec::new(),
        };
        released.extend(self.local.finish());
        released
    }
}
