//! The command line: argument parsing, plan discovery, signal handling, reporter choice.
//! Each subcommand lives in its own module with its `Args` and `run`.

pub mod build;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use miette::{miette, Result};

use crate::build::BuildOptions;
use crate::plan::{orchfile, Plan};
use crate::reporter::{self, JsonReporter, PlainReporter, ProgressReporter, Reporter};

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
    Build(build::BuildArgs),
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
    let global = Global { file: cli.file };
    match cli.command {
        Command::Build(args) => build::run(&global, &args),
    }
}

/// Options every command shares.
pub struct Global {
    pub file: Option<PathBuf>,
}

impl Global {
    pub fn plan(&self) -> Result<Plan> {
        load_plan(self.file.as_deref())
    }
}

pub fn check_agent_override(plan: &Plan, opts: &BuildOptions) -> Result<()> {
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
