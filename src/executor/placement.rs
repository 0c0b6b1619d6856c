//! Where a task runs, as each level of a plan (its settings, an agent, the task itself) says
//! it: the executor and the Slurm options, every one of them left unset to inherit from the
//! level above. [`Placement::resolve`] folds the levels into the options of one attempt.

use std::time::Duration;

use super::slurm::spec::{Launch, SlurmJobSpec};

/// The executors a task can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// A child process on this machine.
    Local,
    /// A Slurm job (or step).
    Slurm,
}

impl ExecutorKind {
    pub fn parse(s: &str) -> Option<ExecutorKind> {
        match s {
            "local" => Some(ExecutorKind::Local),
            "slurm" => Some(ExecutorKind::Slurm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// Slurm options as one level writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<Duration>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    /// Added to the levels' above (an account in settings, a GPU on one task).
    pub args: Vec<String>,
    pub launch: Option<Launch>,
}

impl SlurmOptions {
    /// These options, with what `lower` sets taking over (and its args added).
    fn then(&self, lower: &SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: lower.partition.clone().or_else(|| self.partition.clone()),
            time: lower.time.or(self.time),
            cpus: lower.cpus.or(self.cpus),
            mem: lower.mem.clone().or_else(|| self.mem.clone()),
            args: self.args.iter().chain(&lower.args).cloned().collect(),
            launch: lower.launch.or(self.launch),
        }
    }
}

/// One level's word on where its tasks run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub executor: Option<ExecutorKind>,
    pub slurm: SlurmOptions,
}

/// Slurm's `--time` in whole minutes, rounded up (at least one).
pub fn whole_minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// `orch-<task_id>`, safe as a Slurm job name and a file name: a fan-out instance's id holds
/// its item (`review[src/a.ts]`), whose `/` would make the job's files a path and whose `|`
/// or spaces would split `squeue`'s columns. Those become `_`, and a long id is cut.
pub fn job_name(task_id: &str) -> String {
    const MAX: usize = 100;
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.[]".contains(c);
    let kept: String = task_id
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .take(MAX)
        .collect();
    format!("orch-{kept}")
}

impl Placement {
    /// Where a task with these levels (settings first, the task last) runs, `chosen`
    /// (`--executor`) deciding over all of them: `None` for a local child, else the options
    /// of its Slurm job named `orch-<task_id>`.
    pub fn resolve(
        levels: &[&Placement],
        chosen: Option<ExecutorKind>,
        task_id: &str,
    ) -> Option<SlurmJobSpec> {
        let kind = chosen
            .or_else(|| levels.iter().rev().find_map(|l| l.executor))
            .unwrap_or(ExecutorKind::Local);
        if kind == ExecutorKind::Local {
            return None;
        }
        let opts = levels
            .iter()
            .fold(SlurmOptions::default(), |acc, l| acc.then(&l.slurm));
        Some(SlurmJobSpec {
            name: job_name(task_id),
            launch: opts.launch.unwrap_or(Launch::Batch),
            partition: opts.partition,
            time_minutes: opts.time.map(whole_minutes),
            cpus: opts.cpus,
            mem: opts.mem,
            args: opts.args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_levels_win_and_args_add_up() {
        let settings = Placement {
            executor: Some(ExecutorKind::Slurm),
            slurm: SlurmOptions {
                partition: Some("main".into()),
                time: Some(Duration::from_secs(90)),
                args: vec!["--account=a".into()],
                ..Default::default()
            },
        };
        let agent = Placement::default();
        let task = Placement {
            executor: None,
            slurm: SlurmOptions {
                partition: Some("gpu".into()),
                cpus: Some(4),
                args: vec!["--gres=gpu:1".into()],
                ..Default::default()
            },
        };
        let job = Placement::resolve(&[&settings, &agent, &task], None, "t1").unwrap();
        assert_eq!(job.name, "orch-t1");
        assert_eq!(
            job_name("review[src/a b|c.ts]"),
            "orch-review[src_a_b_c.ts]"
        );
        assert_eq!(job.launch, Launch::Batch);
        assert_eq!(job.partition.as_deref(), Some("gpu"));
        assert_eq!(job.time_minutes, Some(2), "90 s is two whole minutes");
        assert_eq!(job.cpus, Some(4));
        assert_eq!(job.args, ["--account=a", "--gres=gpu:1"]);
    }

    #[test]
    fn the_lowest_level_naming_an_executor_decides_unless_chosen() {
        let slurm = Placement {
            executor: Some(ExecutorKind::Slurm),
            ..Default::default()
        };
        let local = Placement {
            executor: Some(ExecutorKind::Local),
            ..Default::default()
        };
        let unset = Placement::default();
        assert!(Placement::resolve(&[&slurm, &local], None, "t").is_none());
        assert!(Placement::resolve(&[&local, &slurm, &unset], None, "t").is_some());
        assert!(
            Placement::resolve(&[&unset], None, "t").is_none(),
            "local by default"
        );
        assert!(Placement::resolve(&[&local], Some(ExecutorKind::Slurm), "t").is_some());
        assert!(Placement::resolve(&[&slurm], Some(ExecutorKind::Local), "t").is_none());
    }
}
