//! What the Slurm backend is told: the options of one attempt's job ([`SlurmJobSpec`]), of the
//! allocation steps run in, and of the build ([`SlurmConfig`]). Plain data, which the
//! process spec and the plan's placements carry.

use std::path::PathBuf;
use std::time::Duration;

/// How one attempt runs on Slurm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Launch {
    /// Its own batch job (`sbatch`).
    Batch,
    /// A step (`srun --overlap`) of the allocation orch holds.
    Step,
}

/// The Slurm options of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJobSpec {
    /// The job's (or step's) name: `orch-<task-id>`.
    pub name: String,
    pub launch: Launch,
    pub partition: Option<String>,
    /// Slurm's time limit, whole minutes (`--time`).
    pub time_minutes: Option<u64>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`, as Slurm reads it (`4G`, `500M`).
    pub mem: Option<String>,
    /// More `sbatch` (or `srun`) options, as given.
    pub args: Vec<String>,
}

impl SlurmJobSpec {
    /// The options both `sbatch` and `srun` take, from the spec's fields.
    pub(super) fn resource_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(t) = self.time_minutes {
            a.push(format!("--time={t}"));
        }
        if let Some(c) = self.cpus {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            a.push(format!("--mem={m}"));
        }
        a
    }
}

/// The allocation steps run in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationSpec {
    pub partition: Option<String>,
    pub time_minutes: Option<u64>,
    /// `sbatch` options of the allocation (its size: `--nodes`, `--cpus-per-task`, ...).
    pub args: Vec<String>,
    /// Released after this long without a step, so that batch jobs of the same build (which
    /// may need its resources) do not wait behind an idle allocation.
    pub idle: Duration,
}

/// What the Slurm backend of one build needs to know.
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// Where job scripts' stdin, stdout, stderr and exit files go: on the filesystem the
    /// nodes share (the state directory's `slurm/`).
    pub work_dir: PathBuf,
    /// How often `squeue` is asked about the jobs in flight.
    pub poll: Duration,
    /// How long an ended job's exit file may take to show (a shared filesystem's attribute
    /// cache) before the controller's word is taken instead.
    pub file_wait: Duration,
    pub allocation: AllocationSpec,
}
