//! The run record: every build's events, kept in the state directory for `orch report`.
//!
//! Each build writes `runs/<start in Unix ms>.jsonl`: a first line describing the run (orch's
//! version, the command line's options, the plan's settings and its tasks with their deps, so
//! the report can draw the DAG as it was), then every event exactly as the `--json` stream
//! writes it, `ts_ms` included. Recording the stream, not a model of it, is what lets events
//! added later (budget stops, quota waits, cache restores) reach the report without touching
//! this file: whatever [`super::json::to_json`] says is recorded.
//!
//! Crash safety: the file is opened for appending and written in whole lines, flushed once per
//! scheduling tick and at the build's end, so an orch killed with `kill -9` leaves every
//! event up to its last tick; a line torn by a crash is skipped by the reader. No fsync: a
//! lost tail after a power cut costs a report, never the build's state.
//!
//! History is bounded: the newest [`KEEP_RUNS`] records are kept, and older ones go while all
//! of them together pass [`KEEP_BYTES`] (the newest always stays). A record that cannot be
//! written says so once on stderr and the build goes on: a report is not worth a build.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::event::{Event, Reporter, Stamped};
use super::json::stamped_json;

/// Run records kept, the newest first.
pub const KEEP_RUNS: usize = 20;
/// All records together past this, the oldest go (a 10,000-task build writes about 5 MiB).
pub const KEEP_BYTES: u64 = 64 << 20;
/// The version of the record's first line; events carry the stream's own version.
pub const RECORD_VERSION: u32 = 1;

/// `runs/` in a state directory.
pub fn runs_dir(state_dir: &Path) -> PathBuf {
    crate::state::StateLayout::new(state_dir).runs_dir()
}

/// The run records in `runs_dir`, oldest first (their names sort by start time).
pub fn list_runs(runs_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    out.sort();
    out
}

/// A recorder of one build's events; clones share the one record (the dynamic fan-out's
/// second part adds its expanded plan to the same file).
#[derive(Clone)]
pub struct RunRecorder(Arc<Mutex<Inner>>);

struct Inner {
    runs_dir: PathBuf,
    header: Value,
    file: Option<BufWriter<File>>,
    path: Option<PathBuf>,
    /// Set after the first error: nothing more is tried.
    broken: bool,
}

impl RunRecorder {
    /// A recorder into `state_dir/runs/`; `header` is the first line's content (see
    /// [`header`]). Nothing is written before the first event, so a build refused at the
    /// lock leaves no record.
    pub fn new(state_dir: &Path, header: Value) -> Self {
        RunRecorder(Arc::new(Mutex::new(Inner {
            runs_dir: runs_dir(state_dir),
            header,
            file: None,
            path: None,
            broken: false,
        })))
    }

    /// The record's file, once something was written.
    pub fn path(&self) -> Option<PathBuf> {
        self.lock().path.clone()
    }

    /// Writes out what is buffered.
    pub fn flush(&self) {
        self.lock().flush();
    }

    /// Adds a plan line (the tasks and deps of an expanded plan), which the report reads
    /// over the first line's tasks.
    pub fn plan(&self, plan: &crate::plan::Plan) {
        let line = json!({"record": "plan", "tasks": plan_tasks(plan)});
        self.lock().write(&line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn open(&mut self) -> io::Result<()> {
        std::fs::create_dir_all(&self.runs_dir)?;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Two builds never run at once in one state directory (the lock), but a watch's
        // cycles may start within a millisecond of each other.
        let (file, path) = (0..1000)
            .find_map(|k| {
                let path = self.runs_dir.join(format!("{:013}.jsonl", ms + k));
                OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .open(&path)
                    .ok()
                    .map(|f| (f, path))
            })
            .ok_or_else(|| io::Error::other("no free run record name"))?;
        self.file = Some(BufWriter::new(file));
        self.path = Some(path.clone());
        let mut header = self.header.take();
        if let Some(o) = header.as_object_mut() {
            o.insert("started_ms".into(), ms.into());
        }
        self.write_line(&header)?;
        prune(&self.runs_dir, &path);
        Ok(())
    }

    fn write_line(&mut self, v: &Value) -> io::Result<()> {
        let file = self.file.as_mut().ok_or(io::ErrorKind::NotFound)?;
        let mut line = v.to_string();
        line.push('\n');
        file.write_all(line.as_bytes())
    }

    /// Writes one line, opening the record first; the first failure is said once.
    fn write(&mut self, v: &Value) {
        if self.broken {
            return;
        }
        let r = if self.file.is_none() {
            self.open()
        } else {
            Ok(())
        }
        .and_then(|()| self.write_line(v));
        self.said(r);
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let r = f.flush();
            self.said(r);
        }
    }

    fn said(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            if !self.broken {
                self.broken = true;
                self.file = None;
                let _ = writeln!(
                    io::stderr(),
                    "orch: cannot record this run in {} ({e}); `orch report` will not show it",
                    self.runs_dir.display()
                );
            }
        }
    }
}

