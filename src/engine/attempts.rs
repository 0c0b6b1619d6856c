//! The attempts of one build in flight: when each started and ended and the tool calls its
//! agent made so far, so that the undeclared-write check ([`super::writes`]) can tell whose a
//! changed file is when tasks run side by side.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::agent::Activity;

/// The attempts of one build (agent and shell tasks: a shell's writes are not checked, so
/// they cannot be told from an agent's), with their windows and tool calls so far.
#[derive(Default)]
pub(crate) struct Attempts {
    next: AtomicU64,
    pub(super) spans: Mutex<Vec<Span>>,
    /// Every task's declared outputs, normalised, worked out at the first check.
    pub(super) declared: OnceLock<HashSet<String>>,
    /// The files the merges of worktree tasks wrote into the project: no attempt's.
    pub(super) merged: Mutex<HashSet<String>>,
}

pub(super) struct Span {
    pub(super) id: u64,
    pub(super) task: usize,
    pub(super) start: Instant,
    pub(super) end: Option<Instant>,
    pub(super) tools: Vec<Activity>,
}

impl Attempts {
    /// An attempt of `task` starts now; its id, for [`Attempts::record`] and the check.
    pub(crate) fn begin(&self, task: usize) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut spans = self.spans.lock().unwrap();
        // Spans that ended before every running one began can overlap nothing any more.
        let oldest_running = spans
            .iter()
            .filter(|s| s.end.is_none())
            .map(|s| s.start)
            .min();
        spans.retain(|s| match (s.end, oldest_running) {
            (Some(end), Some(oldest)) => end >= oldest,
            (Some(_), None) => false,
            (None, _) => true,
        });
        spans.push(Span {
            id,
            task,
            start: Instant::now(),
            end: None,
            tools: Vec::new(),
        });
        id
    }

    /// A tool call the attempt made, as its CLI reported it.
    pub(crate) fn record(&self, id: u64, tool: &Activity) {
        if let Some(s) = self.spans.lock().unwrap().iter_mut().find(|s| s.id == id) {
            s.tools.push(tool.clone());
        }
    }

    /// A worktree task's change wrote these files (relative to the project root).
    pub(crate) fn merged(&self, paths: Vec<String>) {
        self.merged.lock().unwrap().extend(paths);
    }

    pub(crate) fn end(&self, id: u64) {
        if let Some(s) = self.spans.lock().unwrap().iter_mut().find(|s| s.id == id) {
            s.end.get_or_insert_with(Instant::now);
        }
    }
}
