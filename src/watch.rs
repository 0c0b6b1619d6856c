//! `orch watch`: build, then watch the selected tasks' inputs and the Orchfile, and build again
//! when they change.
//!
//! The build is incremental by content fingerprints, so a watch is an event loop around
//! [`engine::run_build`]: running it again with the same targets re-runs exactly the tasks whose
//! inputs or deps changed, and their dependents. This module decides *when* to call it:
//!
//! - **What is watched**: the directories holding the selected tasks' inputs (a literal input's
//!   directory, a glob's literal prefix, walked when the glob spans directories), their
//!   `prompt_file`s, and the Orchfile's directory. Each directory gets a non-recursive watch, so
//!   the state directory, `.git/` and `.gitignore`d directories cost no inotify watches at all.
//! - **What counts as a change**: a path that names or matches an input of a selected task (or a
//!   directory on the way to one), or the Orchfile. The state directory, every task's declared
//!   outputs and `file:` results, `.git/` and root-`.gitignore`d paths never count, and neither
//!   do reads or metadata-only changes (`touch`, `chmod`). Files a task writes that are not
//!   inputs (logs...) are irrelevant by construction.
//! - **Bursts**: notify's events go through a debouncer, then batches that follow each other
//!   closely are merged, so saving several files at once starts one cycle.
//! - **Content, not mtimes**: before a cycle, the plan is checked the way `--dry-run` does it; if
//!   no task is out of date (an edit restored a file's old content, a save without changes),
//!   no cycle starts.
//! - **Changes during a cycle**: with [`OnChange::Finish`] they are queued and trigger the next
//!   cycle when this one ends; with [`OnChange::Restart`] a change to an input of a running task
//!   (or of one it depends on) cancels the cycle: the executor stops each task's whole process
//!   group (SIGTERM, grace, SIGKILL) and waits for it, and only then does the next cycle start.
//! - **Self-triggered loops**: a task that rewrites its own input differently each time would
//!   re-trigger forever; after [`SELF_LOOP_LIMIT`] consecutive cycles started only by files the
//!   previous cycle's tasks could have written, the watch says so and waits for another change.
//! - **The Orchfile**: a change reloads it; a broken one prints its diagnostic and the watch
//!   keeps going with the last good plan.
//! - **Stopping**: the interrupt flag (Ctrl-C) cancels a running cycle, whose tasks are stopped
//!   and waited for before [`watch`] returns 130.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use miette::{miette, Report, Result, Severity};
use notify::event::{EventKind, ModifyKind};
use notify::{EventHandler, RecommendedWatcher, RecursiveMode, Watcher, WatcherKind};
use notify_debouncer_mini::{
    new_debouncer_opt, Config, DebounceEventResult, DebouncedEventKind, Debouncer,
};

use crate::disk::Digest;
use crate::engine::{self, dry_run, BuildOptions};
use crate::fingerprint::{self, StatCache};
use crate::graph::TaskGraph;
use crate::plan::{Action, Plan, ResultSpec};
use crate::reporter::{Event, Paint, Reporter};
use crate::state::StateLayout;

/// What to do when an input of a running task changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnChange {
    /// Let the running tasks finish, then run a new cycle.
    #[default]
    Finish,
    /// Stop the cycle's running tasks (whole process groups, waited for) and start a new one.
    Restart,
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// What every cycle builds; `targets` also select what is watched.
    pub build: BuildOptions,
    /// Quiet time that ends a burst of changes.
    pub debounce: Duration,
    pub on_change: OnChange,
    /// Clear the terminal before each cycle.
    pub clear: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            build: BuildOptions::default(),
            debounce: DEFAULT_DEBOUNCE,
            on_change: OnChange::Finish,
            clear: false,
        }
    }
}

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// Consecutive self-triggered cycles after which the watch stops re-running on its own.
pub const SELF_LOOP_LIMIT: u32 = 3;

/// How often the interrupt flag is polled while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Exit code after Ctrl-C (or SIGTERM/SIGHUP), as for an interrupted `orch build`.
pub const INTERRUPTED: i32 = 130;

