//! `orch clean`: forget what was built. Removes the state directory's results, task files,
//! logs, journal, snapshot, stat cache, up-to-date record, final output, run records and
//! report; with `outputs`,
//! also the files tasks declared as outputs. Never removes anything outside the project
//! root, never follows a symlink out of it, and keeps `master_plan.md` (a person's plan and
//! notes live there); its status table is reset instead.

use std::io;
use std::path::{Path, PathBuf};

use miette::{miette, Result};

use crate::master_plan;
use crate::plan::checks::check_inside_root;
use crate::plan::Plan;
use crate::state::lock::{LockWait, RunLock};
use crate::state::{StateLayout, StateStore};

#[derive(Debug, Clone, Copy, Default)]
pub struct CleanOptions {
    /// Also delete every task's declared outputs.
    pub outputs: bool,
    /// Only say what would be removed.
    pub dry_run: bool,
}

#[derive(Debug, Default)]
pub struct CleanReport {
    /// Paths removed (or that would be, in a dry run), relative to the root where possible.
    pub removed: Vec<PathBuf>,
    /// Paths left alone, and why.
    pub refused: Vec<(PathBuf, String)>,
}

/// Whether `path` (which may not exist) lies inside `root_canon` once the symlinks of its
/// existing ancestors are resolved. The final component itself is not followed.
fn inside(root_canon: &Path, path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    let Some(name) = path.file_name() else {
        return false;
    };
    // Resolve the deepest existing ancestor; what is below it cannot be a symlink yet.
    let mut existing = parent.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(p)) => {
                rest.push(n.to_os_string());
                existing = p.to_path_buf();
            }
            _ => return false,
        }
    }
    let Ok(mut resolved) = existing.canonicalize() else {
        return false;
    };
    for n in rest.into_iter().rev() {
        resolved.push(n);
    }
    resolved.push(name);
    resolved.starts_with(root_canon) && resolved != root_canon
}

fn remove(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        // Does not follow symlinks inside the directory.
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Cleans the state of `plan`. Takes the run lock, so it refuses while a build runs.
pub fn clean(plan: &Plan, opts: CleanOptions) -> Result<CleanReport> {
    let root = plan.root.canonicalize().map_err(|e| {
        miette!(
            "cannot resolve the project root {}: {e}",
            plan.root.display()
        )
    })?;
    let layout = StateLayout::new(plan.state_dir());
    let mut report = CleanReport::default();
    let rel = |p: &Path| -> PathBuf { p.strip_prefix(&plan.root).unwrap_or(p).to_path_buf() };
    let state_ok = inside(&root, &layout.dir);
    if !state_ok {
        report.refused.push((
            layout.dir.clone(),
            "the state directory is outside the project root".into(),
        ));
    }
    let _lock = if layout.dir.is_dir() && state_ok && !opts.dry_run {
        Some(
            RunLock::acquire(&layout.lock(), LockWait::Refuse)
                .map_err(|e| miette!("cannot clean while another run is going on: {e}"))?,
        )
    } else {
        None
    };
    let mut targets: Vec<PathBuf> = Vec::new();
    if state_ok {
        targets.extend([
            layout.results_dir(),
            layout.agent_tasks_dir(),
            layout.logs_dir(),
            layout.snapshot(),
            layout.journal(),
            layout.stat_cache(),
            layout.up_to_date(),
            layout.final_output(),
            layout.runs_dir(),
            layout.report(),
        ]);
        targets.extend(layout.legacy_files());
    }
    if opts.outputs {
        // Instances whose item went away left their outputs too.
        let mut gone = Vec::new();
        if state_ok && layout.dir.is_dir() && !plan.fanouts.is_empty() {
            let store = StateStore::open(layout.clone()).map_err(|e| miette!("{e}"))?;
            let results = plan.relative(&layout.results_dir());
            for (_, record) in crate::state::items::gone_instances(plan, &store.snapshot) {
                gone.extend(
                    record
                        .outputs
                        .iter()
                        .filter(|(p, _)| !p.starts_with(&results))
                        .map(|(p, _)| p.clone()),
                );
            }
        }
        let declared = plan.tasks.iter().flat_map(|t| t.outputs.iter());
        for o in declared.chain(&gone) {
            {
                let path = plan.root.join(o);
                if check_inside_root(o).is_err() || !inside(&root, &path) {
                    report
                        .refused
                        .push((path, "outside the project root".into()));
                } else if path.is_dir() && !path.is_symlink() {
                    report
                        .refused
                        .push((rel(&path), "a directory, not a file".into()));
                } else {
                    targets.push(path);
                }
            }
        }
    }
    if state_ok {
        report
            .removed
            .extend(remove_worktrees(plan, &layout, opts.dry_run));
    }
    for path in targets {
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        if !opts.dry_run {
            remove(&path).map_err(|e| miette!("cannot remove {}: {e}", path.display()))?;
        }
        report.removed.push(rel(&path));
    }
    // The status table would still show the old run: reset it, keeping everything else.
    let master = layout.master_plan();
    if state_ok && !opts.dry_run && master.is_file() {
        let mut store = StateStore::open(layout.clone()).map_err(|e| miette!("{e}"))?;
        store.assign_agent_ids(plan);
        let rows = master_plan::rows_from_store(plan, &store);
        let mut lines = vec![format!("{} path(s) removed", report.removed.len())];
        if opts.outputs {
            lines.push("declared outputs removed too".into());
        }
        master_plan::write_master_plan(
            plan,
            &store,
            &rows,
            master_plan::log_entry("State Cleaned", lines),
        )
        .map_err(|e| miette!("cannot rewrite {}: {e}", master.display()))?;
    }
    Ok(report)
}

/// The worktrees (and their `orch/<task>` branches) kept for tasks that conflicted or
/// failed, or left by a killed build: removed through git, so it forgets them too.
fn remove_worktrees(plan: &Plan, layout: &StateLayout, dry_run: bool) -> Vec<PathBuf> {
    let dir = layout.dir.join("worktrees");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|n| n.strip_suffix(".json").map(str::to_string).unwrap_or(n))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names.dedup();
    let repo = crate::workspace::Repo::open(&plan.root, &layout.dir).ok();
    let mut removed = Vec::new();
    for name in names {
        if !dry_run {
            match &repo {
                Some(repo) => repo.remove(&name, false),
                None => {
                    let _ = std::fs::remove_dir_all(dir.join(&name));
                    let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
                }
            }
        }
        removed.push(
            dir.join(&name)
                .strip_prefix(&plan.root)
                .unwrap_or(&dir)
                .to_path_buf(),
        );
    }
    if !dry_run {
        let _ = std::fs::remove_dir(&dir);
    }
    removed
}
