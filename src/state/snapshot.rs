//! What the snapshot (`state.bin`) holds: each task's last successful record, its last
//! status, agent numbers, and its binary form (see [`crate::disk::codec`]).

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::disk::codec::{DecodeError, Decoder, Encoder};
use crate::disk::{Digest, FileStamp};
use crate::fingerprint::{field_name, FieldName};

/// A task's status as the status table shows it, kept across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Running,
    Ready,
    Waiting,
    Failed,
    Skipped,
    /// Handed to a batch system (Slurm), waiting in its queue.
    Queued,
    /// Ran in a worktree, and its change did not merge (its branch is kept).
    Conflict,
    /// Started, and waiting for its provider's usage limit to reset.
    QuotaWait,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Completed => "✅",
            Status::Running => "🔵",
            Status::Ready => "🟡",
            Status::Waiting => "⏸️",
            Status::Failed => "❌",
            Status::Skipped => "⏭️",
            Status::Queued => "⏳",
            Status::Conflict => "🔀",
            Status::QuotaWait => "⌛",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Running => "running",
            Status::Ready => "ready",
            Status::Waiting => "waiting",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Queued => "queued",
            Status::Conflict => "conflict",
            Status::QuotaWait => "waiting for quota",
        }
    }

    /// Reads a status cell as written by orch or a person (`✅`, `Pending`, `failed`...).
    pub fn parse(cell: &str) -> Option<Status> {
        let c = cell.trim().trim_matches('*');
        let lower = c.to_ascii_lowercase();
        Some(match () {
            _ if c.starts_with('✅') || lower == "completed" || lower == "done" => {
                Status::Completed
            }
            _ if c.starts_with('🔵') || lower == "running" => Status::Running,
            _ if c.starts_with('🟡') || lower == "ready" || lower == "pending" => Status::Ready,
            _ if c.starts_with('⏸') || lower == "waiting" => Status::Waiting,
            _ if c.starts_with('❌') || lower == "failed" => Status::Failed,
            _ if c.starts_with('⏭') || lower == "skipped" => Status::Skipped,
            _ if c.starts_with('⏳') || lower == "queued" => Status::Queued,
            _ if c.starts_with('🔀') || lower == "conflict" => Status::Conflict,
            _ if c.starts_with('⌛') || lower.starts_with("waiting for quota") => {
                Status::QuotaWait
            }
            _ => return None,
        })
    }
}

/// What orch remembers about a task's last successful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub fingerprint: Digest,
    pub definition: Digest,
    /// The definition by field (`prompt`, `run`, `agent`, ...), for `orch explain`. Empty in
    /// records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definition_fields: Vec<(FieldName, Digest)>,
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
    /// This success was a restore from the output cache, not a run: what `orch explain`
    /// says of a dep that came back so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

/// A task's last agent session: which CLI session its last attempt ran in, and whether the
/// next attempt may continue it rather than start over (a transient failure or an
/// interrupted build ended it; a crash mid-run leaves it so too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The agent (by name) whose session it is.
    pub agent: String,
    /// The CLI's session id (claude's `session_id`, codex's `thread_id`, gemini's).
    pub id: String,
    /// The task's fingerprint when the session started: a changed task starts afresh.
    pub fingerprint: Digest,
    pub resumable: bool,
    /// Tokens the session used so far as its CLI counts them (input, cache read, cache
    /// write, output): codex reports a resumed session's running total, so a resumed run's
    /// own use is the difference.
    #[serde(default)]
    pub tokens: [u64; 4],
}

/// The last known status of a task, shown in the status table across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub status: Status,
    pub start: Option<String>,
    pub end: Option<String>,
    pub retries: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Task id -> agent number, assigned once and kept.
    pub agent_numbers: IndexMap<String, u32>,
    /// Shared, so a build can hold the previous records without copying them.
    pub records: HashMap<String, Arc<TaskRecord>>,
    #[serde(default)]
    pub statuses: HashMap<String, StatusRecord>,
    /// Digest of the last aggregation's inputs, to skip an unchanged (and maybe paid) merge.
    #[serde(default)]
    pub aggregate_digest: Option<Digest>,
    /// master_plan.md as orch last wrote it at the end of a build: while it still looks so,
    /// nobody has edited it, and a build need not read it.
    #[serde(skip)]
    pub plan_doc_stamp: Option<FileStamp>,
    /// Task id -> its last agent session.
    #[serde(default)]
    pub sessions: HashMap<String, SessionRecord>,
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"ORCHST01";

