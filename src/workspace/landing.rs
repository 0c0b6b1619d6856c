//! A worktree task's landing, from the end of its run to its merge record: the change is
//! not yet committed or merged, and without a trace of it the next build would take the
//! worktree for a killed run's (reclaim it, and run the paid task again). So a marker
//! (`worktrees/<task>.landing`, fsynced) says, before the commit, that the run finished and
//! what to record; the next build that finds it with the worktree lands the change itself
//! (commit, merge, or keep it as a conflict). It goes once the merge record or a kept
//! record has taken over, or with the worktree.

use std::io;
use std::path::PathBuf;

use super::worktree::safe_name;
use super::Repo;

/// Set by tests only: as [`super::merge::PAUSE_ENV`], once the landing marker is written,
/// before the change is committed.
pub const PAUSE_ENV: &str = "ORCH_TEST_LAND_PAUSE";

/// What a finished run leaves for its change to land, should the build stop first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Landing {
    pub task: String,
    pub agent_id: String,
    /// The commit the worktree started from.
    pub start: String,
    /// What was brought into the worktree that is not the task's change.
    pub included: Vec<String>,
    /// The change's commit message.
    pub message: String,
    /// The success to record once it is in (opaque here).
    pub success: Option<serde_json::Value>,
}

impl Repo {
    pub(crate) fn landing_path(&self, task: &str) -> PathBuf {
        self.worktrees_dir()
            .join(format!("{}.landing", safe_name(task)))
    }

    /// Writes the marker of `landing` (fsynced), then a test's pause.
    pub fn begin_landing(&self, landing: &Landing) -> io::Result<()> {
        let json = serde_json::to_vec(landing).map_err(io::Error::other)?;
        crate::disk::persist_atomic(&self.landing_path(&landing.task), &json)?;
        self.pause_for_tests(PAUSE_ENV, &landing.task);
        Ok(())
    }

    /// Removes task `task`'s landing marker, if any.
    pub fn drop_landing(&self, task: &str) {
        let _ = std::fs::remove_file(self.landing_path(task));
    }

    /// The landing markers a stopped build left (one that does not read is removed).
    pub fn landings(&self) -> Vec<Landing> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.worktrees_dir()) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "landing") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Landing>(&b).ok())
            {
                Some(l) => out.push(l),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out.sort_by(|a, b| a.task.cmp(&b.task));
        out
    }
}
