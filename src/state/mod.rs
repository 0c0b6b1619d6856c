//! Everything orch keeps on disk under the state directory (`.orchestrator/` by default).
//!
//! Durability model: a snapshot (`state.json`) written atomically (temp file, fsync, rename)
//! plus an append-only journal (`journal.jsonl`) of what happened since. Replaying the journal
//! over the snapshot gives the current state; a torn last line is ignored. A journal line that
//! a power loss drops only makes a task run again, and a recorded success whose outputs were
//! torn fails the output-hash check, so neither can present half-written work as complete.

pub mod lock;
pub mod master_plan;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::fingerprint::Digest;
use crate::plan::Plan;

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
        self.dir.join("state.json")
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }
    pub fn stat_cache(&self) -> PathBuf {
        self.dir.join("stat_cache.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// Per-attempt stdout/stderr of each task, for post-mortems.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
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

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that readers see the old content or the new, never a mix:
/// a temp file beside it, fsync, rename over, fsync the directory.
pub fn persist_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes, true)
}

/// As [`persist_atomic`], without the fsyncs: for files that are cheap to redo, whose torn
/// copy after a power loss the output-hash check catches (shell results, the periodic
/// master_plan.md, the plan cache).
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes, false)
}

fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What orch remembers about a task's last successful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub fingerprint: Digest,
    pub definition: Digest,
    /// The definition by field (`prompt`, `run`, `agent`, ...), for `orch explain`. Empty in
    /// records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definition_fields: Vec<(String, Digest)>,
    /// Input path -> content hash, sorted by path.
    pub inputs: Vec<(String, Digest)>,
    /// Dep id -> digest of the dep's fingerprint and outputs.
    pub deps: Vec<(String, Digest)>,
    /// Declared outputs and the result file -> content hash.
    pub outputs: Vec<(String, Digest)>,
    /// Unix seconds.
    pub finished_at: u64,
    pub duration_ms: u64,
    pub retries: u32,
}

/// The last known status of a task, shown in the status table across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub status: master_plan::Status,
    pub start: Option<String>,
    pub end: Option<String>,
    pub retries: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Task id -> agent number, assigned once and kept.
    pub agent_numbers: IndexMap<String, u32>,
    pub records: HashMap<String, TaskRecord>,
    #[serde(default)]
    pub statuses: HashMap<String, StatusRecord>,
    /// Digest of the last aggregation's inputs, to skip an unchanged (and maybe paid) merge.
    #[serde(default)]
    pub aggregate_digest: Option<Digest>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    Succeeded {
        task: String,
        record: TaskRecord,
    },
    /// The task's previous record no longer describes its outputs.
    Invalidated {
        task: String,
    },
    Status {
        task: String,
        status: StatusRecord,
    },
    /// A child process group was started; if orch dies, the next run stops it.
    Spawned {
        task: String,
        pgid: i32,
        start_ticks: u64,
    },
    Reaped {
        pgid: i32,
    },
    /// The final output was merged from results with this digest.
    Aggregated {
        digest: Digest,
    },
    /// The run ended cleanly with this journal left in place (not yet folded into the
    /// snapshot). Without it at the end, the journal is what an interrupted run left.
    Closed,
}

/// The loaded state plus an open journal. One per build, owned by the scheduling thread.
pub struct StateStore {
    pub layout: StateLayout,
    pub snapshot: Snapshot,
    /// Process groups a previous run started and never saw end.
    pub stale_groups: Vec<(String, i32, u64)>,
    journal: Option<File>,
    /// Whether the snapshot on disk is behind (journal lines, new ids, changed statuses).
    pub dirty: bool,
    /// The journal is what a run that did not finish left behind.
    pub interrupted: bool,
    journal_bytes: u64,
    snapshot_bytes: u64,
}

