//! The command line: argument parsing, plan discovery, signal handling, reporter choice.
//! Each subcommand lives in its own module with its `Args` and `run`.

pub mod build;
pub mod clean;
pub mod completions;
pub mod explain;
pub mod graph;
pub mod init;
pub mod list;
pub mod man;
pub mod plan;
pub mod status;
pub mod watch;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use miette::{miette, Result};

use crate::engine::BuildOptions;
use crate::master_plan;
use crate::plan::{orchfile, Plan, Settings};
use crate::reporter::{self, JsonReporter, PlainReporter, ProgressReporter, Reporter};

#[derive(Parser, Debug)]
#[command(name = "orch", version, about = "A make-like runner that orchestrates AI agents", long_about = None)]
pub struct Cli {
    /// Change to DIR before doing anything.
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Use this plan instead of searching for Orchfile.toml upward (then
    /// .orchestrator/master_plan.md here); a `.md` file is read as a master plan.
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the tasks that are not up to date, then aggregate the results.
    Build(build::BuildArgs),
    /// Build, then watch the inputs and the Orchfile and re-build what a change affects.
    Watch(watch::WatchArgs),
    /// Ask an agent to break a request into tasks; writes .orchestrator/master_plan.md.
    Plan(plan::PlanArgs),
    /// Show the status table: each task's last known status, times and retries.
    Status(status::StatusArgs),
    /// Say why tasks would run (which input, dep or definition field changed).
    Explain(explain::ExplainArgs),
    /// Print the task graph as Graphviz DOT or a mermaid flowchart.
    Graph(graph::GraphArgs),
    /// List the tasks: id, title, what runs them, priority, deps.
    List(list::ListArgs),
    /// Remove build state (results, logs, journal, caches); --outputs also declared outputs.
    Clean(clean::CleanArgs),
    /// Write a commented starter Orchfile.toml.
    Init(init::InitArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write all pages with --dir.
    Man(man::ManArgs),
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    crate::profile::init();
    // The crash guard is orch itself in another role; see executor/guard.rs.
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some("__guard") {
        let grace = args.next().and_then(|g| g.parse().ok()).unwrap_or(5000);
        let run_id = args.next();
        return crate::executor::guard::run_guard(
            std::time::Duration::from_millis(grace),
            run_id.as_deref(),
        );
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            2
        }
    }
}

/// Finds and loads the plan named by `-f`, or the nearest `Orchfile.toml`, or else
/// `.orchestrator/master_plan.md` in the working directory (the plan `orch plan` wrote, as a
/// person edited it). A `-f` file ending in `.md` is read as a master plan.
pub fn load_plan(file: Option<&Path>) -> Result<Plan> {
    locate_plan(file)?.load()
}

/// The file a plan is read from.
pub enum PlanSource {
    Orchfile(PathBuf),
    MasterPlan(PathBuf),
}

impl PlanSource {
    pub fn load(&self) -> Result<Plan> {
        match self {
            PlanSource::Orchfile(path) => crate::state::plan_cache::load(path),
            PlanSource::MasterPlan(path) => master_plan::load(path),
        }
    }

    /// The state directory the plan will most likely name, known before it is parsed: the
    /// default one beside an Orchfile (which may still move it with `state_dir`).
    pub fn likely_state_dir(&self) -> Option<PathBuf> {
        match self {
            PlanSource::Orchfile(path) => Some(path.parent()?.join(Settings::default().state_dir)),
            PlanSource::MasterPlan(_) => None,
        }
    }
}

/// Where [`load_plan`] finds the plan.
pub fn locate_plan(file: Option<&Path>) -> Result<PlanSource> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let cwd = std::env::current_dir().map_err(|e| miette!("no working directory: {e}"))?;
            match orchfile::discover(&cwd) {
                Some(p) => p,
                None => {
                    let md = cwd
                        .join(Settings::default().state_dir)
                        .join(master_plan::MASTER_PLAN_NAME);
                    if md.is_file() {
                        return Ok(PlanSource::MasterPlan(md));
                    }
                    return Err(miette!(
                        help = "create one with `orch init`, plan one with `orch plan \"...\"`, \
                                or point at one with -f FILE",
                        "no {} in {} or any parent directory, and no {}",
                        orchfile::ORCHFILE_NAME,
                        cwd.display(),
                        Path::new(".orchestrator")
                            .join(master_plan::MASTER_PLAN_NAME)
                            .display()
                    ));
                }
            }
        }
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(if master_plan::is_markdown(&path) {
        PlanSource::MasterPlan(path)
    } else {
        PlanSource::Orchfile(path)
    })
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
        Command::Watch(args) => watch::run(&global, &args),
        Command::Plan(args) => plan::run(&global, &args),
        Command::Status(args) => status::run(&global, &args),
        Command::Explain(args) => explain::run(&global, &args),
        Command::Graph(args) => graph::run(&global, &args),
        Command::List(args) => list::run(&global, &args),
        Command::Clean(args) => clean::run(&global, &args),
        Command::Init(args) => init::run(&global, &args),
        Command::Completions(args) => completions::run(&global, &args),
        Command::Man(args) => man::run(&global, &args),
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

    pub fn plan_source(&self) -> Result<PlanSource> {
        locate_plan(self.file.as_deref())
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
