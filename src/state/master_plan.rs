//! `master_plan.md`: the human-readable plan, status table and execution log.
//!
//! orch owns the sections it generates (Request, Task Status, Task Details, Dependency Graph,
//! Execution Log) and rewrites them; any other `## ` section a person adds is kept, and the
//! execution log only ever grows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Running,
    Ready,
    Waiting,
    Failed,
    Skipped,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Completed => "✅",
            Status::Running => "🔵",
            Status::Ready => "🟡",
            Status::Waiting => "⏸️",
            Status::Failed => "❌",
            Status::Skipped => "⏭️",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Running => "running",
            Status::Ready => "ready",
            Status::Waiting => "waiting",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    /// Reads a status cell as written by orch or a person (`✅`, `Pending`, `failed`...).
    pub fn parse(cell: &str) -> Option<Status> {
        let c = cell.trim().trim_matches('*');
        let lower = c.to_ascii_lowercase();
        Some(match () {
            _ if c.starts_with('✅') || lower == "completed" || lower == "done" => {
                Status::Completed
            }
            _ if c.starts_with('🔵') || lower == "running" => Status::Running,
            _ if c.starts_with('🟡') || lower == "ready" || lower == "pending" => Status::Ready,
            _ if c.starts_with('⏸') || lower == "waiting" => Status::Waiting,
            _ if c.starts_with('❌') || lower == "failed" => Status::Failed,
            _ if c.starts_with('⏭') || lower == "skipped" => Status::Skipped,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub id: String,
    pub title: String,
    pub agent: String,
    pub status: Status,
    pub priority: String,
    pub deps: Vec<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub retries: u32,
}

pub const TABLE_HEADER: &str =
    "| Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |";

/// A table cell: pipes escaped, newlines folded.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn render_table(rows: &[StatusRow]) -> String {
    let mut out = String::with_capacity(64 * (rows.len() + 2));
    out.push_str(TABLE_HEADER);
    out.push_str("\n|---------|------------------|-------|--------|----------|------|-------|-----|---------|\n");
    for r in rows {
        let deps = if r.deps.is_empty() {
            "None".to_string()
        } else {
            r.deps.join(",")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.id),
            cell(&r.title),
            r.agent,
            r.status.symbol(),
            r.priority,
            cell(&deps),
            r.start.as_deref().unwrap_or("-"),
            r.end.as_deref().unwrap_or("-"),
            r.retries
        ));
    }
    out
}

/// One `### [stamp] Title` entry of the execution log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub stamp: String,
    pub title: String,
    pub lines: Vec<String>,
}

impl LogEntry {
    pub fn render(&self) -> String {
        let mut s = format!("### [{}] {}\n", self.stamp, self.title);
        for l in &self.lines {
            s.push_str("- ");
            s.push_str(l);
            s.push('\n');
        }
        s.push('\n');
        s
    }
}

pub const GENERATED_SECTIONS: &[&str] = &[
    "Request",
    "Task Status",
    "Task Details",
    "Dependency Graph",
    "Execution Log",
];

/// A markdown document split at its `## ` headings (outside code blocks).
#[derive(Debug, Default, Clone)]
pub struct Sections {
    /// Text before the first `## ` heading (the `# ` title).
    pub preamble: String,
    pub sections: Vec<(String, String)>,
}

impl Sections {
    /// Splits at `## ` headings that start a line, outside fenced code blocks (a fence closes
    /// only with the same character, at least as long), so a `## ` line quoted in a prompt
    /// stays in its section. A line scan, not a markdown parse: master_plan.md of a large
    /// plan runs to megabytes and is read on every build. At column 0 a `## ` line is a
    /// heading in CommonMark unless it sits in a fence (or an HTML block, which orch never
    /// writes).
    pub fn parse(text: &str) -> Sections {
        // (heading line start, body start, title)
        let mut heads: Vec<(usize, usize, String)> = Vec::new();
        let mut fence: Option<(u8, usize)> = None;
        let mut pos = 0;
        for line in text.split_inclusive('\n') {
            let start = pos;
            pos += line.len();
            let content = line.trim_end_matches(['\n', '\r']);
            let unindented = content.trim_start_matches(' ');
            if content.len() - unindented.len() <= 3 {
                if let Some(&c @ (b'`' | b'~')) = unindented.as_bytes().first() {
                    let n = unindented.bytes().take_while(|&b| b == c).count();
                    let after = &unindented[n..];
                    if n >= 3 {
                        match fence {
                            // A backtick fence's info string may not contain backticks.
                            None if !(c == b'`' && after.contains('`')) => {
                                fence = Some((c, n));
                                continue;
                            }
                            Some((fc, fnum)) if fc == c && n >= fnum && after.trim().is_empty() => {
                                fence = None;
                                continue;
                            }
                            _ => {}
                        }
                    }
                }
            }
            if fence.is_none() {
                if let Some(title) = content.strip_prefix("## ") {
                    heads.push((start, pos, title.trim().to_string()));
                }
            }
        }
        let mut out = Sections {
            preamble: text[..heads.first().map_or(text.len(), |h| h.0)].to_string(),
            sections: Vec::with_capacity(heads.len()),
        };
        for (i, (_, body, title)) in heads.iter().enumerate() {
            let end = heads.get(i + 1).map_or(text.len(), |h| h.0);
            out.sections
                .push((title.clone(), text[*body..end].to_string()));
        }
        out
    }

    pub fn get(&self, heading: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(h, _)| h == heading)
            .map(|(_, b)| b.as_str())
    }
}

