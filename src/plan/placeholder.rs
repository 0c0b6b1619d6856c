//! The `{{ ... }}` placeholders of a prompt: one grammar, parsed here both for validation
//! (every plan source, and prompt files before a build) and for rendering the task file
//! (`engine/prompt.rs`), so what validates is exactly what renders.
//!
//! A placeholder is `{{`, optional spaces, a name or a quoted literal, optional spaces and
//! `}}`, on one line. A name is an ASCII letter or `_`, then letters, digits, `_`, `-` or
//! `.` (task ids may hold the last two). `{{` followed by anything else (`{{1,2}}` in C++,
//! `{{{`) is plain text. `{{ '{{' }}` writes `{{` itself, for a prompt that must show
//! template syntax.
//!
//! The names a prompt may use are [`Name`]'s variants; a new one is a variant, a line in
//! [`Name::resolve`] and one in [`KNOWN_FORMS`]. Fan-out's `{{ item }}` forms are known only
//! in a fan-out task.

use std::ops::Range;

/// What a placeholder stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name<'a> {
    /// `{{ inputs }}`: the task's input files.
    Inputs,
    /// `{{ outputs }}`: the files the task must write.
    Outputs,
    /// `{{ deps.<id>.result }}`: the result of dep `<id>`.
    DepResult(&'a str),
    /// `{{ 'text' }}`: the text itself.
    Literal(&'a str),
    /// `{{ item }}`, `{{ item.stem }}`, ...: a fan-out instance's item (see
    /// [`super::fanout`]).
    Item(ItemField),
}

/// The placeholder forms, for messages.
pub const KNOWN_FORMS: &str = "{{ inputs }}, {{ outputs }}, {{ deps.<id>.result }}";

/// The task ids of a plan, as the check asks about them: whether one exists, and (only for
/// a did-you-mean) all of them.
pub trait KnownTasks {
    fn has(&self, id: &str) -> bool;
    fn ids(&self) -> Box<dyn Iterator<Item = &str> + '_>;
}

impl<S: std::borrow::Borrow<str> + std::hash::Hash + Eq, V> KnownTasks
    for std::collections::HashMap<S, V>
{
    fn has(&self, id: &str) -> bool {
        self.contains_key(id)
    }
    fn ids(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.keys().map(|k| k.borrow()))
    }
}

impl<S: std::borrow::Borrow<str> + std::hash::Hash + Eq, V> KnownTasks
    for indexmap::IndexMap<S, V>
{
    fn has(&self, id: &str) -> bool {
        self.contains_key(id)
    }
    fn ids(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.keys().map(|k| k.borrow()))
    }
}

impl KnownTasks for &[&str] {
    fn has(&self, id: &str) -> bool {
        self.contains(&id)
    }
    fn ids(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.iter().copied())
    }
}

/// The parts of an item a placeholder can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemField {
    /// `{{ item }}`, `{{ item.path }}`: the item as it is.
    Path,
    /// `{{ item.stem }}`: the file name without its last extension (`a` of `src/a.ts`).
    Stem,
    /// `{{ item.name }}`: the file name (`a.ts`).
    Name,
    /// `{{ item.dir }}`: the directory (`src`; `.` for a name without one).
    Dir,
    /// `{{ item.ext }}`: the last extension, without its dot (`ts`; empty without one).
    Ext,
}

/// The item placeholders, for messages and did-you-means.
pub const ITEM_FORMS: [&str; 6] = [
    "item",
    "item.path",
    "item.stem",
    "item.name",
    "item.dir",
    "item.ext",
];

impl ItemField {
    /// The field `key` names (`item`, `item.stem`, ...), if it is one.
    pub fn of(key: &str) -> Option<ItemField> {
        Some(match key {
            "item" | "item.path" => ItemField::Path,
            "item.stem" => ItemField::Stem,
            "item.name" => ItemField::Name,
            "item.dir" => ItemField::Dir,
            "item.ext" => ItemField::Ext,
            _ => return None,
        })
    }

    /// This part of `item`.
    pub fn of_item(self, item: &str) -> &str {
        let name = item.rsplit('/').next().unwrap_or(item);
        let dot = name.rfind('.').filter(|&i| i > 0);
        match self {
            ItemField::Path => item,
            ItemField::Name => name,
            ItemField::Stem => dot.map_or(name, |i| &name[..i]),
            ItemField::Ext => dot.map_or("", |i| &name[i + 1..]),
            ItemField::Dir => match item.rfind('/') {
                Some(0) => "/",
                Some(i) => &item[..i],
                None => ".",
            },
        }
    }
}

