//! `orch plan`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indexmap::IndexMap;
use miette::{miette, Result};

use super::common::Global;
use super::signals;
use crate::agent::presets;
use crate::master_plan::{self, Sections, MASTER_PLAN_NAME};
use crate::plan::checks::parse_result_spec;
use crate::plan::orchfile::{self, ORCHFILE_NAME};
use crate::plan::{AgentKind, AgentSpec, Plan, PromptVia, Settings};
use crate::planner::{self, PlanEvent, PlanFailure, Planner};
use crate::state::lock::{LockWait, RunLock};
use crate::state::{StateLayout, StateStore};

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// What you want done, in your own words (`-` reads it from stdin).
    pub request: String,
    /// The agent that plans [default: settings.default_agent, else claude]; `sim` plans
    /// offline.
    #[arg(long = "agent", value_name = "NAME", conflicts_with = "agent_command")]
    pub agent: Option<String>,
    /// A planner command as a JSON argv, e.g. '["sh","planner.sh"]'. It gets the prompt on
    /// stdin (or in place of a `{prompt_file}` / `{prompt}` argument) and prints the plan.
    #[arg(long = "agent-command", value_name = "JSON")]
    pub agent_command: Option<String>,
    /// How `--agent-command`'s reply is read: stdout, json:<field> or file:<path>.
    #[arg(long = "agent-result", value_name = "SPEC", default_value = "stdout")]
    pub agent_result: String,
    /// How many times to ask when the plan is not valid (the problems go back to the agent).
    #[arg(long = "attempts", default_value_t = 3, value_parser = crate::plan::limits::attempts_arg)]
    pub attempts: u32,
    /// Also write the plan as Orchfile.toml (which `orch build` then reads instead).
    #[arg(long = "toml")]
    pub toml: bool,
    /// Replace an existing plan: a master_plan.md that has tasks, or Orchfile.toml with --toml.
    #[arg(long = "force")]
    pub force: bool,
    /// Longest one planning call may take (unless the agent sets its own timeout).
    #[arg(long = "timeout", value_name = "DURATION", default_value = "10m",
          value_parser = crate::plan::limits::timeout_arg)]
    pub timeout: Duration,
}

/// Where the plan goes and what it can use: from an Orchfile if there is one, else defaults.
struct Base {
    root: PathBuf,
    settings: Settings,
    agents: IndexMap<String, AgentSpec>,
    orchfile: Option<PathBuf>,
}

fn base(global: &Global) -> Result<Base> {
    let cwd = std::env::current_dir().map_err(|e| miette!("no working directory: {e}"))?;
    let orchfile = match &global.file {
        Some(f) if master_plan::is_markdown(f) => {
            let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            let (root, state_dir) = master_plan::layout_of(&f);
            return Ok(Base {
                root,
                settings: Settings {
                    state_dir,
                    ..Settings::default()
                },
                agents: presets::builtin_agents(),
                orchfile: None,
            });
        }
        Some(f) => Some(std::path::absolute(f).unwrap_or_else(|_| f.clone())),
        None => orchfile::discover(&cwd),
    };
    match orchfile {
        Some(path) if path.is_file() => {
            let plan: Plan = crate::state::plan_cache::load(&path)?;
            Ok(Base {
                root: plan.root,
                settings: plan.settings,
                agents: plan.agents,
                orchfile: Some(path),
            })
        }
        _ => Ok(Base {
            root: cwd,
            settings: Settings::default(),
            agents: presets::builtin_agents(),
            orchfile: None,
        }),
    }
}

