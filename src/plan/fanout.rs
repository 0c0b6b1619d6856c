//! Fan-out: one task definition over many items. A template (`foreach = "src/*.ts"`, a
//! list, another fan-out's name, or `foreach_from = "T-01"`) is replaced by one instance per
//! item, `review[src/a.ts]`, each an ordinary task from then on: its own agent id,
//! fingerprint, status row and result. Expansion runs on every load (the plan cache keeps
//! templates, keyed by the Orchfile's text), since the item set lives in the file system.
//!
//! In an instance, `{{ item }}` (and `.path`, `.stem`, `.name`, `.dir`, `.ext`) is filled in
//! in run and verify (shell-quoted: an item is never shell syntax), inputs (glob-escaped: an
//! item is never a pattern), outputs, title, env values, locks, deps and the prompt_file
//! path. The prompt (inline or from its file) is filled in when the task file is written, as
//! every prompt placeholder is. A dep on a template stands for all its instances, in item
//! order; `review[{{ item }}]` for the one with the same item.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use super::diagnostic::{PlanError, PlanSpans, SourceFile};
use super::placeholder::{self, Name, Segment};
pub use super::placeholder::{ItemField, ITEM_FORMS};
use super::{Action, AllowWrites, Fanout, Foreach, Item, Plan, Task};

/// How an item is written into a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// As it is (outputs, title, env values, deps, locks).
    Plain,
    /// Shell-quoted, for `run` and `verify` (`sh -c`).
    Shell,
    /// Its glob characters escaped, for inputs.
    Glob,
}

/// `text` with every item placeholder filled in from `item`; any other `{{ ... }}` is left
/// as written. Borrowed when there is nothing to fill in.
pub fn fill<'a>(text: &'a str, item: &str, quoting: Quoting) -> Cow<'a, str> {
    if !text.contains("{{") {
        return Cow::Borrowed(text);
    }
    let (segments, _) = placeholder::parse(text);
    let mut out = String::with_capacity(text.len() + item.len());
    for s in segments {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder { key, span } => match ItemField::of(key) {
                Some(field) => {
                    let part = field.of_item(item);
                    match quoting {
                        Quoting::Plain => out.push_str(part),
                        Quoting::Shell => out.push_str(&shell_quote(part)),
                        Quoting::Glob => out.push_str(&glob_escape(part)),
                    }
                }
                None => out.push_str(&text[span]),
            },
        }
    }
    Cow::Owned(out)
}

/// Whether `text` holds an item placeholder.
pub fn mentions_item(text: &str) -> bool {
    text.contains("{{")
        && placeholder::parse(text).0.iter().any(
            |s| matches!(s, Segment::Placeholder { key, .. } if matches!(Name::of(key), Some(Name::Item(_)))),
        )
}

/// `s` as one shell word: as it is when it holds only characters no shell reads specially,
/// else in single quotes (a `'` inside written `'\''`).
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'/' | b'.' | b'_' | b'-' | b'+' | b',' | b':' | b'@' | b'%' | b'='
                )
        });
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// `s` as a glob that matches exactly the path `s`: each glob character in a class of its own.
pub fn glob_escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['*', '?', '[', ']', '{', '}', '\\']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '*' | '?' | '[' | ']' | '{' | '}' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The id of the instance of `template` for `item`.
pub fn instance_id(template: &str, item: &str) -> String {
    let mut id = String::with_capacity(template.len() + item.len() + 2);
    id.push_str(template);
    id.push('[');
    id.push_str(item);
    id.push(']');
    id
}

/// A dep as written, split into the task it names and the item part of `name[item]` (if
/// any): `review[{{ item }}]` is (`review`, `{{ item }}`).
pub fn split_dep(dep: &str) -> (&str, Option<&str>) {
    match dep.find('[') {
        Some(i) if dep.ends_with(']') => (&dep[..i], Some(&dep[i + 1..dep.len() - 1])),
        _ => (dep, None),
    }
}

