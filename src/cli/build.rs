//! `orch build`.

use clap::Args;
use clap_complete::ArgValueCandidates;
use miette::Result;

use super::common::{check_agent_override, preflight, reporter_for, Global, PlanSource};
use super::completions;
use super::signals;
use crate::engine::{self, up_to_date, BuildOptions};
use crate::executor::ExecutorKind;
use crate::plan::orchfile;
use crate::plan::Plan;
use crate::reporter::record::RunRecorder;
use crate::reporter::Fanout;
use crate::state::plan_cache::{self, PlanCache};
use crate::state::preload::Preloaded;

/// The options `orch build` and `orch watch` share.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Tasks to build (with what they depend on); all when empty.
    #[arg(add = ArgValueCandidates::new(completions::task_ids))]
    pub targets: Vec<String>,
    /// Tasks running at once, 1 to 1024 [default: settings.jobs, else the CPU count].
    #[arg(short = 'j', long = "jobs", value_parser = crate::plan::limits::jobs_arg)]
    pub jobs: Option<usize>,
    /// Keep starting independent tasks after a failure.
    #[arg(short = 'k', long = "keep-going")]
    pub keep_going: bool,
    /// Run every agent task with this agent (e.g. `--agent sim` for an offline run).
    #[arg(long = "agent", value_name = "NAME", add = ArgValueCandidates::new(completions::agent_names))]
    pub agent: Option<String>,
    /// Time scale of the sim agent: an estimate of 2m takes 2m / SPEED.
    #[arg(long = "sim-speed", default_value_t = crate::agent::sim::DEFAULT_SPEED, value_parser = crate::agent::sim::parse_speed)]
    pub sim_speed: f64,
    /// Only failures, warnings and the summary.
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also a line for each task found up to date.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// One JSON event per line on stdout (other messages stay on stderr).
    #[arg(long = "json")]
    pub json: bool,
    /// Wait for another run in this directory to end instead of refusing.
    #[arg(long = "wait")]
    pub wait: bool,
    /// Run every task on this executor (local, slurm), whatever the plan says.
    #[arg(long = "executor", value_name = "NAME", value_parser = parse_executor)]
    pub executor: Option<ExecutorKind>,
    /// What this build may cost in US dollars, over settings.max_cost_usd: no agent task
    /// starts whose projected cost would pass it; running tasks finish (exit status 3).
    #[arg(long = "max-cost", value_name = "USD", value_parser = crate::plan::limits::cost_arg)]
    pub max_cost: Option<f64>,
    /// Neither restore from the output cache nor store in it (local and remote).
    #[arg(long = "no-cache")]
    pub no_cache: bool,
}

fn parse_executor(s: &str) -> Result<ExecutorKind, String> {
    ExecutorKind::parse(s).ok_or_else(|| format!("`{s}` is not an executor: local or slurm"))
}

impl RunArgs {
    /// Build options for these arguments, with the crash guard (this binary) on.
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            jobs: self.jobs,
            keep_going: if self.keep_going { Some(true) } else { None },
            agent_override: self.agent.clone(),
            executor: self.executor,
            targets: self.targets.clone(),
            sim_speed: self.sim_speed,
            force: false,
            wait_for_lock: self.wait,
            guard_program: std::env::current_exe().ok(),
            up_to_date_key: None,
            max_cost: self.max_cost,
            spent_before: 0.0,
            no_cache: self.no_cache,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Show what would run and why, in the order the build's scheduler would start it (in
    /// virtual time over the estimates), with the projected wall time; runs nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// With --dry-run: one line per fan-out instance, instead of one per fan-out.
    #[arg(long = "expand")]
    pub expand: bool,
    /// Run the selected tasks even if they are up to date.
    #[arg(short = 'B', long = "force")]
    pub force: bool,
    /// Then write the build's report, .orchestrator/report.html (as `orch report` does).
    #[arg(long = "report", conflicts_with = "dry_run")]
    pub report: bool,
}

