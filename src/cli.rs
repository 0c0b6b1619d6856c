//! The command line: argument parsing, plan discovery, signal handling, reporter choice.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use miette::{miette, Result};

use crate::build::{self, BuildOptions};
use crate::plan::{orchfile, Plan};
use crate::reporter::{self, Fanout, JsonReporter, PlainReporter, ProgressReporter, Reporter};

#[derive(Parser, Debug)]
#[command(name = "orch", version, about = "A make-like runner that orchestrates AI agents", long_about = None)]
pub struct Cli {
    /// Change to DIR before doing anything.
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Use this Orchfile instead of searching for Orchfile.toml upward.
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the tasks that are not up to date, then aggregate the results.
    Build(BuildArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct BuildArgs {
    /// Tasks to build (with what they depend on); all when empty.
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
    /// Show what would run, in parallel batches and why, without running anything.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Time scale of the sim agent: an estimate of 2m takes 2m / SPEED.
    #[arg(long = "sim-speed", default_value_t = crate::agent::sim::DEFAULT_SPEED)]
    pub sim_speed: f64,
    /// Run the selected tasks even if they are up to date.
    #[arg(short = 'B', long = "force")]
    pub force: bool,
    /// Only failures and the summary.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// One JSON event per line on stdout.
    #[arg(long = "json")]
    pub json: bool,
    /// Wait for another run in this directory to end instead of refusing.
    #[arg(long = "wait")]
    pub wait: bool,
}

impl BuildArgs {
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            jobs: self.jobs,
            keep_going: if self.keep_going { Some(true) } else { None },
            agent_override: self.agent.clone(),
            targets: self.targets.clone(),
            sim_speed: self.sim_speed,
            force: self.force,
            wait_for_lock: self.wait,
        }
    }
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            2
        }
    }
}

/// Finds and loads the plan named by `-f`, or the nearest `Orchfile.toml`.
pub fn load_plan(file: Option<&Path>) -> Result<Plan> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let cwd = std::env::current_dir().map_err(|e| miette!("no working directory: {e}"))?;
            orchfile::discover(&cwd).ok_or_else(|| {
                miette!(
                    help = "create one (see Orchfile.toml.example) or point at one with -f FILE",
                    "no {} in {} or any parent directory",
                    orchfile::ORCHFILE_NAME,
                    cwd.display()
                )
            })?
        }
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    orchfile::load(&path)
}

/// SIGINT/SIGTERM/SIGHUP set the returned flag; a second SIGINT exits at once.
pub fn install_signal_handlers() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .map_err(|e| miette!("cannot install signal handler: {e}"))?;
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| miette!("cannot install signal handler: {e}"))?;
    }
    Ok(flag)
}

pub fn reporter_for(json: bool, quiet: bool) -> Box<dyn Reporter> {
    if json {
        return Box::new(JsonReporter::new(std::io::stdout()));
    }
    let color = reporter::use_color();
    let tty =
        std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    if tty && !quiet {
        Box::new(ProgressReporter::new(color))
    } else {
        Box::new(PlainReporter::new(color, quiet))
    }
}

fn run(cli: Cli) -> Result<i32> {
    if let Some(dir) = &cli.directory {
        std::env::set_current_dir(dir)
            .map_err(|e| miette!("cannot change to {}: {e}", dir.display()))?;
    }
    match &cli.command {
        Command::Build(args) => {
            let plan = load_plan(cli.file.as_deref())?;
            let opts = args.options();
            check_agent_override(&plan, &opts)?;
            if args.dry_run {
                print!("{}", build::dry_run::run(&plan, &opts)?);
                return Ok(0);
            }
            let cancel = install_signal_handlers()?;
            let mut reporter = Fanout(vec![reporter_for(args.json, args.quiet)]);
            let outcome = build::run_build(&plan, &opts, &mut reporter, &cancel)?;
            Ok(outcome.exit_code())
        }
    }
}

fn check_agent_override(plan: &Plan, opts: &BuildOptions) -> Result<()> {
    if let Some(a) = &opts.agent_override {
        if !plan.agents.contains_key(a) {
            let known: Vec<&str> = plan.agents.keys().map(String::as_str).collect();
            return Err(miette!(
                help = format!("known agents: {}", known.join(", ")),
                "unknown agent `{a}`"
            ));
        }
    }
    Ok(())
}
