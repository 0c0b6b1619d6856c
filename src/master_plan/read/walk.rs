//! The markdown walk: master_plan.md's top-level blocks (with pulldown-cmark) collected as
//! table cells, details fields and code blocks, each with its span for diagnostics.

use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag};

use crate::plan::diagnostic::{PlanError, SourceFile};

/// A table cell: trimmed raw text with `\|` unescaped, and where it is.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    pub(super) text: String,
    pub(super) span: Range<usize>,
}

/// One `- **Name**: value` line of a details block.
#[derive(Debug)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) name_span: Range<usize>,
    /// The value's raw text, continuation lines unindented and kept apart.
    pub(super) raw: String,
    pub(super) span: Range<usize>,
    /// Code spans in the value: content and where.
    pub(super) codes: Vec<(String, Range<usize>)>,
}

impl Field {
    /// The value on one line.
    pub(super) fn folded(&self) -> String {
        self.raw
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A single value: the content of a code span if the value is just that, else the text.
    pub(super) fn scalar(&self, text: &str) -> String {
        let folded = self.folded();
        match self.codes.as_slice() {
            [(content, range)] if folded.trim() == text[range.clone()].trim() => content.clone(),
            _ => folded.trim().to_string(),
        }
    }

    /// A list value: its code spans, or else the comma-separated parts; `None` is empty.
    pub(super) fn list(&self) -> Vec<String> {
        if !self.codes.is_empty() {
            return self.codes.iter().map(|(c, _)| c.clone()).collect();
        }
        split_list(&self.folded())
    }
}

pub(super) fn split_list(s: &str) -> Vec<String> {
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
pub(super) struct Block {
    pub(super) info: String,
    pub(super) text: String,
    pub(super) span: Range<usize>,
}

#[derive(Debug)]
pub(super) struct Details {
    pub(super) id: String,
    pub(super) title: Option<String>,
    pub(super) span: Range<usize>,
    pub(super) fields: Vec<Field>,
    pub(super) blocks: Vec<Block>,
    pub(super) quotes: Vec<(String, Range<usize>)>,
}

#[derive(Default)]
pub(super) struct Doc {
    pub(super) request: Option<String>,
    pub(super) header: Option<Vec<Cell>>,
    pub(super) rows: Vec<(Vec<Cell>, Range<usize>)>,
    pub(super) table_seen: bool,
    pub(super) status_section: Option<Range<usize>>,
    pub(super) details: Vec<Details>,
}

/// Index of the `End` that closes the `Start` at `i`.
pub(super) fn matching_end(events: &[(Event, Range<usize>)], i: usize) -> usize {
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

pub(super) fn trimmed(text: &str, r: Range<usize>) -> Range<usize> {
    let s = &text[r.clone()];
    let start = r.start + (s.len() - s.trim_start().len());
    let end = r.end - (s.len() - s.trim_end().len());
    start..end.max(start)
}

pub(super) struct Reader<'a> {
    pub(super) text: &'a str,
    pub(super) src: &'a SourceFile,
    pub(super) errors: Vec<PlanError>,
}

impl<'a> Reader<'a> {
    pub(super) fn err(&mut self, code: &'static str, msg: String, span: Range<usize>, label: &str) {
        self.errors
            .push(self.src.error(code, msg, Some(span), label));
    }

    pub(super) fn err_help(
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
    pub(super) fn read(&mut self) -> Doc {
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
                "Dependency Graph" => self.graph_block(&events[i..=end]),
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

    /// `## Dependency Graph` holds what orch draws from the table (a mermaid block, or the
    /// line saying the plan is too large to draw) and its digest comment; anything else
    /// there would vanish at the next rewrite.
    fn graph_block(&mut self, events: &[(Event, Range<usize>)]) {
        let text = self.text;
        let range = events[0].1.clone();
        let block = text[range.clone()].trim();
        let orchs = match &events[0].0 {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => info.trim() == "mermaid",
            Event::Start(Tag::HtmlBlock) | Event::Html(_) => {
                crate::master_plan::sections::is_marker(block)
            }
            Event::Start(Tag::Paragraph) => {
                block.starts_with('_') && block.contains("too many to draw here")
            }
            _ => false,
        };
        if !orchs {
            self.err_help(
                "orch::md_unexpected",
                "text under Dependency Graph, which orch draws from the status table".into(),
                trimmed(text, range),
                "orch would not keep this",
                "change the Deps column of the Task Status table to change the graph; put \
                 notes in a `## ` section of your own, which orch keeps",
            );
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
