//! The document as sections: master_plan.md split at its `## ` headings, and put together
//! again with orch's generated sections rewritten and every section a person added kept in
//! place. The execution log only ever grows.

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
