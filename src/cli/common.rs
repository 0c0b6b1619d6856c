//! What every subcommand shares: the global options, finding and loading the plan, and the
//! choice of reporter.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use miette::{miette, Result};

use crate::engine::BuildOptions;
use crate::master_plan;
use crate::plan::diagnostic::{PlanError, PlanSpans};
use crate::plan::{orchfile, Plan, Settings};
use crate::reporter::{self, JsonReporter, PlainReporter, ProgressReporter, Reporter};

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

    /// Where the plan's tasks are written, read again from its file (for messages about a
    /// plan that came from the plan cache).
    pub fn spans(&self) -> Option<PlanSpans> {
        match self {
            PlanSource::Orchfile(path) => {
                orchfile::spans(path, &std::fs::read_to_string(path).ok()?)
            }
            PlanSource::MasterPlan(path) => Some(master_plan::read::spans(
                path,
                &std::fs::read_to_string(path).ok()?,
            )),
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

/// The checks a plan gets against the project's files before a build
/// ([`crate::preflight`]): warnings are printed, errors returned as one diagnostic. Returns
/// whether it warned (a build that warns leaves no record for the no-op fast path, which
/// would replay the build without the warning).
pub fn preflight(plan: &Plan, source: &PlanSource) -> Result<bool> {
    let found = crate::preflight::check(plan, &|| source.spans());
    let warned = !found.warnings.is_empty();
    let mut stderr = std::io::stderr().lock();
    for w in found.warnings {
        // A closed stderr is the build's to notice, not a reason to panic here.
        let _ = writeln!(stderr, "{:?}", miette::Report::new(w));
    }
    match PlanError::combine(found.errors) {
        Some(e) => Err(miette::Report::new(e)),
        None => Ok(warned),
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

pub fn reporter_for(json: bool, quiet: bool, verbose: bool) -> Box<dyn Reporter> {
    if json {
        return Box::new(JsonReporter::stdout());
    }
    let color = reporter::use_color();
    let tty =
        std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    if tty && !quiet && !verbose {
        Box::new(ProgressReporter::new(color))
    } else {
        Box::new(PlainReporter::new(color, quiet).verbose(verbose))
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
            let help = match crate::plan::checks::closest(a, known.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("known agents: {}", known.join(", ")),
            };
            return Err(miette!(help = help, "unknown agent `{a}`"));
        }
    }
    Ok(())
}
