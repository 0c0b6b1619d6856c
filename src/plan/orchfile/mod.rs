//! `Orchfile.toml`: found, read and parsed into the raw structures (`raw`), then validated
//! into a [`Plan`] (`validate`). Parsing reads no files, which is what lets the plan cache key
//! on the text.

mod cache_fields;
mod field_schema;
mod money;
mod placement;
mod raw;
pub mod schema;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use raw::RawOrchfile;
use validate::Validator;

use super::diagnostic::{PlanError, PlanSpans, SourceFile, TaskSpans};
use super::Plan;

pub const ORCHFILE_NAME: &str = "Orchfile.toml";

/// Finds `Orchfile.toml` in `start` or the nearest ancestor.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(ORCHFILE_NAME))
        .find(|p| p.is_file())
}

/// Parses and validates an Orchfile whose text is already read. `path` names it in messages and
/// its directory becomes the plan root.
pub fn parse(path: &Path, text: &str) -> Result<Plan, Box<PlanError>> {
    let src = SourceFile::new(path.display().to_string(), text);
    let raw: RawOrchfile = toml::from_str(text).map_err(|e| {
        let mut message = plain_words(e.message().trim());
        let key = e.span().and_then(|r| text.get(r)).unwrap_or("");
        let (code, help) = if message == "duplicate key" {
            message = format!("duplicate key `{key}`");
            (
                "orch::duplicate",
                Some("a task id (and any key) may appear only once".to_string()),
            )
        } else if message.contains("unknown field") {
            ("orch::unknown_field", Some(unknown_field_help(&message)))
        } else {
            ("orch::toml", None)
        };
        let err = src.error(
            code,
            format!("invalid Orchfile: {message}"),
            e.span(),
            "here",
        );
        Box::new(match help {
            Some(h) => err.with_help(h),
            None => err,
        })
    })?;
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Validator {
        src: &src,
        errors: Vec::new(),
        writers: HashMap::new(),
        isolated_by_default: (Default::default(), String::new()),
    }
    .validate(raw, root, path.to_path_buf())
    .map_err(Box::new)
}

/// Where each task of the Orchfile `text` is written (see [`PlanSpans`]); `None` when it no
/// longer parses.
pub fn spans(path: &Path, text: &str) -> Option<PlanSpans> {
    let raw: RawOrchfile = toml::from_str(text).ok()?;
    let tasks = raw
        .tasks
        .iter()
        .map(|(id, t)| {
            let r = t.get_ref();
            let spans = TaskSpans {
                task: Some(t.span()),
                inputs: r.inputs.iter().map(|i| i.span()).collect(),
                outputs: r.outputs.iter().map(|o| o.span()).collect(),
                prompt_file: r.prompt_file.as_ref().map(|p| p.span()),
            };
            (id.clone(), spans)
        })
        .collect();
    Some(PlanSpans {
        src: SourceFile::new(path.display().to_string(), text),
        tasks,
    })
}

/// serde's type names in a message said as the Orchfile's words: "expected i64" is "expected
/// a whole number", a sequence a list, a map or struct a table.
fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    for (from, to) in [
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
        ("floating point", "decimal number"),
        ("invalid type: sequence", "invalid type: list"),
        ("invalid type: map", "invalid type: table"),
    ] {
        out = out.replace(from, to);
    }
    if let Some(at) = out.find("expected struct ") {
        out.replace_range(at.., "expected a table");
    }
    out
}

/// The did-you-mean for serde's "unknown field `ouputs`, expected one of `title`, ...".
fn unknown_field_help(message: &str) -> String {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    match quoted.split_first() {
        Some((unknown, known)) => match super::checks::closest(unknown, known.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "see Orchfile.toml.example for every field".into(),
        },
        None => "see Orchfile.toml.example for every field".into(),
    }
}