/// Statuses by their number in the snapshot: new ones go at the end.
const STATUSES: [Status; 9] = {
    use Status::*;
    [
        Completed, Running, Ready, Waiting, Failed, Skipped, Queued, Conflict, QuotaWait,
    ]
};

impl TaskRecord {
    fn encode(&self, e: &mut Encoder) {
        e.digest(&self.fingerprint);
        e.digest(&self.definition);
        e.usize(self.definition_fields.len());
        for (name, d) in &self.definition_fields {
            e.str(name);
            e.digest(d);
        }
        e.pairs(&self.inputs);
        e.pairs(&self.deps);
        e.pairs(&self.outputs);
        e.u64(self.finished_at);
        e.u64(self.duration_ms);
        e.u32(self.retries);
    }

    fn decode(d: &mut Decoder) -> Result<TaskRecord, DecodeError> {
        Ok(TaskRecord {
            fingerprint: d.digest()?,
            definition: d.digest()?,
            definition_fields: {
                let n = d.count()?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push((field_name(d.str()?), d.digest()?));
                }
                v
            },
            inputs: d.pairs()?,
            deps: d.pairs()?,
            outputs: d.pairs()?,
            finished_at: d.u64()?,
            duration_ms: d.u64()?,
            retries: d.u32()?,
            restored: false,
        })
    }
}