pub fn run(global: &Global, args: &BuildArgs) -> Result<i32> {
    let source = global.plan_source()?;
    let mut opts = BuildOptions {
        force: args.force,
        ..args.run.options()
    };
    let mut reporter = Fanout(vec![reporter_for(
        args.run.json,
        args.run.quiet,
        args.run.verbose,
    )]);
    // An Orchfile's text is read first: with it, the record of the last all-up-to-date
    // build may settle this one without loading the plan.
    let mut read = None;
    if let PlanSource::Orchfile(path) = &source {
        let text = orchfile::read(path)?;
        crate::profile::mark("orchfile read");
        let cache = PlanCache::new(path, &text);
        if let Some(cache) = cache.as_ref().filter(|_| !args.dry_run) {
            if let Some(key) = up_to_date::key(cache.key(), &opts) {
                let dir = cache.state_dir();
                // Not recorded: this replays the verdict of the build that left the record,
                // which was, and a line per skipped task would slow down the builds this
                // path exists for. `--report` draws that build.
                if let Some(outcome) = up_to_date::replay(dir, &key, &opts, &mut reporter) {
                    if args.report {
                        report_last(dir);
                    }
                    return Ok(outcome.exit_code());
                }
                opts.up_to_date_key = Some(key);
            }
        }
        read = Some((text, cache));
    }
    // The state files are read on the worker pool while the plan loads.
    let state_dir = source
        .likely_state_dir()
        .filter(|d| !args.dry_run && d.is_dir());
    let mut preload = None;
    let plan = rayon::in_place_scope(|s| {
        if let Some(dir) = &state_dir {
            s.spawn(|_| preload = Some(Preloaded::read(dir)));
        }
        match (&source, read) {
            (PlanSource::Orchfile(path), Some((text, cache))) => {
                plan_cache::load_cached(path, text, cache)
            }
            _ => source.load(),
        }
    })?;
    crate::profile::mark("plan loaded");
    check_agent_override(&plan, &opts)?;
    for t in &opts.targets {
        engine::task_indexes(&plan, t)?;
    }
    if preflight(&plan, &source)? {
        opts.up_to_date_key = None;
    }
    crate::profile::mark("plan checked against the files");
    if args.dry_run {
        print!("{}", engine::dry_run::run(&plan, &opts, args.expand)?);
        return Ok(0);
    }
    let cancel = signals::install()?;
    engine::LEAK_ON_RETURN.store(true, std::sync::atomic::Ordering::Relaxed);
    let recorder = opts.recorder("build", &plan);
    reporter.0.push(Box::new(recorder.clone()));
    let state_dir = plan.state_dir();
    if !matches!(source, PlanSource::Orchfile(_)) {
        let outcome = engine::run_build(&plan, &opts, preload, &mut reporter, &cancel)?;
        std::mem::forget(plan); // the process exits next; see LEAK_ON_RETURN
        report_if_asked(args, &state_dir, &recorder);
        return Ok(outcome.exit_code());
    }
    // Dynamic fan-out: the second part's plan is loaded again, over the sources' answers.
    let reload = || -> Result<Plan> {
        let plan = source.load()?;
        preflight(&plan, &source)?;
        recorder.plan(&plan);
        Ok(plan)
    };
    let (outcome, second) =
        engine::build_expanding(&plan, &opts, preload, &mut reporter, &cancel, &reload)?;
    std::mem::forget(plan);
    std::mem::forget(second);
    report_if_asked(args, &state_dir, &recorder);
    Ok(outcome.exit_code())
}

/// `--report`: the build's record drawn into report.html; a failure to is said, not fatal
/// (the build's own exit code stands).
fn report_if_asked(args: &BuildArgs, state_dir: &std::path::Path, recorder: &RunRecorder) {
    if !args.report {
        return;
    }
    let Some(record) = recorder.path() else {
        return;
    };
    recorder.flush();
    draw(&record, state_dir);
}

/// `--report` on the fast path: the last record, the build whose verdict was replayed.
fn report_last(state_dir: &std::path::Path) {
    if let Some(record) = crate::report::pick_run(state_dir, 0) {
        draw(&record, state_dir);
    }
}

fn draw(record: &std::path::Path, state_dir: &std::path::Path) {
    let out = crate::report::default_output(state_dir);
    let said = match crate::report::write(record, &out) {
        Ok(_) => format!("orch: report written to {}", out.display()),
        Err(e) => format!("orch: cannot write the report {}: {e}", out.display()),
    };
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{said}");
}
