//! `orch watch`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use miette::{miette, Result};

use super::{check_agent_override, install_signal_handlers, reporter_for, Global};
use crate::build::BuildOptions;
use crate::plan::{orchfile, Plan};
use crate::watch::{self as engine, OnChange, WatchOptions};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Tasks to build and watch (with what they depend on); all when empty.
    pub targets: Vec<String>,
    /// Tasks running at once [default: settings.jobs, else the CPU count].
    #[arg(short = 'j', long = "jobs")]
    pub jobs: Option<usize>,
    /// Keep starting independent tasks after a failure.
    #[arg(short = 'k', long = "keep-going")]
    pub keep_going: bool,
    /// Run every agent task with this agent (e.g. `--agent sim` for an offline run).
    #[arg(long = "agent", value_name = "NAME")]
    pub agent: Option<String>,
    /// Time scale of the sim agent: an estimate of 2m takes 2m / SPEED.
    #[arg(long = "sim-speed", default_value_t = crate::agent::sim::DEFAULT_SPEED, value_parser = crate::agent::sim::parse_speed)]
    pub sim_speed: f64,
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
    /// Only failures and the summary.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// One JSON event per line on stdout (watch messages stay on stderr).
    #[arg(long = "json")]
    pub json: bool,
    /// Wait for another run in this directory to end instead of failing the cycle.
    #[arg(long = "wait")]
    pub wait: bool,
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
            build: BuildOptions {
                jobs: self.jobs,
                keep_going: if self.keep_going { Some(true) } else { None },
                agent_override: self.agent.clone(),
                targets: self.targets.clone(),
                sim_speed: self.sim_speed,
                wait_for_lock: self.wait,
                // Each cycle's tasks are under the crash guard too.
                guard_program: std::env::current_exe().ok(),
                ..BuildOptions::default()
            },
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
    let interrupt = install_signal_handlers()?;
    let load = || -> Result<Plan> {
        let plan = orchfile::load(&path)?;
        check_agent_override(&plan, &opts.build)?;
        Ok(plan)
    };
    let (json, quiet) = (args.json, args.quiet);
    let reporter = move || reporter_for(json, quiet);
    engine::watch(&path, &opts, &load, &reporter, &interrupt)
}