impl Snapshot {
    /// The snapshot file's bytes (see [`crate::disk::codec`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(SNAPSHOT_MAGIC);
        e.u32(self.version);
        e.usize(self.agent_numbers.len());
        for (task, n) in &self.agent_numbers {
            e.str(task);
            e.u32(*n);
        }
        e.usize(self.records.len());
        for (task, r) in &self.records {
            e.str(task);
            r.encode(&mut e);
        }
        e.usize(self.statuses.len());
        for (task, s) in &self.statuses {
            e.str(task);
            e.u32(STATUSES.iter().position(|&x| x == s.status).unwrap_or(0) as u32);
            e.opt_str(s.start.as_deref());
            e.opt_str(s.end.as_deref());
            e.u32(s.retries);
        }
        e.opt_digest(self.aggregate_digest.as_ref());
        e.opt_stamp(self.plan_doc_stamp.as_ref());
        // Last, so a snapshot from before sessions were kept still reads (as none).
        e.usize(self.sessions.len());
        for (task, r) in &self.sessions {
            e.str(task);
            e.str(&r.agent);
            e.str(&r.id);
            e.digest(&r.fingerprint);
            e.bool(r.resumable);
            for n in r.tokens {
                e.u64(n);
            }
        }
        // After the sessions, so an older snapshot still reads (as no restore).
        let restored: Vec<&String> = self
            .records
            .iter()
            .filter(|(_, r)| r.restored)
            .map(|(task, _)| task)
            .collect();
        e.usize(restored.len());
        for task in restored {
            e.str(task);
        }
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
        let mut d = Decoder::new(SNAPSHOT_MAGIC, bytes)?;
        let version = d.u32()?;
        let n = d.count()?;
        let mut agent_numbers = IndexMap::with_capacity(n);
        for _ in 0..n {
            agent_numbers.insert(d.string()?, d.u32()?);
        }
        let n = d.count()?;
        let mut records = HashMap::with_capacity(n);
        for _ in 0..n {
            records.insert(d.string()?, Arc::new(TaskRecord::decode(&mut d)?));
        }
        let n = d.count()?;
        let mut statuses = HashMap::with_capacity(n);
        for _ in 0..n {
            let task = d.string()?;
            let status = *STATUSES
                .get(d.u32()? as usize)
                .ok_or(DecodeError::Shape("status"))?;
            statuses.insert(
                task,
                StatusRecord {
                    status,
                    start: d.opt_string()?,
                    end: d.opt_string()?,
                    retries: d.u32()?,
                },
            );
        }
        let aggregate_digest = d.opt_digest()?;
        let plan_doc_stamp = d.opt_stamp()?;
        let mut sessions = HashMap::new();
        if !d.at_end() {
            let n = d.count()?;
            for _ in 0..n {
                let task = d.string()?;
                let mut r = SessionRecord {
                    agent: d.string()?,
                    id: d.string()?,
                    fingerprint: d.digest()?,
                    resumable: d.bool()?,
                    tokens: [0; 4],
                };
                for n in &mut r.tokens {
                    *n = d.u64()?;
                }
                sessions.insert(task, r);
            }
        }
        if !d.at_end() {
            for _ in 0..d.count()? {
                let task = d.string()?;
                if let Some(r) = records.get_mut(&task) {
                    Arc::make_mut(r).restored = true;
                }
            }
        }
        if !d.at_end() {
            return Err(DecodeError::Shape("snapshot (trailing bytes)"));
        }
        Ok(Snapshot {
            version,
            agent_numbers,
            records,
            statuses,
            aggregate_digest,
            plan_doc_stamp,
            sessions,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal record with the given fingerprint, for state tests.
    pub(crate) fn record(fp: &str) -> TaskRecord {
        TaskRecord {
            fingerprint: Digest::of(fp.as_bytes()),
            definition: Digest::of(b"d"),
            definition_fields: vec![],
            inputs: vec![],
            deps: vec![],
            outputs: vec![],
            finished_at: 0,
            duration_ms: 1,
            retries: 0,
            restored: false,
        }
    }

    #[test]
    fn snapshot_round_trips_through_its_binary_form() {
        let mut snap = Snapshot {
            version: 1,
            ..Default::default()
        };
        snap.agent_numbers.insert("b".into(), 2);
        snap.agent_numbers.insert("a".into(), 1);
        let mut r = record("x");
        r.definition_fields = vec![("run".into(), Digest::of(b"r"))];
        r.inputs = vec![("src/a.txt".into(), Digest::of(b"a"))];
        r.deps = vec![("b".into(), Digest::of(b"b"))];
        r.outputs = vec![("out/a".into(), Digest::of(b"o"))];
        r.finished_at = 1_700_000_000;
        r.retries = 3;
        snap.records.insert("a".into(), Arc::new(r.clone()));
        let restored = TaskRecord {
            restored: true,
            ..record("y")
        };
        snap.records.insert("c".into(), Arc::new(restored.clone()));
        snap.statuses.insert(
            "a".into(),
            StatusRecord {
                status: Status::Failed,
                start: Some("10:00:00".into()),
                end: None,
                retries: 2,
            },
        );
        snap.aggregate_digest = Some(Digest::of(b"agg"));
        snap.plan_doc_stamp = Some(FileStamp {
            size: 10,
            mtime_ns: -5,
            ctime_ns: 1 << 60,
            inode: 42,
        });
        snap.sessions.insert(
            "a".into(),
            SessionRecord {
                agent: "claude".into(),
                id: "29540fc4-d929-433d-8956-880fe089536a".into(),
                fingerprint: Digest::of(b"f"),
                resumable: true,
                tokens: [36666, 33333, 2222, 44],
            },
        );
        let back = Snapshot::decode(&snap.encode()).unwrap();
        assert_eq!(back.sessions, snap.sessions);
        assert_eq!(back.version, 1);
        assert_eq!(
            back.agent_numbers.keys().collect::<Vec<_>>(),
            ["b", "a"],
            "agent numbers keep their order"
        );
        assert_eq!(*back.records["a"], r);
        assert_eq!(*back.records["c"], restored, "a restore stays one");
        assert_eq!(back.statuses["a"], snap.statuses["a"]);
        assert_eq!(back.aggregate_digest, snap.aggregate_digest);
        assert_eq!(back.plan_doc_stamp, snap.plan_doc_stamp);
    }

    #[test]
    fn parses_status_words_and_symbols() {
        assert_eq!(Status::parse("Pending"), Some(Status::Ready));
        assert_eq!(Status::parse(" 🟡 "), Some(Status::Ready));
        assert_eq!(Status::parse("⏸️"), Some(Status::Waiting));
        assert_eq!(Status::parse("✅"), Some(Status::Completed));
        assert_eq!(Status::parse("⏳ queued"), Some(Status::Queued));
        assert_eq!(Status::parse("⌛ until 15:00"), Some(Status::QuotaWait));
        assert_eq!(Status::parse("??"), None);
    }
}