/// The items in the answer of a `foreach_from` source: a JSON array of strings, or of
/// objects with an `item` string (the rest of each object is left to the prompt), maybe in
/// a ```json fence. The error says what is wrong and shows the start of the answer.
pub fn parse_answer(text: &str) -> Result<Vec<String>, String> {
    let body = text.trim();
    let body = body
        .strip_prefix("```json")
        .or_else(|| body.strip_prefix("```"))
        .and_then(|b| b.trim_end().strip_suffix("```"))
        .unwrap_or(body)
        .trim();
    let snippet = || {
        let cut: String = body.chars().take(80).collect();
        let more = if body.chars().count() > 80 { "…" } else { "" };
        format!("it begins: {:?}{more}", cut)
    };
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("the answer is not JSON ({e}); {}", snippet()))?;
    let serde_json::Value::Array(elements) = value else {
        return Err(format!("the answer is not a JSON array; {}", snippet()));
    };
    let mut items = Vec::with_capacity(elements.len());
    let mut seen = std::collections::HashSet::with_capacity(elements.len());
    for (k, e) in elements.iter().enumerate() {
        let item = match e {
            serde_json::Value::String(s) => s.as_str(),
            serde_json::Value::Object(o) => match o.get("item") {
                Some(serde_json::Value::String(s)) => s.as_str(),
                _ => {
                    return Err(format!(
                        "element {k} of the answer is an object without an `item` string; {}",
                        snippet()
                    ))
                }
            },
            other => {
                return Err(format!(
                    "element {k} of the answer is {other}, not a string or an object with \
                     `item`; {}",
                    snippet()
                ))
            }
        };
        if item.is_empty() || item.contains(['\n', '\r']) {
            return Err(format!(
                "element {k} of the answer is {item:?}: an item is one non-empty line"
            ));
        }
        if !seen.insert(item) {
            return Err(format!("the answer lists {item:?} twice"));
        }
        items.push(item.to_string());
    }
    Ok(items)
}

/// Whether task `id` is the `foreach_from` source of a template of `plan`.
pub fn is_source(plan: &Plan, id: &str) -> bool {
    plan.fanouts
        .iter()
        .any(|f| matches!(&f.template.foreach, Some(Foreach::From(s)) if s == id))
}

/// Where the items of templates come from, for what the plan alone does not say.
pub trait ItemSource {
    /// The files a `foreach` glob matches, relative to the project root, sorted.
    fn glob(&self, pattern: &str) -> io::Result<Vec<String>>;
    /// The items task `source` answered when it last succeeded, as recorded for the
    /// `foreach_from` templates naming it; `None` before it has.
    fn answered(&self, source: &str) -> Option<Vec<String>>;
}

/// No file system: globs match nothing and no task has answered (for plans checked on
/// their own).
pub struct NoItems;

impl ItemSource for NoItems {
    fn glob(&self, _: &str) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn answered(&self, _: &str) -> Option<Vec<String>> {
        None
    }
}

