//! Live terminal view: an overall bar plus one spinner line per running agent with its
//! elapsed time. Finished tasks print as plain lines above the bars. Elapsed times are on the
//! active clock (a Ctrl-Z stop does not count). The bars on the terminal are known to
//! [`release_screen`], so a stop of orch clears them and restores the terminal first
//! ([`terminal`](super::terminal)); [`retake_screen`] and the next tick bring them back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::event::{Event, JobState, Reporter, Stamped};
use super::plain::PlainReporter;
use super::terminal;
use crate::clock::Active;

/// The bars on the terminal now, if any.
static SCREEN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Clears the progress bars from the terminal and restores its settings, for stopping orch
/// (Ctrl-Z), which leaves the terminal to the shell meanwhile. (Not
/// `MultiProgress::suspend`, which panics when its redraw fails: a terminal closed while orch
/// was stopped.)
pub fn release_screen() {
    let multi = SCREEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(m) = multi {
        let _ = m.clear();
        terminal::restore();
    }
}

/// orch runs again: the bars take the terminal back (the next tick draws them).
pub fn retake_screen() {
    if SCREEN.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        terminal::take();
    }
}

/// A style whose `{active}` is the active time since `start`.
fn style(template: &str, start: Active) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap().with_key(
        "active",
        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:#}", HumanDuration(start.elapsed()));
        },
    )
}

pub struct ProgressReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    /// Each running task's bar and its line without the latest activity.
    running: HashMap<String, (ProgressBar, String)>,
    lines: PlainReporter,
}

impl ProgressReporter {
    pub fn new(color: bool) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            style(
                "{prefix:.bold} [{bar:30}] {pos}/{len} tasks  {active}",
                Active::now(),
            )
            .progress_chars("=> "),
        );
        *SCREEN.lock().unwrap_or_else(|e| e.into_inner()) = Some(multi.clone());
        terminal::take();
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
        if let Some((bar, _)) = self.running.remove(id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.inc(1);
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        *SCREEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
        terminal::restore();
    }
}

impl Reporter for ProgressReporter {
    /// Errors of the bars themselves are indicatif's to ignore (a terminal that went away
    /// sends SIGHUP, which cancels the build anyway); the last line's are passed on.
    fn report(&mut self, stamped: &Stamped) -> std::io::Result<()> {
        let event = stamped.event;
        match event {
            Event::BuildStarted { tasks, .. } => self.overall.set_length(*tasks as u64),
            Event::TaskStarted { task, attempt } => {
                let (bar, line) = self.running.entry(task.id.to_string()).or_insert_with(|| {
                    let b = self
                        .multi
                        .insert_before(&self.overall, ProgressBar::new_spinner());
                    b.set_style(style("  {spinner} {msg} {active:.dim}", Active::now()));
                    b.enable_steady_tick(Duration::from_millis(120));
                    (b, String::new())
                });
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                *line = format!(
                    "{} [{}: {}] {}{retry}",
                    task.agent_id, task.id, task.title, task.runner
                );
                bar.set_message(line.clone());
            }
            Event::TaskActivity { task, activity } => {
                if let Some((bar, line)) = self.running.get(task.id) {
                    bar.set_message(format!("{line} · {activity}"));
                }
            }
            Event::TaskJob { task, job, state } => {
                if let Some((bar, label)) = self.running.get(task.id) {
                    let how = match state {
                        JobState::Queued { reason } if !reason.is_empty() => {
                            format!("queued as Slurm job {job} ({reason})")
                        }
                        JobState::Queued { .. } => format!("queued as Slurm job {job}"),
                        JobState::Running { .. } => format!("Slurm job {job}"),
                    };
                    bar.set_message(format!("{label} · {how}"));
                }
            }
            Event::ProviderWaiting {
                until,
                quota: true,
                tasks,
                ..
            } => {
                let note = format!(
                    "waiting for quota until {}",
                    crate::clock::local_hh_mm(*until)
                );
                for id in tasks.iter() {
                    if let Some((bar, line)) = self.running.get(*id) {
                        bar.set_message(format!("{line} · {note}"));
                    }
                }
                if let Some(l) = self.lines.line(event) {
                    self.println(l);
                }
            }
            Event::TaskRetrying { .. } => {
                if let Some(l) = self.lines.line(event) {
                    self.println(l);
                }
            }
            Event::TaskSkipped {
                task, deps_reran, ..
            } => {
                let id = task.id.to_string();
                self.done(&id);
                // Up to date only thanks to early cutoff: worth a line, the others are not.
                if !deps_reran.is_empty() {
                    if let Some(l) = self.lines.line(event) {
                        self.println(l);
                    }
                }
            }
            Event::TaskSucceeded { task, .. }
            | Event::TaskRestored { task, .. }
            | Event::TaskFailed { task, .. }
            | Event::TaskInterrupted { task, .. } => {
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
                    use std::io::Write;
                    return writeln!(std::io::stderr().lock(), "{l}");
                }
            }
            other => {
                if let Some(l) = self.lines.line(other) {
                    self.println(l);
                }
            }
        }
        Ok(())
    }
}
