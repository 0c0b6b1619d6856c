//! Reading the agent's reply however it comes (plain JSON, fenced, wrapped in chatter) into
//! tasks, tolerantly, and checking them against the seed's atomicity checklist. A planned
//! task may fan out (`foreach`, `foreach_from`).

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use crate::duration::parse_duration;
use crate::graph::TaskGraph;
use crate::plan::checks::{check_inside_root, valid_task_id, TASK_ID_RULE};
use crate::plan::fanout::{self, split_dep, Quoting};
use crate::plan::placeholder;
use crate::plan::{AgentSpec, Foreach, Priority};

/// One task as the planner proposed it, after tolerant reading.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    pub id: String,
    pub title: String,
    pub prompt: Option<String>,
    pub run: Option<String>,
    pub agent: Option<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub deps: Vec<String>,
    pub priority: Priority,
    pub estimate: Option<Duration>,
    pub verify: Option<String>,
    /// A fan-out: `"foreach"` (a glob, a list, or another fan-out task's id) or
    /// `"foreach_from"` (the id of the task whose answer, a JSON array, is the items).
    pub foreach: Option<Foreach>,
}

/// Whether a JSON value looks like a plan: `{"tasks": [...]}` or an array of objects.
fn plan_like(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("tasks").is_some_and(Value::is_array)
                || m.get("plan").is_some_and(|p| p.get("tasks").is_some())
        }
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    }
}

/// Finds the plan's JSON in a reply: the whole reply, a fenced code block, or the first JSON
/// object or array in surrounding text that looks like a plan.
pub fn extract_json(reply: &str) -> Result<Value, String> {
    let text = reply.trim();
    if text.is_empty() {
        return Err("the reply is empty".into());
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if plan_like(&v) {
            return Ok(v);
        }
    }
    // Fenced blocks, found with the markdown parser.
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut in_block = false;
    let mut block = String::new();
    for e in Parser::new(text) {
        match e {
            Event::Start(Tag::CodeBlock(_)) => {
                in_block = true;
                block.clear();
            }
            Event::Text(t) if in_block => block.push_str(&t),
            Event::End(TagEnd::CodeBlock) => {
                in_block = false;
                if let Ok(v) = serde_json::from_str::<Value>(block.trim()) {
                    if plan_like(&v) {
                        return Ok(v);
                    }
                }
            }
            _ => {}
        }
    }
    // The first `{` or `[` from which a whole plan-like JSON value parses.
    for (i, c) in text.char_indices() {
        if c != '{' && c != '[' {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next() {
            if plan_like(&v) {
                return Ok(v);
            }
        }
    }
    Err("no JSON plan found in the reply (expected an object with a \"tasks\" array)".into())
}

fn string_field(o: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn list_field(
    o: &serde_json::Map<String, Value>,
    key: &str,
    who: &str,
    problems: &mut Vec<String>,
) -> Vec<String> {
    match o.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("none"))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => {
                    problems.push(format!("{who}: `{key}` must be a list of strings"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            problems.push(format!("{who}: `{key}` must be a list of strings"));
            Vec::new()
        }
    }
}

/// Reads the tasks out of the plan JSON, tolerating loose types; what cannot be read is a
/// problem.
pub fn read_tasks(v: &Value) -> (Vec<PlannedTask>, Vec<String>) {
    let mut problems = Vec::new();
    let list = match v {
        Value::Array(a) => a.as_slice(),
        Value::Object(m) => match m.get("tasks").or_else(|| v.pointer("/plan/tasks")) {
            Some(Value::Array(a)) => a.as_slice(),
            _ => {
                return (
                    Vec::new(),
                    vec!["the reply has no \"tasks\" array".to_string()],
                )
            }
        },
        _ => {
            return (
                Vec::new(),
                vec!["the reply is not a JSON object".to_string()],
            )
        }
    };
    let mut tasks = Vec::new();
    for (n, item) in list.iter().enumerate() {
        let Value::Object(o) = item else {
            problems.push(format!("task #{} is not a JSON object", n + 1));
            continue;
        };
        let Some(id) = string_field(o, &["id"]).map(|s| s.trim().to_string()) else {
            problems.push(format!("task #{} has no `id`", n + 1));
            continue;
        };
        let who = format!("task `{id}`");
        let prompt = string_field(o, &["prompt", "instructions", "description"]);
        let run = string_field(o, &["run", "command"]);
        let title = string_field(o, &["title", "name"])
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| {
                let from = prompt.as_deref().or(run.as_deref()).unwrap_or(&id);
                let line = from.lines().next().unwrap_or("").trim();
                line.chars().take(60).collect()
            });
        let priority = match o.get("priority") {
            None | Some(Value::Null) => Priority::default(),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p @ 0..=3) => Priority(p as u8),
                _ => {
                    problems.push(format!("{who}: priority must be one of P0, P1, P2, P3"));
                    Priority::default()
                }
            },
            Some(Value::String(s)) => {
                let t = s.trim();
                match t.strip_prefix(['P', 'p']).unwrap_or(t).parse::<u8>() {
                    Ok(p) if p <= 3 => Priority(p),
                    _ => {
                        problems.push(format!(
                            "{who}: priority `{t}` must be one of P0, P1, P2, P3"
                        ));
                        Priority::default()
                    }
                }
            }
            Some(_) => {
                problems.push(format!("{who}: priority must be one of P0, P1, P2, P3"));
                Priority::default()
            }
        };
        let estimate = match o.get("estimate") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n
                .as_f64()
                .and_then(|f| crate::duration::from_seconds(f, &n.to_string()).ok()),
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(format!("{who}: estimate: {e}"));
                    None
                }
            },
            Some(_) => {
                problems.push(format!("{who}: estimate must be like \"2m\""));
                None
            }
        };
        let foreach = read_foreach(o, &who, &mut problems);
        tasks.push(PlannedTask {
            foreach,
            inputs: list_field(o, "inputs", &who, &mut problems),
            outputs: list_field(o, "outputs", &who, &mut problems),
            deps: list_field(o, "deps", &who, &mut problems),
            verify: string_field(o, &["verify"]),
            agent: string_field(o, &["agent"]),
            id,
            title,
            prompt,
            run,
            priority,
            estimate,
        });
    }
    if list.is_empty() {
        problems.push("the plan has no tasks".into());
    }
    // `"foreach": "review"` names another task's items, any other string is a glob.
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    for t in &mut tasks {
        if let Some(Foreach::Glob(g)) = &t.foreach {
            if ids.contains(g) {
                t.foreach = Some(Foreach::SameAs(g.clone()));
            }
        }
    }
    (tasks, problems)
}

