//! A task's `### ID: title` details block: its `- **Field**: value` lines, code blocks and
//! quotes, checked against the task's table row and applied to the task.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use super::walk::{Details, Field, Reader};
use crate::duration::parse_duration;
use crate::master_plan::details::SHELL;
use crate::master_plan::table::cell;
use crate::plan::checks::{check_inside_root, closest};
use crate::plan::limits;
use crate::plan::{Action, AgentSpec, Priority, Task};

/// The canonical name of a details field, or `None` when orch does not know it.
pub(super) fn field_key(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "agent" => "agent",
        "input" | "inputs" => "inputs",
        "output" | "outputs" => "outputs",
        "estimated time" | "estimate" => "estimate",
        "timeout" => "timeout",
        "retries" => "retries",
        "lock" | "locks" => "locks",
        "verify" => "verify",
        "run" => "run",
        "prompt file" | "prompt_file" => "prompt_file",
        "prompt" => "prompt",
        "deps" | "dependencies" => "deps",
        "priority" => "priority",
        _ => return None,
    })
}

const FIELD_NAMES: &[&str] = &[
    "Agent",
    "Input",
    "Output",
    "Estimated Time",
    "Timeout",
    "Retries",
    "Locks",
    "Verify",
    "Run",
    "Prompt file",
    "Prompt",
];

pub(super) fn parse_priority(s: &str) -> Option<Priority> {
    let t = s.trim();
    if t.is_empty() || t == "-" {
        return Some(Priority::default());
    }
    let n = t.strip_prefix(['P', 'p']).unwrap_or(t).parse::<u8>().ok()?;
    (n <= 3).then_some(Priority(n))
}