fn custom_agent(json: &str, result: &str) -> Result<AgentSpec> {
    let command: Vec<String> = serde_json::from_str(json).map_err(|e| {
        miette!(
            help = r#"give a JSON array of strings, e.g. '["sh", "planner.sh"]'"#,
            "--agent-command is not a JSON argv: {e}"
        )
    })?;
    if command.is_empty() {
        return Err(miette!("--agent-command must not be empty"));
    }
    // As an Orchfile's `command` is checked: an empty program would only fail at launch,
    // after the state directory is made and the planner announced.
    if command[0].trim().is_empty() {
        return Err(miette!(
            help = r#"put the program first, e.g. '["sh", "planner.sh"]'"#,
            "--agent-command's program (its first element) is empty"
        ));
    }
    let prompt_via = if command.iter().any(|a| a.contains("{prompt_file}")) {
        PromptVia::File
    } else if command.iter().any(|a| a.contains("{prompt}")) {
        PromptVia::Arg
    } else {
        PromptVia::Stdin
    };
    Ok(AgentSpec {
        name: "custom".into(),
        kind: AgentKind::Command,
        command,
        prompt_via,
        result: parse_result_spec(result).map_err(|e| miette!("--agent-result: {e}"))?,
        retries: 0,
        retry_on: Vec::new(),
        env: IndexMap::new(),
        ..crate::agent::presets::preset("llm").expect("the llm preset")
    })
}

/// Whether a master plan already lists tasks (a table with at least one row).
fn has_tasks(text: &str) -> bool {
    Sections::parse(text).get("Task Status").is_some_and(|b| {
        b.lines()
            .filter(|l| l.trim_start().starts_with('|'))
            .count()
            > 2
    })
}

