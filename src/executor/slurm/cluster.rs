//! What every job of one build's Slurm backend shares: the configuration, the run's id (in
//! each job's comment), the one view of the queue ([`Monitor`]), and how a job is cancelled
//! and waited for.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cli;
use super::monitor::Monitor;
use super::script::AttemptFiles;
use super::spec::SlurmConfig;
use crate::executor::guard::Guard;

/// What the jobs of one build share.
pub(super) struct Cluster {
    pub config: SlurmConfig,
    /// Every job carries it (`--comment=orch-run=<id>`, `ORCH_RUN_ID`).
    pub run_id: String,
    pub monitor: Monitor,
    /// Numbers attempts, for their file names.
    seq: AtomicU64,
}

impl Cluster {
    /// With `guard`, the run id is the guard's, so that it finds the jobs it must cancel.
    pub fn new(config: SlurmConfig, guard: Option<&Guard>) -> Cluster {
        let run_id = match guard {
            Some(g) => g.run_id().to_string(),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!("{}-{nanos}", std::process::id())
            }
        };
        Cluster {
            monitor: Monitor::new(config.poll),
            config,
            run_id,
            seq: AtomicU64::new(0),
        }
    }

    pub fn comment(&self) -> String {
        format!("--comment={}{}", cli::COMMENT_PREFIX, self.run_id)
    }

    /// A fresh set of files for one attempt of `name`.
    pub fn attempt_files(&self, name: &str) -> io::Result<AttemptFiles> {
        std::fs::create_dir_all(&self.config.work_dir)?;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{name}.{}.{n}", self.run_id);
        Ok(AttemptFiles::new(&self.config.work_dir, &stem))
    }

    /// Cancels `job` and waits (bounded) until the controller lists it as ended or not at all.
    pub fn cancel_and_wait(&self, job: u64) -> io::Result<()> {
        cli::cancel(&[job])?;
        wait_gone(&[job], Duration::from_secs(60));
        Ok(())
    }
}

/// Waits (bounded) until none of `jobs` is pending or running.
pub(super) fn wait_gone(jobs: &[u64], limit: Duration) -> bool {
    let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
    let args = vec![format!("--jobs={}", ids.join(","))];
    let end = Instant::now() + limit;
    loop {
        // Without --states=all, squeue lists only jobs still pending, running or completing.
        match cli::list(&args) {
            Ok(left) if left.is_empty() => return true,
            _ if Instant::now() >= end => return false,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