/// The Orchfile's text, or an error naming the file.
pub fn read(path: &Path) -> miette::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::checks::check_inside_root;
    use crate::plan::{AggregateStrategy, Priority};
    use std::time::Duration;

    fn parse_str(text: &str) -> Result<Plan, Box<PlanError>> {
        parse(Path::new("/p/Orchfile.toml"), text)
    }

    fn first_label(e: &PlanError, text: &str) -> String {
        let l = &e.labels[0];
        text[l.offset()..l.offset() + l.len()].to_string()
    }

    #[test]
    fn parses_the_contract_example() {
        let text = r#"
[settings]
jobs = 4
default_agent = "claude"

[agents.claude]
preset = "claude"
max_parallel = 3
timeout = "15m"

[tasks.T-01]
title = "Read code"
prompt = "Read all files"
inputs = ["src/**/*.ts"]
outputs = ["reports/stats.md"]
priority = "P0"
estimate = "2m"

[tasks.T-02]
run = "echo hi"
deps = ["T-01"]

[aggregate]
strategy = "structured"
title = "Report"
"#;
        let plan = parse_str(text).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[0].priority, Priority(0));
        assert_eq!(plan.tasks[0].estimate, Some(Duration::from_secs(120)));
        assert_eq!(plan.agents["claude"].max_parallel, Some(3));
        assert_eq!(plan.agents["claude"].command[0], "claude");
        assert_eq!(plan.settings.jobs, Some(4));
        assert_eq!(plan.root, Path::new("/p"));
        assert_eq!(
            plan.aggregate.as_ref().unwrap().strategy,
            AggregateStrategy::Structured
        );
    }

    #[test]
    fn unknown_field_points_at_it() {
        let text = "[tasks.a]\nrun = \"x\"\nprompts = \"oops\"\n";
        let e = parse_str(text).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert_eq!(first_label(&e, text), "prompts");
    }

    #[test]
    fn one_writer_per_output() {
        let text = "[tasks.a]\nrun = \"x\"\noutputs = [\"out.txt\"]\n[tasks.b]\nrun = \"y\"\noutputs = [\"./out.txt\"]\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.code, "orch::duplicate_output");
        assert!(
            e.message.contains("tasks `a` and `b` both write"),
            "{}",
            e.message
        );
        assert_eq!(e.labels.len(), 2);
    }

    #[test]
    fn duplicate_task_id_is_named() {
        let text = "[tasks.a]\nrun = \"x\"\n[tasks.a]\nrun = \"y\"\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.message, "invalid Orchfile: duplicate key `a`");
        assert_eq!(e.code, "orch::duplicate");
    }

    #[test]
    fn unknown_dep_suggests_a_name() {
        let text = "[tasks.build]\nrun = \"x\"\n[tasks.test]\nrun = \"y\"\ndeps = [\"biuld\"]\n";
        let e = parse_str(text).unwrap_err();
        assert!(e.message.contains("unknown task `biuld`"));
        assert_eq!(first_label(&e, text), "\"biuld\"");
        assert!(e.help.as_ref().unwrap().contains("build"));
    }

    #[test]
    fn cycle_names_its_path_and_edges() {
        let text = "[tasks.a]\nrun = \"x\"\ndeps = [\"c\"]\n[tasks.b]\nrun = \"y\"\ndeps = [\"a\"]\n[tasks.c]\nrun = \"z\"\ndeps = [\"b\"]\n";
        let e = parse_str(text).unwrap_err();
        assert!(e.message.starts_with("dependency cycle: "), "{}", e.message);
        assert_eq!(e.labels.len(), 3);
    }

    #[test]
    fn collects_several_errors() {
        let text = "[tasks.a]\nrun = \"x\"\ntimeout = \"soon\"\nestimate = \"2 fortnights\"\ninputs = [\"src/[\"]\npriority = \"P9\"\n";
        let e = parse_str(text).unwrap_err();
        let msgs = e.messages();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("invalid timeout")));
        assert!(msgs.iter().any(|m| m.contains("invalid input glob")));
        assert!(msgs.iter().any(|m| m.contains("priority")));
    }

    #[test]
    fn task_needs_exactly_one_action() {
        let e = parse_str("[tasks.a]\ntitle = \"nothing\"\n").unwrap_err();
        assert!(e.message.contains("nothing to do"));
        let e = parse_str("[tasks.a]\nrun = \"x\"\nprompt = \"y\"\n").unwrap_err();
        assert!(e.message.contains("more than one"));
    }

    #[test]
    fn refuses_paths_outside_the_root() {
        let e =
            parse_str("[tasks.a]\nrun = \"x\"\noutputs = [\"../../etc/passwd\"]\n").unwrap_err();
        assert!(e.message.contains("climbs out"), "{}", e.message);
        let e = parse_str("[tasks.a]\nrun = \"x\"\ninputs = [\"/etc/*\"]\n").unwrap_err();
        assert!(e.message.contains("absolute"));
        assert!(parse_str(
            "[settings]\nallow_outside_root = true\n[tasks.a]\nrun = \"x\"\ninputs = [\"/etc/hosts\"]\n"
        )
        .is_ok());
        assert!(check_inside_root("a/../b").is_ok());
        assert!(check_inside_root("a/../../b").is_err());
    }

    #[test]
    fn unknown_agent_lists_known_ones() {
        let text = "[tasks.a]\nprompt = \"x\"\nagent = \"gpt9\"\n";
        let e = parse_str(text).unwrap_err();
        assert!(e.message.contains("unknown agent `gpt9`"));
        assert!(e.help.as_ref().unwrap().contains("claude"));
    }

    #[test]
    fn permissions_default_by_outputs_and_are_overridden_task_over_agent() {
        use crate::plan::{AllowWrites, Permission};
        let text = r#"
[agents.claude]
allow_undeclared_writes = ["target/**"]
[agents.reader]
preset = "claude"
permissions = "read"
[tasks.a]
prompt = "x"
[tasks.b]
prompt = "x"
outputs = ["b.md"]
[tasks.c]
prompt = "x"
agent = "reader"
outputs = ["c.md"]
[tasks.d]
prompt = "x"
agent = "reader"
permissions = "full"
allow_undeclared_writes = false
"#;
        let plan = parse_str(text).unwrap();
        let level = |id: &str| {
            let t = plan.task(id).unwrap();
            plan.permission(t, plan.agent_for(t, None).unwrap())
        };
        assert_eq!(level("a"), Permission::Read);
        assert_eq!(level("b"), Permission::Write);
        assert_eq!(
            level("c"),
            Permission::Read,
            "the agent's level beats the default"
        );
        assert_eq!(level("d"), Permission::Full);
        let allowed = |id: &str| {
            let t = plan.task(id).unwrap();
            plan.allowed_writes(t, plan.agent_for(t, None).unwrap())
                .cloned()
        };
        assert_eq!(
            allowed("a"),
            Some(AllowWrites::Globs(vec!["target/**".into()]))
        );
        assert_eq!(allowed("d"), Some(AllowWrites::Globs(vec![])));
        assert_eq!(allowed("c"), None);
    }

    #[test]
    fn agent_fields_are_checked() {
        let e = parse_str("[tasks.a]\nprompt = \"x\"\npermissions = \"root\"\n").unwrap_err();
        assert!(e.message.contains("read, write or full"), "{}", e.message);
        let e = parse_str("[tasks.a]\nrun = \"x\"\npermissions = \"read\"\n").unwrap_err();
        assert_eq!(e.code, "orch::agent_field_on_shell_task");
        let e =
            parse_str("[agents.claude]\nresume_args = [\"--resume\"]\n[tasks.a]\nprompt = \"x\"\n")
                .unwrap_err();
        assert!(e.message.contains("{session_id}"), "{}", e.message);
        let e = parse_str("[agents.claude]\nformat = \"yaml\"\n[tasks.a]\nprompt = \"x\"\n")
            .unwrap_err();
        assert!(e.message.contains("claude, codex, gemini"), "{}", e.message);
        let e = parse_str("[tasks.a]\nprompt = \"x\"\nallow_undeclared_writes = [\"src/[\"]\n")
            .unwrap_err();
        assert_eq!(e.code, "orch::bad_glob");
        // A level table keeps the preset's levels it does not name.
        let plan = parse_str(
            "[agents.claude]\npermission_args = { full = [\"--permission-mode\", \"acceptEdits\"] }\n",
        )
        .unwrap();
        let a = &plan.agents["claude"];
        assert_eq!(a.permission_args.full, ["--permission-mode", "acceptEdits"]);
        assert_eq!(a.permission_args.read, ["--permission-mode", "default"]);
    }

    #[test]
    fn custom_agent_needs_placeholder_for_arg_mode() {
        let text = "[agents.my]\ncommand = [\"my-cli\"]\nprompt_via = \"arg\"\n[tasks.a]\nprompt = \"x\"\nagent = \"my\"\n";
        let e = parse_str(text).unwrap_err();
        assert!(e.message.contains("{prompt}"));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;
    use crate::plan::PromptVia;

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../../Orchfile.toml.example");
        let plan = parse(Path::new("/p/Orchfile.toml"), text).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.agents["mytool"].prompt_via, PromptVia::File);
        assert_eq!(plan.agents["local"].command[2], "qwen2.5-coder");
        assert_eq!(plan.settings.slurm.max_jobs, 100);
        assert_eq!(plan.tasks[0].placement.slurm.mem.as_deref(), Some("8G"));
        assert!(
            plan.slurm_job(&plan.tasks[0], None, None).is_none(),
            "local unless asked"
        );
    }

    #[test]
    fn the_examples_parse() {
        for ex in [
            include_str!("../../../examples/code-review/Orchfile.toml"),
            include_str!("../../../examples/shell-pipeline/Orchfile.toml"),
        ] {
            parse(Path::new("/p/Orchfile.toml"), ex).unwrap();
        }
    }
}
