//! Live terminal view: an overall bar plus one spinner line per running agent with its
//! elapsed time. Finished tasks print as plain lines above the bars.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::event::{Event, Reporter};
use super::plain::PlainReporter;

pub struct ProgressReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<String, ProgressBar>,
    lines: PlainReporter,
}

impl ProgressReporter {
    pub fn new(color: bool) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} tasks  {elapsed}")
                .unwrap()
                .progress_chars("=> "),
        );
        overall.set_prefix("orch");
        overall.enable_steady_tick(Duration::from_millis(200));
        ProgressReporter {
            multi,
            overall,
            running: HashMap::new(),
            lines: PlainReporter::new(color, false),
        }
    }

    fn println(&self, line: String) {
        let _ = self.multi.println(line);
    }

    fn done(&mut self, id: &str) {
        if let Some(bar) = self.running.remove(id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.inc(1);
    }
}

impl Reporter for ProgressReporter {
    fn report(&mut self, event: &Event) {
        match event {
            Event::BuildStarted { tasks, .. } => self.overall.set_length(*tasks as u64),
            Event::TaskStarted { task, attempt } => {
                let bar = self.running.entry(task.id.to_string()).or_insert_with(|| {
                    let b = self
                        .multi
                        .insert_before(&self.overall, ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed:.dim}").unwrap(),
                    );
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                bar.set_message(format!(
                    "{} [{}: {}] {}{retry}",
                    task.agent_id, task.id, task.title, task.runner
                ));
            }
            Event::TaskRetrying { .. } => {
                if let Some(l) = self.lines.line(event) {
                    self.println(l);
                }
            }
            Event::TaskSkipped { task, deps_reran } => {
                let id = task.id.to_string();
                self.done(&id);
                // Up to date only thanks to early cutoff: worth a line, the others are not.
                if !deps_reran.is_empty() {
                    if let Some(l) = self.lines.line(event) {
                        self.println(l);
                    }
                }
            }
            Event::TaskSucceeded { task, .. } | Event::TaskFailed { task, .. } => {
                let id = task.id.to_string();
                self.done(&id);
                if let Some(l) = self.lines.line(event) {
                    self.println(l);
                }
            }
            Event::TaskBlocked { .. } => {
                self.overall.inc(1);
                if let Some(l) = self.lines.line(event) {
                    self.println(l);
                }
            }
            Event::BuildFinished { .. } => {
                self.overall.finish_and_clear();
                let _ = self.multi.clear();
                if let Some(l) = self.lines.line(event) {
                    eprintln!("{l}");
                }
            }
            other => {
                if let Some(l) = self.lines.line(other) {
                    self.println(l);
                }
            }
        }
    }
}