/// A task's `foreach` (a glob or a list; a task's id is told apart once all are read) or
/// `foreach_from`.
fn read_foreach(
    o: &serde_json::Map<String, Value>,
    who: &str,
    problems: &mut Vec<String>,
) -> Option<Foreach> {
    let from = match o.get("foreach_from") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => {
            problems.push(format!(
                "{who}: `foreach_from` must be the id of the task whose result lists the items"
            ));
            None
        }
    };
    let each = match o.get("foreach") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(Foreach::Glob(s.trim().into())),
        Some(Value::Array(a)) => {
            let mut list = Vec::with_capacity(a.len());
            for v in a {
                match v {
                    Value::String(s) if !s.is_empty() && !s.contains(['\n', '\r']) => {
                        if list.contains(s) {
                            problems.push(format!("{who}: `foreach` lists `{s}` twice"));
                        } else {
                            list.push(s.clone());
                        }
                    }
                    _ => {
                        problems.push(format!(
                            "{who}: `foreach` must list non-empty one-line strings"
                        ));
                    }
                }
            }
            if list.is_empty() {
                problems.push(format!("{who}: `foreach` lists no items"));
            }
            Some(Foreach::List(list))
        }
        Some(_) => {
            problems.push(format!(
                "{who}: `foreach` must be a glob, a list of strings or a fan-out task's id"
            ));
            None
        }
    };
    match (each, from) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{who} sets both `foreach` and `foreach_from`; give one"
            ));
            None
        }
        (each, None) => each,
        (None, Some(source)) => Some(Foreach::From(source)),
    }
}