/// A piece of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    /// A placeholder; `span` covers it from `{{` to `}}` in the prompt, `key` is what stands
    /// between them, trimmed.
    Placeholder {
        key: &'a str,
        span: Range<usize>,
    },
}

/// A placeholder that cannot be read or does not name anything this task has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the prompt (byte offsets).
    pub span: Range<usize>,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

/// Splits a prompt into text and placeholders. An opened placeholder that does not close on
/// its line is an error (its span, from the `{{`), and so is a quote left open.
pub fn parse(text: &str) -> (Vec<Segment<'_>>, Vec<Problem>) {
    let mut segments = Vec::new();
    let mut problems = Vec::new();
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find("{{") {
        let start = i + found;
        let body = start + 2;
        let first = text[body..].trim_start_matches(' ');
        let opens = first
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'\'');
        if !opens && first.starts_with("}}") && first.len() < text.len() - body {
            // `{{ }}`: a placeholder with its name left out (`{{}}` stays text, as in C++).
            let end = text.len() - first.len() + 2;
            problems.push(Problem {
                span: start..end,
                message: "empty placeholder `{{ }}`".into(),
                label: "no name".into(),
                help: Some(format!(
                    "placeholders are {KNOWN_FORMS}; write a literal `{{{{` as {{{{ '{{{{' }}}}"
                )),
            });
            i = end;
            continue;
        }
        if !opens {
            // `{{{`: try again one brace on.
            i = start + 1;
            continue;
        }
        let line_end = text[body..].find('\n').map_or(text.len(), |n| body + n);
        let key_start = line_end - text[body..line_end].trim_start_matches(' ').len();
        // The close: after a quoted literal's closing quote, else the first `}}`.
        let search_from = if bytes[key_start] == b'\'' {
            match text[key_start + 1..line_end].find('\'') {
                Some(q) => key_start + 1 + q + 1,
                None => {
                    problems.push(Problem {
                        span: start..line_end,
                        message: "a quoted placeholder is not closed".into(),
                        label: "no closing `'`".into(),
                        help: Some("write a literal `{{` as {{ '{{' }}".into()),
                    });
                    i = line_end;
                    continue;
                }
            }
        } else {
            key_start
        };
        let Some(close) = text[search_from..line_end].find("}}") else {
            problems.push(Problem {
                span: start..line_end,
                message: format!(
                    "placeholder `{}` is not closed",
                    text[start..line_end].trim_end()
                ),
                label: "no `}}` on this line".into(),
                help: Some(format!(
                    "placeholders are {KNOWN_FORMS}, each on one line; write a literal `{{{{` as \
                     {{{{ '{{{{' }}}}"
                )),
            });
            i = line_end;
            continue;
        };
        let end = search_from + close + 2;
        if plain_from < start {
            segments.push(Segment::Text(&text[plain_from..start]));
        }
        segments.push(Segment::Placeholder {
            key: text[body..end - 2].trim_matches(' '),
            span: start..end,
        });
        plain_from = end;
        i = end;
    }
    if plain_from < text.len() {
        segments.push(Segment::Text(&text[plain_from..]));
    }
    (segments, problems)
}

impl<'a> Name<'a> {
    /// What a placeholder's key names, if it is one of the known forms.
    pub fn of(key: &'a str) -> Option<Name<'a>> {
        if let Some(lit) = key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
            return Some(Name::Literal(lit));
        }
        if let Some(field) = ItemField::of(key) {
            return Some(Name::Item(field));
        }
        match key {
            "inputs" => Some(Name::Inputs),
            "outputs" => Some(Name::Outputs),
            _ => key
                .strip_prefix("deps.")
                .and_then(|k| k.strip_suffix(".result"))
                .filter(|id| !id.is_empty())
                .map(Name::DepResult),
        }
    }

