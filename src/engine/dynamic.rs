//! A build with dynamic fan-outs (`foreach_from`): first the tasks whose answers are items
//! (and what they need), then, with the plan loaded again and so expanded over those
//! answers, the whole build. It is one build to whoever reads it: the first part's end and
//! the second's start are not reported, nor the second's skips of what the first ran, and
//! the summary counts both. `orch build` and every `orch watch` cycle build this way.

use std::collections::HashSet;

use miette::Result;

use super::{run_build, BuildOptions, BuildOutcome};
use crate::cancel::Cancel;
use crate::plan::{Foreach, Plan};
use crate::reporter::{Event, Reporter, Stamped, Summary};
use crate::state::preload::Preloaded;

/// The tasks whose answers are the items of a `foreach_from` fan-out, in file order.
pub fn dynamic_sources(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in &plan.fanouts {
        if let Some(Foreach::From(s)) = &f.template.foreach {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// Builds `plan`; when it has dynamic fan-outs, in the two parts above, the second with the
/// plan `reload` gives, which is returned beside the outcome (the plan the build ended
/// with, for a watch to go on from). A plan without dynamic fan-outs is one ordinary build.
pub fn build_expanding(
    plan: &Plan,
    opts: &BuildOptions,
    preload: Option<Preloaded>,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    reload: &dyn Fn() -> Result<Plan>,
) -> Result<(BuildOutcome, Option<Plan>)> {
    let sources = dynamic_sources(plan);
    if sources.is_empty() {
        return Ok((run_build(plan, opts, preload, reporter, cancel)?, None));
    }
    let first_opts = BuildOptions {
        targets: sources,
        up_to_date_key: None,
        ..opts.clone()
    };
    let mut first = FirstPart::new(reporter);
    let outcome = run_build(plan, &first_opts, preload, &mut first, cancel)?;
    let settled = std::mem::take(&mut first.settled);
    if cancel.is_cancelled() || !outcome.summary.success() {
        let event = Event::BuildFinished {
            summary: &outcome.summary,
        };
        let _ = reporter.report(&Stamped::now(&event));
        return Ok((outcome, None));
    }
    let plan = reload()?;
    // The budget counts what the first part spent.
    let opts = BuildOptions {
        spent_before: outcome.summary.usage.cost_usd.unwrap_or(0.0),
        ..opts.clone()
    };
    let mut second = SecondPart::new(reporter, settled, outcome.summary);
    let outcome = run_build(&plan, &opts, None, &mut second, cancel)?;
    Ok((outcome, Some(plan)))
}

/// Reports the first part of a dynamic fan-out's build, but not its end; remembers the
/// tasks it settled.
struct FirstPart<'r> {
    inner: &'r mut dyn Reporter,
    settled: HashSet<String>,
}

impl<'r> FirstPart<'r> {
    fn new(inner: &'r mut dyn Reporter) -> Self {
        FirstPart {
            inner,
            settled: HashSet::new(),
        }
    }
}

impl Reporter for FirstPart<'_> {
    fn report(&mut self, e: &Stamped) -> std::io::Result<()> {
        match e.event {
            Event::BuildFinished { .. } => return Ok(()),
            Event::TaskSkipped { task, .. }
            | Event::TaskSucceeded { task, .. }
            | Event::TaskRestored { task, .. }
            | Event::TaskFailed { task, .. } => {
                self.settled.insert(task.id.to_string());
            }
            _ => {}
        }
        self.inner.report(e)
    }
    fn check(&mut self) -> std::io::Result<()> {
        self.inner.check()
    }
}

/// Reports the second part: not its start, nor a skip of what the first part settled; its
/// summary counts both parts.
struct SecondPart<'r> {
    inner: &'r mut dyn Reporter,
    settled: HashSet<String>,
    first: Summary,
    hidden_skips: usize,
}

impl<'r> SecondPart<'r> {
    fn new(inner: &'r mut dyn Reporter, settled: HashSet<String>, first: Summary) -> Self {
        SecondPart {
            inner,
            settled,
            first,
            hidden_skips: 0,
        }
    }
}

impl Reporter for SecondPart<'_> {
    fn report(&mut self, e: &Stamped) -> std::io::Result<()> {
        match e.event {
            Event::BuildStarted { .. } => return Ok(()),
            Event::TaskSkipped { task, .. } if self.settled.contains(task.id) => {
                self.hidden_skips += 1;
                return Ok(());
            }
            Event::BuildFinished { summary } => {
                let mut both = Summary::clone(summary);
                both.ran += self.first.ran;
                both.skipped = both.skipped - self.hidden_skips + self.first.skipped;
                both.retries += self.first.retries;
                both.restored += self.first.restored;
                both.saved.add(&self.first.saved);
                both.usage.add(&self.first.usage);
                both.duration += self.first.duration;
                let event = Event::BuildFinished { summary: &both };
                return self.inner.report(&Stamped {
                    at: e.at,
                    event: &event,
                });
            }
            _ => {}
        }
        self.inner.report(e)
    }
    fn check(&mut self) -> std::io::Result<()> {
        self.inner.check()
    }
}
