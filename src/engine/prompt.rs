//! The task file an agent receives: its prompt with placeholders filled, what it may read and
//! must write, and its deps' results (inline, or by path past a size limit).

use std::fmt::Write as _;

use crate::plan::placeholder::{self, Name, Segment};
use crate::plan::Task;

/// What the prompt renderer needs to know about one dep.
pub(crate) struct DepResult<'a> {
    pub(crate) id: &'a str,
    /// The fan-out template the dep is an instance of: `{{ deps.<template>.result }}` names
    /// it with the template's other instances, in item order.
    pub(crate) template: Option<&'a str>,
    pub(crate) title: &'a str,
    pub(crate) agent_id: &'a str,
    /// Path of the dep's result file, relative to the project root.
    pub(crate) path: String,
    /// The result's text, or `None` when it is too large to inline.
    pub(crate) text: Option<String>,
    pub(crate) size: u64,
}

impl DepResult<'_> {
    /// Whether `{{ deps.<name>.result }}` names this dep.
    fn named(&self, name: &str) -> bool {
        self.id == name || self.template == Some(name)
    }

    fn inline_or_path(&self) -> String {
        match &self.text {
            Some(t) => t.trim_end().to_string(),
            None => format!(
                "(result is {} bytes; read it from `{}`)",
                self.size, self.path
            ),
        }
    }
}

/// Fills the placeholders (`crate::plan::placeholder`'s grammar, the one validation
/// checked); returns the text and the deps it referenced. A list (`{{ inputs }}`,
/// `{{ outputs }}`) alone on its line becomes bullets, inside a sentence a comma list. A
/// placeholder that names nothing this task has (validation refuses those) is left as
/// written.
pub(crate) fn fill_placeholders(
    prompt: &str,
    inputs: &[String],
    task: &Task,
    deps: &[DepResult],
) -> (String, Vec<String>) {
    let mut out = String::with_capacity(prompt.len());
    let mut used = Vec::new();
    let (segments, _) = placeholder::parse(prompt);
    for segment in segments {
        let (key, span) = match segment {
            Segment::Text(t) => {
                out.push_str(t);
                continue;
            }
            Segment::Placeholder { key, span } => (key, span),
        };
        let list = |items: &[String]| {
            if placeholder::stands_alone(prompt, &span) {
                let line_start = prompt[..span.start].rfind('\n').map_or(0, |n| n + 1);
                bullets(items, &prompt[line_start..span.start])
            } else {
                inline(items)
            }
        };
        match Name::of(key) {
            Some(Name::Inputs) => out.push_str(&list(inputs)),
            Some(Name::Outputs) => out.push_str(&list(&task.outputs)),
            Some(Name::Literal(text)) => out.push_str(text),
            Some(Name::Item(field)) if task.item.is_some() => {
                let item = task.item.as_ref().expect("matched above");
                out.push_str(field.of_item(&item.value));
            }
            Some(Name::DepResult(id)) if deps.iter().any(|d| d.id == id) => {
                let d = deps.iter().find(|d| d.id == id).expect("found above");
                used.push(id.to_string());
                out.push_str(&d.inline_or_path());
            }
            Some(Name::DepResult(id)) if deps.iter().any(|d| d.template == Some(id)) => {
                // A fan-out template: its one instance here (map -> map), or every instance
                // in item order, each under its id (reduce).
                used.push(id.to_string());
                let mut of = deps.iter().filter(|d| d.named(id)).peekable();
                let first = of.next().expect("found above");
                if of.peek().is_none() {
                    out.push_str(&first.inline_or_path());
                } else {
                    for (i, d) in std::iter::once(first).chain(of).enumerate() {
                        if i > 0 {
                            out.push_str("\n\n");
                        }
                        let _ = write!(out, "#### {}\n\n{}", d.id, d.inline_or_path());
                    }
                }
            }
            Some(Name::DepResult(_)) => {
                // Validation let only deps through: this is a fan-out with no items.
                out.push_str("(none)");
            }
            _ => out.push_str(&prompt[span]),
        }
    }
    (out, used)
}

