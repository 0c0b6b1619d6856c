//! A worktree task whose change an earlier build kept with a merge conflict does not start
//! again: the change was paid for and is what `orch merge TASK` lands once resolved, and a
//! run would reclaim its worktree and branch (as git never throws away unmerged work, nor
//! does orch). It ends this build as a conflict without a run, its dependents blocked, and
//! the other tasks go on, `-k` or not. `orch merge --discard TASK` (or `orch clean`) drops
//! the change on purpose; the next build then runs the task.

use super::coordinator::{task_ref, BuildCoordinator, Outcome};
use super::worktrees::PendingSuccess;
use crate::agent::Usage;
use crate::reporter::Event;
use crate::scheduler::{Coordinator, Scheduler};
use crate::state::Status;
use crate::workspace::worktree::{kept_in, Kept, KeptAs};

/// What a held task's line says: where its change is, and the two ways on.
pub(crate) fn held_reason(kept: &Kept, changed_since: bool) -> String {
    let id = &kept.task;
    let mut reason = format!(
        "its change is kept with a merge conflict (branch {}",
        kept.branch
    );
    if !kept.files.is_empty() {
        reason.push_str(&format!(": {}", kept.files.join(", ")));
    }
    reason.push_str(&format!(
        "); resolve it with `orch merge {id}` (or discard it with `orch merge --discard {id}`, \
         and the next build runs {id} again)"
    ));
    if changed_since {
        reason.push_str(&format!(
            "; {id}'s definition or inputs changed since that run: to run it as it is now, \
             discard the kept change"
        ));
    }
    reason
}

impl BuildCoordinator<'_, '_> {
    /// Before anything runs: each wanted task with a change kept as a conflict settled as
    /// one (not started), and its dependents blocked.
    pub(super) fn hold_kept_conflicts(&mut self, sched: &mut Scheduler, wanted: &[bool]) {
        let ctx = self.ctx;
        let kept = kept_in(&ctx.layout.dir.join("worktrees"));
        for k in kept.iter().filter(|k| k.kept_as == KeptAs::Conflict) {
            let Some(&t) = ctx.plan.index.get(&k.task) else {
                continue;
            };
            if !wanted[t] {
                continue;
            }
            let reason = held_reason(k, self.changed_since(t, k));
            self.eventful = true;
            self.doc.touch();
            self.rows[t].status = Status::Conflict;
            self.outcome[t] = Some(Outcome::Conflict);
            let agent = ctx.agent_ids[t].clone();
            self.log(
                format!("{agent} Conflict"),
                vec![format!("{} not started: {reason}", k.task)],
            );
            self.events.emit(Event::TaskFailed {
                task: task_ref(ctx, t),
                duration: std::time::Duration::ZERO,
                retries: 0,
                reason: &reason,
                conflict: true,
                not_started: true,
                usage: &Usage::default(),
                session: None,
            });
            self.save_status(t);
            for b in sched.hold(t) {
                self.blocked(b, t);
            }
        }
    }

    /// Whether task `t`'s definition or inputs differ from those of the run whose change
    /// `kept` holds (unknown: no).
    fn changed_since(&self, t: usize, kept: &Kept) -> bool {
        let Some(ran) = kept
            .success
            .clone()
            .and_then(|v| serde_json::from_value::<PendingSuccess>(v).ok())
        else {
            return false;
        };
        self.ctx.local_parts(t).is_ok_and(|now| {
            now.definition != ran.record.definition || now.inputs != ran.record.inputs
        })
    }
}
