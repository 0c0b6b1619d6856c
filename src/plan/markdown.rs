//! `master_plan.md` as a plan source, read with a markdown parser (pulldown-cmark), and the
//! `## Task Details` writer that `orch build` and `orch plan` share, so what orch writes reads
//! back as the same plan.
//!
//! What comes from where:
//! - `## Request`: the request, verbatim.
//! - `## Task Status` table: which tasks exist (one row each, in order), their title
//!   (`Task Description`), priority, deps and status. The `Agent` column holds agent ids
//!   (`Agent-01`), which orch assigns; a person may write an agent name there instead.
//! - `## Task Details`: one `### ID: title` block per task with `- **Field**: value` lines
//!   (Agent, Input, Output, Estimated Time, Timeout, Retries, Locks, Verify, Run, Prompt file,
//!   Prompt) and fenced code blocks for multi-line values (the prompt, a long run or verify).
//!   A row without a details block is an agent task whose prompt is its title.
//!
//! Edits that orch could not carry into its next rewrite are errors, not silently dropped:
//! unknown fields, free text inside Task Details, a details block without a row, a table
//! column orch does not know, and a Deps/Priority/title in the details that disagrees with
//! the table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag};

use super::diagnostic::{cycle_error, PlanError, SourceFile};
use super::orchfile::{check_inside_root, closest, valid_task_id};
use super::*;
use crate::agent::presets;
use crate::duration::{format_exact, parse_duration};
use crate::state::master_plan::Status;

pub const MASTER_PLAN_NAME: &str = "master_plan.md";

/// The runner name a details block gives a shell task.
const SHELL: &str = "shell";

/// The table columns orch writes, lowercased.
const COLUMNS: &[&str] = &[
    "task id",
    "task description",
    "agent",
    "status",
    "priority",
    "deps",
    "start",
    "end",
    "retries",
];

/// Reads the master plan at `path`. Its directory is the state directory and that
/// directory's parent the project root, so the build writes back to the same file.
pub fn load(path: &Path) -> miette::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read {}: {e}", path.display()))?;
    let (root, state_dir) = layout_of(path);
    parse(path, &text, root, state_dir).map_err(|e| miette::Report::new(*e))
}

/// `(root, state_dir)` for a master plan at `path`: `<root>/<state_dir>/master_plan.md`.
pub fn layout_of(path: &Path) -> (PathBuf, PathBuf) {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let root = dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let state_dir = dir
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".orchestrator"));
    (root, state_dir)
}

/// Whether a `-f` argument names a master plan rather than an Orchfile.
pub fn is_markdown(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"))
}

/// A table cell: trimmed raw text with `\|` unescaped, and where it is.
#[derive(Debug, Clone)]
struct Cell {
    text: String,
    span: Range<usize>,
}

/// One `- **Name**: value` line of a details block.
#[derive(Debug)]
struct Field {
    name: String,
    name_span: Range<usize>,
    /// The value's raw text, continuation lines unindented and kept apart.
    raw: String,
    span: Range<usize>,
    /// Code spans in the value: content and where.
    codes: Vec<(String, Range<usize>)>,
}