/// A list alone on its line: one bullet a line, each indented as the placeholder was.
fn bullets(items: &[String], indent: &str) -> String {
    if items.is_empty() {
        return "(none)".to_string();
    }
    let mut s = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push('\n');
            s.push_str(indent);
        }
        s.push_str("- ");
        s.push_str(item);
    }
    s
}

/// A list inside a sentence: `a.rs, b.rs`.
fn inline(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// The whole task file (`agent_tasks/agent-XX.md`), which is also exactly what the agent gets.
pub(crate) fn render_task_file(
    task: &Task,
    agent_id: &str,
    prompt: &str,
    inputs: &[String],
    deps: &[DepResult],
) -> String {
    let (body, used) = fill_placeholders(prompt, inputs, task, deps);
    let mut s = String::with_capacity(body.len() + 512);
    let _ = writeln!(s, "# Task {}: {}\n", task.id, task.title);
    let _ = writeln!(s, "- **Agent**: {agent_id}");
    if !inputs.is_empty() {
        let _ = writeln!(s, "- **Inputs**: {}", inputs.join(", "));
    }
    if !task.outputs.is_empty() {
        let _ = writeln!(
            s,
            "- **Expected outputs** (write these files): {}",
            task.outputs.join(", ")
        );
    }
    if let Some(v) = &task.verify {
        let _ = writeln!(s, "- **Success check**: `{v}`");
    }
    let _ = writeln!(s, "\n## Instructions\n\n{}", body.trim_end());
    let rest: Vec<&DepResult> = deps
        .iter()
        .filter(|d| !used.iter().any(|u| d.named(u)))
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(s, "\n## Results from dependencies");
        for d in rest {
            let _ = writeln!(
                s,
                "\n### {}: {} ({})\n\n{}",
                d.id,
                d.title,
                d.agent_id,
                d.inline_or_path()
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Priority};

    fn task() -> Task {
        Task {
            id: "T-05".into(),
            title: "Report".into(),
            action: Action::Prompt(String::new()),
            agent: None,
            inputs: vec![],
            outputs: vec!["report.md".into()],
            deps: vec!["T-02".into(), "T-03".into()],
            priority: Priority(2),
            retries: None,
            timeout: None,
            locks: vec![],
            verify: None,
            estimate: None,
            env: Default::default(),
            foreach: None,
            item: None,
            permissions: None,
            allow_undeclared_writes: None,
            isolation: None,
            placement: Default::default(),
            max_cost_usd: None,
            cost_estimate: None,
            cache: true,
        }
    }

    fn dep<'a>(id: &'a str, text: Option<&str>) -> DepResult<'a> {
        DepResult {
            id,
            template: None,
            title: "t",
            agent_id: "Agent-02",
            path: format!(".orchestrator/results/{id}.md"),
            text: text.map(String::from),
            size: 999_999,
        }
    }

    #[test]
    fn placeholders_and_remaining_deps() {
        let deps = [dep("T-02", Some("style ok")), dep("T-03", None)];
        let file = render_task_file(
            &task(),
            "Agent-05",
            "Merge {{ deps.T-02.result }} into {{outputs}}. {{ unknown }}",
            &["a.rs".into()],
            &deps,
        );
        assert!(file.contains("Merge style ok into report.md. {{ unknown }}"));
        assert!(file.contains("### T-03"), "unreferenced dep is appended");
        assert!(!file.contains("### T-02"), "referenced dep is not repeated");
        assert!(file.contains("read it from `.orchestrator/results/T-03.md`"));
    }

    #[test]
    fn unterminated_braces_are_kept() {
        let (s, _) = fill_placeholders("a {{ b", &[], &task(), &[]);
        assert_eq!(s, "a {{ b");
    }

    #[test]
    fn a_list_in_a_sentence_is_a_comma_list_and_alone_it_is_bullets() {
        let inputs = ["a.rs".to_string(), "b.rs".to_string()];
        let (s, _) = fill_placeholders(
            "Read {{ inputs }} and write {{ outputs }}.\nFiles:\n  {{ inputs }}\n{{ '{{' }}",
            &inputs,
            &task(),
            &[],
        );
        assert_eq!(
            s,
            "Read a.rs, b.rs and write report.md.\nFiles:\n  - a.rs\n  - b.rs\n{{"
        );
    }
}
