//! The document as sections: master_plan.md split at its `## ` headings, and put together
//! again with orch's generated sections rewritten and every section a person added kept in
//! place. The execution log only ever grows. The generated sections' digests ride along in
//! the document ([`Digests`]), so an edit a rewrite would drop can be told and said.

use crate::clock::Stamp;

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

/// What orch generates for one rewrite of master_plan.md.
pub struct Generated<'a> {
    pub request: &'a str,
    pub table: &'a str,
    pub details: &'a str,
    pub graph: &'a str,
    /// The whole execution log body (previous entries plus this run's).
    pub log: &'a str,
}

/// What orch last wrote of the sections it generates, kept in the document itself (a comment
/// at the end of `## Dependency Graph`, so it is replaced with the file, atomically): a short
/// digest of each, from which a later build tells a person's edit, which a rewrite would
/// drop, from orch's own text. The table's digest leaves out the Status column, whose 🟡 a
/// person may set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub request: String,
    pub table: String,
    pub details: String,
    pub graph: String,
}

const MARKER_START: &str = "<!-- orch:digests ";
const MARKER_END: &str =
    " (orch rewrites the sections above; put notes in a ## section of your own) -->";

impl Digests {
    /// The digests of these section bodies, as written (or as read back).
    pub fn of(request: &str, table: &str, details: &str, graph: &str) -> Digests {
        let short =
            |s: &str| blake3::hash(s.trim_matches('\n').as_bytes()).to_hex()[..8].to_string();
        Digests {
            request: short(request),
            table: short(&table_shape(table)),
            details: short(details),
            graph: short(graph),
        }
    }

    /// Each section's name with its digest, in document order.
    pub fn by_section(&self) -> [(&'static str, &str); 4] {
        [
            ("Request", self.request.as_str()),
            ("Task Status", self.table.as_str()),
            ("Task Details", self.details.as_str()),
            ("Dependency Graph", self.graph.as_str()),
        ]
    }

    fn marker(&self) -> String {
        format!(
            "{MARKER_START}r={} s={} d={} g={}{MARKER_END}",
            self.request, self.table, self.details, self.graph
        )
    }

    /// The digests a document carries, if orch wrote it (and nobody removed the comment).
    pub fn read(doc: &Sections) -> Option<Digests> {
        let graph = doc.get("Dependency Graph")?;
        let at = graph.rfind(MARKER_START)?;
        let fields = graph[at + MARKER_START.len()..].split(MARKER_END).next()?;
        let mut d = Digests {
            request: String::new(),
            table: String::new(),
            details: String::new(),
            graph: String::new(),
        };
        for field in fields.split(' ') {
            match field.split_once('=') {
                Some(("r", v)) => d.request = v.to_string(),
                Some(("s", v)) => d.table = v.to_string(),
                Some(("d", v)) => d.details = v.to_string(),
                Some(("g", v)) => d.graph = v.to_string(),
                _ => {}
            }
        }
        Some(d)
    }

    /// The digests of the sections of `doc` as they are now.
    pub fn now(doc: &Sections) -> Digests {
        let graph = doc.get("Dependency Graph").unwrap_or("");
        Digests::of(
            doc.get("Request").unwrap_or(""),
            doc.get("Task Status").unwrap_or(""),
            doc.get("Task Details").unwrap_or(""),
            without_marker(graph),
        )
    }
}

/// A Dependency Graph section's body without orch's digest comment.
pub fn without_marker(graph: &str) -> &str {
    match graph.rfind(MARKER_START) {
        Some(at) => &graph[..at],
        None => graph,
    }
}

/// Whether a line (or block) is orch's digest comment.
pub fn is_marker(text: &str) -> bool {
    text.trim_start().starts_with(MARKER_START)
}

/// The status table with its Status cells blanked and its cells trimmed: what orch alone
/// writes of it.
pub fn table_shape(table: &str) -> String {
    let mut status: Option<usize> = None;
    let mut out = String::with_capacity(table.len());
    for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !line.starts_with('|') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut cells = super::table::split_row(line);
        match status {
            None => status = cells.iter().position(|c| c.eq_ignore_ascii_case("status")),
            Some(i) => {
                if let Some(c) = cells.get_mut(i) {
                    if !c.chars().all(|ch| matches!(ch, '-' | ':')) {
                        c.clear();
                    }
                }
            }
        }
        out.push_str(&cells.join("|"));
        out.push('\n');
    }
    out
}

/// Renders master_plan.md, keeping the sections of `previous` that a person wrote.
pub fn render(previous: &Sections, g: &Generated) -> String {
    let mut out = String::with_capacity(g.table.len() + g.details.len() + g.log.len() + 1024);
    if previous.preamble.trim().is_empty() {
        out.push_str("# Master Plan\n\n");
    } else {
        out.push_str(&previous.preamble);
    }
    let digests = Digests::of(g.request, g.table, g.details, g.graph);
    let graph = format!("{}\n\n{}", g.graph.trim_matches('\n'), digests.marker());
    let generated = [
        ("Request", g.request),
        ("Task Status", g.table),
        ("Task Details", g.details),
        ("Dependency Graph", graph.as_str()),
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

/// A log entry stamped now.
pub fn log_entry(title: &str, lines: Vec<String>) -> LogEntry {
    LogEntry {
        stamp: Stamp::now().date_time(),
        title: title.to_string(),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_digests_written_read_back_and_tell_an_edit() {
        let table = "| Task ID | Status |\n|---|---|\n| a | ✅ |\n";
        let g = Generated {
            request: "do it",
            table,
            details: "### a: A\n",
            graph: "```mermaid\nflowchart LR\n```",
            log: "",
        };
        let doc = Sections::parse(&render(&Sections::default(), &g));
        let written = Digests::read(&doc).expect("orch leaves its digests");
        assert_eq!(
            written,
            Digests::now(&doc),
            "as written, nothing was edited"
        );
        let reset = Sections::parse(&render(&Sections::default(), &g).replace("✅", "🟡"));
        assert_eq!(
            Digests::now(&reset),
            written,
            "a Status cell is a person's to set"
        );
        let edited =
            Sections::parse(&render(&Sections::default(), &g).replace("### a: A", "### a: B"));
        assert_ne!(Digests::now(&edited).details, written.details);
        assert_eq!(Digests::now(&edited).table, written.table);
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
}
