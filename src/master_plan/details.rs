//! Writing `## Task Details` (one `### ID: title` block per task, in the form
//! [`read`](super::read) takes back as the same plan) and the `## Dependency Graph` diagram.

use std::fmt::Write as _;

use crate::duration::format_exact;
use crate::plan::{Action, Fanout, Foreach, Plan, Task};

/// The runner name a details block gives a shell task.
pub(super) const SHELL: &str = "shell";

/// A code span that reads back as exactly `s` (one line): enough backticks, padded when needed.
pub fn code_span(s: &str) -> String {
    let longest = longest_run(s, '`');
    let fence = "`".repeat(longest + 1);
    let pad = s.starts_with('`')
        || s.ends_with('`')
        || (s.starts_with(' ') && s.ends_with(' ') && !s.trim().is_empty());
    if pad {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// A fenced code block whose content reads back as exactly `body`.
pub fn fenced(info: &str, body: &str) -> String {
    let fence = "`".repeat((longest_run(body, '`') + 1).max(3));
    format!("{fence}{info}\n{body}\n{fence}\n")
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

fn one_line(s: &str) -> bool {
    !s.contains(['\n', '\r']) && !s.is_empty()
}

/// A heading's title: one line.
fn heading_title(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The body of `## Task Details`: one `### ID: title` block per task, in the form
/// [`read::parse`](super::read::parse) reads back. `agent_id` gives each task's agent id
/// (`Agent-01`).
pub fn render_details(plan: &Plan, agent_id: &dyn Fn(&str) -> String) -> String {
    let mut s = String::new();
    for (t, task) in plan.tasks.iter().enumerate() {
        // A fan-out's instances share one block, its template's, where the first one is.
        let fanout = task.item.as_ref().and_then(|i| plan.fanout(&i.template));
        if fanout.is_some_and(|f| f.instances.first() != Some(&t)) {
            continue;
        }
        render_block(
            &mut s,
            plan,
            fanout.map_or(task, |f| &f.template),
            fanout,
            agent_id,
        );
    }
    // A fan-out with no instances (a producer that answered `[]`) has no row to sit beside;
    // its block still says what each instance would do.
    for f in plan.fanouts.iter().filter(|f| f.instances.is_empty()) {
        render_block(&mut s, plan, &f.template, Some(f), agent_id);
    }
    s
}

/// One task's details block; a fan-out's is its template's, with the instances' agent ids.
fn render_block(
    s: &mut String,
    plan: &Plan,
    task: &Task,
    fanout: Option<&Fanout>,
    agent_id: &dyn Fn(&str) -> String,
) {
    let runner = match &task.action {
        Action::Shell(_) => SHELL.to_string(),
        _ => task
            .agent
            .clone()
            .unwrap_or_else(|| plan.settings.default_agent.clone()),
    };
    match fanout {
        None => {
            let _ = writeln!(s, "### {}: {}\n", task.id, heading_title(&task.title));
            let _ = writeln!(s, "- **Agent**: {} ({runner})", agent_id(&task.id));
        }
        Some(f) => {
            let _ = writeln!(s, "### {}[…]: {}\n", task.id, heading_title(&task.title));
            let ids = |i: Option<&usize>| i.map(|&i| agent_id(&plan.tasks[i].id));
            let (first, last) = (ids(f.instances.first()), ids(f.instances.last()));
            let agents = match (first, last) {
                (Some(a), Some(b)) if a != b => format!("{a} … {b}"),
                (Some(a), _) => a,
                _ => "-".into(),
            };
            let _ = writeln!(s, "- **Agent**: {agents} ({runner})");
            let source = match task.foreach.as_ref() {
                Some(Foreach::Glob(g)) => format!("files matching {}", code_span(g)),
                Some(Foreach::List(l)) => format!("the list of {}", l.len()),
                Some(Foreach::SameAs(o)) => format!("the items of `{o}`"),
                Some(Foreach::From(o)) => format!("the answer of `{o}`"),
                None => "-".into(),
            };
            let _ = writeln!(
                s,
                "- **Foreach**: {source}: {} instance(s)",
                f.instances.len()
            );
        }
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| code_span(i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !task.inputs.is_empty() {
        let _ = writeln!(s, "- **Input**: {}", list(&task.inputs));
    }
    if !task.outputs.is_empty() {
        let _ = writeln!(s, "- **Output**: {}", list(&task.outputs));
    }
    if let Some(e) = task.estimate {
        let _ = writeln!(s, "- **Estimated Time**: {}", format_exact(e));
    }
    if let Some(t) = task.timeout {
        let _ = writeln!(s, "- **Timeout**: {}", format_exact(t));
    }
    if let Some(n) = task.retries {
        let _ = writeln!(s, "- **Retries**: {n}");
    }
    if !task.locks.is_empty() {
        let _ = writeln!(s, "- **Locks**: {}", list(&task.locks));
    }
    let mut blocks: Vec<String> = Vec::new();
    if let Some(v) = &task.verify {
        if one_line(v) {
            let _ = writeln!(s, "- **Verify**: {}", code_span(v));
        } else {
            let _ = writeln!(s, "- **Verify**:");
            blocks.push(fenced("verify", v));
        }
    }
    match &task.action {
        Action::Shell(cmd) if one_line(cmd) => {
            let _ = writeln!(s, "- **Run**: {}", code_span(cmd));
        }
        Action::Shell(cmd) => {
            let _ = writeln!(s, "- **Run**:");
            blocks.push(fenced("sh", cmd));
        }
        Action::PromptFile(f) => {
            let _ = writeln!(s, "- **Prompt file**: {}", code_span(&f.to_string_lossy()));
        }
        Action::Prompt(p) => {
            let _ = writeln!(s, "- **Prompt**:");
            blocks.push(fenced("text", p));
        }
    }
    for b in blocks {
        s.push('\n');
        s.push_str(&b);
    }
    s.push('\n');
}

/// Beyond this many tasks the mermaid diagram is left out (`orch graph` still draws it).
const DIAGRAM_LIMIT: usize = 200;

/// A mermaid flowchart, so the plan renders as a picture where markdown is shown.
pub fn mermaid(plan: &Plan) -> String {
    if plan.tasks.len() > DIAGRAM_LIMIT {
        return format!(
            "_{} tasks: too many to draw here; run `orch graph` for the full graph._",
            plan.tasks.len()
        );
    }
    let mut s = String::from("```mermaid\nflowchart LR\n");
    for (i, t) in plan.tasks.iter().enumerate() {
        let label = format!("{}: {}", t.id, t.title).replace('"', "'");
        let _ = writeln!(s, "    n{i}[\"{label}\"]");
    }
    for (i, t) in plan.tasks.iter().enumerate() {
        for d in &t.deps {
            let _ = writeln!(s, "    n{} --> n{i}", plan.index[d]);
        }
    }
    s.push_str("```");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulldown_cmark::{Event, Parser};

    #[test]
    fn code_spans_and_fences_read_back() {
        for s in ["a", "a`b", "`x`", "a `` b", " x ", "src/**/*.ts", "x | y"] {
            let md = format!("- **F**: {}\n", code_span(s));
            let codes: Vec<String> = Parser::new(&md)
                .filter_map(|e| match e {
                    Event::Code(c) => Some(c.to_string()),
                    _ => None,
                })
                .collect();
            assert_eq!(codes, vec![s.to_string()], "{md}");
        }
        let body = "line\n```\ninner\n```\n\n  indented\n";
        let md = fenced("text", body);
        let text: String = Parser::new(&md)
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(text.strip_suffix('\n').unwrap(), body);
    }
}
