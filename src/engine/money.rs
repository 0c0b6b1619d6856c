//! The scheduling thread's money: the [`Budget`] asked before an agent task starts, its
//! running tasks' attempts paid as they fail, the cost history kept as tasks succeed, and
//! the stop (budget reached) said once in every view.

use super::budget;
use super::coordinator::{task_ref, BuildCoordinator};
use crate::reporter::{Event, Stop};
use crate::scheduler::Admit;
use crate::state::TaskRecord;

impl BuildCoordinator<'_, '_> {
    /// Whether task `t` may start under the budget; when not, the build stops starting
    /// tasks, and every view hears why.
    pub(super) fn admit_task(&mut self, t: usize) -> Admit {
        let ctx = self.ctx;
        let (Some(b), Some(agent)) = (self.money.budget.as_mut(), ctx.agent(t)) else {
            return Admit::Start;
        };
        let definition = ctx.checked[t]
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.0.definition);
        let projected =
            budget::project(&self.money.history, ctx.task(t), agent, definition.as_ref())
                .map(|p| p.usd);
        let refusal = match b.admit(t, projected) {
            Ok(()) => return Admit::Start,
            Err(r) if r.wait => return Admit::Wait,
            Err(r) => r,
        };
        let limit = b.limit;
        self.money.stop = Some(Stop::Budget { limit_usd: limit });
        self.eventful = true;
        let id = &ctx.task(t).id;
        let projected_text = match projected {
            Some(p) => format!("projected ${p:.4}"),
            None => "cost unknown".to_string(),
        };
        self.log(
            "Budget Reached".into(),
            vec![format!(
                "{id} ({projected_text}) not started: ${:.4} spent and ${:.4} projected for \
                 running tasks, of ${limit:.4}; running tasks finish, nothing more starts",
                refusal.spent, refusal.running
            )],
        );
        self.events.emit(Event::BudgetReached {
            task: task_ref(ctx, t),
            projected,
            spent: refusal.spent,
            running: refusal.running,
            limit,
        });
        self.doc.touch();
        Admit::Stop
    }

    /// A running task's failed attempt cost `cost`.
    pub(super) fn attempt_paid(&mut self, t: usize, cost: Option<f64>) {
        if let (Some(b), Some(c)) = (self.money.budget.as_mut(), cost) {
            b.attempt_paid(t, c);
        }
    }

    /// Task `t` ended, its attempts having cost `cost`; `record` if it succeeded.
    pub(super) fn task_paid(&mut self, t: usize, cost: Option<f64>, record: Option<&TaskRecord>) {
        if let Some(b) = self.money.budget.as_mut() {
            b.finish(t, cost.unwrap_or(0.0));
        }
        let (Some(agent), Some(cost), Some(record)) = (self.ctx.agent(t), cost, record) else {
            return;
        };
        let id = &self.ctx.task(t).id;
        self.money
            .history
            .record(id, &record.definition, &agent.name, cost);
        self.money.save_history();
    }
}