impl StateStore {
    /// Loads the snapshot and replays the journal over it.
    pub fn open(layout: StateLayout) -> io::Result<StateStore> {
        let mut snapshot: Snapshot = match std::fs::read(layout.snapshot()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is corrupt ({e}); delete it to start afresh",
                        layout.snapshot().display()
                    ),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(e),
        };
        let mut groups: IndexMap<i32, (String, u64)> = IndexMap::new();
        let mut journal_bytes = 0;
        let mut closed = true;
        let mut succeeded = Vec::new();
        if let Ok(text) = std::fs::read_to_string(layout.journal()) {
            journal_bytes = text.len() as u64;
            for line in text.lines() {
                // A torn last line (crash mid-write) does not parse and is dropped.
                let Ok(entry) = serde_json::from_str::<JournalEntry>(line) else {
                    closed = false;
                    continue;
                };
                closed = matches!(entry, JournalEntry::Closed);
                match entry {
                    JournalEntry::Closed => {}
                    JournalEntry::Aggregated { digest } => {
                        snapshot.aggregate_digest = Some(digest);
                    }
                    JournalEntry::Succeeded { task, record } => {
                        succeeded.push(task.clone());
                        snapshot.records.insert(task, record);
                    }
                    JournalEntry::Invalidated { task } => {
                        snapshot.records.remove(&task);
                    }
                    JournalEntry::Status { task, status } => {
                        snapshot.statuses.insert(task, status);
                    }
                    JournalEntry::Spawned {
                        task,
                        pgid,
                        start_ticks,
                    } => {
                        groups.insert(pgid, (task, start_ticks));
                    }
                    JournalEntry::Reaped { pgid } => {
                        groups.shift_remove(&pgid);
                    }
                }
            }
        }
        let stale_groups = groups
            .into_iter()
            .map(|(pgid, (task, ticks))| (task, pgid, ticks))
            .collect();
        let interrupted = journal_bytes > 0 && !closed;
        if interrupted {
            // The status table a crashed run left can predate these successes (it is
            // rewritten now and then): forget their statuses, so a 🟡 orch itself wrote is
            // not taken for a person's reset.
            for task in &succeeded {
                snapshot.statuses.remove(task);
            }
        }
        let snapshot_bytes = std::fs::metadata(layout.snapshot()).map_or(0, |m| m.len());
        Ok(StateStore {
            layout,
            snapshot,
            stale_groups,
            journal: None,
            dirty: false,
            interrupted,
            journal_bytes,
            snapshot_bytes,
        })
    }

    /// Gives every task of the plan an agent number, keeping the ones it already has.
    /// Returns whether any was new.
    pub fn assign_agent_ids(&mut self, plan: &Plan) -> bool {
        let mut next = self
            .snapshot
            .agent_numbers
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        let mut changed = false;
        for t in &plan.tasks {
            if !self.snapshot.agent_numbers.contains_key(&t.id) {
                next += 1;
                self.snapshot.agent_numbers.insert(t.id.clone(), next);
                changed = true;
            }
        }
        changed
    }

    pub fn agent_id_of(&self, task: &str) -> String {
        agent_id(self.snapshot.agent_numbers.get(task).copied().unwrap_or(0))
    }

    pub fn append(&mut self, entry: &JournalEntry) -> io::Result<()> {
        self.dirty = true;
        if self.journal.is_none() {
            self.journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.layout.journal())?,
            );
        }
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write per line: with O_APPEND a line is never interleaved with another.
        self.journal_bytes += line.len() as u64;
        self.journal.as_mut().unwrap().write_all(&line)
    }

    pub fn record_success(&mut self, task: &str, record: TaskRecord) -> io::Result<()> {
        self.append(&JournalEntry::Succeeded {
            task: task.to_string(),
            record: record.clone(),
        })?;
        self.snapshot.records.insert(task.to_string(), record);
        Ok(())
    }

    pub fn invalidate(&mut self, task: &str) -> io::Result<()> {
        if self.snapshot.records.remove(task).is_some() {
            self.append(&JournalEntry::Invalidated {
                task: task.to_string(),
            })?;
        }
        Ok(())
    }

    pub fn record_status(&mut self, task: &str, status: StatusRecord) -> io::Result<()> {
        self.append(&JournalEntry::Status {
            task: task.to_string(),
            status: status.clone(),
        })?;
        self.snapshot.statuses.insert(task.to_string(), status);
        Ok(())
    }

    /// Ends a run: a short journal stays (closed), a long one is folded into the snapshot.
    /// Rewriting the whole snapshot after every small build would make a one-task rebuild
    /// of a large plan pay for all of it.
    pub fn close(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.journal_bytes > (256 << 10).max(self.snapshot_bytes / 4) {
            self.compact()
        } else {
            self.append(&JournalEntry::Closed)?;
            self.dirty = false;
            Ok(())
        }
    }

    /// Folds the journal into a new snapshot and empties the journal.
    pub fn compact(&mut self) -> io::Result<()> {
        self.dirty = false;
        self.snapshot.version = 1;
        let bytes = serde_json::to_vec(&self.snapshot).map_err(io::Error::other)?;
        persist_atomic(&self.layout.snapshot(), &bytes)?;
        self.snapshot_bytes = bytes.len() as u64;
        self.journal_bytes = 0;
        self.journal = None;
        match std::fs::remove_file(self.layout.journal()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fp: &str) -> TaskRecord {
        TaskRecord {
            fingerprint: fp.into(),
            definition: "d".into(),
            definition_fields: vec![],
            inputs: vec![],
            deps: vec![],
            outputs: vec![],
            finished_at: 0,
            duration_ms: 1,
            retries: 0,
        }
    }

    #[test]
    fn journal_replays_over_snapshot_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let mut s = StateStore::open(layout.clone()).unwrap();
        s.record_success("a", record("1")).unwrap();
        s.compact().unwrap();
        s.record_success("b", record("2")).unwrap();
        s.record_success("a", record("3")).unwrap();
        s.invalidate("b").unwrap();
        drop(s);
        // Simulate a crash in the middle of writing a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(layout.journal())
            .unwrap();
        f.write_all(b"{\"event\":\"succeeded\",\"task\":\"c\",\"rec")
            .unwrap();
        let s = StateStore::open(layout).unwrap();
        assert_eq!(s.snapshot.records["a"].fingerprint, "3");
        assert!(!s.snapshot.records.contains_key("b"));
        assert!(!s.snapshot.records.contains_key("c"));
    }

    #[test]
    fn a_closed_journal_is_state_and_an_open_one_an_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let mut s = StateStore::open(layout.clone()).unwrap();
        s.record_success("a", record("1")).unwrap();
        s.close().unwrap();
        drop(s);
        assert!(layout.journal().exists(), "a short journal is kept, closed");
        let mut s = StateStore::open(layout.clone()).unwrap();
        assert!(!s.interrupted);
        assert_eq!(s.snapshot.records["a"].fingerprint, "1");
        s.record_success("b", record("2")).unwrap();
        drop(s); // no close: as if killed
        let s = StateStore::open(layout).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.snapshot.records.len(), 2);
    }

    #[test]
    fn persist_atomic_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        persist_atomic(&p, b"first").unwrap();
        persist_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn agent_ids_are_stable() {
        assert_eq!(agent_id(7), "Agent-07");
        assert_eq!(agent_id(123), "Agent-123");
    }
}
