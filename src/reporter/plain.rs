//! One line per event on stderr: for logs, CI and terminals without progress bars.

use std::io::{self, Write};

use super::emit::reader_gone;
use super::event::{Event, JobState, Reporter, Stamped};
use super::paint::Paint;
use crate::duration::format_duration;

pub struct PlainReporter {
    paint: Paint,
    /// With `--quiet`: only failures, warnings and the summary.
    quiet: bool,
    /// With `--verbose`: also a line per task found up to date (ninja prints none, and 300
    /// skip lines bury what a build did).
    verbose: bool,
}

impl PlainReporter {
    pub fn new(color: bool, quiet: bool) -> Self {
        PlainReporter {
            paint: Paint { on: color },
            quiet,
            verbose: false,
        }
    }

    /// Also a line for each task found up to date, and for a merge that was.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The text of one event, or `None` for events this reporter leaves out.
    pub fn line(&self, event: &Event) -> Option<String> {
        let p = &self.paint;
        // Formatted only when shown: `--quiet` on a no-op build leaves out one line per task.
        let loud = |line: &dyn Fn() -> String| (!self.quiet).then(line);
        match event {
            Event::BuildStarted { tasks, jobs } => loud(&|| {
                format!(
                    "{} {tasks} task{} with up to {jobs} at once",
                    p.bold("orch:"),
                    if *tasks == 1 { "" } else { "s" }
                )
            }),
            Event::TaskStarted { task, attempt } => loud(&|| {
                format!(
                    "{} {} [{}: {}] ({}){}",
                    p.dim("  start"),
                    task.agent_id,
                    task.id,
                    task.title,
                    task.runner,
                    if *attempt > 1 {
                        format!(" attempt {attempt}")
                    } else {
                        String::new()
                    }
                )
            }),
            Event::TaskRetrying {
                task,
                attempt,
                reason,
                delay,
                ..
            } => Some(format!(
                "{} {} [{}] attempt {attempt} failed: {reason}; retrying in {}",
                p.yellow("  retry"),
                task.agent_id,
                task.id,
                format_duration(*delay)
            )),
            // Up to date only thanks to early cutoff is worth a line; the others only with -v.
            Event::TaskSkipped { deps_reran, .. } if !self.verbose && deps_reran.is_empty() => None,
            Event::TaskActivity { task, activity } => loud(&|| {
                format!(
                    "{} {} [{}] {activity}",
                    p.dim("     ··"),
                    task.agent_id,
                    task.id
                )
            }),
            Event::TaskSkipped {
                task,
                deps_reran,
                deps_restored,
            } => loud(&|| {
                format!(
                    "{} {} [{}] up to date{}",
                    p.dim("   skip"),
                    task.agent_id,
                    task.id,
                    cutoff_note(deps_reran, deps_restored)
                )
            }),
            Event::TaskRestored {
                task,
                saved,
                source,
                ..
            } => loud(&|| {
                let mut line = format!(
                    "{} {} [{}] restored from cache",
                    p.green("  cache"),
                    task.agent_id,
                    task.id
                );
                if *source == "remote" {
                    line.push_str(" (remote)");
                }
                if let Some(c) = saved.cost_usd {
                    line.push_str(&format!(", saved ${c:.4}"));
                }
                line
            }),
            Event::TaskSucceeded {
                task,
                duration,
                retries,
                usage,
                warnings,
                ..
            } => {
                let mut extra = String::new();
                if *retries > 0 {
                    extra.push_str(&format!(
                        ", {}",
                        super::event::plural(u64::from(*retries), "retry", "retries")
                    ));
                }
                if let Some(c) = usage.cost_usd {
                    extra.push_str(&format!(", ${c:.4}"));
                }
                let ok = loud(&|| {
                    format!(
                        "{} {} [{}] in {}{extra}",
                        p.green("     ok"),
                        task.agent_id,
                        task.id,
                        format_duration(*duration)
                    )
                });
                // Warnings show as make shows them, under the task's line; with --quiet,
                // under a line of their own.
                match (ok, warnings) {
                    (ok, None) => ok,
                    (ok, Some(w)) => {
                        let head = ok.unwrap_or_else(|| {
                            format!("{} {} [{}]", p.yellow("   warn"), task.agent_id, task.id)
                        });
                        let body: Vec<String> =
                            w.lines().map(|l| format!("         {l}")).collect();
                        Some(format!("{head}\n{}", body.join("\n")))
                    }
                }
            }
            Event::TaskFailed {
                task,
                duration,
                reason,
                conflict,
                not_started,
                ..
            } => {
                let when = if *not_started {
                    "not started".to_string()
                } else {
                    format!("after {}", format_duration(*duration))
                };
                Some(format!(
                    "{} {} [{}] {when}: {reason}",
                    p.red(if *conflict { "CONFLICT" } else { " FAILED" }),
                    task.agent_id,
                    task.id,
                ))
            }
            Event::TaskInterrupted { task, duration, .. } => Some(format!(
                "{} {} [{}] after {}: interrupted",
                p.yellow("stopped"),
                task.agent_id,
                task.id,
                format_duration(*duration)
            )),
            Event::BuildInterrupted {
                reason,
                signal,
                stopping,
                grace,
            } => {
                let ids: Vec<&str> = stopping.iter().map(|t| t.id).collect();
                Some(format!(
                    "{} {reason}: stopping {} running task{} ({}) with {signal}, SIGKILL after {}",
                    p.yellow("   stop"),
                    stopping.len(),
                    if stopping.len() == 1 { "" } else { "s" },
                    ids.join(", "),
                    format_duration(*grace)
                ))
            }
            Event::TaskJob { task, job, state } => loud(&|| {
                let detail = match state {
                    JobState::Queued { reason } if !reason.is_empty() => format!(" ({reason})"),
                    JobState::Running { node } if !node.is_empty() => format!(" on {node}"),
                    _ => String::new(),
                };
                format!(
                    "{} {} [{}] Slurm job {job} {}{detail}",
                    p.dim("    job"),
                    task.agent_id,
                    task.id,
                    state.word()
                )
            }),
            Event::TaskBlocked { task, failed_dep } => Some(format!(
                "{} {} [{}]: dep {failed_dep} failed",
                p.yellow("blocked"),
                task.agent_id,
                task.id
            )),
            Event::Aggregated { up_to_date, .. } if *up_to_date && !self.verbose => None,
            Event::Aggregated {
                path,
                strategy,
                up_to_date,
            } => loud(&|| {
                if *up_to_date {
                    format!("{} {path} up to date", p.dim("   skip"))
                } else {
                    format!("{} {path} ({strategy})", p.green(" merged"))
                }
            }),
            Event::AggregateFailed { reason } => {
                Some(format!("{} aggregation: {reason}", p.red(" FAILED")))
            }
            Event::BudgetReached {
                task,
                projected,
                spent,
                limit,
                ..
            } if task.agent_id == super::event::MERGE_ID => Some(format!(
                "{} budget ${limit:.4}: ${spent:.4} spent; the merge into final_output.md by \
                 {} ({}) not started",
                p.yellow(" budget"),
                task.runner,
                match projected {
                    Some(c) => format!("projected ${c:.4}"),
                    None => "cost unknown".to_string(),
                }
            )),
            Event::BudgetReached {
                task,
                projected,
                spent,
                running,
                limit,
            } => Some(format!(
                "{} budget ${limit:.4}: ${spent:.4} spent, ${running:.4} projected for running \
                 tasks; {} [{}] ({}) and what follows not started",
                p.yellow(" budget"),
                task.agent_id,
                task.id,
                match projected {
                    Some(c) => format!("projected ${c:.4}"),
                    None => "cost unknown".to_string(),
                }
            )),
            Event::ProviderLimit {
                provider,
                limit,
                max,
                reason,
            } => loud(&|| {
                format!(
                    "{} {provider}: {limit} of {max} at once ({reason})",
                    p.dim("  limit")
                )
            }),
            Event::ProviderWaiting {
                provider,
                until,
                quota,
                reason,
                tasks,
            } => Some(format!(
                "{} {provider}: {} until {}{}: {reason}",
                p.yellow("   wait"),
                if *quota {
                    "waiting for quota"
                } else {
                    "calls paused"
                },
                crate::clock::local_hh_mm(*until),
                if tasks.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", tasks.join(", "))
                }
            )),
            Event::ProviderResumed { provider, quota } => loud(&|| {
                format!(
                    "{} {provider}: {}",
                    p.dim(" resume"),
                    if *quota {
                        "quota reset, tasks resume"
                    } else {
                        "calls resume"
                    }
                )
            }),
            Event::Notice { message } => Some(format!("{} {message}", p.yellow("   note"))),
            Event::BuildFinished { summary } => {
                let line = summary.line();
                Some(if summary.success() {
                    format!("{} {line}", p.green(&p.bold("done:")))
                } else {
                    format!("{} {line}", p.red(&p.bold("failed:")))
                })
            }
        }
    }
}

