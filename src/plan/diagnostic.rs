//! Span-carrying errors for plan files, rendered by miette with the offending source lines.

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource};

/// One problem in a plan file, pointing at where it is.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    pub message: String,
    pub code: &'static str,
    /// An error, or a warning (which does not stop a build unless `settings.strict`).
    pub severity: miette::Severity,
    pub src: NamedSource<Arc<String>>,
    pub labels: Vec<LabeledSpan>,
    pub help: Option<String>,
    /// Further problems found in the same pass, so one run reports them all.
    pub related: Vec<PlanError>,
}

impl Diagnostic for PlanError {
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|e| e as &dyn Diagnostic)))
        }
    }
}

/// Builds errors against one source text.
#[derive(Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: Arc::new(text.into()),
        }
    }

    pub fn error(
        &self,
        code: &'static str,
        message: impl Into<String>,
        span: Option<Range<usize>>,
        label: impl Into<String>,
    ) -> PlanError {
        let labels = span
            .map(|s| {
                let s = clamp(s, self.text.len());
                vec![LabeledSpan::new_with_span(Some(label.into()), s)]
            })
            .unwrap_or_default();
        PlanError {
            message: message.into(),
            code,
            severity: miette::Severity::Error,
            src: NamedSource::new(self.name.clone(), self.text.clone()),
            labels,
            help: None,
            related: Vec::new(),
        }
    }
}

impl PlanError {
    /// The same problem as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = miette::Severity::Warning;
        self
    }

    pub fn is_warning(&self) -> bool {
        self.severity == miette::Severity::Warning
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        let len = self.src.inner().len();
        self.labels.push(LabeledSpan::new_with_span(
            Some(label.into()),
            clamp(span, len),
        ));
        self
    }

    /// Folds several errors into one diagnostic: the first, with the rest as related.
    pub fn combine(mut errors: Vec<PlanError>) -> Option<PlanError> {
        if errors.is_empty() {
            return None;
        }
        let mut first = errors.remove(0);
        first.related.extend(errors);
        Some(first)
    }

    /// Every message in this diagnostic, first one first (for tests and plain output).
    pub fn messages(&self) -> Vec<String> {
        let mut out = vec![self.message.clone()];
        for r in &self.related {
            out.extend(r.messages());
        }
        out
    }
}

/// Where a plan's tasks are written, found again for messages about problems found after
/// parsing (a cached plan keeps no spans): by task id, the task itself, each input and the
/// prompt file.
pub struct PlanSpans {
    pub src: SourceFile,
    pub tasks: std::collections::HashMap<String, TaskSpans>,
}

#[derive(Debug, Default, Clone)]
pub struct TaskSpans {
    pub task: Option<Range<usize>>,
    /// One per input, in order (several may share the span of one field).
    pub inputs: Vec<Range<usize>>,
    /// One per output, likewise.
    pub outputs: Vec<Range<usize>>,
    pub prompt_file: Option<Range<usize>>,
}

impl PlanSpans {
    /// An error about task `id` pointing where `at` says in its spans (or at the task, or at
    /// nothing when neither is known).
    pub fn error(
        &self,
        code: &'static str,
        message: impl Into<String>,
        id: &str,
        at: impl Fn(&TaskSpans) -> Option<Range<usize>>,
        label: impl Into<String>,
    ) -> PlanError {
        let span = self
            .tasks
            .get(id)
            .and_then(|t| at(t).or_else(|| t.task.clone()));
        self.src.error(code, message, span, label)
    }
}

/// The cycle check shared by every plan source: `None` when the deps form a DAG, else one
/// diagnostic naming the cycle's path, with each edge labelled where `edge_span(dep,
/// dependent)` says the dependent lists its dep.
pub fn cycle_error(
    src: &SourceFile,
    tasks: &[super::Task],
    deps: Vec<Vec<usize>>,
    edge_span: impl Fn(usize, usize) -> Option<Range<usize>>,
) -> Option<PlanError> {
    let cycle = crate::graph::TaskGraph::new(deps, &[]).err()?;
    let names: Vec<&str> = cycle.iter().map(|&i| tasks[i].id.as_str()).collect();
    let mut err = src.error(
        "orch::cycle",
        format!("dependency cycle: {}", names.join(" -> ")),
        None,
        "",
    );
    for pair in cycle.windows(2) {
        let (dep, dependent) = (pair[0], pair[1]);
        if let Some(span) = edge_span(dep, dependent) {
            err = err.with_label(
                span,
                format!("{} depends on {}", tasks[dependent].id, tasks[dep].id),
            );
        }
    }
    Some(err.with_help("remove one of these deps to break the cycle"))
}

fn clamp(span: Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    let end = span.end.clamp(start, len);
    start..end
}
