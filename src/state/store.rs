//! The state store: the snapshot plus the journal replayed over it, and the journal lines a
//! build appends. One per build, owned by the scheduling thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::layout::{agent_id, StateLayout};
use super::preload::PreloadedSnapshot;
use super::snapshot::{SessionRecord, Snapshot, StatusRecord, TaskRecord};
use crate::clock::StartWindow;
use crate::disk::Digest;
use crate::disk::FileStamp;
use crate::disk::{persist_atomic, PathError};
use crate::executor::JobRecord;
use crate::plan::Plan;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    Succeeded {
        task: String,
        record: Arc<TaskRecord>,
    },
    /// The task's previous record no longer describes its outputs.
    Invalidated {
        task: String,
    },
    Status {
        task: String,
        status: StatusRecord,
    },
    /// A job was started (a local process group, or a Slurm job); if orch dies, the next
    /// run stops it. A line names one of `pgid` (with its start window) or `slurm_job`.
    Spawned {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgid: Option<i32>,
        /// The leader's start time, in clock ticks since boot: no earlier than this...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_ticks: Option<u64>,
        /// ...and no later than this (absent in older journals: exactly `start_ticks`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_ticks_latest: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slurm_job: Option<u64>,
    },
    /// The job a `spawned` line named has ended.
    Reaped {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgid: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slurm_job: Option<u64>,
    },
    /// A task's agent session started, or its last attempt ended (see [`SessionRecord`]).
    Session {
        task: String,
        session: SessionRecord,
    },
    /// The final output was merged from results with this digest.
    Aggregated {
        digest: Digest,
    },
    /// master_plan.md was written at the end of a build and then looked like this.
    PlanDocWritten {
        stamp: FileStamp,
    },
    /// The run ended cleanly with this journal left in place (not yet folded into the
    /// snapshot). Without it at the end, the journal is what an interrupted run left.
    Closed,
}

impl JournalEntry {
    pub fn spawned(task: String, job: &JobRecord) -> JournalEntry {
        match *job {
            JobRecord::Local { pgid, window } => JournalEntry::Spawned {
                task,
                pgid: Some(pgid),
                start_ticks: Some(window.earliest),
                start_ticks_latest: Some(window.latest),
                slurm_job: None,
            },
            JobRecord::Slurm { job } => JournalEntry::Spawned {
                task,
                pgid: None,
                start_ticks: None,
                start_ticks_latest: None,
                slurm_job: Some(job),
            },
        }
    }

    pub fn reaped(job: &JobRecord) -> JournalEntry {
        match *job {
            JobRecord::Local { pgid, .. } => JournalEntry::Reaped {
                pgid: Some(pgid),
                slurm_job: None,
            },
            JobRecord::Slurm { job } => JournalEntry::Reaped {
                pgid: None,
                slurm_job: Some(job),
            },
        }
    }
}

/// What names a job in the journal, so its `reaped` line finds its `spawned` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum JobKey {
    Group(i32),
    Slurm(u64),
}

impl JobKey {
    fn of(pgid: Option<i32>, slurm_job: Option<u64>) -> Option<JobKey> {
        match (pgid, slurm_job) {
            (Some(g), _) => Some(JobKey::Group(g)),
            (None, Some(j)) => Some(JobKey::Slurm(j)),
            (None, None) => None,
        }
    }
}

/// `e`, naming the state file it was about.
fn state_file(e: io::Error, path: PathBuf) -> io::Error {
    PathError::wrap("state file", path, e)
}

/// The loaded state plus an open journal. One per build, owned by the scheduling thread.
pub struct StateStore {
    pub layout: StateLayout,
    pub snapshot: Snapshot,
    /// Jobs (process groups, Slurm jobs) a previous run started and never saw end, with
    /// their tasks.
    pub stale_jobs: Vec<(String, JobRecord)>,
    journal: Option<File>,
    /// Journal lines not yet written: a build writes what one scheduling step produced in
    /// one call (see [`StateStore::flush_journal`]) instead of a call per line.
    pending: Vec<u8>,
    /// Whether the snapshot on disk is behind (journal lines, new ids, changed statuses).
    pub dirty: bool,
    /// The journal is what a run that did not finish left behind.
    pub interrupted: bool,
    /// The snapshot was read from an older orch's `state.json`.
    pub legacy: bool,
    journal_bytes: u64,
    snapshot_bytes: u64,
}