/// Replaces every template of `plan` by its instances (in its place in file order, in item
/// order). A plan without templates is returned as it is. `spans` finds where tasks are
/// written, for errors (a cached plan keeps none).
pub fn expand(
    mut plan: Plan,
    items: &dyn ItemSource,
    spans: &dyn Fn() -> Option<PlanSpans>,
) -> Result<Plan, Box<PlanError>> {
    if !plan.tasks.iter().any(|t| t.foreach.is_some()) {
        return Ok(plan);
    }
    let error = |id: &str, code: &'static str, message: String| -> Box<PlanError> {
        Box::new(match spans() {
            Some(s) => s.error(code, message, id, |t| t.task.clone(), "this task"),
            None => SourceFile::new(plan.source_path.display().to_string(), "")
                .error(code, message, None, ""),
        })
    };
    // Each template's items, a `foreach = "other"` after the template it names.
    let by_name: HashMap<&str, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut item_sets: HashMap<String, Vec<String>> = HashMap::new();
    for t in &plan.tasks {
        resolve_items(&t.id, &plan.tasks, &by_name, items, &mut item_sets, 0)
            .map_err(|e| error(&t.id, "orch::foreach", e))?;
    }
    let old_tasks = std::mem::take(&mut plan.tasks);
    let old_definitions = std::mem::take(&mut plan.definitions);
    let mut tasks =
        Vec::with_capacity(old_tasks.len() + item_sets.values().map(Vec::len).sum::<usize>());
    let mut definitions = Vec::new();
    let mut fanouts = Vec::new();
    for (i, t) in old_tasks.into_iter().enumerate() {
        match &t.foreach {
            None => {
                let mut t = t;
                t.deps = expand_deps(&t.deps, None, &item_sets);
                if let Some(d) = old_definitions.get(i) {
                    definitions.resize(tasks.len(), None);
                    definitions.push(*d);
                }
                tasks.push(t);
            }
            Some(_) => {
                let set = &item_sets[&t.id];
                let mut instances = Vec::with_capacity(set.len());
                for item in set {
                    instances.push(tasks.len());
                    tasks.push(instantiate(&t, item, &item_sets));
                }
                fanouts.push(Fanout {
                    template: t,
                    instances,
                });
            }
        }
    }
    if !definitions.is_empty() {
        definitions.resize(tasks.len(), None);
    }
    plan.index = Plan::index_of(&tasks);
    if plan.index.len() != tasks.len() {
        let mut seen = HashMap::new();
        for t in &tasks {
            if seen.insert(t.id.as_str(), ()).is_some() {
                return Err(error(
                    &t.id,
                    "orch::duplicate",
                    format!("two tasks are named `{}`", t.id),
                ));
            }
        }
    }
    for t in &tasks {
        for d in &t.deps {
            if !plan.index.contains_key(d) {
                let of = t
                    .item
                    .as_ref()
                    .map_or(t.id.as_str(), |i| i.template.as_str());
                return Err(error(
                    of,
                    "orch::unknown_dep",
                    format!("task `{}` depends on `{d}`, which is not an instance", t.id),
                ));
            }
        }
    }
    let isolated: Vec<bool> = tasks
        .iter()
        .map(|t| plan.isolation(t, None) == super::Isolation::Worktree)
        .collect();
    check_one_writer(&tasks, &isolated)
        .map_err(|(id, msg)| error(&id, "orch::duplicate_output", msg))?;
    plan.tasks = tasks;
    plan.definitions = definitions;
    plan.fanouts = fanouts;
    Ok(plan)
}

/// Fills in `item_sets[id]` for task `id` if it is a template (and the sets it names first).
fn resolve_items(
    id: &str,
    tasks: &[Task],
    by_name: &HashMap<&str, usize>,
    items: &dyn ItemSource,
    item_sets: &mut HashMap<String, Vec<String>>,
    depth: usize,
) -> Result<(), String> {
    if item_sets.contains_key(id) {
        return Ok(());
    }
    let Some(foreach) = by_name.get(id).and_then(|&i| tasks[i].foreach.as_ref()) else {
        return Ok(());
    };
    if depth > tasks.len() {
        return Err(format!(
            "`foreach` of task `{id}` names itself through other tasks"
        ));
    }
    let set = match foreach {
        Foreach::List(list) => list.clone(),
        Foreach::Glob(pattern) => items
            .glob(pattern)
            .map_err(|e| format!("foreach glob `{pattern}` of task `{id}`: {e}"))?,
        Foreach::SameAs(other) => {
            resolve_items(other, tasks, by_name, items, item_sets, depth + 1)?;
            item_sets.get(other).cloned().ok_or_else(|| {
                format!("`foreach = \"{other}\"` of task `{id}`: `{other}` is not a fan-out task")
            })?
        }
        Foreach::From(source) => items.answered(source).unwrap_or_default(),
    };
    item_sets.insert(id.to_string(), set);
    Ok(())
}