    /// Checks what `key` names against the task it is written in: `task` with `deps` (each
    /// a task id, a fan-out template's among them), in a plan of `tasks`; `fanout` when the
    /// task has items. The error is (message, label, help).
    pub fn resolve(
        key: &'a str,
        task: &str,
        deps: &[&str],
        tasks: &dyn KnownTasks,
        fanout: bool,
    ) -> Result<Name<'a>, (String, String, Option<String>)> {
        let well_formed = key.starts_with('\'')
            || key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        match Name::of(key) {
            Some(Name::Item(_)) if !fanout => Err((
                format!("`{{{{ {key} }}}}` is only known in a fan-out task"),
                "no item here".into(),
                Some(format!(
                    "give `{task}` a `foreach` (a glob or a list) for one instance per item"
                )),
            )),
            Some(Name::DepResult(id)) if deps.contains(&id) => Ok(Name::DepResult(id)),
            Some(Name::DepResult(id)) if id == task => Err((
                format!("`{{{{ {key} }}}}` is the result of `{task}` itself"),
                "its own result".into(),
                Some("a task's prompt can hold the results of its deps, not its own".into()),
            )),
            Some(Name::DepResult(id)) if tasks.has(id) => Err((
                format!("`{{{{ {key} }}}}` names task `{id}`, which `{task}` does not depend on"),
                "not a dep of this task".into(),
                Some(format!(
                    "add \"{id}\" to the deps of `{task}`, so it runs first and its result is here"
                )),
            )),
            Some(Name::DepResult(id)) => {
                let close = super::checks::closest(id, deps.iter().copied())
                    .or_else(|| super::checks::closest(id, tasks.ids().filter(|&t| t != task)));
                Err((
                    format!("`{{{{ {key} }}}}` names task `{id}`, but there is no such task"),
                    "no task has this id".into(),
                    Some(match close {
                        Some(c) => format!("did you mean `{{{{ deps.{c}.result }}}}`?"),
                        None if deps.is_empty() => format!(
                            "`{task}` has no deps; a dep's result is {{{{ deps.<id>.result }}}} \
                             with the id in deps"
                        ),
                        None => format!("the deps of `{task}` are {}", deps.join(", ")),
                    }),
                ))
            }
            Some(name) => Ok(name),
            None if !well_formed => Err((
                format!("`{{{{ {key} }}}}` is not a placeholder orch knows"),
                "not a placeholder".into(),
                Some(format!(
                    "placeholders are {KNOWN_FORMS}; write a literal `{{{{` as {{{{ '{{{{' }}}}"
                )),
            )),
            None => {
                let items: &[&str] = if fanout { &ITEM_FORMS } else { &[] };
                let candidates: Vec<String> = ["inputs".to_string(), "outputs".to_string()]
                    .into_iter()
                    .chain(items.iter().map(|i| i.to_string()))
                    .chain(deps.iter().map(|d| format!("deps.{d}.result")))
                    .collect();
                let close = super::checks::closest(key, candidates.iter().map(String::as_str))
                    .map(String::from)
                    .or_else(|| dep_named_otherwise(key, task, deps, tasks))
                    .or_else(|| {
                        // `dep.a.result` for a task that is not (yet) a dep.
                        let others: Vec<String> = tasks
                            .ids()
                            .filter(|&t| t != task)
                            .map(|t| format!("deps.{t}.result"))
                            .collect();
                        super::checks::closest(key, others.iter().map(String::as_str))
                            .map(String::from)
                    });
                Err((
                    format!("unknown placeholder `{{{{ {key} }}}}`"),
                    "not a placeholder".into(),
                    Some(match close {
                        Some(c) => format!("did you mean `{{{{ {c} }}}}`?"),
                        None => format!(
                            "placeholders are {KNOWN_FORMS}; write a literal `{{{{` as \
                             {{{{ '{{{{' }}}}"
                        ),
                    }),
                ))
            }
        }
    }
}

/// The dep result a key most likely means when it names a task another way than
/// `deps.<id>.result`: `deps.a`, `deps.a.output`, `dep.a`, `a.result`, `a`; or `deps` and
/// `result` in a task with one dep. Deps first, then other tasks (never `task` itself), the
/// longest id that fits (ids may hold dots).
fn dep_named_otherwise(
    key: &str,
    task: &str,
    deps: &[&str],
    tasks: &dyn KnownTasks,
) -> Option<String> {
    if matches!(key, "deps" | "dep" | "result" | "results") {
        return match deps {
            [only] => Some(format!("deps.{only}.result")),
            _ => None,
        };
    }
    let rests: Vec<&str> = ["deps.", "dep.", "deps_", "dep_"]
        .iter()
        .filter_map(|p| key.strip_prefix(p))
        .chain([key])
        .collect();
    let fits = |id: &&str| {
        rests
            .iter()
            .any(|r| r == id || r.strip_prefix(*id).is_some_and(|r| r.starts_with('.')))
    };
    let id = deps
        .iter()
        .copied()
        .filter(&fits)
        .max_by_key(|id| id.len())
        .map(str::to_string)
        .or_else(|| {
            tasks
                .ids()
                .filter(|&t| t != task)
                .filter(&fits)
                .max_by_key(|id| id.len())
                .map(str::to_string)
        })?;
    Some(format!("deps.{id}.result"))
}

