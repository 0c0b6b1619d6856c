//! `orch watch`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use miette::{miette, Result};

use super::build::RunArgs;
use super::common::{check_agent_override, preflight, reporter_for, Global, PlanSource};
use super::signals;
use crate::plan::{orchfile, Plan};
use crate::watch::{self as engine, OnChange, WatchOptions};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// When an input of a running task changes: let the cycle finish then run again, or stop
    /// the running tasks (their whole process groups) and restart.
    #[arg(long = "on-change", value_enum, default_value_t = OnChange::Finish)]
    pub on_change: OnChange,
    /// Quiet time that ends a burst of changes (e.g. 100ms, 1s).
    #[arg(long = "debounce", value_name = "DURATION", default_value = "300ms",
          value_parser = parse_debounce)]
    pub debounce: Duration,
    /// Do not clear the terminal before each cycle.
    #[arg(long = "no-clear")]
    pub no_clear: bool,
}

fn parse_debounce(s: &str) -> Result<Duration, String> {
    let d = crate::duration::parse_duration(s)?;
    if d > Duration::from_secs(60) {
        return Err("at most 60s".into());
    }
    Ok(d)
}

impl WatchArgs {
    pub fn options(&self) -> WatchOptions {
        WatchOptions {
            // Each cycle's tasks are under the crash guard too.
            build: self.run.options(),
            debounce: self.debounce,
            on_change: self.on_change,
            clear: !self.no_clear
                && std::io::stderr().is_terminal()
                && std::env::var("TERM").map_or(true, |t| t != "dumb"),
        }
    }
}

/// The Orchfile `-f` names, or the nearest one: its path is watched even while it is broken.
fn orchfile_path(global: &Global) -> Result<PathBuf> {
    let path = match &global.file {
        Some(f) => f.clone(),
        None => {
            let cwd = std::env::current_dir().map_err(|e| miette!("no working directory: {e}"))?;
            match orchfile::discover(&cwd) {
                Some(p) => p,
                // Same message as every other command.
                None => {
                    return Err(global
                        .plan()
                        .err()
                        .unwrap_or_else(|| miette!("no Orchfile")))
                }
            }
        }
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    if !path.is_file() {
        return Err(miette!("cannot read {}: no such file", path.display()));
    }
    Ok(path)
}

pub fn run(global: &Global, args: &WatchArgs) -> Result<i32> {
    let path = orchfile_path(global)?;
    let opts = args.options();
    let interrupt = signals::install()?;
    let load = || -> Result<Plan> {
        let plan = crate::state::plan_cache::load(&path)?;
        check_agent_override(&plan, &opts.build)?;
        preflight(&plan, &PlanSource::Orchfile(path.clone()))?;
        Ok(plan)
    };
    let (json, quiet, verbose) = (args.run.json, args.run.quiet, args.run.verbose);
    let reporter = move || reporter_for(json, quiet, verbose);
    engine::watch(&path, &opts, &load, &reporter, &interrupt)
}
