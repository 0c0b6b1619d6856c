//! The no-op fast path: `<state_dir>/up_to_date.bin`.
//!
//! A build that found every wanted task up to date, and so changed nothing, leaves behind
//! what that verdict rested on: the stamp of every file it depends on (inputs, outputs,
//! results, prompt files, the directories its globs walked, master_plan.md and the state
//! itself), under a key made of the Orchfile's text, the orch binary and the arguments. The
//! next build with the same key takes the lock and stats just those files, before it even
//! loads the plan. If every stamp still matches, the verdict stands and the build reports it
//! again; a changed stamp, a missing file or any doubt falls through to the full check, which
//! leaves a new record when it finds nothing to do again.
//!
//! Why a matching stamp is proof enough: each file's recorded stamp is one the stat cache
//! hashed to exactly the content its task's record holds (the trust every up-to-date check
//! already puts in the stat cache), and a file cannot get an old stamp back, since its ctime
//! only moves forward. Stamps of files changed too recently to trust (git's "racy clean") are
//! never recorded.

use std::borrow::Cow;

use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::context::BuildContext;
use super::options::{BuildOptions, BuildOutcome};
use crate::cancel::Cancel;
use crate::disk::codec::{DecodeError, Decoder, Encoder};
use crate::disk::{Digest, FileStamp};
use crate::fingerprint::{self, OpenDir};
use crate::master_plan::PlanDoc;
use crate::plan::{Action, Foreach};
use crate::reporter::{Emitter, Event, Events, Reporter, Summary, TaskRef};
use crate::state::lock::{LockWait, RunLock};
use crate::state::{StateLayout, StateStore};

const MAGIC: &[u8; 8] = b"ORCHUD01";

/// Below this many files one thread stats them sooner than several could start.
const FILES_PER_THREAD: usize = 512;

/// The key a record is valid under: the plan (as the plan cache knows it: Orchfile path and
/// text, orch version and binary) and every argument that changes the verdict. `None` under
/// `--force`, whose builds run everything.
pub fn key(plan_key: &Digest, opts: &BuildOptions) -> Option<Digest> {
    if opts.force {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update(b"orch-up-to-date-v1\0");
    h.update(plan_key.as_bytes());
    // Length-prefixed, so no two lists of names run together into the same bytes.
    let mut field = |name: &[u8], value: &str| {
        h.update(name);
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    };
    for target in &opts.targets {
        field(b"target", target);
    }
    if let Some(agent) = &opts.agent_override {
        field(b"agent", agent);
    }
    Some(Digest::from_hash(h.finalize()))
}

/// A task as the build reported it.
#[derive(Debug, Clone, PartialEq)]
struct ReportedTask<'a> {
    id: Cow<'a, str>,
    title: Cow<'a, str>,
    agent_id: Cow<'a, str>,
    runner: Cow<'a, str>,
}

/// What an all-up-to-date build saw and said. Read, it borrows the file's bytes: the fast
/// path allocates nothing per task.
#[derive(Debug, Clone, PartialEq)]
struct Record<'a> {
    root: Cow<'a, str>,
    /// `settings.jobs`, for the `-j` the build reports.
    jobs_setting: Option<usize>,
    /// The wanted tasks, in the order their skips were reported.
    tasks: Vec<ReportedTask<'a>>,
    /// final_output.md's path and the merge strategy, when the build aggregates.
    aggregated: Option<(Cow<'a, str>, Cow<'a, str>)>,
    /// Paths relative to `root` (or absolute), each with its stamp, or `None` for a file
    /// that must not exist.
    files: Vec<(Cow<'a, str>, Option<FileStamp>)>,
}

