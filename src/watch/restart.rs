//! The restart policy of `--on-change restart`: which tasks run right now (from the build's
//! own events), and whether a change really altered (by content) an input of one of them or
//! of a task one of them depends on.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::loaded::Loaded;
use crate::disk::Digest;
use crate::fingerprint;
use crate::reporter::{Event, Reporter, Stamped};

/// Which tasks run right now, from the build's own events.
#[derive(Default)]
pub(super) struct Track {
    pub(super) running: BTreeSet<String>,
    pub(super) started: BTreeSet<String>,
}

/// Passes events on to the cycle's reporter, noting which tasks are running.
pub(super) struct Tracker<'a> {
    pub(super) inner: Box<dyn Reporter>,
    pub(super) track: &'a Mutex<Track>,
}

impl Reporter for Tracker<'_> {
    fn report(&mut self, stamped: &Stamped) -> std::io::Result<()> {
        let event = stamped.event;
        {
            let mut t = self.track.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Event::TaskStarted { task, .. } => {
                    t.running.insert(task.id.to_string());
                    t.started.insert(task.id.to_string());
                }
                Event::TaskSucceeded { task, .. }
                | Event::TaskRestored { task, .. }
                | Event::TaskFailed { task, .. }
                | Event::TaskInterrupted { task, .. }
                | Event::TaskSkipped { task, .. }
                | Event::TaskBlocked { task, .. } => {
                    t.running.remove(task.id);
                }
                _ => {}
            }
        }
        self.inner.report(stamped)
    }

    fn check(&mut self) -> std::io::Result<()> {
        self.inner.check()
    }
}

/// Why the running cycle must restart, if a change really altered (by content) an input of a
/// running task or of a task a running one depends on.
pub(super) fn restart_reason(
    loaded: &Loaded,
    changes: &[(String, BTreeSet<usize>)],
    track: &Mutex<Track>,
    baseline: &HashMap<String, Option<Digest>>,
) -> Option<String> {
    let running: Vec<usize> = {
        let t = track.lock().unwrap_or_else(|e| e.into_inner());
        t.running
            .iter()
            .filter_map(|id| loaded.plan.index.get(id).copied())
            .collect()
    };
    if running.is_empty() {
        return None;
    }
    for (rel, tasks) in changes {
        if tasks.is_empty() {
            continue;
        }
        let roots: Vec<usize> = tasks.iter().copied().collect();
        let cone = loaded.graph.downstream_cone(&roots);
        let hit: Vec<&str> = running
            .iter()
            .filter(|&&t| cone[t])
            .map(|&t| loaded.plan.tasks[t].id.as_str())
            .collect();
        if hit.is_empty() {
            continue;
        }
        let path = loaded.plan.root.join(rel);
        let now = if path.is_file() {
            fingerprint::hash_file_contents(&path).ok()
        } else {
            None
        };
        if baseline.get(rel).cloned().flatten() == now {
            continue;
        }
        return Some(format!("{rel} changed while {} ran", hit.join(", ")));
    }
    None
}