/// `: dep a re-ran, outputs unchanged` for a task early cutoff kept from running (`dep a
/// was restored from cache` when it was).
fn cutoff_note(deps_reran: &[&str], deps_restored: &[&str]) -> String {
    if deps_reran.is_empty() {
        return String::new();
    }
    format!(
        ": {}, outputs unchanged",
        how_deps_came(deps_reran, deps_restored)
    )
}

/// `dep a re-ran`, `deps a, b re-ran and dep c was restored from cache`: what the deps that
/// did something in this build did (`restored` is a subset of `reran`).
pub fn how_deps_came(reran: &[&str], restored: &[&str]) -> String {
    let ran: Vec<&str> = reran
        .iter()
        .copied()
        .filter(|d| !restored.contains(d))
        .collect();
    let mut parts = Vec::new();
    match ran.as_slice() {
        [] => {}
        [one] => parts.push(format!("dep {one} re-ran")),
        many => parts.push(format!("deps {} re-ran", many.join(", "))),
    }
    match restored {
        [] => {}
        [one] => parts.push(format!("dep {one} was restored from cache")),
        many => parts.push(format!("deps {} were restored from cache", many.join(", "))),
    }
    parts.join(" and ")
}

impl Reporter for PlainReporter {
    fn report(&mut self, stamped: &Stamped) -> io::Result<()> {
        match self.line(stamped.event) {
            Some(line) => writeln!(io::stderr().lock(), "{line}"),
            None => Ok(()),
        }
    }

    fn check(&mut self) -> io::Result<()> {
        if reader_gone(libc::STDERR_FILENO) {
            Err(io::ErrorKind::BrokenPipe.into())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deps_say_whether_they_re_ran_or_were_restored() {
        assert_eq!(cutoff_note(&[], &[]), "");
        assert_eq!(
            cutoff_note(&["a"], &[]),
            ": dep a re-ran, outputs unchanged"
        );
        assert_eq!(
            how_deps_came(&["a", "b", "c"], &["b", "c"]),
            "dep a re-ran and deps b, c were restored from cache"
        );
        assert_eq!(
            how_deps_came(&["a", "b"], &["b"]),
            "dep a re-ran and dep b was restored from cache"
        );
    }
}