/// The fast path: if the record under `key` in `state_dir` still holds, reports the build it
/// describes and returns its outcome; `None` sends the caller to the full build.
pub fn replay(
    state_dir: &Path,
    key: &Digest,
    opts: &BuildOptions,
    reporter: &mut dyn Reporter,
) -> Option<BuildOutcome> {
    let started = Instant::now();
    let layout = StateLayout::new(state_dir);
    let bytes = std::fs::read(layout.up_to_date()).ok()?;
    let record = Record::decode(&bytes, key).ok()??;
    crate::profile::mark("up-to-date record read");
    // Held while the stamps are read: no other build of this directory is changing them.
    // A held lock is the full build's to report (or wait for).
    let _lock = RunLock::acquire(&layout.lock(), LockWait::Refuse).ok()?;
    // A merge a killed build left is the full build's to finish.
    if !record.still_holds() || crate::workspace::merge::records_pending(state_dir) {
        return None;
    }
    crate::profile::mark("up-to-date record holds");
    // Only the output can stop a replay: a reader that went away.
    let cancel = Cancel::new();
    let mut emitter = Emitter::new(reporter, &cancel);
    let events: &mut dyn Events = &mut emitter;
    events.emit(Event::BuildStarted {
        tasks: record.tasks.len(),
        jobs: opts.jobs_with(record.jobs_setting),
    });
    for t in &record.tasks {
        events.emit(Event::TaskSkipped {
            task: TaskRef {
                id: &t.id,
                title: &t.title,
                agent_id: &t.agent_id,
                runner: &t.runner,
            },
            deps_reran: &[],
            deps_restored: &[],
        });
    }
    if let Some((path, strategy)) = &record.aggregated {
        events.emit(Event::Aggregated {
            path,
            strategy,
            up_to_date: true,
        });
    }
    let summary = Summary {
        skipped: record.tasks.len(),
        duration: started.elapsed(),
        interrupted: cancel.is_cancelled(),
        ..Default::default()
    };
    events.emit(Event::BuildFinished { summary: &summary });
    Some(BuildOutcome {
        summary,
        aggregate_error: None,
        stopped_by: cancel.reason(),
    })
}

/// Writes the record of a build that found each of `skipped` (every wanted task, in the
/// order reported) up to date and changed nothing; called with the state closed and the
/// lock still held. Writes nothing when some stamp cannot be vouched for.
pub fn write(
    ctx: &BuildContext,
    store: &StateStore,
    key: &Digest,
    skipped: &[usize],
    aggregating: bool,
) -> std::io::Result<()> {
    let path = ctx.layout.up_to_date();
    match collect(ctx, store, skipped, aggregating) {
        Some(record) => crate::disk::replace_unsynced(&path, &record.encode(key)),
        // An older record cannot hold (the state it names has not changed, or this build
        // would have taken the fast path), but it costs a read: drop it.
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The record of this build, or `None` when some part of the verdict has no stamp to stand
/// for it.
fn collect<'a>(
    ctx: &'a BuildContext,
    store: &StateStore,
    skipped: &[usize],
    aggregating: bool,
) -> Option<Record<'a>> {
    let plan = ctx.plan;
    let layout = &ctx.layout;
    let now = fingerprint::now_ns();
    // Paths are kept as text: a root or state directory that is not UTF-8 gets no record.
    let root = plan.root.to_str()?;
    layout.dir.to_str()?;
    let rel = |p: &Path| Cow::Owned(plan.relative(p));
    let mut files: Vec<(Cow<str>, Option<FileStamp>)> = Vec::new();
    // The state, snapshot and (closed) journal: only orch writes them, and only under the
    // lock this build still holds.
    files.push((
        rel(&layout.snapshot()),
        Some(FileStamp::of_path(&layout.snapshot())?),
    ));
    files.push((
        rel(&layout.journal()),
        FileStamp::of_path(&layout.journal()),
    ));
    // master_plan.md: as orch wrote it, the full build does not read it; edited, the full
    // build reads its status table for tasks a person reset, and must find none. Stamped
    // around that same read.
    let doc = FileStamp::of_path(&layout.master_plan())?;
    if fingerprint::stamp_is_racy(&doc, now) {
        return None;
    }
    if store.snapshot.plan_doc_stamp != Some(doc) {
        let resets = PlanDoc::load(plan, layout, store).reset_by_person(plan, store);
        if !resets.is_empty() || FileStamp::of_path(&layout.master_plan()) != Some(doc) {
            return None;
        }
    }
    files.push((rel(&layout.master_plan()), Some(doc)));

    // Task by task on all cores: at 10,000 tasks this is 30,000 stat cache lookups.
    let per_task = skipped
        .par_iter()
        .with_min_len(256)
        .map(|&t| task_files(ctx, t, now, aggregating))
        .collect::<Option<Vec<_>>>()?;
    files.extend(fanout_files(ctx, now)?);
    let mut tasks = Vec::with_capacity(skipped.len());
    for (task_files, reported) in per_task {
        files.extend(task_files);
        tasks.push(reported);
    }
    let aggregated = if aggregating {
        // The merge is up to date while its inputs (the results, above) are and the file
        // exists; its content is not part of that check.
        let out = layout.final_output();
        files.push((rel(&out), Some(FileStamp::of_path(&out)?)));
        let (path, strategy) = super::aggregate::reported_as(ctx);
        Some((Cow::Owned(path), Cow::Owned(strategy)))
    } else {
        None
    };
    // A dep's output is its dependents' input: one stat each. Sorted, the stats also walk
    // the directories in order.
    files.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    files.dedup();
    if files.windows(2).any(|w| w[0].0 == w[1].0) {
        return None; // one file seen with two stamps: it changed during the build
    }
    Some(Record {
        root: Cow::Borrowed(root),
        jobs_setting: plan.settings.jobs,
        tasks,
        aggregated,
        files,
    })
}

