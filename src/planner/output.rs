//! What a valid plan becomes: the plan model (for master_plan.md) and, if asked (or if the
//! plan fans out, which only an Orchfile can hold), an `Orchfile.toml` that reads back as
//! the same plan.

use std::path::PathBuf;

use indexmap::IndexMap;

use super::reply::PlannedTask;
use crate::duration::format_exact;
use crate::plan::{Action, AgentSpec, Foreach, Plan, Settings, Task};

/// The plan the tasks describe, rooted at `root` with the given settings and agents.
pub fn to_plan(
    tasks: &[PlannedTask],
    request: &str,
    root: PathBuf,
    source_path: PathBuf,
    settings: Settings,
    agents: IndexMap<String, AgentSpec>,
) -> Plan {
    let tasks: Vec<Task> = tasks
        .iter()
        .map(|t| Task {
            id: t.id.clone(),
            title: t.title.clone(),
            action: match (&t.run, &t.prompt) {
                (Some(r), _) => Action::Shell(r.clone()),
                (None, p) => Action::Prompt(p.clone().unwrap_or_default()),
            },
            agent: t.agent.clone().filter(|_| t.run.is_none()),
            inputs: t.inputs.clone(),
            outputs: t.outputs.clone(),
            deps: t.deps.clone(),
            priority: t.priority,
            retries: None,
            timeout: None,
            locks: Vec::new(),
            verify: t.verify.clone(),
            estimate: t.estimate,
            env: IndexMap::new(),
            foreach: t.foreach.clone(),
            item: None,
            permissions: None,
            allow_undeclared_writes: None,
            isolation: None,
            placement: Default::default(),
            max_cost_usd: None,
            cost_estimate: None,
            cache: true,
        })
        .collect();
    let index = Plan::index_of(&tasks);
    Plan {
        root,
        source_path,
        settings,
        agents,
        tasks,
        index,
        aggregate: None,
        request: Some(request.trim().to_string()),
        fanouts: Vec::new(),
        definitions: Vec::new(),
    }
}

#[derive(serde::Serialize)]
struct TomlTask<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    foreach: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    foreach_from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    inputs: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    outputs: &'a [String],
    deps: &'a [String],
    priority: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<&'a str>,
}

/// An `Orchfile.toml` for the planned tasks. `existing` is the text of an Orchfile being
/// replaced: its settings, agents and aggregate tables are kept (its comments are not).
pub fn render_toml(
    tasks: &[PlannedTask],
    request: &str,
    existing: Option<&str>,
) -> Result<String, String> {
    let mut doc = toml::Table::new();
    doc.insert("request".into(), toml::Value::String(request.trim().into()));
    if let Some(text) = existing {
        let old: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for key in ["settings", "agents", "aggregate"] {
            if let Some(v) = old.get(key) {
                doc.insert(key.into(), v.clone());
            }
        }
    }
    let mut table = toml::Table::new();
    for t in tasks {
        let (foreach, foreach_from) = match &t.foreach {
            None => (None, None),
            Some(Foreach::Glob(s) | Foreach::SameAs(s)) => {
                (Some(toml::Value::String(s.clone())), None)
            }
            Some(Foreach::List(l)) => (
                Some(toml::Value::Array(
                    l.iter().cloned().map(toml::Value::String).collect(),
                )),
                None,
            ),
            Some(Foreach::From(s)) => (None, Some(s.as_str())),
        };
        let row = TomlTask {
            title: &t.title,
            foreach,
            foreach_from,
            prompt: if t.run.is_some() {
                None
            } else {
                Some(t.prompt.as_deref().unwrap_or(""))
            },
            run: t.run.as_deref(),
            agent: t.agent.as_deref().filter(|_| t.run.is_none()),
            inputs: &t.inputs,
            outputs: &t.outputs,
            deps: &t.deps,
            priority: t.priority.to_string(),
            estimate: t.estimate.map(format_exact),
            verify: t.verify.as_deref(),
        };
        let v = toml::Value::try_from(&row).map_err(|e| e.to_string())?;
        table.insert(t.id.clone(), v);
    }
    doc.insert("tasks".into(), toml::Value::Table(table));
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by `orch plan`. Edit freely: `orch build` runs what is not up to date.\n\
         # Offline try-out: orch build --agent sim\n\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::presets::builtin_agents;
    use crate::planner::check::check_reply;
    use crate::planner::reply::tests::GOOD;
    use std::path::Path;

    #[test]
    fn toml_reads_back_as_the_same_plan() {
        let tasks = check_reply(GOOD, &builtin_agents()).unwrap();
        let text = render_toml(&tasks, "Do \"it\"\nwell", None).unwrap();
        let plan = crate::plan::orchfile::parse(Path::new("/p/Orchfile.toml"), &text).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[1].deps, vec!["T-01"]);
        assert_eq!(plan.tasks[1].verify.as_deref(), Some("test -s b.md"));
        assert_eq!(plan.request.as_deref(), Some("Do \"it\"\nwell"));
        let again = render_toml(
            &tasks,
            "x",
            Some("[settings]\njobs = 2\n[tasks.old]\nrun = \"x\"\n"),
        )
        .unwrap();
        assert!(again.contains("jobs = 2"));
        assert!(!again.contains("old"));
    }

    #[test]
    fn fan_outs_are_written_as_foreach() {
        let reply = r#"{"tasks": [
            {"id": "list", "prompt": "List them as a JSON array.", "verify": "true"},
            {"id": "each", "foreach_from": "list", "prompt": "Do {{ item }}.",
             "outputs": ["out/{{ item.stem }}.md"]},
            {"id": "langs", "foreach": ["fr", "de"], "run": "echo {{ item }}", "verify": "true"},
            {"id": "check", "foreach": "langs", "deps": ["langs[{{ item }}]"],
             "run": "test {{ item }}", "verify": "true"}
        ]}"#;
        let tasks = check_reply(reply, &builtin_agents()).unwrap();
        let text = render_toml(&tasks, "r", None).unwrap();
        assert!(text.contains("foreach_from = \"list\""), "{text}");
        assert!(
            text.contains("foreach = [\n    \"fr\",")
                || text.contains("foreach = [\"fr\", \"de\"]"),
            "{text}"
        );
        assert!(text.contains("foreach = \"langs\""), "{text}");
        let plan = crate::plan::orchfile::parse(Path::new("/p/Orchfile.toml"), &text).unwrap();
        let foreach: Vec<_> = plan.tasks.iter().map(|t| t.foreach.clone()).collect();
        assert_eq!(
            foreach,
            tasks.iter().map(|t| t.foreach.clone()).collect::<Vec<_>>()
        );
    }
}