impl Reporter for RunRecorder {
    fn report(&mut self, stamped: &Stamped) -> io::Result<()> {
        let mut inner = self.lock();
        inner.write(&stamped_json(stamped));
        if matches!(
            stamped.event,
            Event::BuildFinished { .. } | Event::BuildInterrupted { .. }
        ) {
            inner.flush();
        }
        Ok(())
    }

    /// Once per scheduling tick: what the tick reported reaches the file.
    fn check(&mut self) -> io::Result<()> {
        self.lock().flush();
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Removes the records past [`KEEP_RUNS`] and [`KEEP_BYTES`], oldest first; never `newest`.
fn prune(runs_dir: &Path, newest: &Path) {
    let runs = list_runs(runs_dir);
    let mut kept = 0usize;
    let mut bytes = 0u64;
    for path in runs.iter().rev() {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        kept += 1;
        bytes += len;
        if path != newest && (kept > KEEP_RUNS || bytes > KEEP_BYTES) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The plan's tasks as the report draws them: id, title, agent, deps, priority, estimate.
pub fn plan_tasks(plan: &crate::plan::Plan) -> Vec<Value> {
    plan.tasks
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "title": t.title,
                "agent": if t.action.is_shell() { "shell" } else { t.agent.as_deref().unwrap_or("") },
                "deps": t.deps,
                "priority": t.priority.to_string(),
                "estimate_ms": t.estimate.map(|d| d.as_millis() as u64),
            })
        })
        .collect()
}

/// The first line of a record: what ran, with which options, settings and tasks.
pub fn header(command: &str, options: Value, plan: &crate::plan::Plan) -> Value {
    json!({
        "record": "run",
        "record_version": RECORD_VERSION,
        "orch_version": env!("CARGO_PKG_VERSION"),
        "command": command,
        "orchfile": plan.source_path.display().to_string(),
        "options": options,
        // The settings as the plan holds them: a field added to them later is shown too.
        "settings": serde_json::to_value(&plan.settings).unwrap_or(Value::Null),
        "tasks": plan_tasks(plan),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(recorder: &mut RunRecorder, e: Event) {
        recorder.report(&Stamped::now(&e)).unwrap();
    }

    #[test]
    fn a_record_is_the_header_then_every_event_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RunRecorder::new(dir.path(), json!({"record": "run"}));
        assert_eq!(r.path(), None, "nothing before the first event");
        event(&mut r, Event::BuildStarted { tasks: 2, jobs: 1 });
        event(&mut r, Event::Notice { message: "hello" });
        r.check().unwrap();
        let text = std::fs::read_to_string(r.path().unwrap()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["record"], "run");
        assert!(lines[0]["started_ms"].as_u64().unwrap() > 0);
        assert_eq!(lines[1]["event"], "build_started");
        assert!(lines[1]["ts_ms"].as_u64().is_some());
        assert_eq!(lines[2]["message"], "hello");
    }

    #[test]
    fn history_keeps_the_newest_runs() {
        let dir = tempfile::tempdir().unwrap();
        let runs = runs_dir(dir.path());
        std::fs::create_dir_all(&runs).unwrap();
        for k in 0..KEEP_RUNS + 5 {
            std::fs::write(runs.join(format!("{:013}.jsonl", k)), "{}\n").unwrap();
        }
        let mut r = RunRecorder::new(dir.path(), json!({}));
        event(&mut r, Event::Notice { message: "x" });
        let left = list_runs(&runs);
        assert_eq!(left.len(), KEEP_RUNS);
        assert_eq!(left.last(), r.path().as_ref(), "the new one is the newest");
        assert!(!runs.join(format!("{:013}.jsonl", 5)).exists());
        assert!(runs.join(format!("{:013}.jsonl", 6)).exists());
    }

    #[test]
    fn a_record_that_cannot_be_written_does_not_fail_the_build() {
        let dir = tempfile::tempdir().unwrap();
        // `runs` is a file: the directory cannot be made.
        std::fs::write(dir.path().join("runs"), "").unwrap();
        let mut r = RunRecorder::new(dir.path(), json!({}));
        event(&mut r, Event::Notice { message: "x" });
        event(&mut r, Event::Notice { message: "y" });
        assert!(r.check().is_ok());
        assert_eq!(r.path(), None);
    }
}