/// One instance of `template`.
fn instantiate(template: &Task, item: &str, item_sets: &HashMap<String, Vec<String>>) -> Task {
    let plain = |s: &String| fill(s, item, Quoting::Plain).into_owned();
    let shell = |s: &String| fill(s, item, Quoting::Shell).into_owned();
    let action = match &template.action {
        Action::Shell(run) => Action::Shell(shell(run)),
        Action::Prompt(p) => Action::Prompt(p.clone()),
        Action::PromptFile(f) => {
            let f = f.to_string_lossy();
            Action::PromptFile(PathBuf::from(fill(&f, item, Quoting::Plain).as_ref()))
        }
    };
    let id = instance_id(&template.id, item);
    // Untitled, an instance is called by its id rather than its template's.
    let title = if template.title == template.id {
        id.clone()
    } else {
        plain(&template.title)
    };
    Task {
        id,
        title,
        action,
        agent: template.agent.clone(),
        inputs: template
            .inputs
            .iter()
            .map(|s| fill(s, item, Quoting::Glob).into_owned())
            .collect(),
        outputs: template.outputs.iter().map(plain).collect(),
        deps: expand_deps(&template.deps, Some(item), item_sets),
        priority: template.priority,
        retries: template.retries,
        timeout: template.timeout,
        locks: template.locks.iter().map(plain).collect(),
        verify: template.verify.as_ref().map(shell),
        estimate: template.estimate,
        env: template
            .env
            .iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect(),
        placement: template.placement.clone(),
        max_cost_usd: template.max_cost_usd,
        cost_estimate: template.cost_estimate,
        cache: template.cache,
        foreach: None,
        item: Some(Item {
            template: template.id.clone(),
            value: item.to_string(),
        }),
        permissions: template.permissions,
        isolation: template.isolation,
        // Globs like outputs: `scratch/{{ item }}/**` is the instance's own.
        allow_undeclared_writes: template.allow_undeclared_writes.as_ref().map(|a| match a {
            AllowWrites::All => AllowWrites::All,
            AllowWrites::Globs(g) => AllowWrites::Globs(
                g.iter()
                    .map(|s| fill(s, item, Quoting::Glob).into_owned())
                    .collect(),
            ),
        }),
    }
}

/// Deps as the tasks of the expanded plan: a template's name stands for all its instances
/// (in item order), `name[{{ item }}]` for the instance of this task's `item`.
fn expand_deps(
    deps: &[String],
    item: Option<&str>,
    item_sets: &HashMap<String, Vec<String>>,
) -> Vec<String> {
    if item_sets.is_empty() {
        return deps.to_vec();
    }
    let mut out = Vec::with_capacity(deps.len());
    for d in deps {
        match (split_dep(d), item) {
            ((name, None), _) if item_sets.contains_key(name) => {
                out.extend(item_sets[name].iter().map(|i| instance_id(name, i)));
            }
            ((name, Some(which)), Some(item)) => {
                out.push(instance_id(name, &fill(which, item, Quoting::Plain)));
            }
            _ => out.push(d.clone()),
        }
    }
    out
}

