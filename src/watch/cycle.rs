//! The watch's event loop: wait for relevant changes, let a burst settle, decide whether a
//! cycle is due (by content, not mtimes), run it on a build thread, and handle what happens
//! meanwhile (queue it, or restart the cycle); reload the Orchfile when it changes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use miette::{miette, Result, Severity};
use notify_debouncer_mini::{new_debouncer_opt, Config, DebounceEventResult, DebouncedEventKind};

use super::events::{watcher_error, ContentWatcher, Watches};
use super::filter::{existing_dir, Class};
use super::loaded::{snapshot_inputs, would_run, Loaded};
use super::options::{OnChange, WatchOptions, INTERRUPTED, POLL, SELF_LOOP_LIMIT};
use super::pending::{modified, written_during, Pending, PendingPath};
use super::restart::{restart_reason, Track, Tracker};
use crate::cancel::{Cancel, CancelReason};
use crate::engine;
use crate::plan::Plan;
use crate::reporter::{Fanout, Paint, Reporter};

/// Builds, then re-builds on change until `interrupt` is set; returns the exit code (130).
///
/// `load` reads and validates the plan (called again whenever `orchfile` changes); `reporter`
/// makes the reporter of one cycle (called on the build thread); `interrupt` is the Ctrl-C flag.
/// Errors are returned only when the watch cannot start (no file watcher); everything after
/// that (broken Orchfile, failed build, unwatchable path) is shown and the watch goes on.
pub fn watch(
    orchfile: &Path,
    opts: &WatchOptions,
    load: &(dyn Fn() -> Result<Plan> + Sync),
    reporter: &(dyn Fn() -> Box<dyn Reporter> + Sync),
    interrupt: &Cancel,
) -> Result<i32> {
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    // The debouncer's own window is half the quiet time; `settle` merges what follows.
    let config = Config::default()
        .with_timeout((opts.debounce / 2).max(Duration::from_millis(10)))
        .with_batch_mode(true);
    let debouncer =
        new_debouncer_opt::<_, ContentWatcher>(config, move |r: DebounceEventResult| {
            let _ = events.send(Msg::Fs(r));
        })
        .map_err(|e| watcher_error(None, e).unwrap_or_else(|| miette!("cannot start watching")))?;
    let mut session = Session {
        orchfile: orchfile.to_path_buf(),
        opts,
        load,
        reporter,
        interrupt,
        tx,
        rx,
        watches: Watches {
            debouncer,
            dirs: BTreeSet::new(),
            warned: HashSet::new(),
        },
        current: None,
        pending: Pending::default(),
        cycle_no: 0,
        building: false,
        last_build_end: None,
        last_cycle_wall: None,
        last_started: BTreeSet::new(),
        self_loops: 0,
        paint: Paint {
            on: crate::reporter::use_color(),
        },
    };
    session.run()
}

enum Msg {
    Fs(DebounceEventResult),
    BuildDone,
}

/// What woke [`Session::pump`].
enum Wake {
    Interrupted,
    /// The wait ended with no relevant change.
    Quiet,
    /// Relevant changes: (relative path, tasks whose inputs it touches).
    Changes(Vec<(String, BTreeSet<usize>)>),
    BuildDone,
}

struct Session<'a> {
    orchfile: PathBuf,
    opts: &'a WatchOptions,
    load: &'a (dyn Fn() -> Result<Plan> + Sync),
    reporter: &'a (dyn Fn() -> Box<dyn Reporter> + Sync),
    interrupt: &'a Cancel,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    watches: Watches,
    current: Option<Arc<Loaded>>,
    pending: Pending,
    cycle_no: u32,
    building: bool,
    last_build_end: Option<Instant>,
    /// Wall-clock start and end of the last cycle, to compare with file mtimes.
    last_cycle_wall: Option<(SystemTime, SystemTime)>,
    /// Ids of the tasks the last cycle started.
    last_started: BTreeSet<String>,
    self_loops: u32,
    paint: Paint,
}

enum Flow {
    Continue,
    Interrupted,
}

