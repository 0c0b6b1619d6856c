//! Agent CLIs started before their turn: which providers' tasks can be (see
//! `Backend::holds_stdin`), and how many of a provider's tasks then run at once for its
//! limit, so that a place that frees finds a CLI ready to call.

use super::context::BuildContext;
use crate::plan::{AgentKind, PromptVia};

/// Which providers start their tasks' CLIs before their turn (each of its tasks sends its
/// prompt on stdin to an agent known to wait for its end, `start_early`, and runs locally,
/// where the CLI can wait at its stdin: see `Backend::holds_stdin`).
pub(super) fn starts_early(ctx: &BuildContext) -> Vec<bool> {
    let mut early = vec![true; ctx.gate.limits().len()];
    let agent_override = ctx.opts.agent_override.as_deref();
    for (t, p) in ctx.provider_of.iter().enumerate() {
        let Some(p) = *p else { continue };
        let task = ctx.task(t);
        let on_stdin = ctx.plan.agent_for(task, agent_override).is_some_and(|a| {
            a.kind == AgentKind::Command && a.prompt_via == PromptVia::Stdin && a.start_early
        });
        let local = ctx
            .plan
            .slurm_job(task, agent_override, ctx.opts.executor)
            .is_none();
        early[p] &= on_stdin && local;
    }
    early
}

/// How many of a provider's tasks run at once for `limit` calls: with CLIs started before
/// their turn, a few more than its calls wait at their stdin, ready to call as a place
/// frees (a quarter more, at least 2 and at most `limit`), so that no place waits for a
/// CLI to start. While it is held (`limit` 0) none do.
pub(super) fn tasks_at_once(limit: usize, early: bool) -> usize {
    if early {
        limit + limit.div_ceil(4).max(2).min(limit)
    } else {
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::tasks_at_once;

    #[test]
    fn cli_started_early_wait_a_quarter_more_at_least_2_none_while_held() {
        assert_eq!(tasks_at_once(4, false), 4);
        let early: Vec<usize> = [0, 1, 2, 4, 16].map(|l| tasks_at_once(l, true)).to_vec();
        assert_eq!(early, vec![0, 2, 4, 6, 20]);
    }
}