/// Each output has one writer: two instances (or an instance and a task) that render the
/// same path are an error naming both.
/// One writer per output file, but between tasks that both run in worktrees (`isolated`):
/// their merge decides.
fn check_one_writer(tasks: &[Task], isolated: &[bool]) -> Result<(), (String, String)> {
    let mut writers: HashMap<String, (&str, bool)> = HashMap::new();
    for (k, t) in tasks.iter().enumerate().filter(|(_, t)| t.item.is_some()) {
        for out in &t.outputs {
            let key = super::normalize(out);
            match writers.get(&key) {
                Some(&(_, true)) if isolated[k] => {}
                Some(&(other, _)) if other != t.id => {
                    let template = t.item.as_ref().map_or(t.id.as_str(), |i| &i.template);
                    return Err((
                        template.to_string(),
                        format!("tasks `{other}` and `{}` both write `{out}`", t.id),
                    ));
                }
                Some(_) => {}
                None => {
                    writers.insert(key, (&t.id, isolated[k]));
                }
            }
        }
    }
    if writers.is_empty() {
        return Ok(());
    }
    for (k, t) in tasks.iter().enumerate().filter(|(_, t)| t.item.is_none()) {
        for out in &t.outputs {
            if let Some(&(other, both)) = writers.get(&super::normalize(out)) {
                if both && isolated[k] {
                    continue;
                }
                return Err((
                    t.id.clone(),
                    format!("tasks `{other}` and `{}` both write `{out}`", t.id),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_fields() {
        let f = |k, i| ItemField::of(k).unwrap().of_item(i).to_string();
        assert_eq!(f("item", "src/a.ts"), "src/a.ts");
        assert_eq!(f("item.stem", "src/a.test.ts"), "a.test");
        assert_eq!(f("item.name", "src/a.ts"), "a.ts");
        assert_eq!(f("item.dir", "src/x/a.ts"), "src/x");
        assert_eq!(f("item.dir", "a.ts"), ".");
        assert_eq!(f("item.ext", "src/a.ts"), "ts");
        assert_eq!(f("item.ext", "Makefile"), "");
        assert_eq!(f("item.stem", ".bashrc"), ".bashrc");
        assert_eq!(f("item", "fr"), "fr");
    }

    #[test]
    fn fill_quotes_for_the_shell_and_escapes_globs() {
        assert_eq!(
            fill("cat {{ item }}", "src/a.ts", Quoting::Shell),
            "cat src/a.ts"
        );
        assert_eq!(
            fill("cat {{ item }}", "a b; rm -rf ~ $(x) 'q'", Quoting::Shell),
            r"cat 'a b; rm -rf ~ $(x) '\''q'\'''"
        );
        assert_eq!(
            fill("{{ item }}", "a[1]*.ts", Quoting::Glob),
            "a[[]1[]][*].ts"
        );
        assert_eq!(
            fill(
                "r/{{ item.stem }}.md {{ inputs }}",
                "src/a.ts",
                Quoting::Plain
            ),
            "r/a.md {{ inputs }}"
        );
        assert!(mentions_item("x {{item.ext}}"));
        assert!(!mentions_item("x {{ inputs }}"));
    }

    #[test]
    fn answers() {
        assert_eq!(parse_answer(r#"["a", "b c"]"#).unwrap(), ["a", "b c"]);
        assert_eq!(
            parse_answer("```json\n[{\"item\": \"x\", \"why\": 1}]\n```").unwrap(),
            ["x"]
        );
        assert!(parse_answer("[]").unwrap().is_empty());
        let e = parse_answer("Here you go: [1").unwrap_err();
        assert!(
            e.contains("not JSON") && e.contains("it begins: \"Here you go"),
            "{e}"
        );
        assert!(parse_answer("{}").unwrap_err().contains("not a JSON array"));
        assert!(parse_answer("[1]").unwrap_err().contains("element 0"));
        assert!(parse_answer(r#"["a","a"]"#).unwrap_err().contains("twice"));
    }

    #[test]
    fn split_deps() {
        assert_eq!(split_dep("review"), ("review", None));
        assert_eq!(
            split_dep("review[{{ item }}]"),
            ("review", Some("{{ item }}"))
        );
        assert_eq!(split_dep("review[a[1].ts]"), ("review", Some("a[1].ts")));
    }

    /// An answer of 100,000 items.
    struct Answered(Vec<String>);

    impl ItemSource for Answered {
        fn glob(&self, _: &str) -> io::Result<Vec<String>> {
            Ok(Vec::new())
        }
        fn answered(&self, _: &str) -> Option<Vec<String>> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn a_huge_answer_expands_in_order() {
        const N: usize = 100_000;
        let answer =
            serde_json::to_string(&(0..N).map(|i| format!("src/m{i}.rs")).collect::<Vec<_>>())
                .unwrap();
        let items = parse_answer(&answer).unwrap();
        assert_eq!(items.len(), N);
        let text = "[tasks.plan]\nrun = \"true\"\n\
                    [tasks.part]\nforeach_from = \"plan\"\nrun = \"cat {{ item }}\"\n\
                    outputs = [\"out/{{ item.stem }}.md\"]\n\
                    [tasks.sum]\ndeps = [\"part\"]\nrun = \"true\"\n";
        let plan =
            crate::plan::orchfile::parse(std::path::Path::new("/p/Orchfile.toml"), text).unwrap();
        let plan = expand(plan, &Answered(items), &|| None).unwrap();
        assert_eq!(plan.tasks.len(), N + 2);
        assert_eq!(plan.fanouts[0].instances.len(), N);
        let sum = &plan.tasks[plan.index["sum"]];
        assert_eq!(sum.deps.len(), N);
        assert_eq!(sum.deps[N - 1], format!("part[src/m{}.rs]", N - 1));
        let last = &plan.tasks[plan.index["part[src/m99999.rs]"]];
        assert_eq!(last.outputs, ["out/m99999.md"]);
        assert_eq!(last.action, Action::Shell("cat src/m99999.rs".into()));
    }
}
