//! `orch cache stats|prune|clear`: the local output cache of this project's state directory.

use clap::{Args, Subcommand};
use miette::{miette, Result};

use std::path::{Path, PathBuf};

use super::common::Global;
use crate::cache::{dir_of, LocalStore};
use crate::disk::{sweep_left_over_temps, Swept};
use crate::plan::{format_size, parse_size, Plan};

#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CacheAction {
    /// Entries, blobs and size of the local cache, and the remote cache if one is set.
    Stats,
    /// Evict least recently used entries until the cache fits cache_max_size (or --max-size),
    /// and remove the temp files killed builds left (in the state directory and beside the
    /// declared outputs).
    Prune {
        /// The size to prune to, e.g. 500M or 2G [default: settings.cache_max_size].
        #[arg(long = "max-size", value_name = "SIZE")]
        max_size: Option<String>,
    },
    /// Remove every entry of the local cache (a remote cache is left alone).
    Clear,
}

pub fn run(global: &Global, args: &CacheArgs) -> Result<i32> {
    let plan = global.plan()?;
    let dir = dir_of(&plan.state_dir());
    let store = LocalStore::new(&dir);
    let shown = plan.relative(&dir);
    let settings = &plan.settings.cache;
    match &args.action {
        CacheAction::Stats => {
            let s = store.stats();
            println!(
                "local cache {shown}: {} entries, {} blobs, {} of {}{}",
                s.records,
                s.blobs,
                format_size(s.bytes),
                format_size(settings.max_size),
                if settings.enabled {
                    ""
                } else {
                    " (cache = false)"
                }
            );
            if let Some(r) = &settings.remote {
                println!("remote cache {} ({})", r.url, r.mode.as_str());
            }
        }
        CacheAction::Prune { max_size } => {
            let max = match max_size {
                Some(s) => parse_size(&toml::Value::String(s.clone()))
                    .map_err(|e| miette!("--max-size: {e}"))?,
                None => settings.max_size,
            };
            let (n, freed) = store.prune(max);
            let left = store.stats().bytes;
            println!(
                "pruned {n} files ({}); {} left, at most {}",
                format_size(freed),
                format_size(left),
                format_size(max)
            );
            let swept = sweep_temps(&plan, &store);
            if swept.files > 0 {
                println!(
                    "removed {} temp files ({}) that killed builds left",
                    swept.files,
                    format_size(swept.bytes)
                );
            }
        }
        CacheAction::Clear => {
            let s = store
                .clear()
                .map_err(|e| miette!("cannot clear {shown}: {e}"))?;
            println!(
                "removed {} entries and {} blobs ({}) from {shown}",
                s.records,
                s.blobs,
                format_size(s.bytes)
            );
        }
    }
    Ok(0)
}

/// Removes the temp files killed writers left: in the store, the state directory (every
/// directory of it but the blobs and the worktrees) and beside every declared output.
fn sweep_temps(plan: &Plan, store: &LocalStore) -> Swept {
    let state = plan.state_dir();
    let mut swept = store.sweep_left_overs(true);
    let skipped = [store.dir.clone(), state.join("worktrees")];
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(&state)
        .into_iter()
        .filter_entry(|e| !skipped.iter().any(|s| e.path() == s))
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.push(plan.root.clone());
    dirs.extend(
        plan.tasks
            .iter()
            .flat_map(|t| &t.outputs)
            .filter_map(|o| plan.root.join(o).parent().map(Path::to_path_buf)),
    );
    dirs.sort_unstable();
    dirs.dedup();
    for d in dirs {
        swept += sweep_left_over_temps(&d);
    }
    swept
}