impl StateStore {
    /// Loads the snapshot and replays the journal over it.
    pub fn open(layout: StateLayout) -> io::Result<StateStore> {
        Self::open_preloaded(layout, None)
    }

    /// As [`Self::open`], taking the snapshot from `preloaded` if it is still current.
    pub fn open_preloaded(
        layout: StateLayout,
        preloaded: Option<PreloadedSnapshot>,
    ) -> io::Result<StateStore> {
        let (mut snapshot, legacy) = Self::read_snapshot(&layout, preloaded)?;
        let mut jobs: IndexMap<JobKey, (String, JobRecord)> = IndexMap::new();
        let mut journal_bytes = 0;
        let mut closed = true;
        let mut succeeded = Vec::new();
        let journal = match std::fs::read(layout.journal()) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(state_file(e, layout.journal())),
        };
        if let Some(bytes) = journal {
            journal_bytes = bytes.len() as u64;
            // A torn write can end in half a character: that line fails to parse, as any
            // torn line does, and the others are read.
            let text = String::from_utf8_lossy(&bytes);
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
                    JournalEntry::PlanDocWritten { stamp } => {
                        snapshot.plan_doc_stamp = Some(stamp);
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
                        start_ticks_latest,
                        slurm_job,
                    } => {
                        let record = match (pgid, slurm_job) {
                            (Some(pgid), _) => {
                                let earliest = start_ticks.unwrap_or(0);
                                let window = StartWindow {
                                    earliest,
                                    latest: start_ticks_latest.unwrap_or(earliest),
                                };
                                JobRecord::Local { pgid, window }
                            }
                            (None, Some(job)) => JobRecord::Slurm { job },
                            (None, None) => continue,
                        };
                        if let Some(key) = JobKey::of(pgid, slurm_job) {
                            jobs.insert(key, (task, record));
                        }
                    }
                    JournalEntry::Reaped { pgid, slurm_job } => {
                        if let Some(key) = JobKey::of(pgid, slurm_job) {
                            jobs.shift_remove(&key);
                        }
                    }
                    JournalEntry::Session { task, session } => {
                        snapshot.sessions.insert(task, session);
                    }
                }
            }
        }
        let stale_jobs = jobs.into_values().collect();
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
            stale_jobs,
            journal: None,
            pending: Vec::new(),
            dirty: false,
            interrupted,
            legacy,
            journal_bytes,
            snapshot_bytes,
        })
    }

    /// The snapshot file, or the JSON one of an older orch, or an empty snapshot.
    fn read_snapshot(
        layout: &StateLayout,
        preloaded: Option<PreloadedSnapshot>,
    ) -> io::Result<(Snapshot, bool)> {
        let corrupt = |path: PathBuf, e: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt ({e}); delete it to start afresh",
                    path.display()
                ),
            )
        };
        if let Some(decoded) = preloaded.and_then(|p| p.take_if_current(&layout.snapshot())) {
            return decoded
                .map(|s| (s, false))
                .map_err(|e| corrupt(layout.snapshot(), &e));
        }
        match std::fs::read(layout.snapshot()) {
            Ok(bytes) => {
                return Snapshot::decode(&bytes)
                    .map(|s| (s, false))
                    .map_err(|e| corrupt(layout.snapshot(), &e))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(state_file(e, layout.snapshot())),
        }
        match std::fs::read(layout.legacy_snapshot()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(|s| (s, true))
                .map_err(|e| corrupt(layout.legacy_snapshot(), &e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Snapshot::default(), false)),
            Err(e) => Err(state_file(e, layout.legacy_snapshot())),
        }
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

    /// Adds a line to the journal. It reaches the file at the next [`Self::flush_journal`]
    /// (or once 64 KiB wait, or when the store closes or is dropped): a process killed in
    /// between loses only lines of work it had not reported as done, which the next run
    /// redoes.
    pub fn append(&mut self, entry: &JournalEntry) -> io::Result<()> {
        self.dirty = true;
        let before = self.pending.len();
        serde_json::to_writer(&mut self.pending, entry).map_err(io::Error::other)?;
        self.pending.push(b'\n');
        self.journal_bytes += (self.pending.len() - before) as u64;
        if self.pending.len() >= 64 << 10 {
            self.flush_journal()?;
        }
        Ok(())
    }

    /// Writes the lines waiting since the last call, in one call: whole lines only, so with
    /// O_APPEND no line is interleaved with another writer's, and a crash mid-write leaves at
    /// most a torn last line, which replay ignores.
    pub fn flush_journal(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.journal.is_none() {
            self.journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.layout.journal())
                    .map_err(|e| state_file(e, self.layout.journal()))?,
            );
        }
        let written = self.journal.as_mut().unwrap().write_all(&self.pending);
        self.pending.clear();
        written.map_err(|e| state_file(e, self.layout.journal()))
    }

    pub fn record_success(&mut self, task: &str, record: TaskRecord) -> io::Result<()> {
        let record = Arc::new(record);
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

    /// Remembers how master_plan.md looks after orch wrote it.
    pub fn record_plan_doc(&mut self, stamp: Option<FileStamp>) -> io::Result<()> {
        if self.snapshot.plan_doc_stamp == stamp {
            return Ok(());
        }
        self.snapshot.plan_doc_stamp = stamp;
        match stamp {
            Some(stamp) => self.append(&JournalEntry::PlanDocWritten { stamp }),
            // A stamp on disk from before cannot match the file written since.
            None => Ok(()),
        }
    }

    pub fn record_session(&mut self, task: &str, session: SessionRecord) -> io::Result<()> {
        if self.snapshot.sessions.get(task) == Some(&session) {
            return Ok(());
        }
        self.append(&JournalEntry::Session {
            task: task.to_string(),
            session: session.clone(),
        })?;
        self.snapshot.sessions.insert(task.to_string(), session);
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
            self.flush_journal()?;
            self.dirty = false;
            Ok(())
        }
    }

    /// Folds the journal into a new snapshot and empties the journal.
    pub fn compact(&mut self) -> io::Result<()> {
        // Written first: should the snapshot fail, the journal still holds everything.
        self.flush_journal()?;
        self.dirty = false;
        let bytes = self.snapshot.encode();
        persist_atomic(&self.layout.snapshot(), &bytes)
            .map_err(|e| state_file(e, self.layout.snapshot()))?;
        // Their content now lives in the binary files.
        for old in self.layout.legacy_files() {
            let _ = std::fs::remove_file(old);
        }
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

impl Drop for StateStore {
    /// A run that ends without closing (an error on the way out) still keeps its lines.
    fn drop(&mut self) {
        let _ = self.flush_journal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::tests::record;

    fn group(pgid: i32) -> JobRecord {
        JobRecord::Local {
            pgid,
            window: StartWindow::exact(1),
        }
    }

    /// Writes `bytes` at the end of the journal, as another writer or a crash would leave them.
    fn append_to_journal(layout: &StateLayout, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(layout.journal())
            .unwrap();
        f.write_all(bytes).unwrap();
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
        append_to_journal(&layout, b"{\"event\":\"succeeded\",\"task\":\"c\",\"rec");
        let s = StateStore::open(layout).unwrap();
        assert_eq!(s.snapshot.records["a"].fingerprint, Digest::of(b"3"));
        assert!(!s.snapshot.records.contains_key("b"));
        assert!(!s.snapshot.records.contains_key("c"));
    }

    #[test]
    fn journal_lines_reach_the_file_at_a_flush_a_drop_or_64_kib() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let on_disk = || std::fs::read_to_string(layout.journal()).unwrap_or_default();
        let mut s = StateStore::open(layout.clone()).unwrap();
        s.record_success("a", record("1")).unwrap();
        s.append(&JournalEntry::reaped(&group(7))).unwrap();
        assert_eq!(on_disk(), "", "buffered until the scheduler waits");
        s.flush_journal().unwrap();
        assert_eq!(on_disk().lines().count(), 2);
        assert!(on_disk().ends_with('\n'), "whole lines only");
        s.flush_journal().unwrap(); // nothing waiting: nothing written
        assert_eq!(on_disk().lines().count(), 2);
        // A long step does not hold everything in memory.
        let mut n = 2;
        while on_disk().lines().count() == 2 {
            s.append(&JournalEntry::reaped(&group(n))).unwrap();
            n += 1;
        }
        assert!(on_disk().len() >= 64 << 10);
        s.append(&JournalEntry::reaped(&group(-1))).unwrap();
        drop(s);
        assert!(on_disk().ends_with("{\"event\":\"reaped\",\"pgid\":-1}\n"));
        let s = StateStore::open(layout.clone()).unwrap();
        assert_eq!(s.snapshot.records["a"].fingerprint, Digest::of(b"1"));
    }

    #[test]
    fn unreaped_groups_are_replayed_with_their_start_windows() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let mut s = StateStore::open(layout.clone()).unwrap();
        let window = StartWindow {
            earliest: 500,
            latest: 501,
        };
        let local = |pgid| JobRecord::Local { pgid, window };
        s.append(&JournalEntry::spawned("a".into(), &local(41)))
            .unwrap();
        s.append(&JournalEntry::spawned("b".into(), &local(42)))
            .unwrap();
        s.append(&JournalEntry::reaped(&local(41))).unwrap();
        drop(s);
        // A line from before the window was recorded: one exact start time.
        append_to_journal(
            &layout,
            b"{\"event\":\"spawned\",\"task\":\"c\",\"pgid\":43,\"start_ticks\":7}\n",
        );
        let s = StateStore::open(layout).unwrap();
        assert_eq!(
            s.stale_jobs,
            vec![
                ("b".to_string(), local(42)),
                (
                    "c".to_string(),
                    JobRecord::Local {
                        pgid: 43,
                        window: StartWindow::exact(7)
                    }
                )
            ]
        );
    }

    #[test]
    fn slurm_jobs_are_journaled_apart_from_process_groups() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let mut s = StateStore::open(layout.clone()).unwrap();
        let job = |job| JobRecord::Slurm { job };
        s.append(&JournalEntry::spawned("a".into(), &job(41)))
            .unwrap();
        s.append(&JournalEntry::spawned("b".into(), &group(41)))
            .unwrap();
        s.append(&JournalEntry::spawned("c".into(), &job(7)))
            .unwrap();
        s.append(&JournalEntry::reaped(&job(41))).unwrap();
        drop(s);
        let text = std::fs::read_to_string(layout.journal()).unwrap();
        assert!(
            text.contains(r#"{"event":"spawned","task":"a","slurm_job":41}"#),
            "{text}"
        );
        let s = StateStore::open(layout).unwrap();
        assert_eq!(
            s.stale_jobs,
            vec![("b".to_string(), group(41)), ("c".to_string(), job(7))],
            "job 41's end leaves group 41 alone"
        );
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
        assert_eq!(s.snapshot.records["a"].fingerprint, Digest::of(b"1"));
        s.record_success("b", record("2")).unwrap();
        drop(s); // no close: as if killed
        let s = StateStore::open(layout).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.snapshot.records.len(), 2);
    }

    #[test]
    fn a_legacy_json_snapshot_is_read_and_replaced_on_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        // The first orch 0.1 stored whole 64-digit blake3 hashes.
        let h = "ab".repeat(32);
        std::fs::write(
            layout.legacy_snapshot(),
            format!(
                r#"{{"version":1,"agent_numbers":{{"x":7}},"statuses":{{}},"records":{{"x":{{
                "fingerprint":"{h}","definition":"{h}","inputs":[],"deps":[],
                "outputs":[["out.txt","{h}"]],"finished_at":1,"duration_ms":2,"retries":0}}}}}}"#
            ),
        )
        .unwrap();
        let mut s = StateStore::open(layout.clone()).unwrap();
        assert!(s.legacy);
        assert_eq!(s.agent_id_of("x"), "Agent-07");
        assert_eq!(
            s.snapshot.records["x"].outputs[0].1.to_hex(),
            "ab".repeat(16)
        );
        s.compact().unwrap();
        assert!(!layout.legacy_snapshot().exists());
        let s = StateStore::open(layout).unwrap();
        assert!(!s.legacy);
        assert_eq!(s.agent_id_of("x"), "Agent-07");
    }

    #[test]
    fn a_corrupt_snapshot_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let mut bytes = Snapshot::default().encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(layout.snapshot(), bytes).unwrap();
        let err = StateStore::open(layout).err().unwrap().to_string();
        assert!(err.contains("state.bin is corrupt"), "{err}");
    }
}