impl Field {
    /// The value on one line.
    fn folded(&self) -> String {
        self.raw
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A single value: the content of a code span if the value is just that, else the text.
    fn scalar(&self, text: &str) -> String {
        let folded = self.folded();
        match self.codes.as_slice() {
            [(content, range)] if folded.trim() == text[range.clone()].trim() => content.clone(),
            _ => folded.trim().to_string(),
        }
    }

    /// A list value: its code spans, or else the comma-separated parts; `None` is empty.
    fn list(&self) -> Vec<String> {
        if !self.codes.is_empty() {
            return self.codes.iter().map(|(c, _)| c.clone()).collect();
        }
        split_list(&self.folded())
    }
}

fn split_list(s: &str) -> Vec<String> {
    let t = s.trim();
    if t.is_empty() || t == "-" || t.eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    t.split(',')
        .map(|p| p.trim().trim_matches('`').trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[derive(Debug)]
struct Block {
    info: String,
    text: String,
    span: Range<usize>,
}

#[derive(Debug)]
struct Details {
    id: String,
    title: Option<String>,
    span: Range<usize>,
    fields: Vec<Field>,
    blocks: Vec<Block>,
    quotes: Vec<(String, Range<usize>)>,
}

#[derive(Default)]
struct Doc {
    request: Option<String>,
    header: Option<Vec<Cell>>,
    rows: Vec<(Vec<Cell>, Range<usize>)>,
    table_seen: bool,
    status_section: Option<Range<usize>>,
    details: Vec<Details>,
}

/// Index of the `End` that closes the `Start` at `i`.
fn matching_end(events: &[(Event, Range<usize>)], i: usize) -> usize {
    let mut depth = 0usize;
    for (j, (e, _)) in events.iter().enumerate().skip(i) {
        match e {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    events.len().saturating_sub(1)
}

fn trimmed(text: &str, r: Range<usize>) -> Range<usize> {
    let s = &text[r.clone()];
    let start = r.start + (s.len() - s.trim_start().len());
    let end = r.end - (s.len() - s.trim_end().len());
    start..end.max(start)
}

struct Reader<'a> {
    text: &'a str,
    src: &'a SourceFile,
    errors: Vec<PlanError>,
}

impl<'a> Reader<'a> {
    fn err(&mut self, code: &'static str, msg: String, span: Range<usize>, label: &str) {
        self.errors
            .push(self.src.error(code, msg, Some(span), label));
    }

    fn err_help(
        &mut self,
        code: &'static str,
        msg: String,
        span: Range<usize>,
        label: &str,
        help: &str,
    ) {
        self.errors
            .push(self.src.error(code, msg, Some(span), label).with_help(help));
    }

    /// Walks the document's top-level blocks, collecting what the plan needs.
    fn read(&mut self) -> Doc {
        let text = self.text;
        let events: Vec<(Event, Range<usize>)> = Parser::new_ext(text, Options::ENABLE_TABLES)
            .into_offset_iter()
            .collect();
        let mut doc = Doc::default();
        let mut section = String::new();
        let mut section_start = 0usize;
        let mut i = 0;
        while i < events.len() {
            let (event, range) = (&events[i].0, events[i].1.clone());
            let end = match event {
                Event::Start(_) => matching_end(&events, i),
                _ => i,
            };
            let is_h2 = matches!(
                event,
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H2,
                    ..
                })
            ) && (range.start == 0 || text.as_bytes()[range.start - 1] == b'\n')
                && text[range.clone()].starts_with("## ");
            if is_h2 {
                self.close_section(&mut doc, &section, section_start..range.start);
                section = text[range.clone()][3..]
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                section_start = range.end;
                i = end + 1;
                continue;
            }
            match section.as_str() {
                "Task Status" => {
                    if let Event::Start(Tag::Table(_)) = event {
                        if doc.table_seen {
                            self.err(
                                "orch::md_second_table",
                                "a second table in Task Status".into(),
                                trimmed(text, range),
                                "only the first table lists tasks",
                            );
                        } else {
                            doc.table_seen = true;
                            self.table(&events[i..=end], &mut doc);
                        }
                    } else {
                        // A row typed below a blank line is a paragraph, not part of the
                        // table: say so rather than lose it on the next rewrite.
                        self.err_help(
                            "orch::md_unexpected",
                            "text in Task Status outside the table".into(),
                            trimmed(text, range),
                            "orch would not keep this",
                            "rows belong in the table, with no blank line above them; put \
                             notes in a `## ` section of your own",
                        );
                    }
                }
                "Task Details" => self.details_block(&events[i..=end], &mut doc),
                _ => {}
            }
            i = end + 1;
        }
        self.close_section(&mut doc, &section, section_start..text.len());
        doc
    }

    fn close_section(&mut self, doc: &mut Doc, section: &str, body: Range<usize>) {
        match section {
            "Request" => {
                let r = self.text[body].trim();
                if !r.is_empty() {
                    doc.request = Some(r.to_string());
                }
            }
            "Task Status" => doc.status_section = Some(body),
            _ => {}
        }
    }

    fn cell(&self, range: Range<usize>) -> Cell {
        let span = trimmed(self.text, range);
        Cell {
            text: self.text[span.clone()].replace("\\|", "|"),
            span,
        }
    }

    fn table(&mut self, events: &[(Event, Range<usize>)], doc: &mut Doc) {
        let mut row: Option<(Vec<Cell>, Range<usize>)> = None;
        let mut in_head = false;
        let mut i = 0;
        while i < events.len() {
            let (e, r) = (&events[i].0, events[i].1.clone());
            match e {
                Event::Start(Tag::TableHead) => {
                    in_head = true;
                    row = Some((Vec::new(), r));
                }
                Event::Start(Tag::TableRow) => row = Some((Vec::new(), r)),
                Event::Start(Tag::TableCell) => {
                    if let Some((cells, _)) = &mut row {
                        cells.push(self.cell(r));
                    }
                    i = matching_end(events, i);
                }
                Event::End(pulldown_cmark::TagEnd::TableHead) => {
                    in_head = false;
                    doc.header = row.take().map(|(c, _)| c);
                }
                Event::End(pulldown_cmark::TagEnd::TableRow) if !in_head => {
                    if let Some(r) = row.take() {
                        doc.rows.push(r);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn details_block(&mut self, events: &[(Event, Range<usize>)], doc: &mut Doc) {
        let text = self.text;
        let (event, range) = (&events[0].0, events[0].1.clone());
        let help = "Task Details holds `### ID: title` blocks of `- **Field**: value` lines and \
                    fenced code blocks; put notes in a `## ` section of your own, which orch keeps";
        match event {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H3,
                ..
            }) => {
                let raw = text[range.clone()].trim_start_matches('#').trim();
                let line = raw.lines().next().unwrap_or("").trim();
                let (id, title) = match line.split_once(':') {
                    Some((id, title)) => (id.trim(), Some(title.trim().to_string())),
                    None => (line, None),
                };
                doc.details.push(Details {
                    id: id.to_string(),
                    title: title.filter(|t| !t.is_empty()),
                    span: trimmed(text, range),
                    fields: Vec::new(),
                    blocks: Vec::new(),
                    quotes: Vec::new(),
                });
            }
            Event::Rule => {}
            _ if doc.details.is_empty() => self.err_help(
                "orch::md_unexpected",
                "text in Task Details before the first `### ID: title` heading".into(),
                trimmed(text, range),
                "orch would not keep this",
                help,
            ),
            Event::Start(Tag::List(_)) => {
                let mut i = 1;
                while i < events.len() {
                    if let Event::Start(Tag::Item) = events[i].0 {
                        let end = matching_end(events, i);
                        self.field(&events[i..=end], doc);
                        i = end;
                    }
                    i += 1;
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.trim().to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                let mut body = String::new();
                for (e, _) in events {
                    if let Event::Text(t) = e {
                        body.push_str(t);
                    }
                }
                if let Some(stripped) = body.strip_suffix('\n') {
                    body.truncate(stripped.len());
                }
                let d = doc.details.last_mut().unwrap();
                d.blocks.push(Block {
                    info,
                    text: body,
                    span: trimmed(text, range),
                });
            }
            Event::Start(Tag::BlockQuote(_)) => {
                let quote: Vec<&str> = text[range.clone()]
                    .lines()
                    .map(|l| {
                        let l = l.trim_start();
                        l.strip_prefix("> ")
                            .or_else(|| l.strip_prefix('>'))
                            .unwrap_or(l)
                    })
                    .collect();
                let quote = quote.join("\n").trim_end().to_string();
                doc.details
                    .last_mut()
                    .unwrap()
                    .quotes
                    .push((quote, trimmed(text, range)));
            }
            _ => {
                let id = doc.details.last().unwrap().id.clone();
                self.err_help(
                    "orch::md_unexpected",
                    format!("unexpected text in the details of `{id}`"),
                    trimmed(text, range),
                    "orch would not keep this",
                    help,
                );
            }
        }
    }

    fn field(&mut self, events: &[(Event, Range<usize>)], doc: &mut Doc) {
        let text = self.text;
        let range = trimmed(text, events[0].1.clone());
        let raw = &text[range.clone()];
        // Strip the list marker: `-`, `*`, `+` or `1.`.
        let after_marker = raw
            .strip_prefix(['-', '*', '+'])
            .or_else(|| {
                let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
                (digits > 0)
                    .then(|| raw[digits..].strip_prefix(['.', ')']))
                    .flatten()
            })
            .unwrap_or(raw);
        let body = after_marker.trim_start();
        let body_start = range.start + (raw.len() - body.len());
        let parsed = body.strip_prefix("**").and_then(|rest| {
            let close = rest.find("**")?;
            Some((&rest[..close], &rest[close + 2..]))
        });
        let Some((name_raw, rest)) = parsed else {
            self.err_help(
                "orch::md_field",
                "a details line must look like `- **Field**: value`".into(),
                range,
                "not a field",
                "fields: Agent, Input, Output, Estimated Time, Timeout, Retries, Locks, Verify, \
                 Run, Prompt file, Prompt",
            );
            return;
        };
        let name = name_raw.trim().trim_end_matches(':').trim().to_string();
        let name_span = body_start + 2..body_start + 2 + name_raw.len();
        let value = rest.strip_prefix(':').unwrap_or(rest);
        let value_trim = value.trim_start();
        let value_start = range.end - value_trim.len();
        let value_trim = value_trim.trim_end();
        let raw_value = value_trim
            .split('\n')
            .enumerate()
            .map(|(i, l)| if i == 0 { l } else { l.trim_start() })
            .collect::<Vec<_>>()
            .join("\n");
        let codes = events
            .iter()
            .filter_map(|(e, r)| match e {
                Event::Code(c) if r.start >= value_start => Some((c.to_string(), r.clone())),
                _ => None,
            })
            .collect();
        doc.details.last_mut().unwrap().fields.push(Field {
            name,
            name_span,
            raw: raw_value,
            span: value_start..value_start + value_trim.len(),
            codes,
        });
    }
}

/// `(task id, status cell)` for each row of the first table in `text` (the body of a
/// `## Task Status` section), found by the header names `Task ID` and `Status`.
pub fn table_statuses(text: &str) -> Vec<(String, String)> {
    let src = SourceFile::new("", text);
    let mut r = Reader {
        text,
        src: &src,
        errors: Vec::new(),
    };
    let events: Vec<(Event, Range<usize>)> = Parser::new_ext(text, Options::ENABLE_TABLES)
        .into_offset_iter()
        .collect();
    let Some(start) = events
        .iter()
        .position(|(e, _)| matches!(e, Event::Start(Tag::Table(_))))
    else {
        return Vec::new();
    };
    let end = matching_end(&events, start);
    let mut doc = Doc::default();
    r.table(&events[start..=end], &mut doc);
    let Some(header) = doc.header else {
        return Vec::new();
    };
    let col = |name: &str| {
        header
            .iter()
            .position(|c| c.text.eq_ignore_ascii_case(name))
    };
    let (Some(id), Some(status)) = (col("task id"), col("status")) else {
        return Vec::new();
    };
    doc.rows
        .iter()
        .filter_map(|(cells, _)| {
            Some((
                cells.get(id)?.text.trim_matches('`').to_string(),
                cells.get(status)?.text.clone(),
            ))
        })
        .collect()
}

/// The canonical name of a details field, or `None` when orch does not know it.
fn field_key(name: &str) -> Option<&'static str> {
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

fn parse_priority(s: &str) -> Option<Priority> {
    let t = s.trim();
    if t.is_empty() || t == "-" {
        return Some(Priority::default());
    }
    let n = t.strip_prefix(['P', 'p']).unwrap_or(t).parse::<u8>().ok()?;
    (n <= 3).then_some(Priority(n))
}

/// `Agent-07` and the like: an agent id, which orch assigns itself.
fn is_agent_id(s: &str) -> bool {
    s.strip_prefix("Agent-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Parses master_plan.md text into a plan rooted at `root` with `state_dir` under it.
pub fn parse(
    path: &Path,
    text: &str,
    root: PathBuf,
    state_dir: PathBuf,
) -> Result<Plan, Box<PlanError>> {
    let src = SourceFile::new(path.display().to_string(), text);
    let mut r = Reader {
        text,
        src: &src,
        errors: Vec::new(),
    };
    let doc = r.read();
    let plan = build(&mut r, doc, root, state_dir, path);
    match PlanError::combine(r.errors) {
        Some(e) => Err(Box::new(e)),
        None => Ok(plan),
    }
}

struct RowInfo {
    id: Cell,
    deps_cell: Option<Cell>,
}

fn build(r: &mut Reader, doc: Doc, root: PathBuf, state_dir: PathBuf, path: &Path) -> Plan {
    let text = r.text;
    let agents = presets::builtin_agents();
    let settings = Settings {
        state_dir,
        ..Settings::default()
    };
    let empty = Plan {
        root: root.clone(),
        source_path: path.to_path_buf(),
        settings: settings.clone(),
        agents: agents.clone(),
        tasks: Vec::new(),
        index: HashMap::new(),
        aggregate: None,
        request: doc.request.clone(),
        definitions: Vec::new(),
    };
    let Some(header) = &doc.header else {
        let span = doc.status_section.clone().unwrap_or(0..0);
        r.err_help(
            "orch::md_no_table",
            "master_plan.md has no task table".into(),
            trimmed(text, span),
            "expected the status table here",
            &format!(
                "a `## Task Status` section with the table `{}` lists the tasks",
                crate::state::master_plan::TABLE_HEADER
            ),
        );
        return empty;
    };
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, c) in header.iter().enumerate() {
        match COLUMNS.iter().find(|n| c.text.eq_ignore_ascii_case(n)) {
            Some(n) => {
                col.insert(n, i);
            }
            None => r.err_help(
                "orch::md_column",
                format!("unknown column `{}` in the status table", c.text),
                c.span.clone(),
                "orch would not keep this column",
                "columns: Task ID, Task Description, Agent, Status, Priority, Deps, Start, End, \
                 Retries; put notes in a `## ` section of your own",
            ),
        }
    }
    let Some(&id_col) = col.get("task id") else {
        let span = header.first().map(|c| c.span.clone()).unwrap_or(0..0);
        r.err(
            "orch::md_column",
            "the status table has no `Task ID` column".into(),
            span,
            "in this table",
        );
        return empty;
    };
    let get = |cells: &[Cell], name: &str| -> Option<Cell> {
        col.get(name).and_then(|&i| cells.get(i)).cloned()
    };

    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<RowInfo> = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    let mut table_agents: Vec<Option<(String, Range<usize>)>> = Vec::new();
    for (cells, row_span) in &doc.rows {
        let id = cells.get(id_col).cloned().unwrap_or(Cell {
            text: String::new(),
            span: trimmed(text, row_span.clone()),
        });
        let id_text = id.text.trim_matches('`').to_string();
        if id_text.is_empty() {
            r.err(
                "orch::bad_task_id",
                "a row has no task id".into(),
                trimmed(text, row_span.clone()),
                "this row",
            );
            continue;
        }
        if !valid_task_id(&id_text) {
            r.err(
                "orch::bad_task_id",
                format!("task id `{id_text}` may only use letters, digits, `-`, `_` and `.`"),
                id.span.clone(),
                "here",
            );
            continue;
        }
        if let Some(&first) = ids.get(&id_text) {
            let e = r
                .src
                .error(
                    "orch::duplicate_task",
                    format!("task `{id_text}` has two rows"),
                    Some(id.span.clone()),
                    "again here",
                )
                .with_label(rows[first].id.span.clone(), "first here");
            r.errors.push(e);
            continue;
        }
        if let Some(s) = get(cells, "status") {
            let t = s.text.trim();
            if !(t.is_empty() || t == "-") && Status::parse(t).is_none() {
                r.err_help(
                    "orch::md_status",
                    format!("unknown status `{t}` for `{id_text}`"),
                    s.span.clone(),
                    "not a status",
                    "use ✅ 🔵 🟡 ⏸️ ❌ ⏭️ or a word: completed, running, ready, pending, \
                     waiting, failed, skipped (🟡 or Pending forces a re-run)",
                );
            }
        }
        let priority = match get(cells, "priority") {
            None => Priority::default(),
            Some(c) => parse_priority(&c.text).unwrap_or_else(|| {
                r.err(
                    "orch::bad_priority",
                    "priority must be one of P0, P1, P2, P3".into(),
                    c.span.clone(),
                    "here",
                );
                Priority::default()
            }),
        };
        let deps_cell = get(cells, "deps");
        let deps = deps_cell
            .as_ref()
            .map(|c| split_list(&c.text))
            .unwrap_or_default();
        let agent = get(cells, "agent").and_then(|c| {
            let t = c.text.trim().to_string();
            (!(t.is_empty() || t == "-" || is_agent_id(&t))).then_some((t, c.span))
        });
        let title = get(cells, "task description")
            .map(|c| c.text.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| id_text.clone());
        ids.insert(id_text.clone(), tasks.len());
        rows.push(RowInfo { id, deps_cell });
        table_agents.push(agent);
        tasks.push(Task {
            id: id_text,
            title,
            action: Action::Shell(String::new()),
            agent: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            deps,
            priority,
            retries: None,
            timeout: None,
            locks: Vec::new(),
            verify: None,
            estimate: None,
            env: Default::default(),
        });
    }

    let mut details: Vec<Option<Details>> = (0..tasks.len()).map(|_| None).collect();
    for d in doc.details {
        match ids.get(&d.id) {
            Some(&t) if details[t].is_some() => {
                let id = d.id.clone();
                r.err(
                    "orch::duplicate_task",
                    format!("task `{id}` has two details blocks"),
                    d.span,
                    "again here",
                );
            }
            Some(&t) => details[t] = Some(d),
            None => {
                let mut e = r.src.error(
                    "orch::md_orphan_details",
                    format!(
                        "details for `{}`, which has no row in the status table",
                        d.id
                    ),
                    Some(d.span),
                    "no row has this id",
                );
                e = match closest(&d.id, ids.keys().map(String::as_str)) {
                    Some(c) => e.with_help(format!("did you mean `{c}`?")),
                    None => e.with_help(
                        "add a row for it to the Task Status table, or delete this block",
                    ),
                };
                r.errors.push(e);
            }
        }
    }

    for (t, task) in tasks.iter_mut().enumerate() {
        let d = details[t].take();
        apply_details(r, task, d, table_agents[t].take(), &agents);
    }

    // Deps: known, not self, not twice; then no cycle.
    for (t, task) in tasks.iter_mut().enumerate() {
        let span = rows[t]
            .deps_cell
            .as_ref()
            .map(|c| c.span.clone())
            .unwrap_or(rows[t].id.span.clone());
        let mut kept: Vec<String> = Vec::new();
        for d in std::mem::take(&mut task.deps) {
            if d == task.id {
                r.err(
                    "orch::self_dep",
                    format!("task `{d}` depends on itself"),
                    span.clone(),
                    "here",
                );
            } else if !ids.contains_key(&d) {
                let mut e = r.src.error(
                    "orch::unknown_dep",
                    format!("task `{}` depends on unknown task `{d}`", task.id),
                    Some(span.clone()),
                    "no task has this id",
                );
                if let Some(c) = closest(&d, ids.keys().map(String::as_str)) {
                    e = e.with_help(format!("did you mean `{c}`?"));
                }
                r.errors.push(e);
            } else if kept.contains(&d) {
                r.err(
                    "orch::duplicate_dep",
                    format!("task `{}` lists dep `{d}` twice", task.id),
                    span.clone(),
                    "here",
                );
            } else {
                kept.push(d);
            }
        }
        task.deps = kept;
    }
    if r.errors.is_empty() {
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| t.deps.iter().map(|d| ids[d]).collect())
            .collect();
        let edge =
            |_: usize, dependent: usize| rows[dependent].deps_cell.as_ref().map(|c| c.span.clone());
        if let Some(e) = cycle_error(r.src, &tasks, deps, edge) {
            r.errors.push(e);
        }
    }
    let index = Plan::index_of(&tasks);
    Plan {
        tasks,
        index,
        ..empty
    }
}

/// Fills a task from its details block (if any) and the agent named in its table row.
fn apply_details(
    r: &mut Reader,
    task: &mut Task,
    details: Option<Details>,
    table_agent: Option<(String, Range<usize>)>,
    agents: &indexmap::IndexMap<String, AgentSpec>,
) {
    let text = r.text;
    let mut agent_name = table_agent.clone();
    let mut prompt: Option<(String, Range<usize>)> = None;
    let mut run: Option<(String, Range<usize>)> = None;
    let mut prompt_file: Option<(String, Range<usize>)> = None;
    let Some(d) = details else {
        task.action = Action::Prompt(task.title.clone());
        finish_agent(r, task, agent_name, agents);
        return;
    };
    if let Some(title) = &d.title {
        if title != &task.title && title != &crate::state::master_plan::cell(&task.title) {
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
            "estimate" | "timeout" => match parse_duration(&value) {
                Ok(v) if key == "estimate" => task.estimate = Some(v),
                Ok(v) => task.timeout = Some(v),
                Err(e) => r.err(
                    "orch::bad_duration",
                    format!("invalid {}: {e}", f.name),
                    f.span.clone(),
                    "not a duration",
                ),
            },
            "retries" => match value.trim().parse::<u32>() {
                Ok(n) => task.retries = Some(n),
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
    } else if let Some((p, _)) = prompt {
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
        if o.contains(['*', '?', '[', '{']) {
            r.err(
                "orch::glob_output",
                format!("output `{o}` must be a file path, not a glob"),
                span_of("outputs"),
                "a glob",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

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

/// The body of `## Task Details`: one `### ID: title` block per task, in the form [`parse`]
/// reads back. `agent_id` gives each task's agent id (`Agent-01`).
pub fn render_details(plan: &Plan, agent_id: &dyn Fn(&str) -> String) -> String {
    let mut s = String::new();
    for task in &plan.tasks {
        let _ = writeln!(s, "### {}: {}\n", task.id, heading_title(&task.title));
        let runner = match &task.action {
            Action::Shell(_) => SHELL.to_string(),
            _ => task
                .agent
                .clone()
                .unwrap_or_else(|| plan.settings.default_agent.clone()),
        };
        let _ = writeln!(s, "- **Agent**: {} ({runner})", agent_id(&task.id));
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
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_md(text: &str) -> Result<Plan, Box<PlanError>> {
        parse(
            Path::new("/p/.orchestrator/master_plan.md"),
            text,
            PathBuf::from("/p"),
            PathBuf::from(".orchestrator"),
        )
    }

    fn doc(rows: &str, details: &str) -> String {
        format!(
            "# Master Plan\n\n## Request\n\nDo it.\n\n## Task Status\n\n{}\n|---|---|---|---|---|---|---|---|---|\n{rows}\n## Task Details\n\n{details}\n## Notes\n\nmine\n",
            crate::state::master_plan::TABLE_HEADER
        )
    }

    fn label_text(e: &PlanError, text: &str) -> String {
        let l = &e.labels[0];
        text[l.offset()..l.offset() + l.len()].to_string()
    }

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

    #[test]
    fn a_bare_row_is_a_prompt_task() {
        let text = doc(
            "| T-01 | Read the code | - | Pending | P1 | None | - | - | 0 |\n| T-02 | Write \\| report | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            "",
        );
        let plan = parse_md(&text).unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[0].action, Action::Prompt("Read the code".into()));
        assert_eq!(plan.tasks[1].title, "Write | report");
        assert_eq!(plan.tasks[1].deps, vec!["T-01"]);
        assert_eq!(plan.tasks[0].priority, Priority(1));
        assert_eq!(plan.request.as_deref(), Some("Do it."));
        assert_eq!(plan.root, Path::new("/p"));
    }

    #[test]
    fn details_give_the_rest() {
        let details = "### T-01: Count\n\n- **Agent**: Agent-01 (shell)\n- **Input**: `src/**/*.rs`, `a,b.txt`\n- **Output**: `out/count.txt`\n- **Estimated Time**: 2m\n- **Timeout**: 1h30m\n- **Retries**: 2\n- **Locks**: `db`\n- **Verify**: `` test -s `x` ``\n- **Run**: `wc -l src/*.rs > out/count.txt`\n\n### T-02: Explain\n\n- **Agent**: Agent-02 (sim)\n- **Prompt**:\n\n````text\nExplain.\n```\ncode\n```\n````\n";
        let text = doc(
            "| T-01 | Count | Agent-01 | ✅ | P0 | None | - | - | 0 |\n| T-02 | Explain | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            details,
        );
        let plan = parse_md(&text).unwrap();
        let t = &plan.tasks[0];
        assert_eq!(
            t.action,
            Action::Shell("wc -l src/*.rs > out/count.txt".into())
        );
        assert_eq!(t.inputs, vec!["src/**/*.rs", "a,b.txt"]);
        assert_eq!(t.outputs, vec!["out/count.txt"]);
        assert_eq!(t.verify.as_deref(), Some("test -s `x`"));
        assert_eq!(t.estimate, Some(std::time::Duration::from_secs(120)));
        assert_eq!(t.timeout, Some(std::time::Duration::from_secs(5400)));
        assert_eq!(t.retries, Some(2));
        assert_eq!(t.locks, vec!["db"]);
        assert_eq!(t.agent, None);
        let t = &plan.tasks[1];
        assert_eq!(t.agent.as_deref(), Some("sim"));
        assert_eq!(t.action, Action::Prompt("Explain.\n```\ncode\n```".into()));
    }

    #[test]
    fn writer_and_reader_round_trip() {
        let details = "### T-01: Count\n\n- **Agent**: Agent-01 (shell)\n- **Run**:\n\n```sh\nset -e\necho `date` > out.txt\n```\n\n### T-02: Explain\n\n- **Agent**: Agent-02 (claude)\n- **Output**: `r.md`\n- **Verify**: `test -s r.md`\n- **Prompt**: Explain the **count**\n  in detail.\n";
        let text = doc(
            "| T-01 | Count | Agent-01 | ✅ | P0 | None | - | - | 0 |\n| T-02 | Explain | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            details,
        );
        let plan = parse_md(&text).unwrap();
        assert_eq!(
            plan.tasks[1].action,
            Action::Prompt("Explain the **count**\nin detail.".into())
        );
        let ids = |id: &str| format!("Agent-{:02}", plan.index[id] + 1);
        let written = render_details(&plan, &ids);
        let text2 = doc(
            "| T-01 | Count | Agent-01 | ✅ | P0 | None | - | - | 0 |\n| T-02 | Explain | Agent-02 | ⏸️ | P2 | T-01 | - | - | 0 |\n",
            &written,
        );
        let again = parse_md(&text2).unwrap();
        for (a, b) in plan.tasks.iter().zip(&again.tasks) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        assert_eq!(render_details(&again, &ids), written);
    }

    #[test]
    fn errors_point_at_the_cell() {
        let text = doc(
            "| T-01 | A | - | Pending | P1 | None | - | - | 0 |\n| T-02 | B | - | Pending | P9 | T-O1 | - | - | 0 |\n",
            "",
        );
        let e = parse_md(&text).unwrap_err();
        let msgs = e.messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("priority"));
        assert_eq!(label_text(&e, &text), "P9");
        let dep = &e.related[0];
        assert!(dep.message.contains("unknown task `T-O1`"));
        assert_eq!(label_text(dep, &text), "T-O1");
        assert!(dep.help.as_ref().unwrap().contains("T-01"));
    }

    #[test]
    fn cycles_and_unknown_fields_and_strays_are_errors() {
        let text = doc(
            "| a | A | - | Pending | P1 | c | - | - | 0 |\n| b | B | - | Pending | P1 | a | - | - | 0 |\n| c | C | - | Pending | P1 | b | - | - | 0 |\n",
            "",
        );
        let e = parse_md(&text).unwrap_err();
        assert!(e.message.starts_with("dependency cycle"), "{}", e.message);
        assert_eq!(e.labels.len(), 3);

        let text = doc(
            "| a | A | - | Pending | P1 | None | - | - | 0 |\n",
            "### a: A\n\n- **Ouput**: `x`\n\nSome words.\n\n### zz: Z\n\n- **Run**: `x`\n",
        );
        let e = parse_md(&text).unwrap_err();
        let msgs = e.messages();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("unknown field `Ouput`")));
        assert!(msgs.iter().any(|m| m.contains("unexpected text")));
        assert!(msgs.iter().any(|m| m.contains("no row")));
    }

    #[test]
    fn details_that_disagree_with_the_table_are_errors() {
        let text = doc(
            "| a | A | - | Pending | P1 | None | - | - | 0 |\n| b | B | - | Pending | P1 | a | - | - | 0 |\n",
            "### b: Bee\n\n- **Deps**: None\n- **Priority**: P1\n",
        );
        let msgs = parse_md(&text).unwrap_err().messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("titled"));
        assert!(msgs[1].contains("deps of `b` differ"));
    }

    #[test]
    fn status_cells_and_agent_names() {
        let text = doc(
            "| a | A | sim | maybe | P1 | None | - | - | 0 |\n| b | B | gpt9 | ✅ | P1 | None | - | - | 0 |\n",
            "",
        );
        let msgs = parse_md(&text).unwrap_err().messages();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("unknown status `maybe`"));
        assert!(msgs[1].contains("unknown agent `gpt9`"));
        let text = doc("| a | A | sim | Pending | P1 | None | - | - | 0 |\n", "");
        assert_eq!(
            parse_md(&text).unwrap().tasks[0].agent.as_deref(),
            Some("sim")
        );
    }

    #[test]
    fn a_row_cut_off_from_the_table_is_an_error() {
        let text = doc(
            "| a | A | - | Pending | P1 | None | - | - | 0 |\n\n| b | B | - | Pending | P1 | None |\n",
            "",
        );
        let e = parse_md(&text).unwrap_err();
        assert!(e.message.contains("outside the table"), "{}", e.message);
        assert_eq!(label_text(&e, &text), "| b | B | - | Pending | P1 | None |");
    }

    #[test]
    fn statuses_are_read_by_column_name() {
        let table = "| Task ID | Task Description | Agent | Status |\n|---|---|---|---|\n| a | x \\| y | Agent-01 | Pending |\n| b | z | Agent-02 | ✅ |\n";
        assert_eq!(
            table_statuses(table),
            vec![
                ("a".to_string(), "Pending".to_string()),
                ("b".to_string(), "✅".to_string())
            ]
        );
        assert!(table_statuses("no table").is_empty());
    }

    #[test]
    fn no_table_is_an_error() {
        let e = parse_md("# Master Plan\n\n## Request\n\nx\n").unwrap_err();
        assert!(e.message.contains("no task table"));
    }
}
