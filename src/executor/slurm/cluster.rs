//! What every job of one build's Slurm backend shares: the configuration, the run's id (in
//! each job's comment), the one view of the queue ([`Monitor`]), and how a job is cancelled
//! and waited for.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
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
    /// Jobs that ended by their exit file, and when: the script has written its code, but
    /// Slurm may list the job as completing a moment longer. The build's end waits for them.
    settling: Mutex<Vec<(u64, Instant)>>,
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
            settling: Mutex::new(Vec::new()),
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

    /// `job` was seen to end; Slurm may list it a moment longer.
    pub fn ended(&self, job: u64) {
        self.settling.lock().unwrap().push((job, Instant::now()));
    }

    /// Waits (bounded) until the jobs that ended lately have left the queue, so that orch
    /// never exits with one of its jobs still listed. Ends long past are not asked about.
    pub fn settle(&self) {
        let recent: Vec<u64> = std::mem::take(&mut *self.settling.lock().unwrap())
            .into_iter()
            .filter(|(_, at)| at.elapsed() < SETTLED_AFTER)
            .map(|(job, _)| job)
            .collect();
        if !recent.is_empty() {
            wait_gone(&recent, Duration::from_secs(10));
        }
    }

    /// Cancels `job` and waits (bounded) until the controller lists it as ended or not at all.
    pub fn cancel_and_wait(&self, job: u64) -> io::Result<()> {
        cli::cancel(&[job])?;
        wait_gone(&[job], Duration::from_secs(60));
        Ok(())
    }
}

/// A job that ended this long ago is surely no longer listed as completing.
const SETTLED_AFTER: Duration = Duration::from_secs(60);

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