/// Every problem with the placeholders of a prompt written for `task` (with `deps`; a
/// fan-out task when `fanout`) in a plan whose tasks are `ids`: syntax first, then names,
/// in the order they appear.
pub fn check(
    text: &str,
    task: &str,
    deps: &[&str],
    tasks: &dyn KnownTasks,
    fanout: bool,
) -> Vec<Problem> {
    let (segments, mut problems) = parse(text);
    for s in segments {
        if let Segment::Placeholder { key, span } = s {
            if let Err((message, label, help)) = Name::resolve(key, task, deps, tasks, fanout) {
                problems.push(Problem {
                    span,
                    message,
                    label,
                    help,
                });
            }
        }
    }
    problems.sort_by_key(|p| p.span.start);
    problems
}

/// Every problem with the placeholders of a text in which no name is available (the
/// `[aggregate]` prompt, which follows every result): syntax, and any name at all; a literal
/// is fine.
pub fn check_without_names(text: &str, whose: &str) -> Vec<Problem> {
    let (segments, mut problems) = parse(text);
    for s in segments {
        if let Segment::Placeholder { key, span } = s {
            if !matches!(Name::of(key), Some(Name::Literal(_))) {
                problems.push(Problem {
                    span,
                    message: format!("{whose} takes no placeholders, and has `{{{{ {key} }}}}`"),
                    label: "not filled in here".into(),
                    help: Some(
                        "the merge agent is given every task's result before this text; write a \
                         literal `{{` as {{ '{{' }}"
                            .into(),
                    ),
                });
            }
        }
    }
    problems.sort_by_key(|p| p.span.start);
    problems
}

/// A text in which no name is available (the `[aggregate]` prompt), only literals: `{{ '{{' }}`
/// written as `{{`. Meant for a text [`check`] passed with no deps and no tasks.
pub fn render_literals(text: &str) -> String {
    let (segments, _) = parse(text);
    let mut out = String::with_capacity(text.len());
    for s in segments {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder { key, span } => match Name::of(key) {
                Some(Name::Literal(l)) => out.push_str(l),
                _ => out.push_str(&text[span]),
            },
        }
    }
    out
}

/// Whether the placeholder at `span` stands alone on its line (only spaces beside it): a list
/// then renders as bullets, inside a sentence as a comma list.
pub fn stands_alone(text: &str, span: &Range<usize>) -> bool {
    let line_start = text[..span.start].rfind('\n').map_or(0, |n| n + 1);
    let line_end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |n| span.end + n);
    text[line_start..span.start].trim().is_empty() && text[span.end..line_end].trim().is_empty()
}

