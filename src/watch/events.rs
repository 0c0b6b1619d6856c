//! The file events a watch hears: the OS watcher minus events that cannot change content, the
//! set of watched directories kept in sync with the plan, and watcher errors explained.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use miette::{miette, Report, Severity};
use notify::event::{EventKind, ModifyKind};
use notify::{EventHandler, RecommendedWatcher, RecursiveMode, Watcher, WatcherKind};
use notify_debouncer_mini::Debouncer;

/// The platform watcher, minus events that cannot change content: reads (inotify reports
/// opens, and every build reads its inputs) and metadata-only changes. A "rescan" notice (the
/// kernel queue overflowed) comes through as one event with an empty path.
pub struct ContentWatcher(RecommendedWatcher);

impl Watcher for ContentWatcher {
    fn new<F: EventHandler>(mut handler: F, config: notify::Config) -> notify::Result<Self> {
        RecommendedWatcher::new(
            move |res: notify::Result<notify::Event>| match res {
                Ok(mut event) => {
                    if event.need_rescan() {
                        event.paths = vec![PathBuf::new()];
                        handler.handle_event(Ok(event));
                    } else if !matches!(
                        event.kind,
                        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
                    ) {
                        handler.handle_event(Ok(event));
                    }
                }
                Err(e) => handler.handle_event(Err(e)),
            },
            config,
        )
        .map(ContentWatcher)
    }

    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        self.0.watch(path, mode)
    }

    fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        self.0.unwatch(path)
    }

    fn kind() -> WatcherKind {
        RecommendedWatcher::kind()
    }
}

pub(super) struct Watches {
    pub(super) debouncer: Debouncer<ContentWatcher>,
    pub(super) dirs: BTreeSet<PathBuf>,
    /// Paths already reported as unwatchable, so a problem is shown once.
    pub(super) warned: HashSet<PathBuf>,
}

impl Watches {
    pub(super) fn sync(&mut self, want: BTreeSet<PathBuf>, renew: &BTreeSet<PathBuf>) {
        for gone in self.dirs.difference(&want) {
            let _ = self.debouncer.watcher().unwatch(gone);
        }
        let mut now = BTreeSet::new();
        for dir in want {
            let known = self.dirs.contains(&dir);
            if known && !renew.contains(&dir) {
                now.insert(dir);
                continue;
            }
            if known {
                let _ = self.debouncer.watcher().unwatch(&dir);
            }
            match self
                .debouncer
                .watcher()
                .watch(&dir, RecursiveMode::NonRecursive)
            {
                Ok(()) => {
                    self.warned.remove(&dir);
                    now.insert(dir);
                }
                Err(e) => {
                    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch);
                    if self.warned.insert(dir.clone()) {
                        if let Some(report) = watcher_error(Some(&dir), e) {
                            eprintln!("{report:?}");
                        }
                    }
                    if limit {
                        // Every further watch would fail the same way.
                        break;
                    }
                }
            }
        }
        self.dirs = now;
    }
}

/// A notify error as a diagnostic with a hint, or `None` for a harmless race (a path that
/// vanished before it could be watched).
pub(super) fn watcher_error(path: Option<&Path>, e: notify::Error) -> Option<Report> {
    let what = path
        .map(|p| format!("cannot watch {}", p.display()))
        .unwrap_or_else(|| "cannot watch files".to_string());
    Some(match &e.kind {
        notify::ErrorKind::PathNotFound | notify::ErrorKind::WatchNotFound => return None,
        notify::ErrorKind::MaxFilesWatch => miette!(
            severity = Severity::Warning,
            code = "orch::watch_limit",
            help = "raise the limit, e.g. `sudo sysctl fs.inotify.max_user_watches=524288` (add \
                    it to /etc/sysctl.d/ to keep it), or narrow the input globs and .gitignore \
                    large directories",
            "{what}: the inotify watch limit (fs.inotify.max_user_watches) is reached; changes \
             there will be missed"
        ),
        notify::ErrorKind::Io(io)
            if matches!(io.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) =>
        {
            miette!(
                code = "orch::watch_instances",
                help = "raise `fs.inotify.max_user_instances` (e.g. `sudo sysctl \
                        fs.inotify.max_user_instances=1024`) or the open-file limit (`ulimit \
                        -n`), or stop other file watchers",
                "{what}: too many inotify instances or open files ({io})"
            )
        }
        notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            miette!(
                severity = Severity::Warning,
                code = "orch::watch_denied",
                help = "changes there will be missed; make it readable, or leave it out of the \
                        tasks' inputs",
                "{what}: permission denied"
            )
        }
        _ => miette!(
            severity = Severity::Warning,
            code = "orch::watch_failed",
            help = "changes there may be missed",
            "{what}: {e}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_errors_carry_a_hint() {
        let dir = Path::new("/some/dir");
        let limit = watcher_error(
            Some(dir),
            notify::Error::new(notify::ErrorKind::MaxFilesWatch),
        )
        .unwrap();
        let text = format!("{limit:?}");
        assert!(text.contains("cannot watch /some/dir"), "{text}");
        assert!(text.contains("fs.inotify.max_user_watches"), "{text}");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = format!(
            "{:?}",
            watcher_error(Some(dir), notify::Error::io(denied)).unwrap()
        );
        assert!(text.contains("permission denied"), "{text}");
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let text = format!(
            "{:?}",
            watcher_error(None, notify::Error::io(emfile)).unwrap()
        );
        assert!(text.contains("max_user_instances"), "{text}");
        let gone = notify::Error::new(notify::ErrorKind::PathNotFound);
        assert!(watcher_error(Some(dir), gone).is_none());
    }
}
