//! The command line: argument parsing, plan discovery, signal handling, reporter choice.
//! Each subcommand lives in its own module with its `Args` and `run`.

pub mod build;
pub mod cache;
pub mod clean;
mod common;
pub mod completions;
pub mod diff;
pub mod explain;
pub mod graph;
pub mod init;
pub mod list;
pub mod man;
pub mod merge;
pub mod plan;
pub mod report;
pub mod schema;
mod signals;
pub mod status;
pub mod watch;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use miette::{miette, Result};

use common::Global;

#[derive(Parser, Debug)]
#[command(name = "orch", version, about = "A make-like runner that orchestrates AI agents", long_about = None)]
pub struct Cli {
    /// Change to DIR before doing anything.
    #[arg(
        short = 'C',
        long = "directory",
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub directory: Option<PathBuf>,
    /// The plan file, instead of Orchfile.toml searched upward (then
    /// .orchestrator/master_plan.md here); a `.md` file is a master plan. For `orch init`,
    /// the file to write.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
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
    /// Write .orchestrator/report.html: the last build's attempts, costs and graph, one page.
    Report(report::ReportArgs),
    /// Say why tasks would run (which input, dep or definition field changed).
    Explain(explain::ExplainArgs),
    /// Print the task graph as Graphviz DOT or a mermaid flowchart.
    Graph(graph::GraphArgs),
    /// List the tasks: id, title, what runs them, priority, deps.
    List(list::ListArgs),
    /// Show the change a worktree task made that was kept (it conflicted or failed).
    Diff(diff::DiffArgs),
    /// Merge a conflicting worktree task's change into your tree, once resolved.
    Merge(merge::MergeArgs),
    /// Remove build state (results, logs, journal, caches, kept worktrees); --outputs also
    /// declared outputs.
    Clean(clean::CleanArgs),
    /// The output cache: `stats`, `prune` to its size cap, `clear`.
    Cache(cache::CacheArgs),
    /// Write a commented starter Orchfile.toml.
    Init(init::InitArgs),
    /// Print the JSON Schema of Orchfile.toml (for editors), or write it with -o.
    Schema(schema::SchemaArgs),
    /// Print the shell completion script (task ids included): `source <(orch completions bash)`.
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
        let slurm = args.next().as_deref() == Some("slurm");
        let cancel_jobs =
            |jobs: &[u64]| crate::executor::slurm::cancel_run(run_id.as_deref(), jobs);
        return crate::executor::guard::run_guard(
            std::time::Duration::from_millis(grace),
            run_id.as_deref(),
            slurm.then_some(&cancel_jobs as &dyn Fn(&[u64])),
        );
    }
    // A TAB in a shell that sourced `orch completions SHELL` runs orch with COMPLETE set.
    completions::complete_if_asked(Cli::command);
    let cli = Cli::parse();
    // Commands that only print end as any Unix filter does when their reader goes away
    // (`orch list | head`): by SIGPIPE, exit 141. Those that run processes keep it ignored
    // and cancel cleanly instead: tasks stopped, state saved (see reporter/emit.rs).
    let runs_processes = match &cli.command {
        Command::Build(b) => !b.dry_run,
        Command::Watch(_) | Command::Plan(_) => true,
        _ => false,
    };
    if !runs_processes {
        // SAFETY: setting a signal's disposition, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            // Not eprintln!, which panics when stderr is gone.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{report:?}");
            2
        }
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
        Command::Report(args) => report::run(&global, &args),
        Command::Explain(args) => explain::run(&global, &args),
        Command::Graph(args) => graph::run(&global, &args),
        Command::List(args) => list::run(&global, &args),
        Command::Diff(args) => diff::run(&global, &args),
        Command::Merge(args) => merge::run(&global, &args),
        Command::Clean(args) => clean::run(&global, &args),
        Command::Cache(args) => cache::run(&global, &args),
        Command::Init(args) => init::run(&global, &args),
        Command::Schema(args) => schema::run(&global, &args),
        Command::Completions(args) => completions::run(&global, &args, Cli::command()),
        Command::Man(args) => man::run(&global, &args, Cli::command()),
    }
}