/// What the item sets of the plan's fan-outs rested on: the directories each glob walks
/// (whose listing must still give the instances), the file of items a source answered.
#[allow(clippy::type_complexity)]
fn fanout_files<'a>(
    ctx: &'a BuildContext,
    now: i64,
) -> Option<Vec<(Cow<'a, str>, Option<FileStamp>)>> {
    let plan = ctx.plan;
    let mut files = Vec::new();
    for f in &plan.fanouts {
        match f.template.foreach.as_ref()? {
            Foreach::Glob(pattern) => {
                let patterns = std::slice::from_ref(pattern);
                let dirs = fingerprint::glob_dirs(&plan.root, patterns, &ctx.layout.dir).ok()?;
                if dirs
                    .iter()
                    .any(|(_, s)| s.is_some_and(|s| fingerprint::stamp_is_racy(&s, now)))
                {
                    return None;
                }
                let matched =
                    fingerprint::expand_inputs(&plan.root, patterns, &ctx.layout.dir).ok()?;
                let items = f
                    .instances
                    .iter()
                    .map(|&t| ctx.task(t).item.as_ref().map(|i| &i.value));
                if !matched.iter().map(Some).eq(items) {
                    return None;
                }
                files.extend(dirs.into_iter().map(|(p, s)| (Cow::Owned(p), s)));
            }
            Foreach::From(source) => {
                let path = ctx.layout.answered_items(source);
                let stamp = FileStamp::of_path(&path);
                if stamp.is_some_and(|s| fingerprint::stamp_is_racy(&s, now)) {
                    return None;
                }
                files.push((Cow::Owned(plan.relative(&path)), stamp));
            }
            // A list is in the Orchfile's text, which keys the record; another fan-out's
            // items are its own entry here.
            Foreach::List(_) | Foreach::SameAs(_) => {}
        }
    }
    Some(files)
}