/// The atomicity checklist and the DAG rules, as problems a person and the agent can act on.
pub fn validate(tasks: &[PlannedTask], agents: &IndexMap<String, AgentSpec>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut index: IndexMap<&str, usize> = IndexMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if !valid_task_id(&t.id) {
            problems.push(format!("task id `{}` may only use {TASK_ID_RULE}", t.id));
        }
        if index.insert(t.id.as_str(), i).is_some() {
            problems.push(format!(
                "task id `{}` is used twice; ids must be unique",
                t.id
            ));
        }
    }
    let fanouts: Vec<&str> = tasks
        .iter()
        .filter(|t| t.foreach.is_some())
        .map(|t| t.id.as_str())
        .collect();
    let mut writers: IndexMap<&str, &str> = IndexMap::new();
    for t in tasks {
        let who = format!("task `{}`", t.id);
        let is_fanout = t.foreach.is_some();
        match (&t.prompt, &t.run) {
            (None, None) => problems.push(format!("{who} has neither a `prompt` nor a `run`")),
            (Some(_), Some(_)) => {
                problems.push(format!("{who} has both a `prompt` and a `run`; give one"))
            }
            _ => {}
        }
        match &t.prompt {
            Some(p) if p.trim().is_empty() => problems.push(format!("{who} has an empty `prompt`")),
            Some(p) => {
                let deps: Vec<&str> = t.deps.iter().map(|d| split_dep(d).0).collect();
                for pr in placeholder::check(p, &t.id, &deps, &index, is_fanout) {
                    let help = pr.help.map(|h| format!(" ({h})")).unwrap_or_default();
                    problems.push(format!("{who}: {}{help}", pr.message));
                }
            }
            None => {}
        }
        if !is_fanout {
            let fields = [
                t.run.as_deref(),
                t.verify.as_deref(),
                Some(t.title.as_str()),
            ];
            let lists = t.inputs.iter().chain(&t.outputs).chain(&t.deps);
            if fields
                .into_iter()
                .flatten()
                .chain(lists.map(String::as_str))
                .any(fanout::mentions_item)
            {
                problems.push(format!(
                    "{who} has no items: `{{{{ item }}}}` is only known in a task with \
                     `foreach` or `foreach_from`"
                ));
            }
        }
        match &t.foreach {
            None => {}
            Some(Foreach::From(source)) => {
                if source == &t.id {
                    problems.push(format!("{who} takes its items from itself"));
                } else if !index.contains_key(source.as_str()) {
                    problems.push(format!(
                        "{who}: `foreach_from` names unknown task `{source}`"
                    ));
                } else if fanouts.contains(&source.as_str()) {
                    problems.push(format!(
                        "{who}: `foreach_from` names `{source}`, a fan-out task (it has many \
                         answers); name a task with one answer"
                    ));
                }
            }
            Some(Foreach::SameAs(other)) => {
                if other == &t.id {
                    problems.push(format!("{who} takes its items from itself"));
                } else if !fanouts.contains(&other.as_str()) {
                    problems.push(format!(
                        "{who}: `foreach` names `{other}`, which is not a fan-out task; for \
                         the items `{other}` answers use `\"foreach_from\": \"{other}\"`"
                    ));
                }
            }
            Some(Foreach::Glob(g)) => {
                if let Err(why) = check_inside_root(g) {
                    problems.push(format!("{who}: foreach `{g}` {why}"));
                } else if let Err(e) = globset::Glob::new(g) {
                    problems.push(format!(
                        "{who}: foreach `{g}` is not a valid glob: {}",
                        e.kind()
                    ));
                }
            }
            Some(Foreach::List(_)) => {}
        }
        if t.outputs.is_empty() && t.verify.is_none() {
            problems.push(format!(
                "{who} has no `outputs` and no `verify`: an atomic task needs a verifiable \
                 result (a file it writes or a check that it succeeded)"
            ));
        }
        if let Some(a) = &t.agent {
            if t.run.is_some() {
                problems.push(format!(
                    "{who} runs a shell command, so it takes no `agent`"
                ));
            } else if !agents.contains_key(a) {
                problems.push(format!(
                    "{who}: unknown agent `{a}` (known: {})",
                    agents.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for d in &t.deps {
            let (name, which) = split_dep(d);
            if name == t.id {
                problems.push(format!("{who} depends on itself"));
            } else if !index.contains_key(name) {
                problems.push(format!("{who} depends on unknown task `{name}`"));
            } else if which.is_some() && !fanouts.contains(&name) {
                problems.push(format!(
                    "{who} names an instance of `{name}`, which is not a fan-out task"
                ));
            }
        }
        let mut seen = Vec::new();
        for d in &t.deps {
            if seen.contains(&d) {
                problems.push(format!("{who} lists dep `{d}` twice"));
            }
            seen.push(d);
        }
        for i in &t.inputs {
            // An item fills in a plain path (its glob characters escaped).
            let i = fanout::fill(i, "item", Quoting::Glob);
            if let Err(why) = check_inside_root(&i) {
                problems.push(format!("{who}: input `{i}` {why}"));
            } else if let Err(e) = globset::Glob::new(&i) {
                problems.push(format!(
                    "{who}: input `{i}` is not a valid glob: {}",
                    e.kind()
                ));
            }
        }
        for o in &t.outputs {
            let filled = fanout::fill(o, "item", Quoting::Plain);
            if let Err(why) = check_inside_root(&filled) {
                problems.push(format!("{who}: output `{o}` {why}"));
            }
            if filled.contains(['*', '?', '[', '{']) {
                problems.push(format!(
                    "{who}: output `{o}` must be a file path, not a glob"
                ));
            }
            if is_fanout && !fanout::mentions_item(o) {
                problems.push(format!(
                    "{who}: output `{o}` would be written by every instance; name each \
                     instance's own file with `{{{{ item.stem }}}}` (or `{{{{ item }}}}`)"
                ));
            }
            if let Some(other) = writers.insert(o.as_str(), t.id.as_str()) {
                if other != t.id {
                    problems.push(format!(
                        "output `{o}` is written by both `{other}` and `{}`; give each file \
                         one writer",
                        t.id
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        // A dynamic fan-out comes after the task whose answer its items are.
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| {
                let source = match &t.foreach {
                    Some(Foreach::From(s) | Foreach::SameAs(s)) => Some(s.as_str()),
                    _ => None,
                };
                t.deps
                    .iter()
                    .map(|d| split_dep(d).0)
                    .chain(source)
                    .map(|d| index[d])
                    .collect()
            })
            .collect();
        if let Err(cycle) = TaskGraph::new(deps, &[]) {
            let names: Vec<&str> = cycle.iter().map(|&i| tasks[i].id.as_str()).collect();
            problems.push(format!(
                "the deps form a cycle: {} (each task needs the one before it)",
                names.join(" -> ")
            ));
        }
    }
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::agent::presets::builtin_agents;
    use crate::planner::check::check_reply;

    pub(crate) const GOOD: &str = r#"{"tasks": [
        {"id": "T-01", "title": "Read", "prompt": "Read it", "outputs": ["a.md"], "priority": "P0", "estimate": "1m"},
        {"id": "T-02", "title": "Write", "prompt": "Write it", "deps": ["T-01"], "verify": "test -s b.md", "priority": 1}
    ]}"#;

    #[test]
    fn finds_json_however_it_comes() {
        assert!(extract_json(GOOD).is_ok());
        let fenced = format!("Sure! Here is the plan:\n\n```json\n{GOOD}\n```\n\nGood luck.");
        assert!(plan_like(&extract_json(&fenced).unwrap()));
        let chatty = format!("Plan [v1] follows {GOOD} -- that's it {{not json}}");
        assert!(plan_like(&extract_json(&chatty).unwrap()));
        let bare = r#"[{"id": "a", "run": "true", "verify": "true"}]"#;
        assert!(extract_json(bare).is_ok());
        assert!(extract_json("no plan here [1, 2]").is_err());
        assert!(extract_json("").is_err());
    }
    #[test]
    fn good_plan_passes() {
        let tasks = check_reply(GOOD, &builtin_agents()).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[1].priority, Priority(1));
        assert_eq!(tasks[0].estimate, Some(Duration::from_secs(60)));
    }
    #[test]
    fn problems_are_named() {
        let bad = r#"{"tasks": [
            {"id": "a", "prompt": "x", "outputs": ["o.md"], "deps": ["zz"]},
            {"id": "b", "prompt": "y"},
            {"id": "a", "run": "z", "verify": "true"},
            {"title": "no id"}
        ]}"#;
        let p = check_reply(bad, &builtin_agents()).unwrap_err();
        let all = p.join("\n");
        assert!(all.contains("task #4 has no `id`"), "{all}");
        assert!(all.contains("`a` is used twice"), "{all}");
        assert!(all.contains("unknown task `zz`"), "{all}");
        assert!(
            all.contains("task `b` has no `outputs` and no `verify`"),
            "{all}"
        );
        let cyclic = r#"{"tasks": [
            {"id": "a", "prompt": "x", "verify": "true", "deps": ["b"]},
            {"id": "b", "prompt": "y", "verify": "true", "deps": ["a"]}
        ]}"#;
        let p = check_reply(cyclic, &builtin_agents()).unwrap_err();
        assert!(p[0].contains("cycle"), "{p:?}");
    }

    #[test]
    fn fan_outs_are_read_and_checked() {
        let plan = r#"{"tasks": [
            {"id": "list", "prompt": "List the modules as a JSON array.", "verify": "true"},
            {"id": "each", "foreach_from": "list", "prompt": "Test {{ item }}.",
             "outputs": ["tests/{{ item.stem }}.md"]},
            {"id": "lint", "foreach": "src/*.ts", "run": "lint {{ item }}", "verify": "true",
             "inputs": ["{{ item }}"]},
            {"id": "fix", "foreach": "lint", "deps": ["lint[{{ item }}]"],
             "prompt": "Fix {{ item }}: {{ deps.lint.result }}", "verify": "true"},
            {"id": "langs", "foreach": ["fr", "de"], "run": "echo {{ item }}", "verify": "true"},
            {"id": "sum", "deps": ["each", "fix"], "prompt": "All: {{ deps.each.result }}",
             "outputs": ["sum.md"]}
        ]}"#;
        let tasks = check_reply(plan, &builtin_agents()).unwrap();
        let each = |i: usize| tasks[i].foreach.clone();
        assert_eq!(each(1), Some(Foreach::From("list".into())));
        assert_eq!(each(2), Some(Foreach::Glob("src/*.ts".into())));
        assert_eq!(each(3), Some(Foreach::SameAs("lint".into())));
        assert_eq!(each(4), Some(Foreach::List(vec!["fr".into(), "de".into()])));
        assert_eq!(each(5), None);

        let bad = r#"{"tasks": [
            {"id": "a", "prompt": "List.", "verify": "true", "deps": ["b"]},
            {"id": "b", "foreach_from": "a", "run": "echo {{ item }}", "verify": "true"},
            {"id": "c", "foreach": "a", "run": "true", "verify": "true"},
            {"id": "d", "foreach": "../*.ts", "run": "true", "verify": "true"},
            {"id": "e", "deps": ["a[x]"], "run": "true", "verify": "true"},
            {"id": "f", "foreach": [1], "run": "true", "verify": "true"}
        ]}"#;
        let all = check_reply(bad, &builtin_agents()).unwrap_err().join("\n");
        for problem in [
            "`foreach` names `a`, which is not a fan-out task",
            "task `d`: foreach `../*.ts`",
            "task `e` names an instance of `a`, which is not a fan-out task",
            "task `f`: `foreach` must list non-empty one-line strings",
        ] {
            assert!(all.contains(problem), "{problem}:\n{all}");
        }
        // b needs a, whose answer b's items are, and a needs b: a cycle.
        let cyclic = r#"{"tasks": [
            {"id": "a", "prompt": "List.", "verify": "true", "deps": ["b"]},
            {"id": "b", "foreach_from": "a", "run": "echo {{ item }}", "verify": "true"}
        ]}"#;
        let p = check_reply(cyclic, &builtin_agents()).unwrap_err();
        assert!(p[0].contains("cycle"), "{p:?}");
    }
}