impl Session<'_> {
    fn run(&mut self) -> Result<i32> {
        let failed = match self.load_plan() {
            Ok(loaded) => {
                self.current = Some(Arc::new(loaded));
                None
            }
            Err(report) => Some(report),
        };
        // Watching before saying anything: a fix made as soon as the diagnostic shows must
        // not slip in before the watch exists.
        self.sync_watches(&BTreeSet::new());
        if let Some(report) = failed {
            eprintln!("{report:?}");
            self.say(&format!(
                "fix {} to start; watching it for changes",
                self.orchfile_name()
            ));
        }
        if self.current.is_some() {
            if let Flow::Interrupted = self.cycle("initial build".into(), &[]) {
                return Ok(self.stopped());
            }
        }
        loop {
            if self.pending.is_empty() {
                match self.pump(Duration::from_secs(3600)) {
                    Wake::Interrupted => return Ok(self.stopped()),
                    _ => continue,
                }
            }
            if self.settle() {
                return Ok(self.stopped());
            }
            let pending = std::mem::take(&mut self.pending);
            let reloaded = (pending.orchfile || pending.items) && self.reload();
            let Some(loaded) = self.current.clone() else {
                continue;
            };
            if pending.paths.is_empty() && !pending.rescan && !reloaded {
                continue; // only a broken Orchfile, already reported
            }
            let what = pending.describe(&self.orchfile_name());
            let will_run = match would_run(&loaded, &self.opts.build) {
                Ok(v) => v,
                // Let the build itself report what is wrong.
                Err(_) => (0..loaded.plan.tasks.len())
                    .filter(|&t| loaded.wanted[t])
                    .collect(),
            };
            if will_run.is_empty() {
                self.say(&format!("{what}; every task is up to date"));
                continue;
            }
            if !reloaded && self.self_triggered(&pending) {
                self.self_loops += 1;
            } else {
                self.self_loops = 0;
            }
            if self.self_loops >= SELF_LOOP_LIMIT {
                self.self_loops = 0;
                self.warn_self_loop(&pending);
                continue;
            }
            let ids: Vec<&str> = will_run
                .iter()
                .map(|&t| loaded.plan.tasks[t].id.as_str())
                .collect();
            if let Flow::Interrupted = self.cycle(what, &ids) {
                return Ok(self.stopped());
            }
        }
    }

    fn stopped(&self) -> i32 {
        self.say("stopped");
        INTERRUPTED
    }

    fn load_plan(&self) -> Result<Loaded> {
        Loaded::new((self.load)()?, &self.opts.build)
    }

    /// Reloads the Orchfile; on error shows the diagnostic and keeps the last good plan.
    fn reload(&mut self) -> bool {
        match self.load_plan() {
            Ok(loaded) => {
                self.current = Some(Arc::new(loaded));
                self.sync_watches(&BTreeSet::new());
                true
            }
            Err(report) => {
                eprintln!("{report:?}");
                let keep = if self.current.is_some() {
                    "still watching with the last good plan"
                } else {
                    "still waiting for it to be fixed"
                };
                self.say(&format!("{} has errors; {keep}", self.orchfile_name()));
                false
            }
        }
    }

    fn orchfile_name(&self) -> String {
        self.orchfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.orchfile.display().to_string())
    }

    fn say(&self, msg: &str) {
        eprintln!("{}", self.paint.dim(&format!("orch watch: {msg}")));
    }

    /// Waits up to `timeout` for a relevant change, the end of a build, or Ctrl-C.
    fn pump(&mut self, timeout: Duration) -> Wake {
        let deadline = Instant::now() + timeout;
        loop {
            if self.interrupt.is_cancelled() {
                return Wake::Interrupted;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Quiet;
            }
            match self.rx.recv_timeout((deadline - now).min(POLL)) {
                Ok(Msg::Fs(Ok(events))) => {
                    let paths: Vec<PathBuf> = events
                        .into_iter()
                        // A path still being written comes again as `Any` once it settles.
                        .filter(|e| e.kind == DebouncedEventKind::Any)
                        .map(|e| e.path)
                        .collect();
                    let changes = self.absorb(paths);
                    if !changes.is_empty() {
                        return Wake::Changes(changes);
                    }
                }
                Ok(Msg::Fs(Err(e))) => {
                    let path = e.paths.first().cloned();
                    if let Some(report) = watcher_error(path.as_deref(), e) {
                        eprintln!("{report:?}");
                    }
                }
                Ok(Msg::BuildDone) if self.building => return Wake::BuildDone,
                Ok(Msg::BuildDone) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Wake::Quiet,
            }
        }
    }

    /// Waits until changes stop for a while (bounded), so a burst makes one cycle.
    /// Returns whether Ctrl-C came.
    fn settle(&mut self) -> bool {
        let quiet = (self.opts.debounce * 3 / 5).max(Duration::from_millis(20));
        let cap = Instant::now() + (self.opts.debounce * 10).max(Duration::from_secs(2));
        loop {
            let left = cap.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.pump(quiet.min(left)) {
                Wake::Interrupted => return true,
                Wake::Quiet => return false,
                Wake::Changes(_) | Wake::BuildDone => {}
            }
        }
    }

    /// Sorts changed paths into the pending set; returns the relevant input changes.
    fn absorb(&mut self, paths: Vec<PathBuf>) -> Vec<(String, BTreeSet<usize>)> {
        let grace = self.opts.debounce * 2 + Duration::from_millis(200);
        // When its event arrived: soon after the cycle ended.
        let just_after = self.last_build_end.is_some_and(|t| t.elapsed() < grace);
        let mut changes = Vec::new();
        let mut dirs_changed = BTreeSet::new();
        let mut structure = false;
        for path in paths {
            let class = match &self.current {
                Some(l) => l.rules.classify(&path, &self.orchfile, &self.watches.dirs),
                None if path == self.orchfile => Class::Orchfile,
                None => Class::Ignored,
            };
            match class {
                Class::Orchfile => self.pending.orchfile = true,
                Class::Rescan => {
                    self.pending.rescan = true;
                    structure = true;
                    changes.push((String::new(), BTreeSet::new()));
                }
                Class::Ignored => {}
                Class::Inputs(tasks) if tasks.is_empty() => {}
                class @ (Class::Inputs(_) | Class::Items(_)) => {
                    let tasks = match class {
                        Class::Items(tasks) => {
                            self.pending.items = true;
                            structure = true;
                            tasks
                        }
                        Class::Inputs(tasks) => tasks,
                        _ => unreachable!("matched above"),
                    };
                    // The cycle's own write if its event came soon after the cycle, or if the
                    // file was written during it: a loaded machine can deliver the event
                    // late, and a file system with coarse times (FAT, some network mounts)
                    // can date the write before the cycle began, so either test suffices.
                    let from_cycle = self.building
                        || just_after
                        || match (self.last_cycle_wall, modified(&path)) {
                            (Some((start, end)), Some(mtime)) => written_during(mtime, start, end),
                            _ => false,
                        };
                    let loaded = self.current.as_ref().expect("inputs imply a plan");
                    let rel = loaded.rules.rel(&path);
                    let ids = loaded.ids(&tasks);
                    let entry = self
                        .pending
                        .paths
                        .entry(rel.clone())
                        .or_insert(PendingPath {
                            tasks: BTreeSet::new(),
                            from_cycle,
                        });
                    entry.tasks.extend(ids);
                    entry.from_cycle &= from_cycle;
                    if !path.is_file() {
                        structure = true;
                        if path.is_dir() {
                            dirs_changed.insert(path.clone());
                        }
                    }
                    changes.push((rel, tasks));
                }
            }
        }
        if structure {
            self.sync_watches(&dirs_changed);
        }
        if self.pending.orchfile && changes.is_empty() {
            // The Orchfile alone still wakes the loop.
            changes.push((self.orchfile_name(), BTreeSet::new()));
        }
        changes
    }

    /// Makes the watched directories match what the plan needs; `renew` are directories
    /// that may have been deleted and re-created, whose old watch is gone.
    fn sync_watches(&mut self, renew: &BTreeSet<PathBuf>) {
        let want = match &self.current {
            Some(l) => l.rules.watch_dirs(&self.orchfile),
            None => BTreeSet::from([existing_dir(
                self.orchfile.parent().unwrap_or(Path::new(".")),
            )]),
        };
        self.watches.sync(want, renew);
    }

    /// Whether every pending change could have been made by the last cycle's own tasks.
    fn self_triggered(&self, p: &Pending) -> bool {
        !p.orchfile
            && !p.items
            && !p.rescan
            && !p.paths.is_empty()
            && p.paths
                .values()
                .all(|c| c.from_cycle && c.tasks.iter().any(|t| self.last_started.contains(t)))
    }

    fn warn_self_loop(&self, p: &Pending) {
        let tasks: BTreeSet<&str> = p
            .paths
            .values()
            .flat_map(|c| c.tasks.iter())
            .filter(|t| self.last_started.contains(*t))
            .map(String::as_str)
            .collect();
        let files: Vec<&str> = p.paths.keys().map(String::as_str).take(5).collect();
        let report = miette!(
            severity = Severity::Warning,
            code = "orch::watch_loop",
            help = "a task seems to rewrite its own inputs; declare generated files in `outputs`, \
                    or make the task leave its inputs alone",
            "{} changed while {} ran, {SELF_LOOP_LIMIT} cycles in a row; not re-running until \
             the next change",
            files.join(", "),
            tasks.into_iter().collect::<Vec<_>>().join(", ")
        );
        eprintln!("{report:?}");
    }

    fn header(&self, why: &str, tasks: &[&str]) {
        if self.opts.clear {
            eprint!("\x1b[H\x1b[2J\x1b[3J");
        }
        let mut title = format!("cycle {}: {why}", self.cycle_no);
        if !tasks.is_empty() {
            let mut list: Vec<&str> = tasks.iter().copied().take(8).collect();
            if tasks.len() > 8 {
                list.push("…");
            }
            title.push_str(&format!(" → {}", list.join(", ")));
        }
        let fill = 66usize.saturating_sub(title.chars().count() + 4);
        eprintln!(
            "{}",
            self.paint
                .bold(&format!("── {title} {}", "─".repeat(fill.max(2))))
        );
    }

    /// Runs one build on a worker thread while this thread keeps taking file events (to queue
    /// them, or to restart) and watches for Ctrl-C.
    fn cycle(&mut self, why: String, tasks: &[&str]) -> Flow {
        let Some(loaded) = self.current.clone() else {
            return Flow::Continue;
        };
        self.cycle_no += 1;
        self.header(&why, tasks);
        let restart = self.opts.on_change == OnChange::Restart;
        let baseline = if restart {
            snapshot_inputs(&loaded)
        } else {
            HashMap::new()
        };
        let cancel = Cancel::new();
        let track = Mutex::new(Track::default());
        let mut restarting: Option<String> = None;
        let mut interrupted = false;
        let wall_start = SystemTime::now();
        let make_reporter = self.reporter;
        let load = self.load;
        let opts: &WatchOptions = self.opts;
        let build_opts = &opts.build;
        self.building = true;
        let result = std::thread::scope(|s| {
            let tx = self.tx.clone();
            let (plan, cancel, track) = (&loaded.plan, &cancel, &track);
            let handle = s.spawn(move || {
                let _done = DoneOnDrop(tx);
                // Each cycle is a build of its own in the run records.
                let record = build_opts.recorder("watch", plan);
                let mut reporter = Tracker {
                    inner: Box::new(Fanout(vec![make_reporter(), Box::new(record)])),
                    track,
                };
                // A `foreach_from` source answers first, and the rest is built over the
                // plan loaded again (the new instances included), as `orch build` does.
                engine::build_expanding(plan, build_opts, None, &mut reporter, cancel, load)
            });
            while !handle.is_finished() {
                match self.pump(POLL) {
                    Wake::Interrupted => {
                        // The tasks get the signal the watch got.
                        cancel.cancel(
                            self.interrupt
                                .reason()
                                .unwrap_or(CancelReason::Signal(libc::SIGINT)),
                        );
                        interrupted = true;
                        break;
                    }
                    Wake::BuildDone => break,
                    Wake::Quiet => {}
                    Wake::Changes(changes) => {
                        if restarting.is_some() {
                            continue;
                        }
                        if restart {
                            restarting = restart_reason(&loaded, &changes, track, &baseline);
                        }
                        if let Some(r) = &restarting {
                            self.say(&format!("{r}: stopping the cycle to restart"));
                            cancel.cancel(CancelReason::Restart);
                        } else {
                            let names: Vec<&str> = changes
                                .iter()
                                .map(|(rel, _)| rel.as_str())
                                .filter(|r| !r.is_empty())
                                .take(3)
                                .collect();
                            self.say(&format!(
                                "{} changed during the cycle; checking again when it ends",
                                if names.is_empty() {
                                    "something".to_string()
                                } else {
                                    names.join(", ")
                                }
                            ));
                        }
                    }
                }
            }
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        self.building = false;
        self.last_build_end = Some(Instant::now());
        self.last_cycle_wall = Some((wall_start, SystemTime::now()));
        self.last_started = track
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .started;
        match result {
            Err(report) => eprintln!("{report:?}"),
            // The plan expanded over new answers: the watch goes on from it, so the new
            // instances' inputs are watched and the next cycle knows them.
            Ok((_, Some(expanded))) => match Loaded::new(expanded, &self.opts.build) {
                Ok(loaded) => {
                    self.current = Some(Arc::new(loaded));
                    self.sync_watches(&BTreeSet::new());
                }
                Err(report) => eprintln!("{report:?}"),
            },
            Ok((_, None)) => {}
        }
        if interrupted || self.interrupt.is_cancelled() {
            return Flow::Interrupted;
        }
        if restarting.is_none() {
            self.say(&format!(
                "watching {} director{} for changes (Ctrl-C to stop)",
                self.watches.dirs.len(),
                if self.watches.dirs.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ));
        }
        Flow::Continue
    }
}

/// Wakes the event loop when the build thread ends, however it ends.
struct DoneOnDrop(Sender<Msg>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::BuildDone);
    }
}
