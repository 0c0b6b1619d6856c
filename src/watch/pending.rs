//! The changes waiting for the next cycle, and whether a changed file could be the last
//! cycle's own output (the self-triggered loop).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Default)]
pub(super) struct Pending {
    pub(super) paths: BTreeMap<String, PendingPath>,
    pub(super) orchfile: bool,
    /// A fan-out's item set changed: the plan is expanded again.
    pub(super) items: bool,
    pub(super) rescan: bool,
}

pub(super) struct PendingPath {
    /// Ids of the tasks whose inputs this path touches.
    pub(super) tasks: BTreeSet<String>,
    /// Seen while a cycle ran (or just after): maybe written by one of its tasks.
    pub(super) from_cycle: bool,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.orchfile && !self.rescan
    }

    /// `a.txt changed`, `a.txt, b.txt and 3 more changed`, `Orchfile.toml changed`...
    pub(super) fn describe(&self, orchfile_name: &str) -> String {
        let mut names: Vec<&str> = Vec::new();
        if self.orchfile {
            names.push(orchfile_name);
        }
        names.extend(self.paths.keys().map(String::as_str));
        let what = match names.len() {
            0 if self.rescan => return "the file watcher lost events; checking everything".into(),
            0 => return "nothing changed".into(),
            1 => names[0].to_string(),
            2 => format!("{} and {}", names[0], names[1]),
            3 => format!("{}, {} and {}", names[0], names[1], names[2]),
            n => format!("{}, {} and {} more", names[0], names[1], n - 2),
        };
        format!("{what} changed")
    }
}

/// A file's last content change (`None`: gone or unreadable).
pub(super) fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path).ok()?.modified().ok()
}

/// Whether a file with this mtime was last written between `start` and `end`. File times
/// come from a coarse kernel clock that may lag the wall clock by a tick, never lead it.
pub(super) fn written_during(mtime: SystemTime, start: SystemTime, end: SystemTime) -> bool {
    const TICK: Duration = Duration::from_millis(10);
    mtime + TICK >= start && mtime <= end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_descriptions() {
        let mut p = Pending::default();
        assert_eq!(p.describe("Orchfile.toml"), "nothing changed");
        for f in ["a", "b", "c", "d"] {
            p.paths.insert(
                f.into(),
                PendingPath {
                    tasks: BTreeSet::new(),
                    from_cycle: false,
                },
            );
        }
        assert_eq!(p.describe("O"), "a, b and 2 more changed");
        p.paths.retain(|k, _| k == "a");
        p.orchfile = true;
        assert_eq!(p.describe("O"), "O and a changed");
    }
    #[test]
    fn written_during_uses_the_write_time() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let end = start + Duration::from_millis(30);
        assert!(written_during(start + Duration::from_millis(5), start, end));
        assert!(
            written_during(start - Duration::from_millis(3), start, end),
            "coarse clock"
        );
        assert!(written_during(end, start, end));
        assert!(
            !written_during(end + Duration::from_millis(1), start, end),
            "edited after"
        );
        assert!(
            !written_during(start - Duration::from_secs(60), start, end),
            "moved in"
        );
    }
}