pub fn run(global: &Global, args: &PlanArgs) -> Result<i32> {
    let request = if args.request == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| miette!("cannot read the request from stdin: {e}"))?;
        s
    } else {
        args.request.clone()
    };
    if request.trim().is_empty() {
        return Err(miette!("the request is empty: say what you want done"));
    }
    let base = base(global)?;
    let agent = match &args.agent_command {
        Some(json) => custom_agent(json, &args.agent_result)?,
        None => {
            let name = args
                .agent
                .clone()
                .unwrap_or_else(|| base.settings.default_agent.clone());
            base.agents.get(&name).cloned().ok_or_else(|| {
                let known: Vec<&str> = base.agents.keys().map(String::as_str).collect();
                miette!(
                    help = format!(
                        "known agents: {}; or give a command with --agent-command",
                        known.join(", ")
                    ),
                    "unknown agent `{name}`"
                )
            })?
        }
    };
    let layout = StateLayout::new(base.root.join(&base.settings.state_dir));
    let master = layout.master_plan();
    if !args.force {
        if let Ok(text) = std::fs::read_to_string(&master) {
            if has_tasks(&text) {
                return Err(miette!(
                    help = "use --force to replace its tasks (your own sections and the \
                            execution log are kept)",
                    "{} already has a plan",
                    master.display()
                ));
            }
        }
    }
    let toml_path = base
        .orchfile
        .clone()
        .unwrap_or_else(|| base.root.join(ORCHFILE_NAME));
    if args.toml && toml_path.exists() && !args.force {
        return Err(miette!(
            help = "use --force to replace its tasks (settings, agents and aggregate are kept)",
            "{} already exists",
            toml_path.display()
        ));
    }
    layout
        .create_dirs()
        .map_err(|e| miette!("cannot create {}: {e}", layout.dir.display()))?;
    let _lock = RunLock::acquire(&layout.lock(), LockWait::Refuse).map_err(|e| miette!("{e}"))?;
    let cancel = signals::install()?;

    let planner = Planner {
        agent: &agent,
        agents: &base.agents,
        root: &base.root,
        state_dir: &layout.dir,
        attempts: args.attempts,
        timeout: args.timeout,
        cancel: &cancel,
    };
    let result = planner.run(&request, &mut |e| match e {
        PlanEvent::Asking { attempt, of } => {
            eprintln!(
                "orch plan: asking {} for a plan (attempt {attempt}/{of})",
                agent.name
            )
        }
        PlanEvent::AgentFailed { attempt, message } => {
            eprintln!(
                "orch plan: attempt {attempt}: {} failed: {message}",
                agent.name
            )
        }
        PlanEvent::Invalid { attempt, problems } => {
            eprintln!("orch plan: attempt {attempt}: the plan is not valid:");
            for p in problems {
                eprintln!("  - {p}");
            }
        }
    });
    let (tasks, used) = match result {
        Ok(ok) => ok,
        Err(PlanFailure::Agent(message)) => {
            return Err(miette!(
                "cannot run the planner `{}`: {message}",
                agent.name
            ))
        }
        Err(PlanFailure::Invalid { attempts, problems }) => {
            eprintln!(
                "orch plan: no valid plan after {attempts} attempt(s); the last one had these \
                 problems:"
            );
            for p in &problems {
                eprintln!("  - {p}");
            }
            eprintln!("orch plan: replies are in {}", layout.logs_dir().display());
            return Ok(1);
        }
    };

    let planned = planner::to_plan(
        &tasks,
        &request,
        base.root.clone(),
        master.clone(),
        base.settings.clone(),
        base.agents.clone(),
    );
    // A fan-out template lives only in an Orchfile (master_plan.md has a row per instance,
    // and a `foreach_from` fan-out has none before its source answers): with no Orchfile,
    // one is written; with one, it is replaced only as --toml says.
    let fans_out = planned.tasks.iter().any(|t| t.foreach.is_some());
    let write_toml = args.toml || (fans_out && base.orchfile.is_none() && !toml_path.exists());
    if fans_out && base.orchfile.is_none() && !write_toml {
        return Err(miette!(
            help = "use --toml --force to replace it",
            "the plan fans out, and only an Orchfile holds a fan-out, but {} exists",
            toml_path.display()
        ));
    }
    let plan = crate::state::items::expand(planned.clone(), &|| None)
        .map_err(|e| miette::Report::new(*e))?;
    let mut store = StateStore::open(layout.clone()).map_err(|e| miette!("{e}"))?;
    if store.assign_agent_ids(&plan) {
        store
            .compact()
            .map_err(|e| miette!("cannot save state: {e}"))?;
    }
    let rows = master_plan::rows_from_store(&plan, &store);
    let entry = master_plan::log_entry(
        "Plan Created",
        vec![
            format!(
                "Request decomposed into {} task(s) by {} (attempt {used})",
                plan.tasks.len(),
                agent.name
            ),
            format!("Assigned {} agents", plan.tasks.len()),
        ],
    );
    let path = master_plan::write_master_plan(&plan, &store, &rows, entry)
        .map_err(|e| miette!("cannot write {}: {e}", master.display()))?;
    // With no Orchfile, what was written is the plan's source: it must read back.
    if base.orchfile.is_none() && !write_toml {
        master_plan::load(&path)?;
    }

    if write_toml {
        let existing = if toml_path.exists() {
            Some(
                std::fs::read_to_string(&toml_path)
                    .map_err(|e| miette!("cannot read {}: {e}", toml_path.display()))?,
            )
        } else {
            None
        };
        let text = planner::render_toml(&tasks, &request, existing.as_deref())
            .map_err(|e| miette!("cannot write the plan as TOML: {e}"))?;
        orchfile::parse(&toml_path, &text).map_err(|e| miette::Report::new(*e))?;
        std::fs::write(&toml_path, text)
            .map_err(|e| miette!("cannot write {}: {e}", toml_path.display()))?;
    }

    let shown = |p: &std::path::Path| -> String {
        p.strip_prefix(&base.root)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    println!(
        "Planned {} task(s) in {}:\n",
        planned.tasks.len(),
        shown(&path)
    );
    print!("{}", crate::inspect::render_list(&planned));
    if args.toml {
        println!("\nAlso written: {}", shown(&toml_path));
    } else if write_toml {
        println!(
            "\nAlso written: {} (the plan fans out, and only an Orchfile holds a fan-out; \
             `orch build` reads it)",
            shown(&toml_path)
        );
    } else if let Some(f) = &base.orchfile {
        eprintln!(
            "\norch plan: note: {} exists, so `orch build` reads it, not {MASTER_PLAN_NAME}; \
             use --toml --force to replace its tasks",
            shown(f)
        );
    }
    println!("\nEdit the plan if you like, then: orch build   (offline: orch build --agent sim)");
    Ok(0)
}