/// `Agent-07` and the like: an agent id, which orch assigns itself.
pub(super) fn is_agent_id(s: &str) -> bool {
    s.strip_prefix("Agent-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Fills a task from its details block (if any) and the agent named in its table row;
/// returns where its prompt is written, if it has one of its own.
pub(super) fn apply_details(
    r: &mut Reader,
    task: &mut Task,
    details: Option<Details>,
    table_agent: Option<(String, Range<usize>)>,
    agents: &indexmap::IndexMap<String, AgentSpec>,
) -> Option<Range<usize>> {
    let text = r.text;
    let mut agent_name = table_agent.clone();
    let mut prompt: Option<(String, Range<usize>)> = None;
    let mut run: Option<(String, Range<usize>)> = None;
    let mut prompt_file: Option<(String, Range<usize>)> = None;
    let Some(d) = details else {
        task.action = Action::Prompt(task.title.clone());
        finish_agent(r, task, agent_name, agents);
        return None;
    };
    if let Some(title) = &d.title {
        if title != &task.title && title != &cell(&task.title) {
            r.err_help(
                "orch::md_mismatch",
                format!(
                    "`{}` is titled `{}` in the status table but `{title}` in its details",
                    task.id, task.title
                ),
                d.span.clone(),
                "this title",
                "make them agree (the table's Task Description is the title)",
            );
        }
    }
    // Fields with an empty value take the fenced code blocks, in order.
    let mut pending: Vec<(&'static str, Range<usize>)> = Vec::new();
    let mut seen: HashMap<&'static str, Range<usize>> = HashMap::new();
    for f in &d.fields {
        let Some(key) = field_key(&f.name) else {
            let mut e = r.src.error(
                "orch::unknown_field",
                format!("unknown field `{}` in the details of `{}`", f.name, task.id),
                Some(f.name_span.clone()),
                "orch would not keep this",
            );
            let known = FIELD_NAMES.iter().copied();
            e = match closest(&f.name, known) {
                Some(c) => e.with_help(format!("did you mean `{c}`?")),
                None => e.with_help(format!(
                    "fields: {}; put notes in a `## ` section of your own",
                    FIELD_NAMES.join(", ")
                )),
            };
            r.errors.push(e);
            continue;
        };
        if let Some(first) = seen.insert(key, f.name_span.clone()) {
            let e = r
                .src
                .error(
                    "orch::md_field",
                    format!("field `{}` appears twice for `{}`", f.name, task.id),
                    Some(f.name_span.clone()),
                    "again here",
                )
                .with_label(first, "first here");
            r.errors.push(e);
            continue;
        }
        let value = f.scalar(text);
        let empty = f.raw.trim().is_empty();
        match key {
            "agent" => {
                // `Agent-01 (claude)`, `claude` or `Agent-01`.
                let name = match (value.find('('), value.rfind(')')) {
                    (Some(a), Some(b)) if a < b => value[a + 1..b].trim().to_string(),
                    _ if is_agent_id(value.trim()) => String::new(),
                    _ => value.trim().to_string(),
                };
                if !name.is_empty() {
                    match &agent_name {
                        Some((n, _)) if n != &name => r.err_help(
                            "orch::md_mismatch",
                            format!(
                                "`{}` has agent `{n}` in the status table but `{name}` in its \
                                 details",
                                task.id
                            ),
                            f.span.clone(),
                            "this agent",
                            "make them agree",
                        ),
                        _ => agent_name = Some((name, f.span.clone())),
                    }
                }
            }
            "inputs" => task.inputs = f.list(),
            "outputs" => task.outputs = f.list(),
            "locks" => task.locks = f.list(),
            "estimate" | "timeout" => {
                let limit = if key == "estimate" {
                    limits::ESTIMATE
                } else {
                    limits::TIMEOUT
                };
                match parse_duration(&value).map(|d| limit.check(d)) {
                    Ok(Ok(v)) if key == "estimate" => task.estimate = Some(v),
                    Ok(Ok(v)) => task.timeout = Some(v),
                    Ok(Err(e)) => r.err("orch::bad_value", e, f.span.clone(), "out of range"),
                    Err(e) => r.err(
                        "orch::bad_duration",
                        format!("invalid {}: {e}", f.name),
                        f.span.clone(),
                        "not a duration",
                    ),
                }
            }
            "retries" => match value
                .trim()
                .parse::<i64>()
                .map(|n| limits::RETRIES.check(n))
            {
                Ok(Ok(n)) => task.retries = Some(n as u32),
                Ok(Err(e)) => r.err("orch::bad_value", e, f.span.clone(), "out of range"),
                Err(_) => r.err(
                    "orch::bad_value",
                    format!("retries must be a whole number, not `{value}`"),
                    f.span.clone(),
                    "here",
                ),
            },
            "deps" => {
                let mut mine = f.list();
                let mut table = task.deps.clone();
                mine.sort();
                table.sort();
                if mine != table {
                    r.err_help(
                        "orch::md_mismatch",
                        format!(
                            "the deps of `{}` differ between the status table ({}) and its \
                             details ({})",
                            task.id,
                            if table.is_empty() {
                                "None".into()
                            } else {
                                table.join(", ")
                            },
                            if mine.is_empty() {
                                "None".into()
                            } else {
                                mine.join(", ")
                            }
                        ),
                        f.span.clone(),
                        "these deps",
                        "the table's Deps column is the one orch keeps; make them agree or \
                         delete this line",
                    );
                }
            }
            "priority" => {
                if parse_priority(&value) != Some(task.priority) {
                    r.err_help(
                        "orch::md_mismatch",
                        format!(
                            "the priority of `{}` is {} in the status table but `{value}` in its \
                             details",
                            task.id, task.priority
                        ),
                        f.span.clone(),
                        "this priority",
                        "the table's Priority column is the one orch keeps; make them agree or \
                         delete this line",
                    );
                }
            }
            "verify" | "run" | "prompt" | "prompt_file" if empty => {
                if key == "prompt_file" {
                    r.err(
                        "orch::bad_value",
                        "Prompt file needs a path".into(),
                        f.name_span.clone(),
                        "no path",
                    );
                } else {
                    pending.push((key, f.name_span.clone()));
                }
            }
            "verify" => task.verify = Some(value),
            "run" => run = Some((value, f.span.clone())),
            "prompt_file" => prompt_file = Some((value, f.span.clone())),
            "prompt" => prompt = Some((unquote(f.raw.trim()), f.span.clone())),
            _ => unreachable!("every key is handled"),
        }
    }
    for b in d.blocks {
        let by_info = match b.info.split_whitespace().next().unwrap_or("") {
            "sh" | "bash" | "shell" | "run" => Some("run"),
            "verify" => Some("verify"),
            "" | "text" | "prompt" | "md" | "markdown" => Some("prompt"),
            _ => None,
        };
        let slot = by_info
            .and_then(|k| pending.iter().position(|(p, _)| *p == k))
            .or(if pending.is_empty() { None } else { Some(0) });
        let key =
            match slot {
                Some(i) => pending.remove(i).0,
                None => match by_info {
                    Some(k) if !seen.contains_key(k) => {
                        seen.insert(k, b.span.clone());
                        k
                    }
                    _ => {
                        r.err_help(
                        "orch::md_unexpected",
                        format!("a code block in the details of `{}` that no field takes", task.id),
                        b.span,
                        "whose block is this?",
                        "a `- **Prompt**:`, `- **Run**:` or `- **Verify**:` line with no value \
                         takes the next fenced code block",
                    );
                        continue;
                    }
                },
            };
        match key {
            "verify" => task.verify = Some(b.text),
            "run" => run = Some((b.text, b.span)),
            _ => prompt = Some((b.text, b.span)),
        }
    }
    for (text, span) in d.quotes {
        if let Some(i) = pending.iter().position(|(p, _)| *p == "prompt") {
            pending.remove(i);
            prompt = Some((text, span));
        } else if prompt.is_none() && run.is_none() && prompt_file.is_none() {
            prompt = Some((text, span));
        } else {
            r.err_help(
                "orch::md_unexpected",
                format!(
                    "a quote in the details of `{}` that no field takes",
                    task.id
                ),
                span,
                "orch would not keep this",
                "a `- **Prompt**:` line with no value takes the prompt below it",
            );
        }
    }
    for (key, span) in pending {
        r.err(
            "orch::bad_value",
            format!("`{key}` of `{}` has no value", task.id),
            span,
            "give a value here or a fenced code block below the list",
        );
    }
    let shell_named = agent_name.as_ref().is_some_and(|(n, _)| n == SHELL);
    let prompt_span = prompt.as_ref().map(|(_, s)| s.clone());
    let set: Vec<&Range<usize>> = [&prompt, &run, &prompt_file]
        .iter()
        .filter_map(|o| o.as_ref().map(|(_, s)| s))
        .collect();
    if set.len() > 1 {
        let mut e = r.src.error(
            "orch::task_action",
            format!(
                "task `{}` sets more than one of Prompt, Prompt file and Run",
                task.id
            ),
            Some(set[0].clone()),
            "one",
        );
        for s in &set[1..] {
            e = e.with_label((*s).clone(), "another");
        }
        r.errors
            .push(e.with_help("give exactly one of Prompt, Prompt file or Run"));
    }
    task.action = if let Some((cmd, _)) = run {
        Action::Shell(cmd)
    } else if let Some((f, span)) = prompt_file {
        if let Err(why) = check_inside_root(&f) {
            r.err(
                "orch::path_outside_root",
                format!("prompt file `{f}` {why}"),
                span,
                "outside the project",
            );
        }
        Action::PromptFile(PathBuf::from(f))
    } else if let Some((p, span)) = prompt {
        if p.trim().is_empty() {
            r.err(
                "orch::empty_value",
                format!("the prompt of task `{}` is empty", task.id),
                span,
                "empty",
            );
        }
        Action::Prompt(p)
    } else if shell_named {
        r.err_help(
            "orch::task_action",
            format!("shell task `{}` has no Run command", task.id),
            d.span.clone(),
            "this task",
            "add `- **Run**: `command`` to its details",
        );
        Action::Shell(String::new())
    } else {
        // A details block without an action: the title is the prompt, as for a bare row.
        Action::Prompt(task.title.clone())
    };
    check_paths(r, task, &d.fields);
    finish_agent(r, task, agent_name, agents);
    prompt_span
}

/// A prompt written as a quote under its field (`  > line`, the form of older master plans)
/// without its `>` markers; other text as it is.
fn unquote(s: &str) -> String {
    if !s.lines().all(|l| l.trim_start().starts_with('>')) {
        return s.to_string();
    }
    s.lines()
        .map(|l| {
            let l = l.trim_start();
            l.strip_prefix("> ")
                .or_else(|| l.strip_prefix('>'))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sets the task's agent from the name found, checking it exists and suits the action.
fn finish_agent(
    r: &mut Reader,
    task: &mut Task,
    agent: Option<(String, Range<usize>)>,
    agents: &indexmap::IndexMap<String, AgentSpec>,
) {
    let Some((name, span)) = agent else {
        return;
    };
    if name == SHELL {
        if !task.action.is_shell() {
            r.err_help(
                "orch::md_mismatch",
                format!("`{}` is a shell task but has no Run command", task.id),
                span,
                "shell",
                "add `- **Run**: `command`` to its details, or name an agent",
            );
        }
        return;
    }
    if task.action.is_shell() {
        r.err(
            "orch::agent_on_shell_task",
            format!(
                "task `{}` runs a shell command, so it takes no agent",
                task.id
            ),
            span,
            "write `shell` here",
        );
        return;
    }
    if !agents.contains_key(&name) {
        let known: Vec<&str> = agents.keys().map(String::as_str).collect();
        r.err_help(
            "orch::unknown_agent",
            format!("unknown agent `{name}`"),
            span,
            "no such agent",
            &format!(
                "known agents: {}; custom agents need an Orchfile.toml",
                known.join(", ")
            ),
        );
        return;
    }
    task.agent = Some(name);
}

fn check_paths(r: &mut Reader, task: &Task, fields: &[Field]) {
    let span_of = |key: &str| {
        fields
            .iter()
            .find(|f| field_key(&f.name) == Some(key))
            .map(|f| f.span.clone())
            .unwrap_or(0..0)
    };
    for i in &task.inputs {
        if let Err(e) = globset::Glob::new(i) {
            r.err(
                "orch::bad_glob",
                format!("invalid input glob `{i}`: {}", e.kind()),
                span_of("inputs"),
                "bad glob",
            );
        }
        if let Err(why) = check_inside_root(i) {
            r.err(
                "orch::path_outside_root",
                format!("input `{i}` {why}"),
                span_of("inputs"),
                "outside the project",
            );
        }
    }
    for o in &task.outputs {
        if let Err(why) = check_inside_root(o) {
            r.err(
                "orch::path_outside_root",
                format!("output `{o}` {why}"),
                span_of("outputs"),
                "outside the project",
            );
        }
        if o.ends_with('/') || crate::plan::normalize(o).is_empty() {
            r.err(
                "orch::dir_output",
                format!("output `{o}` of task `{}` is a directory", task.id),
                span_of("outputs"),
                "a directory",
            );
        } else if o.contains(['*', '?', '[', '{']) {
            r.err(
                "orch::glob_output",
                format!("output `{o}` must be a file path, not a glob"),
                span_of("outputs"),
                "a glob",
            );
        }
    }
}