/// Finds where each placeholder problem of a value is in the value's source text: the value
/// as decoded (`value`) may differ from how it is written (`written`, e.g. a TOML string
/// with its quotes and escapes), so each problem's text is looked up in order in what is
/// written; `None` when it cannot be found there.
pub fn locate_in(written: &str, value: &str, problems: &[Problem]) -> Vec<Option<Range<usize>>> {
    let mut from = 0;
    problems
        .iter()
        .map(|p| {
            let needle = &value[p.span.clone()];
            let at = written.get(from..)?.find(needle)? + from;
            from = at + needle.len();
            Some(at..at + needle.len())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<&str> {
        parse(text)
            .0
            .into_iter()
            .filter_map(|s| match s {
                Segment::Placeholder { key, .. } => Some(key),
                Segment::Text(_) => None,
            })
            .collect()
    }

    fn messages(text: &str, deps: &[&str], ids: &[&str]) -> Vec<String> {
        check(text, "b", deps, &ids, false)
            .into_iter()
            .map(|p| format!("{} | {}", p.message, p.help.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn finds_placeholders_and_leaves_other_braces() {
        assert_eq!(
            keys("a {{ inputs }} b {{outputs}} {{ deps.T-01.result }}"),
            ["inputs", "outputs", "deps.T-01.result"]
        );
        assert!(keys("int m{{1, 2}}; {{{ and }} {{ }}").len() == 1);
        assert_eq!(keys("{{{ inputs }}}"), ["inputs"]);
        assert_eq!(keys("show {{ '{{' }} literally"), ["'{{'"]);
        assert_eq!(Name::of("'{{'"), Some(Name::Literal("{{")));
        assert_eq!(Name::of("deps.a.b.result"), Some(Name::DepResult("a.b")));
        assert_eq!(Name::of("deps..result"), None);
    }

    #[test]
    fn every_broken_placeholder_is_named_with_a_suggestion() {
        let ids = ["a", "b", "build"];
        let m = messages("{{ inptus }}", &["a"], &ids);
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("unknown placeholder `{{ inptus }}`"), "{m:?}");
        assert!(m[0].contains("did you mean `{{ inputs }}`"), "{m:?}");
        let m = messages("{{ dep.a.result }}", &["a"], &ids);
        assert!(m[0].contains("did you mean `{{ deps.a.result }}`"), "{m:?}");
        let m = messages("{{ dep.a.result }}", &[], &ids);
        assert!(m[0].contains("did you mean `{{ deps.a.result }}`"), "{m:?}");
        let m = messages("{{ deps.c.result }}", &["a"], &ids);
        assert!(m[0].contains("no such task"), "{m:?}");
        let m = messages("{{ deps.biuld.result }}", &[], &ids);
        assert!(
            m[0].contains("did you mean `{{ deps.build.result }}`"),
            "{m:?}"
        );
        let m = messages("{{ deps.b.result }}", &[], &ids);
        assert!(m[0].contains("the result of `b` itself"), "{m:?}");
        let m = messages("{{ deps.bb.result }}", &[], &["b"]);
        assert!(
            !m[0].contains("deps.b.result }}`?"),
            "never suggests the task itself: {m:?}"
        );
        let m = messages("{{ deps.a.result }}", &[], &ids);
        assert!(m[0].contains("does not depend on"), "{m:?}");
        assert!(m[0].contains("add \"a\" to the deps of `b`"), "{m:?}");
        let m = messages("x {{ x\nnext {{ inputs }}", &[], &ids);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("placeholder `{{ x` is not closed"), "{m:?}");
        let m = messages("{{ INPUTS }}", &[], &ids);
        assert!(m[0].contains("did you mean `{{ inputs }}`"), "{m:?}");
        for key in [
            "deps.a",
            "deps.a.output",
            "a.result",
            "dep_a",
            "deps",
            "result",
        ] {
            let m = messages(&format!("{{{{ {key} }}}}"), &["a"], &ids);
            assert!(
                m[0].contains("did you mean `{{ deps.a.result }}`"),
                "{key}: {m:?}"
            );
        }
        let m = messages("{{ deps.build.output }}", &[], &ids);
        assert!(
            m[0].contains("did you mean `{{ deps.build.result }}`"),
            "{m:?}"
        );
        let m = messages("say {{ }} and {{  }}", &[], &ids);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("empty placeholder"), "{m:?}");
        assert!(messages("int v{{}}; {{ {1} }}", &[], &ids).is_empty());
        let m = messages("{{ a b }}", &[], &ids);
        assert!(m[0].contains("not a placeholder orch knows"), "{m:?}");
        assert!(messages("{{ inputs }} {{ '{{' }} {{ deps.a.result }}", &["a"], &ids).is_empty());
        let m = messages("{{ item.stem }}", &[], &ids);
        assert!(m[0].contains("only known in a fan-out task"), "{m:?}");
        let items = check("{{ item }} {{ item.stm }}", "b", &[], &ids.as_slice(), true);
        assert_eq!(items.len(), 1, "{items:?}");
        assert!(
            items[0]
                .help
                .as_deref()
                .unwrap()
                .contains("{{ item.stem }}"),
            "{items:?}"
        );
    }

    #[test]
    fn spans_cover_the_placeholder() {
        let text = "see {{ inptus }} now";
        let none: &[&str] = &[];
        let p = &check(text, "b", &[], &none, false)[0];
        assert_eq!(&text[p.span.clone()], "{{ inptus }}");
        let written = "\"see {{ inptus }} now\"";
        assert_eq!(
            locate_in(written, text, std::slice::from_ref(p)),
            vec![Some(5..17)]
        );
    }

    #[test]
    fn alone_on_its_line_or_in_a_sentence() {
        let text = "Read these:\n  {{ inputs }}\nand {{ inputs }} too";
        let (segs, _) = parse(text);
        let spans: Vec<Range<usize>> = segs
            .into_iter()
            .filter_map(|s| match s {
                Segment::Placeholder { span, .. } => Some(span),
                _ => None,
            })
            .collect();
        assert!(stands_alone(text, &spans[0]));
        assert!(!stands_alone(text, &spans[1]));
    }
}
