//! The aggregation's merge on the scheduling thread, after the tasks. An agent's merge is a
//! paid call like a task's: it is projected and asked of the budget before it starts (a
//! refusal stops the build by the budget, final_output.md not written), every attempt's
//! cost is counted, and each call takes a place from its provider's limiter, so it waits
//! on a cut limit, a retry-after or a usage-limit reset and its refusals teach the limiter.

use super::aggregate::{self, Merge, MergeCall, MERGE_ID};
use super::budget::{self, MERGE};
use super::coordinator::BuildCoordinator;
use crate::agent::{FailureKind, Usage};
use crate::plan::AgentSpec;
use crate::reporter::{Event, Stop, TaskRef};
use crate::scheduler::{Next, NoPermit};

impl BuildCoordinator<'_, '_> {
    /// Merges the results into final_output.md unless it is up to date; a line for the
    /// execution log, or why it was not written.
    pub(super) fn aggregate(&mut self) -> Result<String, String> {
        let ctx = self.ctx;
        let merge = aggregate::prepare(ctx, false)?;
        if merge.up_to_date(ctx, self.store) {
            return Ok(aggregate::said_up_to_date(ctx, self.events));
        }
        let text = match merge.text_without_agent(ctx)? {
            Some(text) => text,
            None => self.merge_by_agent(&merge)?,
        };
        merge.write(ctx, self.store, self.events, &text)
    }

    fn merge_by_agent(&mut self, merge: &Merge) -> Result<String, String> {
        let agent = merge
            .agent
            .as_ref()
            .ok_or("the agent strategy has no agent")?;
        let projected = budget::project_merge(
            &self.money.history,
            agent,
            &merge.definition,
            merge.cost_estimate(),
        )
        .map(|p| p.usd);
        self.admit_merge(merge, agent, projected)?;
        let call = merge.agent_call(self.ctx)?;
        let mut cost = Usage::default();
        let merged = self.call_merge_agent(agent, &call, &mut cost);
        let total = cost.cost_usd.unwrap_or(0.0);
        if let Some(b) = self.money.budget.as_mut() {
            b.finish(MERGE, total);
        }
        if merged.is_ok() && cost.cost_usd.is_some() {
            self.money.history.record_merge(&merge.definition, total);
            self.money.save_history();
        }
        merged
    }

    /// Whether the merge, projected at `projected`, fits in the budget; when not, the build
    /// is stopped by it and every view hears why, as for a task.
    fn admit_merge(
        &mut self,
        merge: &Merge,
        agent: &AgentSpec,
        projected: Option<f64>,
    ) -> Result<(), String> {
        let ctx = self.ctx;
        let Some(b) = self.money.budget.as_mut() else {
            return Ok(());
        };
        // Nothing else runs now: one of unknown cost never waits for another.
        let refusal = match b.admit(MERGE, projected) {
            Ok(()) => return Ok(()),
            Err(r) => r,
        };
        let limit = b.limit;
        self.money.stop = Some(Stop::Budget { limit_usd: limit });
        self.eventful = true;
        let projected_text = match projected {
            Some(p) => format!("projected ${p:.4}"),
            None => "cost unknown".to_string(),
        };
        let why = format!(
            "the merge by agent `{}` ({projected_text}) does not fit in the budget: ${:.4} \
             spent of ${limit:.4}",
            agent.name, refusal.spent
        );
        self.log(
            "Budget Reached".into(),
            vec![format!("{MERGE_ID}: {why}; not started")],
        );
        self.events.emit(Event::BudgetReached {
            task: TaskRef {
                id: MERGE_ID,
                title: merge.title(),
                agent_id: MERGE_ID,
                runner: &agent.name,
            },
            projected,
            spent: refusal.spent,
            running: refusal.running,
            limit,
        });
        self.doc.touch();
        // What is there was merged from other results: not left to pass for these.
        let _ = std::fs::remove_file(ctx.layout.final_output());
        Err(format!("final_output.md not aggregated: {why}"))
    }

    /// The merge agent's attempts, each through its provider's limiter, as a task's run:
    /// a transient failure is retried (paced by the limiter, or after a backoff), a wait
    /// for a usage-limit reset costs no attempt. `cost` adds up every attempt's usage.
    fn call_merge_agent(
        &mut self,
        agent: &AgentSpec,
        call: &MergeCall,
        cost: &mut Usage,
    ) -> Result<String, String> {
        let ctx = self.ctx;
        let attempts = agent.retries + 1;
        let mut attempt = 1;
        self.merge_waits_on = ctx.merge_provider;
        let merged = loop {
            let permit = match ctx.merge_provider.map(|p| ctx.gate.acquire(p, ctx.cancel)) {
                None => None,
                Some(Ok(permit)) => Some(permit),
                Some(Err(NoPermit::Cancelled)) => break Err("cancelled".to_string()),
                Some(Err(NoPermit::Stopped)) => break Err(quota_stopped()),
            };
            // A hold that ended while it waited is news.
            self.provider_limits();
            let judged = match call.run(ctx, agent, self.store) {
                Ok(j) => j,
                Err(e) => break Err(e),
            };
            let next = permit.map(|p| p.end(super::runner::call_end(&judged.result)));
            self.provider_news();
            // Paid for whether or not it answered.
            self.usage.add(&judged.usage);
            cost.add(&judged.usage);
            if let (Some(b), Some(c)) = (self.money.budget.as_mut(), judged.usage.cost_usd) {
                b.attempt_paid(MERGE, c);
            }
            let f = match judged.result {
                Ok(text) => break Ok(text),
                Err(f) => f,
            };
            if f.kind == FailureKind::Cancelled || ctx.cancel.is_cancelled() {
                break Err("cancelled".into());
            }
            if next == Some(Next::QuotaStop) {
                break Err(quota_stopped());
            }
            if next == Some(Next::QuotaWait) {
                // The next permit comes when the limit resets; not an attempt.
                continue;
            }
            let message = ctx.redactor.redact(&f.message);
            if attempt >= attempts || !f.retryable() {
                break Err(format!(
                    "aggregate agent `{}` failed: {message}",
                    agent.name
                ));
            }
            let delay = if f.kind == FailureKind::Transient && next != Some(Next::Paced) {
                ctx.backoff(attempt, u64::from(attempt))
            } else {
                std::time::Duration::ZERO
            };
            let when = if next == Some(Next::Paced) {
                "when its provider takes another call".to_string()
            } else if delay.is_zero() {
                "now".to_string()
            } else {
                format!("in {}", crate::duration::format_duration(delay))
            };
            self.log(
                "Result Aggregation Retry".into(),
                vec![format!(
                    "attempt {attempt} of the merge by `{}` failed ({}), retrying {when}: {}",
                    agent.name,
                    match judged.usage.cost_usd {
                        Some(c) => format!("${c:.4}"),
                        None => "cost unknown".into(),
                    },
                    super::coordinator::one_line(&message)
                )],
            );
            if !ctx.sleep_unless_cancelled(delay) {
                break Err("cancelled".into());
            }
            attempt += 1;
        };
        self.merge_waits_on = None;
        merged
    }
}

fn quota_stopped() -> String {
    "final_output.md not aggregated: the merge agent's provider's usage limit resets past \
     max_quota_wait"
        .into()
}