/// Task `t`'s part of the record: the stamps its verdict rested on, and how it was reported.
#[allow(clippy::type_complexity)]
fn task_files<'a>(
    ctx: &'a BuildContext,
    t: usize,
    now: i64,
    aggregating: bool,
) -> Option<(Vec<(Cow<'a, str>, Option<FileStamp>)>, ReportedTask<'a>)> {
    let plan = ctx.plan;
    let layout = &ctx.layout;
    let mut files: Vec<(Cow<str>, Option<FileStamp>)> = Vec::new();
    let task = ctx.task(t);
    let record = ctx.previous[t].as_ref()?;
    // Inputs and outputs (results included): stamps the stat cache hashed to the very
    // content the record holds.
    for (path, hash) in record.inputs.iter().chain(&record.outputs) {
        let (stamp, vouched) = ctx.stat_cache.vouched(&plan.root.join(path))?;
        if vouched != *hash {
            return None;
        }
        files.push((Cow::Borrowed(path.as_str()), Some(stamp)));
    }
    // What the globs match: the directories they walk, stamped before they are listed
    // again, and the listing must still be the recorded one.
    if task.inputs.iter().any(|p| fingerprint::has_glob_meta(p)) {
        let dirs = fingerprint::glob_dirs(&plan.root, &task.inputs, &layout.dir).ok()?;
        if dirs
            .iter()
            .any(|(_, s)| s.is_some_and(|s| fingerprint::stamp_is_racy(&s, now)))
        {
            return None;
        }
        let matched = fingerprint::expand_inputs(&plan.root, &task.inputs, &layout.dir).ok()?;
        if !matched.iter().eq(record.inputs.iter().map(|(p, _)| p)) {
            return None;
        }
        files.extend(dirs.into_iter().map(|(p, s)| (Cow::Owned(p), s)));
    }
    // A prompt file is part of the definition: stamped around a read that must give the
    // recorded definition.
    if let Action::PromptFile(f) = &task.action {
        let prompt = plan.resolve(f);
        let before = FileStamp::of_path(&prompt)?;
        let definition =
            fingerprint::task_definition(plan, t, ctx.opts.agent_override.as_deref()).ok()?;
        if definition.digest != record.definition
            || FileStamp::of_path(&prompt) != Some(before)
            || fingerprint::stamp_is_racy(&before, now)
        {
            return None;
        }
        files.push((Cow::Owned(plan.relative(&prompt)), Some(before)));
    }
    // A shell task that printed nothing has no result file, and the merge reads it as
    // empty: it must stay absent.
    if aggregating {
        let result = ctx.result_rel(t);
        if !record.outputs.iter().any(|(p, _)| *p == result) {
            if plan.resolve(&result).exists() {
                return None;
            }
            files.push((Cow::Owned(result), None));
        }
    }
    let reported = ReportedTask {
        id: Cow::Borrowed(&task.id),
        title: Cow::Borrowed(&task.title),
        agent_id: Cow::Borrowed(&ctx.agent_ids[t]),
        runner: Cow::Borrowed(ctx.runner_name(t)),
    };
    Some((files, reported))
}

impl<'a> Record<'a> {
    /// Whether every file still has its recorded stamp (or is still absent). The stats are
    /// spread over threads for large records, and stop at the first difference.
    fn still_holds(&self) -> bool {
        let Some(root) = OpenDir::open(Path::new(&*self.root)) else {
            return false;
        };
        let differs = AtomicBool::new(false);
        let check = |files: &[(Cow<str>, Option<FileStamp>)]| {
            for (path, want) in files {
                if differs.load(Ordering::Relaxed) {
                    return;
                }
                let same = matches!(root.stat(path), Ok(got) if got.map(|(s, _)| s) == *want);
                if !same {
                    differs.store(true, Ordering::Relaxed);
                    return;
                }
            }
        };
        let threads = (self.files.len() / FILES_PER_THREAD).clamp(1, available_cpus());
        if threads == 1 {
            check(&self.files);
        } else {
            let chunk = self.files.len().div_ceil(threads);
            std::thread::scope(|s| {
                let mut chunks = self.files.chunks(chunk);
                let mine = chunks.next().unwrap_or_default();
                for c in chunks {
                    s.spawn(|| check(c));
                }
                check(mine);
            });
        }
        !differs.load(Ordering::Relaxed)
    }

    fn encode(&self, key: &Digest) -> Vec<u8> {
        let mut e = Encoder::new(MAGIC);
        e.digest(key);
        e.str(&self.root);
        e.bool(self.jobs_setting.is_some());
        e.usize(self.jobs_setting.unwrap_or(0));
        e.usize(self.tasks.len());
        for t in &self.tasks {
            e.str(&t.id);
            e.str(&t.title);
            e.str(&t.agent_id);
            e.str(&t.runner);
        }
        e.bool(self.aggregated.is_some());
        if let Some((path, strategy)) = &self.aggregated {
            e.str(path);
            e.str(strategy);
        }
        e.usize(self.files.len());
        for (path, stamp) in &self.files {
            e.str(path);
            e.opt_stamp(stamp.as_ref());
        }
        e.finish()
    }

    /// The record in `bytes`, `Ok(None)` when it was written under another key.
    fn decode(bytes: &'a [u8], key: &Digest) -> Result<Option<Record<'a>>, DecodeError> {
        let mut d = Decoder::new(MAGIC, bytes)?;
        if d.digest()? != *key {
            return Ok(None);
        }
        let root = Cow::Borrowed(d.str()?);
        let has_jobs = d.bool()?;
        let jobs = d.u64()? as usize;
        let n = d.count()?;
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            tasks.push(ReportedTask {
                id: Cow::Borrowed(d.str()?),
                title: Cow::Borrowed(d.str()?),
                agent_id: Cow::Borrowed(d.str()?),
                runner: Cow::Borrowed(d.str()?),
            });
        }
        let aggregated = if d.bool()? {
            Some((Cow::Borrowed(d.str()?), Cow::Borrowed(d.str()?)))
        } else {
            None
        };
        let n = d.count()?;
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            files.push((Cow::Borrowed(d.str()?), d.opt_stamp()?));
        }
        if !d.at_end() {
            return Err(DecodeError::Shape("up-to-date record"));
        }
        Ok(Some(Record {
            root,
            jobs_setting: has_jobs.then_some(jobs),
            tasks,
            aggregated,
            files,
        }))
    }
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record<'static> {
        let stamp = FileStamp {
            size: 3,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 1_700_000_000_223_456_789,
            inode: 42,
        };
        Record {
            root: "/project".into(),
            jobs_setting: Some(3),
            tasks: vec![ReportedTask {
                id: "a".into(),
                title: "Task a".into(),
                agent_id: "Agent-01".into(),
                runner: "shell".into(),
            }],
            aggregated: Some((".orchestrator/final_output.md".into(), "concat".into())),
            files: vec![("in.txt".into(), Some(stamp)), ("gone.txt".into(), None)],
        }
    }

    #[test]
    fn a_record_reads_back_under_its_key_only() {
        let key = Digest::of(b"key");
        let bytes = record().encode(&key);
        assert_eq!(Record::decode(&bytes, &key), Ok(Some(record())));
        assert_eq!(Record::decode(&bytes, &Digest::of(b"other")), Ok(None));
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 1);
        assert!(Record::decode(&torn, &key).is_err());
    }

    #[test]
    fn the_key_depends_on_plan_targets_and_agent_and_force_has_none() {
        let plan = Digest::of(b"plan");
        let all = BuildOptions::default();
        let k = |o: &BuildOptions| key(&plan, o).unwrap();
        let targets = BuildOptions {
            targets: vec!["a".into()],
            ..Default::default()
        };
        let split = BuildOptions {
            targets: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let joined = BuildOptions {
            targets: vec!["a\0target\0b".into()],
            ..Default::default()
        };
        let agent = BuildOptions {
            agent_override: Some("sim".into()),
            ..Default::default()
        };
        let keys = [k(&all), k(&targets), k(&split), k(&joined), k(&agent)];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(key(&Digest::of(b"other plan"), &all), key(&plan, &all));
        let forced = BuildOptions {
            force: true,
            ..Default::default()
        };
        assert_eq!(key(&plan, &forced), None);
    }

    #[test]
    fn a_record_holds_until_a_stamp_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "abc").unwrap();
        let stamp = FileStamp::of_path(&dir.path().join("in.txt"));
        let mut r = record();
        r.root = dir.path().to_str().unwrap().to_string().into();
        // Enough files for several threads, all but one unchanged.
        r.files = (0..3 * FILES_PER_THREAD)
            .map(|_| ("in.txt".into(), stamp))
            .chain([("gone.txt".into(), None)])
            .collect();
        assert!(r.still_holds());
        std::fs::write(dir.path().join("gone.txt"), "").unwrap();
        assert!(!r.still_holds(), "a file that must not exist appeared");
        std::fs::remove_file(dir.path().join("gone.txt")).unwrap();
        std::fs::write(dir.path().join("in.txt"), "abd").unwrap();
        assert!(!r.still_holds(), "a file was rewritten");
    }
}
