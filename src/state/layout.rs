//! The state directory's layout: where each file orch keeps lives, and agent ids.

use std::io;
use std::path::PathBuf;

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct StateLayout {
    pub dir: PathBuf,
}

impl StateLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateLayout { dir: dir.into() }
    }
    pub fn master_plan(&self) -> PathBuf {
        self.dir.join("master_plan.md")
    }
    pub fn agent_tasks_dir(&self) -> PathBuf {
        self.dir.join("agent_tasks")
    }
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }
    /// `agent_tasks/agent-01.md`: the exact prompt the agent got.
    pub fn task_file(&self, agent_id: &str) -> PathBuf {
        self.agent_tasks_dir()
            .join(format!("{}.md", agent_id.to_ascii_lowercase()))
    }
    /// `results/agent-01-result.md`: what the agent returned.
    pub fn result_file(&self, agent_id: &str) -> PathBuf {
        self.results_dir()
            .join(format!("{}-result.md", agent_id.to_ascii_lowercase()))
    }
    pub fn final_output(&self) -> PathBuf {
        self.dir.join("final_output.md")
    }
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join("state.bin")
    }
    /// The JSON snapshot of orch before 0.2, read once to keep its agent ids.
    pub fn legacy_snapshot(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// Files of older orch versions that nothing reads any more.
    pub fn legacy_files(&self) -> [PathBuf; 3] {
        [
            self.legacy_snapshot(),
            self.dir.join("stat_cache.json"),
            self.dir.join("plan_cache.json"),
        ]
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }
    pub fn stat_cache(&self) -> PathBuf {
        self.dir.join("stat_cache.bin")
    }
    /// What the last all-up-to-date build rested on, for the next one's fast path.
    pub fn up_to_date(&self) -> PathBuf {
        self.dir.join("up_to_date.bin")
    }
    /// What agent tasks cost before: each task's last cost and each agent's recent ones,
    /// for budget projections.
    pub fn costs(&self) -> PathBuf {
        self.dir.join("costs.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// Per-attempt stdout/stderr of each task, for post-mortems.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// `runs/<start ms>.jsonl`: each build's events, for `orch report` (see
    /// `reporter/record.rs`).
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }
    /// What `orch report` writes by default.
    pub fn report(&self) -> PathBuf {
        self.dir.join("report.html")
    }

    /// `fanout/T-01.json`: the items task T-01 answered for the `foreach_from` templates
    /// naming it, as a JSON array of strings (task ids are plain file names).
    pub fn answered_items(&self, source: &str) -> PathBuf {
        self.dir.join("fanout").join(format!("{source}.json"))
    }

    pub fn create_dirs(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.agent_tasks_dir())?;
        std::fs::create_dir_all(self.results_dir())?;
        std::fs::create_dir_all(self.logs_dir())?;
        Ok(())
    }
}

/// `Agent-07` for the 7th task; more digits when there are more than 99.
pub fn agent_id(n: u32) -> String {
    format!("Agent-{n:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_stable() {
        assert_eq!(agent_id(7), "Agent-07");
        assert_eq!(agent_id(123), "Agent-123");
    }
}
