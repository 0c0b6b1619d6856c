//! `orch report`: a build's record (`runs/<ms>.jsonl`, written by `reporter/record.rs`) drawn
//! as one self-contained HTML page, `.orchestrator/report.html`: a timeline of every attempt
//! per agent lane, cost and tokens per task and in total, the task graph coloured by status,
//! the slowest and most expensive tasks, and the run's settings.
//!
//! - [`run`] folds the record's JSON lines into per-task attempts, spans and marks; it reads
//!   JSON, so events added to the stream later show up as marks or spans, never as errors;
//! - [`timeline`] and [`dag`] draw the two SVGs;
//! - [`page`] lays out the rest; [`text`] escapes everything written.
//!
//! Nothing here touches the engine: the report is made from the record alone, so it can be
//! made again later, on another machine, from a copied record.

pub mod dag;
pub mod page;
pub mod run;
pub mod text;
pub mod timeline;

use std::io;
use std::path::{Path, PathBuf};

pub use run::Run;

use crate::reporter::record::{list_runs, runs_dir};

/// `report.html` in a state directory, where `orch report` writes by default.
pub fn default_output(state_dir: &Path) -> PathBuf {
    crate::state::StateLayout::new(state_dir).report()
}

/// The record to draw: `which` = 0 is the newest, 1 the one before, ...
pub fn pick_run(state_dir: &Path, which: usize) -> Option<PathBuf> {
    let runs = list_runs(&runs_dir(state_dir));
    runs.len().checked_sub(which + 1).map(|k| runs[k].clone())
}

/// Draws the record at `record` into `out`, replacing it whole (a reader never sees half a
/// page). Returns the run as read, for the caller's message.
pub fn write(record: &Path, out: &Path) -> io::Result<Run> {
    let text = std::fs::read_to_string(record)?;
    let run = Run::parse(&text);
    let name = record
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let html = page::html(&run, &name);
    crate::disk::replace_unsynced(out, html.as_bytes())?;
    Ok(run)
}