/// Cells of a GFM table row: split at `|` not escaped as `\\|`, trimmed, escapes undone.
pub fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner
        .strip_suffix('|')
        .filter(|r| !r.ends_with('\\'))
        .unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The `(task id, status cell)` pairs of the status table in `text` (the section body),
/// found by column name so a reordered or extended table still reads.
pub fn table_statuses(text: &str) -> Vec<(String, String)> {
    let mut lines = text.lines().map(str::trim).filter(|l| l.starts_with('|'));
    let Some(header) = lines.next().map(split_row) else {
        return Vec::new();
    };
    let col = |name: &str| header.iter().position(|c| c.eq_ignore_ascii_case(name));
    let (Some(id), Some(status)) = (col("task id"), col("status")) else {
        return Vec::new();
    };
    lines
        .map(split_row)
        .filter(|cells| {
            !cells
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
        })
        .filter_map(|cells| {
            Some((
                cells.get(id)?.trim_matches('`').to_string(),
                cells.get(status)?.clone(),
            ))
        })
        .collect()
}

/// What orch generates for one rewrite of master_plan.md.
pub struct Generated<'a> {
    pub request: &'a str,
    pub table: &'a str,
    pub details: &'a str,
    pub graph: &'a str,
    /// The whole execution log body (previous entries plus this run's).
    pub log: &'a str,
}

/// Renders master_plan.md, keeping the sections of `previous` that a person wrote.
pub fn render(previous: &Sections, g: &Generated) -> String {
    let mut out = String::with_capacity(g.table.len() + g.details.len() + g.log.len() + 1024);
    if previous.preamble.trim().is_empty() {
        out.push_str("# Master Plan\n\n");
    } else {
        out.push_str(&previous.preamble);
    }
    let generated = [
        ("Request", g.request),
        ("Task Status", g.table),
        ("Task Details", g.details),
        ("Dependency Graph", g.graph),
    ];
    for (heading, body) in generated {
        push_section(&mut out, heading, body);
    }
    for (heading, body) in &previous.sections {
        if !GENERATED_SECTIONS.contains(&heading.as_str()) {
            out.push_str("## ");
            out.push_str(heading);
            out.push('\n');
            out.push_str(body);
            if !body.ends_with("\n\n") {
                out.push('\n');
            }
        }
    }
    push_section(&mut out, "Execution Log", g.log);
    out
}

fn push_section(out: &mut String, heading: &str, body: &str) {
    out.push_str("## ");
    out.push_str(heading);
    out.push_str("\n\n");
    out.push_str(body.trim_matches('\n'));
    out.push_str("\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_contract_columns() {
        let rows = vec![StatusRow {
            id: "T-01".into(),
            title: "Read | code".into(),
            agent: "Agent-01".into(),
            status: Status::Completed,
            priority: "P0".into(),
            deps: vec![],
            start: Some("10:00:00".into()),
            end: Some("10:01:00".into()),
            retries: 0,
        }];
        let t = render_table(&rows);
        assert!(t.starts_with(TABLE_HEADER));
        assert!(t.contains(
            "| T-01 | Read \\| code | Agent-01 | ✅ | P0 | None | 10:00:00 | 10:01:00 | 0 |"
        ));
    }

    #[test]
    fn keeps_a_persons_sections_and_the_log() {
        let before = "# Master Plan\n\n## Request\n\nold\n\n## Notes\n\nkeep me\n```\n## not a heading\n```\n\n## Execution Log\n\n### [x] Old\n\n";
        let prev = Sections::parse(before);
        assert!(prev.get("Notes").unwrap().contains("## not a heading"));
        let log = format!("{}### [y] New\n", prev.get("Execution Log").unwrap());
        let out = render(
            &prev,
            &Generated {
                request: "new",
                table: "T",
                details: "D",
                graph: "G",
                log: &log,
            },
        );
        assert!(out.contains("## Notes\n\nkeep me"));
        assert!(out.contains("### [x] Old"));
        assert!(out.contains("### [y] New"));
        assert!(!out.contains("old"));
        let again = Sections::parse(&out);
        assert_eq!(
            again
                .sections
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>(),
            vec![
                "Request",
                "Task Status",
                "Task Details",
                "Dependency Graph",
                "Notes",
                "Execution Log"
            ]
        );
    }

    #[test]
    fn headings_inside_fences_do_not_split_sections() {
        let text =
            "# T\n## A\n````md\n```\n## not a heading\n```\n````\n~~~\n## nor this\n~~~\n## B\nb\n";
        let s = Sections::parse(text);
        let names: Vec<&str> = s.sections.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert!(s.get("A").unwrap().contains("## nor this"));
        let unclosed = Sections::parse("## A\n```\n## inside\n");
        assert_eq!(unclosed.sections.len(), 1);
    }

    #[test]
    fn table_cells_respect_escaped_pipes() {
        assert_eq!(split_row("| a \\| b | `c` |"), ["a | b", "`c`"]);
        let table = format!(
            "{TABLE_HEADER}\n|---|---|---|---|---|---|---|---|---|\n| T-1 | x \\| y | Agent-01 | Pending | P2 | None | - | - | 0 |\n"
        );
        assert_eq!(
            table_statuses(&table),
            [("T-1".to_string(), "Pending".to_string())]
        );
    }

    #[test]
    fn parses_status_words_and_symbols() {
        assert_eq!(Status::parse("Pending"), Some(Status::Ready));
        assert_eq!(Status::parse(" 🟡 "), Some(Status::Ready));
        assert_eq!(Status::parse("⏸️"), Some(Status::Waiting));
        assert_eq!(Status::parse("✅"), Some(Status::Completed));
        assert_eq!(Status::parse("??"), None);
    }
}