/// Builds, then re-builds on change until `interrupt` is set; returns the exit code (130).
///
/// `load` reads and validates the plan (called again whenever `orchfile` changes); `reporter`
/// makes the reporter of one cycle (called on the build thread); `interrupt` is the Ctrl-C flag.
/// Errors are returned only when the watch cannot start (no file watcher); everything after
/// that (broken Orchfile, failed build, unwatchable path) is shown and the watch goes on.
pub fn watch(
    orchfile: &Path,
    opts: &WatchOptions,
    load: &dyn Fn() -> Result<Plan>,
    reporter: &(dyn Fn() -> Box<dyn Reporter> + Sync),
    interrupt: &AtomicBool,
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

// ---------------------------------------------------------------------------------------------
// The event loop.

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

#[derive(Default)]
struct Pending {
    paths: BTreeMap<String, PendingPath>,
    orchfile: bool,
    rescan: bool,
}

struct PendingPath {
    /// Ids of the tasks whose inputs this path touches.
    tasks: BTreeSet<String>,
    /// Seen while a cycle ran (or just after): maybe written by one of its tasks.
    from_cycle: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.orchfile && !self.rescan
    }

    /// `a.txt changed`, `a.txt, b.txt and 3 more changed`, `Orchfile.toml changed`...
    fn describe(&self, orchfile_name: &str) -> String {
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

/// The plan in use and everything derived from it for watching.
struct Loaded {
    plan: Plan,
    graph: TaskGraph,
    wanted: Vec<bool>,
    rules: Rules,
}

impl Loaded {
    fn new(plan: Plan, opts: &BuildOptions) -> Result<Loaded> {
        let graph =
            TaskGraph::from_plan(&plan).map_err(|_| miette!("the plan has a dependency cycle"))?;
        let wanted = engine::wanted_tasks(&plan, &graph, &opts.targets)?;
        let rules = Rules::new(&plan, &wanted, opts.agent_override.as_deref())?;
        Ok(Loaded {
            plan,
            graph,
            wanted,
            rules,
        })
    }

    fn ids(&self, tasks: &BTreeSet<usize>) -> BTreeSet<String> {
        tasks
            .iter()
            .map(|&t| self.plan.tasks[t].id.clone())
            .collect()
    }
}

struct Session<'a> {
    orchfile: PathBuf,
    opts: &'a WatchOptions,
    load: &'a dyn Fn() -> Result<Plan>,
    reporter: &'a (dyn Fn() -> Box<dyn Reporter> + Sync),
    interrupt: &'a AtomicBool,
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
            let reloaded = pending.orchfile && self.reload();
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
            if self.interrupt.load(Ordering::Relaxed) {
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
                Class::Inputs(tasks) => {
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
        let cancel = AtomicBool::new(false);
        let track = Mutex::new(Track::default());
        let mut restarting: Option<String> = None;
        let mut interrupted = false;
        let wall_start = SystemTime::now();
        let make_reporter = self.reporter;
        let opts: &WatchOptions = self.opts;
        let build_opts = &opts.build;
        self.building = true;
        let result = std::thread::scope(|s| {
            let tx = self.tx.clone();
            let (plan, cancel, track) = (&loaded.plan, &cancel, &track);
            let handle = s.spawn(move || {
                let _done = DoneOnDrop(tx);
                let mut reporter = Tracker {
                    inner: make_reporter(),
                    track,
                };
                engine::run_build(plan, build_opts, None, &mut reporter, cancel)
            });
            while !handle.is_finished() {
                match self.pump(POLL) {
                    Wake::Interrupted => {
                        cancel.store(true, Ordering::Relaxed);
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
                            cancel.store(true, Ordering::Relaxed);
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
        if let Err(report) = result {
            eprintln!("{report:?}");
        }
        if interrupted || self.interrupt.load(Ordering::Relaxed) {
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

/// A file's last content change (`None`: gone or unreadable).
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path).ok()?.modified().ok()
}

/// Whether a file with this mtime was last written between `start` and `end`. File times
/// come from a coarse kernel clock that may lag the wall clock by a tick, never lead it.
fn written_during(mtime: SystemTime, start: SystemTime, end: SystemTime) -> bool {
    const TICK: Duration = Duration::from_millis(10);
    mtime + TICK >= start && mtime <= end
}

/// Wakes the event loop when the build thread ends, however it ends.
struct DoneOnDrop(Sender<Msg>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::BuildDone);
    }
}

/// Which tasks run right now, from the build's own events.
#[derive(Default)]
struct Track {
    running: BTreeSet<String>,
    started: BTreeSet<String>,
}

/// Passes events on to the cycle's reporter, noting which tasks are running.
struct Tracker<'a> {
    inner: Box<dyn Reporter>,
    track: &'a Mutex<Track>,
}

impl Reporter for Tracker<'_> {
    fn report(&mut self, event: &Event) {
        {
            let mut t = self.track.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Event::TaskStarted { task, .. } => {
                    t.running.insert(task.id.to_string());
                    t.started.insert(task.id.to_string());
                }
                Event::TaskSucceeded { task, .. }
                | Event::TaskFailed { task, .. }
                | Event::TaskSkipped { task }
                | Event::TaskBlocked { task, .. } => {
                    t.running.remove(task.id);
                }
                _ => {}
            }
        }
        self.inner.report(event);
    }
}

/// Why the running cycle must restart, if a change really altered (by content) an input of a
/// running task or of a task a running one depends on.
fn restart_reason(
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

/// Content of every current input file of the selected tasks, at the start of a cycle.
fn snapshot_inputs(loaded: &Loaded) -> HashMap<String, Option<Digest>> {
    let plan = &loaded.plan;
    let state_dir = plan.state_dir();
    let cache = StatCache::load(&StateLayout::new(&state_dir).stat_cache());
    let mut files = Vec::new();
    for (_, p) in &loaded.rules.patterns {
        match p {
            Pattern::File(rel) => files.push(rel.clone()),
            Pattern::Glob { pattern, .. } => files.extend(
                fingerprint::expand_inputs(&plan.root, std::slice::from_ref(pattern), &state_dir)
                    .unwrap_or_default(),
            ),
        }
    }
    files
        .into_iter()
        .map(|rel| {
            let h = cache.hash_file(&plan.root.join(&rel)).ok().flatten();
            (rel, h)
        })
        .collect()
}

/// The selected tasks a build would run now, decided as `orch build --dry-run` does (content
/// fingerprints against the recorded ones, tasks a person reset in master_plan.md). Reads
/// state, writes nothing.
fn would_run(loaded: &Loaded, opts: &BuildOptions) -> Result<Vec<usize>> {
    let cancel = AtomicBool::new(false);
    let (ctx, _) =
        engine::read_only_context(&loaded.plan, &loaded.graph, opts, &cancel, &loaded.wanted)?;
    let reasons = dry_run::predict(&ctx, &loaded.wanted);
    Ok((0..reasons.len())
        .filter(|&t| reasons[t].is_some())
        .collect())
}

// ---------------------------------------------------------------------------------------------
// What is watched and what a changed path means.

/// One input of a selected task.
enum Pattern {
    /// A file named exactly: an input without wildcards, or a `prompt_file`.
    File(String),
    Glob {
        pattern: String,
        matcher: GlobMatcher,
        /// Literal directory prefix, where matches live ("" for the root).
        base: String,
        /// Whether matches may sit in subdirectories of `base`.
        recursive: bool,
    },
}

impl Pattern {
    fn new(input: &str) -> Result<Pattern> {
        if !fingerprint::has_glob_meta(input) {
            return Ok(Pattern::File(crate::plan::normalize(input)));
        }
        let norm = crate::plan::normalize(input);
        let base = fingerprint::literal_prefix(input);
        let rest = norm[base.len()..].trim_start_matches('/');
        let matcher = fingerprint::compile_glob(input)
            .map_err(|e| miette!("input pattern `{input}`: {e}"))?;
        Ok(Pattern::Glob {
            pattern: input.to_string(),
            matcher,
            recursive: rest.contains('/') || rest.contains("**"),
            base,
        })
    }

    /// The directory whose entries this pattern names.
    fn anchor(&self) -> &str {
        match self {
            Pattern::File(f) => f.rfind('/').map_or("", |i| &f[..i]),
            Pattern::Glob { base, .. } => base,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Class {
    Orchfile,
    /// The OS dropped events: anything may have changed.
    Rescan,
    /// Never a trigger: state dir, outputs, `.git`, `.gitignore`d.
    Ignored,
    /// The tasks whose inputs this path names, matches or leads to (empty: irrelevant).
    Inputs(BTreeSet<usize>),
}

/// Which paths matter, for one plan.
struct Rules {
    root: PathBuf,
    state_dir: PathBuf,
    /// (task, pattern) for the selected tasks.
    patterns: Vec<(usize, Pattern)>,
    /// Declared outputs and `file:` results of every task, relative to the root.
    generated: HashSet<String>,
    gitignore: GitIgnore,
}

impl Rules {
    fn new(plan: &Plan, wanted: &[bool], agent_override: Option<&str>) -> Result<Rules> {
        let mut patterns = Vec::new();
        let mut generated = HashSet::new();
        for (t, task) in plan.tasks.iter().enumerate() {
            generated.extend(task.outputs.iter().map(|o| crate::plan::normalize(o)));
            if let Some(agent) = plan.agent_for(task, agent_override) {
                if let ResultSpec::File(f) = &agent.result {
                    generated.insert(crate::plan::normalize(f));
                }
            }
            if !wanted[t] {
                continue;
            }
            for input in &task.inputs {
                patterns.push((t, Pattern::new(input)?));
            }
            if let Action::PromptFile(p) = &task.action {
                patterns.push((
                    t,
                    Pattern::File(crate::plan::normalize(&p.to_string_lossy())),
                ));
            }
        }
        Ok(Rules {
            root: plan.root.clone(),
            state_dir: plan.state_dir(),
            patterns,
            generated,
            gitignore: GitIgnore::load(&plan.root),
        })
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Whether `.gitignore` hides `rel`, unless the pattern explicitly points inside an
    /// ignored directory (its anchor is ignored too).
    fn git_hides(&self, rel: &str, anchor: &str) -> bool {
        self.gitignore.is_match(rel) && (anchor.is_empty() || !self.gitignore.is_match(anchor))
    }

    fn classify(&self, path: &Path, orchfile: &Path, watched: &BTreeSet<PathBuf>) -> Class {
        if path.as_os_str().is_empty() {
            return Class::Rescan;
        }
        if path == orchfile {
            return Class::Orchfile;
        }
        if path.starts_with(&self.state_dir) {
            return Class::Ignored;
        }
        let Ok(rel_path) = path.strip_prefix(&self.root) else {
            return Class::Ignored;
        };
        if rel_path.as_os_str().is_empty() || rel_path.components().any(|c| c.as_os_str() == ".git")
        {
            return Class::Ignored;
        }
        let rel = rel_path.to_string_lossy();
        if self.generated.contains(rel.as_ref()) {
            return Class::Ignored;
        }
        let mut tasks = BTreeSet::new();
        let mut only_git_hidden = false;
        for (t, p) in &self.patterns {
            let anchor = p.anchor();
            let hit = match p {
                // A file named in the plan counts even if .gitignore'd.
                Pattern::File(f) => f == &rel || leads_to(&rel, anchor),
                Pattern::Glob {
                    matcher,
                    base,
                    recursive,
                    ..
                } => {
                    let hit = matcher.is_match(rel.as_ref())
                        || leads_to(&rel, base)
                        || (*recursive
                            && is_under(&rel, base)
                            && (path.is_dir() || watched.contains(path)));
                    if hit && self.git_hides(&rel, anchor) {
                        only_git_hidden = true;
                        false
                    } else {
                        hit
                    }
                }
            };
            if hit {
                tasks.insert(*t);
            }
        }
        if tasks.is_empty() && only_git_hidden {
            return Class::Ignored;
        }
        Class::Inputs(tasks)
    }

    /// The directories to watch (each non-recursively).
    fn watch_dirs(&self, orchfile: &Path) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        dirs.insert(existing_dir(orchfile.parent().unwrap_or(&self.root)));
        for (_, p) in &self.patterns {
            let anchor_rel = p.anchor();
            let anchor = if anchor_rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(anchor_rel)
            };
            let recursive = matches!(
                p,
                Pattern::Glob {
                    recursive: true,
                    ..
                }
            );
            if !(recursive && anchor.is_dir()) {
                dirs.insert(existing_dir(&anchor));
                continue;
            }
            let walker = walkdir::WalkDir::new(&anchor)
                .follow_links(true)
                .into_iter()
                .filter_entry(|e| {
                    e.file_type().is_dir()
                        && (e.path() == anchor
                            || !(e.path().starts_with(&self.state_dir)
                                || e.file_name() == ".git"
                                || self.git_hides(&self.rel(e.path()), anchor_rel)))
                });
            dirs.extend(walker.flatten().map(|e| e.into_path()));
        }
        dirs
    }
}

/// Whether `rel` is `dir` or one of its ancestors (creating it may bring inputs into being).
fn leads_to(rel: &str, dir: &str) -> bool {
    !dir.is_empty()
        && (dir == rel || (dir.starts_with(rel) && dir.as_bytes().get(rel.len()) == Some(&b'/')))
}

/// Whether `rel` lies below `dir` ("" is the root).
fn is_under(rel: &str, dir: &str) -> bool {
    dir.is_empty() || (rel.starts_with(dir) && rel.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// `dir`, or its nearest existing ancestor.
fn existing_dir(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(dir)
        .to_path_buf()
}

/// The root `.gitignore`, with the common forms: `name`, `*.ext`, `dir/`, `/anchored`,
/// `a/b`, `**`. Negations (`!keep`) are not supported and are skipped, so what they would
/// re-include stays ignored. Nested `.gitignore` files are not read.
struct GitIgnore(GlobSet);

impl GitIgnore {
    fn load(root: &Path) -> GitIgnore {
        GitIgnore::parse(&std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default())
    }

    fn parse(text: &str) -> GitIgnore {
        let mut set = GlobSetBuilder::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let line = line.strip_prefix('\\').unwrap_or(line);
            // `dir/` matches only directories in git; a deleted path cannot be told apart, so
            // here it matches the name and everything below it.
            let pat = line.strip_suffix('/').unwrap_or(line);
            let anchored = pat.contains('/');
            let pat = pat.trim_start_matches('/');
            if pat.is_empty() {
                continue;
            }
            let base = if anchored || pat.starts_with("**/") {
                pat.to_string()
            } else {
                format!("**/{pat}")
            };
            for g in [base.clone(), format!("{base}/**")] {
                if let Ok(glob) = GlobBuilder::new(&g).literal_separator(true).build() {
                    set.add(glob);
                }
            }
        }
        GitIgnore(set.build().unwrap_or_else(|_| GlobSet::empty()))
    }

    fn is_match(&self, rel: &str) -> bool {
        !rel.is_empty() && self.0.is_match(rel)
    }
}

// ---------------------------------------------------------------------------------------------
// The OS watcher.

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

struct Watches {
    debouncer: Debouncer<ContentWatcher>,
    dirs: BTreeSet<PathBuf>,
    /// Paths already reported as unwatchable, so a problem is shown once.
    warned: HashSet<PathBuf>,
}

impl Watches {
    fn sync(&mut self, want: BTreeSet<PathBuf>, renew: &BTreeSet<PathBuf>) {
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
fn watcher_error(path: Option<&Path>, e: notify::Error) -> Option<Report> {
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

    fn plan(toml: &str) -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Orchfile.toml");
        std::fs::write(&path, toml).unwrap();
        let plan = crate::state::plan_cache::load(&path).unwrap();
        (dir, plan)
    }

    const PLAN: &str = r#"
[tasks.a]
run = "cat in_a.txt > out_a.txt"
inputs = ["in_a.txt", "src/**/*.rs"]
outputs = ["out_a.txt"]
[tasks.b]
run = "cat out_a.txt > out_b.txt"
inputs = ["docs/*.md"]
outputs = ["out_b.txt"]
deps = ["a"]
"#;

    fn inputs(c: Class) -> Vec<usize> {
        match c {
            Class::Inputs(t) => t.into_iter().collect(),
            other => panic!("expected inputs, got {other:?}"),
        }
    }

    #[test]
    fn classifies_inputs_outputs_state_and_gitignore() {
        let (dir, plan) = plan(PLAN);
        std::fs::write(dir.path().join(".gitignore"), "target/\n*.log\n/gen\n").unwrap();
        std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        let loaded = Loaded::new(plan, &BuildOptions::default()).unwrap();
        let r = &loaded.rules;
        let of = dir.path().join("Orchfile.toml");
        let none = BTreeSet::new();
        let c = |rel: &str| r.classify(&dir.path().join(rel), &of, &none);
        assert_eq!(r.classify(&of, &of, &none), Class::Orchfile);
        assert_eq!(inputs(c("in_a.txt")), vec![0]);
        assert_eq!(inputs(c("src/x/y.rs")), vec![0]);
        assert_eq!(
            inputs(c("src/deep")),
            vec![0],
            "a new directory under a glob"
        );
        assert_eq!(inputs(c("docs/readme.md")), vec![1]);
        assert_eq!(inputs(c("docs")), vec![1], "creating the glob's directory");
        assert!(
            inputs(c("docs/sub/x.md")).is_empty(),
            "`*` stays in one directory"
        );
        assert!(inputs(c("notes.txt")).is_empty());
        assert_eq!(c("out_a.txt"), Class::Ignored);
        assert_eq!(c(".orchestrator/snapshot.json"), Class::Ignored);
        assert_eq!(c(".git/index"), Class::Ignored);
        assert_eq!(c("src/target/x.rs"), Class::Ignored);
        assert_eq!(r.classify(&PathBuf::new(), &of, &none), Class::Rescan);
    }

    #[test]
    fn watches_input_directories_but_not_state_or_ignored_ones() {
        let (dir, plan) = plan(PLAN);
        std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
        for d in ["src/a/b", "src/target/debug", "src/.git", ".orchestrator"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let loaded = Loaded::new(plan, &BuildOptions::default()).unwrap();
        let dirs = loaded.rules.watch_dirs(&dir.path().join("Orchfile.toml"));
        let rel: Vec<String> = dirs.iter().map(|d| loaded.rules.rel(d)).collect();
        // docs/ does not exist yet: its parent (the root) is watched for it.
        assert_eq!(rel, vec!["", "src", "src/a", "src/a/b"]);
    }

    #[test]
    fn gitignore_common_forms() {
        let g = GitIgnore::parse("# c\n\ntarget/\n*.log\n/top.txt\na/b\n!keep.log\n\\#hash\n");
        assert!(g.is_match("target"));
        assert!(g.is_match("x/target/y.rs"));
        assert!(g.is_match("deep/x.log"));
        assert!(g.is_match("top.txt"));
        assert!(!g.is_match("sub/top.txt"));
        assert!(g.is_match("a/b/c"));
        assert!(!g.is_match("x/a/b"));
        assert!(g.is_match("#hash"));
        assert!(!g.is_match("src/main.rs"));
    }

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

    #[test]
    fn leads_to_and_is_under() {
        assert!(leads_to("src", "src/a"));
        assert!(leads_to("src/a", "src/a"));
        assert!(!leads_to("sr", "src/a"));
        assert!(!leads_to("x", ""));
        assert!(is_under("src/a", "src"));
        assert!(!is_under("srcx/a", "src"));
        assert!(is_under("anything", ""));
    }
}
